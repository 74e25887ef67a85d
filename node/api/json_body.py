"""Every JSON request body a route reads, through its model or `request.json()`, is I-JSON (node.strict_json), parsed
once, by the strict reader: a body that is not is 400 `bad_request` naming why, before the route sees it. FastAPI's
and Starlette's parser takes UTF-16, the last of a repeated member and NaN, so a record could be signed from a body
the caller's own tools read otherwise. The API is not made with a route that could read its body another way. A
route with a body model takes it as JSON only: one sent as another type is 415 `unsupported_media_type` (RFC 9110
§15.5.16), where FastAPI handed its bytes to the model, a 422 saying nothing of the type."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from ..strict_json import loads_strict, not_json
from .errors import ApiError
from .guard import is_json, media_type


class StrictJsonRoute(APIRoute):
    """A route whose request's JSON body, wherever FastAPI or the route reads one (a body model's, sent as
    application/json or `+json`; `await request.json()` in its handler or a dependency), is read by loads_strict
    instead of json.loads; its ValueError is the 400; a body model's body of another type is the 415. Every route of the
    API that can read its request's body is one (check_strict_json)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not _reads_body(self):
            return handler  # nothing of it can read the body: no request made twice
        takes_model = self.body_field is not None

        async def strict_handler(request: Request) -> Response:
            strict = _StrictJsonRequest(request.scope, request.receive)
            if takes_model:
                await _refuse_other_types(strict)
            return await handler(strict)

        return strict_handler


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        """The body as I-JSON has it; a 400 saying why not (an ApiError, which FastAPI passes on as it is)."""
        if not hasattr(self, "_json"):
            try:
                self._json = loads_strict(await self.body())
            except ValueError as error:
                raise ApiError(400, "bad_request", not_json(error)) from None
        return self._json


async def _refuse_other_types(request: Request) -> None:
    """A 415 for a body a model would read sent as another type than JSON (`application/json`, or the `+json` types
    FastAPI reads as JSON), or of no type (read as JSON by FastAPI before 0.132, not since); a request with neither a
    type nor a body is left to the model, whose 422 names the missing body."""
    kind = media_type(request)
    if is_json(kind):
        return
    if kind or await request.body():
        raise ApiError(415, "unsupported_media_type", "Content-Type: must be application/json")


def check_strict_json(routers: Iterable[APIRouter]) -> None:
    """Raise TypeError for a route of `routers` that could read its request's JSON body with another parser than
    loads_strict, so that no such route is ever served: one that can read the body (_reads_body) and is not a
    StrictJsonRoute (its router made without `route_class=StrictJsonRoute`), or one FastAPI did not make (a
    Starlette route or mount, a websocket), whose handler would get the request as Starlette makes it."""
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                raise TypeError(f"{getattr(route, 'path', route)}: not a route of the router's get, post, put...: "
                                "its handler would read a JSON body with Starlette's parser, not as I-JSON")
            if _reads_body(route) and not isinstance(route, StrictJsonRoute):
                raise TypeError(f"{route.path}: a route that can read its request's body (a body model, or the "
                                "Request taken by its handler or a dependency) must be a StrictJsonRoute "
                                "(node.api.json_body), so that its JSON is read as I-JSON")


def _reads_body(route: APIRoute) -> bool:
    """Whether `route` can read its request's body: it has a body model, or its handler or a dependency of it takes
    the Request (the others are given only the path, query, headers and cookies FastAPI parsed)."""
    return route.body_field is not None or _takes_request(route.dependant)


def _takes_request(dependant: Dependant) -> bool:
    return dependant.request_param_name is not None or any(map(_takes_request, dependant.dependencies))
