"""The append-only Merkle log: RFC 9162 hashing and proofs, SQLite storage, C2SP checkpoints and cosignatures.

Knows bytes, not record kinds (DESIGN.md §4).
"""

from .merkle import (
    EMPTY_ROOT,
    HashReader,
    ProofError,
    leaf_hash,
    node_hash,
    tree_hash,
    verify_consistency,
    verify_inclusion,
    verify_inclusion_hash,
)
from .errors import EntryPruned, LedgerError
from .storage import Ledger

__all__ = [
    "EMPTY_ROOT",
    "EntryPruned",
    "HashReader",
    "Ledger",
    "LedgerError",
    "ProofError",
    "leaf_hash",
    "node_hash",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
    "verify_inclusion_hash",
]
