"""Many writers of one running node at once (DESIGN §4, §8): vouches, revocations, event batches and traces posted
concurrently over loopback each land once, in one valid chain, with the answer naming the record stored; an
Idempotency-Key sent twice at once is stored once."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import httpx
import pytest
import trio

from gossip.store import RecordStore
from ledger import Ledger, tree_hash
from node.config import load_config
from node.daemon import Node, serve_node
from node.digests import DigestService
from node.events import decode_entry
from node.ingest import Pending
from node.setup import init_data_dir
from vouching import load_stored

from ..factories import new_did
from .in_process import LOOPBACK, running
from .telemetry_node import Clock, telemetry_node

pytestmark = pytest.mark.slow

WRITERS = 24
EPOCH = 60_000
T0 = 1_700_000_040_000  # an epoch's start


def event(agent: str) -> dict[str, Any]:
    return {"agent": agent, "ts": time.time_ns() // 1_000_000, "category": "tool", "name": "lookup", "outcome": "ok"}


def span_request(agent: str, span: int) -> dict[str, Any]:
    """An OTLP/JSON export request of one agent's tool call, its span id `span`."""
    now = time.time_ns()
    attrs = {"gen_ai.agent.id": agent, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"}
    return {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": f"{span:016x}", "name": "execute_tool", "kind": 1,
        "startTimeUnixNano": str(now - 2_000_000), "endTimeUnixNano": str(now),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()], "status": {}}]}]}]}


def check_chain(store: RecordStore, did: str) -> list[int]:
    """The seqs of `did`'s records in ledger order, after checking each names the one before it as prev."""
    seqs, prev = [], None
    for _, raw in store.query(issuer=did, after=-1, limit=10_000):
        record = load_stored(raw)
        assert record.prev == prev, f"seq {record.seq}: prev is not the record before it"
        seqs.append(record.seq)
        prev = record.id
    return seqs


async def test_concurrent_writes_each_land_once_in_one_valid_chain(tmp_path):
    agents = [new_did() for _ in range(WRITERS)]
    answers: dict[str, list[httpx.Response]] = {"vouch": [], "events": [], "traces": []}
    async with running(tmp_path / "a") as node, httpx.AsyncClient(
        base_url=node.api_url, headers={"Authorization": f"Bearer {node.token}"}, timeout=30
    ) as api:
        audit_before = node.telemetry.audit.size

        async def vouch(agent: str) -> None:
            answers["vouch"].append(await api.post("/v1/vouches", json={"subject": agent, "weight": 0.5,
                                                                         "basis": "operator"}))

        async def report(agent: str, number: int) -> None:
            answers["events"].append(await api.post("/v1/events", json={"events": [event(agent)] * 3},
                                                    headers={"Idempotency-Key": f"batch-{number}"}))
            answers["traces"].append(await api.post("/v1/traces", json=span_request(agent, number + 1)))

        async with trio.open_nursery() as nursery:
            for number, agent in enumerate(agents):
                nursery.start_soon(vouch, agent)
                nursery.start_soon(report, agent, number)

        assert {kind: Counter(r.status_code for r in rs) for kind, rs in answers.items()} == {
            "vouch": {201: WRITERS}, "events": {200: WRITERS}, "traces": {200: WRITERS}}
        store = node.replica.store
        for response in answers["vouch"]:
            view = response.json()
            assert store.index_of(bytes.fromhex(view["id"])) == view["index"]
            assert load_stored(store.ledger.entry(view["index"])).body.subject == view["body"]["subject"]
        assert sorted(r.json()["body"]["subject"] for r in answers["vouch"]) == sorted(agents)
        seqs = check_chain(store, node.did)
        assert seqs == list(range(1, len(seqs) + 1))
        assert node.telemetry.audit.size - audit_before == WRITERS * 4  # 3 events and a span each
        directory = node.config.data_dir
    with Ledger.open(directory / "records.ledger") as ledger, RecordStore.open(directory) as reopened:
        assert ledger.size == reopened.size
        # The chain read back holds the one read live, then the digests of epochs that closed after that read (the
        # node's epoch is 1 s: on a loaded machine it stopped seconds after that read, and signed some meanwhile).
        again = check_chain(reopened, node.did)
        assert again[:len(seqs)] == seqs and again == list(range(1, len(again) + 1))


async def test_two_revocations_of_one_vouch_at_once_store_one(tmp_path):
    async with running(tmp_path / "a") as node, httpx.AsyncClient(
        base_url=node.api_url, headers={"Authorization": f"Bearer {node.token}"}, timeout=30
    ) as api:
        vouch = (await api.post("/v1/vouches", json={"subject": new_did(), "weight": 0.5, "basis": "operator"})).json()
        statuses = []

        async def revoke(reason: str) -> None:
            statuses.append((await api.post("/v1/revocations", json={"record": vouch["id"], "reason": reason}))
                            .status_code)

        async with trio.open_nursery() as nursery:
            for number in range(4):
                nursery.start_soon(revoke, f"reason {number}")
        assert sorted(statuses) == [201, 409, 409, 409]
        assert len(node.replica.store.query(issuer=node.did, kind="revoke", after=-1, limit=10)) == 1


@pytest.mark.parametrize("same_body", [True, False])
async def test_one_idempotency_key_sent_twice_at_once_is_stored_once(tmp_path, same_body):
    one = event(new_did())  # one ts: the bodies are the same bytes when same_body, whatever the clock did
    bodies = [{"events": [one] * 2}, {"events": [one] * (2 if same_body else 3)}]
    async with running(tmp_path / "a") as node, httpx.AsyncClient(
        base_url=node.api_url, headers={"Authorization": f"Bearer {node.token}", "Idempotency-Key": "k1"}, timeout=30
    ) as api:
        audit = node.telemetry.audit
        before = audit.size
        answers: list[httpx.Response] = []

        async def post(body: dict[str, Any]) -> None:
            answers.append(await api.post("/v1/events", content=json.dumps(body),
                                          headers={"Content-Type": "application/json"}))

        async with trio.open_nursery() as nursery:
            for body in bodies:
                nursery.start_soon(post, body)
        first, second = sorted(answers, key=lambda r: "idempotent-replayed" in r.headers
                               or r.status_code != 200)
        assert (first.status_code, first.json()["accepted"]) in ((200, 2), (200, 3))
        assert audit.size - before == first.json()["accepted"]
        if same_body:
            assert (second.status_code, second.headers.get("idempotent-replayed")) == (200, "true")
            assert second.json() == first.json()
        else:
            assert (second.status_code, second.json()["error"]) == (422, "idempotency_key_reused")


async def test_writes_in_flight_at_shutdown_are_each_stored_once_acknowledged_or_retried(disk_path):
    """The node stopped (what SIGTERM does: its nursery cancelled) with 50 writes in flight: each vouch answered 201 is
    in the ledger after a restart, and each event batch is stored once, answered 200 before the stop or retried with
    its Idempotency-Key after it."""
    made = init_data_dir(disk_path / "a", network="test", listen=LOOPBACK, api="127.0.0.1:0")
    config = replace(load_config(made.data_dir), checkpoint_interval=0.2)
    agents = [new_did() for _ in range(25)]
    batches = [{"events": [event(agent)] * 3} for agent in agents]  # a retry sends the same body
    vouched: dict[str, dict[str, Any]] = {}
    reported: set[int] = set()
    answered, stop = 0, trio.Event()

    async def write(api: httpx.AsyncClient, number: int) -> None:
        nonlocal answered
        try:
            if number % 2:
                response = await api.post("/v1/vouches", json={"subject": agents[number // 2], "weight": 0.5,
                                                               "basis": "operator"})
            else:
                response = await api.post("/v1/events", json=batches[number // 2],
                                          headers={"Idempotency-Key": f"batch-{number}"})
        except httpx.TransportError:
            return  # no answer: the client may retry
        if response.is_success:
            if number % 2:
                vouched[agents[number // 2]] = response.json()
            else:
                reported.add(number)
        answered += 1
        if answered == 20:
            stop.set()

    async with trio.open_nursery() as running:
        node: Node = await running.start(serve_node, config)
        async with httpx.AsyncClient(base_url=node.api_url, timeout=30,
                                     headers={"Authorization": f"Bearer {node.token}"}) as api:
            async with trio.open_nursery() as writers:
                for number in range(50):
                    writers.start_soon(write, api, number)
                await stop.wait()
                running.cancel_scope.cancel()
    assert len(vouched) + len(reported) < 50  # some were cut short

    async with trio.open_nursery() as running:
        node = await running.start(serve_node, config)
        store = node.replica.store
        for agent, view in vouched.items():
            assert store.index_of(bytes.fromhex(view["id"])) == view["index"]
            assert load_stored(store.ledger.entry(view["index"])).body.subject == agent
        async with httpx.AsyncClient(base_url=node.api_url, timeout=30,
                                     headers={"Authorization": f"Bearer {node.token}"}) as api:
            for number in range(0, 50, 2):  # every batch retried: answered from the first if it was stored
                response = await api.post("/v1/events", json=batches[number // 2],
                                          headers={"Idempotency-Key": f"batch-{number}"})
                assert response.status_code == 200
                assert (response.headers.get("idempotent-replayed") == "true") >= (number in reported)
        assert node.telemetry.audit.size == 25 * 3
        seqs = check_chain(store, node.did)
        assert seqs == list(range(1, len(seqs) + 1))
        running.cancel_scope.cancel()


async def test_a_trace_export_sent_again_while_the_first_is_stored_is_stored_once(tmp_path):
    async with running(tmp_path / "a") as node, httpx.AsyncClient(
        base_url=node.api_url, headers={"Authorization": f"Bearer {node.token}"}, timeout=30
    ) as api:
        audit = node.telemetry.audit
        before, request = audit.size, span_request(new_did(), 7)
        answers: list[httpx.Response] = []

        async def export() -> None:
            answers.append(await api.post("/v1/traces", json=request))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(export)
        assert [r.status_code for r in answers] == [200] * 4
        assert not any(int(r.json().get("partialSuccess", {}).get("rejectedSpans", 0)) for r in answers)
        assert audit.size - before == 1


async def test_a_vouch_retried_with_its_idempotency_key_is_stored_once(tmp_path):
    async with running(tmp_path / "a") as node, httpx.AsyncClient(
        base_url=node.api_url, headers={"Authorization": f"Bearer {node.token}", "Idempotency-Key": "v1"}, timeout=30
    ) as api:
        body = {"subject": new_did(), "weight": 0.5, "basis": "operator"}
        first, retry = [(await api.post("/v1/vouches", json=body)).json() for _ in range(2)]
        assert retry["id"] == first["id"]
        assert len(node.replica.store.query(issuer=node.did, kind="vouch", after=-1, limit=10)) == 1


@pytest.mark.parametrize("seed", range(3))
async def test_epochs_closed_while_batches_are_being_stored_digest_each_event_once(tmp_path, seed, autojump_clock):
    """Batches stored on worker threads while the digest service closes their epochs: every event is counted in the
    digest of the epoch its entry's time falls in, once, and each digest's evidence root is its entries' hash."""
    rng = random.Random(seed)
    agents = [new_did() for _ in range(4)]
    clock = Clock(T0)
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        service = DigestService(node.digester, node.ingestor.write_lock, clock=clock)
        ingestor = node.ingestor

        async def report(agent: str, count: int) -> None:
            await trio.sleep(rng.random() / 100)
            pending = ingestor.prepare_json(json.dumps({"events": [
                {"agent": agent, "ts": clock.now, "category": "tool", "name": "n", "outcome": "ok"}] * count}).encode())
            assert isinstance(pending, Pending)
            await ingestor.commit_async(pending)

        async def close_epochs() -> None:
            for step in range(1, 4):
                await trio.sleep(rng.random() / 100)
                clock.now = T0 + step * EPOCH + rng.randrange(EPOCH)
                await service._close_due()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_epochs)
            for number in range(40):
                nursery.start_soon(report, agents[number % 4], 1 + number % 3)
        clock.now += 2 * EPOCH
        await service._close_due()

        entries = {}  # (agent, epoch) -> entries, in log order
        for entry in node.audit.ledger.entries(0, node.audit.size):
            at, event = decode_entry(entry)
            entries.setdefault((event.agent, at - at % EPOCH), []).append(entry)
        issued = {}
        for _, raw in node.store.query(issuer=node.replica.did, kind="digest", after=-1, limit=1000):
            body = load_stored(raw).body
            assert (body.agent, body.epoch) not in issued, "digested twice"
            issued[(body.agent, body.epoch)] = body
        assert issued.keys() == entries.keys()
        for key, body in issued.items():
            assert (body.events, body.evidence_root) == (len(entries[key]), tree_hash(entries[key]))
