"""The replica: our own records, the horizon as vouches arrive, and equivocation turned into a flag everywhere."""

import dataclasses
import logging
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gossip.replica
from gossip.replica import Replica, RetiredKey, RotationTakenBack, SigningDeferred
from gossip.store import INDEX_FILE, RecordStore
from gossip.validation import check_record
from ledger import Checkpoint, Ed25519Signer, log_origin, tree_hash
from vouching import (
    Counts,
    DigestBody,
    InvalidRecord,
    OrgBody,
    Record,
    equivocation_body,
    org_body,
    record_equivocation_body,
    verify_record,
    vouch_body,
)
from vouching.succession import Link
from vouching.bodies import CATEGORIES, OUTCOMES

from ..factories import Org, new_did


@pytest.fixture
def replica(tmp_path):
    me = Org()
    with RecordStore.open(tmp_path) as store:
        yield Replica(me.key, store, roots=(), max_hops=2, held_limit=100)


def test_issue_signs_our_next_record_and_stores_it(replica):
    first = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
    second = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
    assert (first.iss, first.seq, second.seq, second.prev) == (replica.did, 1, 2, first.id)
    assert replica.store.size == 2


def test_issue_calls_before_storing_with_the_signed_record_and_stores_nothing_if_it_raises(replica):
    """What must be durable before a record is stored (an API idempotency key naming it) is written there."""
    seen = []

    def refuse(record):
        seen.append((record.seq, replica.store.size))
        raise OSError("disk full")

    with pytest.raises(OSError):
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"), before_storing=refuse)
    stored = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"), before_storing=seen.append)
    assert seen == [(1, 0), stored] and replica.store.size == 1 and stored.seq == 1


def test_listeners_hear_every_accepted_batch(replica):
    heard = []
    replica.listeners.append(heard.append)
    record = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
    assert heard == [[record]]


def _digest(agent: str) -> DigestBody:
    hour = 3_600_000
    epoch = time.time_ns() // 1_000_000 // hour * hour - hour
    return DigestBody(agent, epoch, hour, Counts(tuple(zip(OUTCOMES, (2, 1, 0, 0)))),
                      Counts(tuple(zip(CATEGORIES, (0, 0, 0, 3, 0, 0)))), Counts(tuple(zip(OUTCOMES, (0, 1, 0, 0)))),
                      3, bytes(32), None)


def test_digests_are_issued_on_our_chain_in_one_batch_and_a_bad_one_stores_none(replica):
    first = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
    heard = []
    replica.listeners.append(heard.append)
    bodies = [_digest(new_did()) for _ in range(3)]
    with pytest.raises(InvalidRecord, match="body.events"):
        replica.issue_digests([bodies[0], dataclasses.replace(bodies[1], events=4)])
    assert (replica.store.size, heard) == (1, [])
    records = replica.issue_digests(bodies)
    assert [(r.seq, r.body) for r in records] == [(2, bodies[0]), (3, bodies[1]), (4, bodies[2])]
    assert records[0].prev == first.id and heard == [records] and replica.store.size == 4


def test_an_org_peer_vouch_brings_its_subject_inside_the_horizon(replica):
    partner = Org()
    assert replica.accept([partner.record()]).outside_horizon == 1
    replica.issue("vouch", vouch_body(partner.did, 0.8, "org-peer"))
    assert partner.did in replica.horizon
    partner_again = Org(key=partner.key)
    assert replica.accept([partner_again.record()]).accepted


def test_horizon_listeners_hear_each_org_that_enters_including_one_that_comes_back(replica):
    partner, friend = Org(), Org()
    entered = []
    replica.horizon_listeners.append(entered.append)
    vouch = replica.issue("vouch", vouch_body(partner.did, 0.8, "org-peer"))
    replica.accept([partner.vouch(friend.did)])
    replica.issue("vouch", vouch_body(new_did(), 0.8, "operator"))  # brings no org in
    assert entered == [{partner.did}, {friend.did}]
    replica.issue("revoke", {"record": vouch.id, "reason": "ended"})
    assert partner.did not in replica.horizon and friend.did not in replica.horizon
    replica.issue("vouch", vouch_body(partner.did, 0.8, "org-peer"))
    assert entered[2:] == [{partner.did, friend.did}]  # both are back: their later records must be fetched


def test_an_org_brought_in_and_taken_out_by_one_batch_is_not_announced(replica):
    partner, stranger = Org(), Org()
    replica.issue("vouch", vouch_body(partner.did, 0.8, "org-peer"))
    entered = []
    replica.horizon_listeners.append(entered.append)
    vouch = partner.vouch(stranger.did)
    replica.accept([vouch, partner.revoke(vouch)])
    assert stranger.did not in replica.horizon
    assert entered == []


def test_equivocation_is_signed_by_us_and_flags_the_offender(replica):
    cheat = Org()
    replica.issue("vouch", vouch_body(cheat.did, 0.8, "org-peer"))
    honest = cheat.record()
    replica.accept([honest])
    outcome = replica.accept([cheat.fork(1, None)])
    assert outcome.equivocations
    assert cheat.did in replica.flagged
    evidence = replica.store.query(kind="equivocation")
    assert len(evidence) == 1
    # A second contradiction does not produce a second record.
    replica.accept([cheat.fork(1, None)])
    assert len(replica.store.query(kind="equivocation")) == 1


def _checkpoint_fork(cheat: Org, log: str = "records") -> tuple[bytes, bytes]:
    """Two checkpoints of `cheat`'s `log` at one size with different roots, signed by its key."""
    origin = log_origin("test", cheat.did, log)
    return tuple(Checkpoint(origin, 2, tree_hash([entry, entry])).sign([Ed25519Signer(origin, cheat.key)])
                 for entry in (b"a", b"b"))


@pytest.mark.parametrize("kind", ["record", "checkpoint"])
def test_an_outsiders_evidence_against_an_org_inside_is_signed_again_by_us(replica, kind):
    """An equivocation record's issuer outside our horizon is not stored, but what it proves is the same: the node
    signs its own from the same evidence (DESIGN §5, a node that sees two records for one (iss, seq) publishes), or
    an equivocator whose fork reached only nodes we do not replicate stays counted here. Once, however many
    outsiders report it."""
    cheat = Org()
    replica.issue("vouch", vouch_body(cheat.did, 0.8, "org-peer"))
    if kind == "record":
        honest = cheat.record()
        replica.accept([honest])
        a, b = honest.raw, cheat.fork(1, None).raw
    else:
        a, b = _checkpoint_fork(cheat)
    reports = [Org().record("equivocation", equivocation_body(kind, cheat.did, a, b)) for _ in range(3)]
    outcome = replica.accept(reports)
    assert outcome.outside_horizon == 3 and cheat.did in replica.flagged
    ours = replica.store.query(kind="equivocation")
    assert len(ours) == 1
    assert verify_record(ours[0][1]).body == reports[0].body


def test_an_outsiders_evidence_against_an_org_outside_is_ignored(replica):
    cheat = Org()
    honest = cheat.record()
    report = Org().record("equivocation", record_equivocation_body(honest.raw, cheat.fork(1, None).raw))
    assert replica.accept([report]).outside_horizon == 1
    assert not replica.flagged and not replica.store.query(kind="equivocation")


def test_a_listener_that_raises_stops_neither_the_others_nor_the_evidence(replica, caplog):
    """A listener's bug (the trust engine on a hostile digest, say) must not stop the node, which would happen again
    at every start as stored records are replayed, nor keep the equivocation it saw from being signed."""
    def broken(news: object) -> None:
        raise OverflowError("a listener's bug")

    heard, entered = [], []
    replica.listeners[:] = [broken, heard.append]
    replica.horizon_listeners[:] = [broken, entered.append]
    cheat = Org()
    with caplog.at_level(logging.ERROR, logger="gossip.replica"):
        replica.issue("vouch", vouch_body(cheat.did, 0.8, "org-peer"))
        honest = cheat.record()
        replica.accept([honest])
        outcome = replica.accept([cheat.fork(1, None)])
    assert outcome.equivocations and cheat.did in replica.flagged
    assert len(replica.store.query(kind="equivocation")) == 1
    assert [len(batch) for batch in heard] == [1, 1, 1] and entered == [{cheat.did}]
    assert replica.listener_errors == 4 and "a listener's bug" in caplog.text


def test_flags_and_horizon_survive_a_restart(tmp_path):
    me, cheat = Org(), Org()
    with RecordStore.open(tmp_path) as store:
        replica = Replica(me.key, store, roots=(), max_hops=2, held_limit=100)
        replica.issue("vouch", vouch_body(cheat.did, 0.8, "org-peer"))
        replica.accept([cheat.record()])
        replica.accept([cheat.fork(1, None)])
    with RecordStore.open(tmp_path) as store:
        replica = Replica(me.key, store, roots=(), max_hops=2, held_limit=100)
        assert cheat.did in replica.horizon and cheat.did in replica.flagged



def test_audit_log_evidence_accepted_before_it_was_refused_stops_no_restart(tmp_path):
    """Two roots of an org's audit log at one size were evidence until gossip.validation asked for its records log:
    a node that accepted such an equivocation record keeps it (its ledger is append-only) and starts as before, its
    index rebuilt from the ledger included: stored records are read back unchecked (vouching.load_stored), so the
    offender stays flagged here, as the node flagged it then. The record now fails check_record: `vouchnet log
    verify` names it, and upgraded peers refuse it, and so its issuer's later records, when synced."""
    me, reporter, honest = Org(), Org(), Org()
    report = reporter.record("equivocation", equivocation_body("checkpoint", honest.did,
                                                                *_checkpoint_fork(honest, "audit")))
    with RecordStore.open(tmp_path) as store:
        replica = Replica(me.key, store, roots=(), max_hops=2, held_limit=100)
        replica.issue("vouch", vouch_body(reporter.did, 0.8, "org-peer"))
        assert replica.accept([report]).accepted == [report]  # as the rule before took it: check_record is gossip's
    (tmp_path / INDEX_FILE).unlink()
    with RecordStore.open(tmp_path) as store:
        replica = Replica(me.key, store, roots=(), max_hops=2, held_limit=100)
        assert store.has(report.id) and honest.did in replica.flagged
        later = reporter.record()
        assert replica.accept([later]).accepted == [later]
        replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    with pytest.raises(InvalidRecord, match="body.a: must be a checkpoint of the offender's records log"):
        check_record(report.raw)


def test_a_restarted_replica_takes_in_its_stored_records_a_chunk_at_a_time_when_asked(tmp_path, monkeypatch):
    """Replica.tracking, as the node runs it at a start (yielding between chunks, for a signal): a replica made with
    track_stored=False knows nothing of the store until it has gone through it, and then what one made at once does."""
    me, cheat = Org(), Org()
    with RecordStore.open(tmp_path) as store:
        replica = Replica(me.key, store, roots=(), max_hops=2, held_limit=100)
        replica.issue("vouch", vouch_body(cheat.did, 0.8, "org-peer"))
        replica.accept([cheat.record()])
        replica.accept([cheat.fork(1, None)])  # (our equivocation record)
    monkeypatch.setattr(gossip.replica, "TRACK_CHUNK", 1)
    with RecordStore.open(tmp_path) as store:
        replica = Replica(me.key, store, roots=(), max_hops=2, held_limit=100, track_stored=False)
        assert cheat.did not in replica.horizon
        assert len(list(replica.tracking())) == 3  # our vouch, the cheat's vouch, our equivocation record
        assert cheat.did in replica.horizon and cheat.did in replica.flagged


# --------------------------------------------------------------------------------------------- key rotation


def test_a_rotated_orgs_keys_are_linked_and_its_new_key_is_inside_the_horizon(replica):
    old = Org()
    replica.issue("vouch", vouch_body(old.did, 0.8, "org-peer"))
    links = []
    replica.link_listeners.append(links.append)
    new, rotation, first = old.rotate()
    assert replica.accept([rotation]).accepted == [rotation]
    assert new.did in replica.horizon  # so that its first record can be accepted
    assert replica.accept([first]).accepted == [first]
    assert links == [Link(old.did, new.did)]


def test_a_rotation_and_the_new_keys_first_record_in_one_batch_are_both_accepted(replica):
    old = Org()
    replica.issue("vouch", vouch_body(old.did, 0.8, "org-peer"))
    new, rotation, first = old.rotate()
    assert replica.accept([rotation, first, new.record()]).accepted[:2] == [rotation, first]
    assert replica.succession.keys(new.did) == (old.did, new.did)
    assert replica.succession.keys(new.did) == (old.did, new.did)


def test_an_equivocation_of_the_old_key_flags_the_new_key_in_either_order(replica):
    old = Org()
    replica.issue("vouch", vouch_body(old.did, 0.8, "org-peer"))
    honest = old.record()
    fork = old.fork(1, None)
    new, rotation, first = old.rotate()
    replica.accept([honest, rotation])
    replica.accept([fork])  # flagged before the link is known
    assert old.did in replica.flagged and new.did not in replica.flagged
    replica.accept([first])
    assert {old.did, new.did} <= replica.flagged
    assert not replica.horizon.add_edge(b"\x07" * 32, new.did, new_did())  # a flagged org's vouches reach nobody


def test_the_new_keys_revocation_of_an_old_vouch_counts_only_once_the_keys_are_linked(tmp_path):
    me, old, claimer = Org(), Org(), Org()
    with RecordStore.open(tmp_path) as store:
        replica = Replica(me.key, store, roots=(), max_hops=3, held_limit=100)
        for org in (old, claimer):
            replica.issue("vouch", vouch_body(org.did, 0.8, "org-peer"))
        friend = Org()
        vouch = old.vouch(friend.did)
        replica.accept([vouch])
        assert friend.did in replica.horizon
        # A key that merely claims to replace `old` cannot cut old's vouches.
        claim = claimer.record("org", org_body("org", "test", prior=old.did))
        replica.accept([claim, claimer.revoke(vouch)])
        assert friend.did in replica.horizon
        new, rotation, first = old.rotate()
        replica.accept([rotation])  # which brings the new key inside the horizon
        replica.accept([first, new.revoke(vouch)])
        assert friend.did not in replica.horizon
    with RecordStore.open(tmp_path) as store:  # rebuilt from the store, the same
        replica = Replica(me.key, store, roots=(), max_hops=3, held_limit=100)
        assert replica.succession.keys(old.did) == (old.did, new.did) and friend.did not in replica.horizon


def test_a_retired_node_key_signs_nothing_more(replica):
    successor = Org()
    replica.issue("org", org_body("me", "test", next=successor.did))
    with pytest.raises(RetiredKey, match="restart the node to sign with its successor"):
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))


def test_a_new_key_is_heard_past_its_first_record_only_once_the_rotation_names_it(replica):
    old = Org()
    replica.issue("vouch", vouch_body(old.did, 0.8, "org-peer"))
    friend = Org()
    vouch = old.vouch(friend.did)
    new, rotation, first = old.rotate()
    revocation = new.revoke(vouch)
    replica.issue("vouch", vouch_body(new.did, 0.8, "org-peer"))  # the new key is inside on its own
    entered = []
    replica.horizon_listeners.append(entered.append)
    outcome = replica.accept([vouch, first, revocation])
    assert outcome.unlinked == 1 and friend.did in replica.horizon
    replica.accept([rotation])
    assert new.did in entered[-1]  # so that sync fetches what was set aside
    assert replica.accept([revocation]).accepted == [revocation]
    assert friend.did not in replica.horizon


def test_a_node_that_trusts_only_the_new_key_links_it_and_hears_it(replica):
    """A partner that met the org after its rotation vouches for its new key alone: the old key's chain comes in,
    for the rotation it ends with, and the keys link; before, nothing past the new key's first record was ever
    accepted there (the rotation, outside the horizon, was never taken in)."""
    old, friend = Org(), Org()
    history = [old.vouch(friend.did), old.record()]
    new, rotation, first = old.rotate()
    later = new.record()
    replica.issue("vouch", vouch_body(new.did, 0.8, "org-peer"))
    entered = []
    replica.horizon_listeners.append(entered.append)
    assert replica.accept([*history, rotation]).outside_horizon == 3
    assert replica.accept([first, later]).unlinked == 1
    assert old.did in entered[-1]  # so that sync fetches its chain
    replica.accept([*history, rotation])
    assert replica.succession.identity(new.did) == old.did
    assert replica.accept([later]).accepted == [later]
    assert friend.did in replica.horizon  # one org: the old key's vouches reach as far as the new key's


def test_after_its_own_rotation_a_node_still_reaches_the_orgs_its_old_key_vouched_for(tmp_path):
    me, partner = Org(), Org()
    with RecordStore.open(tmp_path) as store:
        before = Replica(me.key, store, roots=(), max_hops=2, held_limit=100)
        before.issue("vouch", vouch_body(partner.did, 0.8, "org-peer"))
        successor = Org()  # as node.rotation rotates, with the node stopped
        before.issue("org", org_body("me", "test", next=successor.did))
        after = Replica(successor.key, store, roots=(), max_hops=2, held_limit=100)
        after.issue("org", org_body("me", "test", prior=me.did))
        assert partner.did in after.horizon
        assert after.accept([partner.record()]).accepted
    with RecordStore.open(tmp_path) as store:  # and after a restart
        assert partner.did in Replica(successor.key, store, roots=(), max_hops=2, held_limit=100).horizon


def test_what_a_chain_of_keys_signed_is_fetched_once_its_first_rotation_arrives(replica):
    """The middle key rotates in its first record: the last key's records wait until the first key names the
    middle one, and then the horizon listeners hear of every key whose records were set aside, so sync fetches them."""
    old, middle, new = Org(), Org(), Org()
    replica.issue("vouch", vouch_body(old.did, 0.8, "org-peer"))
    replica.issue("vouch", vouch_body(middle.did, 0.8, "org-peer"))
    rotation = old.record("org", org_body("org", "test", next=middle.did))
    firsts = [middle.record("org", org_body("org", "test", prior=old.did, next=new.did)),
              new.record("org", org_body("org", "test", prior=middle.did))]
    later = new.vouch(Org().did)
    assert replica.accept([*firsts, later]).unlinked == 1
    entered = []
    replica.horizon_listeners.append(entered.append)
    replica.accept([rotation])
    assert {middle.did, new.did} <= entered[-1]
    assert replica.accept([later]).accepted == [later]


def test_a_first_record_completing_two_links_at_once_flags_every_key_of_a_flagged_org(tmp_path):
    """k's first record names both its prior (a flagged key whose rotation named k) and its successor (whose first
    record, naming k, arrived earlier): it completes two links, and only the second was told to the listeners, so
    the flag never reached k or its successor, although all three keys were one org."""
    me, partner, bad, k, s = Org(), Org(), Org(), Org(), Org()
    rotation = bad.record("org", org_body("org", "test", next=k.did))
    fork = bad.fork(1, None)
    s_first = s.record("org", org_body("org", "test", prior=k.did))
    k_first = k.record("org", org_body("org", "test", prior=bad.did, next=s.did))
    with RecordStore.open(tmp_path) as store:
        replica = Replica(me.key, store, roots=(), max_hops=3, held_limit=100)
        links = []
        replica.link_listeners.append(links.append)
        for org in (bad, partner):
            replica.issue("vouch", vouch_body(org.did, 0.8, "org-peer"))
        replica.accept([partner.vouch(s.did)])  # the successor is inside on its own
        for batch in ([rotation, fork], [s_first], [k_first]):
            replica.accept(batch)
        assert replica.succession.keys(s.did) == (bad.did, k.did, s.did)
        assert {bad.did, k.did, s.did} <= replica.flagged
        assert set(links) == {Link(bad.did, k.did), Link(k.did, s.did)}


def _chain(length: int) -> tuple[list[Org], list]:
    """Keys each rotating to the next in its first record: a hostile org's cheapest long chain (one record a key)."""
    keys = [Org() for _ in range(length)]
    records = [keys[0].record("org", org_body("org", "test", next=keys[1].did))]
    for prior, key, successor in zip(keys, keys[1:], keys[2:]):
        records.append(key.record("org", org_body("org", "test", prior=prior.did, next=successor.did)))
    records.append(keys[-1].record("org", org_body("org", "test", prior=keys[-2].did)))
    return keys, records


@pytest.mark.parametrize("flag_first", [True, False], ids=["flag-then-links", "links-then-flag"])
def test_a_long_chain_of_keys_is_flagged_with_one_horizon_recompute_and_each_key_walked_once(
        tmp_path, monkeypatch, flag_first):
    """Flagging walked every key of the org and recomputed the whole horizon once per key, and each link walked the
    whole chain: a chain of 6000 keys (1.5 MB of records) held the node for 14 s when flagged, and as long at every
    start. Now a flag costs one recompute, and each key is walked about once however the chain and flags arrive."""
    keys, records = _chain(300)
    fork = keys[0].fork(1, None)
    recomputes, walked = [], []
    with RecordStore.open(tmp_path) as store:
        replica = Replica(Org().key, store, roots=(), max_hops=2, held_limit=100)
        replica.issue("vouch", vouch_body(keys[0].did, 0.8, "org-peer"))
        monkeypatch.setattr(replica.horizon, "_recompute", lambda real=replica.horizon._recompute: (
            recomputes.append(1), real())[1])
        for name in ("earlier", "later"):  # (keys walks with later)
            real = getattr(replica.succession, name)
            monkeypatch.setattr(replica.succession, name, lambda key, real=real: walked.extend(real(key)) or real(key))
        batches = [[records[0], fork], *(records[i:i + 50] for i in range(1, len(records), 50))]
        while any(replica.accept(batch).accepted for batch in (batches if flag_first else batches[::-1])):
            pass  # offered again until nothing more is accepted, as sync does
        replica.accept([fork])  # every peer's equivocation record for it: no walk, no recompute
        assert len(recomputes) <= 3 and len(walked) <= 4 * len(keys)
        assert {key.did for key in keys} <= replica.flagged
        assert replica.succession.keys(keys[-1].did) == tuple(key.did for key in keys)


def _rotation_world() -> list:
    """Records of orgs that rotate, claim, vouch and revoke, for the order-independence property below."""
    a, c, d, f = Org(), Org(), Org(), Org()
    agent, friend = new_did(), Org()
    records = [a.vouch(friend.did), a.record("vouch", vouch_body(agent, 0.9, "operator"))]
    b = Org()
    records.append(a.vouch(b.did))  # the old key vouches for its own next key
    records.append(d.vouch(b.did))  # a partner vouches for the new key
    _, rotation, first = a.rotate(b)
    records += [rotation, first, b.revoke(records[0]), b.record("vouch", vouch_body(agent, 0.5, "audit"))]
    # a copy of a's key signs on after its rotation: a record, and a second rotation, to a key of the thief's own
    thief, thief_key = Org(key=a.key, seq=a.seq, prev=a.prev, ts=a.ts), Org()
    stolen = [thief.record(), thief.record("org", org_body("org", "test", next=thief_key.did)),
              thief_key.record("org", org_body("org", "test", prior=a.did)), thief_key.vouch(friend.did)]
    records += stolen
    e = Org()
    _, rotation2, first2 = b.rotate(e)
    records += [rotation2, first2, e.revoke(records[1])]
    records += [c.record("org", org_body("org", "test", prior=a.did)), c.revoke(records[1])]  # a false claim
    records += [f.record(), f.fork(1, None)]  # another org equivocates
    # g rotates to h, whose first record names g and rotates on to i at once; i's records wait for g's rotation
    g, h, i = Org(), Org(), Org()
    records += [g.record(), g.record("org", org_body("org", "test", next=h.did)),
                h.record("org", org_body("org", "test", prior=g.did, next=i.did)),
                i.record("org", org_body("org", "test", prior=h.did)), i.vouch(friend.did)]
    # three keys rotating in a cycle, each in its first record (each inside on its own, so that any of the three
    # links may close it); and a key named as successor by two keys
    j, k, m = Org(), Org(), Org()
    records += [j.record("org", org_body("org", "test", prior=m.did, next=k.did)),
                k.record("org", org_body("org", "test", prior=j.did, next=m.did)),
                m.record("org", org_body("org", "test", prior=k.did, next=j.did)), j.record()]
    records += [d.vouch(k.did), d.vouch(m.did), d.record("org", org_body("org", "test", next=j.did))]
    p, p_friend, partner = Org(), Org(), Org()  # p rotates to p2; the node reaches only p2
    records.append(p.vouch(p_friend.did))
    p2, rotation3, first3 = p.rotate()
    records += [partner.vouch(p2.did), rotation3, first3, p2.record()]
    return records, (a, d, f, g, partner), stolen


@settings(max_examples=40)
@given(data=st.data())
def test_what_a_replica_ends_up_with_does_not_depend_on_the_order_records_arrive_in(tmp_path_factory, data):
    """Offered in any order and any batches, and offered again until nothing more is accepted (as sync does),
    rotation records, claims, revocations across keys and vouches leave the same store, links, flags and horizon;
    and what a copy of a rotated key signs after its rotation is refused in every order, flagging no one."""
    records, vouched, stolen = WORLD
    equivocator = vouched[2]
    order = data.draw(st.permutations(records))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(records) - 1))))

    def settle(offered: list, cuts: list[int]) -> tuple:
        with RecordStore.open(tmp_path_factory.mktemp("r")) as store:
            replica = Replica(ME.key, store, roots=(), max_hops=3, held_limit=100)
            for org in vouched:
                replica.issue("vouch", vouch_body(org.did, 0.8, "org-peer"))
            progress = True
            while progress:
                before = store.size
                bounds = [0, *cuts, len(offered)]
                for lo, hi in zip(bounds, bounds[1:]):
                    replica.accept(list(offered[lo:hi]))
                progress = store.size > before
            # Which of the equivocator's two records came first, and is kept, is the one thing order decides.
            stored = {r.id for r in store.scan() if r.iss not in (replica.did, equivocator.did)}
            links = sorted(replica.succession.links(), key=str)
            return stored, links, replica.horizon.members(), frozenset(replica.flagged)

    settled = settle(order, cuts)
    assert settled == settle(records, [])
    assert not {record.id for record in stolen} & settled[0] and not {vouched[0].did, stolen[2].iss} & settled[3]
    assert len(settled[1]) == 8 and settled[3]  # the world is rich enough: the rotations link, the fork flags


WORLD = _rotation_world()
ME = Org()


def test_a_rotation_of_the_nodes_key_made_elsewhere_is_refused_and_contested(replica, caplog):
    """Whoever holds a copy of the node's key can sign a rotation of it: the node refuses it, and signs its own
    record at that seq so that the thief's key cannot quietly become the org."""
    replica.issue("org", org_body("me", "test", ["/ip4/10.0.0.9/tcp/4001"]))
    head = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
    thief = Org(key=replica.key, seq=head.seq, prev=head.id)
    rotation = thief.record("org", org_body("me", "test", next=Org().did))
    with caplog.at_level(logging.CRITICAL, logger="gossip.replica"):
        outcome = replica.accept([rotation])
    assert outcome.rejected == [(rotation, "iss: a rotation of this node's key that this node did not make")]
    assert "compromised" in caplog.text and not replica.succession.retired(replica.did)
    contest = verify_record(replica.store.at(replica.did, rotation.seq))
    assert contest.id != rotation.id and contest.body == OrgBody("me", "test", ("/ip4/10.0.0.9/tcp/4001",), None)
    assert replica.accept([rotation]).rejected and replica.store.head(replica.did).seq == rotation.seq  # once


def test_records_of_the_nodes_key_signed_elsewhere_are_accepted_and_reported(replica, caplog):
    """Its own history coming back to a node restored from an older copy, or a thief's records: accepted (the node
    goes on after them, never signing again at their seqs), counted, said at CRITICAL and told to the returned
    listeners."""
    returned: list[list[Record]] = []
    replica.returned_listeners.append(returned.append)
    head = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
    elsewhere = Org(key=replica.key, seq=head.seq, prev=head.id)
    records = [elsewhere.record(), elsewhere.record()]
    with caplog.at_level(logging.CRITICAL, logger="gossip.replica"):
        assert replica.accept(records).accepted == records
        replica.accept(records)  # again: nothing new
    assert replica.own_from_peers == 2
    (said,) = caplog.messages
    assert f"2 record(s) of this node's key {replica.did} (seq 2 to 3) came from peers" in said
    assert "restored from an older copy" in said and "compromised" in said
    assert replica.issue("vouch", vouch_body(new_did(), 0.5, "operator")).seq == 4
    assert replica.own_from_peers == 2 and returned == [records]


def test_while_signing_is_deferred_evidence_and_contests_wait_and_nothing_is_signed(replica):
    """As a node starts, until it has taken back what it signed before (node.daemon): what it must sign waits. A
    rotation of its key at a seq where it holds a record of its own is a thief's (ours there contradicts it): it is
    contested, as while the node signs, and ours is the contest."""
    mine = replica.issue("org", org_body("me", "test"))
    other = Org()
    ours = replica.issue("vouch", vouch_body(other.did, 0.8, "org-peer"))
    honest = other.record()
    thief = Org(key=replica.key, seq=mine.seq, prev=mine.id)
    rotation = thief.record("org", org_body("me", "test", next=Org().did))
    replica.defer_signing()
    with pytest.raises(SigningDeferred):
        replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    replica.accept([honest])
    assert replica.accept([other.fork(1, None)]).equivocations and other.did not in replica.flagged
    assert replica.accept([rotation]).rejected == [(rotation, "iss: a rotation of this node's key that this node "
                                                              "did not make")]
    assert replica.store.head(replica.did).seq == ours.seq == rotation.seq
    replica.resume_signing()
    assert other.did in replica.flagged and not replica.succession.retired(replica.did)
    assert verify_record(replica.store.at(replica.did, ours.seq + 1)).kind == "equivocation"
    assert replica.issue("vouch", vouch_body(new_did(), 0.5, "operator")).seq == ours.seq + 2


def test_the_contest_gets_the_org_and_the_thiefs_key_flagged_where_the_theft_arrived_first(tmp_path):
    victim, peer = Org(), Org()
    for name in ("victim", "peer"):
        (tmp_path / name).mkdir()
    with RecordStore.open(tmp_path / "victim") as store_v, RecordStore.open(tmp_path / "peer") as store_p:
        at_victim = Replica(victim.key, store_v, roots=(), max_hops=2, held_limit=100)
        at_peer = Replica(peer.key, store_p, roots=(), max_hops=2, held_limit=100)
        at_peer.issue("vouch", vouch_body(victim.did, 0.9, "org-peer"))
        head = at_victim.issue("org", org_body("victim", "test"))
        thief = Org(key=victim.key, seq=head.seq, prev=head.id)
        thief_key, rotation, first = thief.rotate()
        assert at_peer.accept([head, rotation]).accepted == [head, rotation]
        assert at_peer.accept([first]).accepted == [first]  # the thief's key is the victim org here, for now
        at_victim.accept([rotation])
        contest = verify_record(store_v.at(victim.did, rotation.seq))
        assert at_peer.accept([contest]).equivocations
        assert {victim.did, thief_key.did} <= at_peer.flagged


def test_a_rotation_of_the_nodes_key_taken_back_at_start_is_neither_contested_nor_taken_but_reported(tmp_path):
    """Backed up, then rotated to a new key that ran for a while; the older copy restored (its org.key, the old
    key): the node's start-up sync brings back what the old key signed since the backup, ending with its rotation.
    A thief who stole the key and rotated it while the node was stopped looks the same, so the replica takes the
    records before the rotation back, stores not the rotation, contests nothing, and reports the rotation to the
    caller that deferred signing (the node asks its operator: node.taken_back_rotation), signing nothing, then or
    later."""
    me, successor = Org(), Org()
    with RecordStore.open(tmp_path) as store:
        replica = Replica(me.key, store, roots=(), max_hops=2, held_limit=100)
        head = replica.issue("org", org_body("me", "test"))
        since = Org(key=me.key, seq=head.seq, prev=head.id)  # what the old key signed after the backup
        signed_since = [since.record(), since.record("org", org_body("me", "test", next=successor.did))]
        rotation = signed_since[-1]
        replica.defer_signing()  # as the node starts (node.daemon._take_back_own_records)
        outcome = replica.accept(signed_since)
        assert outcome.accepted == signed_since[:1] and [r for r, _ in outcome.rejected] == [rotation]
        for _ in range(2):  # signing stays deferred
            with pytest.raises(RotationTakenBack) as taken:
                replica.resume_signing()
            assert taken.value.rotation == rotation and successor.did in str(taken.value)
            with pytest.raises(SigningDeferred):
                replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
        assert replica.store.head(me.did).id == signed_since[0].id and not replica.flagged
        assert replica.succession.named_next(me.did) is None


@pytest.mark.parametrize("adopted", [True, False], ids=["adopted", "restored"])
def test_after_key_adopt_the_keys_records_coming_back_at_start_are_expected_and_later_ones_critical(
        tmp_path, caplog, adopted):
    """`vouchnet key adopt` stored the old key's rotation and made its successor the node's key, of which the node
    holds no record: what the successor signed in the newer copy comes back in the start's catch-up sync, as the
    README's adopt steps say, and is said at INFO, not counted as a possible thief's, and told to the returned
    listeners (the trust engine counts its digests). A record of the key signed elsewhere once the node signs
    again is reported at CRITICAL and counted, as is, at a start of a node that held records of its key (restored
    from an older copy, no adopt), what comes back in the catch-up sync."""
    old, new = Org(), Org()
    with RecordStore.open(tmp_path) as store:
        Replica(old.key, store, roots=(), max_hops=2, held_limit=100).issue("org", org_body("me", "test",
                                                                                          next=new.did))
        replica = Replica(new.key, store, roots=(), max_hops=2, held_limit=100)
        if not adopted:  # (the newer copy's first record is held: a restore of a copy made after the rotation)
            first = new.record("org", org_body("me", "test", prior=old.did))
            assert replica.accept([first]).accepted == [first]
        returned: list[list[Record]] = []
        replica.returned_listeners.append(returned.append)
        back = [*([new.record("org", org_body("me", "test", prior=old.did))] if adopted else []), new.record()]
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="gossip.replica"):
            replica.defer_signing()  # as the node starts (node.daemon._take_back_own_records)
            assert replica.accept(back).accepted == back
            replica.resume_signing()
            expected = [(r.levelno, r.getMessage()) for r in caplog.records]
            caplog.clear()
            ours = replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
            thiefs = Org(key=new.key, seq=ours.seq, prev=ours.id).record()
            assert replica.accept([thiefs]).accepted == [thiefs]
        assert returned == [back, [thiefs]]
        (said,) = [(r.levelno, r.getMessage()) for r in caplog.records]
        assert said[0] == logging.CRITICAL and f"seq {thiefs.seq} to {thiefs.seq}) came from peers" in said[1]
        (level, message), = expected
        if adopted:
            assert level == logging.INFO and "before `vouchnet key adopt`" in message and "seq 1 to 2" in message
            assert replica.own_from_peers == 1
        else:
            assert level == logging.CRITICAL and "compromised" in message and replica.own_from_peers == 3


def test_a_rotation_taken_back_at_start_is_contested_once_as_the_operator_says(tmp_path):
    """`vouchnet key contest` (node.taken_back_rotation): the node's last org record again, at the rotation's seq."""
    me, thief_key = Org(), Org()
    with RecordStore.open(tmp_path) as store:
        replica = Replica(me.key, store, roots=(), max_hops=2, held_limit=100)
        head = replica.issue("org", org_body("me", "test", ["/ip4/10.0.0.9/tcp/4001"]))
        rotation = Org(key=me.key, seq=head.seq, prev=head.id).record("org", org_body("me", "x", next=thief_key.did))
        contest = Replica(me.key, store, roots=(), max_hops=2, held_limit=100).contest(rotation)
        assert contest is not None and (contest.seq, contest.body) == (rotation.seq, head.body)
        assert Replica(me.key, store, roots=(), max_hops=2, held_limit=100).contest(rotation) is None  # once
        assert store.head(me.did).id == contest.id
