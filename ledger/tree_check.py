"""The subtree hashes a ledger stores (ledger.tiles), checked against the RFC 9162 tree of its leaves (DESIGN.md §4).

A ledger computes its roots and proofs from the stored hashes and never re-reads the entries below them, so a stored
hash changed on disk (a flipped bit, a bad restore, a bug) leaves the entries, the current root and the checkpoints
intact while every proof through that hash fails for the clients. `StoredHashCheck` grows the tree from the leaves,
given in order, and compares the hash of every subtree they complete with the one stored, which it reads a level at
a time, _RUN hashes at once.
"""

from __future__ import annotations

from .merkle import Frontier, Node
from .storage import Ledger

_RUN = 4096  # stored hashes read at once from one level: 256 tiles, 128 KiB


class StoredHashCheck:
    """A Frontier of the first `size` leaves of `ledger`, which also compares every subtree hash it computes with the
    hash `ledger` stores for that node: `checked` counts them, `mismatches` counts those that differ and `wrong`
    names the first `keep` of those, (level, index) in the order found."""

    def __init__(self, ledger: Ledger, size: int, *, keep: int = 10) -> None:
        if not 0 <= size <= ledger.size:
            raise ValueError(f"size: must be in [0, {ledger.size}] (the ledger's size), got {size}")
        self._ledger = ledger
        self._size = size
        self._keep = keep
        self._frontier = Frontier()
        self._added = 0
        self._runs: list[tuple[int, list[bytes]]] = []  # by level: the index of the first hash read, the hashes
        self.checked = 0
        self.mismatches = 0
        self.wrong: list[Node] = []

    def add(self, leaf: bytes) -> None:
        """Append the next leaf by its hash, and check the hashes of the subtrees it completes; LedgerError if the
        ledger cannot be read, IndexError past `size` leaves."""
        if self._added == self._size:
            raise IndexError(f"leaf: the tree checked has {self._size} leaves, all added")
        for level, digest in enumerate(self._frontier.add(leaf)):
            index = self._added >> level
            if digest != self._stored(level, index):
                self.mismatches += 1
                if len(self.wrong) < self._keep:
                    self.wrong.append((level, index))
            self.checked += 1
        self._added += 1

    def root(self) -> bytes:
        """RFC 9162 MTH of the leaves added, computed from them (not from the stored hashes)."""
        return self._frontier.root()

    def _stored(self, level: int, index: int) -> bytes:
        if level == len(self._runs):
            self._runs.append((0, []))
        first, hashes = self._runs[level]
        if not first <= index < first + len(hashes):
            first, hashes = index, self._ledger.stored_hashes(level, index, min(index + _RUN, self._size >> level))
            self._runs[level] = (first, hashes)
        return hashes[index - first]
