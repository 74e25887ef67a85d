"""SeenIds holds record ids as a set does, in about 16 bytes a slot (vouching.seen)."""

from hypothesis import given
from hypothesis import strategies as st

import vouching.seen
from vouching.seen import SeenIds


@given(st.lists(st.binary(max_size=40), max_size=300), st.integers(0, 10))
def test_seen_ids_answer_as_a_set_of_them_does_through_every_growth(ids, small):
    # Tables of 2^small slots grow every few ids, and clusters run past their last slot often.
    original, vouching.seen.MIN_SLOTS = vouching.seen.MIN_SLOTS, 1 << small
    try:
        seen, reference = SeenIds(), set()
        for record_id in ids + ids[::3]:
            assert seen.add(record_id) == (record_id not in reference)
            reference.add(record_id)
        assert len(seen) == len(reference)
        assert not any(seen.add(record_id) for record_id in reference)
    finally:
        vouching.seen.MIN_SLOTS = original


def test_a_million_ids_take_at_most_48_bytes_each():
    seen = SeenIds()
    for n in range(10**6):
        seen.add(n.to_bytes(32, "big"))
    assert len(seen) == 10**6 and 16 * len(seen._high) <= 48 * 10**6
