"""Records feed the engine: vouches lift, revocations drop, digests count, equivocators are zeroed."""

from vouching import digest_body, vouch_body
from vouching.feed import feed_record
from vouching.scoring import TrustEngine
from vouching.succession import Succession

from ..factories import Org, new_did

NOW = 1_700_000_000_000 + 10_000_000
UNLINKED = Succession().identity  # no rotations: every key is an org of its own


def _digest(org: Org, agent: str, *, ok: int = 0, denied: int = 0, dp_epsilon: float | None = None):
    outcomes = {"ok": ok, "error": 0, "denied": denied, "timeout": 0}
    categories = {"tool": ok + denied, "mcp": 0, "a2a": 0, "auth": 0, "resource": 0, "other": 0}
    return org.record("digest", digest_body(
        agent, epoch=org.ts - 3_600_000, length=3_600_000, outcomes=outcomes, categories=categories,
        high_risk={"ok": 0, "error": 0, "denied": 0, "timeout": 0}, evidence_root=b"\0" * 32, dp_epsilon=dp_epsilon,
    ))


def test_an_operator_vouch_lifts_and_its_revocation_drops_the_score():
    me, agent = Org(), new_did()
    engine = TrustEngine(me.did)
    cold = engine.score(agent, now=NOW).score
    vouch = me.record("vouch", vouch_body(agent, 1.0, "operator"))
    feed_record(engine, vouch, UNLINKED)
    lifted = engine.score(agent, now=NOW).score
    feed_record(engine, me.revoke(vouch), UNLINKED)
    assert lifted > cold and engine.score(agent, now=NOW).score == cold


def test_digests_from_a_vouched_org_count_and_its_equivocation_zeroes_them():
    me, partner, reporter, agent = Org(), Org(), Org(), new_did()
    engine = TrustEngine(me.did)
    feed_record(engine, me.vouch(partner.did, 1.0), UNLINKED)
    for _ in range(5):
        feed_record(engine, _digest(partner, agent, denied=5), UNLINKED)
    engine.recompute(now=NOW)
    hurt = engine.score(agent, now=NOW).score
    feed_record(engine, reporter.record("equivocation", {
        "type": "record", "offender": partner.did,
        **dict(zip("ab", sorted((partner.fork(1, None).raw, partner.fork(1, None).raw)))),
    }), UNLINKED)
    engine.recompute(now=NOW)
    assert engine.score(agent, now=NOW).score > hurt


def test_our_own_digests_leave_the_scores_as_they_were():
    """They count what the engine already holds as first-hand evidence (TrustEngine.add_first_hand)."""
    me, agent = Org(), new_did()
    engine = TrustEngine(me.did)
    before = engine.score(agent, now=NOW)
    feed_record(engine, _digest(me, agent, denied=5), UNLINKED)
    engine.recompute(now=NOW)
    assert engine.score(agent, now=NOW) == before


def test_feed_record_names_the_agent_whose_evidence_or_vouches_it_added_to():
    me, partner, agent = Org(), Org(), new_did()
    engine = TrustEngine(me.did)
    assert feed_record(engine, me.record("vouch", vouch_body(agent, 1.0, "operator")), UNLINKED) == agent
    assert feed_record(engine, me.vouch(partner.did, 1.0), UNLINKED) is None  # an org, not an agent
    assert feed_record(engine, _digest(partner, agent, ok=3), UNLINKED) == agent
    assert feed_record(engine, _digest(me, agent, ok=3), UNLINKED) is None  # ours: first-hand evidence already


def test_a_dp_digest_s_bad_counts_are_judged_against_the_noise_it_declares():
    """Denials a DP digest's noise explains (vouching.dp_discount) count nothing: a digest at epsilon 1 with 5
    denied scores like one with none."""
    me, partner, agent = Org(), Org(), new_did()
    scores = []
    for denied in (0, 5):
        engine = TrustEngine(me.did)
        feed_record(engine, me.vouch(partner.did, 1.0), UNLINKED)
        feed_record(engine, _digest(partner, agent, ok=20, denied=denied, dp_epsilon=1.0), UNLINKED)
        engine.recompute(now=NOW)
        scores.append(engine.score(agent, now=NOW))
    assert scores[0] == scores[1]
