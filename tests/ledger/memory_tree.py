"""An in-memory tree over ledger.merkle's stored-hash interface: the reference the proof tests run against."""

from __future__ import annotations

from collections.abc import Sequence

from ledger import merkle


class MemoryTree:
    """Stores subtree hashes in a dict, exactly as a disk-backed ledger stores them."""

    def __init__(self, entries: Sequence[bytes] = ()) -> None:
        self.hashes: dict[merkle.Node, bytes] = {}
        self.size = 0
        self.append(entries)

    def read_hashes(self, nodes: Sequence[merkle.Node]) -> list[bytes]:
        return [self.hashes[n] for n in nodes]

    def append(self, entries: Sequence[bytes]) -> None:
        leaves = [merkle.leaf_hash(e) for e in entries]
        self.hashes.update(merkle.hashes_to_store(self.size, leaves, self))
        self.size += len(leaves)
