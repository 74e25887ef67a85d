"""The exceptions of ledger storage (ledger.storage and the stores it is built from)."""


class LedgerError(Exception):
    """The file is not a ledger or is corrupt, or its storage failed; the message names the file and the rule."""


class StoredHashError(LedgerError):
    """A stored subtree hash is not the hash of the entries below it: the entries may be sound (ledger.tree_repair)."""


class EntryPruned(LookupError):
    """The entry was pruned to its hash: the tree and every proof still hold, its bytes are gone."""
