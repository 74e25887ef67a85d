"""vouching.engine_state captures every attribute of the trust engine that records set: an attribute added to the
engine or to what it keeps must be put in a table of engine_state (and the snapshot's format bumped) or named as
derived, or this fails."""

import tracemalloc
from collections import Counter
from itertools import pairwise

import pytest

from vouching.arrays import array_columns
from vouching.deviation import DeviationTest
from vouching import engine_state
from vouching.engine_state import (_DERIVED, _LET_GO, AGENT_FIELDS, DEVIATION_DERIVED, DEVIATION_FIELDS, ENGINE_FIELDS,
                                   capture, capturing, letting_go, restore, restoring)
from vouching.evidence import EvidenceStore, Outcomes
from vouching.feed import feed_record
from vouching.params import AGENT_BASES, HOUR_MS, ScoringParams
from vouching.scoring import TrustEngine
from vouching.vouches import VouchBook

from ..factories import Org, new_did
from .test_scoring_gc import AGENTS, _tracked
from .trust_world import rid


def _others(store: object) -> set[str]:
    """A store's attributes that are not columns."""
    return set(vars(store)) - set(array_columns(store))


def test_every_engine_attribute_is_captured_or_derived():
    engine = TrustEngine("did:key:own", ["did:key:root"])
    assert set(vars(engine)) == set(ENGINE_FIELDS) | _DERIVED
    assert not set(ENGINE_FIELDS) & _DERIVED


def test_every_attribute_beside_the_columns_is_captured():
    params = ScoringParams()
    kept_per_agent = {name for name, value in vars(TrustEngine("did:key:own")).items()
                      if isinstance(value, (list, set)) and name not in ENGINE_FIELDS}
    assert kept_per_agent == {*AGENT_FIELDS, "_caches"}
    assert _others(DeviationTest(params)) == {"params", *DEVIATION_FIELDS, *DEVIATION_DERIVED}
    assert _others(EvidenceStore(params)) == {"params", "own_cap_good", "k_good", "k_bad", "k_report"}
    assert _others(VouchBook(params.basis_weights)) == {"_basis_weights", "by_id", "_pending", "_latest",
                                                        "org_vouches"}


def test_a_capture_is_the_engine_as_it_was_whatever_it_takes_after():
    """The start captures the engine it replayed, then feeds it the undigested events and, running, the records that
    come, before the capture is written: an agent or org it takes meanwhile is not in the capture, which restores
    to the engine as it was captured (an agent's did joined the captured list, and restoring it failed)."""
    own, voucher, now = Org(), Org(), Org.ts + HOUR_MS
    first = [own.vouch(voucher.did, 0.9), voucher.vouch(new_did(), 0.5)]
    after = [Org().vouch(new_did(), 0.5)]
    engines = [TrustEngine(own.did, [own.did], epoch_ms=HOUR_MS) for _ in range(3)]
    captured, restored, replayed = engines
    for record in first:
        feed_record(captured, record, _itself)
        feed_record(replayed, record, _itself)
    state = capture(captured)
    for record in after:
        feed_record(captured, record, _itself)
    captured.add_first_hand(new_did(), ts=Org.ts, outcomes=Outcomes(ok=1))
    restore(state, restored, ())
    for engine in (restored, replayed):
        engine.recompute(now=now)
    assert restored.agents() == replayed.agents()
    for agent in replayed.agents():
        assert restored.explain(agent, now=now) == replayed.explain(agent, now=now)
    assert restored.orgs(now=now) == replayed.orgs(now=now)


def test_a_restored_engine_replaces_each_of_an_issuer_s_latest_vouches_for_an_agent_as_its_basis_says():
    """An agent's latest vouches are keyed by issuer and basis (scoring.vouch_key): restored, each under its own, a
    later vouch of one basis replaces the issuer's earlier one of that basis alone, as in the engine captured."""
    own, voucher, agent, now = Org(), Org(), new_did(), Org.ts + HOUR_MS
    first = [own.vouch(voucher.did, 0.9), *(voucher.vouch(agent, 0.2, basis) for basis in AGENT_BASES)]
    engines = [TrustEngine(own.did, [own.did], epoch_ms=HOUR_MS) for _ in range(3)]
    captured, restored, replayed = engines
    for record in first:
        feed_record(captured, record, _itself)
        feed_record(replayed, record, _itself)
    restore(capture(captured), restored, ())
    for basis in AGENT_BASES[1:]:  # (the operator vouch stays the latest of its basis)
        later = voucher.vouch(agent, 0.9, basis)
        for engine in (restored, replayed):
            feed_record(engine, later, _itself)
            engine.recompute(now=now)
        assert restored.explain(agent, now=now) == replayed.explain(agent, now=now)
    assert restored.operators(agent, now=now) == (voucher.did,)
    assert restored.explain(agent, now=now).vouches_total == len(AGENT_BASES)


def _itself(did: str) -> str:
    return did


@pytest.mark.usefixtures("only_new_objects_collected")
def test_a_capture_of_the_engine_leaves_the_collector_nothing_an_agent():
    """Its rows are tuples of values the collector does not track, which it untracks (benchmarks/adopt_rebuild.py:
    as lists, they were most of what a full collection walked during a rebuild)."""
    _tracked()  # (its first run makes objects of its own: the caches of isinstance)
    made = [_made_by_a_capture(agents) for agents in (AGENTS, 2 * AGENTS)]
    assert made[1].total() - made[0].total() < AGENTS / 10, made[1].most_common(5)


def _made_by_a_capture(agents: int) -> Counter[str]:
    """The tracked objects a capture of an engine holding `agents` agents makes."""
    engine = _fed(agents)
    capture(engine)  # (its first run makes objects of its own)
    before = _tracked()
    state = capture(engine)
    made = _tracked() - before
    assert len(state["agents"]) == agents
    return made


def test_a_capture_copies_the_columns_a_chunk_between_two_yields(monkeypatch):
    """Each step of a capture on the loop (node.trust.Capture.on_loop) copies COPY_BYTES of the engine's columns at
    most: its first step copied them all, which at 10^5 agents held the loop 15 ms (benchmarks/engine_capture.py)."""
    monkeypatch.setattr(engine_state, "COPY_BYTES", 4096)
    monkeypatch.setattr(engine_state, "CAPTURE_CHUNK", 1)
    engine = _fed(AGENTS)
    column_bytes = sum(len(column) * column.itemsize for store in (engine._vouches, engine._evidence,
                                                                   engine._deviation)
                       for column in array_columns(store).values())
    steps, made = capturing(engine), []
    tracemalloc.start()
    try:
        for _ in steps:
            made.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    largest = max(after - before for before, after in zip([0, *made], made))
    assert len(made) > column_bytes // 4096 and largest < column_bytes / 10, (largest, column_bytes)


def test_an_engine_grows_its_columns_after_a_capture_left_mid_copy():
    """A capture holds no view of a column across a yield: one held by a capture left unfinished (its task
    cancelled) kept the engine from growing the column (BufferError) for as long as the capture was referenced."""
    engine = _fed(AGENTS)
    steps = capturing(engine)
    next(steps)
    next(steps)
    engine.add_digest("peer", "agent0", epoch=HOUR_MS, length=HOUR_MS, outcomes=Outcomes(ok=9), record_id=rid(),
                      ts=2 * HOUR_MS)
    engine.add_agent_vouch("root", "a new agent", 0.5, "operator", record_id=rid(), ts=0)
    assert "a new agent" in engine.agents()
    steps.close()


def test_a_restore_indexes_the_agents_a_chunk_between_two_yields(monkeypatch):
    """Each step of a restore on the loop (node.trust's bring-forward) indexes CAPTURE_CHUNK agents at most: its first
    step indexed them all, 18 ms at 1.2*10^5 agents, the loop waiting (benchmarks/snapshot_forward.py)."""
    monkeypatch.setattr(engine_state, "CAPTURE_CHUNK", 2)
    state = capture(_fed(AGENTS))
    engine = TrustEngine("own", ["root"], epoch_ms=HOUR_MS)
    indexed = [len(engine._agent_index) for _ in restoring(state, engine, ())]
    assert max(b - a for a, b in pairwise([0, *indexed])) <= 2 and len(engine._agent_index) == AGENTS


def test_letting_go_empties_a_capture_and_its_engine_a_chunk_between_two_yields(monkeypatch):
    """A running node done with a capture and the engine it was taken from lets go of them a step at a time
    (node.trust's bring-forward): let go of at once, they held the loop 150-250 ms at 1.2*10^5 agents
    (benchmarks/snapshot_forward.py). What the engine shares (the parameters' basis weights) is left as it was."""
    monkeypatch.setattr(engine_state, "CAPTURE_CHUNK", 2)
    engine = _fed(AGENTS)
    state = capture(engine, copy=False)
    found = [*(found for value in state.values() for found in _containers(value)),
             *(getattr(engine, name) for name in _LET_GO[0]), *(getattr(engine._vouches, name) for name in _LET_GO[1])]
    containers = list({id(container): container for container in found}.values())  # (the capture's are the engine's)
    held = [sum(map(len, containers))]
    for _ in letting_go(state, engine):
        held.append(sum(map(len, containers)))
    assert held[0] > 4 * AGENTS and held[-1] == 0
    assert max(a - b for a, b in pairwise(held)) <= 2  # (a container's items, CAPTURE_CHUNK at a time)
    assert engine._vouches._basis_weights == ScoringParams().basis_weights


def _containers(value: object) -> list:
    """The lists, dicts and sets in `value` and in the dicts among them (the dicts too)."""
    if not isinstance(value, dict):
        return [value] if isinstance(value, (list, set)) else []
    return [value, *(found for item in value.values() for found in _containers(item))]


def _fed(agents: int) -> TrustEngine:
    """An engine fed a vouch and a digest of each of `agents` agents."""
    engine = TrustEngine("own", ["root"], epoch_ms=HOUR_MS)
    for agent in range(agents):
        engine.add_agent_vouch("root", f"agent{agent}", 0.5, "operator", record_id=rid(), ts=0)
        engine.add_digest("peer", f"agent{agent}", epoch=0, length=HOUR_MS, outcomes=Outcomes(ok=9),
                          record_id=rid(), ts=HOUR_MS)
    return engine
