"""The append-only Merkle log: RFC 9162 hashing and proofs, SQLite storage, C2SP checkpoints and cosignatures."""
