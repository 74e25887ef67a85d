"""Every JSON request body a route's model reads is I-JSON (node.strict_json), on every route of the API: a body
that is not is 400 `bad_request` naming why, before the model sees it. FastAPI's own parser takes UTF-16, the last
of a repeated member and NaN, so a record could be signed from a body the caller's own tools read otherwise."""

from __future__ import annotations

from fastapi import Request
from fastapi.routing import APIRoute

from ..strict_json import loads_strict, not_json
from .errors import ApiError
from .guard import media_type


async def strict_json_body(request: Request) -> None:
    """The app's dependency (run after FastAPI read the body, before it validates it against the route's model):
    a 400 for a JSON body of a route with a body model that is not I-JSON. (`async`, so it runs on the node's
    thread.)"""
    route: APIRoute = request.scope["route"]
    kind = media_type(request)
    if route.body_field is None or not (kind in ("", "application/json") or kind.endswith("+json")):
        return
    if body := await request.body():
        try:
            loads_strict(body)
        except ValueError as error:
            raise ApiError(400, "bad_request", not_json(error)) from None
