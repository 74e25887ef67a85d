"""The full recompute in steps, as node.trust runs it off the trio loop: copy a snapshot a chunk at a time, compute,
install. Whatever the engine takes and answers meanwhile, the result is the synchronous recompute's at the snapshot,
with what came after it applied on top."""

from array import array

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vouching.arrays import ColumnsCopy
from vouching.evidence import Outcomes
from vouching.params import DAY_MS, HOUR_MS
from vouching.batch import ScoreTable
from vouching.scoring import TrustEngine

from .test_scoring_recompute import AGENTS, apply_op, operations

NOW = 30 * DAY_MS


def _reads(engine: TrustEngine, now: int) -> tuple:
    """All a caller can read of the engine at `now`."""
    return [engine.score(a, now=now) for a in engine.agents()], engine.reputations(now=now), engine.orgs(now=now)


def _same(a: ScoreTable, b: ScoreTable) -> bool:
    return a.agents == b.agents and a.computed_at == b.computed_at and all(
        np.array_equal(getattr(a, name), getattr(b, name))
        for name in ("scores", "confidence", "evidence", "independent_orgs"))


# 100 examples: with TrustEngine._touch not noting the agents touched while a snapshot is copied, seeds 1 and 2 found
# it after 19 and 25 passing examples.
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(operations, operations, operations, operations, st.integers(1, 40), st.integers(0, 60 * DAY_MS),
       st.integers(0, 30 * DAY_MS))
def test_what_arrives_during_a_recompute_counts_as_after_its_snapshot(before, copying, computing, after, rows, now,
                                                                      later):
    # `before` (with a recompute halfway, so that there is an old state to answer from), then `copying` while the
    # snapshot is copied, `rows` a step, `computing` while it is computed, and `after` once it is installed; reads
    # in between.
    ops = before + copying + computing + after
    start, end, installed = len(before), len(before) + len(copying), len(ops) - len(after)
    stepped, synchronous, unrecomputed = (TrustEngine("own", ["root"]) for _ in range(3))
    issued: dict[TrustEngine, list] = {stepped: [], synchronous: [], unrecomputed: []}

    def feed(engine: TrustEngine, first: int, stop: int) -> None:
        for n in range(first, stop):
            apply_op(engine, n, ops[n], issued[engine])

    for engine in issued:
        feed(engine, 0, start // 2)
        engine.recompute(now=now)
        feed(engine, start // 2, start)

    copy = stepped.start_snapshot()
    for n in range(start, end):
        copy.step(rows)
        apply_op(stepped, n, ops[n], issued[stepped])
        stepped.score(AGENTS[n % len(AGENTS)], now=now)
    while copy.step(rows):
        pass
    snapshot = stepped.snapshot(copy, now=now)
    feed(stepped, end, installed)
    feed(unrecomputed, start, installed)
    assert _reads(stepped, now) == _reads(unrecomputed, now)  # until the install, the old state answers
    table = stepped.install(snapshot.compute())
    feed(stepped, installed, len(ops))

    feed(synchronous, start, end)
    assert _same(table, synchronous.recompute(now=now))
    feed(synchronous, end, len(ops))
    assert _reads(stepped, now) == _reads(synchronous, now)
    assert _reads(stepped, now + later) == _reads(synchronous, now + later)
    assert _reads(stepped, now) == _reads(synchronous, now)  # back in time: entries taken from the install again


def _copied(engine: TrustEngine):
    copy = engine.start_snapshot()
    while copy.step():
        pass
    return copy


@pytest.mark.parametrize("when", ["while the recompute computes", "after it is installed"])
def test_evidence_after_a_snapshot_moves_the_score_at_once(when):
    engine, unrecomputed = TrustEngine("own", ["root"]), TrustEngine("own", ["root"])
    for e in (engine, unrecomputed):
        e.add_first_hand("agent", ts=HOUR_MS, outcomes=Outcomes(ok=10))
    snapshot = engine.snapshot(_copied(engine), now=NOW)
    if when == "while the recompute computes":
        engine.add_first_hand("agent", ts=2 * HOUR_MS, outcomes=Outcomes(denied=3))
    engine.install(snapshot.compute())
    if when == "after it is installed":
        engine.add_first_hand("agent", ts=2 * HOUR_MS, outcomes=Outcomes(denied=3))
    unrecomputed.add_first_hand("agent", ts=2 * HOUR_MS, outcomes=Outcomes(denied=3))
    # First-hand evidence counts fully whatever the recompute found: the score is the agent's own sums'.
    assert engine.score("agent", now=NOW) == unrecomputed.score("agent", now=NOW)
    assert engine.score("agent", now=NOW).tier == "untrusted"


def test_only_the_latest_snapshot_is_installed():
    engine = TrustEngine("own", ["root"])
    engine.add_first_hand("agent", ts=0, outcomes=Outcomes(ok=3))
    overtaken = engine.start_snapshot()
    older = engine.snapshot(_copied(engine), now=1)
    newer = engine.snapshot(_copied(engine), now=1)
    with pytest.raises(RuntimeError, match="overtook"):
        engine.snapshot(overtaken, now=1)
    with pytest.raises(RuntimeError, match="another snapshot"):
        engine.install(older.compute())
    done = newer.compute()
    copying = engine.start_snapshot()
    with pytest.raises(RuntimeError, match="another snapshot"):  # it would rewrite verdicts being copied
        engine.install(done)
    table = engine.install(engine.snapshot(copying, now=1).compute())
    assert table.score("agent") == engine.score("agent", now=1).score


@pytest.mark.parametrize("appended", [3, 2000])  # within the room the copy keeps for new rows, and beyond it
def test_a_columns_copy_is_the_columns_as_they_are_when_it_finishes(appended):
    live = {"t": array("d", range(10)), "n": array("i", range(10))}
    copy = ColumnsCopy(live)
    copy.step(4)
    live["t"][1] = -1.0  # rewritten after its chunk was copied: the caller says so
    live["t"][8] = -8.0  # rewritten before its chunk is copied
    for i in range(10, 10 + appended):
        live["t"].append(i)
        live["n"].append(i)
    copied = copy.finish([1, 5000])
    assert {name: c.tolist() for name, c in copied.items()} == {name: c.tolist() for name, c in live.items()}
    assert copied["n"].dtype == np.int32
