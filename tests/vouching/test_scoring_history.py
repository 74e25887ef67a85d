"""What came before does not move a score (DESIGN.md §6: the same records give every node the same score at the same
now): two engines fed the same records in different interleavings (each issuer's chain in order), one read and
recomputed at random times in between (earlier and later than the final read), give the same scores, explanations,
tool checks and org standing after a recompute at the same now, and without one whatever reads came before; and every
explanation composes to its score exactly.

The streams reach where test_scoring_order and test_scoring_exact do not: revocations dated before and after the
vouch's reads, agent and org vouches that expire, scoped vouches, the smallest positive weight, equivocation flags
arriving between records, digests of epochs far in the past and several hours long, dated up to 6 minutes either side
of their end (past the future tolerance), DP digests, and this node's own observations."""

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vouching.evidence import Outcomes
from vouching.explanation import Explanation
from vouching.params import DAY_MS, HOUR_MS
from vouching.quantiles import score_of
from vouching.rules import cap_score
from vouching.scoring import TrustEngine
from vouching.tiers import tier_of

from tests.vouching.test_scoring_order import _interleaving

ROOTS = ["a", "b"]
ORGS = [*ROOTS, "c", "d", "e"]
AGENTS = ["x", "y", "z"]
TOOL = "search"
TINY = 5e-324  # the smallest positive float: a weight a vouch may carry
LATEST = 300 * HOUR_MS

_expiry = st.none() | st.sampled_from([HOUR_MS, 2 * HOUR_MS, DAY_MS, 200 * HOUR_MS])
_weight = st.sampled_from([TINY, 0.3, 0.5, 1.0])
# (op, ...): a digest (agent, first hour, hours, ok, error, denied, timeout, dp epsilon, minutes of skew / 3)
_digest = st.tuples(st.just("digest"), st.sampled_from(AGENTS), st.sampled_from([0, 1, 2, 3, 24, 100, 1000, 5000]),
                    st.integers(1, 3), st.integers(0, 40), st.integers(0, 4), st.integers(0, 3), st.integers(0, 3),
                    st.none() | st.sampled_from([0.5, 2.0]), st.integers(-2, 2))
_agent_vouch = st.tuples(st.just("agent-vouch"), st.sampled_from(AGENTS), _weight,
                         st.sampled_from(["operator", "audit", "developer", "interaction"]), _expiry,
                         st.none() | st.just((TOOL,)))
_org_vouch = st.tuples(st.just("org-vouch"), st.sampled_from(ORGS), _weight, _expiry)
# a revocation of the issuer's n-th vouch so far, dated at ts
_revoke = st.tuples(st.just("revoke"), st.integers(0, 20), st.sampled_from([0, HOUR_MS, 10 * DAY_MS]))
_equivocate = st.tuples(st.just("equivocate"), st.sampled_from(ORGS[2:]))
_first_hand = st.tuples(st.just("first-hand"), st.sampled_from(AGENTS), st.integers(0, 3), st.integers(0, 3))
records = st.lists(st.one_of(
    st.tuples(st.sampled_from(ORGS), st.one_of(_digest, _agent_vouch, _org_vouch, _revoke, _equivocate)),
    st.tuples(st.just("own"), _first_hand)), max_size=40)
# (before which record, at which now, with a full recompute)
reads = st.lists(st.tuples(st.integers(0, 40), st.integers(0, LATEST), st.booleans()), max_size=6)


class _Feeder:
    """Feeds one engine records of the streams above: each issuer's vouches so far (for its revocations), and this
    node's clock for its own observations, 20 minutes a batch. Each issuer's records move its chain's clock, which
    dates its revocations, as feed_record does (TrustEngine.chain_time)."""

    def __init__(self, engine: TrustEngine) -> None:
        self.engine = engine
        self.issued: dict[str, list[bytes]] = {}
        self.own_clock = 0

    def feed(self, n: int, issuer: str, op: tuple) -> None:
        engine, record, kind = self.engine, n.to_bytes(32, "big"), op[0]
        ts = (op[2] + op[3]) * HOUR_MS + op[9] * 180_000 if kind == "digest" else op[2] if kind == "revoke" else 0
        at = ts if kind == "first-hand" else engine.chain_time(issuer, ts)
        if kind == "digest":
            _, agent, hour, hours, ok, error, denied, timeout, dp_epsilon, skew = op
            engine.add_digest(issuer, agent, epoch=hour * HOUR_MS, length=hours * HOUR_MS,
                              outcomes=Outcomes(ok, error, denied, timeout), record_id=record, ts=ts,
                              dp_epsilon=dp_epsilon)
        elif kind == "agent-vouch":
            _, agent, weight, basis, expires, scope = op
            engine.add_agent_vouch(issuer, agent, weight, basis, record_id=record, ts=0, expires=expires, scope=scope)
            self.issued.setdefault(issuer, []).append(record)
        elif kind == "org-vouch" and op[1] != issuer:
            engine.add_org_vouch(issuer, op[1], op[2], record_id=record, ts=0, expires=op[3])
            self.issued.setdefault(issuer, []).append(record)
        elif kind == "revoke" and self.issued.get(issuer):
            mine = self.issued[issuer]
            engine.revoke(issuer, mine[op[1] % len(mine)], ts=at)
        elif kind == "equivocate" and op[1] != issuer:
            engine.flag_equivocator(op[1])
        elif kind == "first-hand":
            _, agent, ok, denied = op
            self.own_clock += 20 * 60_000
            engine.add_first_hand(agent, ts=self.own_clock, outcomes=Outcomes(ok=ok, denied=denied))


def _fed(records: list[tuple[str, tuple]], order: list[int], reads: list[tuple[int, int, bool]],
         read: Callable[..., object] = TrustEngine.score) -> TrustEngine:
    """An engine fed `records` in `order`, `read(engine, agent, now=...)` for every agent (and a recompute first,
    where asked) at each of `reads` before the record it names."""
    feeder = _Feeder(TrustEngine("own", ROOTS))
    for step, n in enumerate(order):
        for before, at, recompute in reads:
            if before == step:
                if recompute:
                    feeder.engine.recompute(now=at)
                for agent in AGENTS:
                    read(feeder.engine, agent, now=at)
        feeder.feed(n, *records[n])
    return feeder.engine


def _outputs(engine: TrustEngine, now: int) -> tuple:
    engine.recompute(now=now)
    return ([(engine.score(a, now=now), engine.explain(a, now=now), engine.scopes(a, now=now),
              engine.explain(a, now=now, tool=TOOL)) for a in AGENTS],
            sorted(engine.orgs(now=now), key=lambda o: o.org))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.lists(st.integers(0, 100), max_size=40), reads, st.integers(0, LATEST))
def test_the_same_records_give_the_same_outputs_whatever_was_read_and_recomputed_before(records, keys, reads, now):
    quiet = _fed(records, list(range(len(records))), [])
    busy = _fed(records, _interleaving(records, keys), reads)
    assert _outputs(quiet, now) == _outputs(busy, now)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.lists(st.tuples(st.integers(0, 40), st.integers(0, LATEST), st.just(False)), max_size=8),
       st.lists(st.integers(0, LATEST), max_size=6), st.integers(0, LATEST))
def test_reads_at_any_times_before_do_not_move_a_score(records, reads, later, now):
    """Without a recompute (whose credibility and accountability are of its own now): reads between records and
    after them, at times before and after `now`, general and of a tool, leave every answer at `now` as it is."""
    read, fresh = _fed(records, list(range(len(records))), reads), _fed(records, list(range(len(records))), [])
    for at in later:
        for agent in AGENTS:
            read.score(agent, now=at)
            read.score(agent, now=at, tool=TOOL)
    for agent in AGENTS:
        assert read.score(agent, now=now) == fresh.score(agent, now=now)
        assert read.explain(agent, now=now, tool=TOOL) == fresh.explain(agent, now=now, tool=TOOL)
        assert read.scopes(agent, now=now) == fresh.scopes(agent, now=now)
    assert read.orgs(now=now) == fresh.orgs(now=now)


def _composes(engine: TrustEngine, agent: str, *, now: int, tool: str | None = None) -> None:
    """The explanation's parts add up to its score exactly, as a reader of the API's answer adds them."""
    e: Explanation = engine.explain(agent, now=now, tool=tool)
    p, score = engine.params, e.score
    counted = [v.lift for v in e.vouches if v.status == "counted"]
    assert sum(v.lift for v in e.vouches) == sum(counted)
    assert e.vouch_lift == min(sum(counted), e.vouch_lift_cap)
    assert e.alpha == e.prior_good + e.vouch_lift + sum(o.counted_good for o in e.orgs)
    assert e.beta == e.prior_bad + sum(o.counted_bad for o in e.orgs)
    assert e.recent_bad_reports == sum(o.counted_reports for o in e.orgs)
    assert e.independent_orgs == len({o.group for o in e.orgs if o.independent})
    assert e.uncapped_score == score_of(e.alpha, e.beta, e.quantile)
    assert (score.score, score.caps) == cap_score(e.uncapped_score, e.recent_bad_reports, e.independent_orgs, p)
    assert 0 <= score.score <= 1000 and score.tier == tier_of(score.score)
    evidence = e.alpha - e.prior_good + e.beta - e.prior_bad
    assert score.confidence == evidence / (evidence + p.confidence_half)
    assert score == engine.score(agent, now=now, tool=tool)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(records, reads, st.integers(0, LATEST))
def test_every_explanation_composes_to_its_score(records, reads, now):
    engine = _fed(records, list(range(len(records))), reads, read=_composes)
    engine.recompute(now=now)
    for agent in [*AGENTS, "nobody"]:
        _composes(engine, agent, now=now)
        _composes(engine, agent, now=now, tool=TOOL)
