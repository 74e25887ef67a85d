"""What stands before the API's handlers: the bearer token that writes need, and the bound on request bodies.

Both are checked in ASGI middleware, before FastAPI reads or parses a body: a caller without the token learns
nothing about its request but that the token is missing.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.security import HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, declare_response, error_body
from .view import NodeView

MAX_BODY_BYTES = 64 * 1024  # a record is at most 64 KiB, and every request body is far smaller than its record
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# The scheme the OpenAPI document names on every write WriteGuard guards (declare_refusals).
bearer_scheme = HTTPBearer(auto_error=False, description="The token in the node's `api.token` file.")


def _template(path: str) -> str:
    """A regex for a route path whose `{name}` segments match any one segment."""
    return "(?:" + "/".join("[^/]+" if re.fullmatch(r"\{\w+\}", part) else re.escape(part)
                            for part in path.split("/")) + ")"


def _open_pattern(open_paths: Collection[str]) -> re.Pattern[str]:
    return re.compile("|".join(_template(p) for p in open_paths) or "(?!)")


def declare_refusals(spec: dict[str, Any], open_paths: Collection[str],
                     forbidden: Sequence[str] = ()) -> dict[str, Any]:
    """`spec`, the app's OpenAPI document, with what is answered before any handler (DESIGN §8): on every
    operation, 403 with the `forbidden` meanings (the guards served in front of the app, if any) and the HTTP
    server's 503 `busy` (node.api.http_server), after the operation's own 503 if it has one; on every write WriteGuard
    guards, the bearer token, 401, 503 and a malformed Authorization header's 400 (likewise after the operation's
    own); on every write, 413. Changed in place."""
    open_path = _open_pattern(open_paths)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if forbidden:
                responses.setdefault("403", error_body("Refused before the endpoint: " + "; ".join(forbidden)))
            if method.upper() not in _READ_METHODS:
                responses.setdefault("413", error_body(_WRITE_REFUSALS[413]))
                if not open_path.fullmatch(path):
                    operation.setdefault("security", [{bearer_scheme.scheme_name: []}])
                    responses.setdefault("401", error_body(_WRITE_REFUSALS[401]))
                    responses.setdefault("503", error_body(_WRITE_REFUSALS[503]))
                    declare_response(responses, "400", _WRITE_REFUSALS[400])
            declare_response(responses, "503", _BUSY)
    spec.setdefault("components", {}).setdefault("securitySchemes", {})[bearer_scheme.scheme_name] = \
        bearer_scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return spec


# The HTTP server's answer to a newcomer while every connection is busy, on any path (node.api.http_server._busy).
_BUSY = ("Every connection the node serves is busy (`busy`), answered before the request is read; `Retry-After` says "
         "when to try again")
_WRITE_REFUSALS = {
    400: "A malformed Authorization header (`bad_request`, `WWW-Authenticate` saying `invalid_request`): sent more "
         "than once, `Bearer` without its token, or not followed by a space (`Bearer%20`)",
    401: "A write without this node's bearer token (another scheme, or none), or with another token "
         "(`WWW-Authenticate` saying `invalid_token`)",
    413: "The request body is too large",
    503: "The node takes no write now: it cannot read its token file (`no_token`), or its storage refused the write "
         "(`storage`, naming the file); `Retry-After` says when to try again",
}


# `Bearer%20<token>`: OTEL_EXPORTER_OTLP_TRACES_HEADERS's value as written, sent undecoded (the exporters of Java and
# .NET releases from before 2024 do), where the OTLP exporter spec has it percent-decoded.
_ENCODED_BEARER = b"bearer%20"
_ENCODED_SPACE = ("Authorization: the space after Bearer is percent-encoded (Bearer%20...), as OTLP exporters that do "
                  "not decode OTEL_EXPORTER_OTLP_TRACES_HEADERS send it; with such an exporter, write a plain space "
                  "there")


class WriteGuard:
    """ASGI middleware: every request but a read needs `Authorization: Bearer <token>` (else 401; 400 for a malformed
    header: _check_token), and a body over `max_bytes` fails with 413 before the app has read more than that.

    `body_limits` raises (or lowers) the bound for given paths, e.g. telemetry batches; `open_paths` are writes
    that need no token, e.g. OTLP trace export where configured so (`[api] traces_need_token = false`, for
    exporters that cannot send headers; node.ingest_api), or a policy check, which changes nothing; a `{name}` segment
    in one matches any single path segment.
    """

    def __init__(
        self,
        app: ASGIApp,
        node: NodeView,
        max_bytes: int = MAX_BODY_BYTES,
        *,
        body_limits: Mapping[str, int] | None = None,
        open_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.node = node
        self.max_bytes = max_bytes
        self.body_limits = dict(body_limits or {})
        self._open = _open_pattern(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if scope["method"] not in _READ_METHODS and not self._open.fullmatch(path):
            if (refusal := self._check_token(scope)) is not None:
                await refusal.response()(scope, receive, send)
                return
        limit = self.body_limits.get(path, self.max_bytes)
        if (_content_length(scope) or 0) > limit:
            await _too_large(limit).response()(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside FastAPI, which passes an HTTPException on to the app's error handlers.
                    raise _too_large(limit)
            return message

        await self.app(scope, limited_receive, send)

    def _check_token(self, scope: Scope) -> ApiError | None:
        """The refusal of a write by its Authorization header, as RFC 6750 §3 has it: none or another scheme's, 401
        and a challenge without an error; a malformed one (sent twice, RFC 9110 §11.6.2; `Bearer` without its
        token, or not followed by a space), 400 `invalid_request`; another token, 401 `invalid_token`."""
        if len(sent := _headers(scope, b"authorization")) > 1:  # RFC 9110 §11.6.2: one credential, never a list
            return _malformed(f"Authorization: sent {len(sent)} times; send one, the bearer token")
        scheme, _, token = (sent[0] if sent else b"").partition(b" ")
        if scheme.lower().startswith(_ENCODED_BEARER):
            return _malformed(_ENCODED_SPACE)
        if scheme.lower().startswith(b"bearer") and scheme.lower() != b"bearer":
            return _malformed("Authorization: Bearer must be followed by a space, then the token")
        if scheme.lower() != b"bearer":
            return _unauthorized("Authorization: a bearer token is required (the contents of the node's api.token)", "")
        if not token.strip():
            return _malformed("Authorization: Bearer without a token; send the contents of the node's api.token")
        if (expected := self.node.token) is None:
            return ApiError(503, "no_token", "api.token: the node cannot read its token file now (the node's log says "
                                             "why), so it takes no write; restore the file", {"Retry-After": "10"})
        # Constant time, so the comparison does not leak how much of a guessed token is right.
        if not hmac.compare_digest(token.strip(), expected.encode()):
            return _unauthorized("Authorization: the bearer token is not this node's", ', error="invalid_token"')
        return None


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"body: must be at most {limit} bytes")


def _unauthorized(detail: str, challenge_extra: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, {"WWW-Authenticate": f'Bearer realm="vouchnet"{challenge_extra}'})


def _malformed(detail: str) -> ApiError:
    """A malformed Authorization header's refusal: 400 (RFC 6750 §3.1 `invalid_request`), its challenge saying so."""
    challenge = 'Bearer realm="vouchnet", error="invalid_request"'
    return ApiError(400, "bad_request", detail, {"WWW-Authenticate": challenge})


def _headers(scope: Scope, name: bytes) -> list[bytes]:
    """The values of every header of the request named `name` (lower-case), in the order sent."""
    return [value for key, value in scope["headers"] if key == name]


def _header(scope: Scope, name: bytes) -> bytes:
    return next(iter(_headers(scope, name)), b"")


def media_type(request: Request) -> str:
    """A request's Content-Type without its parameters, lower-cased ("" when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    """Whether a media type (media_type's) is JSON: `application/json`, or one of the `+json` structured syntax
    suffix (RFC 6839 §3.1: its representation is JSON's, read by any JSON reader). No type is not."""
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if not value.isdigit():
        return None
    return int(value) if len(value) <= 18 else 10**18  # no int() of a hostile number of digits
