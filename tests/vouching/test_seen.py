"""SeenIds holds record ids as a set does, in about 16 bytes a slot, and doubles a few slots an add (vouching.seen)."""

from hypothesis import given
from hypothesis import strategies as st

import vouching.seen
from vouching.seen import SeenIds


@given(st.lists(st.binary(max_size=40), max_size=300), st.integers(0, 10))
def test_seen_ids_answer_as_a_set_of_them_does_through_every_growth(ids, small):
    # Tables of 2^small slots grow every few ids, and clusters run past their last slot often; ids added again are
    # looked for in both tables while one doubles.
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


def test_ids_filling_the_table_as_a_million_do_take_at_most_48_bytes_each():
    """10^6 ids fill 2^21 slots as 10^6 / 16 ids fill 2^17, through every doubling before (the tables' sizes are
    powers of two), so the smaller table stands for the larger at a sixteenth of the adds (it took 3-12 s)."""
    ids = 10**6 // 16
    seen = SeenIds()
    for n in range(ids):
        seen.add(n.to_bytes(32, "big"))
    old = getattr(seen, "_old", None)  # (while it doubles)
    old_slots = 0 if old is None else len(old[0])
    assert len(seen) == ids and 16 * (len(seen._high) + old_slots) <= 48 * ids


def test_no_add_moves_more_than_a_few_ids_as_the_table_doubles(monkeypatch):
    """The table doubled in one add, rehashing every id it held: at 10^6 ids that held the trio loop up for
    0.2-0.3 s (benchmarks/startup.py), at a start's replay and on a running node alike. An add now moves at most
    MOVES_PER_ADD slots of the old table, through every doubling, and answers as a set meanwhile."""
    moved = []
    move = SeenIds._move
    monkeypatch.setattr(SeenIds, "_move", lambda self, count: (moved.append(count), move(self, count))[1])
    seen, doublings = SeenIds(), 0
    ids = [n.to_bytes(32, "big") for n in range(20_000)]
    for n, record_id in enumerate(ids):
        slots = len(seen._high)
        assert seen.add(record_id) and not seen.add(ids[n // 2])
        doublings += len(seen._high) > slots
    assert doublings >= 4 and set(moved) == {vouching.seen.MOVES_PER_ADD}
