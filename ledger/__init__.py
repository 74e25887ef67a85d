"""The append-only Merkle log: RFC 9162 hashing and proofs, SQLite storage, C2SP checkpoints and cosignatures.

Knows bytes, not record kinds (DESIGN.md §4).

Each name below is imported from its module when it is first asked for (PEP 562), so that importing one module of
the package (`ledger.note`, whose constants node.config reads: every `vouchnet` command does) does not import them
all.
"""

from __future__ import annotations

from vouching.lazy import lazy_names

# The package's names, by the module that holds each.
__all__, __getattr__ = lazy_names(__name__, {
    ".checkpoint": ("MAX_TREE_SIZE", "Checkpoint", "open_checkpoint", "peek_origin"),
    ".cosignature": ("COSIGNATURE_V1", "CosignatureSigner", "CosignatureVerifier", "cosignature_message",
                     "cosignature_timestamp"),
    ".errors": ("EntryPruned", "LedgerError", "StoredHashError"),
    ".merkle": ("EMPTY_ROOT", "Frontier", "HashReader", "ProofError", "leaf_hash", "node_hash", "tree_hash",
                "verify_consistency", "verify_inclusion", "verify_inclusion_hash"),
    ".names": ("cosigner_name", "log_origin", "parse_log_origin"),
    ".note": ("MAX_COSIGNATURES", "MAX_NOTE_SIZE", "MAX_SIGNATURES", "SIG_ED25519", "Ed25519Signer",
              "Ed25519Verifier", "NoteError", "NoteSigner", "NoteVerifier", "Signature", "encode_vkey", "format_note",
              "key_id", "note_signature", "open_note", "parse_vkey", "sign_note"),
    ".storage": ("Ledger",),
    ".tree_check": ("StoredHashCheck",),
    ".tree_repair": ("EntriesDamaged", "repair_stored_hashes"),
    ".witness": ("AddCheckpointRequest", "BadCheckpoint", "BadProof", "BadRequest", "Conflict", "Equivocation",
                 "UnknownOrigin", "Witness", "WitnessError", "WitnessStoreError"),
})
