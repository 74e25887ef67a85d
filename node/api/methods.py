"""The method check that comes before the token (DESIGN.md §8): a request for a path the API serves, with a method
none of the path's routes take, gets 405 in the API's error shape with an `Allow` header naming every method the
path takes.

A path that takes GET takes HEAD too (RFC 9110 §9.1, §9.3.2: curl -I, an uptime monitor's check of /healthz): the
request goes on as a GET, whose answer's body the HTTP server drops (node.api.http_server), its headers as they are.

It runs ahead of the write guard, so a write with the wrong method and no token learns that the method is wrong,
not that a token is missing. That tells nothing a token protects: the paths and their methods are public (`GET
/openapi.json` lists them), and a path matches by its shape alone, never by whether what it names exists.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import method_not_allowed


class AllowedMethods:
    """ASGI middleware: 405 with `Allow` for a method that no route of the request's path takes, among the routes
    of `routers`: the app's own router and each router it includes (FastAPI 0.165 keeps an included router's
    routes in that router, not in the app's)."""

    def __init__(self, app: ASGIApp, routers: Iterable[Router]) -> None:
        self.app = app
        self._routes = [(route.path_regex, _with_head(route.methods)) for router in routers for route in router.routes
                        if isinstance(route, Route) and route.methods]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            allowed = self._allowed(scope["path"])
            if allowed and scope["method"] not in allowed:
                await method_not_allowed(allowed).response()(scope, receive, send)
                return
            if allowed and scope["method"] == "HEAD":
                scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)

    def _allowed(self, path: str) -> frozenset[str]:
        """Every method that the routes matching `path` take; none if no route matches it."""
        return frozenset().union(*(methods for regex, methods in self._routes if regex.match(path)))


def _with_head(methods: set[str]) -> frozenset[str]:
    """A route's methods, with HEAD where it takes GET (FastAPI's routes, unlike Starlette's, do not add it)."""
    return frozenset(methods | {"HEAD"}) if "GET" in methods else frozenset(methods)
