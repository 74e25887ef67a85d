"""The records of this node's key that came from peers (gossip.replica.Replica._report_own), kept in the data
directory's `own_records.db` so that the count an alert watches survives a restart, until the operator, having
explained them (a restore from an older copy), acknowledges them.

Each is written before the records ledger takes it (Replica._list_own, synchronous = FULL), so a crash cannot store
a record of the key without it; a crash in between leaves a row of a record the ledger lacks, dropped at the next open
(`open`), and a batch the ledger refuses leaves its rows until then: the record came from a peer either way. A row is
one record (its id), numbered in the order listed: the keys of an org that rotated each start at seq 1, and another
record may come at the seq of one a refused batch left, so only the number tells which rows the operator has seen.

A record of the org's key (or an earlier key of its org) that conflicts with one the node holds at its seq, stored or
held for a missing predecessor, is proof that the key signed twice at one seq: the key is in someone else's hands. The
ledger does not take it, so its row keeps the id of the record it conflicts with (`add_conflicts`), and its COSE bytes
are kept in a table apart, with those of the record it conflicts with when the node only held that one (the ledger keeps
no bytes of a held record, which may be dropped), read only for GET /v1/node/own-records/{number}/cose and
.../conflicts-with/cose (`cose`, `conflicts_with_cose`), not for a page of the list (1,000 of a thief's records of 64
KiB are 65 MB); `open` keeps such a row (a record a refused batch left a row of, coming back so, is listed anew in its
place, or counted as below, its row gone at once). A thief can sign any number of them: at most MAX_CONFLICTS rows keep
their bytes, and MAX_CONFLICT_ROWS rows are listed. A conflict listed is evidence the operator has not seen until
acknowledged, so only an acknowledged row makes room for a new conflict, and only when one needs it (`_make_room`): the
oldest acknowledged row keeping bytes loses them, and past MAX_CONFLICT_ROWS the oldest acknowledged row is dropped from
the list. A conflict that finds no room, and a row dropped, are counted (`unlisted_conflicts`) and logged: each
conflicting record is listed as such or counted, not both (as far as the ids below go), at every moment. That count is
kept in the file, across restarts, and a record counted is not counted again when it comes again (gossip's mesh and each
peer's sync deliver one record many times, and again after a restart) as long as its id is among the last
MAX_UNLISTED_SEEN counted, which the file keeps, each numbered in the order counted (never reused: the count is the last
one's number). Not every id: a thief signs millions, 32 bytes of id each, and the file and memory must stay bounded; one
that comes again after more than MAX_UNLISTED_SEEN others were counted is counted again (or listed, if there is room),
adding to a count that says already that the key signs freely elsewhere. So the file keeps at most 2 x MAX_CONFLICTS
records' bytes, MAX_CONFLICT_ROWS rows of conflicts and MAX_UNLISTED_SEEN ids, and memory none, whatever a thief signs
and however often the operator acknowledges.

A conflicting record can be stored all the same: one that conflicted with a record the node only held is stored if it
comes again once that one was dropped (evicted, or refused as not following the chain). Listed as conflicting, its row
stays as it was (`add`: listed already), `stored` true in the API: the key signed both. Counted instead (no room, or
its row dropped to make room), it is listed as the record of the key the ledger now holds, under a new number (`stored`
true, no `conflicts_with`: the id of the one it conflicted with was not kept), but acknowledged (`add`): its conflict
was reported when counted, at CRITICAL and in conflicts_unlisted, the alert an operator watches for it, and a row
dropped to make room was acknowledged. Unacknowledged, it would raise own_records_from_peers again for an incident
reported already, with nothing new to see. It stays counted: a count never goes down. One no longer among the last
MAX_UNLISTED_SEEN counted is listed unacknowledged, as any record of the key.

After `vouchnet key adopt` (node.taken_back_rotation) the adopted key's records come back from peers as expected, not
listed (gossip.replica.Replica._adopted_key_coming_back), until a start's catch-up sync ends and the node signs. The
file names that key (`adopted`, written by the adopt before it installs the key) until then (`adoption_caught_up`),
so that a start stopped before its catch-up ended does not list the rest, coming back at the next, as a thief's; and
at the latest until the first record the node signs with it is stored (Replica._list_own), after which nothing of the
newer copy can come back: a start stopped between the two must not take a thief's record following it as expected.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.disk_failure import open_failure, read_failure
from ledger.sqlite_format import FileFormat, claim
from ledger.wal import use_wal
from ledger.writes_under_way import writing
from vouching import Record

from .store import RecordStore, StoreError

OWN_RECORDS_FILE = "own_records.db"
# Version 5: the bytes of the held record a conflicting one conflicts with, and an index of the conflicting rows
# (2026-11-28). Version 4: the adopted key, the conflicting records counted past the list's bound, and their bytes in
# a table apart (2026-11-28). Version 3: rows of conflicting records, with their bytes (2026-11-28). Version 2: rows by
# record and number. Version 1 (2026-11-27) keyed rows by seq alone. `_upgrade`.
FORMAT = FileFormat("a list of the org's records from peers", 0x564E4F52, 5,  # "VNOR"
                    frozenset({"own_records", "own_records_state", "unlisted_conflicts", "conflicting_bytes"}),
                    oldest=1)
MAX_LISTED = 1000  # rows `listed` returns at most, oldest first after a number
MAX_CONFLICTS = 1000  # rows of conflicting records keeping their bytes at most: a thief can sign any number of them
MAX_CONFLICT_ROWS = 10_000  # rows of conflicting records at most, those whose bytes were dropped included: more
# than MAX_CONFLICTS, so that the oldest row, dropped first, is one whose bytes were (`_make_room`)
MAX_UNLISTED_SEEN = 10_000  # ids of the conflicting records last counted, not listed, kept, not to count them twice
log = logging.getLogger(__name__)
_STATEMENTS = ("""
CREATE TABLE IF NOT EXISTS own_records (
    number INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so an acknowledgement names only rows listed by then
    id BLOB NOT NULL UNIQUE,
    iss TEXT NOT NULL,
    seq INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL,
    peer TEXT,
    acknowledged INTEGER NOT NULL DEFAULT 0,
    conflicts_with BLOB  -- a conflicting record's: the id of the one it conflicts with, held at its seq when it came
)""", """
CREATE TABLE IF NOT EXISTS own_records_state (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    adopted TEXT  -- the key `vouchnet key adopt` made the org's, until a start's catch-up sync ends and it signs
)""", """
CREATE TABLE IF NOT EXISTS unlisted_conflicts (
    counted INTEGER PRIMARY KEY AUTOINCREMENT,  -- 1 up in the order counted, never reused: the last is the count
    id BLOB NOT NULL UNIQUE  -- the last MAX_UNLISTED_SEEN counted
)""", """
CREATE TABLE IF NOT EXISTS conflicting_bytes (
    number INTEGER PRIMARY KEY,  -- the conflicting record's row in own_records (none once dropped: `_make_room`)
    cose BLOB NOT NULL,  -- its COSE bytes, which the ledger does not hold, apart: a page of the list reads none
    conflicts_with_cose BLOB  -- those of the record it conflicts with, if the node only held that one (not stored)
)""", """
CREATE INDEX IF NOT EXISTS own_records_conflicting ON own_records (number) WHERE conflicts_with IS NOT NULL""")
_SCHEMA = ";".join(_STATEMENTS) + ";\nINSERT OR IGNORE INTO own_records_state (one) VALUES (1);"


class OwnRecordsError(StoreError):
    """own_records.db cannot be opened or written; the message names the file. A StoreError: where a batch the
    store cannot take is caught (gossip, sync: our disk, not the peer), so is one this cannot list."""


@dataclass(frozen=True)
class OwnRecord:
    """A record of the org's key that came from a peer: its number in the list (1 up, in the order listed), its id,
    the key that signed it (`iss`: the org's key then) and its seq, when the node accepted it (ms since the Unix
    epoch, node time), the PeerID it came from (None when not known: an API submission; for one held for an
    earlier record, the peer that sent it then), and whether the operator acknowledged it. For a record that
    conflicted with one the node held when it came (refused then), that one's id (the bytes of both, while kept:
    `OwnRecords.cose`, `OwnRecords.conflicts_with_cose`)."""

    number: int
    id: bytes
    iss: str
    seq: int
    accepted_ms: int
    peer: str | None
    acknowledged: bool
    conflicts_with: bytes | None = None

    def to_json(self, *, stored: bool | None) -> dict[str, object]:
        """The row as the API shows it, `stored` saying whether the ledger holds its record (the store knows: a
        conflicting record is not stored, unless the record it conflicted with was only held, then dropped, and it
        came again; another row's is, but for the row of a batch the store refused, until it comes again or `open`
        drops the row), None if that is not known (the ledger's index unreadable: node.api.own_records), with
        `conflicts_with` for a conflicting record, whose bytes GET /v1/node/own-records/{number}/cose serves."""
        return {"number": self.number, "id": self.id.hex(), "iss": self.iss, "seq": self.seq,
                "accepted_ms": self.accepted_ms, "peer": self.peer, "acknowledged": self.acknowledged,
                "stored": stored,
                "conflicts_with": None if self.conflicts_with is None else self.conflicts_with.hex()}


class OwnRecords:
    """The list and its count of unacknowledged rows. Use from one thread (the node's trio thread)."""

    def __init__(self, db: sqlite3.Connection, now_ms: Callable[[], int]) -> None:
        self._db = db
        self._now_ms = now_ms
        self._db.executescript(_SCHEMA)
        (self.unacknowledged,) = db.execute("SELECT COUNT(*) FROM own_records WHERE acknowledged = 0").fetchone()
        # conflicting records listed, and those of them keeping their bytes (`_make_room`)
        (self.conflict_rows,) = db.execute("SELECT COUNT(*) FROM own_records WHERE conflicts_with IS NOT NULL"
                                           ).fetchone()
        (self.conflicts_kept,) = db.execute("SELECT COUNT(*) FROM conflicting_bytes").fetchone()
        # conflicting records not yet acknowledged (vouchnet_own_records_conflicting)
        (self.unacknowledged_conflicts,) = db.execute("SELECT COUNT(*) FROM own_records WHERE conflicts_with IS NOT "
                                                      "NULL AND acknowledged = 0").fetchone()
        # conflicting records not listed (no room; dropped to make room): counted once each, as far as
        # MAX_UNLISTED_SEEN goes
        (self.unlisted_conflicts,) = db.execute("SELECT COALESCE(MAX(counted), 0) FROM unlisted_conflicts").fetchone()
        # the key `vouchnet key adopt` made the org's, whose records are coming back (`adopting`)
        self.adopted: str | None = db.execute("SELECT adopted FROM own_records_state").fetchone()[0]

    @classmethod
    def in_memory(cls, now_ms: Callable[[], int]) -> OwnRecords:
        """A list kept nowhere, for a replica without a data directory (tests, tools)."""
        return cls(sqlite3.connect(":memory:", isolation_level=None), now_ms)

    @classmethod
    def open(cls, data_dir: Path, now_ms: Callable[[], int], store: RecordStore) -> OwnRecords:
        """Open (or create: a data directory from before it starts with none) the list in `data_dir`, dropping rows
        of records `store` does not hold but those of conflicting records, which keep their bytes."""
        path = data_dir / OWN_RECORDS_FILE
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
            try:
                claim(db, path, FORMAT, OwnRecordsError, functools.partial(_upgrade, store=store))
                use_wal(db)
                db.execute("PRAGMA synchronous = FULL")  # a lost row would silence a compromise signal
                db.executescript(_SCHEMA)
                unstored = [(rid,) for (rid,) in db.execute("SELECT id FROM own_records WHERE conflicts_with IS NULL")
                            if not store.has(rid)]
                db.executemany("DELETE FROM own_records WHERE id = ?", unstored)
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as error:
            raise OwnRecordsError(open_failure(path, error, f"{path}: cannot be opened ({error})")) from None
        return cls(db, now_ms)

    def close(self) -> None:
        self._db.close()

    def add(self, records: Iterable[tuple[Record, str | None]]) -> None:
        """List records of the org's key, each with the peer it came from (None if not known), durably on return
        (one transaction); one listed already (by id) is kept as it was, and one counted as a conflicting record not
        listed (`unlisted_conflicts`) is listed acknowledged (the module's docstring)."""
        added = 0
        try:
            with self._transaction():
                for record, peer in records:
                    counted = self._is_counted(record.id)
                    if self._db.execute("INSERT OR IGNORE INTO own_records (id, iss, seq, accepted_ms, peer, "
                                        "acknowledged) VALUES (?, ?, ?, ?, ?, ?)",
                                        (record.id, record.iss, record.seq, self._now_ms(), peer, counted)).rowcount:
                        added += not counted
        except sqlite3.Error as error:
            raise OwnRecordsError(f"{OWN_RECORDS_FILE}: cannot be written ({error})") from None
        self.unacknowledged += added

    def add_conflicts(self, conflicts: Iterable[tuple[Record, bytes, bytes | None, str | None]]
                      ) -> list[tuple[Record, bytes, bytes | None, str | None]]:
        """List records of the org's keys that conflict with one the node holds at their seq (the store does not
        take them), each with that one's id, its bytes if the node only held it (None if the ledger holds it), and the
        peer it came from, durably on return, with their bytes. One listed already as such (by id), or counted
        already (`unlisted_conflicts`), is kept as it was; one finding no room (`_make_room`) is counted, durably, once
        each as far as the last MAX_UNLISTED_SEEN counted go (the module's docstring). One with the row a refused
        batch left (`add`; its record unstored, which `open` would drop) is listed anew in its place, under a new
        number: the operator has not seen it as a conflict; or, counted already or finding no room, counted, its row
        dropped then, not at the next open: listed or counted, not both. Those newly listed."""
        listed: list[tuple[Record, bytes, bytes | None, str | None]] = []
        replaced, now = 0, self._now_ms()
        room = _Room(self.conflicts_kept, self.conflict_rows, self.unlisted_conflicts)
        try:
            with self._transaction():
                for conflict in conflicts:
                    record, conflicts_with, conflicts_with_cose, peer = conflict
                    row = self._db.execute("SELECT conflicts_with IS NULL, acknowledged FROM own_records WHERE id = ?",
                                           (record.id,)).fetchone()
                    if row is not None and not row[0]:  # (listed already)
                        continue
                    if row is not None:  # (a refused batch's: listed anew below, or counted, not both)
                        self._db.execute("DELETE FROM own_records WHERE id = ?", (record.id,))
                        replaced += not row[1]
                    if self._is_counted(record.id):  # (counted already)
                        continue
                    if not self._make_room(room):
                        self._count(record.id, room)
                        continue
                    number = self._db.execute("INSERT INTO own_records (id, iss, seq, accepted_ms, peer, "
                                              "conflicts_with) VALUES (?, ?, ?, ?, ?, ?)",
                                              (record.id, record.iss, record.seq, now, peer, conflicts_with)).lastrowid
                    self._db.execute("INSERT INTO conflicting_bytes (number, cose, conflicts_with_cose) "
                                     "VALUES (?, ?, ?)", (number, record.raw, conflicts_with_cose))
                    room.kept += 1
                    room.rows += 1
                    listed.append(conflict)
                if room.counted > self.unlisted_conflicts:
                    self._db.execute("DELETE FROM unlisted_conflicts WHERE counted <= ?",
                                     (room.counted - MAX_UNLISTED_SEEN,))
        except sqlite3.Error as error:
            raise OwnRecordsError(f"{OWN_RECORDS_FILE}: cannot be written ({error})") from None
        self.conflicts_kept, self.conflict_rows, self.unlisted_conflicts = room.kept, room.rows, room.counted
        self.unacknowledged += len(listed) - replaced
        self.unacknowledged_conflicts += len(listed)
        return listed

    def _make_room(self, room: _Room) -> bool:
        """In `add_conflicts`'s transaction: make room for one more conflicting row with its bytes, if the list is
        full (`room`, updated): the oldest row keeping bytes loses them (its record's, and the held one's it
        conflicts with: GET /v1/node/own-records/{number}/cose says so) if acknowledged, and past MAX_CONFLICT_ROWS
        rows the oldest row, whose bytes went so, leaves the list, counted as not listed (`_count`). Never an
        unacknowledged row: its evidence the operator has not seen. Whether there is room (nothing changed if not)."""
        if room.kept >= MAX_CONFLICTS:
            # (The acknowledged rows are the oldest: `acknowledge` marks every row up to a number, and a row listed
            # later has a higher one. So the oldest keeping bytes is acknowledged if any is.)
            drop = self._db.execute("SELECT number FROM own_records WHERE number = (SELECT MIN(number) FROM "
                                    "conflicting_bytes) AND acknowledged = 1").fetchone()
            if drop is None:
                return False
            self._db.execute("DELETE FROM conflicting_bytes WHERE number = ?", drop)
            room.kept -= 1
        if room.rows >= MAX_CONFLICT_ROWS:
            # (More rows than MAX_CONFLICTS, which keep bytes: the oldest lost them, oldest first, so was acknowledged.)
            number, rid = self._db.execute("SELECT number, id FROM own_records WHERE number = (SELECT MIN(number) "
                                           "FROM own_records WHERE conflicts_with IS NOT NULL)").fetchone()
            self._db.execute("DELETE FROM own_records WHERE number = ?", (number,))
            self._count(bytes(rid), room)
            room.rows -= 1
        return True

    def _is_counted(self, rid: bytes) -> bool:
        """Whether the conflicting record `rid` is among the last MAX_UNLISTED_SEEN counted, not listed."""
        return self._db.execute("SELECT 1 FROM unlisted_conflicts WHERE id = ?", (rid,)).fetchone() is not None

    def _count(self, rid: bytes, room: _Room) -> None:
        """In `add_conflicts`'s transaction: count the conflicting record `rid` as not listed (not counted yet)."""
        # (not INSERT OR IGNORE: a row it ignores takes a number all the same)
        self._db.execute("INSERT INTO unlisted_conflicts (id) VALUES (?)", (rid,))
        room.counted += 1

    def adopting(self, key: str) -> None:
        """Name `key` as the one `vouchnet key adopt` makes the org's, durably on return: its records coming back from
        peers are expected (gossip.replica.Replica._adopted_key_coming_back) until `adoption_caught_up`."""
        self._write("UPDATE own_records_state SET adopted = ?", (key,))
        self.adopted = key

    def adoption_caught_up(self) -> None:
        """A start's catch-up sync ended and the node signs (node.daemon._take_back_own_records): what comes of the
        adopted key's from now on is reported as any record of the key from peers. Durable on return."""
        if self.adopted is not None:
            self._write("UPDATE own_records_state SET adopted = NULL", ())
            self.adopted = None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT (ROLLBACK if the block raises), named while it runs (ledger.writes_under_way: a stop cut
        short by a disk that never finishes its fsync names the file)."""
        with writing(OWN_RECORDS_FILE), self._db:
            self._db.execute("BEGIN")
            yield

    def _write(self, sql: str, parameters: tuple[object, ...]) -> None:
        try:
            with self._transaction():
                self._db.execute(sql, parameters)
        except sqlite3.Error as error:
            raise OwnRecordsError(f"{OWN_RECORDS_FILE}: cannot be written ({error})") from None

    def _read(self, sql: str, parameters: tuple[object, ...]) -> list[tuple[Any, ...]]:
        """The rows of a query, or OwnRecordsError naming the file (the API's 503 `storage` named none) and whether its
        disk failed (ledger.disk_failure)."""
        try:
            return self._db.execute(sql, parameters).fetchall()
        except sqlite3.Error as error:
            raise OwnRecordsError(read_failure(Path(OWN_RECORDS_FILE), error)) from None

    def listed(self, *, after: int = 0, limit: int = MAX_LISTED) -> list[OwnRecord]:
        """Up to `limit` listed records numbered above `after`, in the order listed."""
        rows = self._read("SELECT number, id, iss, seq, accepted_ms, peer, acknowledged, conflicts_with "
                          "FROM own_records WHERE number > ? ORDER BY number LIMIT ?", (after, limit))
        return [OwnRecord(n, bytes(rid), iss, seq, at, peer, bool(ack), _bytes(conflicts_with))
                for n, rid, iss, seq, at, peer, ack, conflicts_with in rows]

    def row(self, number: int) -> OwnRecord | None:
        """The row numbered `number`, if listed."""
        rows = self.listed(after=number - 1, limit=1)
        return rows[0] if rows and rows[0].number == number else None

    def cose(self, number: int) -> bytes | None:
        """The COSE bytes of the conflicting record listed as `number`; None if there is no such row, its record is
        one the ledger stores, or its bytes were dropped to make room (`_make_room`). With `conflicts_with_cose`, the
        only reader of those bytes, kept apart (conflicting_bytes) so that a page of the list reads none: 1,000 of a
        thief's records of 64 KiB are 65 MB."""
        rows = self._read("SELECT cose FROM conflicting_bytes WHERE number = ?", (number,))
        return _bytes(rows[0][0]) if rows else None

    def keeping_bytes(self, *, after: int, through: int) -> dict[int, bool]:
        """The conflicting rows numbered above `after` and up to `through` that keep their record's bytes (`cose`),
        each with whether it keeps those of the record it conflicts with too (`conflicts_with_cose`). Reads none of
        the bytes (SQLite's typeof() reads a column's type from the row's header, where `IS NULL` reads its content:
        0.8 ms for 1,000 rows of 64 KiB against 22 ms), so that a page of the list still reads none."""
        rows = self._read("SELECT number, typeof(conflicts_with_cose) FROM conflicting_bytes "
                          "WHERE number > ? AND number <= ?", (after, through))
        return {number: kind != "null" for number, kind in rows}

    def conflicts_with_cose(self, number: int) -> bytes | None:
        """The COSE bytes of the record that the conflicting record listed as `number` conflicts with, kept if the
        node only held that one when it came (version 5 on); None otherwise (the ledger held it), or once dropped as
        `cose`'s."""
        rows = self._read("SELECT conflicts_with_cose FROM conflicting_bytes WHERE number = ?", (number,))
        return _bytes(rows[0][0]) if rows else None

    def acknowledge(self, through: int) -> int:
        """Mark every listed record numbered `through` or lower acknowledged; how many were not yet. A record listed
        later has a higher number (numbers are never reused), so one that comes after the operator looked is never
        acknowledged unseen (one listed acknowledged, as a counted conflict stored since, `add`, was reported)."""
        try:
            with self._transaction():
                (conflicts,) = self._db.execute("SELECT COUNT(*) FROM own_records WHERE number <= ? AND acknowledged "
                                                "= 0 AND conflicts_with IS NOT NULL", (through,)).fetchone()
                count = self._db.execute("UPDATE own_records SET acknowledged = 1 WHERE number <= ? "
                                         "AND acknowledged = 0", (through,)).rowcount
        except sqlite3.Error as error:
            raise OwnRecordsError(f"{OWN_RECORDS_FILE}: cannot be written ({error})") from None
        self.unacknowledged -= count
        self.unacknowledged_conflicts -= conflicts
        log.warning("the operator acknowledged %d record(s) of this node's key from peers, listed through number %d; "
                    "%d remain unacknowledged", count, through, self.unacknowledged)
        return count


@dataclass
class _Room:
    """The conflicting rows keeping their bytes, those listed and the last counted's number (`unlisted_conflicts`),
    as `add_conflicts`'s transaction changes them."""

    kept: int
    rows: int
    counted: int


def _bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def _upgrade(db: sqlite3.Connection, version: int, *, store: RecordStore) -> None:
    """To version 5, in `claim`'s transaction: from 4, the column of the bytes of the held record a conflicting one
    conflicts with (none kept: version 4 kept none) and the index of conflicting rows; from 3, the conflicting records'
    bytes moved to a table apart (`_bytes_apart`), and the tables of the adopted key (none adopted) and of the
    conflicting records counted past the list's bound (none: version 3 counted them in memory) too; from 2, the
    column of the record a conflicting one conflicts with (none listed yet) too; from 1, rows made at once in version
    5's tables (`_from_version_1`)."""
    if version == 1:
        _from_version_1(db, store)
    elif version == 2:
        db.execute("ALTER TABLE own_records ADD COLUMN conflicts_with BLOB")
    elif version == 3:
        _bytes_apart(db)
    else:
        assert version == 4
        db.execute("ALTER TABLE conflicting_bytes ADD COLUMN conflicts_with_cose BLOB")
    for table in _STATEMENTS:  # (one statement each: executescript would commit `claim`'s transaction first)
        db.execute(table)


def _bytes_apart(db: sqlite3.Connection) -> None:
    """Version 3's rows without their `cose` column, whose bytes go to conflicting_bytes by number; the table made
    anew (not DROP COLUMN: SQLite 3.35 and later only), its numbers' sequence kept, so none is used again."""
    db.execute("ALTER TABLE own_records RENAME TO own_records_v3")
    db.execute(_STATEMENTS[0])
    db.execute(_STATEMENTS[3])
    db.execute("INSERT INTO own_records (number, id, iss, seq, accepted_ms, peer, acknowledged, conflicts_with) "
               "SELECT number, id, iss, seq, accepted_ms, peer, acknowledged, conflicts_with FROM own_records_v3")
    db.execute("INSERT INTO conflicting_bytes (number, cose) SELECT number, cose FROM own_records_v3 "
               "WHERE cose IS NOT NULL")
    db.execute("DELETE FROM sqlite_sequence WHERE name = 'own_records'")
    db.execute("UPDATE sqlite_sequence SET name = 'own_records' WHERE name = 'own_records_v3'")
    db.execute("DROP TABLE own_records_v3")


def _from_version_1(db: sqlite3.Connection, store: RecordStore) -> None:
    """Rows numbered in seq order (the order a key's records are listed in), each with its record's issuer as `store`
    holds it; a row of a record it does not hold is dropped, as `open` drops one."""
    db.execute("ALTER TABLE own_records RENAME TO own_records_v1")
    db.execute(_STATEMENTS[0])
    rows = db.execute("SELECT id, seq, accepted_ms, peer, acknowledged FROM own_records_v1 ORDER BY seq").fetchall()
    for rid, seq, accepted_ms, peer, acknowledged in rows:
        if (found := store.kind_and_issuer(bytes(rid))) is not None:
            db.execute("INSERT INTO own_records (id, iss, seq, accepted_ms, peer, acknowledged) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (rid, found[1], seq, accepted_ms, peer, acknowledged))
    db.execute("DROP TABLE own_records_v1")
