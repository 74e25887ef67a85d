"""own_records.db as format version 1 wrote it, for tests of the upgrade to version 2 (gossip.own_records._upgrade):
the writing half of gossip/own_records.py at fe455f4, the last commit before version 2, its SQL unchanged. Version 1
keyed rows by seq alone, and its node listed a batch's records of its key with `add(records, peer)` before the store
took them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

from gossip.own_records import OWN_RECORDS_FILE, OwnRecordsError
from ledger.sqlite_format import FileFormat, claim
from ledger.wal import use_wal
from vouching import Record

FORMAT = FileFormat("a list of the org's records from peers", 0x564E4F52, 1, frozenset({"own_records"}))  # "VNOR"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS own_records (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    accepted_ms INTEGER NOT NULL,
    peer TEXT,
    acknowledged INTEGER NOT NULL DEFAULT 0
);
"""


class OwnRecordsV1:
    """Version 1's list, opened as its node opened it (marked, WAL, synchronous = FULL)."""

    def __init__(self, data_dir: Path, now_ms: Callable[[], int]) -> None:
        path = data_dir / OWN_RECORDS_FILE
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        claim(self.db, path, FORMAT, OwnRecordsError)
        use_wal(self.db)
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.executescript(_SCHEMA)
        self._now_ms = now_ms

    def add(self, records: Iterable[Record], peer: str | None) -> None:
        rows = [(r.seq, r.id, self._now_ms(), peer) for r in records]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO own_records (seq, id, accepted_ms, peer) VALUES (?, ?, ?, ?)",
                                rows)

    def acknowledge(self, through_seq: int) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE own_records SET acknowledged = 1 WHERE seq <= ? AND acknowledged = 0",
                            (through_seq,))
