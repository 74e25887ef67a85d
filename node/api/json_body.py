"""Every JSON request body a route's model reads is I-JSON (node.strict_json), parsed once, by the strict reader: a
body that is not is 400 `bad_request` naming why, before the model sees it. FastAPI's own parser takes UTF-16, the
last of a repeated member and NaN, so a record could be signed from a body the caller's own tools read otherwise."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from ..strict_json import loads_strict, not_json
from .errors import ApiError


class StrictJsonRoute(APIRoute):
    """A route whose request's JSON body, where FastAPI reads one (a body model's, sent as application/json or
    `+json`), is read by loads_strict instead of json.loads; its ValueError is the 400. Every router of the API
    takes it as its `route_class` (check_strict_json)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler  # FastAPI reads no JSON for it: no request made twice

        async def strict_handler(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

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


def check_strict_json(routers: Iterable[APIRouter]) -> None:
    """Raise TypeError for a route of `routers` with a body model that is not a StrictJsonRoute (its router made
    without `route_class=StrictJsonRoute`), so that no such route is ever served."""
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.body_field is not None and not isinstance(route, StrictJsonRoute):
                raise TypeError(f"{route.path}: a route with a body model must be a StrictJsonRoute "
                                "(node.api.json_body), so that its JSON is read as I-JSON")
