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
    names the first `keep` of those, (level, index) in the order found. All are final once the `size`-th leaf is
    added; before, they may lag by _RUN hashes a level."""

    def __init__(self, ledger: Ledger, size: int, *, keep: int = 10) -> None:
        if not 0 <= size <= ledger.size:
            raise ValueError(f"size: must be in [0, {ledger.size}] (the ledger's size), got {size}")
        self._ledger = ledger
        self._size = size
        self._keep = keep
        self._frontier = Frontier()
        self._added = 0
        self._pending: list[list[bytes]] = []  # by level: the hashes computed and not yet compared, the last ones
        self.checked = 0
        self.mismatches = 0
        self.wrong: list[Node] = []

    def add(self, leaf: bytes) -> None:
        """Append the next leaf by its hash; the hashes of the subtrees it completes are compared _RUN at a time, and
        all that are left with the `size`-th leaf. LedgerError if the ledger cannot be read, IndexError past `size`
        leaves."""
        if self._added == self._size:
            raise IndexError(f"leaf: the tree checked has {self._size} leaves, all added")
        self._added += 1
        pending = self._pending
        for level, digest in enumerate(self._frontier.add(leaf)):
            if level == len(pending):
                pending.append([])
            pending[level].append(digest)
            if len(pending[level]) == _RUN:
                self._compare(level)
        if self._added == self._size:
            for level in range(len(pending)):
                self._compare(level)

    def root(self) -> bytes:
        """RFC 9162 MTH of the leaves added, computed from them (not from the stored hashes)."""
        return self._frontier.root()

    def _compare(self, level: int) -> None:
        """Compare the pending hashes of `level`, the last computed there, with those stored for the same nodes."""
        computed = self._pending[level]
        end = self._added >> level
        start = end - len(computed)
        stored = self._ledger.stored_hashes(level, start, end)
        self.checked += len(computed)
        if stored != computed:
            wrong = {start + k: ours for k, (ours, theirs) in enumerate(zip(computed, stored)) if ours != theirs}
            self.mismatches += len(wrong)
            self.wrong += [(level, index) for index in list(wrong)[: self._keep - len(self.wrong)]]
            self._found(level, wrong)
        computed.clear()

    def _found(self, level: int, wrong: dict[int, bytes]) -> None:
        """Called with the nodes of `level` whose stored hash differs (index -> the hash computed): a check only
        counts them; ledger.tree_repair replaces them."""
