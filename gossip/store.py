"""Every record this node accepted: the records ledger, in acceptance order, plus an index to find them.

The ledger (`records.ledger`) is the source of truth and is durable when `append` returns. The index
(`records.index`) is derived: it is written after the ledger, committed every few thousand rows with relaxed
syncing, and on open any entries it lacks are replayed from the ledger, so a crash never loses or duplicates one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from ledger import Ledger
from vouching import DigestBody, EquivocationBody, Record, RevokeBody, VouchBody, load_stored

LEDGER_FILE = "records.ledger"
INDEX_FILE = "records.index"
_INDEX_VERSION = 1
_APPLICATION_ID = 0x564E4958  # "VNIX"
# Index rows per index transaction. Each commit writes every index page the transaction touched to the WAL, and
# ids and dids land on random pages: committing per appended batch of 100 cost 45 us of CPU per record at 5*10^4
# records against 30 us for this, and more as the index grows (benchmarks/ingest.py). Uncommitted rows are read
# back by this connection; a crash loses them, and open replays them from the ledger.
_INDEX_COMMIT_ROWS = 2000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    idx INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    iss TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT,
    UNIQUE (iss, seq)
);
CREATE INDEX IF NOT EXISTS records_kind ON records (kind, idx);
-- A page of an issuer's records, of all kinds or one, in ledger order (query; GET /v1/records?issuer=&kind=) reads
-- that page only: with (iss, seq) alone, every one of the issuer's records was sorted, or every one of the kind read.
CREATE INDEX IF NOT EXISTS records_issuer ON records (iss, idx);
CREATE INDEX IF NOT EXISTS records_issuer_kind ON records (iss, kind, idx);
-- Likewise a page of a subject's records of one kind; of all kinds, query merges a page of each kind that has a
-- subject (_SUBJECT_KINDS). With a (subject, idx) index, which this replaces, a page of one kind read every record
-- of the subject. A page by one issuer reads the subject's records of the kind by every issuer (an agent's digests
-- by the orgs that report it): a (subject, iss, kind, idx) index cost 30 us of the 100 a record takes to append
-- (benchmarks/sync.py), and a third more index.
DROP INDEX IF EXISTS records_subject;
CREATE INDEX IF NOT EXISTS records_subject_kind ON records (subject, kind, idx) WHERE subject IS NOT NULL;
"""


class StoreError(Exception):
    """The record store's files are unusable; the message names the file and the rule."""


class Head(NamedTuple):
    """The newest accepted record of one issuer."""

    seq: int
    id: bytes


def subject_of(record: Record) -> str | None:
    """The did a record is about, for `GET /v1/records?subject=`: vouched subject, digested agent, offender."""
    body = record.body
    if isinstance(body, VouchBody):
        return body.subject
    if isinstance(body, DigestBody):
        return body.agent
    if isinstance(body, EquivocationBody):
        return body.offender
    return None


class RecordStore:
    """The records ledger and its index. Use from one thread at a time (SQLite connections are not shared)."""

    def __init__(self, ledger: Ledger, index: sqlite3.Connection, heads: dict[str, Head]) -> None:
        self.ledger = ledger
        self._db = index
        self._heads = heads
        self._unsaved = 0  # index rows in the open index transaction
        self._failed: str | None = None  # StoreError message: appending is refused until the store is reopened

    @classmethod
    def open(cls, directory: Path) -> RecordStore:
        """Open (or create) the store in `directory`, bringing the index level with the ledger."""
        ledger = Ledger.open(directory / LEDGER_FILE)
        try:
            index = _open_index(directory / INDEX_FILE)
        except BaseException:
            ledger.close()
            raise
        store = cls(ledger, index, {})
        try:
            store._catch_up_index()
            store._save_index()
            store._heads = store._load_heads()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        try:
            self._save_index()
        finally:
            self._db.close()
            self.ledger.close()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def size(self) -> int:
        """The number of accepted records (the records ledger's size)."""
        return self.ledger.size

    def head(self, iss: str) -> Head | None:
        return self._heads.get(iss)

    def heads(self) -> dict[str, int]:
        """Issuer -> highest accepted seq, the summary catch-up sync exchanges."""
        return {iss: head.seq for iss, head in self._heads.items()}

    def has(self, record_id: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM records WHERE id = ?", (record_id,)).fetchone() is not None

    def holds(self, record: Record) -> bool:
        """Whether this record is stored, as `has(record.id)`; a record past its issuer's head needs no index lookup
        (an issuer's stored records are its seqs 1 to its head's, `append`)."""
        head = self._heads.get(record.iss)
        return head is not None and record.seq <= head.seq and self.has(record.id)

    def index_of(self, record_id: bytes) -> int | None:
        row = self._db.execute("SELECT idx FROM records WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else row[0]

    def kind_and_issuer(self, record_id: bytes) -> tuple[str, str] | None:
        row = self._db.execute("SELECT kind, iss FROM records WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def get(self, record_id: bytes) -> bytes | None:
        idx = self.index_of(record_id)
        return None if idx is None else self.ledger.entry(idx)

    def at(self, iss: str, seq: int) -> bytes | None:
        """The accepted record of `iss` with `seq`, if any."""
        row = self._db.execute("SELECT idx FROM records WHERE iss = ? AND seq = ?", (iss, seq)).fetchone()
        return None if row is None else self.ledger.entry(row[0])

    def id_at(self, iss: str, seq: int) -> bytes | None:
        """The id of the accepted record of `iss` with `seq`, if any (from the index alone)."""
        row = self._db.execute("SELECT id FROM records WHERE iss = ? AND seq = ?", (iss, seq)).fetchone()
        return None if row is None else row[0]

    def issuer_range(self, iss: str, first_seq: int, limit: int) -> list[bytes]:
        """Up to `limit` records of `iss` from `first_seq` on, in seq order (a sync page)."""
        rows = self._db.execute(
            "SELECT idx FROM records WHERE iss = ? AND seq >= ? ORDER BY seq LIMIT ?", (iss, first_seq, limit)
        ).fetchall()
        return self._entries([idx for (idx,) in rows])

    def query(
        self,
        *,
        issuer: str | None = None,
        kind: str | None = None,
        subject: str | None = None,
        after: int = -1,
        limit: int = 100,
    ) -> list[tuple[int, bytes]]:
        """Records matching every given filter with ledger index > `after`, oldest first: (index, bytes)."""
        if subject is not None and kind is None:  # a page of each kind, merged (_SCHEMA)
            pages = (self._indexes(issuer, each, subject, after, limit) for each in _SUBJECT_KINDS)
            indexes = sorted(idx for page in pages for idx in page)[:limit]
        else:
            indexes = self._indexes(issuer, kind, subject, after, limit)
        return list(zip(indexes, self._entries(indexes)))

    def _indexes(self, issuer: str | None, kind: str | None, subject: str | None, after: int, limit: int) -> list[int]:
        where, args = ["idx > ?"], [after]
        for column, value in (("iss", issuer), ("kind", kind), ("subject", subject)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        # A subject's records of a kind are few beside an issuer's, which SQLite cannot know (no ANALYZE).
        index = " INDEXED BY records_subject_kind" if subject is not None else ""
        return [idx for (idx,) in self._db.execute(
            f"SELECT idx FROM records{index} WHERE {' AND '.join(where)} ORDER BY idx LIMIT ?", (*args, limit)
        )]

    def _entries(self, indexes: list[int]) -> list[bytes]:
        """The ledger entries at ascending `indexes`, each run of consecutive ones read in one call: the ledger
        packs 16 entries to a row, and reading them one by one read each row 16 times (48 us a record of a scan)."""
        entries: list[bytes] = []
        start = 0
        for end in range(1, len(indexes) + 1):
            if end == len(indexes) or indexes[end] != indexes[end - 1] + 1:
                entries += self.ledger.entries(indexes[start], indexes[end - 1] + 1)
                start = end
        return entries

    def scan(
        self, *, issuer: str | None = None, kind: str | None = None, page: int = 1000
    ) -> Iterator[Record]:
        """Every stored record matching the filters, oldest first, loaded page by page (for replays at start)."""
        after = -1
        while rows := self.query(issuer=issuer, kind=kind, after=after, limit=page):
            for _, raw in rows:
                yield load_stored(raw)
            after = rows[-1][0]

    def revoked(self, vouch_id: bytes) -> bool:
        """Whether an accepted `revoke` names this vouch (revocations are indexed by the vouch they name)."""
        row = self._db.execute("SELECT 1 FROM records WHERE kind = 'revoke' AND subject = ?", (vouch_id.hex(),))
        return row.fetchone() is not None

    def revoked_by(self, revoker: str, after: int = -1) -> list[tuple[int, str, int]]:
        """The revokes `revoker` signed past ledger index `after`, oldest first: the index of each, and the issuer
        and seq of the record it names (from the index alone: a look-up a revoke)."""
        rows = self._db.execute("SELECT idx, subject FROM records WHERE iss = ? AND kind = 'revoke' AND idx > ? "
                                "ORDER BY idx", (revoker, after)).fetchall()
        return [(idx, *self._db.execute("SELECT iss, seq FROM records WHERE id = ?", (bytes.fromhex(subject),))
                 .fetchone()) for idx, subject in rows]  # (the acceptor takes a revoke only after what it names)

    def flagged(self) -> set[str]:
        """Orgs proven to equivocate by an accepted `equivocation` record."""
        rows = self._db.execute("SELECT DISTINCT subject FROM records WHERE kind = 'equivocation'").fetchall()
        return {subject for (subject,) in rows}

    def append(self, records: Sequence[Record]) -> int:
        """Append accepted records durably, each following its issuer's head; the ledger index of the first."""
        if self._failed is not None:
            raise StoreError(self._failed)
        heads: dict[str, Head] = {}
        for r in records:
            head = heads.get(r.iss) or self._heads.get(r.iss)
            if (r.seq, r.prev) != ((head.seq + 1, head.id) if head else (1, None)):
                raise ValueError(f"records: {r.iss} seq {r.seq} does not follow its head {head}")
            heads[r.iss] = Head(r.seq, r.id)
        first = self.ledger.append([r.raw for r in records])
        self._index(first, records)
        self._heads.update(heads)
        return first

    def _index(self, first: int, records: Iterable[Record]) -> None:
        """Add index rows to the open index transaction; commit it once it holds _INDEX_COMMIT_ROWS rows."""
        rows = [(first + i, r.id, r.iss, r.seq, r.kind, _index_subject(r)) for i, r in enumerate(records)]
        try:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._unsaved += len(rows)
            if self._unsaved >= _INDEX_COMMIT_ROWS:
                self._save_index()
        except sqlite3.Error as error:
            # The rollback takes the rows of earlier appends with it, which the heads already count: appending
            # on would store records twice. Reopening replays the index from the ledger.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._unsaved = 0
            self._failed = (f"{INDEX_FILE}: cannot be written ({error}); records are refused until the node restarts, "
                            "which replays the index from the ledger")
            raise StoreError(self._failed) from error

    def _save_index(self) -> None:
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._unsaved = 0

    def _catch_up_index(self) -> None:
        (indexed,) = self._db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM records").fetchone()
        if indexed > self.ledger.size:
            raise StoreError(
                f"{INDEX_FILE}: indexes {indexed} records but {LEDGER_FILE} holds {self.ledger.size}:"
                " the index belongs to another ledger; move it aside and restart to rebuild it"
            )
        step = 1000
        for start in range(indexed, self.ledger.size, step):
            entries = self.ledger.entries(start, min(start + step, self.ledger.size))
            self._index(start, [load_stored(e) for e in entries])

    def _load_heads(self) -> dict[str, Head]:
        """Each issuer's newest record, found issuer by issuer on the (iss, seq) index: a few rows each, where a
        GROUP BY read every row of the index (0.35-0.6 us a stored record at each open)."""
        heads: dict[str, Head] = {}
        iss = ""  # below every did
        while (iss := self._db.execute("SELECT MIN(iss) FROM records WHERE iss > ?", (iss,)).fetchone()[0]) is not None:
            seq, rid = self._db.execute("SELECT seq, id FROM records WHERE iss = ? ORDER BY seq DESC LIMIT 1",
                                        (iss,)).fetchone()
            heads[iss] = Head(seq, rid)
        return heads


_SUBJECT_KINDS = ("vouch", "revoke", "digest", "equivocation")  # the kinds _index_subject gives a subject


def _index_subject(record: Record) -> str | None:
    if isinstance(record.body, RevokeBody):
        return record.body.record.hex()
    return subject_of(record)


# What an operator can do about an index that will not open: it is derived data.
_REBUILD = "remove it (and its -wal and -shm files) and it is rebuilt from the records ledger"


def _open_index(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level=None)
        (app_id,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if (app_id, version) == (0, 0):  # a new file
            db.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {_INDEX_VERSION}")
        elif (app_id, version) != (_APPLICATION_ID, _INDEX_VERSION):
            db.close()
            raise StoreError(f"{path}: not a version-{_INDEX_VERSION} record index (application_id {app_id:#x}, version "
                             f"{version}); {_REBUILD}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # derived data: a lost tail is replayed from the ledger
        db.executescript(_SCHEMA)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: not a record index: {e}; {_REBUILD}") from None
    return db
