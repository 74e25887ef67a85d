"""Every record this node accepted: the records ledger, in acceptance order, plus an index to find them.

The ledger (`records.ledger`) is the source of truth and is durable when `append` returns. The index
(`records.index`) is derived: committed every few thousand rows with relaxed syncing, and on open any entries it
lacks are replayed from the ledger, so a crash never loses or duplicates one.

A batch is appended whole or not at all (DESIGN.md §4 keeps every acknowledged append; a refused one is not kept
either): its index rows are written first, then the ledger; if either write fails (a full disk), the rows are
deleted and `append` raises, and the store takes the next batch once its files can be written again. A failed
index write may take the open index transaction with it (SQLite rolls it back on SQLITE_FULL): the entries it
held are replayed from the ledger before the next append or read, which raises StoreError while they cannot be,
rather than answer as if they were not stored.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from ledger import Ledger
from ledger.disk_failure import open_failure, read_failure
from ledger.sqlite_format import FileFormat, check, claim
from ledger.wal import use_wal
from vouching import DigestBody, EquivocationBody, OrgBody, Record, RevokeBody, VouchBody, load_stored, record_id

LEDGER_FILE = "records.ledger"
INDEX_FILE = "records.index"
log = logging.getLogger(__name__)
# Index rows per index transaction, committed before the next append once it holds them. Each commit writes every
# index page the transaction touched to the WAL, and ids and dids land on random pages: committing per appended
# batch of 100 cost 45 us of CPU per record at 5*10^4 records against 30 us for this, and more as the index grows
# (benchmarks/ingest.py). Uncommitted rows are read back by this connection; a crash loses them, and open replays
# them from the ledger.
_INDEX_COMMIT_ROWS = 2000
ID_PAGE = 10_000  # rows CommittedIndex.ids_of reads at a time
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
        self._indexed: int | None = None  # ledger entries the index holds; None: unknown since a rollback (_lost)

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
            store._heads = store._load_heads()
            store._level(save=True)
            store._save_index()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Commit the index and close both files. An index that cannot be committed (a full disk) is not an error
        here: the ledger holds every record, and the next open replays what the index lacks."""
        try:
            self._save_index()
        except StoreError as error:
            log.warning("%s; the next start replays it from %s", error, LEDGER_FILE)
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
        return self._read_one("SELECT 1 FROM records WHERE id = ?", (record_id,)) is not None

    def holds(self, record: Record) -> bool:
        """Whether this record is stored, as `has(record.id)`; a record past its issuer's head needs no index lookup
        (an issuer's stored records are its seqs 1 to its head's, `append`)."""
        head = self._heads.get(record.iss)
        return head is not None and record.seq <= head.seq and self.has(record.id)

    def index_of(self, record_id: bytes) -> int | None:
        row = self._read_one("SELECT idx FROM records WHERE id = ?", (record_id,))
        return None if row is None else row[0]

    def kind_and_issuer(self, record_id: bytes) -> tuple[str, str] | None:
        row = self._read_one("SELECT kind, iss FROM records WHERE id = ?", (record_id,))
        return None if row is None else (row[0], row[1])

    def get(self, record_id: bytes) -> bytes | None:
        idx = self.index_of(record_id)
        return None if idx is None else self.ledger.entry(idx)

    def at(self, iss: str, seq: int) -> bytes | None:
        """The accepted record of `iss` with `seq`, if any."""
        row = self._read_one("SELECT idx FROM records WHERE iss = ? AND seq = ?", (iss, seq))
        return None if row is None else self.ledger.entry(row[0])

    def id_at(self, iss: str, seq: int) -> bytes | None:
        """The id of the accepted record of `iss` with `seq`, if any (from the index alone)."""
        row = self._read_one("SELECT id FROM records WHERE iss = ? AND seq = ?", (iss, seq))
        return None if row is None else row[0]

    def latest_org(self, iss: str, *, rotation: bool = True) -> OrgBody | None:
        """The body of the latest accepted `org` record of key `iss` (DESIGN.md §3, `org`; key rotation, §2), None if
        it has none. With `rotation=False`, the latest that does not name a successor: a key's rotation record ends
        its chain (vouching.succession), so it is the latest at most, and then the one before it is the answer.
        Latest is by seq, which is ledger order within an issuer (`append`); held records are not in the store. One
        or two rows read, on the (iss, kind, idx) index."""
        rows = self._read("SELECT idx FROM records WHERE iss = ? AND kind = 'org' ORDER BY idx DESC LIMIT ?",
                          (iss, 1 if rotation else 2))
        for (idx,) in rows:
            body = load_stored(self.ledger.entry(idx)).body
            assert isinstance(body, OrgBody)  # (every record of kind `org` has one)
            if rotation or body.next is None:
                return body
        return None

    def issuer_range(self, iss: str, first_seq: int, limit: int) -> list[bytes]:
        """Up to `limit` records of `iss` from `first_seq` on, in seq order (a sync page)."""
        rows = self._read(
            "SELECT idx FROM records WHERE iss = ? AND seq >= ? ORDER BY seq LIMIT ?", (iss, first_seq, limit)
        )
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
        return [idx for (idx,) in self._read(
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
        self, *, issuer: str | None = None, kind: str | None = None, after: int = -1, page: int = 1000
    ) -> Iterator[Record]:
        """Every stored record matching the filters with ledger index > `after`, oldest first, loaded page by page
        (for replays at start)."""
        while rows := self.query(issuer=issuer, kind=kind, after=after, limit=page):
            for _, raw in rows:
                yield load_stored(raw)
            after = rows[-1][0]

    def ids_of(self, kind: str, *, start: int = 0, before: int, excluding: Iterable[str] = ()) -> list[bytes]:
        """The record id of every record of `kind` at a ledger index in [start, before) that none of `excluding`
        issued, in ledger order, read from the index alone; a list, for a few rows (CommittedIndex.ids_of pages
        through many on a worker thread)."""
        return [bytes(rid) for (rid,) in self._read(*_ids_query(kind, start, before, excluding))]

    def revoked(self, vouch_id: bytes) -> bool:
        """Whether an accepted `revoke` names this vouch (revocations are indexed by the vouch they name)."""
        return self._read_one("SELECT 1 FROM records WHERE kind = 'revoke' AND subject = ? LIMIT 1",
                              (vouch_id.hex(),)) is not None

    def revoked_by(self, revoker: str, after: int = -1) -> list[tuple[int, str, int]]:
        """The revokes `revoker` signed past ledger index `after`, oldest first: the index of each, and the issuer
        and seq of the record it names (from the index alone: a look-up a revoke)."""
        return _revokes(self._read, revoker, after, self.size, -1)

    def committed(self) -> CommittedIndex:
        """A read-only view of the index as last committed, for a worker thread while this store goes on (close
        it)."""
        (path,) = (file for _, name, file in self._db.execute("PRAGMA database_list") if name == "main")
        return CommittedIndex(Path(path))

    def flagged(self) -> set[str]:
        """Orgs proven to equivocate by an accepted `equivocation` record."""
        rows = self._read("SELECT DISTINCT subject FROM records WHERE kind = 'equivocation'", ())
        return {subject for (subject,) in rows}

    def _read(self, sql: str, args: Sequence[object]) -> list[tuple]:
        """The rows of a query of the index, once it holds every ledger entry (_level). A read the disk fails
        (an I/O error) raises StoreError, which the services that read the store catch, as for writes."""
        self._level()
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as error:
            raise _unreadable(error) from error

    def _read_one(self, sql: str, args: Sequence[object]) -> tuple | None:
        """The first row of `_read`, or None (the queries it serves name a unique key)."""
        rows = self._read(sql, args)
        return rows[0] if rows else None

    def append(self, records: Sequence[Record]) -> int:
        """Append accepted records durably, each following its issuer's head; the ledger index of the first.

        All or nothing: if the index or the ledger cannot be written, neither keeps any of the batch, the heads
        stay, and StoreError (or LedgerError) is raised; a later append is taken once they can be."""
        heads: dict[str, Head] = {}
        for r in records:
            head = heads.get(r.iss) or self._heads.get(r.iss)
            if (r.seq, r.prev) != ((head.seq + 1, head.id) if head else (1, None)):
                raise ValueError(f"records: {r.iss} seq {r.seq} does not follow its head {head}")
            heads[r.iss] = Head(r.seq, r.id)
        self._level()
        if self._unsaved >= _INDEX_COMMIT_ROWS:
            self._save_index()  # before the ledger: a commit that fails refuses this batch, not one stored already
        first = self.ledger.size
        try:
            self._begin()
            self._insert(first, records)
            self.ledger.append([r.raw for r in records])
        except BaseException as error:
            self._drop_batch(first)  # the index must not name entries the ledger lacks
            if isinstance(error, sqlite3.Error):
                raise StoreError(_unwritable(error)) from error
            raise
        self._unsaved += len(records)
        self._indexed = self.ledger.size
        self._heads.update(heads)
        return first

    def _begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN")

    def _insert(self, first: int, records: Sequence[Record]) -> None:
        """Index rows of `records`, the ledger's entries from `first` on, in the open index transaction."""
        self._db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", [
            (first + i, r.id, r.iss, r.seq, r.kind, _index_subject(r)) for i, r in enumerate(records)])

    def _drop_batch(self, first: int) -> None:
        """Delete the index rows of the batch being appended, the entries from `first` on; or, if the transaction
        holds no earlier rows, roll it back (it holds the index's write lock). If SQLite rolled the transaction back
        on its own (SQLITE_FULL may), the earlier rows went too (_lost). A delete, not a savepoint: a savepoint has
        SQLite journal each index page a batch touches, a fifth of an append's CPU (benchmarks/ingest.py)."""
        if self._unsaved and self._db.in_transaction:
            try:
                self._db.execute("DELETE FROM records WHERE idx >= ?", (first,))
                return
            except sqlite3.Error:
                pass
        self._lost()

    def _lost(self) -> None:
        """Roll the open index transaction back, if SQLite has not: its rows are replayed from the ledger (_level)."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._unsaved = 0
        self._indexed = None

    def _level(self, *, save: bool = False) -> None:
        """Bring the index level with the ledger after a rollback lost rows of it (on open, after a crash did;
        committing as it goes if `save`); StoreError while it cannot be written, so that no read answers as if
        those entries were not stored, and nothing is appended after them. A read's replay is committed by the
        next append (or close): a read succeeds while the disk is full."""
        if self._unsaved and not self._db.in_transaction:  # rolled back by SQLite on its own
            self._lost()
        if self._indexed == self.ledger.size:
            return
        try:
            self._catch_up_index(save)
        except sqlite3.Error as error:
            self._lost()
            raise StoreError(_unwritable(error)) from error

    def _save_index(self) -> None:
        """Commit the open index transaction; if that fails, roll it back (_lost) and raise StoreError."""
        if self._db.in_transaction:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                self._lost()
                raise StoreError(_unwritable(error)) from error
        self._unsaved = 0

    def _catch_up_index(self, save: bool) -> None:
        """Index the ledger entries past the index's last, following their issuers' heads."""
        if self._indexed is None:
            (self._indexed,) = self._db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM records").fetchone()
            if 0 < self._indexed <= self.ledger.size:
                (last,) = self._db.execute("SELECT id FROM records WHERE idx = ?", (self._indexed - 1,)).fetchone()
                if last != record_id(self.ledger.entry(self._indexed - 1)):
                    raise StoreError(
                        f"{INDEX_FILE}: its record {self._indexed - 1} is not the one {LEDGER_FILE} holds there: the "
                        "index and the ledger are of different data directories (was one copied from another "
                        f"node's?); if {LEDGER_FILE} is this node's, move the index aside and restart to rebuild it"
                    )
        if self._indexed > self.ledger.size:
            raise StoreError(
                f"{INDEX_FILE}: indexes {self._indexed} records but {LEDGER_FILE} holds {self.ledger.size}:"
                " the index belongs to another ledger; move it aside and restart to rebuild it"
            )
        step = 1000
        for start in range(self._indexed, self.ledger.size, step):
            records = [load_stored(e) for e in self.ledger.entries(start, min(start + step, self.ledger.size))]
            self._begin()
            self._insert(start, records)
            self._unsaved += len(records)
            self._indexed = start + len(records)
            self._heads.update((r.iss, Head(r.seq, r.id)) for r in records)
            if save and self._unsaved >= _INDEX_COMMIT_ROWS:
                self._save_index()

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


class CommittedIndex:
    """The index as committed when this opened: the rows of the ledger entries before `end` (a commit holds a
    prefix of them, and they are never rolled back). Its own connection, which one thread at a time may use while
    the store's goes on in another: those entries stay as read, the store's later ones are past `end`."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = _connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
        except sqlite3.Error as error:
            raise _unreadable(error) from error
        (self.end,) = self._read("SELECT COALESCE(MAX(idx) + 1, 0) FROM records", ())[0]

    def revoked_by(self, revoker: str, after: int, limit: int) -> list[tuple[int, str, int]]:
        """As RecordStore.revoked_by, of the entries before `end`, and the first `limit` of them."""
        return _revokes(self._read, revoker, after, self.end, limit)

    def ids_of(self, kind: str, *, before: int, excluding: Iterable[str] = ()) -> Iterator[bytes]:
        """The record id of every record of `kind` at a ledger index below `before` (at most `end`) that none of
        `excluding` issued, in ledger order, read ID_PAGE rows at a time: at 10^6 digests, a list of them all
        (RecordStore.ids_of) held 390 MB while it lasted."""
        try:
            cursor = self._db.execute(*_ids_query(kind, 0, min(before, self.end), excluding))
            while rows := cursor.fetchmany(ID_PAGE):
                yield from (bytes(rid) for (rid,) in rows)
        except sqlite3.Error as error:
            raise _unreadable(error) from error

    def close(self) -> None:
        self._db.close()

    def _read(self, sql: str, args: Sequence[object]) -> list[tuple]:
        return _query(self._db, sql, args)


class RecordReader:
    """The records of a data directory, read beside the node that appends them (or with it stopped) and writing
    nothing: the records ledger as it stood at `open` (read-only: WAL lets it read past the node's appends), its
    records found by the index's committed rows and, past them, by reading the ledger's entries (the node commits its
    index every few thousand rows, and one that died leaves it behind until its next start replays the rest)."""

    def __init__(self, ledger: Ledger, index: sqlite3.Connection | None) -> None:
        self.ledger = ledger
        self._db = index
        self._indexed = 0  # ledger entries the committed index rows cover (a prefix: rows are committed in order)
        if index is not None:
            (end,) = _query(index, "SELECT COALESCE(MAX(idx) + 1, 0) FROM records", ())[0]
            self._indexed = min(end, ledger.size)  # the node may have committed rows since the ledger was opened

    @classmethod
    def open(cls, directory: Path) -> RecordReader:
        """FileNotFoundError if there is no records ledger; LedgerError or StoreError, naming the file, if the ledger
        or the index is not one. A missing index is no error: the ledger is read whole."""
        ledger = Ledger.open(directory / LEDGER_FILE, read_only=True)  # first: rows committed since are past its size
        path = directory / INDEX_FILE
        index = None
        try:
            if path.exists():
                index = _connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
                check(index, path, _FORMAT, StoreError)
            return cls(ledger, index)
        except BaseException as error:
            if index is not None:
                index.close()
            ledger.close()
            if isinstance(error, sqlite3.Error):
                raise _unreadable(error) from error
            raise

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        self.ledger.close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scan(self, *, issuer: str, kind: str) -> Iterator[Record]:
        """Every record of `issuer` of `kind`, oldest first, as RecordStore.scan; StoreError if the index names a
        record the ledger does not hold there (the two are of different data directories)."""
        rows = [] if self._db is None else _query(
            self._db, "SELECT idx, seq FROM records WHERE iss = ? AND kind = ? AND idx < ? ORDER BY idx",
            (issuer, kind, self._indexed))
        for idx, seq in rows:
            record = load_stored(self.ledger.entry(idx))
            if (record.iss, record.seq, record.kind) != (issuer, seq, kind):
                raise StoreError(f"{INDEX_FILE}: its record {idx} is not the one {LEDGER_FILE} holds there: the index "
                                 "and the ledger are of different data directories")
            yield record
        for start in range(self._indexed, self.ledger.size, 1000):
            for entry in self.ledger.entries(start, min(start + 1000, self.ledger.size)):
                record = load_stored(entry)
                if record.iss == issuer and record.kind == kind:
                    yield record


def _query(db: sqlite3.Connection, sql: str, args: Sequence[object]) -> list[tuple]:
    """The rows of a query of an index opened read-only; StoreError if it cannot be read."""
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.Error as error:
        raise _unreadable(error) from error


def _ids_query(kind: str, start: int, before: int, excluding: Iterable[str]) -> tuple[str, tuple]:
    """The query of `ids_of`: the ids of the records of `kind` at ledger indexes [start, before) none of `excluding`
    issued, in ledger order."""
    excluding = tuple(excluding)
    return (f"SELECT id FROM records WHERE kind = ? AND idx >= ? AND idx < ? AND iss NOT IN "
            f"({', '.join('?' * len(excluding))}) ORDER BY idx", (kind, start, before, *excluding))


def _revokes(read: Callable[[str, Sequence[object]], list[tuple]], revoker: str, after: int, before: int,
             limit: int) -> list[tuple[int, str, int]]:
    """`revoked_by` through `read`: the revokes of `revoker` between ledger indexes `after` and `before`, the first
    `limit` of them (-1: all). The record each names is found in the same query: a query a revoke cost 2.5 to 4
    times as much (30 us a revoke, 0.7-1.3 s for 20,000)."""
    # (the acceptor takes a revoke only after what it names: one row, before it)
    return read("SELECT r.idx, v.iss, v.seq FROM records r JOIN records v ON v.id = from_hex(r.subject) "
                "WHERE r.iss = ? AND r.kind = 'revoke' AND r.idx > ? AND r.idx < ? ORDER BY r.idx LIMIT ?",
                (revoker, after, before, limit))


_SUBJECT_KINDS = ("vouch", "revoke", "digest", "equivocation")  # the kinds _index_subject gives a subject


def _index_subject(record: Record) -> str | None:
    if isinstance(record.body, RevokeBody):
        return record.body.record.hex()
    return subject_of(record)


def _unreadable(error: sqlite3.Error) -> StoreError:
    """A read of the index that failed with `error`: its disk's failure (ledger.disk_failure), or else that the index
    cannot be read."""
    return StoreError(read_failure(Path(INDEX_FILE), error))


def _unwritable(error: sqlite3.Error) -> str:
    return (f"{INDEX_FILE}: cannot be written ({error}); no record of a refused batch is stored, and records are "
            "taken again once the index can be written (a full disk: once it has room)")


# What an operator can do about an index that will not open: it is derived data.
_REBUILD = "remove it (and its -wal and -shm files) and it is rebuilt from the records ledger"
_FORMAT = FileFormat("a record index", 0x564E4958, 1, frozenset({"records"}), remedy=_REBUILD)  # "VNIX"


def _connect(database: str | Path, **options: bool) -> sqlite3.Connection:
    """A connection to an index, with `from_hex` (SQLite's unhex, which came in 3.41) for revokes' subjects."""
    db = sqlite3.connect(database, isolation_level=None, **options)
    db.create_function("from_hex", 1, bytes.fromhex, deterministic=True)
    return db


def _open_index(path: Path) -> sqlite3.Connection:
    try:
        db = _connect(path)
        try:
            claim(db, path, _FORMAT, StoreError)
            use_wal(db)
            db.execute("PRAGMA synchronous = NORMAL")  # derived data: a lost tail is replayed from the ledger
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()  # (and rolls back a mark half made)
            raise
    except sqlite3.DatabaseError as e:  # (its disk failing, a full one, is not the file's fault: ledger.disk_failure)
        raise StoreError(open_failure(path, e, f"{path}: not a record index: {e}; {_REBUILD}")) from None
    return db
