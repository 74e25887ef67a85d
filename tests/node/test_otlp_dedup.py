"""POST /v1/traces: a span stored once, by its trace and span id and what it says, is not stored again when an
exporter retries it (OTLP/HTTP §Retryable Response Codes), in the same request or a later one, across a restart,
until it could no longer be accepted at all; the exporter is told it was accepted."""

import dataclasses
import json
import sqlite3
import tempfile
import threading
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from ledger import LedgerError
from node.events import MAX_AGE_MS, MAX_SKEW_MS, Event, decode_entry
from node import idempotency
from node.idempotency import WINDOW_MS, IdempotencyStoreError, span_content, span_key
from node.ingest import Pending
from node.metrics import Registry
from node.otlp import decode_json, sort_spans
from node.retention import RetentionService
from vouching import did_key

from .telemetry_node import Clock, telemetry_node
from .test_events import attr_values, events
from .test_ingest import _DiskFull, _full_disk
from .test_otlp import AGENT, START_NS, json_request, json_span

NOW = Clock().now
TRACE = "5b8efff798038103d269b633813fc60c"


@pytest.fixture
def node(tmp_path):
    with telemetry_node(tmp_path) as node:
        yield node


async def post(node, body, content_type="application/json"):
    content = json.dumps(body).encode() if content_type == "application/json" else body
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        return await client.post("/v1/traces", content=content, headers={"Content-Type": content_type})


def submit(node, body) -> None:
    """What the handler does with an OTLP/JSON request, without HTTP (hypothesis examples run outside trio)."""
    prepared = node.ingestor.prepare_spans(sort_spans(decode_json(json.dumps(body).encode()), now_ms=node.clock()))
    if isinstance(prepared, Pending):
        trio.run(node.ingestor.commit_async, prepared)


async def test_a_retried_request_stores_nothing_twice_and_is_answered_as_accepted(node):
    body = json_request(json_span(span_id=1), json_span("did:key:z6MkBad", span_id=2), json_span(span_id=3))
    first = await post(node, body)
    assert first.json()["partialSuccess"]["rejectedSpans"] == "1" and node.audit.size == 2
    again = await post(node, body)
    assert again.status_code == 200 and node.audit.size == 2
    partial = again.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"  # the broken span is still broken; the two stored ones are accepted
    assert partial["errorMessage"].startswith("2 span(s) already received, stored once; 1 span(s) rejected: ")
    assert node.metrics.value("event_batches_total") == 1
    assert {r: node.metrics.value("spans_total", result=r) for r in ("accepted", "duplicate", "rejected")} == {
        "accepted": 2, "duplicate": 2, "rejected": 2}


async def test_a_retried_protobuf_request_gets_a_warning_and_no_rejection(node):
    request = trace_service_pb2.ExportTraceServiceRequest()
    for span_id in (7, 8):
        span = request.resource_spans.add().scope_spans.add().spans.add(
            name="execute_tool", trace_id=bytes.fromhex(TRACE), span_id=span_id.to_bytes(8, "big"),
            start_time_unix_nano=START_NS, end_time_unix_nano=START_NS + 1000)
        for key, value in (("gen_ai.agent.id", AGENT), ("gen_ai.operation.name", "execute_tool")):
            span.attributes.add(key=key).value.string_value = value
    body = request.SerializeToString()
    assert (await post(node, body, "application/x-protobuf")).content == b""
    again = trace_service_pb2.ExportTraceServiceResponse.FromString(
        (await post(node, body, "application/x-protobuf")).content)
    assert again.partial_success.rejected_spans == 0  # OTLP §Partial Success: a warning, the data accepted
    assert again.partial_success.error_message == "2 span(s) already received, stored once"
    assert node.audit.size == 2


async def test_a_span_twice_in_one_request_is_stored_once(node):
    response = await post(node, json_request(json_span(span_id=5), json_span(span_id=6), json_span(span_id=5)))
    assert response.json()["partialSuccess"] == {"rejectedSpans": "0",
                                                 "errorMessage": "1 span(s) already received, stored once"}
    assert node.audit.size == 2


async def test_a_span_under_a_stored_span_s_ids_saying_something_else_is_stored_too_and_counted(node):
    """One who saw a span's ids (a W3C traceparent names the caller's span) and sent a span of its own under them
    first had the real one answered `already received` and dropped: an agent's denial never counted. A retry says
    what the span said; the same ids saying something else are now stored too, and counted as conflicting. Each is
    still stored once however often it is retried, in a request or across requests."""
    harmless = json_span(span_id=4, **{"vouchnet.outcome": "ok"})
    real = json_span(span_id=4, **{"vouchnet.outcome": "denied"})
    assert (await post(node, json_request(harmless))).json() == {}
    assert (await post(node, json_request(real, real))).json()["partialSuccess"] == {
        "rejectedSpans": "0", "errorMessage": "1 span(s) already received, stored once"}
    assert (await post(node, json_request(real, harmless))).json()["partialSuccess"]["errorMessage"] == (
        "2 span(s) already received, stored once")
    stored = [decode_entry(entry)[1].outcome for entry in node.audit.ledger.entries(0, node.audit.size)]
    assert stored == ["ok", "denied"]
    assert node.metrics.value("spans_conflicting_total") == 1
    assert node.metrics.value("spans_total", result="accepted") == 2


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(st.integers(1, 3), st.sampled_from(["ok", "error", "denied"])), max_size=6),
                max_size=4))
def test_each_span_is_stored_once_by_its_ids_and_what_it_says(node, requests):
    """However spans of a few ids, each saying one of a few things, are sent and retried, one of each is stored."""
    size = node.audit.size
    node.clock.now = NOW
    base = node.metrics.value("spans_conflicting_total")
    for spans in requests:
        submit(node, json_request(*(json_span(span_id=100 * size + n, **{"vouchnet.outcome": outcome})
                                    for n, outcome in spans)))
    sent = {pair for spans in requests for pair in spans}
    stored = [decode_entry(entry)[1] for entry in node.audit.ledger.entries(size, node.audit.size)]
    assert sorted((int(e.attrs["span_id"], 16) - 100 * size, e.outcome) for e in stored) == sorted(sent)
    ids = {n for n, _ in sent}
    assert node.metrics.value("spans_conflicting_total") - base == len(sent) - len(ids)


async def test_a_span_stored_before_its_content_was_kept_is_not_stored_again_whatever_it_says(node):
    """A node of the version before kept a span's ids alone: a span it stored, retried after the upgrade, is that
    span."""
    stored = json_span(span_id=3)
    node.idempotency.reserve_spans([(0, span_key(TRACE, stored["spanId"]))], first=0, at=NOW)
    node.audit.append(sort_spans(decode_json(json.dumps(json_request(stored)).encode()), now_ms=NOW).events)
    response = await post(node, json_request(stored, json_span(span_id=3, **{"vouchnet.outcome": "error"})))
    assert response.json()["partialSuccess"]["errorMessage"] == "2 span(s) already received, stored once"
    assert node.audit.size == 1 and node.metrics.value("spans_conflicting_total") == 0


# A span as the version before stored it, which hashed what the span says from Python's repr of its Event: its
# row's span_content, written by that version for json_span(FIXED_AGENT, span_id=7, vouchnet.outcome="denied") at NOW.
FIXED_AGENT = did_key(bytes(SigningKey(bytes(range(32))).verify_key))
REPR_CONTENT = bytes.fromhex("0f65fc2183486dab")
SPAN_CONTENT_V1 = "0ce9c0613f0ca336"  # what this version stores for it (SPAN_CONTENT_VERSION 1)


async def test_a_span_stored_by_the_version_that_hashed_its_repr_is_not_stored_again(node):
    """Rows written before what a span says was hashed from a fixed encoding still match it after the upgrade: the
    span is not stored twice, nor counted as conflicting; another span under its ids still is."""
    stored = json_span(FIXED_AGENT, span_id=7, **{"vouchnet.outcome": "denied"})
    node.idempotency.reserve_spans([(0, span_key(TRACE, stored["spanId"]) + REPR_CONTENT)], first=0, at=NOW)
    node.audit.append(sort_spans(decode_json(json.dumps(json_request(stored)).encode()), now_ms=NOW).events)
    response = await post(node, json_request(stored))
    assert response.json()["partialSuccess"]["errorMessage"] == "1 span(s) already received, stored once"
    assert node.audit.size == 1 and node.metrics.value("spans_conflicting_total") == 0
    await post(node, json_request(json_span(FIXED_AGENT, span_id=7, **{"vouchnet.outcome": "ok"})))
    assert node.audit.size == 2 and node.metrics.value("spans_conflicting_total") == 1


def test_what_a_span_says_does_not_hang_on_the_repr_of_its_event(monkeypatch):
    """The content stored for a span was a hash of its Event's repr: a release changing Event's fields (or its
    repr) would have had every span retried across the upgrade stored twice. It is now a hash of a fixed, versioned
    encoding of the event's fields (this vector is version 1's: a new encoding is a new SPAN_CONTENT_VERSION)."""
    event = sort_spans(decode_json(json.dumps(json_request(json_span(
        FIXED_AGENT, span_id=7, **{"vouchnet.outcome": "denied"}))).encode()), now_ms=NOW).events[0]
    content = span_content(event)
    monkeypatch.setattr(Event, "__repr__", lambda self: f"Event({self.agent!r}, ...)")
    assert span_content(event) == content == bytes.fromhex(SPAN_CONTENT_V1)


@given(events, st.data())
def test_what_a_span_says_is_every_field_of_its_event_and_not_the_order_of_its_attributes(event, data):
    again = dataclasses.replace(event, attrs=dict(reversed(event.attrs.items())))
    assert span_content(again) == span_content(event)
    changes = {
        "agent": dataclasses.replace(event, agent=FIXED_AGENT if event.agent != FIXED_AGENT else AGENT),
        "ts": dataclasses.replace(event, ts=event.ts ^ 1),
        "category": dataclasses.replace(event, category="tool" if event.category != "tool" else "mcp"),
        "name": dataclasses.replace(event, name=event.name + "x"),
        "outcome": dataclasses.replace(event, outcome="ok" if event.outcome != "ok" else "error"),
        "duration_ms": dataclasses.replace(event, duration_ms=None if event.duration_ms is not None else 0),
        "high_risk": dataclasses.replace(event, high_risk=not event.high_risk),
        "attrs": dataclasses.replace(event, attrs={**event.attrs, "a key longer than theirs": data.draw(attr_values)}),
    }
    assert span_content(changes[data.draw(st.sampled_from(sorted(changes)))]) != span_content(event)


@pytest.mark.parametrize("values", [(1, 1.0), (1, True), (0.0, False), (1.0, True)])
def test_an_attribute_s_number_and_boolean_are_what_the_span_says_not_alike(values):
    """Python takes 1, 1.0 and True for equal; the audit log stores them apart, and so does what a span says."""
    base = sort_spans(decode_json(json.dumps(json_request(json_span())).encode()), now_ms=NOW).events[0]
    one, other = (dataclasses.replace(base, attrs={"k": value}) for value in values)
    assert span_content(one) != span_content(other)


async def test_spans_without_ids_of_the_spec_s_lengths_are_stored_as_they_come(node):
    span = {**json_span(), "spanId": "abcd"}
    await post(node, json_request(span, span))
    assert node.audit.size == 2


@pytest.mark.parametrize("ids", [{"spanId": "0" * 16}, {"traceId": "0" * 32, "spanId": "ab" * 8},
                                 {"traceId": "0" * 32, "spanId": "0" * 16}])
async def test_spans_of_an_all_zero_id_are_stored_as_they_come_not_taken_for_one(node, ids):
    """The spec's invalid ids (a no-op or misconfigured tracer's): an exporter that sends them on every span had
    each one after its first answered `already received` and never stored, for 24 hours."""
    spans = [{**json_span(**{"gen_ai.tool.name": name}), **ids} for name in ("search", "book_flight")]
    response = await post(node, json_request(*spans))
    assert response.json() == {}
    assert node.audit.size == 2


async def test_spans_stored_before_a_restart_are_not_stored_again(tmp_path):
    body = json_request(json_span(span_id=1), json_span(span_id=2))
    for _ in range(2):
        with telemetry_node(tmp_path) as node:
            await post(node, body)
            size = node.audit.size
    assert size == 2


async def test_spans_reserved_for_an_append_that_never_happened_are_forgotten(tmp_path):
    body = json_request(json_span(span_id=1), json_span(span_id=2))
    with telemetry_node(tmp_path) as node:
        await post(node, json_request(json_span(span_id=9)))
        # the node dies between committing the span rows and appending their events
        node.idempotency.reserve_spans([(1, span_key(TRACE, f"{1:016x}")), (2, span_key(TRACE, f"{2:016x}"))],
                                       first=1, at=NOW)
    with telemetry_node(tmp_path) as node:
        await post(node, body)
        await post(node, json_request(json_span(span_id=9)))
        assert node.audit.size == 3


async def test_spans_whose_append_failed_are_stored_when_retried(node, monkeypatch):
    body = json_request(json_span(span_id=1))

    def failing(events):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(node.audit, "append", failing)
        with pytest.raises(OSError):
            await post(node, body)
    await post(node, body)
    assert node.audit.size == 1


@pytest.mark.parametrize("then", ["retry", "other spans, then retry"])
def test_spans_whose_append_failed_and_could_not_be_forgotten_are_stored_when_retried(node, monkeypatch, then):
    """Disk full: the append failed, and so did forgetting the span rows reserved for it. They are looked up as
    absent until they are deleted, which happens before the audit log grows again (and at a restart, as they lie
    beyond the log): else the retry would be answered as a duplicate with nothing stored."""
    body = json_request(json_span(span_id=1))
    with monkeypatch.context() as full:
        full.setattr(node.audit.ledger, "append", lambda entries: _full_disk(LedgerError("audit.ledger: disk full")))
        full.setattr(node.idempotency, "_db", _DiskFull(node.idempotency._db))
        with pytest.raises(LedgerError, match="disk full"):
            submit(node, body)
    if then != "retry":
        submit(node, json_request(json_span(span_id=2)))
    submit(node, body)
    assert node.audit.size == (1 if then == "retry" else 2)
    assert node.idempotency.stored_spans([span_key(TRACE, f"{1:016x}")])


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ahead=st.integers(0, MAX_SKEW_MS), overtime=st.integers(-MAX_SKEW_MS, 2 * MAX_SKEW_MS))
@example(ahead=MAX_SKEW_MS, overtime=MAX_SKEW_MS)
@example(ahead=0, overtime=-MAX_SKEW_MS)
def test_retention_keeps_a_span_for_as_long_as_it_could_be_stored_again(node, ahead, overtime):
    """A span dated up to MAX_SKEW_MS ahead is taken until MAX_AGE_MS after its date: retried whenever, it is
    stored once; past WINDOW_MS it is forgotten."""
    span = json_span(span_id=ahead * 10**6 + overtime + MAX_SKEW_MS + 1)  # (each example's own; 0 is no span id)
    span["startTimeUnixNano"] = str((NOW + ahead) * 1_000_000)
    span["endTimeUnixNano"] = str((NOW + ahead) * 1_000_000 + 1000)
    size = node.audit.size
    node.clock.now = NOW
    submit(node, json_request(span))
    retention = RetentionService(node.audit, node.idempotency, node.digester, Registry(), retention_days=180)
    retention.expire(retention.expiry_time())
    node.clock.run(MAX_AGE_MS + overtime)  # the node ran on for this long
    retention.expire(retention.expiry_time())
    submit(node, json_request(span))
    assert node.audit.size == size + 1
    node.clock.run(WINDOW_MS + 1 - MAX_AGE_MS - overtime)
    retention.expire(retention.expiry_time())
    assert not node.idempotency.stored_spans([span_key(TRACE, span["spanId"])])


def test_expiry_forgets_the_spans_stored_before_the_window_and_keeps_the_later_ones(node):
    old, new = json_span(span_id=1), json_span(span_id=2)
    submit(node, json_request(old))
    node.clock.now = NOW + 1000
    submit(node, json_request(new))
    retention = RetentionService(node.audit, node.idempotency, node.digester, Registry(), retention_days=180)
    retention.expire(retention.expiry_time())
    node.clock.run(WINDOW_MS + 1 - 1000)  # the node ran on for this long
    retention.expire(retention.expiry_time())
    assert set(node.idempotency.stored_spans([span_key(TRACE, s["spanId"]) for s in (old, new)])) == {
        span_key(TRACE, new["spanId"])}


def test_expiry_in_chunks_forgets_exactly_the_requests_before_the_window(node, monkeypatch):
    monkeypatch.setattr(idempotency, "_EXPIRE_CHUNK", 3)
    for request in range(5):  # 2 spans a request, a ms apart
        node.clock.now = NOW + request
        submit(node, json_request(json_span(span_id=2 * request + 1), json_span(span_id=2 * request + 2)))
    node.idempotency.expire(NOW + 3)
    ids = [span_key(TRACE, f"{n:016x}") for n in range(1, 11)]
    assert set(node.idempotency.stored_spans(ids)) == set(ids[6:])


async def test_retention_forgets_span_ids_off_the_event_loop(node, monkeypatch):
    """An hour's span ids are millions of rows, a microsecond or so each to delete: on the event loop, the node
    stood still for seconds every hour (benchmarks/otlp_ingest.py)."""
    threads = []
    monkeypatch.setattr(node.idempotency, "expire", lambda before: threads.append(threading.current_thread()))
    retention = RetentionService(node.audit, node.idempotency, node.digester, Registry(), retention_days=180)
    async with trio.open_nursery() as nursery:
        await nursery.start(retention.run)
        nursery.cancel_scope.cancel()
    assert len(threads) == 1 and threads[0] is not threading.main_thread()


class _CommitFails:
    """An SQLite connection whose COMMITs fail as on a full disk."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.executemany = db.executemany

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def execute(self, sql, *args):
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)


def test_a_reservation_whose_commit_fails_leaves_nothing_and_the_next_one_is_taken(node, monkeypatch):
    """The failed COMMIT left the transaction open: every later reservation failed ("cannot start a transaction
    within a transaction"), so every later request of spans was refused until a restart."""
    one, two = span_key(TRACE, f"{1:016x}"), span_key(TRACE, f"{2:016x}")
    with monkeypatch.context() as full:
        full.setattr(node.idempotency, "_db", _CommitFails(node.idempotency._db))
        with pytest.raises(IdempotencyStoreError, match="reserve spans: database or disk is full"):
            node.idempotency.reserve_spans([(0, one)], first=0, at=NOW)
    assert not node.idempotency.stored_spans([one])
    node.idempotency.reserve_spans([(0, two)], first=0, at=NOW)
    assert set(node.idempotency.stored_spans([one, two])) == {two}


_EDGE_BYTES = st.sampled_from([0x00, 0x01, 0xFE, 0xFF])  # ids of long shared prefixes, ending in 0x00 or 0xff
_IDS = st.lists(_EDGE_BYTES, min_size=24, max_size=24).map(bytes)
_CONTENTS = st.one_of(st.just(b""), st.lists(_EDGE_BYTES, min_size=8, max_size=8).map(bytes))


@settings(max_examples=60)
@example(rows={(b"\xff" * 24, b"\xff" * 8), (b"\xff" * 23 + b"\xfe", b"\xff" * 8), (b"\x00" * 24, b"")},
         others=[b"\x00" * 23 + b"\x01"], chunk=2)
@given(rows=st.sets(st.tuples(_IDS, _CONTENTS), max_size=12), others=st.lists(_IDS, max_size=4),
       chunk=st.integers(1, 5))
def test_the_spans_stored_under_ids_are_found_by_each_id_and_no_other(rows, others, chunk):
    """A span's rows are found by a range of ids (its 24 bytes, then any 8 of content, or none in a row stored before
    contents were kept), asked a chunk at a time: each id asked gets every content stored under it, whatever its
    bytes and its neighbours' (one content missed, a retried span is stored twice; one of another id's taken, a real
    span is dropped as a retry)."""
    asked = sorted({span for span, _ in rows} | set(others))
    with tempfile.TemporaryDirectory() as directory, pytest.MonkeyPatch.context() as patch:
        patch.setattr(idempotency, "_LOOKUP_CHUNK", chunk)
        store = idempotency.IdempotencyStore.open(Path(directory), log_size=len(rows))
        try:
            store.reserve_spans([(entry, span + content) for entry, (span, content) in enumerate(sorted(rows))],
                                first=0, at=NOW)
            found = store.stored_spans(asked)
        finally:
            store.close()
    expected: dict[bytes, set[bytes]] = {}
    for span, content in rows:
        expected.setdefault(span, set()).add(content)
    assert found == expected
