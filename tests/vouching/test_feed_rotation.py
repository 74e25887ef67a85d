"""Keys linked by a rotation (DESIGN.md §2) are one org to the trust engine: feed_record maps every org key through
the org's identity, and leaves agents as they are."""

from collections.abc import Callable

import pytest

from vouching import Record, digest_body, org_body, vouch_body
from vouching.feed import feed_record
from vouching.params import HOUR_MS
from vouching.scoring import TrustEngine
from vouching.succession import Succession

from ..factories import Org, new_did

START = Org.ts - 400 * HOUR_MS  # the digests' hours count from here, all before the records are signed
NOW = Org.ts + HOUR_MS


def _digest(org: Org, agent: str, hour: int, *, ok: int = 30, denied: int = 0) -> Record:
    outcomes = {"ok": ok, "error": 0, "denied": denied, "timeout": 0}
    return org.record("digest", digest_body(
        agent, epoch=START + hour * HOUR_MS, length=HOUR_MS, outcomes=outcomes,
        categories={"tool": ok + denied, "mcp": 0, "a2a": 0, "auth": 0, "resource": 0, "other": 0},
        high_risk={"ok": 0, "error": 0, "denied": 0, "timeout": 0}, evidence_root=b"\0" * 32,
    ))


def _identity(*records: Record) -> Callable[[str], str]:
    """Succession.identity, with `records` (rotations and first records) noted."""
    succession = Succession()
    for record in records:
        succession.note(record)
    return succession.identity


def _fed(engine: TrustEngine, records: list[Record], identity: Callable[[str], str]) -> TrustEngine:
    for record in records:
        feed_record(engine, record, identity)
    engine.recompute(now=NOW)
    return engine


def test_an_orgs_digests_under_its_old_and_new_keys_are_one_orgs_word():
    """The per-org cap holds across the keys: alone, the org lifts the agent no higher than provisional, exactly as
    if its old key had signed every digest, although this node vouched for both keys."""
    me, old, agent = Org(), Org(), new_did()
    reference = [me.vouch(old.did, 1.0), *(_digest(old, agent, hour) for hour in range(200))]
    records = [me.vouch(old.did, 1.0), *(_digest(old, agent, hour) for hour in range(100))]
    new, rotation, first = old.rotate()
    records += [rotation, first, me.vouch(new.did, 1.0), *(_digest(new, agent, hour) for hour in range(100, 200))]
    rotated = _fed(TrustEngine(me.did, [old.did]), records, _identity(rotation, first))
    alone = _fed(TrustEngine(me.did, [old.did]), reference, _identity())
    assert rotated.explain(agent, now=NOW) == alone.explain(agent, now=NOW)
    assert rotated.score(agent, now=NOW).tier == "provisional"
    assert [part.org for part in rotated.explain(agent, now=NOW).orgs] == [old.did]


def _operates_and_reports(org: Org, operated: str, observed: str) -> list[Record]:
    """`org` vouches as operator for one agent and reports another's violations."""
    return [org.record("vouch", vouch_body(operated, 1.0, "operator")),
            *(_digest(org, observed, hour, ok=0, denied=5) for hour in range(5))]


@pytest.mark.parametrize("vouched", ["old", "new"])
def test_an_org_peer_vouch_for_either_key_lends_its_weight_to_the_other_keys_records(vouched):
    me, old, operated, observed = Org(), Org(), new_did(), new_did()
    by_old = _operates_and_reports(old, operated, observed) if vouched == "new" else []
    new, rotation, first = old.rotate()
    said = by_old or _operates_and_reports(new, operated, observed)
    records = [rotation, first, me.vouch((old if vouched == "old" else new).did, 1.0), *said]
    engine = _fed(TrustEngine(me.did), records, _identity(rotation, first))
    assert engine.score(operated, now=NOW).tier == "provisional"
    assert engine.score(observed, now=NOW).score < engine.score(new_did(), now=NOW).score
    assert engine.org(old.did, now=NOW).weight > 0 and new.did not in engine.reputations(now=NOW)


def test_a_key_proven_to_equivocate_and_then_linked_to_the_nodes_own_org_is_merged_without_distrusting_it():
    """The proof of the new key's fork came before its rotation: once linked, the node does not distrust its own org
    (feed_record skips such a flag), and the merged engine equals one that knew the link from the start. Before,
    merge_org raised after having moved the key's vouches, without refreshing reputation or counting an org change,
    and the node's link listener failed, so no recompute was brought forward: the partner that vouched for the key
    kept the accountability it lost for it, its agent scored 104 instead of 220 until the next periodic one."""
    me, partner, reporter, agent = Org(), Org(), Org(), new_did()
    new, rotation, first = me.rotate()
    fork = sorted((new.fork(2, first.id).raw, new.fork(2, first.id).raw))
    before = [me.vouch(partner.did, 1.0), partner.vouch(new.did, 0.5),
              reporter.record("equivocation", {"type": "record", "offender": new.did, "a": fork[0], "b": fork[1]}),
              *(_digest(partner, agent, hour, ok=9) for hour in range(3))]
    merged = _fed(TrustEngine(me.did), before, _identity())
    assert merged.org(new.did, now=NOW).equivocator
    org_changes = merged.org_changes
    assert merged.merge_org(new.did, me.did) and merged.org_changes > org_changes
    reference = _fed(TrustEngine(me.did), before, _identity(rotation, first))
    assert [v.issuer for v in merged.org(me.did, now=NOW).vouched_by] == [partner.did]  # (refreshed at once)
    merged.recompute(now=NOW)
    assert merged.orgs(now=NOW) == reference.orgs(now=NOW)
    assert merged.explain(agent, now=NOW) == reference.explain(agent, now=NOW)
    assert not merged.org(me.did, now=NOW).equivocator and merged.score(agent, now=NOW).tier == "provisional"


def test_the_nodes_digests_under_either_of_its_keys_are_its_own():
    """They repeat what the engine holds as first-hand evidence, whichever key signed them."""
    old, agent = Org(), new_did()
    earlier = _digest(old, agent, 1, ok=0, denied=5)
    new, rotation, first = old.rotate()
    identity = _identity(rotation, first)
    engine = TrustEngine(identity(new.did))
    before = engine.score(agent, now=NOW)
    for record in (earlier, _digest(new, agent, 2, ok=0, denied=5)):
        assert feed_record(engine, record, identity) is None
    engine.recompute(now=NOW)
    assert engine.score(agent, now=NOW) == before


def test_an_equivocation_of_the_new_key_zeroes_what_the_old_key_reported():
    me, old, reporter, agent = Org(), Org(), Org(), new_did()
    records = [me.vouch(old.did, 1.0), *(_digest(old, agent, hour, ok=0, denied=5) for hour in range(5))]
    new, rotation, first = old.rotate()
    identity = _identity(rotation, first)
    engine = _fed(TrustEngine(me.did), [*records, rotation, first], identity)
    hurt = engine.score(agent, now=NOW).score
    fork = sorted((new.fork(2, first.id).raw, new.fork(2, first.id).raw))
    proof = reporter.record("equivocation", {"type": "record", "offender": new.did, "a": fork[0], "b": fork[1]})
    engine = _fed(engine, [proof], identity)
    assert engine.score(agent, now=NOW).score > hurt and engine.org(old.did, now=NOW).equivocator


def test_the_new_key_may_revoke_the_old_keys_vouch_and_a_key_merely_claiming_the_old_one_may_not():
    old, claimant, agent = Org(), Org(), new_did()
    vouch = old.record("vouch", vouch_body(agent, 1.0, "operator"))
    new, rotation, first = old.rotate()
    claim = claimant.record("org", org_body("org", "test", prior=old.did))  # the old key never named it
    identity = _identity(rotation, first, claim)
    engine = TrustEngine(Org().did, [old.did])
    feed_record(engine, vouch, identity)
    vouched = engine.score(agent, now=NOW)
    assert feed_record(engine, claimant.revoke(vouch), identity) is None  # accepted by the replica, counts nothing
    assert engine.score(agent, now=NOW) == vouched
    assert feed_record(engine, new.revoke(vouch), identity) == agent
    assert engine.score(agent, now=NOW).score < vouched.score


def test_an_org_peer_vouch_between_two_keys_of_one_org_is_left_aside():
    me, old = Org(), Org()
    new, rotation, first = old.rotate()
    engine = _fed(TrustEngine(me.did), [me.vouch(old.did, 1.0)], _identity(rotation, first))
    org_changes = engine.org_changes
    assert feed_record(engine, new.vouch(old.did, 1.0), _identity(rotation, first)) is None
    assert engine.org_changes == org_changes and [v.issuer for v in engine.org(old.did, now=NOW).vouched_by] == [me.did]


def test_a_key_known_as_an_org_before_its_rotation_is_merged_into_its_org_exactly():
    """The engine heard of the new key before the link (the old key vouched for it, a partner vouched for it, it was
    proven to equivocate): merge_org moves all of that onto the org, and the engine then equals one that knew the
    link from the start, accountability and reputation included."""
    me, partner, reporter, old, new, agent = Org(), Org(), Org(), Org(), Org(), new_did()
    before = [me.vouch(old.did, 1.0), me.vouch(partner.did, 1.0), old.vouch(new.did, 1.0),
              partner.vouch(new.did, 0.5), *(_digest(old, agent, hour, ok=0, denied=5) for hour in range(3))]
    _, rotation, first = old.rotate(new)
    fork = sorted((new.fork(2, first.id).raw, new.fork(2, first.id).raw))
    before.append(reporter.record("equivocation", {"type": "record", "offender": new.did, "a": fork[0],
                                                   "b": fork[1]}))
    after = [_digest(partner, agent, hour, ok=9) for hour in range(3)]
    merged = _fed(TrustEngine(me.did), before, _identity())
    assert merged.merge_org(new.did, old.did) and not merged.merge_org(new_did(), old.did)
    merged = _fed(merged, after, _identity(rotation, first))
    reference = _fed(TrustEngine(me.did), [*before, *after], _identity(rotation, first))
    assert merged.orgs(now=NOW) == reference.orgs(now=NOW)
    assert merged.explain(agent, now=NOW) == reference.explain(agent, now=NOW)
    assert merged.org(old.did, now=NOW).equivocator
