"""A node restarted scores as it did running (DESIGN.md §6: the same records, the same score): the trust service fed
records live, as the replica accepts them, with time passing and full recomputes between them, and a fresh service
replaying the same store at a start (TrustService.replaying, TURN_S of work at a time), give every
agent the same explanation and every org the same standing after a recompute at the same instant."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import node.trust as node_trust
from node.metrics import Registry
from node.stream import Broadcaster
from node.trust import TrustService
from vouching import Record, digest_body, vouch_body
from vouching.params import HOUR_MS
from vouching.policy import Policy

from ..factories import Org, new_did
from .fake_node import FakeNode, fake_node

AGENTS = [new_did() for _ in range(3)]
ORGS = 4  # the node vouches for the first three (so that their records are inside its horizon); the first is a root
END = Org.ts + 40 * HOUR_MS
_hours = st.none() | st.integers(1, 30)

# (op, ...) by org number: a vouch for an agent (agent, weight, basis, expiry hour), for an org (org, weight, expiry
# hour), a revocation of the org's n-th vouch, a digest (agent, hour, ok, denied), a record at the org's last seq
# (equivocation); the node's own vouch for an org (`apply_op` carries each out).
RECORD_OPERATIONS = (
    st.tuples(st.just("agent-vouch"), st.integers(0, ORGS - 1), st.integers(0, 2), st.sampled_from([0.3, 1.0]),
              st.sampled_from(["operator", "audit", "developer"]), _hours),
    st.tuples(st.just("org-vouch"), st.integers(0, ORGS - 1), st.integers(0, ORGS - 1), st.sampled_from([0.3, 1.0]),
              _hours),
    st.tuples(st.just("revoke"), st.integers(0, ORGS - 1), st.integers(0, 10)),
    st.tuples(st.just("digest"), st.integers(0, ORGS - 1), st.integers(0, 2), st.integers(0, 9), st.integers(0, 30),
              st.integers(0, 3)),
    st.tuples(st.just("fork"), st.integers(0, ORGS - 1)),
    st.tuples(st.just("own-vouch"), st.integers(0, ORGS - 1), st.sampled_from([0.3, 1.0])),
)
# ... and a full recompute at an hour.
operations = st.lists(st.one_of(*RECORD_OPERATIONS, st.tuples(st.just("recompute"), st.integers(0, 40))), max_size=30)


def _service(node: FakeNode, orgs: list[Org], clock: list[int]) -> TrustService:
    metrics = Registry()
    return TrustService(node.replica, roots=(orgs[0].did,), policy=Policy(), broadcaster=Broadcaster(metrics),
                        metrics=metrics, recompute_interval=60, epoch_ms=HOUR_MS, clock=lambda: clock[0])


def _digest(org: Org, agent: str, hour: int, ok: int, denied: int) -> Record:
    counts = {"ok": ok, "error": 0, "denied": denied, "timeout": 0}
    return org.record("digest", digest_body(
        agent, epoch=Org.ts - (10 - hour) * HOUR_MS, length=HOUR_MS, outcomes=counts,
        categories={"tool": ok + denied, "mcp": 0, "a2a": 0, "auth": 0, "resource": 0, "other": 0},
        high_risk={"ok": 0, "error": 0, "denied": 0, "timeout": 0}, evidence_root=b"\0" * 32))


def _expiry(hours: int | None) -> int | None:
    return None if hours is None else Org.ts + hours * HOUR_MS


def _run(node: FakeNode, orgs: list[Org], live: TrustService, clock: list[int], ops: list[tuple]) -> None:
    """Carry out `ops`, ten minutes apart, as the node would live."""
    vouches: dict[int, list[Record]] = {i: [] for i in range(ORGS)}
    for op in ops:
        clock[0] += 600_000
        if op[0] == "recompute":
            live.engine.recompute(now=Org.ts + op[1] * HOUR_MS)
        else:
            apply_op(node, orgs, vouches, op)


def apply_op(node: FakeNode, orgs: list[Org], vouches: dict[int, list[Record]], op: tuple) -> None:
    """Carry out one operation of the streams these tests draw: `op[0]` names it, `op[1]` is the org's index."""
    kind, org = op[0], orgs[op[1]]
    if kind == "agent-vouch":
        _, i, agent, weight, basis, hours = op
        vouches[i].append(org.record("vouch", vouch_body(AGENTS[agent], weight, basis, expires=_expiry(hours))))
        node.replica.accept(vouches[i][-1:])
    elif kind == "org-vouch" and op[1] != op[2]:
        _, i, subject, weight, hours = op
        vouches[i].append(org.record("vouch", vouch_body(orgs[subject].did, weight, "org-peer",
                                                         expires=_expiry(hours))))
        node.replica.accept(vouches[i][-1:])
    elif kind == "revoke" and vouches[op[1]]:
        mine = vouches[op[1]]
        node.replica.accept([org.revoke(mine[op[2] % len(mine)])])
    elif kind == "digest":
        node.replica.accept([_digest(org, AGENTS[op[2]], *op[3:])])
    elif kind == "fork" and org.seq:
        node.replica.accept([org.fork(org.seq, org.prev if org.seq > 1 else None)])
    elif kind == "own-vouch":
        node.replica.issue("vouch", vouch_body(org.did, op[2], "org-peer"))


@contextmanager
def _lived(ops: list[tuple]) -> Iterator[tuple[FakeNode, list[Org], TrustService, list[int]]]:
    """A node whose service was fed `ops` live (`_run`), its clock at END."""
    orgs = [Org() for _ in range(ORGS)]
    clock = [Org.ts]
    with tempfile.TemporaryDirectory() as directory, fake_node(Path(directory)) as node:
        live = _service(node, orgs, clock)
        live.replay(())
        node.replica.listeners.append(live.on_records)
        for org in orgs[:3]:
            node.replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
        _run(node, orgs, live, clock, ops)
        clock[0] = END
        yield node, orgs, live, clock


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
# A root vouched for an agent (its vouches' strength adds up, replaced ones too) and reports it violating policy: a
# recompute judged the agent by the root's full word and cut the root's accountability to 0.056, the next by its
# word at 0.056 and gave it back 1.0, and so on, every recompute; a restart judged as the first (see test_scoring_
# recompute: each recompute now judges afresh).
@example([("agent-vouch", 0, 0, 0.3, "operator", None)] * 7 + [("digest", 0, 0, 0, 0, 2), ("recompute", 0)], 0.0)
@given(operations, st.sampled_from([0.0, node_trust.TURN_S]))
def test_a_replay_at_a_start_scores_as_the_service_fed_live(ops, turn):
    with _lived(ops) as (node, orgs, live, clock):
        restarted = _service(node, orgs, clock)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(node_trust, "TURN_S", turn)
            restarted.replay(())
        live.engine.recompute(now=END)
        for agent in AGENTS:
            assert restarted.engine.explain(agent, now=END) == live.engine.explain(agent, now=END)
        assert restarted.engine.orgs(now=END) == live.engine.orgs(now=END)


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@example([("agent-vouch", 0, 0, 0.3, "operator", None)] * 7 + [("digest", 0, 0, 0, 0, 2)])  # (cuts an accountability)
@given(operations)
def test_the_start_s_recompute_in_a_worker_scores_as_the_one_on_the_loop(ops):
    """A start recomputes its replayed engine in a worker thread (TrustService.recompute_replayed), off a snapshot of
    it: every agent is given the score and explanation, and every org the standing, of a recompute on the engine
    itself (`replay`)."""
    with _lived(ops) as (node, orgs, _, clock):
        on_the_loop, in_a_worker = _service(node, orgs, clock), _service(node, orgs, clock)
        on_the_loop.replay(())
        for _ in in_a_worker.replaying(()):
            pass
        trio.run(in_a_worker.recompute_replayed)
        for agent in AGENTS:
            assert in_a_worker.score(agent) == on_the_loop.score(agent)
            assert in_a_worker.engine.explain(agent, now=END) == on_the_loop.engine.explain(agent, now=END)
        assert in_a_worker.orgs() == on_the_loop.orgs()
