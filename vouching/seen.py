"""The record ids of the digests the trust engine counted (DESIGN.md §6: a digest counts once, however often it is
fed), held compactly: the engine keeps one per digest for as long as it runs, 8.8 * 10^7 a year in a network of 10
orgs with 10^3 agents active every hour.

Each id is kept as a 127-bit fingerprint, two 64-bit hashes of it (Python's hash of bytes: SipHash under the key
the process drew at its start), in an open-addressing table of two 64-bit columns, at most 2/3 full: 24 to 48 bytes
an id, where a set of the ids held about 110. Two ids are taken for one only if their fingerprints collide, about a
2^-127 chance per pair (a record id is a SHA-256, which no peer chooses); the key spreads ids over the table evenly
whatever they are. SeenIds.add takes about 2 us (a set's add 0.5; a keyed BLAKE2b fingerprint alone took 4).

The table doubles incrementally (as Redis's dict rehashes): each add moves MOVES_PER_ADD slots of the old table into
the new one, and lookups meanwhile look in both. Rehashing every id in one add held the trio loop up for 0.2-0.3 s
at 10^6 ids (benchmarks/startup.py), and would for seconds at 10^8. The new table's columns are numpy zeros, which
the OS gives lazily, so no add does more than a few ms of the doubling's work; adds cost about 0.2 us more on
average than with the one-step rehash in numpy (10^6 adds: 1.25 s of CPU against 1.05).
"""

from __future__ import annotations

import numpy as np

MIN_SLOTS = 1 << 10
BITS64 = (1 << 64) - 1
# Old slots an add moves (about 50 us): fewer make a doubling last longer, and every add meanwhile looks in the old
# table too. The old table (S slots) is empty after S/256 adds, long before the new one (2S) grows in turn, which
# takes at least 2S/3 - 1 adds: it holds at most 2S/3 + 1 ids when it doubles.
MOVES_PER_ADD = 256


class SeenIds:
    """A set of byte strings that only grows, by fingerprint (see the module docstring)."""

    def __init__(self) -> None:
        # 4 slots or more: a table of 2/3 + 1 ids is never full, so that a probe of the old one ends.
        self._high, self._low = _columns(max(MIN_SLOTS, 4))  # high 0: an empty slot (a fingerprint's is odd)
        self._used = 0
        self._old: tuple[memoryview, memoryview] | None = None  # while the table doubles: the one it replaces
        self._moved = 0  # old slots moved so far

    def __len__(self) -> int:
        return self._used

    def add(self, record_id: bytes) -> bool:
        """Hold `record_id`; False if it was held already."""
        high = hash(record_id) & BITS64 | 1
        low = hash(record_id + b"\x01") & BITS64
        if self._old is not None:
            if _holds(*self._old, high, low):
                return False
            self._move(MOVES_PER_ADD)
        highs = self._high
        mask = len(highs) - 1
        slot = low & mask
        held = highs[slot]
        while held:
            if held == high and self._low[slot] == low:
                return False
            slot = (slot + 1) & mask
            held = highs[slot]
        highs[slot] = high
        self._low[slot] = low
        self._used += 1
        if 3 * self._used > 2 * len(highs):
            self._grow()
        return True

    def _grow(self) -> None:
        """Twice the slots; the old table's ids are moved a few an add from here on (`_move`)."""
        if self._old is not None:  # (never, by MOVES_PER_ADD: kept correct whatever it is)
            self._move(len(self._old[0]))
        self._old, self._moved = (self._high, self._low), 0
        self._high, self._low = _columns(2 * len(self._high))

    def _move(self, count: int) -> None:
        """Move the next `count` slots of the old table into the new one (whose ids are none of them: `add` looks
        in the old table first); drop the old table once all are."""
        assert self._old is not None
        old_high, old_low = self._old
        highs, lows = self._high, self._low
        mask = len(highs) - 1
        stop = min(self._moved + count, len(old_high))
        for old_slot in range(self._moved, stop):
            high = old_high[old_slot]
            if high:
                low = old_low[old_slot]
                slot = low & mask
                while highs[slot]:
                    slot = (slot + 1) & mask
                highs[slot] = high
                lows[slot] = low
        self._moved = stop
        if stop == len(old_high):
            self._old = None


def _columns(slots: int) -> tuple[memoryview, memoryview]:
    """Two zeroed 64-bit columns of `slots` items, as memoryviews: Python reads and writes their items as fast as an
    array.array's, and numpy's zeros are the OS's lazily zeroed pages, not a copy of a zeroed buffer."""
    return _zeros(slots), _zeros(slots)


def _zeros(slots: int) -> memoryview:
    return memoryview(np.zeros(slots, dtype=np.uint64)).cast("B").cast("Q")


def _holds(highs: memoryview, lows: memoryview, high: int, low: int) -> bool:
    """Whether the table holds the fingerprint (high, low): linear probing from its first slot, `low`'s bits."""
    mask = len(highs) - 1
    slot = low & mask
    held = highs[slot]
    while held:
        if held == high and lows[slot] == low:
            return True
        slot = (slot + 1) & mask
        held = highs[slot]
    return False

