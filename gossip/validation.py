"""Validation of a record from the network: `verify_record` plus what `vouching` cannot check on its own.

`vouching` cannot read C2SP signed notes, so checkpoint equivocation evidence (DESIGN.md §4: two checkpoints of
one origin that cannot be consistent) is verified here with `ledger`'s note and checkpoint code.
"""

from __future__ import annotations

from ledger import Checkpoint, Ed25519Verifier, NoteError, open_checkpoint, parse_log_origin, peek_origin
from vouching import EquivocationBody, InvalidRecord, Record, public_key_from_did, verify_record


def check_record(data: bytes) -> Record:
    """Verify a record from anyone, including checkpoint evidence; raises InvalidRecord ("field: rule") only."""
    record = verify_record(data)
    if isinstance(record.body, EquivocationBody) and record.body.type == "checkpoint":
        check_checkpoint_evidence(record.body)
    return record


def _open(note: bytes, field: str, offender: str) -> Checkpoint:
    try:
        origin = peek_origin(note)
        _, org, _ = parse_log_origin(origin)
        if org != offender:
            raise InvalidRecord(f"{field}: a checkpoint of {org}, not of the offender")
        checkpoint, _ = open_checkpoint(note, [Ed25519Verifier(origin, public_key_from_did(offender))])
    except NoteError as e:
        raise InvalidRecord(f"{field}: not a checkpoint signed by the offender: {e}") from None
    return checkpoint


def check_checkpoint_evidence(body: EquivocationBody) -> None:
    """Two checkpoints signed by the offender for one origin and one size, with different roots."""
    a, b = _open(body.a, "body.a", body.offender), _open(body.b, "body.b", body.offender)
    if a.origin != b.origin:
        raise InvalidRecord("body.b: must be a checkpoint of the same log as body.a")
    if a.size != b.size:
        raise InvalidRecord("body.b: must be a checkpoint of the same size as body.a")
    if a.root == b.root:
        raise InvalidRecord("body.b: must have a different root from body.a")
