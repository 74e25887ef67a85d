"""own_records.db as format version 2 wrote it, for tests of the upgrade to version 3 (gossip.own_records._upgrade):
the writing half of gossip/own_records.py at 833fe88, the last commit before version 3, its SQL unchanged. Version 2
had no rows of conflicting records: a record of the org's key conflicting with one the node held went unlisted."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

from gossip.own_records import OWN_RECORDS_FILE, OwnRecordsError
from ledger.sqlite_format import FileFormat, claim
from ledger.wal import use_wal
from vouching import Record

FORMAT = FileFormat("a list of the org's records from peers", 0x564E4F52, 2, frozenset({"own_records"}))  # "VNOR"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS own_records (
    number INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so an acknowledgement names only rows listed by then
    id BLOB NOT NULL UNIQUE,
    iss TEXT NOT NULL,
    seq INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL,
    peer TEXT,
    acknowledged INTEGER NOT NULL DEFAULT 0
);
"""


class OwnRecordsV2:
    """Version 2's list, opened as its node opened it (marked, WAL, synchronous = FULL)."""

    def __init__(self, data_dir: Path, now_ms: Callable[[], int]) -> None:
        path = data_dir / OWN_RECORDS_FILE
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        claim(self.db, path, FORMAT, OwnRecordsError)
        use_wal(self.db)
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.executescript(_SCHEMA)
        self._now_ms = now_ms

    def add(self, records: Iterable[tuple[Record, str | None]]) -> None:
        rows = [(r.id, r.iss, r.seq, self._now_ms(), peer) for r, peer in records]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO own_records (id, iss, seq, accepted_ms, peer) "
                                "VALUES (?, ?, ?, ?, ?)", rows)

    def acknowledge(self, through: int) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE own_records SET acknowledged = 1 WHERE number <= ? AND acknowledged = 0",
                            (through,))
