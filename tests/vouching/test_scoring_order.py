"""Two nodes that hold the same records give every agent the same integer score and tier, whatever order the records
arrived in (DESIGN.md §6: scores 0-1000 every node computing over the same records agrees on). Each issuer's records
arrive in its chain order (the acceptor holds gaps); how issuers interleave is up to the network."""

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vouching.evidence import Outcomes
from vouching.params import DAY_MS, HOUR_MS
from vouching.scoring import TrustEngine

ROOTS = ["a", "b", "c"]
ORGS = [*ROOTS, "d", "e"]
AGENTS = ["x", "y"]

# (issuer, op): a digest (agent, hour, ok, error, denied, timeout), a vouch for an agent (agent, weight, basis)
# or for an org (subject, weight); "own" stands for this node's first-hand observations.
_count = st.integers(0, 60)
_digest = st.tuples(st.just("digest"), st.sampled_from(AGENTS), st.integers(0, 3), _count, st.integers(0, 6),
                    st.integers(0, 3), st.integers(0, 4))
_agent_vouch = st.tuples(st.just("agent-vouch"), st.sampled_from(AGENTS), st.floats(0.05, 1.0),
                         st.sampled_from(["audit", "developer", "interaction"]))
_org_vouch = st.tuples(st.just("org-vouch"), st.sampled_from(ORGS), st.floats(0.05, 1.0))
_records = st.lists(st.tuples(st.sampled_from([*ORGS, "own"]), st.one_of(_digest, _agent_vouch, _org_vouch)),
                    max_size=40)


def _feed(engine: TrustEngine, issuer: str, op: tuple, record_id: bytes) -> None:
    kind = op[0]
    if kind == "digest":
        _, agent, hour, ok, error, denied, timeout = op
        outcomes = Outcomes(ok, error, denied, timeout)
        if issuer == "own":
            engine.add_first_hand(agent, ts=(hour + 1) * HOUR_MS, outcomes=outcomes)
        else:
            engine.add_digest(issuer, agent, epoch=hour * HOUR_MS, length=HOUR_MS, outcomes=outcomes,
                              record_id=record_id, ts=(hour + 1) * HOUR_MS)
    elif kind == "agent-vouch" and issuer != "own":
        engine.add_agent_vouch(issuer, op[1], op[2], op[3], record_id=record_id, ts=0)
    elif kind == "org-vouch" and issuer not in ("own", op[1]):
        engine.add_org_vouch(issuer, op[1], op[2], record_id=record_id, ts=0)


def _scores(records: list[tuple[str, tuple]], order: list[int], now: int) -> list[tuple[int, str, int, str]]:
    """Each agent's (score, tier) as first read and after a full recompute, the records fed in `order` (indices
    into `records`, each issuer's in their list order)."""
    engine = TrustEngine("own", ROOTS)
    for i in order:
        _feed(engine, *records[i], i.to_bytes(32, "big"))
    first = [engine.score(agent, now=now) for agent in AGENTS]
    table = engine.recompute(now=now)
    return [(s.score, s.tier, table.score(a) or 0, engine.score(a, now=now).tier) for a, s in zip(AGENTS, first)]


def _interleaving(records: list[tuple[str, tuple]], keys: list[int]) -> list[int]:
    """The records reordered by `keys` across issuers, each issuer's kept in its own order."""
    slots = sorted(range(len(records)), key=lambda i: (keys[i % len(keys)] if keys else 0, i))
    by_issuer: dict[str, list[int]] = {}
    for i, (issuer, _) in enumerate(records):
        by_issuer.setdefault(issuer, []).append(i)
    taken: dict[str, int] = {}
    order = []
    for slot in slots:  # each slot takes its issuer's next record: the interleaving moves, chains do not
        issuer = records[slot][0]
        order.append(by_issuer[issuer][taken.get(issuer, 0)])
        taken[issuer] = taken.get(issuer, 0) + 1
    return order


# Three roots report the agent's hour 0 with violations in it: bad-report strengths s_a + s_b + s_c sum to 2.0 (the
# `reports_below_provisional` bar) in one order and to 1.9999999999999998 in another, so one node held the agent
# at 199 (untrusted: blocked) and the other at 499 (provisional: audited).
_TIE = [("own", ("digest", "x", 0, 60, 0, 0, 0)), ("a", ("digest", "x", 0, 57, 5, 1, 2)),
        ("b", ("digest", "x", 0, 21, 4, 2, 3)), ("c", ("digest", "x", 0, 0, 0, 1, 0))]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(_records, st.lists(st.integers(0, 100), max_size=40), st.integers(HOUR_MS, 10 * DAY_MS))
@example(_TIE, [0, 3, 1, 2], HOUR_MS)
def test_the_same_records_in_any_order_give_the_same_scores_and_tiers(records, keys, now):
    assert _scores(records, _interleaving(records, keys), now) == _scores(records, list(range(len(records))), now)
