"""The API's one error shape, `{"error": <code>, "detail": <reason naming the field>}`, and the handlers that
give it to every failure: our own, FastAPI's validation errors, routing errors, invalid records, pruned entries.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from gossip.store import StoreError
from ledger import EntryPruned, LedgerError
from vouching import InvalidDid, InvalidRecord, public_key_from_did
from vouching.identity import is_compact_jwt

from ..idempotency import IdempotencyStoreError
from ..metrics import Registry
from ..strict_json import MAX_DEPTH

log = logging.getLogger(__name__)
STORAGE_RETRY_SECONDS = 10  # Retry-After of a request the node's storage refused

# FastAPI's own refusals: routing (404, 405) and a body it could not parse (400).
_HTTP_ERRORS = {
    400: ("bad_request", "body: cannot be read as UTF-8 JSON"),
    404: ("not_found", "no such endpoint; GET /openapi.json lists them"),
    405: ("method_not_allowed", "this endpoint does not take that method; GET /openapi.json lists them"),
}


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str
    detail: str


_MEANINGS = {
    400: "Out of range: an index or size beyond the log's latest checkpoint",
    404: "Not found",
    409: "The record cannot be revoked here",
    410: "Gone: bytes the node no longer keeps, or never kept; the error and its detail say which",
    415: "A Content-Type the endpoint does not take",
    422: "A malformed request, or a record the rules reject",
    # A read's (_storage); a write's 503 is declared with the write guard's (node.api.guard.declare_refusals).
    503: "The node cannot read its storage now (`storage`, naming the file), as after a failed write of its records "
         "index until the rows it lost are replayed from the records ledger; `Retry-After` says when to try again",
}
# A read is sent no record: its 422 is a parameter's.
_READ_MEANINGS = {**_MEANINGS, 422: "A malformed parameter, or one out of range; the detail names it"}
# A write's body is JSON, as I-JSON has it (node.api.json_body).
_WRITE_MEANINGS = {**_MEANINGS, 400: "A body that is not JSON as I-JSON (RFC 7493) has it: malformed, not UTF-8, a "
                                     "member given twice in one object, NaN, Infinity, a number beyond a double's "
                                     f"range or arrays or objects nested more than {MAX_DEPTH} levels deep"}


def error_responses(*statuses: int, json_body: bool = True) -> dict[int | str, dict[str, Any]]:
    """For a write's OpenAPI entry: the refusals it may give, 400 and 415 if it takes a `json_body`, and 422, each
    with the one error shape."""
    return _responses(_WRITE_MEANINGS, (*statuses, *([400, 415] if json_body else []), 422))


def read_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """For a read's OpenAPI entry: the refusals it may give, each with the one error shape; 422 where it takes
    parameters, 503 where it reads the node's storage, which may fail (DESIGN §8)."""
    return _responses(_READ_MEANINGS, statuses)


def _responses(meanings: Mapping[int, str], statuses: Iterable[int]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": meanings[status]} for status in statuses}


def error_body(description: str) -> dict[str, Any]:
    """An OpenAPI response of the one error shape, JSON whatever the route's own answers are (an event stream)."""
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}}}}


def declare_response(responses: dict[str, Any], status: str, meaning: str) -> None:
    """Declare the response `status` with `meaning` in an OpenAPI operation's `responses`, after the meaning the
    operation declares already, if any."""
    own = responses.get(status)
    responses[status] = {**own, "description": f"{own['description']}; or {meaning[0].lower()}{meaning[1:]}"} \
        if own else error_body(meaning)


class ApiError(HTTPException):
    """A request the node refuses: HTTP status, a short machine-readable code and a reason naming the field.

    An HTTPException, so that FastAPI passes it on unchanged even when raised while it reads the body.
    """

    def __init__(self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, detail, dict(headers or {}))
        self.code = code

    def response(self) -> JSONResponse:
        return error_response(self.status_code, self.code, self.detail, self.headers)


def method_not_allowed(allowed: Iterable[str]) -> ApiError:
    """405 in the one error shape, with the `Allow` header (RFC 9110 §15.5.6) naming the methods the path takes."""
    code, detail = _HTTP_ERRORS[405]
    return ApiError(405, code, detail, {"Allow": ", ".join(sorted(allowed))})


def checked_did(did: str, field: str) -> str:
    """`did` if it is an Ed25519 did:key, else a 422 naming `field` (e.g. "path.did", "query.issuer"); an agent's
    credential passed in its place (a compact JWT) is named as such."""
    if is_compact_jwt(did):
        raise ApiError(422, "invalid_request", f"{field}: a credential (a JWT), not a did: verify it against its "
                       "issuer's /.well-known/jwks.json and use its subject, credentialSubject.id")
    try:
        public_key_from_did(did)
    except InvalidDid as e:
        raise ApiError(422, "invalid_request", f"{field}: not an Ed25519 did:key ({e})") from None
    return did


def error_response(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception the app can meet to the one error shape."""
    app.state.storage_refusals = None  # until count_storage_refusals
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(InvalidRecord, _invalid_record)
    app.add_exception_handler(EntryPruned, _pruned)
    for storage_error in (LedgerError, StoreError, IdempotencyStoreError):
        app.add_exception_handler(storage_error, _storage)
    app.add_exception_handler(sqlite3.DatabaseError, _sqlite_error)
    app.add_exception_handler(ClientDisconnect, _client_left)
    app.add_exception_handler(Exception, _internal_error)


def count_storage_refusals(app: FastAPI, metrics: Registry) -> None:
    """Count the app's 503 `storage` answers in `metrics`, for an operator's alert (DESIGN §8 metrics)."""
    app.state.storage_refusals = metrics.counter(
        "api_storage_refusals_total", "API requests answered 503 storage: the node's files refused a read or write "
        "(a full disk, a locked or damaged database), each logged with the file")


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(422, "invalid_request", _describe(exc.errors()[0]))


def _describe(error: Mapping[str, Any]) -> str:
    """One pydantic error as "where: what", e.g. "query.limit: Input should be less than or equal to 500"."""
    loc = tuple(error.get("loc", ()))
    if loc == ("body",):
        # JSON but not an object (an array, a string); say what the body must be instead.
        return "body: must be a JSON object, sent with Content-Type: application/json"
    where = ".".join(str(part) for part in loc) or "request"
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    return f"{where}: {message}"


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code, detail = _HTTP_ERRORS.get(exc.status_code, (f"http_{exc.status_code}", None))
    return error_response(exc.status_code, code, detail or str(exc.detail), exc.headers)


async def _invalid_record(request: Request, exc: InvalidRecord) -> JSONResponse:
    return error_response(422, "invalid_record", str(exc))


async def _pruned(request: Request, exc: EntryPruned) -> JSONResponse:
    return error_response(410, "pruned", f"the bytes of this entry were pruned; its hash remains in the log ({exc})")


async def _storage(request: Request, exc: Exception) -> JSONResponse:
    """The node's files refused a read or write (a full disk, say): 503 naming the file, logged in one line."""
    log.error("%s %s: the node's storage failed: %s", request.method, request.url.path, exc)
    if request.app.state.storage_refusals is not None:
        request.app.state.storage_refusals.inc()
    if request.method in ("GET", "HEAD"):
        detail = f"the node cannot read its storage now: {exc}; retry later"
    else:
        detail = (f"the node cannot store this now: {exc}; retry later (a batch, vouch or revocation with an "
                  "Idempotency-Key is stored once)")
    return error_response(503, "storage", detail, {"Retry-After": str(STORAGE_RETRY_SECONDS)})


async def _sqlite_error(request: Request, exc: sqlite3.DatabaseError) -> JSONResponse:
    """SQLite's storage failures are the storage's: a disk or a lock (OperationalError), a damaged file (a
    DatabaseError as such: "database disk image is malformed", "file is not a database"); its other errors (a
    statement's, a constraint's) are the node's."""
    if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
        return await _storage(request, exc)
    return await _internal_error(request, exc)


async def _client_left(request: Request, exc: ClientDisconnect) -> JSONResponse:
    """A body its client left before sending whole (or sent too slowly: node.api.http_server answered it 408): no
    failure of the node's to log, and an answer no one reads."""
    return error_response(400, "bad_request", "body: the client left before sending it whole")


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "the node failed to answer this request; its log says why")
