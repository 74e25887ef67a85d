"""`POST /v1/events` (JSON event batches) and `POST /v1/traces` (OTLP/HTTP, as the stock OpenTelemetry exporters
send it: protobuf or JSON, optionally gzip- or deflate-compressed). DESIGN §7, §8.

The app's write guard must let these bodies through up to BODY_LIMITS (they are larger than a record). Both need
the token like every other write, unless the node is configured with `[api] traces_need_token = false`: then the
guard leaves OPEN_WRITE_PATHS open, for an exporter that cannot send headers.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable
from typing import TypeVar

import trio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from .body_budget import BodyBudget, Holding, OverBudget
from .idempotency import MAX_KEY, check_key
from .api.errors import ErrorBody, error_response, error_responses
from .api.guard import is_json, media_type
from .api.http_server import Refused
from .api.json_body import StrictJsonRoute
from .events import MAX_ATTRS, MAX_BATCH_BYTES, MAX_BATCH_CONTAINERS, MAX_BATCH_EVENTS, MAX_NAME
from .ingest import BadBatch, Ingestor, Pending, ReadBatch, Reply, TooLarge, read_batch
from .otlp import (MAX_ATTRIBUTES, MAX_JSON_CONTAINERS, MAX_SPANS, MalformedSpan, OtlpError, Span, SpanBatch,
                   TooManySpans, decode_json, decode_protobuf, error_status, export_response, sort_spans)
from .read_bytes import EVENTS_READ_PER_BYTE, SPANS_READ_PER_BYTE, read_batch_bytes, span_batch_bytes
from .read_turns import ReadTurns

MAX_TRACES_BYTES = 4 << 20
# A trace export request or events batch longer than this is read (decoded, its spans sorted out; parsed, its events
# checked) on a worker thread: at about 0.1-0.3 ms per KB, a trace request at the body limit held the node's trio
# thread for 0.5-1.2 s, and 1 MiB of integers in a batch 0.07 s (benchmarks/otlp_attacks.py). The stock SDK's 512
# spans are some 130 KB. Python code holds the GIL, so the loop is slowed, not stopped.
READ_ON_LOOP_BYTES = 16 * 1024
# Such requests read at once, at most; the others wait their turn, the smallest body first (node.read_turns). The
# protobuf parser holds 15-25 bytes a byte of the body as it reads it: 65-100 MB for 4 MiB of empty spans or
# attributes, 4 KiB of gzip, where trio's 40 worker threads let 40 reads run at once. Python code holds the GIL: a
# second read at once is no faster, only more memory.
READS_AT_ONCE = 1
# Request bodies (as received and decompressed) both endpoints hold at once, across requests, and what is read of them.
# Without a bound, each of the API's 1,024 connections could hold a body 4 MiB decompressed from 4 KiB of gzip while
# it waits its turn to be read: 4 GiB. A request that finds no room within BODY_WAIT_S is answered 503 `busy`.
# A request holds its room until answered, its commit included, and takes it before its body is received, for the
# body and for what its read will hold (read_body; node.read_bytes): the events read from a body take 3.2-3.5 times
# its bytes (tracemalloc: 14.7 MB for 4 MiB of agent spans, 0.47 MB for 1,000 events in 147 KB), which the requests
# waiting for the write lock hold. The parsers' memory while they read is not in it: one read at a time bounds it.
BODY_BYTES_AT_ONCE = 16 * MAX_TRACES_BYTES
BODY_WAIT_S = 2.0
BUSY_RETRY_S = 1  # the 503's Retry-After
INFLATE_PIECE = 256 * 1024  # a compressed body is inflated this much at a time, refused once past its limit
BODY_LIMITS = {"/v1/events": MAX_BATCH_BYTES, "/v1/traces": MAX_TRACES_BYTES}
OPEN_WRITE_PATHS = frozenset({"/v1/traces"})
PROTOBUF = "application/x-protobuf"
Read = TypeVar("Read")

_EVENTS_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["events"],
                "properties": {"events": {"type": "array", "maxItems": MAX_BATCH_EVENTS, "items": {
                    "type": "object",
                    "required": ["agent", "ts", "category", "name", "outcome"],
                    "properties": {
                        "agent": {"type": "string", "description": "the agent's did:key"},
                        "ts": {"type": "integer", "description": "ms since the Unix epoch"},
                        "category": {"type": "string", "description": "tool, mcp, a2a, auth, resource or other"},
                        "name": {"type": "string", "maxLength": MAX_NAME},
                        "outcome": {"enum": ["ok", "error", "denied", "timeout"]},
                        "duration_ms": {"type": "number", "minimum": 0},
                        "high_risk": {"type": "boolean"},
                        "attrs": {"type": "object", "maxProperties": MAX_ATTRS},
                    },
                }}},
            }
        }
    },
}

_BUSY = {"model": ErrorBody, "description": f"`busy`: the bodies the node holds at once, and what was read of them "
                                           f"({BODY_BYTES_AT_ONCE >> 20} MiB, across requests), left no room for "
                                           f"this one and what its read will hold (taken before its body is "
                                           f"received), or for more its read held, in {BODY_WAIT_S:g} s, "
                                           f"or it had been arriving, or waiting its turn to be read, for over "
                                           f"{BODY_WAIT_S:g} s when another found none and took its room; retry "
                                           "after Retry-After"}


class _Refused(Exception):
    """A request refused before its body is understood: status, error code, reason."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers



async def read_body(request: Request, limit: int, read_per_byte: float, held: Holding) -> tuple[bytes, int]:
    """The request body, decompressed per Content-Encoding (identity, gzip, deflate), at most `limit` bytes
    before and after decompression, and the room it holds in `held`'s budget for what its read will hold
    (`read_per_byte` a byte of the body: node.read_bytes). Before a byte is received, it takes room for the body
    its Content-Length says (the limit, without one or compressed, its decompressed size unknown till then) and for
    its read, and gives back the rest once the body is in; raises _Refused (413 too large, 415 unknown encoding, 400
    corrupt, or with bytes after the compressed stream's end, 503 busy: no room in the budget, its body not read, or
    its room given to another request while its body was arriving slowly: node.body_budget)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise _Refused(415, "unsupported_encoding", "Content-Encoding: must be identity, gzip or deflate")
    too_large = _Refused(413, "too_large", f"body: must be at most {limit} bytes")
    length = request.headers.get("content-length", "")
    declared = length.isascii() and length.isdigit()  # not "²"
    if declared and (len(length) > 18 or int(length) > limit):
        raise too_large
    received_room = int(length) if declared else limit
    inflated_room = 0 if encoding == "identity" else limit
    read_room = room_to_read(inflated_room or received_room, read_per_byte)
    try:
        await held.take(received_room + inflated_room + read_room)
        chunks, received = [], 0
        with held.arriving():
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise too_large
                if received > received_room:  # (more than its Content-Length said)
                    await held.take(received - received_room)
                    received_room = received
                chunks.append(chunk)
    except OverBudget as error:
        raise _busy(error) from None
    body = b"".join(chunks)
    del chunks
    if encoding != "identity":
        body = _inflate(body, encoding, limit, too_large)
        held.give_back(received_room + inflated_room - len(body))  # (the compressed body is let go)
    else:
        held.give_back(received_room - len(body))
    spare = read_room - room_to_read(len(body), read_per_byte)
    held.give_back(spare)
    return body, read_room - spare


def room_to_read(size: int, read_per_byte: float) -> int:
    """The room a body of `size` bytes takes for what its read holds, at `read_per_byte` (node.read_bytes)."""
    return math.ceil(size * read_per_byte)


def _busy(error: OverBudget) -> _Refused:
    """503 busy with Retry-After (OTLP/HTTP §Failures: the exporter retries)."""
    return _Refused(503, "busy", f"body: {error}", {"Retry-After": str(BUSY_RETRY_S)})


def _inflate(body: bytes, encoding: str, limit: int, too_large: _Refused) -> bytes:
    """`body` decompressed a piece at a time, refused as soon as it inflates past `limit`."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS)
    pieces, size, tail = [], 0, body
    while True:
        room = min(INFLATE_PIECE, limit + 1 - size)
        try:
            piece = inflater.decompress(tail, room)
        except zlib.error as error:
            raise _Refused(400, "bad_encoding", f"body: not valid {encoding} data ({error})") from None
        pieces.append(piece)
        size, tail = size + len(piece), inflater.unconsumed_tail
        if size > limit:
            raise too_large  # a small body that inflates past the limit is refused before it is inflated further
        if inflater.eof or not (tail or len(piece) == room):
            break
    if not inflater.eof:
        raise _Refused(400, "bad_encoding", f"body: truncated {encoding} data")
    if inflater.unused_data:  # a second gzip member (RFC 1952 §2.2), or anything else: not read
        raise _Refused(400, "bad_encoding", f"body: {len(inflater.unused_data)} bytes after the end of the {encoding} "
                                            "data; send the body as one compressed stream")
    return b"".join(pieces)


def ingest_router(ingestor: Ingestor, *, refused: Refused) -> APIRouter:
    """The telemetry ingest endpoints over `ingestor`; each 503 `busy` told to `refused`
    (node.api.refusals.refusals_counter's: the app's count of refusals reads no code in a protobuf answer)."""
    router = APIRouter(route_class=StrictJsonRoute, tags=["telemetry"])
    reads = ReadTurns(READS_AT_ONCE)
    bodies = BodyBudget(BODY_BYTES_AT_ONCE, BODY_WAIT_S)

    @router.post(
        "/v1/events",
        openapi_extra={"requestBody": _EVENTS_BODY},
        responses={200: {"description": "Valid events kept; `rejected` lists each invalid one by index"},
                   **error_responses(),
                   400: {"model": ErrorBody, "description": "Not a batch, or an Idempotency-Key that is not 1 to "
                                                            f"{MAX_KEY} printable ASCII"},
                   413: {"model": ErrorBody, "description": f"Over 1 MiB, {MAX_BATCH_EVENTS} events, or "
                                                            f"{MAX_BATCH_CONTAINERS} JSON arrays and objects"},
                   415: {"model": ErrorBody, "description": "Not JSON (application/json, or a +json type), or no "
                                                            "Content-Type"},
                   422: {"model": ErrorBody, "description": "No valid event, or an Idempotency-Key reused for another "
                                                            "batch"},
                   503: _BUSY},
    )
    async def post_events(request: Request) -> Response:
        """Report behaviour events: `{"events": [...]}` as JSON (application/json, or a +json type), at most 1000
        events, 1 MiB (gzip allowed) and 65,536 JSON arrays and objects. Valid events are stored durably before the
        answer `{"accepted": n, "rejected": [{"index", "detail"}]}`; an event whose `agent` is an org's did (this
        node's own, a trust root's, or one that signed records it holds) is rejected, as GET /v1/agents/{did}/score
        refuses the did. With an `Idempotency-Key` header, a retried batch is answered as the first time and stored
        once."""
        if not is_json(media_type(request)):
            return error_response(415, "unsupported_media_type", "Content-Type: must be application/json")
        key = request.headers.get("idempotency-key")
        if key is not None and (problem := check_key(key)) is not None:
            return error_response(400, "bad_request", problem)
        async with bodies.holding() as held:
            try:
                body, read_room = await read_body(request, MAX_BATCH_BYTES, EVENTS_READ_PER_BYTE, held)
                prepared = ingestor.replay_of(body, key=key)
                if prepared is None:
                    batch = await read_request(functools.partial(_read_events, body, now_ms=ingestor.audit.clock()),
                                               len(body), read_room, reads, held)
                    prepared = ingestor.prepare_batch(body, batch, key=key)
            except _Refused as refusal:
                return error_response(*_counted(refusal, refused))
            except BadBatch as error:
                return error_response(400, "bad_batch", str(error))
            except TooLarge as error:
                return error_response(413, "too_large", str(error))
            reply = prepared if isinstance(prepared, Reply) else await ingestor.commit_async(prepared)
        headers = {"Idempotent-Replayed": "true"} if reply.replayed else None
        return JSONResponse(reply.body, status_code=reply.status, headers=headers)

    @router.post(
        "/v1/traces",
        responses={200: {"description": "An OTLP ExportTraceServiceResponse; partial_success counts rejected spans "
                                        "(an action without its agent's did:key, or with an org's, times out of "
                                        "range, a field not as OTLP has it) and names duplicates"},
                   400: {"model": ErrorBody, "description": "Not an OTLP trace export request: not protobuf or "
                                                            "JSON, or not resourceSpans of scopeSpans of spans"},
                   413: {"model": ErrorBody, "description": f"Over 4 MiB, or {MAX_SPANS} spans, resourceSpans "
                                                            f"or scopeSpans, {MAX_ATTRIBUTES} attributes (of spans "
                                                            f"and resources), or {MAX_JSON_CONTAINERS} JSON arrays "
                                                            "and objects"},
                   415: {"model": ErrorBody, "description": "Neither application/x-protobuf nor JSON "
                                                            "(application/json, or a +json type), or no Content-Type"},
                   503: _BUSY},
    )
    async def post_traces(request: Request) -> Response:
        """OTLP/HTTP trace export (point `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` here). Spans of agents' tool calls,
        A2A delegations and MCP actions, following the GenAI semantic conventions with `gen_ai.agent.id` = the
        agent's did:key, become events; such a span without the did:key is rejected (partial_success), as is one
        whose `gen_ai.agent.id` is an org's did (as POST /v1/events rejects such an event), and a span of a field not
        as OTLP has it (a traceId not hex, a time not an unsigned 64-bit integer), alone; other spans are counted and
        ignored. A span stored once (by its trace and span id, and what it says) is not stored
        again when an exporter retries it, and is answered as accepted."""
        content_type = media_type(request)
        as_json = is_json(content_type)
        if not as_json and content_type != PROTOBUF:
            return error_response(415, "unsupported_media_type",
                                  "Content-Type: must be application/x-protobuf or application/json")
        decode = decode_json if as_json else decode_protobuf
        async with bodies.holding() as held:
            try:
                body, read_room = await read_body(request, MAX_TRACES_BYTES, SPANS_READ_PER_BYTE, held)
                batch = await read_request(functools.partial(_read_spans, decode, body, now_ms=ingestor.audit.clock()),
                                           len(body), read_room, reads, held)
            except _Refused as refusal:
                status, code, detail, headers = _counted(refusal, refused)
                return _otlp_error(status, code, detail, as_json, headers)
            except TooManySpans as error:
                return _otlp_error(413, "too_large", str(error), as_json)
            except OtlpError as error:
                return _otlp_error(400, "bad_request", str(error), as_json)
            prepared = ingestor.prepare_spans(batch)
            reply = await ingestor.commit_async(prepared) if isinstance(prepared, Pending) else prepared
        return Response(export_response(batch.rejected, reply.body["duplicates"], as_json=as_json),
                        media_type="application/json" if as_json else PROTOBUF)

    return router


def _counted(refusal: _Refused, refused: Refused) -> tuple[int, str, str, dict[str, str] | None]:
    """A refusal's status, code, detail and headers, told to `refused` if it is a 503 (busy)."""
    if refusal.status == 503:
        refused(refusal.status, refusal.code)
    return refusal.status, refusal.code, refusal.detail, refusal.headers


async def read_request(read: Callable[[], tuple[Read, int]], size: int, read_room: int, reads: ReadTurns,
                       held: Holding) -> Read:
    """What `read()` reads of a body of `size` bytes, in the `read_room` bytes `held` took for it before the body was
    read (read_body): what it turns out not to hold given back, or, should it hold more (node.read_bytes), the rest
    taken (waiting for room like the body's), to be held with the body's until the request is answered. Read on the
    event loop up to READ_ON_LOOP_BYTES, else on a worker thread in its turn among `reads`, its room open to others
    (node.body_budget) until then; raises _Refused (503 busy) if another request takes its room, or none is found
    for the rest of what it read."""
    try:
        if size <= READ_ON_LOOP_BYTES:
            result, holds = read()
        else:
            await held.turn(reads, size)
            try:
                result, holds = await trio.to_thread.run_sync(read)
            finally:
                reads.give_back()
        if holds > read_room:
            await held.take(holds - read_room)
        else:
            held.give_back(read_room - holds)
    except OverBudget as error:
        raise _busy(error) from None
    return result


def _read_events(body: bytes, *, now_ms: int) -> tuple[ReadBatch, int]:
    """A `POST /v1/events` batch read (pure: it may run on a worker thread), and the bytes that holds; raises
    BadBatch, TooLarge."""
    batch = read_batch(body, now_ms=now_ms)
    return batch, read_batch_bytes(batch)


def _read_spans(decode: Callable[[bytes], list[Span | MalformedSpan]], body: bytes, *,
                now_ms: int) -> tuple[SpanBatch, int]:
    """A trace export request's spans sorted out (pure: it may run on a worker thread), and the bytes that holds;
    raises OtlpError."""
    batch = sort_spans(decode(body), now_ms=now_ms)
    return batch, span_batch_bytes(batch)


def _otlp_error(status: int, code: str, detail: str, as_json: bool,
                headers: dict[str, str] | None = None) -> Response:
    """OTLP §Failures: a protobuf client gets a google.rpc.Status; a JSON client the API's error shape."""
    if as_json:
        return error_response(status, code, detail, headers)
    return Response(error_status(detail), status_code=status, media_type=PROTOBUF, headers=headers)
