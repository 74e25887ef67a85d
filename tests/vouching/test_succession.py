"""Key rotation: two keys are one org only when the old key names the new and the new key's first record names
the old, whatever order the two records arrive in."""

from hypothesis import given
from hypothesis import strategies as st

from vouching import org_body
from vouching.succession import Link, Succession

from ..factories import Org


def _fed(*records) -> Succession:
    succession = Succession()
    for record in records:
        succession.note(record)
    return succession


def test_a_rotation_and_the_new_keys_first_record_link_the_keys_in_either_order():
    old = Org()
    new, rotation, first = old.rotate()
    for order in ((rotation, first), (first, rotation)):
        succession = Succession()
        assert succession.note(order[0]) == []
        assert succession.note(order[1]) == [Link(old.did, new.did)]
        assert succession.identity(new.did) == succession.identity(old.did) == old.did
        assert succession.keys(new.did) == succession.keys(old.did) == (old.did, new.did)
        assert succession.retired(old.did) and not succession.retired(new.did)


def test_neither_key_alone_links_them():
    honest, thief = Org(), Org()
    # A key claiming to replace an org that never named it takes over nothing.
    claim = thief.record("org", org_body("org", "test", prior=honest.did))
    assert _fed(claim).identity(thief.did) == thief.did
    # An org naming a key whose first record does not name it back hands that key nothing.
    stranger = Org()
    stranger.record("org", org_body("org", "test"))
    named = honest.record("org", org_body("org", "test", next=stranger.did))
    succession = _fed(named, claim)
    assert succession.keys(honest.did) == (honest.did,) and succession.identity(stranger.did) == stranger.did
    assert succession.retired(honest.did)  # its chain is closed all the same


def test_rotation_records_alone_lead_from_a_key_to_those_they_name_in_turn_and_to_no_other():
    first_key, stranger = Org(), Org()
    second, r1, _ = first_key.rotate()
    third, r2, _ = second.rotate()
    claim = stranger.record("org", org_body("org", "test", prior=third.did))  # a first record is no rotation
    succession = _fed(r2, r1, claim)
    assert succession.keys(third.did) == (third.did,)  # no first record held: nothing linked
    assert succession.rotates_to(first_key.did, third.did) and succession.rotates_to(second.did, third.did)
    assert not succession.rotates_to(third.did, first_key.did) and not succession.rotates_to(third.did, stranger.did)
    assert not succession.rotates_to(third.did, third.did) and not succession.rotates_to(stranger.did, third.did)


def test_rotation_records_in_a_cycle_lead_round_it_and_end():
    a, b = Org(), Org()
    succession = _fed(a.record("org", org_body("org", "test", next=b.did)),
                      b.record("org", org_body("org", "test", next=a.did)))
    assert succession.rotates_to(a.did, b.did) and succession.rotates_to(b.did, a.did)
    assert not succession.rotates_to(a.did, Org().did)


def test_a_chain_of_rotations_is_one_org_known_by_its_first_key():
    first_key = Org()
    second, r1, f1 = first_key.rotate()
    third, r2, f2 = second.rotate()
    succession = _fed(f2, r1, r2, f1)
    assert succession.keys(third.did) == (first_key.did, second.did, third.did)
    assert succession.identity(third.did) == first_key.did
    assert set(succession.links()) == {Link(first_key.did, second.did), Link(second.did, third.did)}


def test_a_rotation_back_into_an_earlier_key_of_the_org_closes_a_cycle_known_by_its_least_key():
    a, b = sorted((Org(), Org()), key=lambda org: org.did)
    a_first = a.record("org", org_body("org", "test", prior=b.did))
    b_first = b.record("org", org_body("org", "test", prior=a.did))
    a_rotation = a.record("org", org_body("org", "test", next=b.did))
    b_rotation = b.record("org", org_body("org", "test", next=a.did))
    for order in ((a_first, b_first, a_rotation, b_rotation), (a_first, b_first, b_rotation, a_rotation)):
        succession = _fed(*order)
        assert set(succession.links()) == {Link(a.did, b.did), Link(b.did, a.did)}
        assert succession.keys(b.did) == (a.did, b.did) and succession.identity(b.did) == a.did
        assert succession.unlinked(a.did)  # no first key: nothing more of theirs is accepted (gossip.acceptor)


@given(
    successors=st.lists(st.integers(0, 7), min_size=8, max_size=8),
    decoys=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_the_links_do_not_depend_on_the_order_records_arrive_in(successors, decoys, order):
    """Keys 0..7; key i rotates to successors[i] when that is a later key (so there are no cycles), each key's
    first record names at most one prior; decoys are claims no rotation backs. Any arrival order links the same."""
    orgs = [Org() for _ in range(8)]
    priors: dict[int, int] = {}
    for i, j in enumerate(successors):
        if j > i and j not in priors:
            priors[j] = i
    for j, i in decoys:
        if i != j:
            priors.setdefault(j, i)
    records, expected = [], set()
    for j, org in enumerate(orgs):  # each key's first record: naming its prior, if it has one
        prior = priors.get(j)
        records.append(org.record("org", org_body("org", "test", prior=orgs[prior].did if prior is not None else None)))
    for i, j in enumerate(successors):
        if j > i and priors.get(j) == i:
            records.append(orgs[i].record("org", org_body("org", "test", next=orgs[j].did)))
            expected.add(Link(orgs[i].did, orgs[j].did))
    order.shuffle(records)
    assert set(_fed(*records).links()) == expected


def test_a_long_chain_of_keys_linked_last_first_is_one_org_known_by_its_first_key():
    """A hostile org may rotate thousands of times, its links arriving in the worst order for the bookkeeping."""
    orgs = [Org() for _ in range(2000)]
    records = []
    for old, new in zip(orgs, orgs[1:]):
        _, rotation, first = old.rotate(new)
        records.append((rotation, first))
    succession = Succession()
    for rotation, first in reversed(records):
        succession.note(first)
        succession.note(rotation)
    assert succession.identity(orgs[-1].did) == orgs[0].did
    assert succession.keys(orgs[1000].did) == tuple(org.did for org in orgs)


def test_keys_rotating_in_a_cycle_are_one_org_known_by_the_same_key_whatever_the_order():
    """Three keys each rotating to the next in their first records: the link closing the cycle was refused, and
    which one that was, and so which key named the org, depended on the order the records arrived in."""
    keys = sorted((Org() for _ in range(3)), key=lambda org: org.did)
    firsts = [org.record("org", org_body("org", "test", prior=keys[i - 1].did, next=keys[(i + 1) % 3].did))
              for i, org in enumerate(keys)]
    seen = set()
    for order in ((0, 1, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        succession = _fed(*(firsts[i] for i in order))
        seen.add((frozenset(succession.links()), tuple(succession.identity(org.did) for org in keys),
                  succession.keys(keys[1].did), succession.later(keys[1].did), succession.earlier(keys[1].did)))
    assert len(seen) == 1
    links, identities, all_keys, _, _ = seen.pop()
    assert len(links) == 3 and set(identities) == {keys[0].did} and all_keys == tuple(org.did for org in keys)
