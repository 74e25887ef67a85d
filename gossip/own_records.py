"""The records of this node's key that came from peers (gossip.replica.Replica._report_own), kept in the data
directory's `own_records.db` so that the count an alert watches survives a restart, until the operator, having
explained them (a restore from an older copy), acknowledges them.

Each is written before the records ledger takes it (Replica.accept, synchronous = FULL), so a crash cannot store a
record of the key without it; a crash in between leaves a row of a record the ledger lacks, dropped at the next open
(`open`), and a batch the ledger refuses leaves its rows until then: the record came from a peer either way.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ledger.sqlite_format import FileFormat, claim
from ledger.wal import use_wal
from vouching import Record

from .store import StoreError

OWN_RECORDS_FILE = "own_records.db"
FORMAT = FileFormat("a list of the org's records from peers", 0x564E4F52, 1, frozenset({"own_records"}))  # "VNOR"
MAX_LISTED = 1000  # rows `listed` returns at most, oldest first from `after_seq`
log = logging.getLogger(__name__)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS own_records (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    accepted_ms INTEGER NOT NULL,
    peer TEXT,
    acknowledged INTEGER NOT NULL DEFAULT 0
);
"""


class OwnRecordsError(StoreError):
    """own_records.db cannot be opened or written; the message names the file. A StoreError: where a batch the
    store cannot take is caught (gossip, sync: our disk, not the peer), so is one this cannot list."""


@dataclass(frozen=True)
class OwnRecord:
    """A record of the org's key that came from a peer: its seq and id, when the node accepted it (ms since the
    Unix epoch, node time), the PeerID it came from (None when not known: an API submission, or one held for an
    earlier record and stored with the batch that brought that), and whether the operator acknowledged it."""

    seq: int
    id: bytes
    accepted_ms: int
    peer: str | None
    acknowledged: bool

    def to_json(self) -> dict[str, object]:
        return {"id": self.id.hex(), "seq": self.seq, "accepted_ms": self.accepted_ms, "peer": self.peer,
                "acknowledged": self.acknowledged}


class OwnRecords:
    """The list and its count of unacknowledged rows. Use from one thread (the node's trio thread)."""

    def __init__(self, db: sqlite3.Connection, now_ms: Callable[[], int]) -> None:
        self._db = db
        self._now_ms = now_ms
        self._db.executescript(_SCHEMA)
        (self.unacknowledged,) = db.execute("SELECT COUNT(*) FROM own_records WHERE acknowledged = 0").fetchone()

    @classmethod
    def in_memory(cls, now_ms: Callable[[], int]) -> OwnRecords:
        """A list kept nowhere, for a replica without a data directory (tests, tools)."""
        return cls(sqlite3.connect(":memory:", isolation_level=None), now_ms)

    @classmethod
    def open(cls, data_dir: Path, now_ms: Callable[[], int], *, stored: Callable[[bytes], bool]) -> OwnRecords:
        """Open (or create: a data directory from before it starts with none) the list in `data_dir`, dropping rows
        of records the ledger does not hold (`stored` says which it does)."""
        path = data_dir / OWN_RECORDS_FILE
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
            try:
                claim(db, path, FORMAT, OwnRecordsError)
                use_wal(db)
                db.execute("PRAGMA synchronous = FULL")  # a lost row would silence a compromise signal
                db.executescript(_SCHEMA)
                unstored = [(seq,) for seq, rid in db.execute("SELECT seq, id FROM own_records") if not stored(rid)]
                db.executemany("DELETE FROM own_records WHERE seq = ?", unstored)
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as error:
            raise OwnRecordsError(f"{path}: cannot be opened ({error})") from None
        return cls(db, now_ms)

    def close(self) -> None:
        self._db.close()

    def add(self, records: Iterable[Record], peer: str | None) -> None:
        """List records of the org's key, durably on return; one listed already (by seq) is kept as it was."""
        rows = [(r.seq, r.id, self._now_ms(), peer) for r in records]
        try:
            with self._db:
                self._db.execute("BEGIN")
                before = self._db.total_changes
                self._db.executemany("INSERT OR IGNORE INTO own_records (seq, id, accepted_ms, peer) "
                                     "VALUES (?, ?, ?, ?)", rows)
                added = self._db.total_changes - before
        except sqlite3.Error as error:
            raise OwnRecordsError(f"{OWN_RECORDS_FILE}: cannot be written ({error})") from None
        self.unacknowledged += added

    def listed(self, *, after_seq: int = 0, limit: int = MAX_LISTED) -> list[OwnRecord]:
        """Up to `limit` listed records with seq above `after_seq`, in seq order."""
        rows = self._db.execute("SELECT seq, id, accepted_ms, peer, acknowledged FROM own_records WHERE seq > ? "
                                "ORDER BY seq LIMIT ?", (after_seq, limit))
        return [OwnRecord(seq, bytes(rid), at, peer, bool(ack)) for seq, rid, at, peer, ack in rows]

    def acknowledge(self, through_seq: int) -> int:
        """Mark every listed record with seq at most `through_seq` acknowledged; how many were not yet. A later
        record of the key has a higher seq (a key's records are one chain), so one that comes after the operator
        looked is never acknowledged unseen."""
        try:
            with self._db:
                self._db.execute("BEGIN")
                count = self._db.execute("UPDATE own_records SET acknowledged = 1 WHERE seq <= ? AND acknowledged = 0",
                                         (through_seq,)).rowcount
        except sqlite3.Error as error:
            raise OwnRecordsError(f"{OWN_RECORDS_FILE}: cannot be written ({error})") from None
        self.unacknowledged -= count
        log.warning("the operator acknowledged %d record(s) of this node's key from peers, through seq %d; %d remain "
                    "unacknowledged", count, through_seq, self.unacknowledged)
        return count
