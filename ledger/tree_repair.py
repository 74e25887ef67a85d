"""Rebuilding the subtree hashes a ledger stores from its entries (DESIGN.md §4), checked against a signed root.

ledger.tree_check finds the stored hashes that differ from the tree of the entries; `repair_stored_hashes` replaces
them, all in one transaction (Ledger.rewriting): it grows the tree from the entries a page at a time, replaces the
wrong hashes of each run it compares (tree_check._RUN a level) and commits only if the first `size` entries hash to
the `root` the log signed for them. If they do not, an entry is damaged, not a stored hash, and nothing changes; a
crash midway changes nothing either. Memory: a page of entries, the O(log n) frontier and a run of hashes a level.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import LedgerError
from .merkle import EMPTY_ROOT, leaf_hash
from .storage import Ledger
from .tree_check import StoredHashCheck

PAGE = 4096  # entries read at once


class EntriesDamaged(LedgerError):
    """The entries do not hash to the root signed for them: an entry is damaged, and nothing was repaired."""


class _Repair(StoredHashCheck):
    """A StoredHashCheck that replaces each wrong hash it finds with the one computed (inside Ledger.rewriting)."""

    def _found(self, level: int, wrong: dict[int, bytes]) -> None:
        self._ledger.replace_stored_hashes(level, wrong)


def repair_stored_hashes(
    ledger: Ledger,
    size: int,
    root: bytes,
    *,
    check_entry: Callable[[int, bytes], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep: int = 10,
) -> StoredHashCheck:
    """Replace every hash `ledger` stores that is not the hash of the entries below it, in one transaction committed
    only if the first `size` entries hash to `root` (the log's latest signed checkpoint); what was compared and
    replaced: `checked`, `mismatches` and the first `keep` of them, `wrong` (level, index).

    Entries past `size`, which no signed root covers, are each given to `check_entry(index, entry)`, which raises to
    refuse them (nothing changes). `progress(done, total)` follows each page of entries. Raises EntriesDamaged,
    naming the entries whose stored hash differs from theirs (the likely damaged ones); LedgerError if entries were
    pruned (their hashes cannot be rebuilt) or storage fails; ValueError if `size` is past the ledger's.
    """
    total = ledger.size
    if not 0 <= size <= total:
        raise ValueError(f"size: must be in [0, {total}] (the ledger's size), got {size}")
    if ledger.pruned:
        raise LedgerError(f"entries before {ledger.pruned} were pruned to their hashes, which cannot be rebuilt")
    tree = _Repair(ledger, total, keep=keep)
    signed = size == 0 and root == EMPTY_ROOT
    with ledger.rewriting():
        for start in range(0, total, PAGE):
            for index, entry in enumerate(ledger.entries(start, min(start + PAGE, total)), start):
                if index >= size and check_entry is not None:
                    check_entry(index, entry)
                tree.add(leaf_hash(entry))
                if index + 1 == size:
                    signed = tree.root() == root
            if progress is not None:
                progress(min(start + PAGE, total), total)
        if not signed:  # raised once every hash was compared: the wrong leaf hashes name the suspects
            suspects = [index for level, index in tree.wrong if level == 0 and index < size]
            named = f" (stored hashes differ from those of entries {', '.join(map(str, suspects))})" if suspects else ""
            raise EntriesDamaged(f"the first {size} entries do not hash to the signed root: an entry is damaged{named}")
    return tree
