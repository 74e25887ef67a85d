"""Records feed the engine: vouches lift, revocations drop, digests count, equivocators are zeroed."""

from dataclasses import replace

from nacl.signing import SigningKey

from vouching import Record, digest_body, vouch_body
from vouching.explanation import Explanation
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


def _as_written_in_javascript(org: Org, kind: str, body: dict) -> Record:
    """org's next record of body, its whole numbers (a vouch's weight, a digest's dp.eps) written as CBOR integers,
    as JavaScript's CBOR libraries (cborg) write them."""
    if kind == "vouch":
        body = {**body, "weight": int(body["weight"])}
    elif "dp" in body:
        body = {**body, "dp": {"eps": int(body["dp"]["eps"])}}
    return org.record(kind, body)


def _without_record_ids(explanation: Explanation) -> Explanation:
    return replace(explanation, vouches=tuple(replace(v, record_id="") for v in explanation.vouches))


def test_a_vouch_of_weight_1_and_a_digest_of_eps_2_written_as_integers_score_as_the_floats_do():
    """A node in another language writes 1.0 as the integer 1: its vouches and digests are the same numbers to the
    engine, so every score and explanation is the same but for the record ids."""
    agent, agent_of_mine = new_did(), new_did()
    scores, explanations, reputations = [], [], []
    for write in (Org.record, _as_written_in_javascript):
        me, partner = Org(SigningKey(bytes(32))), Org(SigningKey(bytes([1]) * 32))
        engine = TrustEngine(me.did)
        for org, kind, body in [
            (me, "vouch", vouch_body(partner.did, 1.0, "org-peer")),
            (partner, "vouch", vouch_body(agent, 1.0, "operator")),
            (partner, "vouch", vouch_body(agent_of_mine, 1.0, "audit")),
            (partner, "digest", _digest(Org(), agent, ok=20, denied=3, dp_epsilon=2.0).body.to_wire()),
        ]:
            feed_record(engine, write(org, kind, body), UNLINKED)
        engine.recompute(now=NOW)
        scores.append([engine.score(a, now=NOW) for a in (agent, agent_of_mine)])
        explanations.append([_without_record_ids(engine.explain(a, now=NOW)) for a in (agent, agent_of_mine)])
        reputations.append(engine.org(partner.did, now=NOW))
    assert scores[0] == scores[1] and scores[0][0].score > TrustEngine(new_did()).score(agent, now=NOW).score
    assert explanations[0] == explanations[1]
    assert reputations[0] == reputations[1]
