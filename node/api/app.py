"""Assembles the local API: routes, the error shape, 405 for a method a path does not take, the token on writes and
the bound on request bodies.

Every handler is `async def`, so FastAPI runs it on the node's trio thread: the replica's SQLite connections
belong to that thread, and a synchronous handler would be sent to a worker thread.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from . import log, own_records, records, status
from .errors import install_error_handlers
from .guard import WriteGuard, declare_refusals
from .json_body import check_strict_json
from .methods import AllowedMethods
from .parameters import declare_query_refusals, exact_values
from .view import NodeView

_DESCRIPTION = """\
The local API of a vouchnet node. Reads are open to whoever can reach the address (127.0.0.1 by default);
writes (POST, PUT) need `Authorization: Bearer <token>` with the token in the node's `api.token` file, but for a
policy check (POST /v1/agents/{did}/check, which changes nothing) and, where `[api] traces_need_token = false`,
OTLP trace export. A request whose `Host` names neither an IP address, `localhost`, a name of the node's `[api]
hosts` nor its `[api] public_url` or `[api] bind` host is refused 403 `forbidden_host`, whatever address it reached
(against DNS rebinding; `[api] hosts = ["*"]` turns this off). A browser's request for a
page of another origin is refused 403 `forbidden_origin`, on every method: one whose `Origin` is not the API's own
(`http://` and its `Host`, or `[api] public_url`'s origin), or whose `Sec-Fetch-Site` is `cross-site` or `same-site`
but for a GET opening a page in the browser's tab (a link followed); a request with neither header (curl, an SDK,
a server) is answered.
Every path listed with GET takes HEAD too, answered as its GET without the body. Each query parameter is given at
most once: a repeat is 422 naming it, as is one the operation does not take (a misspelt filter is not ignored).
Every error is a 4xx or 5xx with the JSON body `{"error": <code>, "detail": <reason naming the field>}`. When every
connection the node serves is busy (each answered or streamed to), a new one is answered 503 `busy` with
`Retry-After` before its request is read, on any path.
"""


def create_app(
    node: NodeView,
    *,
    routers: Iterable[APIRouter] = (),
    body_limits: Mapping[str, int] | None = None,
    open_paths: Collection[str] = (),
    forbidden: Sequence[str] = (),
) -> FastAPI:
    """The API of `node`, ready to be served (the daemon serves it with node.api.http_server).

    `routers` add the other parts' endpoints (telemetry, scores); `body_limits` and `open_paths` configure the
    write guard for them (see WriteGuard); `forbidden` says what the 403 of the guards served in front of the app
    means (node.api.hosts, node.api.origins), declared on every route.
    """
    app = FastAPI(title="vouchnet node", version="1", description=_DESCRIPTION, docs_url=None, redoc_url=None,
                  dependencies=[Depends(exact_values)])
    app.state.node = node
    install_error_handlers(app)
    app.add_middleware(WriteGuard, node=node, body_limits=body_limits, open_paths=frozenset(open_paths))
    included = (status.router, own_records.router, records.router, log.router, *routers)
    check_strict_json(included)
    for router in included:
        app.include_router(router)
    app.add_middleware(AllowedMethods, routers=(app.router, *included))  # the outer one: before the token

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_query_refusals(declare_refusals(FastAPI.openapi(app), open_paths, forbidden))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's way to extend the document
    return app
