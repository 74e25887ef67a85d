"""`vouchnet demo`: sign a record, append it to a ledger, and prove inclusion and consistency — in a temp dir."""

from __future__ import annotations

import tempfile
from pathlib import Path

from nacl.signing import SigningKey

from ledger import (
    Checkpoint,
    Ed25519Signer,
    Ed25519Verifier,
    Ledger,
    log_origin,
    open_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from vouching import did_key, sign_record, verify_record, vouch_body
from vouching.counts import counted


def run_demo(out=print) -> None:
    """Walk through one record's life in a throwaway ledger, printing each step."""
    org, agent = SigningKey.generate(), SigningKey.generate()
    org_did, agent_did = did_key(bytes(org.verify_key)), did_key(bytes(agent.verify_key))
    out(f"org   {org_did}")
    out(f"agent {agent_did}")
    raw = sign_record(org, "vouch", vouch_body(agent_did, 0.9, "operator"), seq=1, prev=None)
    record = verify_record(raw)
    out(f"signed a vouch: {len(raw)} bytes of COSE_Sign1, id {record.id.hex()}")
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "demo.ledger") as ledger:
        ledger.append([b"earlier entry %d" % i for i in range(5)])
        old_size, old_root = ledger.size, ledger.root()
        index = ledger.append([raw])
        ledger.append([b"later entry %d" % i for i in range(3)])
        origin = log_origin("demo", org_did, "records")
        note = Checkpoint(origin, ledger.size, ledger.root()).sign([Ed25519Signer(origin, org)])
        checkpoint, _ = open_checkpoint(note, [Ed25519Verifier(origin, bytes(org.verify_key))])
        out(f"appended at index {index}; signed checkpoint:\n" + note.decode().rstrip())
        verify_inclusion(raw, index, checkpoint.size, ledger.inclusion_proof(index, checkpoint.size), checkpoint.root)
        out(f"inclusion proof ({counted(len(ledger.inclusion_proof(index)), 'hash', 'hashes')}) verifies against the "
            "checkpoint")
        proof = ledger.consistency_proof(old_size, checkpoint.size)
        verify_consistency(old_size, checkpoint.size, old_root, checkpoint.root, proof)
        out(f"consistency proof from size {old_size} to {checkpoint.size} ({counted(len(proof), 'hash', 'hashes')}) "
            "verifies")
