"""The bad evidence of orgs below the witness weight counts as far as other sources corroborate it: one independence
group's beyond what every other source reports counts at most C, and a discredited org's at most as much as this
node's own observations and orgs at the witness weight report, its recent bad reports not at all (README "How scores
are computed", 4 and 7; vouching.confirmation)."""

from dataclasses import replace

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from vouching.confirmation import counted_bad, counted_bad_array
from vouching.evidence import Outcomes
from vouching.grid import GRID
from vouching.params import HOUR_MS, ScoringParams
from vouching.quantiles import source_cap

from tests.vouching.trust_world import World, rid

C = source_cap(ScoringParams())
NO_DEVIATION_TEST = replace(ScoringParams(), deviation_min_reference=10**9)


def _verified_then_reported(liars: int, *, minted: bool = False, seen_denied: int = 0,
                            params: ScoringParams | None = None) -> World:
    """Agent `victim` with a day of clean digests from five root orgs (verified, 843), this node's own observation of
    `seen_denied` violations, then one digest of five violations from each of `liars` orgs nobody could check yet
    (weight at most 0.296, below the witness weight 0.3): orgs the root vouches for, each its own independence group,
    or (`minted`) orgs that one org the root vouches for vouched into being, all in its group."""
    w = World(orgs=5, params=params)
    w.history("victim", range(24))
    if seen_denied:
        w.engine.add_first_hand("victim", ts=24 * HOUR_MS + 1, outcomes=Outcomes(denied=seen_denied))
    w.engine.add_org_vouch("root", "minter", 1.0, record_id=rid(), ts=0)
    for i in range(liars):
        w.engine.add_org_vouch("minter" if minted else "root", f"liar{i}", 1.0, record_id=rid(), ts=0)
        w.digest(f"liar{i}", "victim", 24, denied=5)
    return w


def _liars_bad(e) -> float:
    return sum(part.counted_bad for part in e.orgs if part.org.startswith("liar"))


def test_one_org_nobody_could_check_yet_cannot_take_a_verified_agent_below_trusted():
    """One such org's digest of five violations took a verified agent from 843 to 385 (provisional), and those of
    five orgs one org minted to 236: their word, which cannot make an agent verified, unmade it two tiers down. Now
    their group's bad beyond what anyone else reports counts C, as one org's good does; and once the deviation test
    finds the liar disagreeing with the roots, none of it."""
    for liars, minted in [(1, False), (5, True)]:
        w = _verified_then_reported(liars, minted=minted)
        e = w.engine.explain("victim", now=w.now)
        assert (e.score.score, e.score.tier) == (651, "trusted")
        assert e.beta == e.prior_bad + C and e.uncorroborated_bad == _liars_bad(e) - C > 0
        assert e.beta == e.prior_bad + sum(part.counted_bad for part in e.orgs) - e.uncorroborated_bad
        assert {part.bad_counts for part in e.orgs if part.org.startswith("liar")} == {"as corroborated"}
        assert "uncorroborated-bad" in {rule.code for rule in e.rules}
        untested = _verified_then_reported(liars, minted=minted, params=NO_DEVIATION_TEST)
        assert untested.engine.recompute(now=w.now).score("victim") == 651  # (the numpy sums agree)
        assert w.engine.recompute(now=w.now).score("victim") == 843 == w.score("victim")
        caught = w.engine.explain("victim", now=w.now)
        assert {part.bad_counts for part in caught.orgs if part.org.startswith("liar")} == {"as confirmed"}
        assert caught.recent_bad_reports == 0 and caught.beta == caught.prior_bad


def test_independent_orgs_corroborate_each_other():
    """The rule bounds one independence group's word, not that of several: two independent orgs nobody could check
    yet reporting the same agent count in full, as before (on Bitcoin OTC most raters are such orgs)."""
    e = _verified_then_reported(2).engine.explain("victim", now=25 * HOUR_MS)
    assert e.uncorroborated_bad == 0 and e.beta == e.prior_bad + _liars_bad(e)
    assert e.score.tier == "provisional"


def test_what_this_node_saw_corroborates_their_word():
    """This node saw one violation (10 bad): one liar's bad counts as much, and beyond it C."""
    now = 25 * HOUR_MS
    seen = _verified_then_reported(0, seen_denied=1).engine.explain("victim", now=now)
    assert seen.beta == seen.prior_bad + 10
    e = _verified_then_reported(1, seen_denied=1).engine.explain("victim", now=now)
    assert _liars_bad(e) > 10 + C
    assert e.beta == seen.beta + 10 + C and e.uncorroborated_bad == _liars_bad(e) - 10 - C
    assert e.score.score < seen.score.score
    untested = _verified_then_reported(1, seen_denied=1, params=NO_DEVIATION_TEST).engine
    assert untested.recompute(now=now).score("victim") == e.score.score


def test_an_org_at_the_witness_weight_alone_still_sinks_an_agent_that_turned_bad():
    """The rule bars no source the node can act on: a root reporting an agent it used to see behave (verified) as
    violating takes it below trusted at its first digest and below provisional within four."""
    w = World(orgs=5)
    w.history("turned", range(24))
    scores = []
    for hour in range(24, 28):
        w.digest("org0", "turned", hour, ok=1, denied=4)
        scores.append(w.score("turned"))
    assert scores[0] < 500 and min(scores) < 200


def test_orgs_that_lost_their_credibility_cannot_take_an_agent_to_untrusted():
    """The shipped slander scenario on a testnet: two established orgs, discredited by the deviation test (weight
    0.04-0.07 there, 0.06 here), reported honest agents the node knew little of as violating, 60 bad a window each:
    Beta(4.29, 7.95), 149 (untrusted), where they stood at 497 (provisional) without them."""
    w = World(orgs=2, rooted=False)
    for epoch in range(12):
        w.engine.add_first_hand("seen", ts=epoch * HOUR_MS + 1, outcomes=Outcomes(ok=4))
    for liar in w.orgs:
        for epoch in (10, 11):
            w.digest(liar, "seen", epoch, denied=4)
    for epoch in (10, 11):
        w.engine.add_first_hand("thin", ts=epoch * HOUR_MS + 1, outcomes=Outcomes(ok=3))
    w.engine.recompute(now=w.now)
    before = w.score("thin")
    assert before == 499
    for liar in w.orgs:
        assert 0.04 < w.engine.org(liar, now=w.now).weight < 0.07
        w.digest(liar, "thin", 12, denied=6)
    assert w.score("thin") == before
    assert w.engine.recompute(now=w.now).score("thin") == w.score("thin") == before


on_grid = st.integers(0, 2**30).map(lambda k: k / GRID)


@given(on_grid, st.lists(on_grid, max_size=6), on_grid)
def test_a_groups_bad_beyond_what_the_rest_report_counts_at_most_c(full, light, discredited):
    """counted_bad is the rule as README states it, group by group, and its array form agrees with it exactly."""
    rest = [full + sum(light) - mine for mine in light]
    excess = sum(max(0.0, mine - others) for mine, others in zip(light, rest))
    expected = (full + sum(min(mine, others) for mine, others in zip(light, rest)) + min(excess, C)
                + min(discredited, full))
    assert counted_bad(full, light, discredited, C) == expected
    as_array = counted_bad_array(np.array([full]), np.array([sum(light)]), np.array([max(light, default=0.0)]),
                                 np.array([discredited]), C)
    assert as_array.tolist() == [expected]
