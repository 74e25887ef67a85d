"""What the trust engine leaves for Python's garbage collector, whose full collections walk every object it tracks
and hold the node's loop meanwhile: an agent, its evidence and its cached sums leave no tracked object (tuples and
dicts holding none are untracked by a collection), nor do its vouches (benchmarks/gc_objects.py)."""

import gc
from collections import Counter

from vouching.evidence import Outcomes
from vouching.params import HOUR_MS
from vouching.scoring import TrustEngine

from tests.vouching.trust_world import rid

AGENTS = 500


def _tracked() -> Counter[str]:
    """The objects the collector tracks, by type, after two collections: one untracks a tuple of untracked values
    only if it reaches the tuple after them (a cache entry holding its witnesses' tuple may come first), as the
    younger generations' collections, many a full one, do in a node."""
    gc.collect()
    gc.collect()
    return Counter(type(value).__name__ for value in gc.get_objects())


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
