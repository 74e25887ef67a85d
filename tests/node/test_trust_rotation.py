"""The node's trust service counts keys linked by a rotation (DESIGN.md §2) as one org: roots and its own org by
either key, its own digests under an earlier key as first-hand, and a link that joins a key the engine already
knew as an org moves what named it onto the org."""

import contextlib
import functools
import gc
import json
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from gossip.replica import Replica
from node import engine_snapshot
from node.events import Event
from node.metrics import Registry
from node.stream import Broadcaster, Subscription
import node.trust as node_trust
from node.trust import TrustService
from vouching import Record, digest_body, engine_state, org_body, vouch_body
from vouching.batch import ScoreTable
from vouching.feed import feed_record
from vouching.params import HOUR_MS
from vouching.policy import Policy
from vouching.scoring import SnapshotCopy, TrustEngine

from ..factories import Org, new_did
from .fake_node import fake_node
from .telemetry_node import Clock, TelemetryNode, telemetry_node

NOW = Org.ts + 2 * HOUR_MS
EPOCH = 60_000
T0 = 1_700_000_040_000  # an epoch boundary


def _service(replica: Replica, broadcaster: Broadcaster | None = None, *, roots: tuple[str, ...] = (),
             clock: Callable[[], int] = lambda: NOW, epoch_ms: int = HOUR_MS,
             snapshot_dir: Path | None = None) -> TrustService:
    metrics = Registry()
    return TrustService(replica, roots=roots, policy=Policy(), broadcaster=broadcaster or Broadcaster(metrics),
                        metrics=metrics, recompute_interval=60.0, epoch_ms=epoch_ms, clock=clock,
                        snapshot_dir=snapshot_dir)


def _listening(trust: TrustService, undigested: Iterable[tuple[int, Event]] = ()) -> TrustService:
    """The service replayed and listening, as node.daemon starts it."""
    trust.replay(undigested)
    trust.replica.listeners.append(trust.on_records)
    return trust


def _digest(org: Org, agent: str, hour: int, **outcomes: int) -> Record:
    counts = {"ok": 0, "error": 0, "denied": 0, "timeout": 0, **outcomes}
    return org.record("digest", digest_body(
        agent, epoch=Org.ts - (10 - hour) * HOUR_MS, length=HOUR_MS, outcomes=counts,
        categories={"tool": sum(counts.values()), "mcp": 0, "a2a": 0, "auth": 0, "resource": 0, "other": 0},
        high_risk={"ok": 0, "error": 0, "denied": 0, "timeout": 0}, evidence_root=b"\0" * 32,
    ))


# ------------------------------------------------------------------------------------------------- the merge


@pytest.mark.parametrize("late", [True, False], ids=["link-last", "link-first"])
def test_the_scores_are_those_of_an_engine_that_knew_the_link_from_the_start(tmp_path, caplog, late):
    """A partner's vouch for the new key, and the old key's own vouch for it, arrive before the old key's rotation
    record (link-last): the engine knew the new key as an org until the rotation arrived, and then moves what named
    it onto the org; the new key's own records (its revocation of the old key's vouch among them) were set aside
    until then. With the rotation first (link-first), only the old key's vouch named the new key before. Either way
    the scores and their explanations are exactly those of an engine fed every record with the link known from the
    start."""
    partner, old = Org(), Org()
    operated, operated_later, observed = new_did(), new_did(), new_did()
    by_old = [old.record("vouch", vouch_body(operated, 1.0, "operator")),
              *(_digest(old, observed, hour, ok=30) for hour in range(3))]
    new = Org()
    self_vouch = old.vouch(new.did)  # the old key's vouch for its own next key: the org vouching for itself
    new, rotation, first = old.rotate(new)
    names_new = [partner.vouch(new.did, 0.6)]
    by_new = [new.record("vouch", vouch_body(operated_later, 1.0, "operator")), new.revoke(by_old[0]),
              *(_digest(new, observed, hour, ok=30) for hour in range(3, 6))]
    agents = [operated, operated_later, observed]
    with fake_node(tmp_path) as node:
        trust = _listening(_service(node.replica))
        ours = [node.replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer")) for org in (partner, old)]
        by_old.append(self_vouch)
        if late:
            for batch in (names_new, by_old, [first]):
                assert node.replica.accept(batch).accepted == batch
            assert node.replica.accept(by_new).unlinked == len(by_new)
        caplog.set_level(logging.INFO, logger="node.trust")
        engine = trust.engine
        for batch in ([rotation], by_new) if late else (by_old, [rotation], [first], names_new, by_new):
            assert node.replica.accept(batch).accepted == batch
        assert node.replica.succession.keys(new.did) == (old.did, new.did) and trust.engine is engine
        reference = TrustEngine(node.did)
        for record in [*ours, *by_old, rotation, first, *names_new, *by_new]:
            feed_record(reference, record, node.replica.succession.identity)
        reference.recompute(now=NOW)
        trust.engine.recompute(now=NOW)
        for agent in agents:
            assert trust.engine.explain(agent, now=NOW) == reference.explain(agent, now=NOW)
        assert trust.engine.orgs(now=NOW) == reference.orgs(now=NOW)
        assert trust.engine.reputations(now=NOW) == reference.reputations(now=NOW)
    merges = [r for r in caplog.records if r.name == "node.trust" and "joined a key" in r.getMessage()]
    assert [r.levelno for r in merges] == [logging.INFO]


@pytest.mark.parametrize("root", ["old", "new"])
def test_a_root_named_by_either_key_is_the_org(tmp_path, root):
    """A root configured as the new key, before the link is known, was an org of its own: the link moves it."""
    old, agent, vouched = Org(), new_did(), Org()
    new, rotation, first = old.rotate()
    root_did = old.did if root == "old" else new.did
    with fake_node(tmp_path, roots=(root_did,)) as node:
        node.replica.issue("vouch", vouch_body(old.did, 0.3, "org-peer"))  # so that its rotation is in the horizon
        trust = _listening(_service(node.replica, roots=(root_did,)))
        for batch in [[rotation], [first, new.record("vouch", vouch_body(agent, 1.0, "operator")),
                                   new.vouch(vouched.did)]]:
            assert node.replica.accept(batch).accepted == batch
        assert trust.org(new.did) == trust.org(old.did) and trust.org(old.did)["root"]
        assert trust.org(vouched.did)["reputation"] > 0 and trust.score(agent)[0].tier == "provisional"


# ------------------------------------------------------------------------------------- this node's own digests


def _submit(node: TelemetryNode, agent: str, outcome: str, count: int) -> None:
    body = {"events": [{"agent": agent, "ts": node.clock.now, "category": "tool", "name": "n", "outcome": outcome,
                        "high_risk": False} for _ in range(count)]}
    assert node.ingestor.submit_json(json.dumps(body).encode()).body["accepted"] == count


def test_the_nodes_digests_under_its_earlier_key_are_first_hand_not_a_peers(tmp_path):
    """The node ran with one key, digested an epoch, rotated, and restarted with its successor: what it digested
    under the old key is still its own first-hand evidence."""
    old_key, agent = Org().key, new_did()
    clock = Clock(T0 + 5)
    with telemetry_node(tmp_path, key=old_key, clock=clock, epoch_ms=EPOCH) as node:
        _submit(node, agent, "denied", 6)
        assert len(node.digester.close_due(T0 + EPOCH)) == 1
        new = Org()
        node.replica.issue("org", org_body("me", "test", next=new.did))
        old_did = node.replica.did
    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        node.replica.issue("org", org_body("me", "test", prior=old_did))  # as node.rotation signs it
        trust = _listening(_service(node.replica, clock=lambda: T0 + 2 * EPOCH, epoch_ms=EPOCH),
                           node.digester.undigested())
        (part,) = trust.engine.explain(agent, now=T0 + 2 * EPOCH).orgs
        assert part.first_hand and part.org == old_did and part.events == 6
        assert trust.org(node.replica.did)["own"] and trust.score(agent)[0].tier == "untrusted"


def _adopted(tmp_path: Path, clock: Clock, agent: str, *, partner: str | None = None,
             digests: int = 1) -> tuple[Org, str, list[Record]]:
    """A node's data directory as `vouchnet key adopt` leaves it: the old key digested an epoch of `agent` (6
    denied), vouched for `partner`'s org (if given) and for 20 agents, and signed its rotation, and the node's key is
    the successor; what the successor signed in the newer copy of the directory (its first record, naming the old
    key back, and `digests` digests of other agents), for peers to give back. The successor, the old key's did and
    those records."""
    new = Org()
    with telemetry_node(tmp_path, key=Org().key, clock=clock, epoch_ms=EPOCH) as node:
        _submit(node, agent, "denied", 6)
        assert len(node.digester.close_due(T0 + EPOCH)) == 1
        if partner is not None:
            node.replica.issue("vouch", vouch_body(partner, 0.9, "org-peer"))
        node.replica.issue_many("vouch", [vouch_body(new_did(), 0.5, "operator") for _ in range(20)])
        node.replica.issue("org", org_body("me", "test", next=new.did))
        old_did = node.replica.did
    return new, old_did, [new.record("org", org_body("me", "test", prior=old_did)),
                              *(_digest(new, new_did(), 9 - n % 5, error=4, ok=n) for n in range(digests))]


def _running(node: TelemetryNode, broadcaster: Broadcaster, now: int, snapshot_dir: Path | None = None) -> TrustService:
    """The trust service of `node` replayed and listening, as node.daemon starts it (its `run` is the caller's)."""
    trust = _service(node.replica, broadcaster, clock=lambda: now, epoch_ms=EPOCH, snapshot_dir=snapshot_dir)
    for _ in trust.replaying(node.digester.undigested(), node.digester.state.raw_reader(),
                             reread=node.digester.reread, ingest_lock=node.ingestor.write_lock):
        pass
    trust.engine.recompute(now=now)
    node.replica.listeners.append(trust.on_records)
    node.replica.returned_listeners.append(functools.partial(trust.on_returned, raw=node.digester.state.raw,
                                                             counts_entries=node.digester.counts_entries))
    node.ingestor.listeners.append(trust.on_events)
    return trust


async def _announced(subscription: Subscription, agent: str, score: int) -> None:
    """Wait for the stream to announce `score` for `agent`."""
    async for frame in subscription.receive:
        event = json.loads(frame.decode().split("data: ", 1)[1])
        if event["type"] == "score" and event["agent"] == agent and event["score"] == score:
            return


async def test_after_key_adopt_the_old_keys_digests_count_first_hand_once_the_successor_comes_back(
        tmp_path, caplog, monkeypatch):
    """`vouchnet key adopt`: the node starts as the successor of a rotation made in a newer copy of its data
    directory, holding the old key's rotation but not yet the successor's first record, which comes back from
    peers. Once it does, the old key's org is the node's own: its digests count as first-hand evidence (not as a
    peer's, capped), no listener fails, the stream announces the change, and the engine is what a replay of the
    same records at a restart makes of them."""
    monkeypatch.setattr(node_trust, "PROMPT_RECOMPUTE_S", 0.01)  # (the recompute runs in a thread: no mock clock)
    agent, now = new_did(), T0 + 2 * EPOCH
    clock = Clock(T0 + 5)
    new, old_did, back = _adopted(tmp_path, clock, agent)
    broadcaster = Broadcaster(Registry())
    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust = _running(node, broadcaster, now)
        _submit(node, agent, "ok", 2)  # undigested events since the start count too
        before, _ = trust.score(agent)
        async with trio.open_nursery() as nursery:
            await nursery.start(trust.run)
            with broadcaster.subscribe() as subscription, caplog.at_level(logging.INFO):
                node.replica.defer_signing()  # (the start's catch-up sync, node.daemon)
                assert node.replica.accept(back).accepted == back
                node.replica.resume_signing()
                assert node.replica.succession.keys(node.replica.did) == (old_did, node.replica.did)
                replayed = _service(node.replica, clock=lambda: now, epoch_ms=EPOCH)
                replayed.replay(node.digester.undigested(), node.digester.state.raw_reader())
                assert replayed.score(agent)[0].score != before.score
                with trio.fail_after(60):
                    await _announced(subscription, agent, replayed.score(agent)[0].score)
            nursery.cancel_scope.cancel()
        assert node.replica.listener_errors == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # (no CRITICAL either: gossip.replica)
        (part,) = trust.engine.explain(agent, now=now).orgs
        assert part.first_hand and part.org == old_did and part.events == 8
        for one in (agent, back[1].body.agent):
            assert trust.engine.explain(one, now=now) == replayed.engine.explain(one, now=now)
        assert trust.engine.orgs(now=now) == replayed.engine.orgs(now=now)
        assert trust.org(node.replica.did)["own"] and trust.org(old_did)["own"]


async def test_what_comes_while_the_engine_is_rebuilt_after_key_adopt_counts_as_a_replay_counts_it(
        tmp_path, monkeypatch, caplog):
    """The rebuild after `vouchnet key adopt` goes a turn at a time while the node takes records (a partner's
    digests and its rotations, the node's own digests and a vouch coming back from peers) and events: as it feeds the
    stored records, as it waits for the ingest lock, as it reads the undigested events holding it, and as it
    recomputes. Each counts once: the engine swapped in is exactly what a replay of the same records and events
    makes."""
    monkeypatch.setattr(node_trust, "TURN_S", 0.0)  # a turn a record or event: what comes below comes in between
    monkeypatch.setattr(node_trust, "PROMPT_RECOMPUTE_S", 0.01)
    agent, now, partner, partner_next = new_did(), T0 + 2 * EPOCH, Org(), Org()
    clock = Clock(T0 + 5)
    new, old_did, (first, *returned) = _adopted(tmp_path, clock, agent, partner=partner.did, digests=8)

    def taking(outcome: str) -> None:
        """A partner's digest, one of ours coming back, and an event of ours."""
        batch = [_digest(partner, agent, len(returned), ok=len(returned), denied=1), returned.pop(0)]
        assert node.replica.accept(batch).accepted == batch
        _submit(node, agent, outcome, 1)

    async def until(condition: Callable[[], bool]) -> None:
        while not condition():
            await trio.sleep(0)

    caplog.set_level(logging.INFO, logger="node.trust")
    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust, lock = _running(node, Broadcaster(Registry()), now), node.ingestor.write_lock
        async with trio.open_nursery() as nursery:
            await nursery.start(trust.run)
            async with lock:  # (as an ingest of events holds it)
                assert node.replica.accept([first]).accepted == [first]
                await until(lambda: trust._rebuilt is not None)
                partner, rotation, partner_first = partner.rotate()
                assert node.replica.accept([rotation, partner_first]).accepted == [rotation, partner_first]
                taking("ok")  # as it feeds the stored records
                assert trust._mirror is None
                await trio.testing.wait_all_tasks_blocked()
                taking("error")  # as it waits for the lock, having fed every record
                assert trust._rebuilt is not None and trust._mirror is None
            await until(lambda: trust._mirror is not None)
            assert lock.locked()
            taking("denied")  # as it reads the undigested events
            batch = [*returned, new.vouch(partner_next.did, 0.7)]
            returned.clear()
            assert node.replica.accept(batch).accepted == batch
            partner, rotation, partner_first = partner.rotate(partner_next)  # (a key the rebuilt engine knows)
            assert node.replica.accept([rotation, partner_first]).accepted == [rotation, partner_first]
            await until(lambda: not lock.locked())
            assert trust._mirror is not None
            _submit(node, agent, "timeout", 1)  # as it recomputes (one event: a replay counts a batch's one by one)
            vouch = partner.record("vouch", vouch_body(new_did(), 0.6, "operator"))
            assert node.replica.accept([vouch]).accepted == [vouch]
            await until(lambda: trust._rebuilt is None)
            await trio.testing.wait_all_tasks_blocked()  # (a second rebuild, if any, would begin)
            assert trust._rebuilt is None
            nursery.cancel_scope.cancel()
        rebuilds = [r for r in caplog.records if r.name == "node.trust" and "rebuilding the engine" in r.getMessage()]
        assert len(rebuilds) == 1  # the partner's rotations do not start another
        assert node.replica.listener_errors == 0
        assert node.replica.succession.keys(partner.did)[-1] == partner_next.did
        replayed = _service(node.replica, clock=lambda: now, epoch_ms=EPOCH)
        replayed.replay(node.digester.undigested(), node.digester.state.raw_reader())
        trust.engine.recompute(now=now)
        agents = replayed.engine.agents()
        assert sorted(trust.engine.agents()) == sorted(agents) and len(agents) > 20
        for one in agents:
            assert trust.engine.explain(one, now=now) == replayed.engine.explain(one, now=now)
        assert trust.engine.orgs(now=now) == replayed.engine.orgs(now=now)
        (part, _) = sorted(trust.engine.explain(agent, now=now).orgs, key=lambda part: not part.first_hand)
        assert part.first_hand and part.org == old_did and part.events == 6 + 4


@pytest.mark.parametrize("per_ten, at_once_max", [(20, node_trust.AT_ONCE_MAX), (9, node_trust.AT_ONCE_MAX), (20, 0)],
                         ids=["twice-as-fast", "nine-tenths-as-fast", "twice-as-fast-past-what-is-fed-at-once"])
async def test_the_rebuild_after_key_adopt_catches_up_with_a_flood_of_records_stored_as_it_feeds_them(
        tmp_path, monkeypatch, per_ten, at_once_max):
    """Records stored as the rebuild feeds them (`per_ten` for each ten it feeds, until it has caught up) do not
    keep it feeding a turn at a time: it feeds the gap at once, having flooded a few rounds' worth at most, and the
    engine swapped in is exactly what a replay of the same records makes. A gap over AT_ONCE_MAX is never fed at
    once (the loop would wait seconds at 10^6 records): it feeds a turn at a time until the flood ends."""
    monkeypatch.setattr(node_trust, "AT_ONCE_MAX", at_once_max)
    monkeypatch.setattr(node_trust, "TURN_S", 0.0)  # a turn a record: two records of the flood come in between
    monkeypatch.setattr(node_trust, "PROMPT_RECOMPUTE_S", 0.01)
    agent, now, partner, most = new_did(), T0 + 2 * EPOCH, Org(), 1_000
    clock = Clock(T0 + 5)
    new, old_did, (first, *_) = _adopted(tmp_path, clock, agent, partner=partner.did)
    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust = _running(node, Broadcaster(Registry()), now)
        flooded = turns = 0
        async with trio.open_nursery() as nursery:
            await nursery.start(trust.run)
            assert node.replica.accept([first]).accepted == [first]
            stored = node.replica.store.size  # (its first round)
            while trust._mirror is None and flooded < most:
                turns += 1
                due = turns * per_ten // 10 - flooded
                batch = [partner.record("vouch", vouch_body(new_did(), 0.5, "operator")) for _ in range(due)]
                assert node.replica.accept(batch).accepted == batch
                flooded += len(batch)
                await trio.sleep(0)
            if at_once_max:
                assert flooded < 3 * stored  # (it used to feed until the flood ended, or its rounds were too small)
            else:
                assert flooded >= most and trust._mirror is None  # still feeding a turn at a time
            while trust._rebuilt is not None:
                await trio.sleep(0)
            nursery.cancel_scope.cancel()
        assert node.replica.listener_errors == 0 and trust.org(old_did)["own"]
        replayed = _service(node.replica, clock=lambda: now, epoch_ms=EPOCH)
        replayed.replay(node.digester.undigested(), node.digester.state.raw_reader())
        trust.engine.recompute(now=now)
        agents = replayed.engine.agents()
        assert sorted(trust.engine.agents()) == sorted(agents) and len(agents) > flooded
        for one in agents:
            assert trust.engine.explain(one, now=now) == replayed.engine.explain(one, now=now)
        assert trust.engine.orgs(now=now) == replayed.engine.orgs(now=now)


async def test_the_rebuild_after_key_adopt_under_a_flood_slower_than_it_feeds_no_round_over_at_once_max_at_once(
        tmp_path, monkeypatch):
    """Records stored seven for each ten the rebuild feeds, its first rounds over AT_ONCE_MAX: it feeds those a turn
    at a time, each round smaller than the last, until one of AT_ONCE_MAX records at most, which it feeds at once; it
    catches up while the flood goes on. The loop never waits for more than AT_ONCE_MAX records fed at once."""
    monkeypatch.setattr(node_trust, "TURN_S", 0.0)  # a turn a record
    monkeypatch.setattr(node_trust, "PROMPT_RECOMPUTE_S", 0.01)
    fed, feeding = [0], TrustService._feeding

    def counted(service: TrustService, engine: TrustEngine, start: int, stop: int):
        for n in feeding(service, engine, start, stop):
            fed[0] += 1
            yield n

    monkeypatch.setattr(TrustService, "_feeding", counted)

    class Longest(trio.abc.Instrument):
        """The most records fed in one step of a task: the loop waits for them."""

        def __init__(self) -> None:
            self.records, self._before = 0, fed[0]

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            self._before = fed[0]

        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            self.records = max(self.records, fed[0] - self._before)

    agent, now, partner = new_did(), T0 + 2 * EPOCH, Org()
    clock = Clock(T0 + 5)
    new, old_did, (first, *_) = _adopted(tmp_path, clock, agent, partner=partner.did)
    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust = _running(node, Broadcaster(Registry()), now)
        async with trio.open_nursery() as nursery:
            await nursery.start(trust.run)
            assert node.replica.accept([first]).accepted == [first]
            at_once_max = node.replica.store.size // 3  # (its first round: over it)
            monkeypatch.setattr(node_trust, "AT_ONCE_MAX", at_once_max)
            flooded = turns = 0
            longest = Longest()
            trio.lowlevel.add_instrument(longest)
            while trust._mirror is None and flooded < 1_000:
                turns += 1
                due = turns * 7 // 10 - flooded
                batch = [partner.record("vouch", vouch_body(new_did(), 0.5, "operator")) for _ in range(due)]
                assert node.replica.accept(batch).accepted == batch
                flooded += len(batch)
                await trio.sleep(0)
            trio.lowlevel.remove_instrument(longest)
            assert trust._mirror is not None and flooded < 1_000  # caught up while the flood went on
            assert 1 < longest.records <= at_once_max
            while trust._rebuilt is not None:
                await trio.sleep(0)
            nursery.cancel_scope.cancel()
        assert node.replica.listener_errors == 0 and trust.org(old_did)["own"]


async def test_the_start_after_a_rebuild_for_key_adopt_loads_the_snapshot_the_rebuild_captured(
        tmp_path, monkeypatch, caplog):
    """The rebuild after `vouchnet key adopt` captures engine.snapshot of the stored records it caught up with (the
    one there was names the org's keys before the link, and is of no use), while records and a partner's rotation
    come: the next start loads it, and its scores and explanations are a full replay's."""
    monkeypatch.setattr(node_trust, "SNAPSHOT_AFTER", 1)  # (a start writes one as well: of the keys before the link)
    monkeypatch.setattr(node_trust, "PROMPT_RECOMPUTE_S", 0.01)
    monkeypatch.setattr(node_trust, "TURN_S", 0.0)  # the loop runs between any two of the capture's chunks
    monkeypatch.setattr(engine_state, "CAPTURE_CHUNK", 1)
    agent, now, partner = new_did(), T0 + 2 * EPOCH, Org()
    clock = Clock(T0 + 5)
    new, old_did, (first, *returned) = _adopted(tmp_path, clock, agent, partner=partner.did, digests=3)
    captured_at = []

    async def taking_while_captured() -> None:
        """A record and a partner's rotation come while the rebuilt engine is captured."""
        nonlocal partner
        while trust._held_links is None:
            await trio.sleep(0)
        captured_at.append(node.replica.store.size)
        partner, rotation, partner_first = partner.rotate()
        batch = [returned.pop(0), rotation, partner_first]
        assert node.replica.accept(batch).accepted == batch
        assert trust._held_links  # (the rotation's link, held until the capture is done)

    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust = _running(node, Broadcaster(Registry()), now, snapshot_dir=tmp_path)
        async with trio.open_nursery() as nursery:
            await nursery.start(trust.run)
            nursery.start_soon(taking_while_captured)
            batch = [first, *returned[:2]]
            del returned[:2]
            node.replica.defer_signing()  # (the start's catch-up sync, node.daemon)
            assert node.replica.accept(batch).accepted == batch
            node.replica.resume_signing()
            with trio.fail_after(30):
                while trust.engine.own_org != old_did:
                    await trust.own_org_swapped.wait()
                while [trust._snapshot_covers] != captured_at:  # (the rebuild's, written after the swap)
                    await trust.snapshot_written.wait()
            nursery.cancel_scope.cancel()
        assert not returned  # (the record came while the engine was captured)
        assert node.replica.listener_errors == 0
    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        with caplog.at_level(logging.INFO, logger="node.trust"):
            restarted = _running(node, Broadcaster(Registry()), now, snapshot_dir=tmp_path)
        assert restarted._snapshot_covers == captured_at[0] == node.replica.store.size - 3  # (3 came as captured)
        assert "trust engine: loaded engine.snapshot" in caplog.messages
        replayed = _service(node.replica, clock=lambda: now, epoch_ms=EPOCH)
        replayed.replay(node.digester.undigested(), node.digester.state.raw_reader())
        agents = replayed.engine.agents()
        assert sorted(restarted.engine.agents()) == sorted(agents) and len(agents) > 20
        for one in agents:
            assert restarted.engine.score(one, now=now) == replayed.engine.score(one, now=now)
            assert restarted.engine.explain(one, now=now) == replayed.engine.explain(one, now=now)
        assert restarted.engine.orgs(now=now) == replayed.engine.orgs(now=now)
        (part,) = [part for part in restarted.engine.explain(agent, now=now).orgs if part.first_hand]
        assert part.org == old_did and part.events == 6


async def test_the_rebuilds_capture_runs_on_the_loop_letting_it_run_between_its_chunks(tmp_path, monkeypatch):
    """The rebuild after `vouchnet key adopt` captures engine.snapshot on the trio thread, a chunk of agents at a
    time, the loop running its other tasks in between. In a worker thread, its Python held the GIL from the loop,
    whose every call that lets go of it then waited to have it back: a flood's batch of records accepted meanwhile
    took as long as the capture (benchmarks/adopt_rebuild.py --flood)."""
    monkeypatch.setattr(node_trust, "SNAPSHOT_AFTER", 1)
    monkeypatch.setattr(node_trust, "TURN_S", 0.0)
    monkeypatch.setattr(engine_state, "CAPTURE_CHUNK", 1)
    agent, now = new_did(), T0 + 2 * EPOCH
    clock = Clock(T0 + 5)
    new, old_did, (first, *_) = _adopted(tmp_path, clock, agent)
    flat, ticks, agents_at = engine_state.flat_pairs, [0], []  # (threads and ticks as the capture takes each agent)

    def flat_noted(pairs: dict[int, int]) -> tuple[int, ...]:
        agents_at.append((threading.get_ident(), ticks[0]))
        return flat(pairs)

    async def ticking() -> None:
        while True:
            ticks[0] += 1
            await trio.sleep(0)

    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust = _running(node, Broadcaster(Registry()), now, snapshot_dir=tmp_path)
        monkeypatch.setattr(engine_state, "flat_pairs", flat_noted)  # (after the start's capture)
        async with trio.open_nursery() as nursery:
            await nursery.start(trust.run)
            nursery.start_soon(ticking)
            assert node.replica.accept([first]).accepted == [first]
            with trio.fail_after(30):
                while trust.engine.own_org != old_did:
                    await trust.own_org_swapped.wait()
            nursery.cancel_scope.cancel()
    assert len(agents_at) > 20 and {thread for thread, _ in agents_at} == {threading.get_ident()}
    # The ticker ran as the capture went, an agent a step: once in each of trio's batches, before or after the step.
    assert agents_at[-1][1] - agents_at[0][1] >= len(agents_at) - 2


async def test_the_rebuild_after_key_adopt_holds_off_full_collections_until_its_capture_is_written(
        tmp_path, monkeypatch):
    """As it feeds the stored records, captures engine.snapshot of them and writes it after the swap, no full
    collection of the cycle collector comes (the oldest generation's threshold out of reach), and the thresholds are
    as they were after: under a flood of new agents, 25-26 full collections walked every agent's objects, holding the
    loop up to 130-138 ms, 7-8 of them while it captured (benchmarks/adopt_rebuild.py --records 20000 --flood 20000)."""
    monkeypatch.setattr(node_trust, "SNAPSHOT_AFTER", 1)
    agent, now = new_did(), T0 + 2 * EPOCH
    clock = Clock(T0 + 5)
    new, old_did, (first, *_) = _adopted(tmp_path, clock, agent)
    thresholds = gc.get_threshold()
    oldest: dict[str, set[int]] = {"fed": set(), "captured": set(), "encoded": set()}  # (the rebuild's)
    feed, flat, encoding = node_trust.feed_record, engine_state.flat_pairs, engine_snapshot.encoding

    def noted(step: str, function: Callable) -> Callable:
        def call(*args: Any) -> Any:
            if trust._rebuilt is not None or step == "encoded":
                oldest[step].add(gc.get_threshold()[2])
            return function(*args)
        return call

    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust = _running(node, Broadcaster(Registry()), now, snapshot_dir=tmp_path)
        monkeypatch.setattr(node_trust, "feed_record", noted("fed", feed))
        monkeypatch.setattr(engine_state, "flat_pairs", noted("captured", flat))  # (after the start's capture)
        async with trio.open_nursery() as nursery:
            await nursery.start(trust.run)
            with trio.fail_after(30):
                await trust.snapshot_written.wait()  # (the start's)
            oldest["encoded"].clear()
            monkeypatch.setattr(engine_snapshot, "encoding", noted("encoded", encoding))
            assert node.replica.accept([first]).accepted == [first]
            with trio.fail_after(30):
                while trust.engine.own_org != old_did:
                    await trust.own_org_swapped.wait()
                await trust.snapshot_written.wait()  # (the rebuild's)
            nursery.cancel_scope.cancel()
    assert oldest == {"fed": {node_trust.NO_FULL_COLLECTION}, "captured": {node_trust.NO_FULL_COLLECTION},
                      "encoded": {node_trust.NO_FULL_COLLECTION}}
    assert gc.get_threshold() == thresholds


async def test_the_announce_after_the_rebuilds_swap_holds_off_full_collections_until_it_ends(tmp_path, monkeypatch):
    """The recompute the swap brings forward reads every agent the stream told of, filling its cached sums: the
    objects that makes set off the full collections the rebuild held off, on the loop, within the announce. They are
    held off until it ends too (one comes after), and the thresholds are as they were after (benchmarks/adopt_rebuild.py
    --records 20000 --flood 20000: the announce's longest stall was 62-154 ms at 2*10^5 agents, 9-11 ms held)."""
    monkeypatch.setattr(node_trust, "PROMPT_RECOMPUTE_S", 0.0)
    agent, now = new_did(), T0 + 2 * EPOCH
    clock = Clock(T0 + 5)
    new, old_did, (first, *_) = _adopted(tmp_path, clock, agent)
    thresholds, oldest, after_the_swap = gc.get_threshold(), [], False
    freed, announced = trio.Event(), trio.Event()
    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust = _running(node, Broadcaster(Registry()), now)
        weakref.finalize(trust.engine, freed.set)
        recomputed, announce, recompute_and_announce = (trust._recomputed, trust._announce,
                                                        trust._recompute_and_announce)

        async def after_the_rebuild() -> ScoreTable:
            """The recompute of the engine swapped in, once the rebuild let go of the old one (its hold over)."""
            await freed.wait()
            return await recomputed()

        def noted(agents: Iterable[str]) -> None:
            if after_the_swap:
                oldest.append(gc.get_threshold()[2])
            announce(agents)

        async def until_announced() -> None:
            nonlocal after_the_swap
            after_the_swap = trust.engine.own_org == old_did  # (the recompute began after it)
            await recompute_and_announce()
            if after_the_swap:
                announced.set()

        monkeypatch.setattr(trust, "_recomputed", after_the_rebuild)
        monkeypatch.setattr(trust, "_announce", noted)
        monkeypatch.setattr(trust, "_recompute_and_announce", until_announced)
        for one in trust.engine.agents():
            trust.score(one)  # (told of, so announced by every recompute)
        await _rebuilt_until(trust, node, first, announced)
    assert trust.engine.own_org == old_did
    assert oldest and set(oldest) == {node_trust.NO_FULL_COLLECTION}, oldest
    assert gc.get_threshold() == thresholds


@pytest.mark.parametrize("ends", ["fails", "cancelled"])
async def test_the_hold_over_the_announce_after_a_swap_ends_with_it_however_it_ends(tmp_path, monkeypatch, ends):
    """A recompute after the rebuild's swap that fails, or is cancelled (the node stopping), lets full collections
    back as it ends, as one that announced does: held for as long as the node ran, cyclic garbage that outlived two
    young collections would never be freed. The next recompute holds none."""
    thresholds, oldest = gc.get_threshold(), []
    stopping = trio.CancelScope()

    async def recomputed() -> ScoreTable:
        oldest.append(gc.get_threshold()[2])
        if ends == "fails":
            raise RuntimeError("the recompute failed")
        stopping.cancel()
        await trio.sleep_forever()

    async def recompute_and_announce() -> None:
        nonlocal stopping
        with trio.CancelScope() as stopping, \
                pytest.raises(RuntimeError) if ends == "fails" else contextlib.nullcontext():
            await trust._recompute_and_announce()

    with fake_node(tmp_path) as node:
        trust = _listening(_service(node.replica))
        trust._swapped = True  # (as `_rebuild` sets it at the swap)
        monkeypatch.setattr(trust, "_recomputed", recomputed)
        await recompute_and_announce()
        assert gc.get_threshold() == thresholds and node_trust._FULL_COLLECTION_HOLDS.count == 0
        await recompute_and_announce()
    assert oldest == [node_trust.NO_FULL_COLLECTION, thresholds[2]]


async def test_letting_go_of_the_rebuilds_written_capture_leaves_the_engine_swapped_in_as_it_was(tmp_path, monkeypatch):
    """The rebuild's capture is its engine's state copied (Capture), and that engine serves once swapped in: emptying
    the capture once written (engine_state.letting_go) must empty the copies alone, never a list, dict or set the
    engine scores with (a capture of the engine's own, as a bring-forward takes of its engine, would cost the node
    every agent's score)."""
    monkeypatch.setattr(node_trust, "SNAPSHOT_AFTER", 1)
    agent, now = new_did(), T0 + 2 * EPOCH
    clock = Clock(T0 + 5)
    new, old_did, (first, *_) = _adopted(tmp_path, clock, agent)
    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust = _running(node, Broadcaster(Registry()), now, snapshot_dir=tmp_path)
        async with trio.open_nursery() as nursery:
            await nursery.start(trust.run)
            with trio.fail_after(30):
                await trust.snapshot_written.wait()  # (the start's)
            assert node.replica.accept([first]).accepted == [first]
            with trio.fail_after(30):
                while trust.engine.own_org != old_did:
                    await trust.own_org_swapped.wait()
                swapped = {one: trust.engine.explain(one, now=now) for one in trust.engine.agents()}
                await trust.snapshot_written.wait()  # (the rebuild's, let go of as written)
            nursery.cancel_scope.cancel()
    assert len(swapped) > 20 and swapped == {one: trust.engine.explain(one, now=now) for one in trust.engine.agents()}


async def test_a_recompute_holding_the_engine_the_rebuild_swaps_out_scores_every_agent_of_it(tmp_path, monkeypatch):
    """A recompute that copies the old engine's columns between checkpoints (recompute_in_worker) as the rebuild
    after `vouchnet key adopt` swaps in the new one reads the old one to its end, with every agent scored as before:
    the old engine is emptied (letting_go) only once the recompute returned it, the new one serving meanwhile."""
    monkeypatch.setattr(node_trust, "PROMPT_RECOMPUTE_S", 0.0)
    agent, now = new_did(), T0 + 2 * EPOCH
    clock = Clock(T0 + 5)
    new, old_did, (first, *_) = _adopted(tmp_path, clock, agent)
    tables: list[tuple[TrustEngine, ScoreTable]] = []
    recompute, step = node_trust.recompute_in_worker, SnapshotCopy.step

    async def noted(engine: TrustEngine, clock: Callable[[], int]) -> ScoreTable:
        tables.append((engine, await recompute(engine, clock)))
        return tables[-1][1]

    def held(copying: SnapshotCopy) -> bool:
        """The old engine's copy goes on until the new engine is swapped in (a checkpoint a step)."""
        return step(copying) or (copying is old._copying and trust.engine is old)

    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust = _running(node, Broadcaster(Registry()), now)
        old = trust.engine
        before = old.recompute(now=now)
        monkeypatch.setattr(node_trust, "recompute_in_worker", noted)
        monkeypatch.setattr(SnapshotCopy, "step", held)
        async with trio.open_nursery() as nursery:
            await nursery.start(trust.run)
            trust._org_changed.set()  # (a prompt recompute, of the old engine)
            with trio.fail_after(30):
                await _until(lambda: old._copying is not None)
                assert node.replica.accept([first]).accepted == [first]
                while trust.engine is old:
                    await trust.own_org_swapped.wait()
                assert trust.engine.own_org == old_did and len(old.agents()) > 20  # (not emptied yet)
                await _until(lambda: any(engine is old for engine, _ in tables))
                await _until(lambda: not old.agents())
            nursery.cancel_scope.cancel()
    ((_, table),) = [(engine, table) for engine, table in tables if engine is old]
    assert table.agents == before.agents and table.scores.tolist() == before.scores.tolist()
    assert node.replica.listener_errors == 0


async def test_the_engine_the_rebuild_swaps_out_is_emptied_then_freed(tmp_path):
    """Once the rebuild after `vouchnet key adopt` swapped in the new engine, the old one is emptied on the loop a
    turn at a time (letting_go), then freed: neither held for as long as the node runs nor freed at once (its objects,
    an item an agent or a vouch in each of its lists, held the loop 64-85 ms at 2*10^5 agents,
    benchmarks/adopt_rebuild.py)."""
    agent, now = new_did(), T0 + 2 * EPOCH
    clock = Clock(T0 + 5)
    new, old_did, (first, *_) = _adopted(tmp_path, clock, agent)
    freed = trio.Event()
    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust = _running(node, Broadcaster(Registry()), now)
        kept = _lists_of(trust.engine)
        weakref.finalize(trust.engine, freed.set)
        assert all(len(one) >= 20 for one in kept)
        await _rebuilt_until(trust, node, first, freed)
    assert trust.engine.own_org == old_did and len(trust.engine.agents()) > 20
    assert not any(kept)


async def test_an_engine_the_rebuild_discards_as_the_org_moved_again_is_emptied_then_freed(tmp_path, monkeypatch):
    """A rebuild whose engine turns out to have another own org than the node's by its end (the org moved again
    meanwhile: built again) is discarded: emptied a turn at a time, as one swapped out is, not freed at once, and the
    engine serving stays as it was."""
    monkeypatch.setattr(node_trust, "SNAPSHOT_AFTER", 1)
    agent, now = new_did(), T0 + 2 * EPOCH
    clock = Clock(T0 + 5)
    new, _, (first, *_) = _adopted(tmp_path, clock, agent)
    freed, kept = trio.Event(), []
    recompute = node_trust.recompute_in_worker

    async def moved_meanwhile(engine, at):
        table = await recompute(engine, at)
        if engine is not trust.engine and not kept:  # (the rebuild's, and its own org no longer the node's)
            kept.extend(_lists_of(engine))
            assert all(len(one) >= 20 for one in kept[:3])
            engine.own_org = "did:key:z6MkMovedMeanwhile"
            weakref.finalize(engine, freed.set)
        return table

    with telemetry_node(tmp_path, key=new.key, clock=clock, epoch_ms=EPOCH) as node:
        trust = _running(node, Broadcaster(Registry()), now, snapshot_dir=tmp_path)
        serving, agents = trust.engine, trust.engine.agents()
        monkeypatch.setattr(node_trust, "recompute_in_worker", moved_meanwhile)
        await _rebuilt_until(trust, node, first, freed)
    assert kept and not any(kept)
    assert trust.engine is serving and trust.engine.agents() == agents


def _lists_of(engine: TrustEngine) -> tuple:
    """Containers of `engine` of an item an agent or a vouch, which letting it go empties."""
    return engine._agent_dids, engine._pairs, engine._agent_vouches, engine._vouches.by_id


async def _rebuilt_until(trust: TrustService, node: TelemetryNode, first: Record, done: trio.Event) -> None:
    """`trust` running, the node taking back its key's `first` record (its rebuild after key adopt), until `done`."""
    async with trio.open_nursery() as nursery:
        await nursery.start(trust.run)
        assert node.replica.accept([first]).accepted == [first]
        with trio.fail_after(30):
            await done.wait()
        nursery.cancel_scope.cancel()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await trio.sleep(0)


@pytest.mark.parametrize("late", [True, False], ids=["link-last", "link-first"])
def test_a_key_rotated_to_at_its_first_record_counts_as_its_org_whatever_order_the_links_arrive_in(tmp_path, late):
    """The middle key of a chain old -> middle -> new rotates in its first record (which also names its prior).
    If the new key's records counted as soon as the middle key named it back, before old named the middle key
    (link-last), they were fed as the middle key's org, and the later link moved only what named the middle key:
    the node's scores then depended on the order the rotations arrived in, and changed at its next restart."""
    old, middle, new, agent = Org(), Org(), Org(), new_did()
    partner_vouched = new_did()
    rotation = old.record("org", org_body("org", "test", next=middle.did))
    middle_first = middle.record("org", org_body("org", "test", prior=old.did, next=new.did))
    new_first = new.record("org", org_body("org", "test", prior=middle.did))
    by_new = [new.record("vouch", vouch_body(partner_vouched, 1.0, "operator")),
              *(_digest(new, agent, hour, denied=30) for hour in range(3))]
    with fake_node(tmp_path) as node:
        trust = _listening(_service(node.replica))
        ours = [node.replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer")) for org in (old, middle)]
        order = [[middle_first, new_first], by_new, [rotation]] if late else [[rotation], [middle_first, new_first]]
        for batch in order:
            node.replica.accept(batch)
        node.replica.accept(by_new)  # offered again, as sync does once the link is known
        assert node.replica.succession.keys(new.did) == (old.did, middle.did, new.did)
        reference = TrustEngine(node.did)
        for record in [*ours, rotation, middle_first, new_first, *by_new]:
            feed_record(reference, record, node.replica.succession.identity)
        reference.recompute(now=NOW)
        trust.engine.recompute(now=NOW)
        for each in (agent, partner_vouched):
            assert trust.engine.explain(each, now=NOW) == reference.explain(each, now=NOW)
        assert trust.engine.orgs(now=NOW) == reference.orgs(now=NOW)


def test_keys_rotating_in_a_cycle_are_one_org_under_one_name_whatever_the_order(tmp_path):
    """Three keys rotating each to the next in their first records, each vouched for by this node: one org, known
    by its least key, in whatever order the three records arrive."""
    keys = [Org() for _ in range(3)]
    firsts = [org.record("org", org_body("org", "test", prior=keys[i - 1].did, next=keys[(i + 1) % 3].did))
              for i, org in enumerate(keys)]
    seen = set()
    for n, order in enumerate([(0, 1, 2), (2, 1, 0), (1, 0, 2)]):
        (tmp_path / str(n)).mkdir()
        with fake_node(tmp_path / str(n)) as node:
            trust = _listening(_service(node.replica))
            for org in keys:
                node.replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
            for i in order:
                assert node.replica.accept([firsts[i]]).accepted == [firsts[i]]
            names = {trust.org(org.did)["org"] for org in keys}
            listed = sorted(o["org"] for o in trust.orgs() if not o["own"])
            seen.add((frozenset(names), tuple(listed), round(trust.org(keys[0].did)["reputation"], 12)))
    assert len(seen) == 1
    names, listed, _ = seen.pop()
    assert names == {min(org.did for org in keys)} and listed == (min(org.did for org in keys),)
