"""own_records.db as earlier format versions wrote it, for tests of the upgrades (gossip.own_records._upgrade): the
writing half of gossip/own_records.py as it was, its SQL unchanged. Version 1 (at fe455f4, the last commit before
version 2) keyed rows by seq alone, and its node listed a batch's records of its key with `add(records, peer)` before
the store took them. Version 2 (at 833fe88, the last commit before version 3) had no rows of conflicting records: a
record of the org's key conflicting with one the node held went unlisted. Version 3 (at 60cbc3d, the last commit before
version 4) listed them, with their bytes, and had no table of the key `vouchnet key adopt` made the org's. Version 4 (at
17f142c, the last commit before version 5) kept their bytes in a table apart, counted those past the list's bound in
the file, and kept no bytes of a held record one conflicted with."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

from gossip.own_records import OWN_RECORDS_FILE, OwnRecordsError
from ledger.sqlite_format import FileFormat, claim
from ledger.wal import use_wal
from vouching import Record

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS own_records (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    accepted_ms INTEGER NOT NULL,
    peer TEXT,
    acknowledged INTEGER NOT NULL DEFAULT 0
);
"""
_SCHEMA_V2 = """
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

_SCHEMA_V3 = """
CREATE TABLE IF NOT EXISTS own_records (
    number INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so an acknowledgement names only rows listed by then
    id BLOB NOT NULL UNIQUE,
    iss TEXT NOT NULL,
    seq INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL,
    peer TEXT,
    acknowledged INTEGER NOT NULL DEFAULT 0,
    cose BLOB,  -- a conflicting record's bytes, which the ledger does not hold; NULL for one it stores
    conflicts_with BLOB  -- the id of the record it conflicts with, which the node holds at its seq
);
"""


_SCHEMA_V4 = """
CREATE TABLE IF NOT EXISTS own_records (
    number INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so an acknowledgement names only rows listed by then
    id BLOB NOT NULL UNIQUE,
    iss TEXT NOT NULL,
    seq INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL,
    peer TEXT,
    acknowledged INTEGER NOT NULL DEFAULT 0,
    conflicts_with BLOB  -- a conflicting record's: the id of the one it conflicts with, held at its seq when it came
);
CREATE TABLE IF NOT EXISTS own_records_state (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    adopted TEXT  -- the key `vouchnet key adopt` made the org's, until a start's catch-up sync ends and it signs
);
CREATE TABLE IF NOT EXISTS unlisted_conflicts (
    counted INTEGER PRIMARY KEY AUTOINCREMENT,  -- 1 up in the order counted, never reused: the last is the count
    id BLOB NOT NULL UNIQUE  -- the last MAX_UNLISTED_SEEN counted
);
CREATE TABLE IF NOT EXISTS conflicting_bytes (
    number INTEGER PRIMARY KEY,  -- the conflicting record's row in own_records
    cose BLOB NOT NULL  -- its COSE bytes, which the ledger does not hold, apart: a page of the list reads none
);
INSERT OR IGNORE INTO own_records_state (one) VALUES (1);
"""


def _opened(data_dir: Path, version: int, schema: str, tables: frozenset[str] = frozenset({"own_records"})
            ) -> sqlite3.Connection:
    """The list, opened as the node of `version` opened it (marked, WAL, synchronous = FULL)."""
    path = data_dir / OWN_RECORDS_FILE
    db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    claim(db, path, FileFormat("a list of the org's records from peers", 0x564E4F52, version,  # "VNOR"
                               tables), OwnRecordsError)
    use_wal(db)
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(schema)
    return db


class OwnRecordsV1:
    """Version 1's list."""

    def __init__(self, data_dir: Path, now_ms: Callable[[], int]) -> None:
        self.db = _opened(data_dir, 1, _SCHEMA_V1)
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


class OwnRecordsV2:
    """Version 2's list."""

    def __init__(self, data_dir: Path, now_ms: Callable[[], int]) -> None:
        self.db = _opened(data_dir, 2, _SCHEMA_V2)
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


class OwnRecordsV3(OwnRecordsV2):
    """Version 3's list: version 2's, and rows of conflicting records (none past the list's bound here)."""

    def __init__(self, data_dir: Path, now_ms: Callable[[], int]) -> None:
        self.db = _opened(data_dir, 3, _SCHEMA_V3)
        self._now_ms = now_ms

    def add_conflicts(self, conflicts: Iterable[tuple[Record, bytes, str | None]]) -> None:
        now = self._now_ms()
        with self.db:
            self.db.execute("BEGIN")
            for record, conflicts_with, peer in conflicts:
                if self.db.execute("SELECT 1 FROM own_records WHERE id = ?", (record.id,)).fetchone():
                    continue
                self.db.execute("INSERT INTO own_records (id, iss, seq, accepted_ms, peer, cose, conflicts_with) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (record.id, record.iss, record.seq, now, peer, record.raw, conflicts_with))


class OwnRecordsV4(OwnRecordsV2):
    """Version 4's list: version 2's, rows of conflicting records with their bytes apart, the first `max_conflicts`
    listed and those past it counted, and the adopted key."""

    def __init__(self, data_dir: Path, now_ms: Callable[[], int], max_conflicts: int) -> None:
        self.db = _opened(data_dir, 4, _SCHEMA_V4, frozenset({"own_records", "own_records_state",
                                                               "unlisted_conflicts", "conflicting_bytes"}))
        self._now_ms = now_ms
        self._max_conflicts = max_conflicts

    def add_conflicts(self, conflicts: Iterable[tuple[Record, bytes, str | None]]) -> None:
        now = self._now_ms()
        with self.db:
            self.db.execute("BEGIN")
            for record, conflicts_with, peer in conflicts:
                if self.db.execute("SELECT 1 FROM own_records WHERE id = ?", (record.id,)).fetchone():
                    continue
                if self.db.execute("SELECT COUNT(*) FROM conflicting_bytes").fetchone()[0] >= self._max_conflicts:
                    if not self.db.execute("SELECT 1 FROM unlisted_conflicts WHERE id = ?", (record.id,)).fetchone():
                        self.db.execute("INSERT INTO unlisted_conflicts (id) VALUES (?)", (record.id,))
                    continue
                number = self.db.execute("INSERT INTO own_records (id, iss, seq, accepted_ms, peer, conflicts_with) "
                                         "VALUES (?, ?, ?, ?, ?, ?)",
                                         (record.id, record.iss, record.seq, now, peer, conflicts_with)).lastrowid
                self.db.execute("INSERT INTO conflicting_bytes (number, cose) VALUES (?, ?)", (number, record.raw))

    def adopting(self, key: str) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE own_records_state SET adopted = ?", (key,))
