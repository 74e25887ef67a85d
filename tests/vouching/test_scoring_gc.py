"""What the trust engine leaves for Python's garbage collector, whose full collections walk every object it tracks
and hold the node's loop meanwhile: an agent, its evidence and its cached sums leave no tracked object (tuples and
dicts holding none are untracked by a collection), nor do its vouches (benchmarks/gc_objects.py)."""

import gc
from collections import Counter

import pytest
from hypothesis import given, strategies as st

from vouching.evidence import Outcomes
from vouching.params import AGENT_BASES, HOUR_MS
from vouching.scoring import TrustEngine, latest_vouches
from vouching.vouches import latest_key, latest_of, vouch_key

from tests.vouching.trust_world import rid

AGENTS = 500


def _tracked() -> Counter[str]:
    """The objects the collector tracks, by type, after two collections: one untracks a tuple of untracked values
    only if it reaches the tuple after them (a cache entry holding its witnesses' tuple may come first), as the
    younger generations' collections, many a full one, do in a node."""
    gc.collect()
    gc.collect()
    return Counter(type(value).__name__ for value in gc.get_objects())


@pytest.mark.usefixtures("only_new_objects_collected")
def test_agents_their_vouches_evidence_and_reads_leave_the_collector_nothing():
    engine = TrustEngine("own", ["root"], epoch_ms=HOUR_MS)
    engine.add_org_vouch("root", "peer", 1.0, record_id=rid(), ts=0)
    engine.recompute(now=0)  # (what its first run imports is not the agents')
    agents = [f"agent{a}" for a in range(AGENTS)]
    _tracked()  # (its first run makes objects of its own: the caches of isinstance)
    before = _tracked()
    for epoch, agent in enumerate(agents):
        engine.add_agent_vouch("root", agent, 0.5, "operator", record_id=rid(), ts=0)
        engine.add_agent_vouch("peer", agent, 0.5, "audit", record_id=rid(), ts=0, scope=["search"])
        engine.add_first_hand(agent, ts=epoch, outcomes=Outcomes(ok=3))
    now = 2 * HOUR_MS
    engine.recompute(now=now)
    for agent in agents:
        engine.add_digest("peer", agent, epoch=0, length=HOUR_MS, outcomes=Outcomes(ok=9, error=1),
                          record_id=rid(), ts=HOUR_MS)
        engine.score(agent, now=now)
        engine.score(agent, now=now, tool="search")
        engine.add_digest("root", agent, epoch=0, length=HOUR_MS, outcomes=Outcomes(ok=9), record_id=rid(),
                          ts=HOUR_MS)  # updates the cached sums read above
    made = _tracked() - before
    assert made.total() < AGENTS / 10, made.most_common(5)


@pytest.mark.usefixtures("only_new_objects_collected")
def test_vouches_for_new_agents_leave_young_collections_nothing_to_promote():
    """Each agent's latest vouches stay untracked from the first, not only once a full collection untracks them: a
    running node's engine (a rebuild after `vouchnet key adopt`, a flood of vouches for new agents) kept a tracked dict
    an agent through its young collections, and the first full collection after walked them all, holding the loop
    96-112 ms of CPU at 2*10^5 agents, 59-64 ms since (benchmarks/adopt_rebuild.py --records 20000 --flood 20000)."""
    engine = TrustEngine("own", ["root"], epoch_ms=HOUR_MS)
    engine.add_org_vouch("root", "peer", 1.0, record_id=rid(), ts=0)
    _tracked()
    before = {id(value) for value in gc.get_objects()}
    for agent in (f"agent{a}" for a in range(AGENTS)):
        engine.add_agent_vouch("root", agent, 0.5, "operator", record_id=rid(), ts=0)
        engine.add_agent_vouch("peer", agent, 0.5, "audit", record_id=rid(), ts=0)
    gc.collect(1)  # (young collections alone, as a node's loop makes them, each untracking the tuples it reaches)
    gc.collect(1)
    made = Counter(type(value).__name__ for value in gc.get_objects() if id(value) not in before)
    assert made.total() < AGENTS / 10, made.most_common(5)


@given(st.dictionaries(st.tuples(st.integers(0, 10**6), st.sampled_from(AGENT_BASES)), st.binary(min_size=32,
                                                                                                 max_size=32)))
def test_an_agents_latest_vouches_come_back_by_issuer_and_basis_as_keyed(vouches):
    """Each (issuer, basis) has a key of its own, and comes back from it (a capture's rows, TrustEngine.operators)."""
    keyed = {vouch_key(issuer, basis): record_id for (issuer, basis), record_id in vouches.items()}
    assert list(latest_vouches(keyed)) == [(issuer, basis, record_id) for (issuer, basis), record_id in vouches.items()]


@pytest.mark.usefixtures("only_new_objects_collected")
def test_vouches_for_new_agents_leave_the_books_latest_vouches_untracked():
    """The vouch book's one dict of every agent's latest vouch of each issuer and basis stays untracked as vouches
    for new agents come: keyed by (agent, issuer, basis) tuples, it was tracked until a full collection untracked it,
    and the first after a rebuild (or a flood of vouches for new agents) walked it, an entry an agent. The rows of the
    vouches by record id are tuples made tracked, so that their dict stays tracked until a full collection."""
    engine = TrustEngine("own", ["root"], epoch_ms=HOUR_MS)
    engine.add_org_vouch("root", "peer", 1.0, record_id=rid(), ts=0)
    _tracked()
    for agent in (f"agent{a}" for a in range(AGENTS)):
        engine.add_agent_vouch("root", agent, 0.5, "operator", record_id=rid(), ts=0)
        engine.add_agent_vouch("peer", agent, 0.5, "audit", record_id=rid(), ts=0)
    gc.collect(1)  # (young collections alone, as a node's loop makes them)
    gc.collect(1)
    held = {**vars(engine), **{f"book.{name}": value for name, value in vars(engine._vouches).items()}}
    assert sorted(name for name, value in held.items() if isinstance(value, dict) and gc.is_tracked(value)) == [
        "book.by_id"]


@given(st.integers(0, 2**31 - 1), st.integers(0, 10**12), st.sampled_from(AGENT_BASES))
def test_a_latest_vouch_comes_back_by_agent_issuer_and_basis_as_keyed(agent, issuer, basis):
    """Each (agent, issuer, basis) has a key of its own, an int, and comes back from it (a capture's rows)."""
    key = latest_key(agent, issuer, basis)
    assert type(key) is int and latest_of(key) == (agent, issuer, basis)
