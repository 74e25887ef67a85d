"""The API's refusals of callers' requests (its 4xx answers) counted by status and error code, for an operator's
alerts (DESIGN §8 metrics): 401s are someone without the token, or guessing it; 403s, a web page's requests
(DNS rebinding, node.api.hosts). With them, the 503s of a request the node had no room for (BUSY): many say
clients send more at once than the node takes, or one holds the room.

The codes are a closed set, the node's own (`REFUSALS`); a label never holds a path, a did or anything a caller
sends. An answer whose body is not the API's error shape (an OTLP exporter's protobuf google.rpc.Status) or names
a code not in the set is counted as `other`.
"""

from __future__ import annotations

import json

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import Registry
from .http_server import MAX_HEAD_BYTES, Refused

OTHER = "other"
# Every 4xx error code the API gives, with its status (tests/node/test_metrics.py keeps it whole).
REFUSALS: dict[str, int] = {
    "bad_request": 400, "bad_batch": 400, "bad_encoding": 400, "out_of_range": 400,
    "unauthorized": 401,
    "forbidden_host": 403, "forbidden_origin": 403,
    "not_found": 404, "no_checkpoint": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "conflict": 409, "rejected": 409, "equivocation": 409, "held_full": 409, "outside_horizon": 409,
    "unlinked": 409, "no_public_url": 409, "not_an_agent": 409,
    "pruned": 410, "bytes_dropped": 410, "bytes_not_kept": 410,
    "too_large": 413,
    "unsupported_media_type": 415, "unsupported_encoding": 415,
    "invalid_request": 422, "invalid_record": 422, "invalid_events": 422, "idempotency_key_reused": 422,
    "head_too_large": 431,
}
# The 503s counted with them, by the one that answers them (node.ingest_api's `busy`, the bodies held at once full,
# in either answer shape): the caller is told to retry. The node's own failures (503 `storage`) are counted apart.
BUSY: dict[str, int] = {"busy": 503}
_COUNTED = {**REFUSALS, **BUSY}


def refusals_counter(metrics: Registry) -> Refused:
    """vouchnet_api_refusals_total in `metrics`, each known pair shown at 0 from the start, and `refused(status,
    code)` that counts one in it: given to count_answers (the app's own refusals), to HostGuard and OriginGuard
    (answered before the app), to node.api.http_server.serve_on (answered instead of it: 408, a malformed
    request's 4xx) and to node.ingest_api.ingest_router (its 503 busy, whose protobuf answer names no code)."""
    counter = metrics.counter(
        "api_refusals_total", "API requests refused as the caller's (4xx), or for want of room (503 busy), by HTTP "
        "status and error code (the answer's `error`; other: an OTLP protobuf answer's, which has none): 401 "
        "unauthorized is a write without this node's token, or with a wrong one; 403 forbidden_host, a request naming "
        "a host not this node's (a web page's, by DNS rebinding); 403 forbidden_origin, a browser's request for "
        "another origin's page; 408 request_timeout, a request body not sent in time (a client too slow, or holding "
        f"connections); 431 head_too_large, a request head over {MAX_HEAD_BYTES // 1024} KiB; 503 busy, a telemetry "
        "request the request bodies held at once left no room for (its exporter retries it)", ("status", "reason"),
        known=[(str(status), code) for code, status in _COUNTED.items()])
    return lambda status, code: counter.inc(status=str(status), reason=_known(status, code))


def count_answers(app: FastAPI, refused: Refused) -> None:
    """Tell `refused` of each of `app`'s 4xx answers, by its error code (refusal_reason); outermost of the app's
    middleware, so that the token's 401 and a method's 405 are counted too. It is not put before ScoreFastPath,
    whose score reads (5 to 18 us) it would slow by about 1 us each: the guards in front count their own."""
    app.add_middleware(_CountRefusals, refused=refused)


def refusal_reason(status: int, body: bytes) -> str:
    """The error code of a 4xx answer's body, if it is the API's error shape with a code of `status`; else `other`."""
    try:
        code = json.loads(body).get("error")
    except (ValueError, AttributeError):  # (not JSON, or not an object)
        return OTHER
    return _known(status, code)


def _known(status: int, code: object) -> str:
    return code if isinstance(code, str) and _COUNTED.get(code) == status else OTHER


class _CountRefusals:
    """ASGI middleware counting each 4xx answer once, at its first body message (the API's error bodies are one),
    but an answer to a client that left before its request was whole (the app was told `http.disconnect`): no one
    reads it, and no caller was refused (a body sent too slowly is counted once, as the server's 408)."""

    def __init__(self, app: ASGIApp, refused: Refused) -> None:
        self.app = app
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pending = 0  # the answer's status, while a 4xx not yet counted
        left = False  # the client left before the answer began

        async def watching_receive() -> Message:
            nonlocal left
            message = await receive()
            left = left or message["type"] == "http.disconnect"
            return message

        async def counting_send(message: Message) -> None:
            nonlocal pending
            if message["type"] == "http.response.start":
                pending = message["status"] if 400 <= message["status"] < 500 and not left else 0
            elif message["type"] == "http.response.body" and pending:
                self.refused(pending, refusal_reason(pending, message.get("body", b"")))
                pending = 0
            await send(message)

        await self.app(scope, watching_receive, counting_send)
