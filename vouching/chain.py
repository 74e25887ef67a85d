"""The per-issuer chain (DESIGN §3): record seq n+1 names the id of the same issuer's record seq n in prev."""

from vouching.records import Record
from vouching.schema import InvalidRecord


def check_follows(record: Record, previous: Record | None) -> None:
    """Check that record comes right after previous in its issuer's chain (None: that it is the first)."""
    if previous is None:
        if record.seq != 1:
            raise InvalidRecord(f"seq: must be 1 for an issuer's first record, not {record.seq}")
        return
    if record.iss != previous.iss:
        raise InvalidRecord("iss: must be the issuer of the previous record")
    if record.seq != previous.seq + 1:
        raise InvalidRecord(f"seq: must be {previous.seq + 1}, the seq after the previous record's, not {record.seq}")
    if record.prev != previous.id:
        raise InvalidRecord(f"prev: must be the id of the issuer's record seq {previous.seq}")
