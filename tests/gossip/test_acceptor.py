"""Acceptance: chains extend in order, gaps are held and released, contradictions become evidence."""

import pytest

from gossip.acceptor import Acceptor
from gossip.store import RecordStore
from vouching import org_body, proves_equivocation
from vouching.succession import Succession

from ..factories import Org


@pytest.fixture
def store(tmp_path):
    with RecordStore.open(tmp_path) as s:
        yield s


def _acceptor(store, *, horizon=lambda iss: True, held_limit=100, succession=None):
    return Acceptor(store, succession or Succession(), in_horizon=horizon, held_limit=held_limit)


def test_a_chain_in_order_is_accepted_and_duplicates_ignored(store):
    alice = Org()
    records = [alice.record() for _ in range(3)]
    acceptor = _acceptor(store)
    assert acceptor.submit(records).accepted == records
    again = acceptor.submit(records)
    assert again.accepted == [] and again.duplicates == 3
    assert store.size == 3


def test_a_gap_is_held_reported_and_released_when_filled(store):
    alice = Org()
    r1, r2, r3, r4 = (alice.record() for _ in range(4))
    acceptor = _acceptor(store)
    first = acceptor.submit([r1, r3, r4])
    assert first.accepted == [r1]
    assert first.held == 2 and first.gaps == {alice.did: (2, 3)}
    second = acceptor.submit([r2])
    assert second.accepted == [r2, r3, r4] and second.gaps == {}
    assert store.heads() == {alice.did: 4}


def test_a_gap_filled_within_the_batch_is_not_reported(store):
    alice = Org()
    r1, r2 = alice.record(), alice.record()
    outcome = _acceptor(store).submit([r2, r1])
    assert outcome.accepted == [r1, r2] and outcome.gaps == {} and outcome.held == 0


def test_a_long_held_chain_is_released_without_recursion(store):
    alice = Org()
    records = [alice.record() for _ in range(3000)]
    acceptor = _acceptor(store, held_limit=5000)
    acceptor.submit(records[:0:-1])  # everything but the first, newest first
    assert len(acceptor.submit(records[:1]).accepted) == 3000


def test_two_records_at_one_position_are_equivocation_evidence(store):
    alice = Org()
    r1 = alice.record()
    acceptor = _acceptor(store)
    acceptor.submit([r1])
    other = alice.fork(1, None)
    outcome = acceptor.submit([other])
    assert outcome.accepted == []
    [(ours, theirs)] = outcome.equivocations
    assert (ours, theirs) == (r1.raw, other) and proves_equivocation(ours, theirs.raw)


def test_two_held_records_at_one_position_are_equivocation_evidence(store):
    alice = Org()
    r1, r2 = alice.record(), alice.record()
    rival = alice.fork(2, r1.id)
    acceptor = _acceptor(store)
    outcome = acceptor.submit([r2, rival])
    assert outcome.equivocations == [(r2.raw, rival)]


def test_a_wrong_prev_is_rejected_with_a_reason(store):
    alice = Org()
    r1 = alice.record()
    acceptor = _acceptor(store)
    acceptor.submit([r1])
    broken = alice.sign("org", {"name": "x", "network": "test", "addrs": []}, seq=2, prev=b"\x00" * 32)
    [(record, reason)] = acceptor.submit([broken]).rejected
    assert record is broken and reason.startswith("prev: does not match")


def test_a_revocation_must_name_an_earlier_vouch_of_its_issuer(store):
    alice, bob = Org(), Org()
    bobs_vouch = bob.vouch(alice.did)
    acceptor = _acceptor(store)
    acceptor.submit([bobs_vouch])
    bad = alice.revoke(bobs_vouch)
    [(_, reason)] = acceptor.submit([bad]).rejected
    assert reason.startswith("body.record: names no earlier vouch")
    own = Org()
    v = own.vouch(alice.did)
    assert acceptor.submit([v, own.revoke(v)]).accepted[-1].kind == "revoke"


def test_records_outside_the_horizon_are_not_stored(store):
    insider, outsider = Org(), Org()
    acceptor = _acceptor(store, horizon=lambda iss: iss == insider.did)
    outcome = acceptor.submit([insider.record(), outsider.record()])
    assert len(outcome.accepted) == 1 and outcome.outside_horizon == 1


def test_the_held_buffer_is_bounded(store):
    alice = Org()
    records = [alice.record() for _ in range(10)]
    acceptor = _acceptor(store, held_limit=3)
    outcome = acceptor.submit(records[1:])
    assert outcome.dropped == 6 and acceptor.held_count == 3
    assert outcome.gaps == {alice.did: (1, 9)}


def test_one_issuer_flooding_records_after_a_gap_never_evicts_another_issuer_s_held_record(store):
    honest, flooder, latecomer = Org(), Org(), Org()
    waiting = [honest.record() for _ in range(3)]
    flood = [flooder.record() for _ in range(60)]
    acceptor = _acceptor(store, held_limit=10)
    assert acceptor.submit(waiting[2:]).held == 1  # seq 3, waiting for 1 and 2
    outcome = acceptor.submit(flood[1:])  # everything after its seq 1
    assert (outcome.held, outcome.dropped, acceptor.held_count) == (9, 50, 10)
    late = [latecomer.record() for _ in range(2)]
    assert acceptor.submit(late[1:]).held == 1  # the buffer is full, but the flooder holds the most: it gives way
    assert acceptor.held_count == 10
    assert acceptor.submit(waiting[:2]).accepted == waiting
    assert acceptor.submit(late[:1]).accepted == late
    # The flooder kept its nearest records, the first its gap releases.
    assert acceptor.submit(flood[:1]).accepted == flood[:9]
    assert acceptor.held_count == 0


def test_issuers_share_a_full_held_buffer_evenly(store):
    orgs = [Org() for _ in range(3)]
    chains = [[org.record() for _ in range(12)] for org in orgs]
    acceptor = _acceptor(store, held_limit=12)
    for chain in chains:  # one after the other, each flooding past the buffer
        acceptor.submit(chain[1:])
    assert acceptor.held_count == 12
    for chain in chains:
        assert len(acceptor.submit(chain[:1]).accepted) == 1 + 4  # seq 1 and the 4 held after it


def test_only_records_at_or_below_their_issuers_head_are_looked_up_as_possible_duplicates(store, monkeypatch):
    alice = Org()
    records = [alice.record() for _ in range(4)]
    acceptor = _acceptor(store)
    acceptor.submit(records[:2])
    looked_up = []
    monkeypatch.setattr(store, "has",
                        lambda record_id: looked_up.append(record_id) or RecordStore.has(store, record_id))
    outcome = acceptor.submit(records)  # two we hold, two new: catch-up sync offers thousands of new ones
    assert outcome.duplicates == 2 and outcome.accepted == records[2:]
    assert looked_up == [records[0].id, records[1].id]


# --------------------------------------------------------------------------------------------- key rotation


def test_a_key_signs_nothing_after_its_rotation(store):
    old = Org()
    earlier = old.record()
    _, rotation, _ = old.rotate()
    after = old.record()
    outcome = _acceptor(store).submit([earlier, rotation, after])
    assert outcome.accepted == [earlier, rotation]
    assert outcome.rejected == [
        (after, f"iss: this key was retired at seq {rotation.seq}, where it named its successor")]


def test_a_record_held_past_the_rotation_is_rejected_when_released(store):
    old = Org()
    first = old.record()
    _, rotation, _ = old.rotate()
    after = old.record()
    acceptor = _acceptor(store)
    assert acceptor.submit([after, rotation]).held == 2
    outcome = acceptor.submit([first])
    assert outcome.accepted == [first, rotation] and [r for r, _ in outcome.rejected] == [after]
    assert acceptor.held_count == 0


def test_a_second_record_at_the_rotations_seq_is_still_equivocation(store):
    old = Org()
    _, rotation, _ = old.rotate()
    acceptor = _acceptor(store)
    acceptor.submit([rotation])
    outcome = acceptor.submit([old.fork(rotation.seq, None)])
    [(ours, theirs)] = outcome.equivocations
    assert proves_equivocation(ours, theirs.raw)


def test_a_new_key_may_revoke_the_vouches_of_the_key_it_names_as_prior(store):
    old = Org()
    vouch = old.vouch(Org().did)
    new, rotation, first = old.rotate()
    revocation = new.revoke(vouch)
    # The rotation and the claim, staged in the same batch, are enough to accept the revocation.
    assert (_acceptor(store).submit([vouch, rotation, first, revocation]).accepted
            == [vouch, rotation, first, revocation])


def test_a_new_keys_records_wait_for_the_rotation_that_names_it(store):
    old = Org()
    new, rotation, first = old.rotate()
    later = new.record()
    acceptor = _acceptor(store)
    outcome = acceptor.submit([first, later])
    assert outcome.accepted == [first] and outcome.unlinked == 1
    assert acceptor.submit([rotation, later]).accepted == [rotation, later]


def test_a_key_claiming_a_prior_that_never_named_it_gets_nothing_past_its_first_record(store):
    honest, claimer = Org(), Org()
    honest.record()
    claim = claimer.record("org", org_body("org", "test", prior=honest.did))
    outcome = _acceptor(store).submit([claim, claimer.record()])
    assert outcome.accepted == [claim] and outcome.unlinked == 1


def test_a_key_may_not_revoke_the_vouches_of_a_key_it_does_not_name(store):
    honest, stranger = Org(), Org()
    vouch = honest.vouch(Org().did)
    revocation = stranger.revoke(vouch)
    outcome = _acceptor(store).submit([vouch, revocation])
    assert outcome.rejected == [(revocation, "body.record: names no earlier vouch of this issuer or a key it replaced")]


def test_a_key_linked_to_a_prior_whose_own_claim_is_pending_gets_nothing_past_its_first_record(store):
    """a's first record claims z and rotates to b at once; b names a back. b's records (a revocation of z's vouch
    among them) wait until z names a: counted earlier, they would count for an org whose first key is a, and then,
    once z named a, for z's: what they meant would depend on the order the rotations arrived in."""
    z, a, b = Org(), Org(), Org()
    vouch = z.vouch(Org().did)
    a_first = a.record("org", org_body("org", "test", prior=z.did, next=b.did))
    b_first = b.record("org", org_body("org", "test", prior=a.did))
    revocation = b.revoke(vouch)
    succession = Succession()  # fed what is accepted, as the replica does
    acceptor = _acceptor(store, succession=succession)
    outcome = acceptor.submit([vouch, a_first, b_first, revocation])
    assert outcome.accepted == [vouch, a_first, b_first] and outcome.unlinked == 1 and not outcome.rejected
    for record in outcome.accepted:
        succession.note(record)
    rotation = z.record("org", org_body("org", "test", next=a.did))
    assert acceptor.submit([rotation, revocation]).accepted == [rotation, revocation]


def test_a_cycle_of_rotations_has_no_first_key_and_its_keys_get_nothing_past_their_first_records(store):
    a, b, c = Org(), Org(), Org()
    firsts = [a.record("org", org_body("org", "test", prior=c.did, next=b.did)),
              b.record("org", org_body("org", "test", prior=a.did, next=c.did)),
              c.record("org", org_body("org", "test", prior=b.did, next=a.did))]
    outcome = _acceptor(store).submit([*firsts, a.record()])
    assert outcome.accepted == firsts and outcome.unlinked == 1
