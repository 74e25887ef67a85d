"""Org reputation: personalised PageRank from the roots, its Sybil bound, independence groups, and what the
deviation test and voucher accountability do to an org's weight."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vouching import engine_state
from vouching.deviation import credibility
from vouching.evidence import Outcomes
from vouching.params import DAY_MS, HOUR_MS, ScoringParams
from vouching.reputation import _hops_from_roots, full_weight_reference, independence_groups, personalised_pagerank
from vouching.scoring import TrustEngine
from vouching.tiers import TRUSTED

from tests.vouching.trust_world import World, rid


def _ppr(n, edges, roots, keep=None):
    src = np.array([e[0] for e in edges], dtype=np.int64)
    dst = np.array([e[1] for e in edges], dtype=np.int64)
    weight = np.array([e[2] if len(e) > 2 else 1.0 for e in edges])
    keep = np.ones(n) if keep is None else keep
    return personalised_pagerank(n, src, dst, weight, np.array(roots), keep, restart=0.3, tolerance=1e-12,
                                 max_iterations=1000)


def test_reputation_is_a_distribution_concentrated_near_the_roots():
    rep, _ = _ppr(4, [(0, 1), (1, 2), (2, 3)], [0])
    assert rep.sum() == pytest.approx(1)
    assert rep[0] > rep[1] > rep[2] > rep[3] > 0


def test_an_org_nobody_trusted_vouches_for_has_no_reputation():
    rep, _ = _ppr(3, [(1, 2)], [0])
    assert rep[1] == rep[2] == 0


def test_what_an_org_does_not_pass_on_returns_to_the_roots():
    full, _ = _ppr(3, [(0, 1), (1, 2)], [0])
    half, _ = _ppr(3, [(0, 1), (1, 2, 0.5)], [0])
    distrusted, _ = _ppr(3, [(0, 1), (1, 2)], [0], keep=np.array([1.0, 0.0, 1.0]))
    assert half[2] < 0.6 * full[2] and half.sum() == pytest.approx(1)
    assert distrusted[2] == 0 and distrusted[0] > full[0]


@pytest.mark.parametrize("sybils", [10, 1000])
def test_a_sybil_region_holds_what_its_attack_edges_bring_however_many_sybils_it_mints(sybils):
    honest = 50
    rng = np.random.default_rng(7)
    edges = [(i, int(j)) for i in range(honest) for j in rng.choice(honest, 5, replace=False) if i != j]
    attacker = honest
    n = honest + 1 + sybils
    edges += [(3, attacker), (17, attacker)]  # two attack edges
    edges += [(attacker, honest + 1 + s) for s in range(sybils)]
    edges += [(honest + 1 + s, honest + 1 + (s + 1) % sybils) for s in range(sybils)]
    edges += [(honest + 1 + s, attacker) for s in range(sybils)]
    rep, _ = _ppr(n, edges, [0, 1])
    mass = rep[honest:].sum()
    expected = TestSybilMass.reference.setdefault("mass", mass)
    assert mass == pytest.approx(expected, rel=0.01)
    assert mass < 0.05


class TestSybilMass:
    reference: dict = {}


def test_the_full_weight_reference_ignores_a_crowd_of_tiny_sybils():
    rep = np.array([0.5, 0.1, 0.1, 0.1, 0.1] + [0.1 / 1000] * 1000)
    is_root = np.zeros(len(rep), dtype=bool)
    is_root[0] = True
    without = full_weight_reference(rep[:5] / rep[:5].sum(), is_root[:5], 0.5)
    with_sybils = full_weight_reference(rep / rep.sum(), is_root, 0.5)
    assert with_sybils == pytest.approx(without, rel=0.2)


def _groups(n, edges, roots, flows=None):
    """independence_groups over `edges` (src, dst) with `flows` (1 each if None) and trust `roots`."""
    src = np.array([e[0] for e in edges], dtype=np.int64)
    dst = np.array([e[1] for e in edges], dtype=np.int64)
    is_root = np.zeros(n, dtype=bool)
    is_root[roots] = True
    return independence_groups(n, src, dst, np.ones(len(edges)) if flows is None else np.array(flows, dtype=float),
                               is_root, 0.5)


def test_groups_follow_principal_vouchers_but_not_roots():
    """Org 5, vouched for equally by 1 and 2, is in 1's group (1 comes first): an org no root vouches for founds
    no group, or two colluding orgs that each vouch for it would mint an independent witness with every such org
    (test_orgs_only_two_colluding_orgs_vouch_for_are_not_more_independent_witnesses_than_the_two)."""
    # 0 root; 1 and 2 vouched by the root; 1 and 2 each vouch for three orgs, one of them (5) shared;
    # 6 only by 3.
    n = 9
    edges = [(0, 1), (0, 2), (1, 3), (1, 4), (1, 5), (2, 5), (2, 7), (2, 8), (3, 6)]
    rep, share = _ppr(n, edges, [0])
    src = np.array([e[0] for e in edges])
    flow = rep[src] * share
    assert list(_groups(n, edges, [0], flow)) == [0, 1, 2, 1, 1, 1, 1, 2, 2]


def test_orgs_only_two_colluding_orgs_vouch_for_are_not_more_independent_witnesses_than_the_two():
    # 0 is the root; it vouches for 1 and 2 (the attack edges); 1 and 2 each vouch for 3, 4 and 5 alike.
    edges = [(0, 1), (0, 2)] + [(v, s) for s in (3, 4, 5) for v in (1, 2)]
    group = _groups(6, edges, [0])
    assert len(set(group[1:].tolist())) <= 2


def test_orgs_that_vouch_for_each_other_behind_a_colluder_found_no_group():
    """Pairs that a colluding org vouches for lightly and that vouch for each other fully get more reputation from
    each other than from it (PageRank's flow circulates), but only the colluder is nearer the roots: its group."""
    pairs = [(2 + 2 * i, 3 + 2 * i) for i in range(4)]
    edges = [(0, 1)] + [(1, s, 0.1) for pair in pairs for s in pair]
    edges += [e for a, b in pairs for e in ((a, b, 1.0), (b, a, 1.0))]
    rep, share = _ppr(10, edges, [0])
    src = np.array([e[0] for e in edges])
    flow = rep[src] * share
    assert flow[edges.index((3, 2, 1.0))] > 2 * flow[edges.index((1, 2, 0.1))]  # to 2: 3 brings > twice what 1 does
    assert set(_groups(10, edges, [0], flow)[1:].tolist()) == {1}


def test_the_roots_and_the_orgs_they_vouch_for_found_groups():
    """An honest org a root vouches for is independent of the other orgs vouching for it, unless one other org
    carries most of its reputation; an org two of them vouch for is in the group of the heavier."""
    # 0 and 1 roots; 0 vouches for 2, 3 and 4, 1 for 4 and 5; 2 and 3 vouch for 6, 3 more heavily; 5 vouches for
    # 4 (as heavily as both roots) and 0 for 1.
    edges = [(0, 2), (0, 3), (0, 4), (1, 4), (1, 5), (2, 6), (3, 6), (5, 4), (0, 1)]
    flows = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 1.0]
    assert list(_groups(7, edges, [0, 1], flows)) == [0, 1, 2, 3, 4, 5, 3]
    flows[7] = 2.1  # now more than half of 4's inflow
    assert list(_groups(7, edges, [0, 1], flows)) == [0, 1, 2, 3, 5, 5, 3]


_flows = st.sampled_from([0.0, 0.5, 1.0, 2.0])  # few values: equal flows are common


@given(st.integers(1, 2), st.integers(0, 3), st.integers(1, 3), st.integers(0, 8), st.data())
def test_k_colluding_orgs_yield_at_most_k_groups_among_the_orgs_only_they_vouch_for(roots, honest, k, minted,
                                                                                    data):
    """Whatever k colluding orgs inside the trust graph (each vouched for by a root or an honest org) vouch for, and
    whatever flows their vouches carry, the orgs that only they and those orgs vouch for are in their groups. (Orgs
    that no chain of vouches from the colluders reaches have no reputation.)"""
    n = roots + honest + k + minted
    trusted, colluders, sybils = range(roots + honest), range(roots + honest, roots + honest + k), \
        range(roots + honest + k, n)
    org = st.integers(0, n - 1)
    edges = [(data.draw(st.integers(0, roots - 1)), h) for h in range(roots, roots + honest)]
    edges += [(data.draw(st.sampled_from(trusted)), c) for c in colluders]
    edges += data.draw(st.lists(st.tuples(st.sampled_from(trusted), st.sampled_from([*trusted, *colluders])),
                                max_size=10))
    edges += data.draw(st.lists(st.tuples(st.sampled_from([*colluders, *sybils]), org), max_size=40))
    edges = [(a, b) for a, b in edges if a != b]
    flows = data.draw(st.lists(_flows, min_size=len(edges), max_size=len(edges)))
    group = _groups(n, edges, list(range(roots)), flows)
    theirs = set(colluders)  # then what they vouch for, and what that vouches for, ...
    while grown := {b for a, b in edges if a in theirs and b in sybils} - theirs:
        theirs |= grown
    assert {int(group[o]) for o in theirs} <= {int(group[c]) for c in colluders}  # so at most k


@given(st.integers(1, 30), st.data())
def test_hops_from_the_roots_are_the_fewest_vouches_from_one(n, data):
    edges = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n))
    roots = data.draw(st.sets(st.integers(0, n - 1), max_size=3))
    hops = {r: 0 for r in roots}
    while grown := {b: hops[a] + 1 for a, b in edges if a in hops and b not in hops}:  # one vouch further
        hops.update(grown)
    src, dst = (np.array([e[i] for e in edges], dtype=np.int64) for i in (0, 1))
    is_root = np.zeros(n, dtype=bool)
    is_root[list(roots)] = True
    assert _hops_from_roots(n, src, dst, is_root).tolist() == [hops.get(o, np.inf) for o in range(n)]


def test_a_cycle_of_principal_vouchers_is_one_group():
    n = 3
    src, dst = np.array([1, 2]), np.array([2, 1])
    group = independence_groups(n, src, dst, np.array([1.0, 1.0]), np.array([True, False, False]), 0.5)
    assert group[1] == group[2] == 1


def _walked(parent: list[int]) -> list[int]:
    """Groups by walking each org's principal vouchers: the org where the walk stops, or a cycle's least org."""
    groups = []
    for start in range(len(parent)):
        path = [start]
        while parent[path[-1]] != path[-1] and parent[path[-1]] not in path:
            path.append(parent[path[-1]])
        end = path[-1]
        groups.append(end if parent[end] == end else min(path[path.index(parent[end]):]))
    return groups


@given(st.lists(st.integers(0, 30), min_size=1, max_size=30))
def test_groups_resolve_every_shape_of_principal_vouchers(pointers):
    parent = [p % len(pointers) for p in pointers]  # each org's only voucher (itself: none)
    vouched = [org for org, voucher in enumerate(parent) if voucher != org]
    src, dst = np.array([parent[org] for org in vouched], dtype=np.int64), np.array(vouched, dtype=np.int64)
    group = independence_groups(len(parent), src, dst, np.ones(len(vouched)), np.zeros(len(parent), bool), 0.5)
    assert group.tolist() == _walked(parent)


def _slander_world():
    w = World(orgs=6, rooted=False)
    for agent in ["a1", "a2", "a3", "a4"]:
        for epoch in range(12):
            w.engine.add_first_hand(agent, ts=epoch * 3_600_000 + 1, outcomes=_ok(4))
            w.digest("org0", agent, epoch, ok=4)
            w.digest("org1", agent, epoch, ok=3, error=1)
            w.digest("org2", agent, epoch, denied=4)  # slander
    return w


def _ok(n):
    from vouching.evidence import Outcomes
    return Outcomes(ok=n)


def test_an_org_whose_digests_contradict_first_hand_evidence_loses_credibility():
    w = _slander_world()
    w.engine.recompute(now=w.now)
    honest, noisy, slanderer = (w.engine.org(o, now=w.now) for o in ["org0", "org1", "org2"])
    assert slanderer.disagreements > 40 and slanderer.credibility < 0.05
    assert honest.credibility > 0.9 and noisy.credibility > 0.9
    assert slanderer.weight < 0.05 < 0.5 < honest.weight


def test_once_discredited_a_slanderer_cannot_push_a_good_agent_below_trusted():
    w = _slander_world()
    w.engine.recompute(now=w.now)
    assert all(w.tier(a) in ("trusted", "verified") for a in ["a1", "a2", "a3", "a4"])


def test_slander_dated_in_the_future_holds_no_longer_than_slander_dated_now():
    # A digest's time is its issuer's word (ts need only follow the epoch's end). Dated a year ahead, two untested
    # orgs' reports of one violation each did not decay, and no reference evidence lay near their date for the
    # deviation test: they held an agent this node saw behave at 499 for a year instead of a day or two.
    w = World(orgs=4, rooted=False)
    for agent in ["a", "b"]:
        for hour in range(24):
            w.engine.add_first_hand(agent, ts=(hour + 1) * HOUR_MS, outcomes=_ok(20))
    w.now = 24 * HOUR_MS
    for org in w.orgs[:2]:
        w.digest(org, "a", 23, denied=1)  # dated now
    epoch = w.now + 365 * DAY_MS
    for org in w.orgs[2:]:
        w.engine.add_digest(org, "b", epoch=epoch, length=HOUR_MS, outcomes=Outcomes(denied=1), record_id=rid(),
                            ts=epoch + HOUR_MS)
    assert w.tier("a") == "provisional"
    week = w.now + 7 * DAY_MS
    w.engine.recompute(now=week)
    assert [w.engine.score(agent, now=week).tier for agent in ["a", "b"]] == ["trusted", "trusted"]
    assert "future-dated" in {rule.code for rule in w.engine.explain("b", now=week).rules}
    assert w.engine.explain("b", now=epoch + HOUR_MS).recent_bad_reports >= 0.4  # it counts from its date on


def _slandered(slanderers: int, *, minted: bool, denied: int = 5, params: ScoringParams | None = None,
               read: bool = False) -> World:
    """Agent `victim` with a day of clean digests from five root orgs (verified), then a report of `denied`
    violations from each of `slanderers` orgs nobody could check yet: orgs the root vouches for, or (`minted`) orgs
    that one org the root vouches for vouched into being; with `read`, its score read as each report arrives. Read
    before a recompute: the deviation test has not caught them yet."""
    w = World(orgs=5, params=params)
    w.history("victim", range(24))
    w.engine.add_org_vouch("root", "minter", 1.0, record_id=rid(), ts=0)
    for i in range(slanderers):
        w.engine.add_org_vouch("minter" if minted else "root", f"liar{i}", 1.0, record_id=rid(), ts=0)
    for i in range(slanderers):
        w.digest(f"liar{i}", "victim", 24, denied=denied)
        if read:
            w.score("victim")
    return w


def test_orgs_one_org_mints_slander_an_agent_no_further_than_its_reputation_carries():
    """Org keys are free, but the orgs one org vouches into being share the reputation it passes on (DESIGN.md §6,
    README "How scores are computed", 1): fifty of them weigh what five do, so the bad evidence of their violation
    reports moves an agent no further, whereas every independent org's adds. The bound is what the minter passes
    on, not one org's word: here five minted orgs weigh 2.2 times one (evidence, good or bad, is not limited per
    independence group; the rules after the posterior count witnesses and recent bad reports once per group)."""
    worlds = {(minted, n): _slandered(n, minted=minted) for minted, n in [(True, 5), (True, 50), (False, 5)]}
    few, many, independent = (w.engine.explain("victim", now=w.now) for w in worlds.values())
    assert many.beta == pytest.approx(few.beta, rel=1e-3) and many.score.score == few.score.score
    # Their weights (standing x the credibility of an org nobody could check yet) sum to at most what the reputation
    # the minter passes on makes of full-weight standing.
    p, w = ScoringParams(), worlds[True, 50]
    minter = w.engine.org("minter", now=w.now)
    carried = ((1 - p.restart) * minter.credibility * minter.accountability * minter.reputation
               / minter.full_weight_reputation)
    untested = credibility(np.zeros(1), np.zeros(1), p)[0]
    minted_weight = sum(part.weight for part in many.orgs if part.org.startswith("liar"))
    assert minted_weight <= untested * carried * (1 + 1e-6)
    assert independent.beta - p.prior_bad > 2 * (many.beta - p.prior_bad)
    assert independent.score.score < many.score.score


@pytest.mark.parametrize("minted", [2, 5, 50])
def test_orgs_one_org_mints_hold_an_agent_below_trusted_no_more_than_one_of_them_would(minted):
    """Recent bad reports count once per independence group, as those of its org that weigh most (README "How scores
    are computed", 7), as witnesses for verified count once: the orgs one org vouches into being, all in its group,
    report an agent no more than one of them would, and one org nobody could check yet cannot hold an agent below
    trusted, whereas two independent orgs' reports add up past that hold. Alike whether the score is read as each
    report arrives (its cached sums updated by the report's terms), summed afresh, recomputed or restored from a
    capture of the engine (no deviation test here: the recompute weighs the liars as the reads do)."""
    p = replace(ScoringParams(), deviation_min_reference=10**9)
    one = _slandered(1, minted=True, denied=1, params=p).engine.explain("victim", now=25 * HOUR_MS)
    for liars, held in [(minted, False), (2, True)]:
        w = _slandered(liars, minted=held is False, denied=1, params=p, read=True)
        e = w.engine.explain("victim", now=w.now)
        if held:
            assert e.recent_bad_reports == 2 * one.recent_bad_reports >= p.reports_below_trusted
            assert e.score.score == TRUSTED - 1 and "recent-bad-reports" in e.score.caps
            assert "of each independence group, those of the org that weigh most" in "\n".join(e.lines())
        else:
            assert e.recent_bad_reports <= one.recent_bad_reports < p.reports_below_trusted
            assert e.score.tier == "trusted" and not e.score.caps
            assert sum(part.counts_reports for part in e.orgs if part.org.startswith("liar")) == 1
            assert "not counted: the group of minter counts the reports of its org" in "\n".join(e.lines())
        assert e.recent_bad_reports == sum(part.counted_reports for part in e.orgs)
        unread = _slandered(liars, minted=held is False, denied=1, params=p).engine
        restored = TrustEngine("own", ["root", *w.orgs], p)
        engine_state.restore(engine_state.capture(unread), restored, ())
        scores = {w.engine.score("victim", now=w.now).score}
        for engine in (w.engine, restored):
            scores.add(engine.recompute(now=w.now).score("victim"))
            scores.add(engine.score("victim", now=w.now).score)
        assert scores == {e.score.score}


def test_praising_an_agent_the_reference_saw_fail_also_costs_credibility():
    w = World(orgs=3, rooted=False)
    for epoch in range(12):
        w.engine.add_first_hand("bad", ts=epoch * 3_600_000 + 1, outcomes=_outcomes(ok=1, denied=4))
        w.digest("org0", "bad", epoch, ok=5)
    w.engine.recompute(now=w.now)
    assert w.engine.org("org0", now=w.now).credibility < 0.1


def _outcomes(**kw):
    from vouching.evidence import Outcomes
    return Outcomes(**kw)


def test_a_root_proven_to_equivocate_leaves_the_orgs_weighed_as_if_it_never_was_one():
    """Before: it kept its share of every restart of the PageRank walk and passed it to no one, so that the others'
    reputation fell and the full-weight reference (the roots' mean, its 0 included) fell further: a weak org three
    vouches from a root weighed 0.20 where it weighs 0.14 with the liar never a root."""
    def standing(roots: list[str]) -> dict[str, tuple]:
        engine = TrustEngine("own", roots)
        for voucher, org, weight in (("own", "a", 1.0), ("root", "b", 0.5), ("b", "c", 0.3), ("c", "d", 0.3),
                                     ("liar", "x", 1.0)):
            engine.add_org_vouch(voucher, org, weight, record_id=rid(), ts=0)
        engine.flag_equivocator("liar")
        return {o.org: (o.reputation, o.weight, o.voucher_weight, o.group, o.full_weight_reputation)
                for o in engine.orgs(now=0)}

    flagged_root = standing(["root", "liar"])
    assert flagged_root == standing(["root"]) and 0 < flagged_root["d"][2] < 1


def _judged_world(roots: list[str]) -> TrustEngine:
    """`judge` reports an agent violating its policy each hour for a day, and `member`, vouched for by the node, the
    agent behaving: with `judge` a root, its digests are what `member`'s are tested against."""
    engine = TrustEngine("own", roots)
    engine.add_org_vouch("own", "member", 1.0, record_id=rid(), ts=0)
    for hour in range(24):
        for org, outcomes in (("judge", Outcomes(ok=1, denied=4)), ("member", Outcomes(ok=5))):
            engine.add_digest(org, "agent", epoch=hour * HOUR_MS, length=HOUR_MS, outcomes=outcomes,
                              record_id=rid(), ts=(hour + 1) * HOUR_MS)
    return engine


def test_verdicts_follow_a_root_s_key_merged_into_its_org_as_if_the_link_was_known_from_the_start():
    """The node's root `later` turns out (a rotation) to be a later key of `judge`, whose digests it held: they
    are reference evidence from then on. Before: the verdicts reached without them were kept, `member`'s digests
    never tested against them, so that the node scored otherwise than one that held the same records with the
    link known from the start."""
    now = 24 * HOUR_MS
    running, from_start = _judged_world(["later"]), _judged_world(["judge"])
    running.recompute(now=now)
    assert running.org("member", now=now).disagreements == 0
    assert running.merge_org("later", "judge")
    for engine in (running, from_start):
        engine.recompute(now=now)
    assert running.org("member", now=now) == from_start.org("member", now=now)
    assert running.org("member", now=now).disagreements > 20


def test_a_root_proven_to_equivocate_is_no_longer_what_other_orgs_digests_are_tested_against():
    """Before: its digests went on making the verdicts of every org reporting on the same agents (here `member`'s,
    discredited by a liar's word), although its own counted nothing."""
    now = 24 * HOUR_MS
    flagged, never_root = _judged_world(["judge"]), _judged_world([])
    flagged.recompute(now=now)
    assert flagged.org("member", now=now).disagreements > 20
    flagged.flag_equivocator("judge")
    never_root.flag_equivocator("judge")
    for engine in (flagged, never_root):
        engine.recompute(now=now)
    member = flagged.org("member", now=now)
    assert (member.disagreements, member.credibility) == (0, never_root.org("member", now=now).credibility)


def test_an_org_loses_weight_when_the_agents_it_vouched_for_misbehave():
    w = World(orgs=4)
    for i in range(3):
        w.engine.add_agent_vouch("org3", f"bad{i}", 1.0, "operator", record_id=rid(), ts=0)
        for epoch in range(5):
            w.digest("org0", f"bad{i}", epoch, denied=3)
            w.digest("org1", f"bad{i}", epoch, denied=3)
    w.engine.recompute(now=w.now)
    voucher = w.engine.org("org3", now=w.now)
    bystander = w.engine.org("org2", now=w.now)
    assert voucher.accountability < 0.1 < 0.9 < bystander.accountability
    assert voucher.weight < bystander.weight * 0.1


def _operated(reports: list[tuple[str, str, dict[str, int]]]) -> World:
    """org3 operates the agents `reports` names, which each (org, agent, counts) of them reports in five hourly
    digests."""
    w = World(orgs=4)
    for agent in sorted({agent for _, agent, _ in reports}):
        w.engine.add_agent_vouch("org3", agent, 1.0, "operator", record_id=rid(), ts=0)
    for epoch in range(5):
        for org, agent, counts in reports:
            w.digest(org, agent, epoch, **counts)
    return w


def _accountability_of(w: World, org: str, path: str) -> float:
    """`org`'s accountability as a full recompute by `path` gives it: the engine's own, one on a snapshot of the engine
    (as node.trust runs it off its loop), or that of an engine restored from a capture of it (as a node restarts)."""
    engine = w.engine
    if path == "restored":
        engine = TrustEngine("own", w.roots)
        engine_state.restore(engine_state.capture(w.engine), engine, ())
    if path == "snapshot":
        copying = engine.start_snapshot()
        while copying.step():
            pass
        engine.install(engine.snapshot(copying, now=w.now).compute())
    else:
        engine.recompute(now=w.now)
    return engine.org(org, now=w.now).accountability


@pytest.mark.parametrize("path", ["recompute", "snapshot", "restored"])
def test_an_org_reporting_its_own_agent_s_violations_keeps_its_accountability(path):
    """An org's own reports of an agent it vouched for do not judge the agent for its accountability (README "How
    scores are computed", 3): an operator honestly reporting its agent's violations keeps its weight, and the same
    reports by another org cut it as they did. Before: its own reports cut it alike (0.11 here; an operator reporting
    4 violations of its agent lost 88% of its weight at a peer that had it as a trust root), so that an operator
    hiding them kept more weight than one telling them."""
    penalty = ScoringParams().accountability_penalty
    told = _operated([("org3", "agent", {"denied": 3})])
    assert _accountability_of(told, "org3", path) == 1.0
    assert told.score("agent") < 200  # its reports still count against the agent
    reported = _operated([("org0", "agent", {"denied": 3})])
    assert _accountability_of(reported, "org3", path) == pytest.approx(1 / (1 + penalty * 2.0))


def _operated_among_slanderers(reporters: int) -> World:
    """Agent `agent`, which org3 operates, reported as violating (400 bad a digest, for twelve hours) by org0 and, with
    `reporters` 2, org1: orgs nobody could check yet (below the witness weight), each its own independence group."""
    w = World(orgs=4, rooted=False)
    w.engine.add_agent_vouch("org3", "agent", 1.0, "operator", record_id=rid(), ts=0)
    for epoch in range(12):
        for org in w.orgs[:reporters]:
            w.digest(org, "agent", epoch, denied=40)
    return w


@pytest.mark.parametrize("path", ["recompute", "snapshot", "restored"])
def test_bad_the_agent_s_score_does_not_count_costs_its_operator_no_accountability(path):
    """An agent's conduct is judged for its voucher's accountability from its bad as its score counts it (README "How
    scores are computed", 3 and 4): reports of an honest operator's agent by orgs the deviation test discredited (for
    one digest of an agent this node saw behave, reported as violating), which lower the agent's score no further
    than orgs at the witness weight confirm, leave the operator's accountability at 1; two independent orgs' reports
    still cost it. Before, the discredited orgs' word cut the operator to 0.11 (its weight,
    and that of all it says, with it), though it had cost the agent nothing."""
    slandered = _operated_among_slanderers(2)
    for org in slandered.orgs[:2]:
        slandered.digest(org, "seen", 0, denied=4)
    for epoch in range(12):
        slandered.engine.add_first_hand("seen", ts=epoch * HOUR_MS + 1, outcomes=Outcomes(ok=4))
    assert _accountability_of(slandered, "org3", path) == 1.0
    slandered.engine.recompute(now=slandered.now)
    untested = credibility(np.zeros(1), np.zeros(1), ScoringParams())[0]
    assert all(slandered.engine.org(org, now=slandered.now).credibility < untested for org in slandered.orgs[:2])
    assert slandered.score("agent") == _operated_among_slanderers(0).score("agent")  # as the agent's score counts it
    reported = _operated_among_slanderers(2)
    penalty = ScoringParams().accountability_penalty
    assert _accountability_of(reported, "org3", path) == pytest.approx(1 / (1 + penalty * 2.0))


def _vouched_then_reported(reports: list[tuple[str, int, dict[str, int]]], *, revoked_at: int | None = None,
                           expires: int | None = None) -> World:
    """org3's operator vouch for `agent`, given at 0 and revoked at `revoked_at` or expiring at `expires`, and the
    hourly digests `reports` names (org, hour, counts)."""
    w = World(orgs=4)
    vouch = rid()
    w.engine.add_agent_vouch("org3", "agent", 1.0, "operator", record_id=vouch, ts=0, expires=expires)
    if revoked_at is not None:
        w.engine.revoke("org3", vouch, ts=revoked_at)
    for org, hour, counts in reports:
        w.digest(org, "agent", hour, **counts)
    return w


_VIOLATIONS_FROM_HOUR_2 = [("org0", hour, {"denied": 3}) for hour in range(2, 7)]


@pytest.mark.parametrize("path", ["recompute", "snapshot", "restored"])
def test_a_vouch_revoked_or_expired_before_its_agent_misbehaved_costs_no_accountability(path):
    """A vouch answers for misconduct of its agent that began while it stood (README "How scores are computed", 3): an
    operator vouch given by mistake and revoked a minute later, or one that expired, costs its voucher nothing for
    violations another org reports from the hour after on, nor do the voucher's own reports of a violation before the
    revocation make it answer, nor those of a key no one vouches for; revoked after (or at) the first violation, or
    failure of half its events, another org reported, it costs what a standing vouch costs. Before, the vouch
    revoked within a minute cost as much, fading over months with the agent's bad evidence (a root then passed on a
    quarter of the reputation it did)."""
    penalty = ScoringParams().accountability_penalty
    revoked = _vouched_then_reported(_VIOLATIONS_FROM_HOUR_2, revoked_at=60_000)
    assert _accountability_of(revoked, "org3", path) == 1.0
    assert revoked.score("agent") < 200  # the violations count against the agent as before
    expired = _vouched_then_reported(_VIOLATIONS_FROM_HOUR_2, expires=60_000)
    assert _accountability_of(expired, "org3", path) == 1.0
    own_word_first = _vouched_then_reported([("org3", 0, {"denied": 1}), *_VIOLATIONS_FROM_HOUR_2],
                                            revoked_at=HOUR_MS + 60_000)
    assert _accountability_of(own_word_first, "org3", path) == 1.0
    too_late = _vouched_then_reported(_VIOLATIONS_FROM_HOUR_2, revoked_at=4 * HOUR_MS)
    assert _accountability_of(too_late, "org3", path) == pytest.approx(1 / (1 + penalty * 2.0))
    at_the_first_report = _vouched_then_reported(_VIOLATIONS_FROM_HOUR_2, revoked_at=3 * HOUR_MS)
    assert _accountability_of(at_the_first_report, "org3", path) == pytest.approx(1 / (1 + penalty * 2.0))
    half_failing_first = _vouched_then_reported([("org1", 0, {"ok": 2, "error": 2}), *_VIOLATIONS_FROM_HOUR_2],
                                                revoked_at=HOUR_MS + 60_000)
    assert _accountability_of(half_failing_first, "org3", path) == pytest.approx(1 / (1 + penalty * 2.0))
    one_violation_first = _vouched_then_reported([("org1", 0, {"ok": 10, "denied": 1}), *_VIOLATIONS_FROM_HOUR_2],
                                                 revoked_at=HOUR_MS + 60_000)
    assert _accountability_of(one_violation_first, "org3", path) == pytest.approx(1 / (1 + penalty * 2.0))
    weightless_word_first = _vouched_then_reported([("stranger", 0, {"denied": 1}), *_VIOLATIONS_FROM_HOUR_2],
                                                   revoked_at=HOUR_MS + 60_000)
    assert _accountability_of(weightless_word_first, "org3", path) == 1.0
    standing = _vouched_then_reported(_VIOLATIONS_FROM_HOUR_2)
    assert _accountability_of(standing, "org3", path) == pytest.approx(1 / (1 + penalty * 2.0))


@pytest.mark.parametrize("path", ["recompute", "snapshot", "restored"])
def test_a_discredited_org_s_early_report_does_not_make_a_revoked_vouch_answer(path):
    """When the misconduct began is read from the bad the agent's score counts (README "How scores are computed", 3):
    an org the deviation test discredited (for one digest of an agent this node saw behave, reported as violating),
    reporting the agent's violation an hour before its operator revoked its vouch, whose bad counts only as far as
    orgs at the witness weight report as much, does not make the vouch answer for violations the root reported from
    hour 2 on; the same early report by an org in good standing does. Found by stop 45's review (acct44): the
    discredited org's report dated the misconduct's start, and the operator lost 89% of its weight."""
    penalty = ScoringParams().accountability_penalty
    for early, expected in (("org0", 1.0), ("org1", 1 / (1 + penalty * 2.0))):
        w = World(orgs=4, rooted=False)
        vouch = rid()
        w.engine.add_agent_vouch("org3", "agent", 1.0, "operator", record_id=vouch, ts=0)
        w.digest("org0", "seen", 0, denied=4)
        for epoch in range(12):
            w.engine.add_first_hand("seen", ts=epoch * HOUR_MS + 1, outcomes=Outcomes(ok=4))
        w.digest(early, "agent", 0, denied=3)
        w.engine.revoke("org3", vouch, ts=HOUR_MS + 60_000)
        for hour in range(2, 7):
            w.digest("root", "agent", hour, denied=3)
        assert _accountability_of(w, "org3", path) == pytest.approx(expected)
        w.engine.recompute(now=w.now)
        untested = credibility(np.zeros(1), np.zeros(1), ScoringParams())[0]
        assert w.engine.org("org0", now=w.now).credibility < untested <= w.engine.org("org1", now=w.now).credibility


@pytest.mark.parametrize("path", ["recompute", "snapshot", "restored"])
def test_an_org_s_own_good_reports_of_its_agent_do_not_buy_back_accountability(path):
    """An agent only its operator reports to behave does not weigh for the operator against an agent of it that others
    saw misbehave, as one other orgs saw behave does. Before: the operator's word alone made its agent behave, and so
    bought back accountability (0.27 where it now stands at 0.11)."""
    penalty = ScoringParams().accountability_penalty
    own_word = _operated([("org0", "bad", {"denied": 3}), ("org3", "good", {"ok": 40})])
    assert _accountability_of(own_word, "org3", path) == pytest.approx(1 / (1 + penalty * 2.0))
    others_word = _operated([("org0", "bad", {"denied": 3}), ("org1", "good", {"ok": 40})])
    assert _accountability_of(others_word, "org3", path) == pytest.approx(3 / (3 + penalty * 2.0))


def test_vouching_again_and_again_for_one_agent_that_behaves_does_not_buy_back_accountability():
    """Each vouch an org sends for an agent replaces its earlier one of the basis, for the agent's prior and for
    accountability alike. Before: each of them added to the good vouch weight, so that an org that vouched for three
    misbehaving agents stood at full accountability again after 300 vouches for one agent that behaves."""
    w = World(orgs=4)
    for i in range(3):
        w.engine.add_agent_vouch("org3", f"bad{i}", 1.0, "operator", record_id=rid(), ts=0)
        for epoch in range(5):
            w.digest("org0", f"bad{i}", epoch, denied=3)
    w.history("good", range(5), w.orgs[:3])
    w.engine.add_agent_vouch("org3", "good", 1.0, "audit", record_id=rid(), ts=0)
    w.engine.recompute(now=w.now)
    once = w.engine.org("org3", now=w.now).accountability
    for ts in range(1, 300):
        w.engine.add_agent_vouch("org3", "good", 1.0, "audit", record_id=rid(), ts=ts)
    w.engine.recompute(now=w.now)
    assert w.engine.org("org3", now=w.now).accountability == once < 0.2


def test_renewing_a_vouch_for_an_agent_that_then_misbehaves_costs_what_one_vouch_does():
    """An org renewing its operator vouch weekly for an agent that then misbehaves answers for one vouch of the
    heaviest weight it gave, as an org that vouched once does; renewing it lighter sheds nothing, and each basis it
    vouched on counts. Before: every renewal added its weight, ten of them 20 of vouch strength, accountability
    0.012 where one vouch leaves 0.111."""
    w = World(orgs=5)
    w.engine.add_agent_vouch("org2", "bad", 1.0, "operator", record_id=rid(), ts=0)
    for week in range(10):
        w.engine.add_agent_vouch("org3", "bad", 1.0, "operator", record_id=rid(), ts=week * 7 * DAY_MS)
    w.engine.add_agent_vouch("org4", "bad", 1.0, "operator", record_id=rid(), ts=0)
    w.engine.add_agent_vouch("org4", "bad", 0.1, "operator", record_id=rid(), ts=1)
    w.engine.add_agent_vouch("org1", "bad", 1.0, "operator", record_id=rid(), ts=0)
    w.engine.add_agent_vouch("org1", "bad", 1.0, "audit", record_id=rid(), ts=0)
    for epoch in range(5):
        w.digest("org0", "bad", epoch, denied=3)
    w.engine.recompute(now=w.now)
    penalty = w.engine.params.accountability_penalty
    once = w.engine.org("org2", now=w.now).accountability
    assert once == pytest.approx(1 / (1 + penalty * 2.0))
    assert w.engine.org("org3", now=w.now).accountability == once
    assert w.engine.org("org4", now=w.now).accountability == once
    assert w.engine.org("org1", now=w.now).accountability == pytest.approx(1 / (1 + penalty * (2.0 + 3.0)))


def test_vouching_again_for_an_org_that_equivocates_costs_what_one_vouch_does():
    e = TrustEngine("own", ["root"])
    for sponsor, vouches in (("once", 1), ("weekly", 10)):
        e.add_org_vouch("root", sponsor, 1.0, record_id=rid(), ts=0)
        for week in range(vouches):
            e.add_org_vouch(sponsor, "liar", 1.0, record_id=rid(), ts=week * 7 * DAY_MS)
    e.flag_equivocator("liar")
    e.recompute(now=1)
    assert e.org("weekly", now=1).accountability == e.org("once", now=1).accountability < 0.5


def test_vouching_for_an_equivocator_costs_accountability():
    e = TrustEngine("own", ["root"])
    e.add_org_vouch("root", "sponsor", 1.0, record_id=rid(), ts=0)
    e.add_org_vouch("sponsor", "liar", 1.0, record_id=rid(), ts=0)
    e.flag_equivocator("liar")
    e.recompute(now=1)
    assert e.org("sponsor", now=1).accountability < 0.5


def test_org_listing_explains_each_org_in_words():
    w = World(orgs=2)
    w.engine.add_org_vouch("org0", "org1", 1.0, record_id=rid(), ts=0)
    listing = w.engine.orgs(now=0)
    assert {r.org for r in listing} == {"own", "root", "org0", "org1"}
    assert [r.org for r in listing] == ["org0", "org1", "own", "root"]  # in did order
    assert max(listing, key=lambda r: (r.weight, r.reputation)).org == "org1"  # vouched for by org0 and the root
    org1 = w.engine.org("org1", now=0)
    text = "\n".join(org1.lines())
    assert "vouched for by root" in text and "vouched for by org0" in text and "Credibility" in text
    assert "Credibility 1.00: a trust root's digests are what the other orgs' are compared with, not tested" in text
    compared = "\n".join(replace(org1, root=False, agreements=2.5, disagreements=0.5).lines())
    assert "its digests agreed 2.5 and disagreed 0.5 times with what this node" in compared
    disagreed = "\n".join(replace(org1, root=False, agreements=0.0, disagreements=1.0).lines())  # never agreed
    assert "its digests agreed 0.0 and disagreed 1.0 times with what this node" in disagreed
    inflows = [part["inflow"] for part in org1.as_dict()["vouched_by"]]
    assert {part["issuer"] for part in org1.as_dict()["vouched_by"]} == {"root", "org0"}
    assert inflows == sorted(inflows, reverse=True)


def test_an_org_nobody_could_check_yet_is_explained_at_the_starting_credibility_not_as_penalised():
    w = World(orgs=1, rooted=False)
    w.engine.recompute(now=0)
    text = "\n".join(w.engine.org("org0", now=0).lines())
    starting = credibility(np.zeros(1), np.zeros(1), ScoringParams())[0]  # the priors' credibility
    assert f"Credibility {starting:.3f}, the starting credibility of an org none of whose digests could be compared " \
           "yet with what this node and its roots observed; it rises as they agree" in text
    assert "agreed 0.0" not in text


def test_unknown_orgs_have_no_weight():
    assert TrustEngine("own").org("nobody", now=0).weight == 0
    assert ScoringParams().restart == 0.3


def test_revoking_the_only_vouch_for_an_org_takes_its_reputation():
    e = TrustEngine("own", ["root"])
    record = rid()
    e.add_org_vouch("root", "org", 1.0, record_id=record, ts=0)
    assert e.org("org", now=1).weight > 0
    e.revoke("root", record, ts=1)
    assert e.org("org", now=1).weight == 0 and e.org("org", now=1).reputation == 0
    assert sum(e.reputations(now=1).values()) == pytest.approx(1)
