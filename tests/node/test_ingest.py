"""POST /v1/events: valid events are kept whatever else the batch holds, each invalid one is reported, malformed
and oversized batches are refused whole, and a retried batch is stored once."""

import gzip
import json
import sqlite3
import threading
import uuid
import zlib
from functools import partial

import httpx
import trio
import trio.testing
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger import LedgerError
from node import ingest, ingest_api
from node.events import (MAX_AGE_MS, MAX_BATCH_BYTES, MAX_BATCH_CONTAINERS, MAX_BATCH_EVENTS, MAX_SKEW_MS,
                         decode_entry, parse_event)
from node.idempotency import WINDOW_MS, IdempotencyStore, StoredReply
from node.ingest import feed_first_hand, first_hand
from node.metrics import Registry
from node.read_bytes import read_batch_bytes
from node.retention import RetentionService
from node.strict_json import loads_strict
from vouching.scoring import TrustEngine

from ..factories import new_did
from .telemetry_node import AUTH, Clock, telemetry_node

AGENTS = [new_did() for _ in range(3)]
NOW = Clock().now


def event(agent=AGENTS[0], outcome="ok", **changes):
    return {"agent": agent, "ts": NOW - 10, "category": "tool", "name": "search", "outcome": outcome, **changes}


@pytest.fixture
def node(tmp_path):
    with telemetry_node(tmp_path) as node:
        yield node


@pytest.fixture
async def client(node):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://node") as client:
        yield client


def stored_events(node, start=0):
    return [decode_entry(e)[1].to_json() for e in node.audit.ledger.entries(start, node.audit.size)]


async def test_a_valid_batch_is_stored_before_the_answer(client, node):
    batch = [event(), event(AGENTS[1], "denied", high_risk=True, duration_ms=3, attrs={"tool": "rm"})]
    response = await client.post("/v1/events", json={"events": batch}, headers=AUTH)
    assert (response.status_code, response.json()) == (200, {"accepted": 2, "rejected": []})
    assert [e["agent"] for e in stored_events(node)] == [AGENTS[0], AGENTS[1]]
    assert node.metrics.value("events_accepted_total") == 2


async def test_a_long_batch_is_read_off_the_event_loop_a_short_one_on_it(client, node, monkeypatch):
    """A batch was parsed on the event loop at any size: 1 MiB of integers held it 0.07 s a request. One over
    READ_ON_LOOP_BYTES is now read on a worker thread, as a long trace export request is; both are stored."""
    read_on = []

    def read_batch_spy(body, *, now_ms):
        read_on.append(threading.get_ident())
        return ingest.read_batch(body, now_ms=now_ms)

    monkeypatch.setattr(ingest_api, "read_batch", read_batch_spy)
    short = json.dumps({"events": [event()]})
    for body in (short + " " * ingest_api.READ_ON_LOOP_BYTES, short):
        response = await client.post("/v1/events", content=body,
                                     headers={**AUTH, "Content-Type": "application/json"})
        assert (response.status_code, response.json()) == (200, {"accepted": 1, "rejected": []})
    assert read_on[0] != threading.get_ident() and read_on[1] == threading.get_ident()
    assert len(stored_events(node)) == 2


async def test_invalid_events_are_reported_by_index_and_the_rest_kept(client, node):
    batch = [event(), event(outcome="great"), event(ts="yesterday"), event(AGENTS[2])]
    response = await client.post("/v1/events", json={"events": batch}, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "rejected": [
        {"index": 1, "detail": "outcome: must be one of ok, error, denied, timeout"},
        {"index": 2, "detail": "ts: must be an integer of ms since the Unix epoch"},
    ]}
    assert [e["agent"] for e in stored_events(node)] == [AGENTS[0], AGENTS[2]]
    assert node.metrics.value("events_rejected_total", reason="outcome") == 1


async def test_events_naming_an_org_as_their_agent_are_refused_by_index_and_the_rest_kept(client, node):
    """A service given its org's did where its agent's was wanted had its events stored, and its node signed and
    gossiped digests of the org as an agent, which every peer then scored as one."""
    org = new_did()
    node.ingestor.org_not_agent = lambda did: "a trust root of this node" if did == org else None
    batch = [event(org), event(), event(outcome="great"), event(org, "denied")]
    response = await client.post("/v1/events", json={"events": batch}, headers=AUTH)
    said = f"agent: {org} is an org (a trust root of this node), not an agent"
    assert (response.status_code, response.json()) == (200, {"accepted": 1, "rejected": [
        {"index": 0, "detail": said},
        {"index": 2, "detail": "outcome: must be one of ok, error, denied, timeout"},
        {"index": 3, "detail": said},
    ]})
    assert [e["agent"] for e in stored_events(node)] == [AGENTS[0]]
    assert node.metrics.value("events_rejected_total", reason="agent") == 2
    response = await client.post("/v1/events", json={"events": [event(org)]}, headers=AUTH)
    assert response.status_code == 422 and response.json()["rejected"] == [{"index": 0, "detail": said}]


@pytest.mark.parametrize("unknown", ["ts.local", "startTimeUnixNano"])
async def test_an_unknown_field_is_counted_as_one_whatever_its_name(client, node, unknown):
    """The reason was read back out of the refusal's text: an unknown field named like a known one, or like a span's
    time field, was counted as that field's refusal."""
    response = await client.post("/v1/events", json={"events": [event(), event(**{unknown: 1})]}, headers=AUTH)
    assert response.json()["rejected"][0]["detail"].startswith(f"{unknown}: unknown field")
    assert [node.metrics.value("events_rejected_total", reason=r) for r in ("unknown_field", "ts")] == [1, 0]


async def test_a_batch_with_no_valid_event_is_422_with_the_reasons(client, node):
    response = await client.post("/v1/events", json={"events": [event(agent="me")]}, headers=AUTH)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_events" and body["rejected"][0]["index"] == 0
    assert node.audit.size == 0


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"events": {}}', b'{"events": [], "more": 1}', b"NaN",
                                  # Not I-JSON (node.strict_json), each read by Python's parser as a batch of one event
                                  json.dumps({"events": [event()]}).replace('"ok"',
                                                                            '"ok", "outcome": "error"').encode(),
                                  json.dumps({"events": [event(duration_ms=1)]}).replace(": 1}", ": 1e400}").encode(),
                                  json.dumps({"events": [event()]}).encode("utf-16")])
async def test_a_body_that_is_not_a_batch_is_400(client, node, body):
    response = await client.post("/v1/events", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] in ("bad_batch", "bad_request")
    assert node.audit.size == 0


async def test_too_many_events_is_413(client, node):
    response = await client.post("/v1/events", json={"events": [event()] * (MAX_BATCH_EVENTS + 1)}, headers=AUTH)
    assert (response.status_code, response.json()["error"]) == (413, "too_large")
    assert node.audit.size == 0


async def test_too_many_bytes_is_413_even_when_compressed(client, node):
    big = json.dumps({"events": [event(name="x" * 100)] * 1000, "pad": "y" * MAX_BATCH_BYTES}).encode()
    for headers, content in (({}, big), ({"Content-Encoding": "gzip"}, gzip.compress(big))):
        response = await client.post("/v1/events", content=content,
                                     headers={**AUTH, **headers, "Content-Type": "application/json"})
        assert response.status_code == 413
    assert node.audit.size == 0


async def test_a_batch_of_more_than_max_batch_containers_is_413_before_it_is_parsed(client, node, monkeypatch):
    """1 MiB of empty objects (1 KiB gzipped, half a million) took 0.26-0.50 s of the node's CPU to parse, holding
    the GIL its trio thread needs, as OTLP/JSON's did before node.otlp bounded them. They are counted before the body
    is parsed, and a batch at the bound is still read."""
    parsed = []
    monkeypatch.setattr(ingest, "loads_strict", lambda body: parsed.append(body) or loads_strict(body))
    shell = json.dumps({"events": [event(attrs={"a": []})]}).encode()  # 5 of them
    bodies = [shell.replace(b"[]", b"[" + b",".join([b"{}"] * n) + b"]") for n in (MAX_BATCH_CONTAINERS - 5,
                                                                                   MAX_BATCH_CONTAINERS - 4)]
    at_bound, over = [await client.post("/v1/events", content=gzip.compress(body), headers={
        **AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"}) for body in bodies]
    assert at_bound.status_code == 422
    assert at_bound.json()["rejected"][0]["detail"].startswith("attrs.a:")
    assert (over.status_code, over.json()["error"]) == (413, "too_large")
    assert over.json()["detail"] == f"body: at most {MAX_BATCH_CONTAINERS} JSON arrays and objects per request"
    assert parsed == [bodies[0]]
    assert node.audit.size == 0


@pytest.mark.parametrize(("path", "body"), [("/v1/events", {"events": [event()]}),
                                            ("/v1/traces", {"resourceSpans": [{"scopeSpans": [{"spans": [{}]}]}]})])
async def test_both_ingest_routes_read_a_json_type_as_json_and_refuse_a_body_of_no_type(client, node, path, body):
    """RFC 6839 §3.1: a `+json` type's body is JSON. Events refused one (415) but read a body of no type as JSON;
    traces took neither. Both now read JSON as the API's other JSON writes do (node.api.json_body), and answer an
    OTLP/JSON request as application/json."""
    content = json.dumps(body).encode()
    for kind in ("application/vnd.example+json", "Application/JSON; charset=utf-8"):
        response = await client.post(path, content=content, headers={**AUTH, "Content-Type": kind})
        assert response.status_code == 200, (kind, response.text)
        assert response.headers["content-type"] == "application/json"
    untyped = await client.post(path, content=content, headers=AUTH)
    assert (untyped.status_code, untyped.json()["error"]) == (415, "unsupported_media_type")
    assert node.audit.size == (2 if path == "/v1/events" else 0)
    assert node.metrics.value("spans_total", result="ignored") == (0 if path == "/v1/events" else 2)


@pytest.mark.parametrize("path", ["/v1/events", "/v1/traces"])
async def test_a_content_length_of_digits_that_are_not_ascii_is_not_read_as_a_number(client, node, path):
    # "²".isdigit() is true and int() refuses it (h11 refuses the header itself; another ASGI server might not)
    headers = [*AUTH.items(), ("Content-Type", "application/json"), (b"Content-Length", b"\xb2")]
    response = await client.post(path, content=json.dumps({"events": [event()]}).encode(), headers=headers)
    assert response.status_code == 200


async def test_gzip_bodies_are_accepted_and_corrupt_ones_refused(client, node):
    body = json.dumps({"events": [event()]}).encode()
    headers = {**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    assert (await client.post("/v1/events", content=gzip.compress(body), headers=headers)).status_code == 200
    response = await client.post("/v1/events", content=gzip.compress(body)[:-9], headers=headers)
    assert (response.status_code, response.json()["error"]) == (400, "bad_encoding")
    assert node.audit.size == 1


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_with_more_after_its_compressed_stream_is_refused_not_cut_short(client, node, encoding):
    """Two gzip members (RFC 1952 lets a file hold several) were read to the end of the first: its events stored,
    the second's lost, and the answer 200 as if all were taken."""
    compress = gzip.compress if encoding == "gzip" else zlib.compress
    first, second = (json.dumps({"events": [event(name=name)]}).encode() for name in ("first", "second"))
    headers = {**AUTH, "Content-Type": "application/json", "Content-Encoding": encoding}
    for path in ("/v1/events", "/v1/traces"):  # (both read their bodies alike; no span in it matters here)
        response = await client.post(path, content=compress(first) + compress(second), headers=headers)
        assert (response.status_code, response.json()["error"]) == (400, "bad_encoding")
        assert response.json()["detail"].startswith(f"body: {len(compress(second))} bytes after the end of the "
                                                    f"{encoding} data")
    assert node.audit.size == 0


async def test_a_write_without_the_token_is_refused(client, node):
    assert (await client.post("/v1/events", json={"events": [event()]})).status_code == 401
    assert node.audit.size == 0


async def test_a_retried_batch_is_answered_again_and_stored_once(client, node):
    batch = {"events": [event(), event(outcome="bad")]}
    headers = {**AUTH, "Idempotency-Key": "batch-1"}
    first = await client.post("/v1/events", json=batch, headers=headers)
    again = await client.post("/v1/events", json=batch, headers=headers)
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert node.audit.size == 1
    other = await client.post("/v1/events", json={"events": [event(AGENTS[1])]}, headers=headers)
    assert (other.status_code, other.json()["error"]) == (422, "idempotency_key_reused")
    assert node.audit.size == 1


async def test_a_retry_that_arrives_while_the_first_is_written_is_answered_only_once_it_is_stored(client, node,
                                                                                                   monkeypatch):
    """The retry found the key the first request had reserved, its append still under way, and was answered 200 at
    once: had the append failed (here) or the node crashed before its commit, the batch was acknowledged and lost."""
    batch, headers = {"events": [event()]}, {**AUTH, "Idempotency-Key": "k"}
    appending, fail = threading.Event(), threading.Event()
    real_append = node.audit.ledger.append

    def failing_append(entries):  # (on the ingest's worker thread)
        monkeypatch.setattr(node.audit.ledger, "append", real_append)
        appending.set()
        fail.wait()
        raise LedgerError("audit.ledger: append: disk I/O error")

    monkeypatch.setattr(node.audit.ledger, "append", failing_append)
    answers = {}

    async def post(name):
        answers[name] = await client.post("/v1/events", json=batch, headers=headers)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(post, "first")
        await trio.to_thread.run_sync(appending.wait)  # the key is reserved, the append under way
        nursery.start_soon(post, "retry")
        await trio.testing.wait_all_tasks_blocked()
        fail.set()
    assert answers["first"].status_code == 503
    assert (answers["retry"].status_code, answers["retry"].headers.get("Idempotent-Replayed")) == (200, None)
    assert node.audit.size == 1


async def test_idempotency_keys_survive_a_restart(tmp_path):
    batch = {"events": [event()]}
    headers = {**AUTH, "Idempotency-Key": "k"}
    for _ in range(2):
        with telemetry_node(tmp_path) as node:
            transport = httpx.ASGITransport(app=node.app())
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                assert (await client.post("/v1/events", json=batch, headers=headers)).status_code == 200
            size = node.audit.size
    assert size == 1


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ahead=st.integers(0, MAX_SKEW_MS), overtime=st.integers(-MAX_SKEW_MS, 2 * MAX_SKEW_MS))
@example(ahead=MAX_SKEW_MS, overtime=MAX_SKEW_MS)
def test_retention_keeps_a_key_for_as_long_as_its_batch_could_be_stored_again(node, ahead, overtime):
    """An event may be dated up to MAX_SKEW_MS ahead of the clock and is taken until MAX_AGE_MS after its date, so
    a batch can be stored again that long after its key's first use. Keys were forgotten MAX_AGE_MS after it: a
    batch of events dated ahead, retried then (retention forgets on its hourly run), was stored twice."""
    key, size = f"retry-{uuid.uuid4()}", node.audit.size  # (the node serves every example: a key of its own each)
    body = json.dumps({"events": [event(ts=NOW + ahead)]}).encode()
    node.clock.now = NOW
    assert node.ingestor.submit_json(body, key=key).status == 200
    node.clock.run(MAX_AGE_MS + overtime)
    retention = RetentionService(node.audit, node.idempotency, node.digester, Registry(), retention_days=180)
    retention.expire(retention.expiry_time())
    node.ingestor.submit_json(body, key=key)
    assert node.audit.size == size + 1


def test_a_key_reserved_for_an_append_that_never_happened_is_forgotten(tmp_path):
    with telemetry_node(tmp_path) as node:
        node.idempotency.reserve("lost", StoredReply(b"f", 200, b"{}"), first=0, count=1, at=NOW)
    store = IdempotencyStore.open(tmp_path, log_size=0)
    assert store.lookup("lost") is None
    store.close()


def test_opening_finds_the_keys_of_appends_that_never_happened_without_reading_every_key(tmp_path, monkeypatch):
    store = IdempotencyStore.open(tmp_path, log_size=0)
    store._db.execute("BEGIN")  # (one commit, not an fsync a key)
    for index in range(3000):
        store.reserve(f"k{index}", StoredReply(b"f", 200, b"{}"), first=index, count=1, at=NOW)
    store._db.execute("COMMIT")
    store.close()
    steps, connect = [], sqlite3.connect

    def counted(*args, **kwargs):
        db = connect(*args, **kwargs)
        db.set_progress_handler(lambda: steps.append(1), 10)  # called every 10 SQLite VM instructions
        return db

    monkeypatch.setattr(sqlite3, "connect", counted)
    store = IdempotencyStore.open(tmp_path, log_size=2999)  # the last batch was never appended
    assert (store.lookup("k2998"), store.lookup("k2999")) == (StoredReply(b"f", 200, b"{}"), None)
    store.close()
    assert len(steps) < 50  # the keys beyond the log, by index; reading every key took 1500 steps


async def test_a_bad_idempotency_key_is_400(client):
    response = await client.post("/v1/events", json={"events": [event()]},
                                 headers={**AUTH, "Idempotency-Key": "k" * 256})
    assert response.status_code == 400


def test_listeners_hear_each_stored_batch_and_first_hand_counts_it(node):
    heard = []
    node.ingestor.listeners.append(heard.append)
    batch = [event(), event(outcome="denied", high_risk=True), event(AGENTS[1], "error")]
    node.ingestor.submit_json(json.dumps({"events": batch}).encode())
    (appended,) = heard
    counts = first_hand(appended)
    assert counts[AGENTS[0]].outcomes == {"ok": 1, "error": 0, "denied": 1, "timeout": 0}
    assert counts[AGENTS[0]].high_risk == {"ok": 0, "error": 0, "denied": 1, "timeout": 0}
    assert counts[AGENTS[1]].outcomes["error"] == 1


def test_first_hand_evidence_moves_the_node_s_own_scores(node):
    engine = TrustEngine(node.replica.did)
    node.ingestor.listeners.append(partial(feed_first_hand, engine))
    before = engine.score(AGENTS[0], now=NOW).score
    batch = [event(AGENTS[0], "denied", high_risk=True)] * 20 + [event(AGENTS[1])] * 200
    node.ingestor.submit_json(json.dumps({"events": batch}).encode())
    assert engine.score(AGENTS[0], now=NOW).score < before < engine.score(AGENTS[1], now=NOW).score


def test_a_failing_listener_does_not_fail_the_batch(node):
    def broken(batch):
        raise RuntimeError("scoring is down")

    node.ingestor.listeners.insert(0, broken)
    reply = node.ingestor.submit_json(json.dumps({"events": [event()]}).encode())
    assert reply.body["accepted"] == 1 and node.audit.size == 1
    assert node.metrics.value("ingest_listener_errors_total") == 1


hostile = st.one_of(
    st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=8)), max_size=4),
    st.builds(lambda k, v: event(**{k: v}), st.sampled_from(["agent", "ts", "category", "name", "outcome",
                                                             "duration_ms", "high_risk", "attrs", "extra"]),
              st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=300), st.booleans())),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.builds(event, st.sampled_from(AGENTS)), hostile), max_size=20))
def test_whatever_else_a_batch_holds_its_valid_events_are_kept_in_order(node, values):
    values = [v if _is_json(v) else None for v in values]
    surely_valid = {i for i, v in enumerate(values)
                    if isinstance(v, dict) and v.get("agent") in AGENTS and v == event(v["agent"])}
    start = node.audit.size
    reply = node.ingestor.submit_json(json.dumps({"events": values}).encode())
    rejected = {r["index"] for r in reply.body.get("rejected", [])}
    kept = [i for i in range(len(values)) if i not in rejected]
    assert surely_valid <= set(kept)
    assert stored_events(node, start) == [parse_event(values[i], now_ms=NOW).to_json() for i in kept]


def _is_json(value):
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


async def test_twin_requests_racing_with_one_key_are_stored_once(node):
    body = json.dumps({"events": [event()]}).encode()
    first, second = (node.ingestor.prepare_json(body, key="twin") for _ in range(2))  # both before either stores
    replies = []

    async def commit(pending):
        replies.append(await node.ingestor.commit_async(pending))

    async with trio.open_nursery() as nursery:
        for pending in (first, second):
            nursery.start_soon(commit, pending)
    assert sorted(r.replayed for r in replies) == [False, True]
    assert {r.status for r in replies} == {200} and node.audit.size == 1


def test_a_clock_that_once_ran_a_year_ahead_does_not_stop_ingest(tmp_path):
    """Acceptance times never decrease, so after a batch accepted while the node's clock ran a year ahead, the log's
    floor stays there (across restarts too). Events were checked against that floor, so every correctly dated event
    was refused as more than 24 h old until the real clock caught up: a year without telemetry. They are checked
    against the clock; they keep acceptance times in log order. Idempotency keys, too, expire by the clock."""
    clock = Clock(NOW)
    with telemetry_node(tmp_path, clock=clock) as node:
        key = node.key
        clock.now = NOW + 365 * 24 * 3_600_000
        assert node.ingestor.submit_json(json.dumps({"events": [event(ts=clock.now)]}).encode()).status == 200
    clock.now = NOW + 60_000  # the operator fixed the clock
    with telemetry_node(tmp_path, key=key, clock=clock) as node:
        reply = node.ingestor.submit_json(json.dumps({"events": [event(ts=clock.now)]}).encode(), key="k")
        assert reply.body == {"accepted": 1, "rejected": []}
        ats = [decode_entry(e)[0] for e in node.audit.ledger.entries(0, node.audit.size)]
        assert ats == sorted(ats)
        assert node.idempotency.expire(clock.now + WINDOW_MS + 1) == 1


class _DiskFull:
    """An SQLite connection whose deletes fail as on a full disk (what else it is asked, it answers)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql, *args):
        if sql.startswith("DELETE"):
            raise sqlite3.OperationalError("disk I/O error")
        return self._db.execute(sql, *args)

    def executemany(self, sql, rows):
        return self._db.executemany(sql, rows)


def _full_disk(error):
    raise error


@pytest.mark.parametrize("then", ["retry", "unkeyed batch, then retry"])
def test_a_key_whose_append_failed_is_never_answered_as_stored(node, monkeypatch, then):
    """Disk full: a keyed batch's append failed, and so did forgetting the key reserved for it. Its retry was
    answered 200, replayed from the reservation, and nothing was stored; so was a retry after a batch without a key
    had filled the reservation's range (at a restart too: it forgets only the reservations beyond the log)."""
    body = json.dumps({"events": [event()]}).encode()
    with monkeypatch.context() as full:
        full.setattr(node.audit.ledger, "append",
                     lambda entries: _full_disk(LedgerError("audit.ledger: disk I/O error")))
        full.setattr(node.idempotency, "_db", _DiskFull(node.idempotency._db))
        with pytest.raises(LedgerError, match="audit.ledger: disk I/O error"):
            node.ingestor.submit_json(body, key="k")
    if then != "retry":
        assert node.ingestor.submit_json(json.dumps({"events": [event(AGENTS[1])]}).encode()).status == 200
    reply = node.ingestor.submit_json(body, key="k")
    assert (reply.status, reply.replayed) == (200, False)
    assert [e["agent"] for e in stored_events(node)][-1] == AGENTS[0]


@pytest.mark.parametrize("failing", ["audit", "idempotency"])
async def test_a_batch_the_disk_refuses_is_a_503_and_its_retry_is_stored_once(client, node, monkeypatch, failing):
    """A full disk: the batch was a 500 "internal", with a traceback logged twice for each request."""
    batch, headers = {"events": [event()]}, {**AUTH, "Idempotency-Key": "k"}
    with monkeypatch.context() as full:
        if failing == "audit":
            full.setattr(node.audit.ledger, "append",
                         lambda entries: _full_disk(LedgerError("audit.ledger: append: disk I/O error")))
        else:
            full.setattr(node.idempotency, "_db", _DiskFull(node.idempotency._db))
            node.idempotency.abandon(0)  # a failed append's rows that are not deleted yet
        response = await client.post("/v1/events", json=batch, headers=headers)
    assert (response.status_code, response.json()["error"]) == (503, "storage")
    named = {"audit": "audit.ledger: append: disk I/O error",
             "idempotency": f"{node.directory / 'idempotency.db'}: forget the keys of failed appends: disk I/O error"}
    assert named[failing] in response.json()["detail"] and node.audit.size == 0
    for replayed in (None, "true"):
        response = await client.post("/v1/events", json=batch, headers=headers)
        assert (response.status_code, response.headers.get("Idempotent-Replayed")) == (200, replayed)
    assert node.audit.size == 1


async def test_a_batch_that_finds_no_room_for_its_events_is_refused_before_it_is_read(node, monkeypatch,
                                                                                      autojump_clock):
    """Found by stop 45's review: a batch took room for the events it read once it had read them, and finding none
    was answered 503 busy then, parsed and checked for nothing. It now takes room for its body and its events
    (EVENTS_READ_PER_BYTE a byte) from its Content-Length before it is received: finding none, it is answered 503
    busy unread."""
    body = json.dumps({"events": [event(attrs={"query": "flights to Lisbon"}) for _ in range(40)]}).encode()
    read = read_batch_bytes(ingest.read_batch(body, now_ms=NOW))
    # (room for a second body, not for its read: without taking room for its read first, it was read, then refused)
    monkeypatch.setattr(ingest_api, "BODY_BYTES_AT_ONCE", 2 * len(body) + read + len(body) // 2)
    committing, commit_released = trio.Event(), trio.Event()
    commit, parse = node.ingestor.commit_async, ingest_api.read_batch
    reads = []

    async def held_commit(pending):
        committing.set()
        await commit_released.wait()
        return await commit(pending)

    def counted_read(body, *, now_ms):
        reads.append(len(body))
        return parse(body, now_ms=now_ms)

    monkeypatch.setattr(node.ingestor, "commit_async", held_commit)
    monkeypatch.setattr(ingest_api, "read_batch", counted_read)
    answers = []
    headers = {**AUTH, "Content-Type": "application/json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://node") as client:

        async def first() -> None:
            answers.append(await client.post("/v1/events", content=body, headers=headers))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await committing.wait()
            second = await client.post("/v1/events", content=body, headers=headers)
            commit_released.set()
    assert (second.status_code, second.json()["error"]) == (503, "busy")
    assert reads == [len(body)]  # (the second was parsed, its events checked, then refused)
    assert [answer.status_code for answer in answers] == [200] and node.audit.size == 40
    assert node.metrics.value("api_refusals_total", status="503", reason="busy") == 1
