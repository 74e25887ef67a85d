"""The trust engine's behaviours a node relies on: cold start, vouches, evidence, decay, misbehaviour, tiers."""

import numpy as np
import pytest

from vouching.evidence import InvalidEvidence, Outcomes, own_cap_good
from vouching.params import DAY_MS, HOUR_MS, ScoringParams
from vouching import scoring
from vouching.engine_state import capture, restore
from vouching.scoring import TrustEngine
from vouching.tiers import PROVISIONAL, TRUSTED, VERIFIED
from vouching.vouches import Vouch

from tests.vouching.trust_world import World, rid


def test_an_unknown_agent_gets_the_cold_start_score_not_an_error():
    score = TrustEngine("own").score("did:key:stranger", now=0)
    assert score.tier == "untrusted" and score.score < PROVISIONAL and score.confidence == 0


def test_a_vouch_from_a_trusted_org_lifts_a_new_agent_to_provisional():
    w = World()
    w.engine.add_agent_vouch("org0", "agent", 1.0, "operator", record_id=rid(), ts=0)
    assert w.tier("agent") == "provisional"


def test_vouches_alone_never_lift_an_agent_above_provisional():
    w = World(orgs=8)
    for org in ["own", "root", *w.orgs]:
        w.engine.add_agent_vouch(org, "agent", 1.0, "audit", record_id=rid(), ts=0)
    assert PROVISIONAL <= w.score("agent") < TRUSTED


def test_a_vouch_counts_by_the_voucher_reputation():
    w = World()
    w.engine.add_agent_vouch("org0", "vouched-by-member", 1.0, "operator", record_id=rid(), ts=0)
    w.engine.add_agent_vouch("stranger-org", "vouched-by-stranger", 1.0, "operator", record_id=rid(), ts=0)
    assert w.score("vouched-by-stranger") == w.score("nobody") < w.score("vouched-by-member")


def test_an_org_vouch_s_weight_scales_the_vouchee_s_agent_vouches_only_through_reputation_below_the_full_weight():
    """DESIGN.md §6 weighs a vouch by its voucher's reputation; README "How scores are computed" 1 and 5 say how: by
    standing, min(1, r / r_full) with r_full 1% of the roots' mean reputation. An org-peer vouch's weight moves the
    vouched org's reputation (PageRank), so a partner the node's org vouches for at 0.5 has less than one vouched for
    at 1.0, but well over r_full: its operator vouch lifts its agent as the node's own org's does. The weight
    reaches the agent vouches only once reputation falls below r_full: here three vouches of 0.5 from the node's org."""
    e = TrustEngine("own")
    chain = ["partner", "second", "third"]
    for voucher, org in zip(["own", *chain], chain):
        e.add_org_vouch(voucher, org, 0.5, record_id=rid(), ts=0)
    for voucher in ["own", *chain]:
        e.add_agent_vouch(voucher, f"agent of {voucher}", 1.0, "operator", record_id=rid(), ts=0)
    partner, third = e.org("partner", now=0), e.org("third", now=0)
    lift = e.explain("agent of partner", now=0).vouch_lift
    assert third.reputation < third.full_weight_reputation < partner.reputation
    assert (partner.voucher_weight, lift) == (1.0, e.explain("agent of own", now=0).vouch_lift)
    assert e.score("agent of partner", now=0).score == e.score("agent of own", now=0).score
    assert third.voucher_weight == pytest.approx(third.reputation / third.full_weight_reputation)
    scores = [e.score(agent, now=0).score for agent in ("nobody", "agent of third", "agent of own")]
    assert scores == sorted(set(scores))  # the third org's vouch lifts, less than fully
    full = TrustEngine("own")
    full.add_org_vouch("own", "partner", 1.0, record_id=rid(), ts=0)
    assert partner.reputation < full.org("partner", now=0).reputation


def test_an_org_never_heard_of_has_the_credibility_of_one_nobody_could_check():
    """README "How scores are computed" 2: an org nobody could check counts 0.30. `vouchnet orgs DID` of an org the
    node had not heard of said 1.00, a root's, where the same org once heard of (an agent vouch, no digest) said
    0.30."""
    e = TrustEngine("own")
    e.add_agent_vouch("heard-of", "agent", 1.0, "operator", record_id=rid(), ts=0)
    untested = e.org("heard-of", now=0).credibility
    assert untested == pytest.approx(0.296, abs=1e-3)
    assert e.org("never-heard-of", now=0).credibility == untested


def test_a_revoked_vouch_stops_counting_even_if_the_revocation_arrives_first():
    w = World()
    early, late = rid(), rid()
    w.engine.add_agent_vouch("org0", "a", 1.0, "operator", record_id=early, ts=0)
    w.engine.revoke("org0", early, ts=1)
    w.engine.revoke("org1", late, ts=1)
    w.engine.add_agent_vouch("org1", "b", 1.0, "operator", record_id=late, ts=0)
    assert w.score("a") == w.score("b") == w.score("nobody")


@pytest.mark.parametrize("others_first", [False, True])
def test_another_orgs_revocation_of_a_vouch_not_arrived_yet_leaves_its_issuers_standing(others_first):
    """Revocations of a vouch that has not arrived name no issuer the engine could check: each org's is kept until
    it arrives, when its issuer's applies, whichever came first, also in a capture of the engine. Before: one pending
    revocation a vouch, the latest, so that another org's, after the issuer's, left the vouch counting."""
    w = World()
    vouch = rid()
    revokers = [("org1", 1), ("org0", 2), ("org0", 3)] if others_first else [("org0", 2), ("org1", 1)]
    for revoker, ts in revokers:
        assert w.engine.revoke(revoker, vouch, ts=ts) is None
    restored = TrustEngine("own", ["root", *w.orgs])
    restore(capture(w.engine), restored, ())
    for engine in (w.engine, restored):
        engine.add_agent_vouch("org0", "a", 1.0, "operator", record_id=vouch, ts=0)
        (part,) = engine.explain("a", now=w.now).vouches
        assert part.status == "revoked" and engine.score("a", now=w.now).score == w.score("nobody")
        assert engine._vouches[vouch].revoked_at == 2  # the issuer's first, as of a vouch that had arrived


def test_an_orgs_later_vouch_for_an_agent_replaces_its_earlier_one_of_the_same_basis():
    w = World()
    w.engine.add_agent_vouch("org0", "a", 1.0, "audit", record_id=rid(), ts=0)
    w.engine.add_agent_vouch("org0", "a", 0.1, "audit", record_id=rid(), ts=1)
    w.engine.add_agent_vouch("org0", "b", 0.1, "audit", record_id=rid(), ts=1)
    assert w.score("a") == w.score("b")
    w.engine.add_agent_vouch("org0", "a", 0.5, "developer", record_id=rid(), ts=2)  # another basis adds
    assert w.score("a") > w.score("b")


def test_a_score_read_weighs_one_vouch_per_org_and_basis_however_many_the_org_sent(monkeypatch):
    # Each read went through every vouch the agent ever got: one org's 20,000 vouches for one agent, each followed
    # by the read node.trust makes to announce it, cost the node 88 s of its loop (quadratic).
    w = World()
    for n in range(1000):
        w.engine.add_agent_vouch("org0", "a", 0.5, "developer", record_id=rid(), ts=n, expires=DAY_MS + n)
    calls = 0
    active = Vouch.active

    def counted(vouch: Vouch, now: float) -> bool:
        nonlocal calls
        calls += 1
        return active(vouch, now)

    monkeypatch.setattr(Vouch, "active", counted)
    assert w.score("a") > w.score("nobody") and calls == 1


def test_an_expired_vouch_stops_counting_at_its_expiry():
    w = World()
    w.engine.add_agent_vouch("org0", "a", 1.0, "operator", record_id=rid(), ts=0, expires=DAY_MS)
    assert w.score("a", at=DAY_MS - 1) > w.score("a", at=DAY_MS) == w.score("nobody", at=DAY_MS)


def test_an_expired_org_vouch_takes_the_org_weight_with_it():
    e = TrustEngine("own", ["root"])
    e.add_org_vouch("root", "org", 1.0, record_id=rid(), ts=0, expires=DAY_MS)
    assert e.org("org", now=DAY_MS - 1).weight > 0
    assert e.org("org", now=DAY_MS).weight == 0


@pytest.mark.parametrize("recompute", [False, True])
def test_an_org_vouch_counts_before_its_expiry_even_when_read_after_it_first(recompute):
    """Reputation was refreshed only at the next org expiry after its last refresh: read once past an org vouch's
    expiry, the engine answered without the vouch at every earlier now too (220 fell to 50), where a node that had
    not read past it answered with it."""
    scores = []
    for late_read in (False, True):
        e = TrustEngine("own", ["root"])
        e.add_org_vouch("root", "org", 1.0, record_id=b"v" * 32, ts=0, expires=DAY_MS)
        e.add_digest("org", "a", epoch=0, length=HOUR_MS, outcomes=Outcomes(ok=20), record_id=b"d" * 32, ts=HOUR_MS)
        if late_read:
            e.recompute(now=DAY_MS) if recompute else e.score("a", now=DAY_MS)
        scores.append([e.score("a", now=now).score for now in (DAY_MS - 1, DAY_MS, 2 * HOUR_MS)])
    assert scores[0] == scores[1]
    assert scores[0][0] > scores[0][1] == e.score("nobody", now=DAY_MS).score


def test_a_revocation_counts_only_from_the_vouch_issuer():
    """Another org's revocation is left aside, not an error: a key claiming to replace the voucher may send one."""
    w = World()
    record = rid()
    w.engine.add_agent_vouch("org0", "a", 1.0, "operator", record_id=record, ts=0)
    vouched = w.score("a")
    assert w.engine.revoke("org1", record, ts=1) is None and w.score("a") == vouched > w.score("nobody")
    assert w.engine.revoke("org0", record, ts=2) == "a" and w.score("a") == w.score("nobody")


def test_an_operated_agent_with_good_digests_from_four_independent_orgs_is_verified():
    w = World(orgs=5)
    w.engine.add_agent_vouch("org4", "a", 1.0, "operator", record_id=rid(), ts=0)
    w.history("a", range(4), w.orgs[:3])
    assert w.tier("a") == "trusted"  # three orgs at most 3.3 each, and the vouch: just short
    w.history("a", range(4, 8), w.orgs[:4])
    assert w.tier("a") == "verified"


def test_one_org_alone_cannot_carry_an_agent_however_much_it_reports():
    w = World()
    w.engine.add_agent_vouch("org3", "a", 1.0, "operator", record_id=rid(), ts=0)
    w.history("a", range(200), ["org0"], ok=30)
    explanation = w.engine.explain("a", now=w.now)
    assert explanation.orgs[0].counted_good == explanation.vouch_lift_cap
    assert w.tier("a") == "trusted"  # with the operator's word: two sources
    w.history("b", range(200), ["org0"], ok=30)
    assert w.tier("b") == "provisional"  # one org's word alone
    assert any(r.code == "org-cap" for r in explanation.rules)


def test_an_agent_seen_by_one_org_alone_never_reaches_verified():
    e = TrustEngine("own")
    for hour in range(200):
        e.add_first_hand("a", ts=hour * HOUR_MS, outcomes=Outcomes(ok=30))
    score = e.score("a", now=200 * HOUR_MS)
    assert score.score == VERIFIED - 1 and "needs-independent-orgs" in score.caps


def test_orgs_that_owe_their_reputation_to_one_voucher_are_one_witness():
    e = TrustEngine("own", ["root"])
    e.add_org_vouch("root", "hub", 1.0, record_id=rid(), ts=0)
    for i in range(5):
        e.add_org_vouch("hub", f"puppet{i}", 1.0, record_id=rid(), ts=0)
    w = World()
    w.engine = e
    w.history("a", range(50), [f"puppet{i}" for i in range(5)], ok=30)
    assert {e.org(f"puppet{i}", now=w.now).group for i in range(5)} == {"hub"}
    assert e.explain("a", now=w.now).independent_orgs <= 1
    assert w.tier("a") != "verified"


def test_orgs_two_colluding_orgs_vouch_for_are_at_most_two_witnesses_however_many():
    """Two orgs a root vouches for, each vouching alike for six more whose word counts fully (credible from the
    start here), cannot have those six make an agent verified: the six count as at most the two's two groups."""
    e = TrustEngine("own", ["root"], ScoringParams(credibility_prior_disagree=0.0))
    for colluder in ("c1", "c2"):
        e.add_org_vouch("root", colluder, 1.0, record_id=rid(), ts=0)
        for i in range(6):
            e.add_org_vouch(colluder, f"minted{i}", 1.0, record_id=rid(), ts=0)
    w = World()
    w.engine = e
    w.history("a", range(50), [f"minted{i}" for i in range(6)], ok=30)
    assert all(e.org(f"minted{i}", now=w.now).weight == 1.0 for i in range(6))
    assert {e.org(f"minted{i}", now=w.now).group for i in range(6)} <= {"c1", "c2"}
    score = e.score("a", now=w.now)
    assert score.score == VERIFIED - 1 and "needs-independent-orgs" in score.caps


def _operator_with_a_minted_witness() -> World:
    """Agent `a`, whose operator vouched org `minted` into its own group, with 50 hours of good digests from org0,
    org1 (independent groups), the operator and `minted`."""
    e = TrustEngine("own", ["root"], ScoringParams(credibility_prior_disagree=0.0))
    for org in ("org0", "org1", "operator"):
        e.add_org_vouch("root", org, 1.0, record_id=rid(), ts=0)
    e.add_org_vouch("operator", "minted", 1.0, record_id=rid(), ts=0)
    e.add_agent_vouch("operator", "a", 1.0, "operator", record_id=rid(), ts=0)
    w = World()
    w.engine = e
    w.history("a", range(50), ["org0", "org1", "operator", "minted"], ok=30)
    return w


def test_an_org_its_operator_vouched_for_is_no_independent_witness_of_the_agent():
    """An operator whose agent two independent orgs witness mints an org (its vouch alone puts the org in its
    group), which reports the agent behaving: the org's word is the operator's, so the agent stays held below
    verified, in its score, its explanation and the full recompute alike. Before, the operator's own evidence alone
    was left out, and the minted org made the third witness."""
    w = _operator_with_a_minted_witness()
    e = w.engine
    assert e.org("minted", now=w.now).group == "operator" and e.org("minted", now=w.now).weight == 1.0
    score = e.score("a", now=w.now)
    assert score.score == VERIFIED - 1 and "needs-independent-orgs" in score.caps
    explanation = e.explain("a", now=w.now)
    assert explanation.independent_orgs == 2
    assert {part.org for part in explanation.orgs if part.independent} == {"org0", "org1"}
    (rule,) = [rule for rule in explanation.rules if rule.code == "needs-independent-orgs"]
    assert "none of its operator's" in rule.text and "it has 2" in rule.text
    table = e.recompute(now=w.now)
    assert table.score("a") == VERIFIED - 1 and table.independent_orgs.tolist() == [2]
    w.history("a", range(50, 60), ["org0", "org1", "operator", "minted", "root"], ok=30)
    assert w.tier("a") == "verified"  # a third group, the root's


def test_a_restored_engine_counts_no_org_of_an_operator_s_group_as_its_agent_s_witness():
    """A start loads the engine from its snapshot (vouching.engine_state): there, as in the engine captured, neither
    the operator nor the org it minted witnesses for its agent, in the score, its explanation and the full recompute
    alike; the restored engine must know which agents have an operator without a new operator vouch to tell it."""
    w = _operator_with_a_minted_witness()
    restored = TrustEngine("own", ["root"], w.engine.params)
    restore(capture(w.engine), restored, ())
    for engine in (w.engine, restored):
        for _ in range(2):  # as loaded, then after a full recompute
            assert engine.score("a", now=w.now).score == VERIFIED - 1
            explanation = engine.explain("a", now=w.now)
            assert {part.org for part in explanation.orgs if part.independent} == {"org0", "org1"}
            assert engine.recompute(now=w.now).score("a") == VERIFIED - 1


def _a_mistaken_operator_s_witnessed_agent(operator_vouch: bytes, revocation_first: bool = False) -> World:
    """Agent `a` with 50 hours of good digests from org0, org1 (independent groups), `mistaken` and the org
    `mistaken` minted, and `mistaken`'s vouch of basis operator for it, revoked a minute after it was given (the
    revocation arriving before the vouch, with `revocation_first`)."""
    e = TrustEngine("own", ["root"], ScoringParams(credibility_prior_disagree=0.0))
    for org in ("org0", "org1", "mistaken"):
        e.add_org_vouch("root", org, 1.0, record_id=rid(), ts=0)
    e.add_org_vouch("mistaken", "minted", 1.0, record_id=rid(), ts=0)
    records = [lambda: e.add_agent_vouch("mistaken", "a", 1.0, "operator", record_id=operator_vouch, ts=0),
               lambda: e.revoke("mistaken", operator_vouch, ts=60_000)]
    for record in reversed(records) if revocation_first else records:
        record()
    w = World()
    w.engine = e
    w.history("a", range(50), ["org0", "org1", "mistaken", "minted"], ok=30)
    return w


@pytest.mark.parametrize("revocation_first", [False, True])
def test_an_org_that_revoked_its_operator_vouch_is_an_independent_witness_again(revocation_first):
    """An org that vouched for an agent as its operator by mistake and revoked the vouch a minute later has taken its
    word back: its group witnesses for the agent as any other, which makes the third independent group (verified), in
    the score, its explanation, the full recompute and a restored engine alike, whichever of the vouch and its
    revocation came first. Before, an org that had ever given such a vouch was the agent's operator for ever."""
    w = _a_mistaken_operator_s_witnessed_agent(rid(), revocation_first)
    restored = TrustEngine("own", ["root"], w.engine.params)
    restore(capture(w.engine), restored, ())
    for engine in (w.engine, restored):
        for _ in range(2):  # as loaded, then after a full recompute
            assert engine.score("a", now=w.now).tier == "verified"
            explanation = engine.explain("a", now=w.now)
            assert explanation.independent_orgs == 3 and not any(part.operators_group for part in explanation.orgs)
            assert engine.recompute(now=w.now).independent_orgs.tolist() == [3]
        assert engine.operators("a", now=w.now) == ()


def test_an_operator_vouch_arriving_revoked_bars_no_group_from_an_agent_whose_operators_were_read():
    """An org's first operator vouch for an agent, arriving after its revocation, leaves the org a witness for the
    agent also when the agent's operators were read before it came (read once, the engine extends them as operator
    vouches arrive)."""
    w = _a_mistaken_operator_s_witnessed_agent(rid())
    e = w.engine
    e.add_org_vouch("root", "operator", 1.0, record_id=rid(), ts=0)
    e.add_agent_vouch("operator", "a", 1.0, "operator", record_id=rid(), ts=0)
    assert e.score("a", now=w.now).tier == "verified"  # (its operators read: the operator's group alone)
    e.revoke("org1", (revoked := rid()), ts=3 * 60_000)
    e.add_agent_vouch("org1", "a", 1.0, "operator", record_id=revoked, ts=2 * 60_000)
    assert e.score("a", now=w.now).tier == "verified"
    assert e.explain("a", now=w.now).independent_orgs == 3


def test_an_org_whose_latest_operator_vouch_is_revoked_witnesses_though_an_earlier_one_was_not_revoked():
    """The latest of an org's operator vouches for an agent says whether the org operates it: one it replaced and
    never revoked bars its group no more once the latest is revoked, read at once and after a full recompute alike."""
    w = _a_mistaken_operator_s_witnessed_agent(rid())
    e = w.engine
    e.add_agent_vouch("org1", "a", 1.0, "operator", record_id=rid(), ts=60_000)
    e.add_agent_vouch("org1", "a", 1.0, "operator", record_id=(latest := rid()), ts=2 * 60_000)
    assert e.recompute(now=w.now).independent_orgs.tolist() == [2]
    e.revoke("org1", latest, ts=3 * 60_000)
    assert e.score("a", now=w.now).tier == "verified"
    assert e.recompute(now=w.now).independent_orgs.tolist() == [3]
    assert e.score("a", now=w.now).tier == "verified"


def test_an_org_that_vouches_again_as_its_agent_s_operator_is_no_independent_witness_again():
    """The mistaken operator's group witnesses for the agent once it revoked its operator vouch, no longer once it
    gives another (its word that the agent is its own again), and again once it revokes that one too: read at once
    and after a full recompute."""
    w = _a_mistaken_operator_s_witnessed_agent(vouch := rid())
    e = w.engine
    assert e.score("a", now=w.now).tier == "verified"
    e.add_agent_vouch("mistaken", "a", 1.0, "operator", record_id=(again := rid()), ts=2 * 60_000)
    for _ in range(2):
        score = e.score("a", now=w.now)
        assert score.score == VERIFIED - 1 and "needs-independent-orgs" in score.caps
        assert {part.org for part in e.explain("a", now=w.now).orgs if part.operators_group} == {"mistaken", "minted"}
        e.recompute(now=w.now)
    e.revoke("mistaken", vouch, ts=3 * 60_000)  # the earlier one again: the later one still stands
    assert e.score("a", now=w.now).score == VERIFIED - 1
    e.revoke("mistaken", again, ts=4 * 60_000)
    assert e.score("a", now=w.now).tier == "verified" == e.recompute(now=w.now).tier("a")


def test_more_good_evidence_never_lowers_a_score_and_more_bad_never_raises_it():
    w = World()
    previous = w.score("a")
    for epoch in range(10):
        w.digest("org0", "a", epoch, ok=3)
        assert w.score("a") >= previous
        previous = w.score("a")
    for epoch in range(10, 14):
        w.digest("org1", "a", epoch, error=1)
        assert w.score("a") <= previous
        previous = w.score("a")


def test_violations_weigh_much_more_than_errors():
    w = World()
    w.history("errs", range(5), w.orgs[:3])
    w.history("violates", range(5), w.orgs[:3])
    w.digest("org0", "errs", 6, ok=5, error=1)
    w.digest("org0", "violates", 6, ok=5, denied=1)
    errs = w.engine.explain("errs", now=w.now)
    violates = w.engine.explain("violates", now=w.now)
    assert violates.beta - 1 >= 10 * (errs.beta - 1) > 0
    assert w.score("violates") < w.score("errs")


def test_high_risk_violations_weigh_more_than_ordinary_ones():
    w = World()
    w.digest("org0", "plain", 0, ok=5, denied=1)
    w.digest("org0", "risky", 0, ok=5, denied=1, hr_denied=1)
    assert w.engine.explain("risky", now=w.now).beta > w.engine.explain("plain", now=w.now).beta


def test_a_digest_is_capped_per_org_agent_and_window():
    p = ScoringParams()
    w = World()
    w.digest("org0", "a", 0, ok=1_000_000)
    w.digest("org0", "a", 0, ok=1_000_000)  # a second digest for the same window shares the cap
    part = w.engine.explain("a", now=w.now).orgs[0]
    assert part.good == pytest.approx(p.cap_good) and part.capped == 2
    w.digest("org0", "a", 1, ok=1_000_000)  # the next window has its own cap
    assert w.engine.explain("a", now=w.now).orgs[0].good == pytest.approx(2 * p.cap_good, rel=1e-3)


def test_the_cap_keeps_a_busy_agents_ratio_of_good_to_bad():
    p = ScoringParams()
    w = World()
    for window in range(3):
        for org in ("org0", "org1", "org2"):
            for _ in range(10):  # a busy honest agent with 3% errors, reported in ten digests a window
                w.digest(org, "busy", window, ok=300, error=9)
    part = w.engine.explain("busy", now=w.now).orgs[0]
    assert part.capped == 30
    assert part.bad / part.good == pytest.approx(90 * p.error_weight / 3000, rel=1e-2)
    # Capping good and bad each alone counted 45 bad against 30 good a window: the agent scored 0.
    assert w.score("busy") >= PROVISIONAL


def test_the_cap_bounds_bad_evidence_alone_too():
    p = ScoringParams()
    w = World()
    w.digest("org0", "a", 0, ok=10, denied=1000)
    w.digest("org0", "a", 0, denied=1000)
    part = w.engine.explain("a", now=w.now).orgs[0]
    assert part.bad == pytest.approx(p.cap_bad, rel=1e-3) and part.good < 1


def test_a_digest_for_an_older_window_than_one_counted_is_ignored():
    w = World()
    w.digest("org0", "a", 5, ok=3)
    before = w.score("a")
    w.digest("org0", "a", 4, ok=30)
    explanation = w.engine.explain("a", now=w.now)
    assert w.score("a") == before and explanation.orgs[0].ignored == 1
    assert any(r.code == "out-of-order" for r in explanation.rules)


def test_the_same_digest_counts_once():
    w = World()
    record = rid()
    for _ in range(3):
        w.engine.add_digest("org0", "a", epoch=0, length=HOUR_MS, outcomes=Outcomes(ok=3), record_id=record,
                            ts=HOUR_MS)
    assert w.engine.explain("a", now=HOUR_MS).orgs[0].batches == 1


def test_good_evidence_halves_in_a_good_half_life_and_bad_fades_slower():
    p = ScoringParams()
    w = World()
    w.digest("org0", "a", 0, ok=10, error=2)
    start = w.engine.explain("a", now=HOUR_MS).orgs[0]
    later = w.engine.explain("a", now=HOUR_MS + p.good_half_life_ms).orgs[0]
    assert later.good == pytest.approx(start.good / 2)
    assert later.bad / start.bad > later.good / start.good


def test_first_hand_observations_count_fully_without_any_org_graph():
    e = TrustEngine("own")
    for hour in range(10):
        e.add_first_hand("a", ts=hour * HOUR_MS, outcomes=Outcomes(ok=100))
    explanation = e.explain("a", now=10 * HOUR_MS)
    assert explanation.orgs[0].first_hand and explanation.orgs[0].weight == 1
    # Weight 1, no cap on the total (another org's good counts at most C), C/2 a window: ten windows, 5 C.
    assert explanation.orgs[0].good == pytest.approx(10 * own_cap_good(e.params), rel=1e-2)
    assert e.score("a", now=10 * HOUR_MS).tier == "trusted"  # one witness: not verified


def test_digests_from_orgs_outside_the_trust_graph_count_nothing():
    w = World()
    w.history("a", range(20), ["sybil1", "sybil2", "sybil3"], ok=30)
    assert w.score("a") == w.score("nobody")
    assert any(r.code == "no-weight" for r in w.engine.explain("a", now=w.now).rules)


def test_an_equivocating_org_counts_nothing_from_the_moment_it_is_flagged():
    w = World()
    w.engine.add_org_vouch("org0", "friend", 1.0, record_id=rid(), ts=0)
    w.engine.add_agent_vouch("org0", "a", 1.0, "operator", record_id=rid(), ts=0)
    w.history("a", range(5), ["org0"])
    friend_before = w.engine.org("friend", now=w.now).reputation
    w.engine.flag_equivocator("org0")
    assert w.engine.org("org0", now=w.now).weight == 0
    assert w.engine.org("org0", now=w.now).equivocator
    assert w.engine.org("friend", now=w.now).reputation < friend_before
    assert w.score("a") == w.score("nobody")


def test_an_equivocating_org_operates_no_agent_from_the_moment_it_is_flagged():
    """Before: its operator vouches still named it as the agents' operator, so that its agent credentials stood for
    any agent it vouched for so (node.trust.credential_issuers): the agent's standing, not the cold start."""
    w = World()
    for org in ("org0", "org1"):
        w.engine.add_agent_vouch(org, "a", 1.0, "operator", record_id=rid(), ts=0)
    assert w.engine.operators("a", now=w.now) == ("org0", "org1")
    w.engine.flag_equivocator("org0")
    assert w.engine.operators("a", now=w.now) == ("org1",)


def test_an_agent_that_turns_bad_drops_below_trusted_after_one_bad_digest_and_below_provisional_within_four():
    w = World(orgs=5)
    w.engine.add_agent_vouch("org4", "a", 1.0, "operator", record_id=rid(), ts=0)
    w.history("a", range(200), w.orgs[:4])
    assert w.tier("a") == "verified"
    w.digest("org0", "a", 200, ok=4, denied=1)
    assert w.score("a") < TRUSTED
    for epoch, org in zip(range(201, 204), ["org1", "org2", "org0"]):
        w.digest(org, "a", epoch, ok=4, denied=1)
    assert w.score("a") < PROVISIONAL


def test_a_recent_bad_report_holds_even_a_high_volume_agent_below_trusted():
    w = World()
    for hour in range(100):
        w.engine.add_first_hand("a", ts=hour * HOUR_MS, outcomes=Outcomes(ok=50))
    w.history("a", range(100), w.orgs[:3])
    assert w.tier("a") == "verified"
    w.digest("org0", "a", 100, ok=1, denied=2)
    score = w.engine.score("a", now=w.now)
    assert score.score == TRUSTED - 1 and "recent-bad-reports" in score.caps


def test_bad_reports_fade_but_bad_evidence_is_remembered_longer_than_good():
    p = ScoringParams()
    w = World()
    w.history("a", range(20), w.orgs[:3])
    w.history("clean", range(20), w.orgs[:3])
    for epoch in range(20, 24):
        w.digest("org0", "a", epoch, denied=1)
    w.history("a", range(24, 30), w.orgs[:3])  # behaves again
    w.history("clean", range(24, 30), w.orgs[:3])
    later = w.now + 10 * p.report_half_life_ms
    explanation = w.engine.explain("a", now=later)
    assert explanation.recent_bad_reports < p.reports_below_trusted and not explanation.score.caps
    assert explanation.score.score < w.score("clean", at=later)
    assert w.score("a", at=later + p.good_half_life_ms) < w.score("clean", at=later + p.good_half_life_ms)


def test_a_fresh_identity_scores_below_the_trusted_identity_it_replaces():
    w = World()
    w.engine.add_agent_vouch("org3", "old", 1.0, "operator", record_id=rid(), ts=0)
    w.history("old", range(30), w.orgs[:3])
    w.engine.add_agent_vouch("org3", "fresh", 1.0, "operator", record_id=rid(), ts=w.now)
    assert w.score("fresh") < TRUSTED <= w.score("old")


def test_a_whitewashed_identity_of_a_misbehaving_agent_stays_blocked_and_its_operator_counts_less():
    w = World()
    w.engine.add_agent_vouch("org3", "old", 1.0, "operator", record_id=rid(), ts=0)
    w.history("old", range(10), w.orgs[:3])
    before = w.engine.org("org3", now=w.now).voucher_weight
    for epoch in range(10, 20):
        w.digest("org0", "old", epoch, denied=5)
        w.digest("org1", "old", epoch, denied=5)
    w.engine.recompute(now=w.now)  # the operator's accountability is refreshed
    w.engine.add_agent_vouch("org3", "fresh", 1.0, "operator", record_id=rid(), ts=w.now)
    assert w.tier("fresh") == w.tier("old") == "untrusted"
    assert w.engine.org("org3", now=w.now).voucher_weight < before / 4


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: e.add_org_vouch("a", "b", 0.0, record_id=rid(), ts=0), "weight"),
        (lambda e: e.add_org_vouch("a", "b", 1.5, record_id=rid(), ts=0), "weight"),
        (lambda e: e.add_org_vouch("a", "a", 1.0, record_id=rid(), ts=0), "subject"),
        (lambda e: e.add_agent_vouch("a", "x", 1.0, "org-peer", record_id=rid(), ts=0), "basis"),
        (lambda e: e.add_digest("a", "x", epoch=-1, length=1, outcomes=Outcomes(), record_id=rid(), ts=0), "epoch"),
        (lambda e: e.add_digest("a", "x", epoch=0, length=0, outcomes=Outcomes(), record_id=rid(), ts=0), "length"),
        (lambda e: e.add_digest("a", "x", epoch=0, length=1, outcomes=Outcomes(denied=1),
                                high_risk=Outcomes(denied=2), record_id=rid(), ts=0), "high_risk.denied"),
        (lambda e: e.add_first_hand("x", ts=0, outcomes=Outcomes(ok=-1)), "ok"),
        (lambda e: e.flag_equivocator("own"), "offender"),
    ],
)
def test_bad_input_raises_invalid_evidence_naming_the_field(call, message):
    with pytest.raises(InvalidEvidence, match=message):
        call(TrustEngine("own"))


def test_one_org_cannot_fill_many_cap_windows_at_one_instant_by_stretching_its_epochs():
    """A hostile org signs, at one instant, digests for a hundred past windows, each epoch stretched (`len`) to end
    now: each got a window's cap of its own and none had decayed, so one org's word sank a verified agent to
    untrusted at once (6,000 bad pseudo-observations, a hundred bad reports), where its honest digests carry one
    window's cap an hour. Evidence is windowed by when it ends."""
    p = ScoringParams()
    w = World(orgs=6)
    w.engine.add_agent_vouch("org5", "a", 1.0, "operator", record_id=rid(), ts=0)
    w.history("a", range(100), w.orgs[1:5])
    assert w.tier("a") == "verified"
    now = w.now
    for k in range(100):
        w.engine.add_digest("org0", "a", epoch=k * HOUR_MS, length=now - k * HOUR_MS,
                            outcomes=Outcomes(denied=1000), record_id=rid(), ts=now)
    (hostile,) = [part for part in w.engine.explain("a", now=now).orgs if part.org == "org0"]
    assert hostile.bad == pytest.approx(p.cap_bad) and hostile.recent_bad_reports <= 1


def test_an_org_reporting_the_largest_counts_over_and_over_does_not_overflow_the_engine():
    """Each digest may report up to 2^53 - 1 events: after 1024 of them from one org about one agent, the pair's
    event count passed int64 and add_digest raised OverflowError. In the node that left the trust service's
    replica listener, stopping gossip delivery, and again on every start (the records are stored): one hostile
    org in the horizon stopped every node. The count saturates."""
    w = World()
    for epoch in range(1100):
        w.digest("org0", "a", epoch, ok=2**53 - 1)
    assert w.engine.explain("a", now=w.now).orgs[0].events == 2**63 - 1


def test_listing_every_org_groups_the_vouches_once_and_says_what_each_org_alone_says():
    """GET /v1/orgs (no token) searched every vouch for each org known: quadratic in the orgs, which an org inside
    the horizon adds by the thousand (0.53 s at 16,000). Counted in vouches compared with an org's index."""
    engine = TrustEngine("own", ["root"])
    engine.add_org_vouch("root", "org", 1.0, record_id=rid(), ts=0)
    for i in range(300):
        engine.add_org_vouch("org", f"fresh{i}", 0.5, record_id=rid(), ts=0)
        engine.add_org_vouch(f"fresh{i}", f"fresh{(i + 1) % 300}", 0.5, record_id=rid(), ts=0)
    expected = sorted((engine.org(o, now=1) for o in ["own", "root", "org", *(f"fresh{i}" for i in range(300))]),
                      key=lambda r: r.org)
    compared = []

    class Counted(np.ndarray):
        def __eq__(self, other):  # type: ignore[override]
            compared.append(self.size)
            return np.asarray(self) == other

    src, dst, weight, flow = engine._edges
    engine._edges = (src, dst.view(Counted), weight, flow)
    assert engine.orgs(now=1) == expected
    assert sum(compared) <= len(dst)  # 303 * 601 before



def test_a_record_about_an_agent_many_keys_vouch_for_weighs_its_own_terms_not_every_key_s(monkeypatch):
    """An org's 1,000 fresh keys each vouch for an agent and report on it; then each key's next records about it (a
    vouch in place of its earlier one, a digest, the vouch's revocation), each read at once at the same `now` as
    node.trust reads, sum that key's terms, not every key's: that grew with the keys an org makes for free, 8.9 ms
    a record at 8,000 (benchmarks/score_attacks.py)."""
    engine, now = TrustEngine("own", ["root"]), 2 * DAY_MS
    engine.add_org_vouch("root", "attacker", 1.0, record_id=rid(), ts=0)
    for i in range(1000):
        engine.add_org_vouch("attacker", f"key{i}", 0.5, record_id=rid(), ts=0)
        engine.add_agent_vouch(f"key{i}", "victim", 1.0, "audit", record_id=rid(), ts=1)
        engine.add_digest(f"key{i}", "victim", epoch=0, length=HOUR_MS, outcomes=Outcomes(ok=5), record_id=rid(),
                          ts=HOUR_MS)
    engine.score("victim", now=now)
    terms, on_grid = [], scoring.on_grid
    monkeypatch.setattr(scoring, "on_grid", lambda value: terms.append(value) or on_grid(value))
    for i in range(10):
        engine.add_agent_vouch(f"key{i}", "victim", 0.5, "audit", record_id=(vouch := rid()), ts=2)
        engine.score("victim", now=now)
        engine.add_digest(f"key{i}", "victim", epoch=HOUR_MS, length=HOUR_MS, outcomes=Outcomes(ok=5),
                          record_id=rid(), ts=2 * HOUR_MS)
        engine.score("victim", now=now)
        engine.revoke(f"key{i}", vouch, ts=3)
        engine.score("victim", now=now)
    # Each of the 30 records: its key's evidence (good, bad, reports) and vouch (its lift), before and after.
    assert 0 < len(terms) <= 30 * 2 * 4


def test_an_operator_vouch_of_one_of_many_keys_weighs_its_own_terms_and_looks_through_no_other_vouch(monkeypatch):
    """An org's 1,000 fresh keys each give an agent its first operator vouch, and report on it, each read at once at
    one `now`: the groups the operators bar from witnessing (vouching.scoring._operator_groups) are kept for the
    agent, not found again among its vouches, and a new operator's vouch updates the sums by its terms. Finding them
    among the vouches at each record, or summing every key's terms again, took 1.3 s for 4,000 keys where an audit
    vouch of each took 0.3 s."""
    engine, now = TrustEngine("own", ["root"]), 2 * DAY_MS
    engine.add_org_vouch("root", "attacker", 1.0, record_id=rid(), ts=0)
    for i in range(1010):
        engine.add_org_vouch("attacker", f"key{i}", 0.5, record_id=rid(), ts=0)
    engine.score("victim", now=now)
    terms, looked, on_grid, of_key = [], [], scoring.on_grid, scoring.issuer_and_basis
    for i in range(1010):
        if i == 1000:
            monkeypatch.setattr(scoring, "on_grid", lambda value: terms.append(value) or on_grid(value))
            monkeypatch.setattr(scoring, "issuer_and_basis", lambda key: looked.append(key) or of_key(key))
        engine.add_agent_vouch(f"key{i}", "victim", 1.0, "operator", record_id=rid(), ts=1)
        engine.score("victim", now=now)
        engine.add_digest(f"key{i}", "victim", epoch=0, length=HOUR_MS, outcomes=Outcomes(ok=5), record_id=rid(),
                          ts=HOUR_MS)
        engine.score("victim", now=now)
    assert 0 < len(terms) <= 20 * 2 * 4 and not looked
    assert engine.operators("victim", now=now) == tuple(sorted(f"key{i}" for i in range(1010)))
