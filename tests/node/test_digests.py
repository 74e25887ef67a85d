"""Digests: one per active agent per epoch, counting each event exactly once across restarts, with an evidence
root an auditor can recompute from the audit log, and an epoch never digested twice."""

import base64
import functools
import gc
import json
import logging
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from nacl.signing import SigningKey
from hypothesis import given, settings
from hypothesis import strategies as st

import gossip.store
import node.audit_log as node_audit_log
import node.digests as node_digests
import node.trust as node_trust
from ledger import LedgerError, tree_hash
from node.clock_hold import CLOCK_HOLD_FILE
from node.digests import WAKE_SECONDS, DigestService, DigestState, DigestStateError
from node.events import decode_entry, decode_salted_entry
from node.metrics import Registry
from node.retention import DAY_MS, RetentionService
from node.stream import Broadcaster
from node.trust import TrustService
from gossip.replica import Replica
from vouching import DigestBody, did_key, load_stored, org_body, verify_record
from vouching.evidence import own_cap_good, report_strength
from vouching.params import HOUR_MS, ScoringParams
from vouching.policy import Policy

from ..factories import new_did
from .telemetry_node import Clock, TelemetryNode, telemetry_node

EPOCH = 60_000
T0 = 1_700_000_040_000  # an epoch boundary
A, B = new_did(), new_did()


def submit(node, *events):
    body = {"events": [{"agent": agent, "ts": node.clock.now, "category": category, "name": "n", "outcome": outcome,
                        "high_risk": risky} for agent, outcome, category, risky in events]}
    reply = node.ingestor.submit_json(json.dumps(body).encode())
    assert reply.body["accepted"] == len(events)


def digests(node):
    """Our digest records, as (agent, epoch) -> body."""
    found = {}
    for _, raw in node.store.query(issuer=node.replica.did, kind="digest", limit=10_000):
        body = verify_record(raw).body
        assert (body.agent, body.epoch) not in found, "an epoch was digested twice for one agent"
        found[(body.agent, body.epoch)] = body
    return found


def noise_shows(node) -> bool:
    """Whether some DP digest of ours publishes counts other than the raw ones kept for it: what a test of counting
    by the raw counts needs, or it could not fail (the noise is random, and 0 in a cell is its likeliest draw)."""
    return any((tuple(body.outcomes.values()), tuple(body.high_risk.values())) != node.digester.state.raw(epoch, agent)
               for (agent, epoch), body in digests(node).items())


def entries_of(node, agent, start, end):
    """The audit-log entries an auditor would select for (agent, [start, end))."""
    out = []
    for entry in node.audit.ledger.entries(0, node.audit.size):
        at, event = decode_entry(entry)
        if event.agent == agent and start <= at < end:
            out.append(entry)
    return out


@pytest.fixture
def clock():
    return Clock(T0 + 5)


def test_each_active_agent_gets_one_digest_when_its_epoch_ends(tmp_path, clock):
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (A, "ok", "tool", False), (A, "denied", "mcp", True), (B, "error", "a2a", False))
        clock.now += 1000
        submit(node, (A, "timeout", "error", False))
        assert node.digester.close_due(T0 + EPOCH - 1) == []
        records = node.digester.close_due(T0 + EPOCH)
        assert [r.body.agent for r in records] == sorted([A, B])
        assert [verify_record(r.raw) for r in records] == records  # what peers accept, exactly as returned
        found = digests(node)
        a = found[(A, T0)]
        assert (a.length, a.events, dict(a.outcomes)) == (EPOCH, 3, {"ok": 1, "error": 0, "denied": 1, "timeout": 1})
        assert dict(a.categories) == {"a2a": 0, "mcp": 1, "auth": 0, "tool": 1, "other": 1, "resource": 0}
        assert dict(a.high_risk) == {"ok": 0, "error": 0, "denied": 1, "timeout": 0}
        assert a.dp_epsilon is None
        for agent in (A, B):
            assert found[(agent, T0)].evidence_root == tree_hash(entries_of(node, agent, T0, T0 + EPOCH))
        assert node.metrics.value("digests_issued_total") == 2


def test_issuing_leaves_the_cycle_collector_as_it_found_it(tmp_path, clock, monkeypatch):
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (A, "ok", "tool", False))
        assert gc.isenabled() and len(node.digester.close_due(T0 + EPOCH)) == 1 and gc.isenabled()
        clock.now += EPOCH
        submit(node, (A, "ok", "tool", False))
        gc.disable()  # an embedding application's choice is kept
        try:
            assert len(node.digester.close_due(T0 + 2 * EPOCH)) == 1 and not gc.isenabled()
        finally:
            gc.enable()
        clock.now += EPOCH
        submit(node, (A, "ok", "tool", False))

        def refused(bodies, ts):
            raise RuntimeError("refused")

        monkeypatch.setattr(node.replica, "issue_digests", refused)
        with pytest.raises(RuntimeError, match="refused"):
            node.digester.close_due(T0 + 3 * EPOCH)
        assert gc.isenabled()


def test_events_after_the_end_count_in_the_next_epoch(tmp_path, clock):
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (A, "ok", "tool", False))
        node.digester.close_due(T0 + EPOCH + 10)
        clock.now = T0 + 3  # the wall clock stepped back: the next entries still belong to a later epoch
        submit(node, (A, "error", "tool", False))
        node.digester.close_due(T0 + 3 * EPOCH)
        found = digests(node)
        assert (found[(A, T0)].events, found[(A, T0 + EPOCH)].events) == (1, 1)


def test_a_restart_mid_epoch_loses_nothing_and_counts_nothing_twice(tmp_path, clock):
    key = None
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, (A, "ok", "tool", False), (B, "ok", "tool", False))
    for outcome in ("error", "denied"):
        with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
            submit(node, (A, outcome, "tool", False))
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        node.digester.close_due(T0 + EPOCH)
        a = digests(node)[(A, T0)]
        assert dict(a.outcomes) == {"ok": 1, "error": 1, "denied": 1, "timeout": 0}
        assert a.evidence_root == tree_hash(entries_of(node, A, T0, T0 + EPOCH))
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        assert node.digester.close_due(T0 + 10 * EPOCH) == []
        assert len(digests(node)) == 2


def test_epochs_that_ended_while_the_node_was_down_are_digested_on_start(tmp_path, clock):
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, (A, "ok", "tool", False))
        clock.now += EPOCH
        submit(node, (A, "ok", "tool", False), (A, "ok", "tool", False))
    clock.now += 5 * EPOCH
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        node.digester.close_due(clock.now)
        assert {epoch: body.events for (_, epoch), body in digests(node).items()} == {T0: 1, T0 + EPOCH: 2}


@pytest.mark.parametrize("crash_after_issuing", [False, True])
def test_an_epoch_interrupted_while_issuing_is_finished_exactly_once(tmp_path, clock, crash_after_issuing):
    class Crash(Exception):
        pass

    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, (A, "ok", "tool", False), (B, "error", "tool", False))
        if crash_after_issuing:
            node.digester.state.finish = lambda start: (_ for _ in ()).throw(Crash())
        else:
            node.replica.issue_digests = lambda bodies, ts: (_ for _ in ()).throw(Crash())
        with pytest.raises(Crash):
            node.digester.close_due(T0 + EPOCH)
        assert len(digests(node)) == (2 if crash_after_issuing else 0)
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        node.digester.close_due(T0 + 5 * EPOCH)
        found = digests(node)
        assert sorted(found) == sorted([(A, T0), (B, T0)])
        assert node.digester.close_due(T0 + 5 * EPOCH) == []
        assert node.digester.digested_until == T0 + EPOCH


def test_finishing_an_interrupted_epoch_yields_between_pages_of_its_entries(tmp_path, clock, monkeypatch):
    """The first `closing` after a start read the interrupted epoch's whole range of the audit log before its first
    yield, on the trio thread (DigestService, as the node starts), and a signal waited for all of it. It yields an
    empty chunk after each page of it now; stopped there, the next start finishes the epoch."""
    class Crash(Exception):
        pass

    agents = [new_did() for _ in range(5)]
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, *[(agent, "ok", "tool", False) for agent in agents])
        node.replica.issue_digests = lambda bodies, ts: (_ for _ in ()).throw(Crash())
        with pytest.raises(Crash):
            node.digester.close_due(T0 + EPOCH)
    monkeypatch.setattr(node_digests, "_REPLAY_PAGE", 2)
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        decoded = []
        monkeypatch.setattr(node_audit_log, "decode_salted_entry",
                            lambda entry: (decoded.append(entry), decode_salted_entry(entry))[1])
        closing = node.digester.closing(T0 + 5 * EPOCH)
        assert next(closing) == [] and len(decoded) == 2  # the node stops here, after the first page
        closing.close()
        assert digests(node) == {}
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        assert len(node.digester.close_due(T0 + 5 * EPOCH)) == 5
        assert sorted(agent for agent, _ in digests(node)) == sorted(agents)


def test_an_epoch_interrupted_while_issuing_then_a_key_rotation_is_not_digested_again_by_the_new_key(tmp_path, clock):
    """Stopped after the epoch's digests were stored and before its row was finished, then `vouchnet key rotate`:
    the restarted node looked for the epoch's digests under its new key only, and signed every one of them again, so
    the org published two digests of each agent for one epoch (and its trust replay counted the epoch's events as
    first-hand evidence besides)."""
    class Crash(Exception):
        pass

    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (A, "ok", "tool", False), (B, "error", "tool", False))
        node.digester.state.finish = lambda start: (_ for _ in ()).throw(Crash())
        with pytest.raises(Crash):
            node.digester.close_due(T0 + EPOCH)
        before = digests(node)
        successor = SigningKey.generate()  # as node.rotation rotates, with the node stopped
        node.replica.issue("org", org_body("org", "test", next=did_key(bytes(successor.verify_key))))
        Replica(successor, node.store, roots=(), max_hops=2, held_limit=10).issue(
            "org", org_body("org", "test", prior=node.replica.did))
    with telemetry_node(tmp_path, key=successor, clock=clock, epoch_ms=EPOCH) as node:
        assert list(node.digester.undigested()) == []  # (the trust replay's first-hand events: counted by the digests)
        assert node.digester.close_due(T0 + 5 * EPOCH) == []
        assert set(before) == {(A, T0), (B, T0)} and digests(node) == {}
        assert node.digester.digested_until == T0 + EPOCH


def test_the_interrupted_epoch_is_found_without_reading_every_epoch(tmp_path):
    state = DigestState.open(tmp_path)
    state._db.execute("BEGIN")  # (one commit, not an fsync a row)
    for epoch in range(T0, T0 + 3000 * EPOCH, EPOCH):
        state.begin(epoch, epoch + EPOCH, 0, 0, 0)
        state.finish(epoch)
    state._db.execute("COMMIT")
    state.begin(T0 + 3000 * EPOCH, T0 + 3001 * EPOCH, 0, 5, 7)
    steps = []
    state._db.set_progress_handler(lambda: steps.append(1), 10)  # called every 10 SQLite VM instructions
    assert state.unfinished() == (T0 + 3000 * EPOCH, T0 + 3001 * EPOCH, 0, 5, 7)
    assert len(steps) < 50  # reading every epoch's row took 900 steps
    state.close()


def test_an_interrupted_epoch_is_finished_as_begun_after_the_epoch_length_changed(tmp_path, clock):
    """A node that stopped while issuing an epoch, restarted with a shorter epoch_seconds: its entries span two
    of the new epochs, and the node could not start (a ValueError out of the digester)."""
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, (A, "ok", "tool", False))
        clock.now += EPOCH // 2
        submit(node, (A, "error", "tool", False))
        node.replica.issue_digests = lambda bodies, ts: (_ for _ in ()).throw(KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            node.digester.close_due(T0 + EPOCH)
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH // 2) as node:
        node.digester.close_due(T0 + EPOCH)
        ((agent, epoch), body), = digests(node).items()
        assert (agent, epoch, body.length, body.events) == (A, T0, EPOCH, 2)
        assert body.evidence_root == tree_hash(entries_of(node, A, T0, T0 + EPOCH))


def test_changing_the_epoch_length_never_overlaps_a_digested_interval(tmp_path, clock):
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, (A, "ok", "tool", False))
        node.digester.close_due(T0 + EPOCH)
    clock.now = T0 + EPOCH + 5
    longer = 7 * EPOCH
    end = clock.now - clock.now % longer + longer  # the longer epoch began before T0 + EPOCH
    assert end - longer < T0 + EPOCH
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=longer) as node:
        submit(node, (A, "ok", "tool", False))
        (record,) = node.digester.close_due(end)
        assert (record.body.epoch, record.body.length) == (T0 + EPOCH, end - T0 - EPOCH)


def test_dp_digests_keep_the_schema_invariants_and_declare_epsilon(tmp_path, clock):
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH, dp_epsilon=0.5) as node:
        submit(node, *[(A, "ok", "tool", i % 3 == 0) for i in range(40)], (B, "denied", "auth", True))
        records = node.digester.close_due(T0 + EPOCH)
        for record in records:
            body = verify_record(record.raw).body  # the digest rules hold for every noisy digest
            assert isinstance(body, DigestBody) and body.dp_epsilon == 0.5
        assert records[[r.body.agent for r in records].index(A)].body.events != 0


@asynccontextmanager
async def digest_service(directory: Path, epoch_ms: int = EPOCH) -> AsyncIterator[tuple[TelemetryNode,
                                                                                     Callable[[], None]]]:
    """A node whose DigestService runs on trio's clock (ms from T0), and a function that submits one event of A."""
    start = trio.current_time()

    def now() -> int:
        return T0 + int((trio.current_time() - start) * 1000)

    with telemetry_node(directory, clock=now, monotonic=trio.current_time, epoch_ms=epoch_ms) as node:
        def submit_one() -> None:
            event = {"agent": A, "category": "tool", "name": "n", "outcome": "ok", "ts": now()}
            node.ingestor.submit_json(json.dumps({"events": [event]}).encode())

        async with trio.open_nursery() as nursery:
            await nursery.start(DigestService(node.digester, node.ingestor.write_lock, clock=now).run)
            yield node, submit_one
            nursery.cancel_scope.cancel()


async def test_an_epoch_the_disk_refuses_is_counted_and_digested_at_the_next_epoch_s_end(tmp_path, autojump_clock,
                                                                                         monkeypatch, caplog):
    def full(entries):
        raise LedgerError("records.ledger: append: disk I/O error")

    async with digest_service(tmp_path) as (node, submit_one):
        submit_one()
        with monkeypatch.context() as disk:
            disk.setattr(node.store.ledger, "append", full)
            await trio.sleep(EPOCH / 1000 + 0.01)
        assert list(digests(node)) == [] and "digests not issued" in caplog.text
        assert node.metrics.value("digest_failures_total") == 1  # for an operator's alert
        await trio.sleep(EPOCH / 1000)
        assert list(digests(node)) == [(A, T0)]
        assert node.metrics.value("digest_failures_total") == 1


async def test_an_epoch_the_disk_refuses_is_tried_again_within_a_minute_as_its_line_says(tmp_path, autojump_clock,
                                                                                          monkeypatch, caplog):
    """The service wakes at least once a minute (WAKE_SECONDS), and each wake closes what is due: an operator who
    frees the disk finds the epoch's digests issued within a minute, not at the next epoch's end (an hour at the
    defaults), which the line and the alert table said."""
    hour = 3600 * 1000
    async with digest_service(tmp_path, epoch_ms=hour) as (node, submit_one):
        submit_one()
        with monkeypatch.context() as disk:
            disk.setattr(node.store.ledger, "append", _disk_full)
            await trio.sleep((node.digester.next_end(T0) - T0) / 1000 + 0.01)
        failed = [r.getMessage() for r in caplog.records if r.name == "node.digests" and r.levelname == "ERROR"]
        await trio.sleep(WAKE_SECONDS)
        assert list(digests(node)) == [(A, node.digester.next_end(T0) - hour)]
    assert len(failed) == 1 and "tried again within a minute" in failed[0]


async def test_the_service_digests_each_epoch_as_it_ends(tmp_path, autojump_clock):
    async with digest_service(tmp_path) as (node, submit_one):
        submit_one()
        await trio.sleep(EPOCH / 1000 + 0.01)
        assert list(digests(node)) == [(A, T0)]
        await trio.sleep(2.5 * EPOCH / 1000)  # quiet epochs issue nothing
        submit_one()
        await trio.sleep(EPOCH / 1000)
        assert list(digests(node)) == [(A, T0), (A, T0 + 3 * EPOCH)]


def test_an_epoch_is_issued_in_chunks_and_one_abandoned_between_them_is_finished_after_a_restart(tmp_path, clock,
                                                                                                  monkeypatch):
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 2)
    agents = [new_did() for _ in range(5)]
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, *[(agent, "ok", "tool", False) for agent in agents])
        closing = node.digester.closing(T0 + EPOCH)
        assert len(next(closing)) == 2  # the node stops here, between chunks
        closing.close()
        assert len(digests(node)) == 2
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        assert len(node.digester.close_due(T0 + 5 * EPOCH)) == 3
        assert sorted(agent for agent, _ in digests(node)) == sorted(agents)
        assert node.digester.close_due(T0 + 5 * EPOCH) == []


def test_with_dp_a_restart_keeps_the_node_s_first_hand_evidence_raw(tmp_path, clock):
    """The node's own scoring counts its raw events (issue 4). On a restart, TrustService.replay rebuilds that
    first-hand evidence from the node's own digests: with dp_epsilon set their published counts are noisy, and an
    agent that was never denied came back with violations (10 bad each) and lost its tier at its own org; the raw
    counts kept in digests.db count instead."""
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        live = trust_service(node)
        node.ingestor.listeners.append(live.on_events)
        agents = [new_did() for _ in range(5)]  # (noise that leaves one agent's counts as they were is not rare)
        submit(node, *[(agent, "ok", "tool", False) for agent in agents for _ in range(50)])
        clock.now = T0 + EPOCH
        node.digester.close_due(clock.now)
        assert noise_shows(node)
        expected = first_hand(live, agents, clock.now)
        assert first_hand(replayed(node), agents, clock.now) == expected


def test_a_restart_keeps_an_epoch_of_the_node_s_own_observations_in_its_own_cap_window(tmp_path):
    """Replayed on a restart, our digest of [epoch, end) counted as first-hand evidence at `end`, the first instant
    of the next cap window (hourly epochs and windows, the defaults): an hour in which the node saw an agent
    violate its policy was merged with the next hour's good events, its bad report diluted below the cap, and a
    restart lifted the agent from provisional to trusted."""
    hour = HOUR_MS
    start = T0 - T0 % hour
    clock = Clock(start + 1000)
    with telemetry_node(tmp_path, clock=clock, epoch_ms=hour) as node:
        key = node.key
        live = trust_service(node)
        node.ingestor.listeners.append(live.on_events)
        submit(node, *[(A, "ok", "tool", False)] * 300)
        clock.now += hour
        submit(node, (A, "denied", "tool", False))
        clock.now += hour
        assert len(node.digester.close_due(clock.now)) == 2
        submit(node, *[(A, "ok", "tool", False)] * 60)
        now = clock.now + 60_000
        expected = live.engine.score(A, now=now)
        assert expected.tier == "untrusted"  # (own good counts C/2 an hour: 300 good events count as few)
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=hour) as node:
        score = replayed(node).engine.score(A, now=now)
        assert (score.score, score.tier, score.caps) == (expected.score, expected.tier, expected.caps)


def test_a_restart_explains_the_node_s_own_observations_as_they_were_explained_live(tmp_path):
    """The explanation of a score (GET .../score?explain=true) is the same live and after a restart: live, the
    ingest fed the engine each batch of events at once; at a restart the undigested events come back from the audit
    log one by one, and each digested epoch as its digest. The first-hand part's `batches` was 2 live and 5 replayed
    (two batches, of 3 events and 2, in an open epoch), and, that epoch digested and a batch of 4 in the next, 3 live
    and 5 after a restart (the digest, and the 4 events one by one). It counts the epochs the observations fall in,
    as a peer counts the node's digests of them."""
    hour = HOUR_MS
    clock = Clock(T0 - T0 % hour + 1000)
    with telemetry_node(tmp_path, clock=clock, epoch_ms=hour) as node:
        key = node.key
        live = trust_service(node)
        node.ingestor.listeners.append(live.on_events)
        submit(node, *[(A, "ok", "tool", False)] * 3)
        clock.now += 60_000
        submit(node, (A, "ok", "tool", False), (A, "denied", "tool", False))
        assert replayed(node).explain(live.score(A)[0]) == live.explain(live.score(A)[0])
        clock.now += hour
        submit(node, *[(A, "ok", "tool", False)] * 4)
        assert len(node.digester.close_due(clock.now)) == 1
        expected = live.explain(live.score(A)[0])
        assert [part["batches"] for part in expected["orgs"]] == [2]
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=hour) as node:
        restarted = replayed(node)
        assert restarted.explain(restarted.score(A)[0]) == expected


def test_a_restart_keeps_the_bad_reports_of_an_epoch_longer_than_a_cap_window(tmp_path):
    """Live, the node's own events counted as they came, each cap window (an hour) of them a bad report of its own;
    replayed at a restart, an epoch's digest counted as one batch, one window, one report. With 3-hour epochs, an
    agent violating policy once in each hour among 30 good events had three reports live (provisional, held by
    recent-bad-reports) and one after a restart (trusted, 679). First-hand reports are now per epoch both ways
    (TrustEngine.add_own_epoch): the epoch's one report is there as soon as its first violation is, live."""
    epoch = 3 * HOUR_MS
    clock = Clock(T0 - T0 % epoch + 1000)
    with telemetry_node(tmp_path, clock=clock, epoch_ms=epoch) as node:
        key = node.key
        live = trust_service(node)
        node.ingestor.listeners.append(live.on_events)
        for hour in range(3):
            submit(node, *[(A, "ok", "tool", False)] * 30, (A, "denied", "tool", False))
            (part,) = live.engine.explain(A, now=clock.now).orgs
            assert part.recent_bad_reports == report_strength(30 * (hour + 1), 10 * (hour + 1), 10 * (hour + 1),
                                                              ScoringParams())
            clock.now += HOUR_MS
        assert len(node.digester.close_due(clock.now)) == 1
        now = clock.now + 60_000
        expected = live.engine.score(A, now=now)
        assert (expected.tier, expected.caps) == ("provisional", ())  # one window of own good alone: provisional
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=epoch) as node:
        assert replayed(node).engine.score(A, now=now) == expected


# A step of the event stream, one ingest batch: (ms the clock moves first, agent, outcome, high risk, how many such
# events, how many ok events of the other agent with them, whether the node restarts before them).
_STEPS = st.lists(st.tuples(st.integers(0, 2 * HOUR_MS), st.sampled_from([A, B]),
                            st.sampled_from(["ok", "ok", "ok", "error", "denied", "timeout"]), st.booleans(),
                            st.integers(1, 40), st.integers(0, 5), st.booleans()), min_size=1, max_size=25)


@settings(max_examples=40)
@given(epoch=st.sampled_from([20 * 60_000, HOUR_MS, 3 * HOUR_MS, 5 * HOUR_MS // 2]),
       dp_epsilon=st.sampled_from([None, 1.0]), steps=_STEPS, later=st.integers(0, 3 * 24 * HOUR_MS))
def test_first_hand_scores_are_the_same_live_and_after_any_restarts(epoch, dp_epsilon, steps, later):
    """Over epochs shorter than, as long as and longer than a cap window, and not aligned with them: a trust
    service fed every event as it came and one started again from what the node holds at each restart (its
    digests, their raw counts with DP, the undigested events), fed what comes after as the daemon feeds it, give
    every agent the same score and the same explanation, then and later: each step is one ingest batch of 1 to 45
    events of one agent or both, which a restart replays one by one (or as its epoch's digest)."""
    clock = Clock(T0 - T0 % (15 * HOUR_MS))
    with tempfile.TemporaryDirectory() as directory:
        options = dict(clock=clock, epoch_ms=epoch, dp_epsilon=dp_epsilon)
        node = TelemetryNode(Path(directory), SigningKey.generate(), **options)
        live = current = trust_service(node)
        node.ingestor.listeners.append(live.on_events)
        try:
            for advance, agent, outcome, risky, count, others, restart in steps:
                clock.now += advance
                node.digester.close_due(clock.now)  # as DigestService does at each epoch's end
                if restart:
                    node.close()
                    node = TelemetryNode(Path(directory), node.key, **options)
                    current = replayed(node)
                    node.ingestor.listeners += [live.on_events, current.on_events]
                other = B if agent == A else A
                submit(node, *[(agent, outcome, "tool", risky)] * count, *[(other, "ok", "tool", False)] * others)
            node.digester.close_due(clock.now + epoch)
        finally:
            node.close()
    for now in (clock.now, clock.now + epoch, clock.now + later):
        for agent in (A, B):
            assert current.engine.score(agent, now=now) == live.engine.score(agent, now=now)
            assert current.engine.explain(agent, now=now) == live.engine.explain(agent, now=now)


def test_a_restart_mid_issue_neither_loses_nor_counts_twice_the_node_s_first_hand_evidence(tmp_path, clock,
                                                                                           monkeypatch):
    """Stopped between two chunks of an epoch's DP digests, the node starts with its first-hand evidence as it was:
    the issued agents' from their raw counts, the others' from their audit entries until their digests are issued
    (after the start-up sync), and from their raw counts from then on."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 2)
    agents = [new_did() for _ in range(5)]
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        key = node.key
        live = trust_service(node)
        node.ingestor.listeners.append(live.on_events)
        submit(node, *[(agent, outcome, "tool", False) for agent in agents for outcome in ["ok"] * 20 + ["denied"]])
        clock.now = T0 + EPOCH
        closing = node.digester.closing(clock.now)
        next(closing)  # the node stops here, between chunks
        closing.close()
        expected = first_hand(live, agents, clock.now)
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        assert first_hand(replayed(node), agents, clock.now) == expected
        assert len(node.digester.close_due(clock.now)) == 3
        assert first_hand(replayed(node), agents, clock.now) == expected


def restored_mid_issue(tmp_path, agents, **options):
    """A node that signed the digests of an epoch of one entry of each of `agents` (entries 0, 1, ...), a digest a
    chunk (ISSUE_CHUNK 1), and a copy of its data directory taken after the first chunk: (the copy's path, the key,
    the digests in the order signed, the trust service fed every event as it came)."""
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=Clock(T0), epoch_ms=EPOCH, **options) as node:
        original = trust_service(node)
        node.ingestor.listeners.append(original.on_events)
        for agent in agents:
            submit(node, (agent, "ok", "tool", False))
        closing = node.digester.closing(T0 + EPOCH)
        issued = next(closing)
        shutil.copytree(tmp_path / "node", tmp_path / "backup")  # the operator's copy, taken mid-issue
        issued += [record for chunk in closing for record in chunk]
    return tmp_path / "backup", node.key, issued, original


def test_the_raw_counts_of_dp_digests_taken_back_after_a_restore_mid_issue_are_kept(tmp_path, monkeypatch):
    """A node restored from a copy taken as it signed an epoch's DP digests takes back, in its start-up sync, those
    it signed after the copy: it counts their agents' entries of the epoch meanwhile (Digester.counts_entries), but
    a restart counted those digests by their published noise, their raw counts being in the newer digests.db (1 ok
    came back as up to some tens of outcomes at epsilon 0.1). They are kept now as the digests come back, from the
    entries: a restart, before the epoch is finished or after, counts what the node counted live."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    agents = sorted(new_did() for _ in range(3))
    backup, key, issued, original = restored_mid_issue(tmp_path, agents, dp_epsilon=0.1)
    expected = first_hand(original, agents, T0 + EPOCH)
    with telemetry_node(backup, key=key, clock=Clock(T0 + EPOCH), epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        live = running(node)
        for record in issued[1:]:  # the start-up sync, in two batches
            node.replica.accept([record])
        assert first_hand(live, agents, T0 + EPOCH) == expected
    for _ in range(2):  # a restart before the epoch is finished (by the closing below), and one after
        with telemetry_node(backup, key=key, clock=Clock(T0 + EPOCH), epoch_ms=EPOCH, dp_epsilon=0.1) as node:
            assert first_hand(replayed(node), agents, T0 + EPOCH) == expected
            assert node.digester.close_due(T0 + EPOCH) == []  # (every digest of it is stored)


def test_the_raw_counts_of_dp_digests_of_an_epoch_open_in_the_copy_are_kept_as_they_come_back(tmp_path, clock):
    """A node restored from a copy taken while an epoch was open takes back, in its start-up sync, the DP digests it
    signed of that epoch after the copy: it counts the epoch's entries meanwhile (Digester.counts_entries), but a
    restart counted those digests by their published noise, the copy's digests.db keeping no raw counts of them.
    They are kept now as the digests come back, from the entries: a restart, before the epoch is closed or after,
    counts what the node counted live."""
    agents = [new_did() for _ in range(5)]  # (noise that leaves one agent's counts as they were is not rare)
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=clock, epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        key = node.key
        submit(node, *[(agent, outcome, "tool", False) for agent in agents for outcome in ("ok", "ok", "denied")])
        shutil.copytree(tmp_path / "node", tmp_path / "backup")  # the operator's copy, mid-epoch
        issued = node.digester.close_due(T0 + EPOCH)
        assert noise_shows(node)
    clock.now = T0 + EPOCH
    with telemetry_node(tmp_path / "backup", key=key, clock=clock, epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        live = running(node)
        expected = first_hand(live, agents, clock.now)
        node.replica.accept(issued)  # the start-up sync
        assert first_hand(live, agents, clock.now) == expected != []
    for _ in range(2):  # a restart before the epoch is closed (by the closing below), and one after
        with telemetry_node(tmp_path / "backup", key=key, clock=clock, epoch_ms=EPOCH, dp_epsilon=0.1) as node:
            assert first_hand(replayed(node), agents, clock.now) == expected
            assert node.digester.close_due(clock.now) == []  # (every digest of it is stored)


@pytest.mark.parametrize("dp_epsilon", [None, 0.1])
def test_a_digest_of_a_finished_interrupted_epoch_coming_back_late_counts_nothing_twice(tmp_path, monkeypatch,
                                                                                         dp_epsilon):
    """The copy's start-up sync reached a peer holding one of the digests signed after the copy, not the one holding
    the next: the first closing finishes the epoch, signing the next digest again at its seq, and counts_entries
    answers for it no more. That digest coming back later is not stored (the same record, or without DP noise drawn
    alike, one of another at the seq: a conflict), so the node's first-hand evidence stays what a restart counts."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    agents = sorted(new_did() for _ in range(3))
    backup, key, issued, original = restored_mid_issue(tmp_path, agents, dp_epsilon=dp_epsilon)
    with telemetry_node(backup, key=key, clock=Clock(T0 + EPOCH), epoch_ms=EPOCH, dp_epsilon=dp_epsilon) as node:
        live = running(node)
        node.replica.accept([issued[1]])  # the start-up sync
        assert len(node.digester.close_due(T0 + EPOCH)) == 1
        late = node.replica.accept([issued[2]])  # the peer reached later
        assert (late.accepted, late.duplicates, len(late.equivocations)) == (([], 0, 1) if dp_epsilon else ([], 1, 0))
        assert first_hand(live, agents, T0 + EPOCH) == first_hand(original, agents, T0 + EPOCH)
        assert first_hand(replayed(node), agents, T0 + EPOCH) == first_hand(live, agents, T0 + EPOCH)


def test_a_digests_db_older_than_the_audit_log_counts_no_first_hand_evidence_twice(tmp_path, clock):
    """digests.db restored alone from an older copy: the audit entries after its position were counted as
    undigested beside the digests of ours that already count them, twice until their epochs were closed again."""
    agents = [A, B]
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        live = trust_service(node)
        node.ingestor.listeners.append(live.on_events)
        submit(node, (A, "ok", "tool", False), (A, "denied", "tool", False), (B, "error", "tool", True))
    shutil.copy(tmp_path / "digests.db", tmp_path / "digests.db.bak")
    clock.now = T0 + EPOCH
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        assert len(node.digester.close_due(clock.now)) == 2
    shutil.copy(tmp_path / "digests.db.bak", tmp_path / "digests.db")
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        expected = first_hand(live, agents, clock.now)
        assert first_hand(replayed(node), agents, clock.now) == expected
        assert node.digester.close_due(clock.now) == []
        assert first_hand(replayed(node), agents, clock.now) == expected


def test_a_digests_db_ahead_of_the_audit_log_is_refused_by_name(tmp_path, clock):
    """The audit log restored from a copy older than digests.db: the node failed to start with an IndexError out of
    the audit log as the trust service asked for the entries after the digested ones (or, reading them by pages,
    started, and never digested the entries it then appended up to the one digests.db names)."""
    node_dir, backup = tmp_path / "node", tmp_path / "backup"
    node_dir.mkdir()
    with telemetry_node(node_dir, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
    shutil.copytree(node_dir, backup)
    with telemetry_node(node_dir, key=key, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (A, "ok", "tool", False))
        node.digester.close_due(T0 + EPOCH)
    for name in ("audit.ledger", "idempotency.db"):
        _replace(node_dir / name, backup / name)
    with pytest.raises(DigestStateError, match=r"digests.db: digested up to audit-log entry 1, but .*audit.ledger "
                                               r"holds 0: restored from copies of different times"):
        with telemetry_node(node_dir, key=key, clock=clock, epoch_ms=EPOCH) as node:
            list(node.digester.undigested())


@pytest.mark.parametrize("mid_issue", [False, True])
def test_a_digests_db_behind_what_retention_pruned_is_refused_by_name(tmp_path, clock, monkeypatch, mid_issue):
    """digests.db restored from a copy older than what retention has since pruned of the audit log (its own damage
    message says to restore it from a copy), taken before an epoch was digested or while it was: the node failed to
    start with a traceback of EntryPruned, out of the digester rebuilding the open epochs from entries whose bytes
    are gone (or, for the interrupted epoch, out of the trust service's replay)."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, (A, "ok", "tool", False), (B, "ok", "tool", False))
        if mid_issue:
            closing = node.digester.closing(T0 + EPOCH)
            next(closing)  # the node stops here, between chunks
            closing.close()
    shutil.copy(tmp_path / "digests.db", tmp_path / "digests.db.bak")
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        node.digester.close_due(T0 + EPOCH)
        clock.now = T0 + 2 * EPOCH
        RetentionService(node.audit, node.idempotency, node.digester, Registry(), retention_days=EPOCH / DAY_MS).prune()
        assert node.audit.ledger.pruned == 2
    shutil.copy(tmp_path / "digests.db.bak", tmp_path / "digests.db")
    with pytest.raises(DigestStateError, match=r"digests.db: needs the audit-log entries from 0 on .*, but "
                                               r".*audit.ledger keeps those from 2 on: restored from copies of "
                                               r"different times\? Restore both from one copy"):
        with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
            list(node.digester.undigested())


def _replace(path: Path, copy: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
        shutil.copytree(copy, path)
    else:
        shutil.copy(copy, path)


def trust_service(node, broadcaster: Broadcaster | None = None) -> TrustService:
    return TrustService(node.replica, roots=(), policy=Policy(), broadcaster=broadcaster or Broadcaster(Registry()),
                        metrics=Registry(), recompute_interval=60.0, epoch_ms=node.epoch_ms, clock=node.clock)


def replayed(node, broadcaster: Broadcaster | None = None) -> TrustService:
    """A trust service started as the daemon starts one, from what `node` holds."""
    trust = trust_service(node, broadcaster)
    trust.replay(node.digester.undigested(), node.digester.state.raw_reader())
    return trust


def running(node, broadcaster: Broadcaster | None = None) -> TrustService:
    """`replayed`, and told of our own records coming back from peers, as the daemon wires it; a rebuild of its
    engine while the node runs (after `vouchnet key adopt`) reads the undigested events again, as the daemon's does."""
    trust = trust_service(node, broadcaster)
    for _ in trust.replaying(node.digester.undigested(), node.digester.state.raw_reader(), reread=node.digester.reread,
                             ingest_lock=node.ingestor.write_lock):
        pass
    trust.engine.recompute(now=node.clock())
    node.replica.returned_listeners.append(node.digester.on_returned)
    node.replica.returned_listeners.append(functools.partial(
        trust.on_returned, raw=node.digester.state.raw, counts_entries=node.digester.counts_entries))
    return trust


def first_hand(trust: TrustService, agents: list[str], now: int) -> list[float]:
    """Each agent's first-hand good and bad at `now`, flat."""
    return [count for agent in agents for part in trust.engine.explain(agent, now=now).orgs
            for count in (part.good, part.bad)]


def test_with_dp_the_raw_counts_are_kept_across_a_restart_and_only_the_noisy_ones_published(tmp_path, clock):
    agent = new_did()
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        key = node.key
        submit(node, *[(agent, "ok", "tool", False)] * 7, (agent, "denied", "tool", True))
        node.digester.close_due(T0 + EPOCH)
        published = digests(node)[(agent, T0)]
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        assert node.digester.state.raw(T0, agent) == ((7, 0, 1, 0), (0, 0, 1, 0))
        assert node.digester.state.raw(T0, new_did()) is None
    assert (dict(published.outcomes), dict(published.high_risk)) != ({"ok": 7, "error": 0, "denied": 1, "timeout": 0},
                                                                     {"ok": 0, "error": 0, "denied": 1, "timeout": 0})


def test_the_raw_counts_of_a_chunk_are_kept_all_or_none(tmp_path):
    """keep_raw wrote each row in a transaction of its own (with synchronous = FULL, an fsync each)."""
    state = DigestState.open(tmp_path)
    with pytest.raises(sqlite3.IntegrityError):
        state.keep_raw(T0, {A: ((1, 0, 0, 0), (0, 0, 0, 0)), None: ((1, 0, 0, 0), (0, 0, 0, 0))})  # (no agent)
    assert state.raw(T0, A) is None


@pytest.mark.parametrize("damaged", ["7,0,1", "7,0,1,0,0", "7,0,-1,0", "7,x,1,0", "", "७,0,1,0"])
def test_a_damaged_raw_counts_row_is_refused_naming_the_row(tmp_path, damaged):
    """A row of raw_counts that is not one count per outcome stopped the node's start with a KeyError or ValueError
    out of the trust engine's replay, or (a negative count) replayed a count no event made."""
    state = DigestState.open(tmp_path)
    state.keep_raw(T0, {A: ((7, 0, 1, 0), (0, 0, 1, 0))})
    state._db.execute("UPDATE raw_counts SET outcomes = ?", (damaged,))
    with pytest.raises(DigestStateError, match=f"raw counts of {A} for epoch {T0} are damaged .*delete that row"):
        state.raw(T0, A)


def test_the_start_up_replay_reads_the_raw_counts_an_epoch_at_a_time(tmp_path, clock):
    """A query per own DP digest took 17 us (17 s of each start at 10^6 of them, benchmarks/replay.py)."""
    agents = [new_did() for _ in range(4)]
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH, dp_epsilon=1.0) as node:
        for epoch in range(3):
            clock.now = T0 + epoch * EPOCH
            submit(node, *[(agent, "ok", "tool", False) for agent in agents])
            assert len(node.digester.close_due(clock.now + EPOCH)) == 4
        queries = []
        node.digester.state._db.set_trace_callback(queries.append)
        replayed(node)
        assert len([query for query in queries if "FROM raw_counts" in query]) == 3



def test_the_start_up_replay_decodes_each_stored_record_once(tmp_path, clock, monkeypatch):
    """Our own digests were decoded twice, in the scan of every record and again in a scan of our own digests:
    decoding is most of a replay's time (benchmarks/replay.py)."""
    agents = [new_did() for _ in range(3)]
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, *[(agent, "ok", "tool", False) for agent in agents])
        node.digester.close_due(T0 + EPOCH)
        decoded = []
        monkeypatch.setattr(gossip.store, "load_stored", lambda raw: decoded.append(raw) or load_stored(raw))
        trust = replayed(node)
        assert sorted(decoded) == sorted(raw for _, raw in node.replica.store.query(limit=100))
        assert first_hand(trust, agents, T0 + EPOCH - 1) == [1.0, 0.0] * 3  # dated at its epoch's last instant


def test_a_start_decodes_each_undigested_audit_entry_once(tmp_path, clock, monkeypatch):
    """A start rebuilt the open epoch's tallies from the audit log, then decoded the same entries again for the trust
    replay (47 us an entry; 83,333 of them in a busy hour, benchmarks/startup.py --events)."""
    agents = [new_did() for _ in range(3)]
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, *[(agent, "ok", "tool", False) for agent in agents for _ in range(2)])
    decoded = []

    def counting(entry):
        decoded.append(entry)
        return decode_salted_entry(entry)

    monkeypatch.setattr(node_audit_log, "decode_salted_entry", counting)  # AuditLog.decoded, which the start reads by
    monkeypatch.setattr(node_trust, "decode_salted_entry", counting, raising=False)
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        trust = replayed(node)
        assert len(decoded) == node.audit.size == 6
        assert first_hand(trust, agents, T0 + 1) == [own_cap_good(ScoringParams()), 0.0] * 3  # 2 good, capped


def test_a_start_reads_our_digests_since_the_last_epoch_s_mark_a_page_at_a_time(tmp_path, clock, monkeypatch):
    """`undigested` read every digest of ours since the last epoch's mark (a digest an agent of that epoch) at once,
    on the loop: 1,000 held it for 27-58 ms at a start (benchmarks/startup.py). `rebuilding`, which a start steps
    through, reads them _ISSUED_PAGE at a time, yielding after each page, and `undigested` reads them no more."""
    monkeypatch.setattr(node_digests, "_ISSUED_PAGE", 2)
    agents = [new_did() for _ in range(5)]
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, *[(agent, "ok", "tool", False) for agent in agents])
        node.digester.close_due(T0 + EPOCH)
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        queries, query = [], gossip.store.RecordStore.query
        monkeypatch.setattr(gossip.store.RecordStore, "query", lambda store, **filters: (
            queries.append(filters), query(store, **filters))[1])
        digester = node_digests.Digester(node.audit, node.replica, node.digester.state, Registry(), epoch_ms=EPOCH,
                                         rebuild=False)
        assert [len(queries) for _ in digester.rebuilding()] == [1, 2, 3]  # ceil(5 / 2) pages, a step each
        assert {q["kind"] for q in queries} == {"digest"}
        assert list(digester.undigested()) == [] and len(queries) == 3
        assert digester._issued_since(0) == {(T0, agent) for agent in agents}  # as read at once


def test_digests_of_ours_stored_as_the_start_reads_them_are_in_what_undigested_reads(tmp_path, clock, monkeypatch):
    """`undigested` takes what `rebuilding` read of our digests only if no record was stored since: digests of ours
    stored after its last page's query but before it ended (a start-up sync bringing back those signed after the
    copy of the data directory) are in what it takes, as if read at once."""
    monkeypatch.setattr(node_digests, "_ISSUED_PAGE", 2)
    monkeypatch.setattr(node_digests, "ISSUE_CHUNK", 1)
    agents = [new_did() for _ in range(5)]
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, *[(agent, "ok", "tool", False) for agent in agents])
        closing = node.digester.closing(T0 + EPOCH)
        next(closing)
        shutil.copytree(tmp_path / "node", tmp_path / "backup")  # the operator's copy, one digest issued
        issued = [record for chunk in closing for record in chunk]
    with telemetry_node(tmp_path / "backup", key=key, clock=clock, epoch_ms=EPOCH) as node:
        digester = node_digests.Digester(node.audit, node.replica, node.digester.state, Registry(), epoch_ms=EPOCH,
                                         rebuild=False)
        steps = digester.rebuilding()
        next(steps)  # the page of the one digest stored, short: the read is done
        node.replica.accept(issued)  # the start-up sync, before the start goes on
        assert list(steps) == []
        mark = digester._store_mark
        assert digester._issued_since(mark) == digester._issued_since(mark) == {(T0, agent) for agent in agents}


def test_undigested_after_a_start_holds_the_entries_since_and_none_of_a_closed_epoch(tmp_path, clock):
    """The entries decoded at start serve `undigested` once; entries accepted since are read from the log, and those
    of an epoch digested since are not undigested."""
    a, b = new_did(), new_did()
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, (a, "ok", "tool", False))
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (b, "error", "tool", False))
        assert sorted(event.agent for _, event in node.digester.undigested()) == sorted([a, b])
        assert sorted(event.agent for _, event in node.digester.undigested()) == sorted([a, b])
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        clock.now = T0 + EPOCH
        submit(node, (b, "ok", "tool", False))
        node.digester.close_due(T0 + EPOCH)
        assert [(at, event.agent, event.outcome) for at, event in node.digester.undigested()] == [
            (T0 + EPOCH, b, "ok")]


_ROW = st.sampled_from(["7,0,1,0", "0,0,0,0", "12,3,0,1", "7,0,1", "7,-1,1,0", "", "७,0,1,0"])


@settings(max_examples=60)
@given(rows=st.dictionaries(st.tuples(st.sampled_from([T0, T0 + EPOCH, T0 + 2 * EPOCH]), st.sampled_from([A, B])),
                            st.tuples(_ROW, _ROW)),
       asks=st.lists(st.tuples(st.sampled_from([T0, T0 + EPOCH, T0 + 2 * EPOCH, T0 + 3 * EPOCH]),
                               st.sampled_from([A, B, new_did()])), max_size=20))
def test_the_start_up_reader_answers_as_raw_whatever_the_order_asked_in(rows, asks):
    """Kept rows, missing ones and damaged ones, epochs asked for again after another (returned digests): the reader
    the replay uses an epoch at a time answers each ask as DigestState.raw does, the same DigestStateError included."""
    with tempfile.TemporaryDirectory() as directory:
        state = DigestState.open(Path(directory))
        for (epoch, agent), (outcomes, high_risk) in rows.items():
            state._db.execute("INSERT INTO raw_counts VALUES (?, ?, ?, ?)", (epoch, agent, outcomes, high_risk))
        reader = state.raw_reader()
        for epoch, agent in asks:
            assert _answer(reader, epoch, agent) == _answer(state.raw, epoch, agent)
        state.close()


def _answer(raw, epoch, agent):
    """raw(epoch, agent), or the message of the DigestStateError it raised."""
    try:
        return raw(epoch, agent)
    except DigestStateError as error:
        return str(error)


def test_a_clock_that_once_ran_ahead_does_not_hold_back_the_digests_of_what_comes_after(tmp_path, clock):
    """A batch accepted while the node's clock ran a year ahead leaves the audit log's floor there, across restarts
    too: every event accepted after the clock was put right gets that acceptance time, lands in the epoch a year
    ahead, and is digested (signed with the real clock, which must be past the epoch's end) only a year later. The
    org publishes no digest for a year, and its peers see none of its agents' behaviour."""
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        clock.now = T0 + 365 * 24 * 3_600_000
        submit(node, (A, "ok", "tool", False))
    clock.now = T0 + 5  # the operator fixed the clock
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (B, "denied", "tool", False))
        clock.now += 2 * EPOCH
        node.digester.close_due(clock.now)
        assert B in {agent for agent, _ in digests(node)}


def last_at(node) -> int:
    return node.audit.at(node.audit.size - 1)


def our_digest_records(node):
    return [verify_record(raw) for _, raw in node.store.query(issuer=node.replica.did, kind="digest", limit=10_000)]


async def test_the_digest_service_closes_epochs_by_the_node_s_time_not_a_clock_stepped_ahead(tmp_path, clock):
    """Closing by the clock, the service closed an open epoch the moment the clock stepped a year ahead, and stamped
    its digests a year ahead: peers count evidence dated beyond their clock from that date only."""
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        service = DigestService(node.digester, node.ingestor.write_lock, clock=clock)
        submit(node, (A, "ok", "tool", False))
        clock.now = T0 + 365 * DAY_MS
        for _ in range(2):
            async with trio.open_nursery() as nursery:
                await nursery.start(service.run)  # it closes what is due as it starts
                nursery.cancel_scope.cancel()
            if _ == 0:
                assert our_digest_records(node) == []  # the epoch has not ended by the time the node has seen
                clock.run(EPOCH)
        (record,) = our_digest_records(node)
        assert (record.body.agent, record.body.epoch, record.ts) == (A, T0, T0 + 5 + EPOCH)


def test_a_node_stopped_for_days_dates_its_first_day_from_where_it_stopped_in_epochs_not_yet_digested(tmp_path,
                                                                                                       clock):
    """A node stopped for three days, its clock right, cannot tell it from a step ahead: for a day it accepts events
    (checked against the clock) at the time it has seen, from the end of the epoch it digested last on, closes
    their epochs as that time passes and stamps their digests with it (after the epoch's end, before the clock:
    never ahead of its peers'); then it takes the clock."""
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        submit(node, (A, "ok", "tool", False))
        node.digester.close_due(T0 + EPOCH)
    clock.now += 3 * DAY_MS  # stopped: no monotonic time runs between two processes
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (B, "ok", "tool", False))
        assert last_at(node) == T0 + EPOCH  # in no epoch already digested
        assert node.metrics.value("clock_held") == 1
        clock.run(EPOCH)
        (record,) = node.digester.close_due(node.audit.now())
        assert (record.body.agent, record.body.epoch) == (B, T0 + EPOCH)
        assert record.ts == T0 + 2 * EPOCH < clock.now
        clock.run(DAY_MS - EPOCH)
        submit(node, (B, "ok", "tool", False))
        assert last_at(node) == clock.now
        assert node.metrics.value("clock_held") == 0


def test_a_host_resumed_after_days_of_suspend_is_held_for_a_day_from_where_it_was_suspended(tmp_path, clock):
    """CLOCK_MONOTONIC does not count a suspend: the clock, three days on at the resume, is a step ahead of the
    time the node has seen, and events go on in the epoch of the suspend until the day is over."""
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (A, "ok", "tool", False))
        clock.now += 3 * DAY_MS
        submit(node, (B, "ok", "tool", False))
        assert last_at(node) == T0 + 5
        clock.run(EPOCH)
        records = node.digester.close_due(node.audit.now())
        assert {(r.body.agent, r.body.epoch, r.ts) for r in records} == {(A, T0, T0 + 5 + EPOCH),
                                                                         (B, T0, T0 + 5 + EPOCH)}
        clock.run(DAY_MS - EPOCH)
        submit(node, (A, "ok", "tool", False))
        assert last_at(node) == clock.now


def test_a_restart_during_the_hold_goes_on_with_it_from_where_it_stopped(tmp_path, clock):
    """The hold is saved (clock.hold) as the node stops: a node restarted half a day into it holds the rest of the
    day, its time running on from where it stopped; it started the day again from the log's latest time, so that a
    node restarted more often than daily never took its clock."""
    with telemetry_node(tmp_path, clock=clock, epoch_ms=DAY_MS) as node:
        key = node.key
        submit(node, (A, "ok", "tool", False))
        clock.now = T0 + 365 * DAY_MS
        submit(node, (A, "ok", "tool", False))
        assert node.metrics.value("clock_held") == 1
        clock.run(12 * HOUR_MS)  # no reading meanwhile: the stop saves it
    clock.mono = 0.0  # a new process, whose monotonic clock reads anything
    with telemetry_node(tmp_path, key=key, clock=clock, epoch_ms=DAY_MS) as node:
        assert node.metrics.value("clock_held") == 1
        clock.run(11 * HOUR_MS)
        submit(node, (A, "ok", "tool", False))
        assert last_at(node) == T0 + 5 + 23 * HOUR_MS
        assert node.metrics.value("clock_held") == 1
        clock.run(HOUR_MS)
        submit(node, (A, "ok", "tool", False))
        assert last_at(node) == clock.now
        assert node.metrics.value("clock_held") == 0
    assert not (tmp_path / CLOCK_HOLD_FILE).exists()


def test_a_clock_put_right_within_the_hold_is_taken_at_once(tmp_path, clock, caplog):
    caplog.set_level(logging.INFO, logger="node.node_time")
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (A, "ok", "tool", False))
        clock.now = T0 + 365 * DAY_MS
        submit(node, (A, "ok", "tool", False))
        assert node.metrics.value("clock_held") == 1
        clock.run(HOUR_MS)
        clock.now = T0 + 5 + HOUR_MS
        submit(node, (A, "ok", "tool", False))
        assert last_at(node) == T0 + 5 + HOUR_MS
        assert node.metrics.value("clock_held") == 0
    assert "clock back within a day of the time the node has seen" in caplog.text


def test_a_clock_put_back_for_over_a_day_then_right_is_taken_at_once(tmp_path, clock):
    """A clock stepped two days back, put right 30 hours later: the node's time stayed at the log's latest time
    meanwhile, but the time it had seen was the stepped-back reading plus the time run since, 18 hours behind that
    floor, so the clock put right (30 hours past the floor) was held as a step ahead for another day: every event of
    that day dated 30 hours late and clock_held raised for a clock that was right."""
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (A, "ok", "tool", False))
        floor = last_at(node)
        clock.now -= 2 * DAY_MS
        submit(node, (A, "ok", "tool", False))
        assert last_at(node) == floor  # not followed below the floor
        clock.run(30 * HOUR_MS)
        clock.now = floor + 30 * HOUR_MS  # put right
        submit(node, (B, "ok", "tool", False))
        assert last_at(node) == clock.now
        assert node.metrics.value("clock_held") == 0


def test_a_clock_put_back_below_the_log_s_latest_time_shows_how_far_and_says_so_once(tmp_path, clock, caplog):
    """Digests wait for a clock put back below the audit log's latest time to catch up: it was silent."""
    caplog.set_level(logging.INFO, logger="node.node_time")
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (A, "ok", "tool", False))
        assert node.metrics.value("clock_behind_seconds") == 0
        floor = last_at(node)
        clock.now -= 2 * HOUR_MS
        assert node.metrics.value("clock_behind_seconds") == 7200
        for _ in range(3):
            submit(node, (A, "ok", "tool", False))
            clock.run(HOUR_MS // 2)
        assert last_at(node) == floor
        assert node.metrics.value("clock_behind_seconds") == 1800
        assert caplog.text.count("clock behind the audit log's latest time") == 1
        clock.run(HOUR_MS // 2)
        submit(node, (B, "ok", "tool", False))
        assert node.metrics.value("clock_behind_seconds") == 0
        assert "clock caught up with the audit log's latest time" in caplog.text


def test_a_dp_digest_s_evidence_root_does_not_reveal_the_outcome_its_noise_hides(tmp_path, clock):
    """evidence_root was the Merkle root of exact entry bytes that held nothing secret: whoever knew an agent's one
    event of an epoch but its outcome (the peer it called knows the agent, the time to a second and the method)
    hashed the few candidates and read the outcome the DP noise on the counts was meant to hide. Each entry now holds
    a fresh random salt: the same event, accepted at the same moment, has another root each time, so no guess made
    without the entry finds it; the root still commits to the entry an auditor is shown."""
    roots, entries = [], []
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        with telemetry_node(tmp_path / run, clock=Clock(clock.now), epoch_ms=EPOCH, dp_epsilon=0.1) as node:
            node.ingestor.submit_json(json.dumps({"events": [
                {"agent": A, "ts": clock.now - 10, "category": "a2a", "name": "message/send",
                 "outcome": "denied"}]}).encode())
            (record,) = node.digester.close_due(T0 + EPOCH)
            roots.append(record.body.evidence_root)
            entries += entries_of(node, A, T0, T0 + EPOCH)
    assert decode_entry(entries[0]) == decode_entry(entries[1])  # the same event, accepted at the same time
    assert roots[0] != roots[1]
    assert roots == [tree_hash([entry]) for entry in entries]


def test_no_salt_leaves_the_audit_log_in_a_record_or_a_log_line(tmp_path, clock, caplog):
    """The salts are what keeps evidence roots from being guessed: a copy in a gossiped record or a log line would
    undo it for whoever reads it."""
    caplog.set_level(logging.DEBUG)
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        submit(node, (A, "denied", "a2a", False), (B, "ok", "tool", True))
        records = node.digester.close_due(T0 + EPOCH)
        salts = [decode_salted_entry(entry)[2] for entry in node.audit.ledger.entries(0, node.audit.size)]
    assert len(records) == 2 and len(salts) == 2
    logged = "\n".join(repr(vars(line)) for line in caplog.records)
    for salt in salts:
        assert not any(salt in record.raw for record in records)
        assert not any(form in logged for form in (repr(salt), salt.hex(), base64.b64encode(salt).decode()))


def test_a_node_restored_from_a_copy_taken_mid_issue_finishes_the_epoch_only_after_its_start_up_sync(tmp_path, clock,
                                                                                                    monkeypatch):
    """A copy taken while an epoch's digests were being issued (a row not done) was finished as the digester opened,
    before the start-up sync could bring back what the node signed after the copy: digests at seqs the network
    already held other records of, two records of the org at one seq (an equivocation)."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=clock, epoch_ms=EPOCH, dp_epsilon=1.0) as node:
        key = node.key
        submit(node, (A, "ok", "tool", False), (B, "denied", "tool", False))
        closing = node.digester.closing(T0 + EPOCH)
        issued = next(closing)
        shutil.copytree(tmp_path / "node", tmp_path / "backup")  # the operator's copy, taken mid-issue
        issued += [record for chunk in closing for record in chunk]
    with telemetry_node(tmp_path / "backup", key=key, clock=clock, epoch_ms=EPOCH, dp_epsilon=1.0) as node:
        node.replica.accept(issued)  # the start-up sync, before the node signs anything
        assert node.digester.close_due(T0 + EPOCH) == []
        assert [node.store.at(node.replica.did, r.seq) for r in issued] == [r.raw for r in issued]


def test_a_node_restored_from_an_older_copy_does_not_digest_an_epoch_again(tmp_path, clock):
    """README: a node restored from an older copy of its data directory takes back, by sync, the records it signed
    since, digests among them. Its digests.db went back too, so it digested those epochs a second time: two
    digests of one agent and epoch, with fresh DP noise (averaging the noise away) and counted twice."""
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=clock, epoch_ms=EPOCH, dp_epsilon=1.0) as node:
        key = node.key
        submit(node, (A, "ok", "tool", False), (B, "denied", "tool", False))
        shutil.copytree(tmp_path / "node", tmp_path / "backup")  # the operator's copy, taken mid-epoch
        issued = node.digester.close_due(T0 + EPOCH)
    with telemetry_node(tmp_path / "backup", key=key, clock=clock, epoch_ms=EPOCH, dp_epsilon=1.0) as node:
        node.replica.accept(issued)  # the startup sync brings them back before the node signs anything
        assert node.digester.close_due(T0 + EPOCH) == []
        assert sorted(digests(node)) == sorted([(A, T0), (B, T0)])  # (digests() also fails on a twin)


def test_a_restored_node_counts_the_digests_it_signed_since_its_copy_as_they_come_back(tmp_path, clock):
    """The trust engine skips the node's own digests as records (their events count as they come), so those taken
    back by sync after a restore from an older copy counted nothing until the next restart's replay: the evidence
    since the copy was missing from the node's own scores."""
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        shutil.copytree(tmp_path / "node", tmp_path / "backup")  # the operator's copy, before A's events
        submit(node, *[(A, "ok", "tool", False)] * 3, (A, "denied", "tool", True))
        issued = node.digester.close_due(T0 + EPOCH)
    clock.now = T0 + EPOCH
    broadcaster = Broadcaster(Registry())
    with telemetry_node(tmp_path / "backup", key=key, clock=clock, epoch_ms=EPOCH) as node:
        live = running(node, broadcaster)
        before, _ = live.score(A)
        with broadcaster.subscribe() as subscription:
            node.replica.accept(issued)  # the start-up sync
            frame = subscription.receive.receive_nowait()
        assert first_hand(live, [A], clock.now) == first_hand(replayed(node), [A], clock.now) != []
        assert live.score(A)[0].score != before.score
        assert b"event: score" in frame and A.encode() in frame


def test_a_returned_digest_of_events_the_restored_node_still_holds_counts_them_once(tmp_path, clock):
    """The copy holds some of the epoch's events of A, counted as undigested at the start: the digest of them coming
    back counts nothing more until a restart, whose replay counts the digest and not the events."""
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        original = trust_service(node)
        node.ingestor.listeners.append(original.on_events)
        submit(node, (A, "ok", "tool", False), (A, "denied", "tool", False))
        shutil.copytree(tmp_path / "node", tmp_path / "backup")  # the operator's copy, mid-epoch
        submit(node, *[(A, "error", "tool", True)] * 2)
        issued = node.digester.close_due(T0 + EPOCH)
    clock.now = T0 + EPOCH
    with telemetry_node(tmp_path / "backup", key=key, clock=clock, epoch_ms=EPOCH) as node:
        live = running(node)
        copied = first_hand(live, [A], clock.now)
        node.replica.accept(issued)  # the start-up sync
        assert first_hand(live, [A], clock.now) == copied
    with telemetry_node(tmp_path / "backup", key=key, clock=clock, epoch_ms=EPOCH) as node:
        once = first_hand(original, [A], clock.now)
        assert first_hand(replayed(node), [A], clock.now) == once and once != copied


def test_a_returned_digest_of_an_interrupted_epoch_s_events_counts_them_once(tmp_path, clock, monkeypatch):
    """The copy taken while the epoch's digests were being issued: the events of the agents not issued by then count
    as undigested at the start, and their digests coming back count nothing more."""
    monkeypatch.setattr("node.digests.ISSUE_CHUNK", 1)
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=clock, epoch_ms=EPOCH) as node:
        key = node.key
        original = trust_service(node)
        node.ingestor.listeners.append(original.on_events)
        submit(node, (A, "ok", "tool", False), (B, "denied", "tool", False), (B, "ok", "tool", False))
        closing = node.digester.closing(T0 + EPOCH)
        issued = next(closing)
        shutil.copytree(tmp_path / "node", tmp_path / "backup")  # the operator's copy, taken mid-issue
        issued += [record for chunk in closing for record in chunk]
    with telemetry_node(tmp_path / "backup", key=key, clock=clock, epoch_ms=EPOCH) as node:
        live = running(node)
        node.replica.accept(issued)  # the start-up sync
        assert first_hand(live, [A, B], clock.now) == first_hand(original, [A, B], clock.now)


def test_a_returned_dp_digest_counts_by_its_raw_counts_where_kept(tmp_path, clock):
    """The records store restored from a copy older than digests.db (which keeps the raw counts of the DP digests
    signed since): the digests coming back count as the node saw their events, not as their noise."""
    agents = [new_did() for _ in range(5)]  # (noise that leaves one agent's counts as they were is not rare)
    (tmp_path / "node").mkdir()
    with telemetry_node(tmp_path / "node", clock=clock, epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        key = node.key
        original = trust_service(node)
        node.ingestor.listeners.append(original.on_events)
        submit(node, *[(agent, outcome, "tool", False) for agent in agents for outcome in ["ok"] * 20 + ["denied"]])
        shutil.copytree(tmp_path / "node", tmp_path / "backup")
        issued = node.digester.close_due(T0 + EPOCH)
    for name in ("records.ledger", "records.index"):
        _replace(tmp_path / "node" / name, tmp_path / "backup" / name)
    clock.now = T0 + EPOCH
    with telemetry_node(tmp_path / "node", key=key, clock=clock, epoch_ms=EPOCH, dp_epsilon=0.1) as node:
        live = running(node)
        node.replica.accept(issued)  # the start-up sync
        assert noise_shows(node)
        expected = first_hand(original, agents, clock.now)
        assert first_hand(live, agents, clock.now) == expected


def _disk_full(*args, **options):
    raise LedgerError("records.ledger: append: disk I/O error")


@pytest.mark.parametrize("failing", ["begin", "issue", "finish"])
def test_an_epoch_whose_digests_could_not_be_written_is_finished_by_the_next_close(tmp_path, clock, monkeypatch,
                                                                                 failing):
    """A full disk while an epoch closes: the node runs on (DigestService), and the next close issues what the epoch
    still lacks, once, without a restart. Its tallies were dropped as it began, so it was digested only after one."""
    with telemetry_node(tmp_path, clock=clock, epoch_ms=EPOCH) as node:
        submit(node, (A, "ok", "tool", False), (B, "error", "tool", False))
        target = {"begin": (node.digester.state, "begin"), "issue": (node.replica, "issue_digests"),
                  "finish": (node.digester.state, "finish")}[failing]
        with monkeypatch.context() as full:
            full.setattr(*target, _disk_full)
            with pytest.raises(LedgerError):
                node.digester.close_due(T0 + EPOCH)
        clock.now = T0 + EPOCH + 5
        submit(node, (A, "ok", "tool", False))
        node.digester.close_due(T0 + 2 * EPOCH)
        assert {key: body.events for key, body in digests(node).items()} == {
            (A, T0): 1, (B, T0): 1, (A, T0 + EPOCH): 1}
        assert node.digester.close_due(T0 + 3 * EPOCH) == []


async def test_the_service_runs_on_when_digests_cannot_be_written_and_issues_them_once_they_can(
        tmp_path, autojump_clock, monkeypatch, caplog):
    """A storage error out of an epoch's close stopped the digest service, and with it the whole node (and again at
    every start while the disk stayed full): tests/node/crash_node.py's disk-full run."""
    async with digest_service(tmp_path) as (node, submit_one):
        submit_one()
        with monkeypatch.context() as full:
            full.setattr(node.replica, "issue_digests", _disk_full)
            await trio.sleep(EPOCH / 1000 + 0.01)
        assert digests(node) == {}
        failed = [r for r in caplog.records if r.name == "node.digests" and r.levelname == "ERROR"]
        assert [r.exc_info for r in failed] == [None]
        assert "records.ledger: append: disk I/O error" in failed[0].getMessage()
        await trio.sleep(EPOCH / 1000)
        assert list(digests(node)) == [(A, T0)]
