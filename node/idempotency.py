"""Idempotency keys for `POST /v1/events` (IETF draft-ietf-httpapi-idempotency-key-header): a batch retried with the
same key is answered from the first reply and never appended twice. Kept in `idempotency.db` for WINDOW_MS, as
long as any event of the batch could be accepted again: dated up to MAX_SKEW_MS ahead of the clock at the key's
first use, an event is taken until MAX_AGE_MS after its date (node.events).

The OTLP spans stored (DESIGN §7), by (trace_id, span_id) and what they say, likewise: an exporter retries a request
it got no answer to, or a 429 or 5xx (OTLP/HTTP §Retryable Response Codes), and a span stored once is not stored
again. A retry says what the span said; a span of the same ids saying something else is no retry, and is stored too:
else one who saw a span's ids (a W3C traceparent names the caller's span) and sent a span of its own under them first
had the real one dropped as "already received". Only spans with ids of the spec's lengths (16 and 8 bytes) are kept;
each row names its event's audit-log entry.

Crash safety without a shared transaction: the key's row, naming the audit-log range the batch will occupy, is
committed before the batch is appended (a request's span rows likewise, in one commit). Appends are atomic and come
from one writer, so on opening, a row whose range lies beyond the audit log's size belongs to an append that never
happened, and is dropped. A key (or a request's span rows) whose append failed while the node runs is forgotten at
once (`abandon`: the rows from the failed append's first entry on); if even that write fails (a full disk), `settle`
forgets them before the audit log grows again, and a key is looked up as absent until then.

`POST /v1/vouches` and `POST /v1/revocations` keys (DESIGN §8), per route: each row names the record signed for the
request, committed after it is signed and before it is stored (`reserve_record`). A row whose record the store does
not hold is of a store that failed or never happened (the node's trio thread signs, reserves and stores at one go,
so none is under way when a key is looked up): the route signs anew, and the row is replaced. Kept as long as event
keys.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cbor2

from ledger.disk_failure import open_failure
from ledger.sqlite_format import FileFormat, claim
from ledger.wal import use_wal
from ledger.writes_under_way import writing

from .events import MAX_AGE_MS, MAX_SKEW_MS, Event

IDEMPOTENCY_FILE = "idempotency.db"
WINDOW_MS = MAX_AGE_MS + MAX_SKEW_MS
MAX_KEY = 255
_TRACE_HEX, _SPAN_HEX = 32, 16
_SPAN_KEY_BYTES = (_TRACE_HEX + _SPAN_HEX) // 2
# Span ids looked up a statement at a time, two bound values each: within SQLite's default limit of 32766.
_LOOKUP_CHUNK = 4096
SPAN_CONTENT_BYTES = 8  # of a span's row id, after its span_key: what its event says (span_content)
SPAN_CONTENT_VERSION = b"vouchnet span 1"  # span_content's encoding: a new one is a new version, the last one matched
_EXPIRE_CHUNK = 50_000  # span rows deleted a statement (IdempotencyStore.expire): some 60 ms
_NO_ENTRY = 2**63 - 1  # beyond every audit-log entry


class IdempotencyStoreError(Exception):
    """idempotency.db cannot be opened as one; the message names the file."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY,
    fingerprint BLOB NOT NULL,
    first INTEGER NOT NULL,
    count INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reply BLOB NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_at ON keys (at);
-- The keys of appends that never happened, found at every start without reading every key (IdempotencyStore.open:
-- SQLite uses it for that expression, spelt so).
CREATE INDEX IF NOT EXISTS keys_end ON keys (first + count);
-- The keys of vouches and revocations, by route: the id of the record signed for the first request.
CREATE TABLE IF NOT EXISTS record_keys (
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    record BLOB NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (route, key)
);
CREATE INDEX IF NOT EXISTS record_keys_at ON record_keys (at);
-- A stored span's trace and span id (24 bytes) and span_content (8; none in a row stored before it was kept, its
-- legacy_span_content in one stored before it was versioned), by the audit-log entry of its event.
CREATE TABLE IF NOT EXISTS spans (entry INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE);
-- When each request's spans were stored, by the first entry of its append: what expires them.
CREATE TABLE IF NOT EXISTS span_appends (first INTEGER PRIMARY KEY, at INTEGER NOT NULL);
"""
FORMAT = FileFormat("an idempotency store", 0x564E494B, 1,  # "VNIK"
                    frozenset({"keys", "record_keys", "spans", "span_appends"}))


@dataclass(frozen=True)
class RecordKey:
    """The record signed for the first request with a key, and a hash of that request's body."""

    fingerprint: bytes
    record: bytes


@dataclass(frozen=True)
class StoredReply:
    """What the first request with a key was answered, and a hash of its body."""

    fingerprint: bytes
    status: int
    reply: bytes


def span_key(trace_id: str, span_id: str) -> bytes | None:
    """The stored id of a span, from its hex trace and span ids; None if they are not of the spec's lengths, or
    either is all zeros, which the spec says is no valid id (OTel trace API §SpanContext): spans of such ids (a no-op
    or misconfigured tracer's, every one alike) are not one span, and each is stored as it comes."""
    if len(trace_id) != _TRACE_HEX or len(span_id) != _SPAN_HEX or not int(trace_id, 16) or not int(span_id, 16):
        return None
    return bytes.fromhex(trace_id + span_id)


def span_content(event: Event) -> bytes:
    """What a span says, the event it became, as a BLAKE2b hash of SPAN_CONTENT_BYTES personalised with the version
    of its encoding (SPAN_CONTENT_VERSION): deterministic CBOR (RFC 8949 §4.2.1) of the array [agent, ts, category,
    name, outcome, duration_ms or null, high_risk, [[key, value], ...] of attrs sorted by key]. A span retried says
    the same, whatever becomes of Event's repr: a field Event gains goes at the end, left out while at its default,
    so that spans stored before still match. (An array: a map's canonical key order took twice the CPU.)"""
    attrs = [[key, event.attrs[key]] for key in sorted(event.attrs)]
    fields = [event.agent, event.ts, event.category, event.name, event.outcome, event.duration_ms, event.high_risk,
              attrs]
    return hashlib.blake2b(cbor2.dumps(fields, canonical=True), digest_size=SPAN_CONTENT_BYTES,
                           person=SPAN_CONTENT_VERSION).digest()


def legacy_span_content(event: Event) -> bytes:
    """span_content as vouchnet wrote it before SPAN_CONTENT_VERSION: a hash of the event's repr. Rows of it match
    for as long as they are kept (WINDOW_MS after a node's upgrade); Event's fields must not change before this goes
    (else it hashes another repr)."""
    return hashlib.blake2b(repr(event).encode(), digest_size=SPAN_CONTENT_BYTES).digest()


def check_key(value: str) -> str | None:
    """Why an Idempotency-Key header value is unusable, or None if it is fine."""
    if not 0 < len(value) <= MAX_KEY or not (value.isascii() and value.isprintable()):
        return f"Idempotency-Key: must be 1 to {MAX_KEY} printable ASCII characters"
    return None


class IdempotencyStore:
    """Keys of batches already appended to the audit log, with their replies, and of vouches and revocations.
    Callable from any thread (the ingest commits run in a worker thread); calls are serialised by a lock."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path
        self._lock = threading.Lock()
        self._abandoned: int | None = None  # rows from this audit-log entry on are of failed appends (`abandon`)

    @classmethod
    def open(cls, data_dir: Path, *, log_size: int) -> IdempotencyStore:
        """Open the store beside the audit log, whose current size is `log_size`; raises IdempotencyStoreError if
        the file is not an idempotency store in this version's format."""
        try:
            db = sqlite3.connect(data_dir / IDEMPOTENCY_FILE, isolation_level=None, check_same_thread=False)
            claim(db, data_dir / IDEMPOTENCY_FILE, FORMAT, IdempotencyStoreError)
            use_wal(db)
            db.execute("PRAGMA synchronous = FULL")  # a lost row would let a retried batch count twice
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            path = data_dir / IDEMPOTENCY_FILE
            problem = open_failure(path, error, f"{path}: not an idempotency store ({error})")
            raise IdempotencyStoreError(problem) from None
        _forget_from(db, log_size)
        return cls(db, data_dir / IDEMPOTENCY_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def lookup(self, key: str, *, log_size: int | None = None) -> StoredReply | None:
        """The reply stored under `key`, or None. With `log_size`, the audit log's size now, a key whose batch the log
        does not hold yet (its append under way) is looked up as absent: its reply tells the batch is stored."""
        with self._lock:
            row = self._db.execute("SELECT fingerprint, status, reply, first, count FROM keys WHERE key = ?",
                                   (key,)).fetchone()
        if row is None or (self._abandoned is not None and row[3] >= self._abandoned):
            return None
        if log_size is not None and row[3] + row[4] > log_size:
            return None
        return StoredReply(row[0], row[1], row[2])

    def reserve(self, key: str, reply: StoredReply, *, first: int, count: int, at: int) -> None:
        """Record the key for a batch about to be appended at [first, first + count); durable on return. Raises
        IdempotencyStoreError naming the file if it cannot be written."""
        with self._lock, self._writing("reserve"):
            self._db.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, reply.fingerprint, first, count, reply.status, reply.reply, at),
            )

    def lookup_record(self, route: str, key: str) -> RecordKey | None:
        """The record id stored under `key` for `route` ("vouches", "revocations"), or None."""
        with self._lock:
            row = self._db.execute("SELECT fingerprint, record FROM record_keys WHERE route = ? AND key = ?",
                                   (route, key)).fetchone()
        return None if row is None else RecordKey(row[0], row[1])

    def reserve_record(self, route: str, key: str, stored: RecordKey, *, at: int) -> None:
        """Record the key of a request whose record is signed and about to be stored; durable on return, replacing
        a row whose record was never stored. Raises IdempotencyStoreError naming the file if it cannot be written."""
        with self._lock, self._writing("reserve"):
            self._db.execute("INSERT OR REPLACE INTO record_keys VALUES (?, ?, ?, ?, ?)",
                             (route, key, stored.fingerprint, stored.record, at))

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """A write of `what`, named while it runs (ledger.writes_under_way), its SQLite errors said as the file's."""
        try:
            with writing(IDEMPOTENCY_FILE):
                yield
        except sqlite3.OperationalError as error:  # a full disk, say
            raise IdempotencyStoreError(f"{self._path}: {what}: {error}") from error

    def abandon(self, first: int) -> None:
        """Forget the key or span ids reserved for an append at audit-log entry `first` that failed: the rows from
        `first` on, as `open` forgets those of an append a crash cut short. Never raises: rows that cannot be deleted
        now are looked up as absent, and deleted by `settle`."""
        with self._lock:
            self._abandoned = first if self._abandoned is None else min(first, self._abandoned)
        try:
            self.settle()
        except IdempotencyStoreError:
            pass  # the caller raises its append's error; `settle` raises this one before the next append

    def settle(self) -> None:
        """Delete the rows of failed appends `abandon` could not (raises IdempotencyStoreError if it still cannot):
        before the audit log grows, or a later batch would fill their ranges and they would be answered as stored."""
        with self._lock, self._writing("forget the keys of failed appends"):
            if self._abandoned is not None:
                _forget_from(self._db, self._abandoned)
                self._abandoned = None

    def stored_spans(self, ids: Sequence[bytes]) -> dict[bytes, set[bytes]]:
        """Of the span ids (span_key) given, those stored, each with the span_content of each span stored under it
        (b"" for one stored before contents were kept, which any content is taken for); call `settle` first (failed
        appends' rows)."""
        stored: dict[bytes, set[bytes]] = {}
        with self._lock:
            for start in range(0, len(ids), _LOOKUP_CHUNK):
                chunk = ids[start:start + _LOOKUP_CHUNK]
                ranges = [bound for span in chunk for bound in (span, span + b"\xff" * SPAN_CONTENT_BYTES)]
                rows = self._db.execute(f"WITH wanted(low, high) AS (VALUES {','.join(['(?, ?)'] * len(chunk))}) "
                                        "SELECT id FROM wanted JOIN spans ON id BETWEEN low AND high", ranges)
                for (row,) in rows:
                    stored.setdefault(row[:_SPAN_KEY_BYTES], set()).add(row[_SPAN_KEY_BYTES:])
        return stored

    def reserve_spans(self, ids: Iterable[tuple[int, bytes]], *, first: int, at: int) -> None:
        """Record the spans of a request about to be appended at `first`, as (entry, span_key + span_content);
        durable on return. Raises IdempotencyStoreError naming the file if it cannot be written."""
        with self._lock, self._writing("reserve spans"):
            self._db.execute("BEGIN")
            try:
                self._db.execute("INSERT INTO span_appends VALUES (?, ?)", (first, at))
                self._db.executemany("INSERT INTO spans VALUES (?, ?)", ids)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT (a full disk) leaves it open; a failed insert may not
                    self._db.execute("ROLLBACK")
                raise

    def expire(self, before: int) -> int:
        """Forget keys first used, and spans stored, before `before` (ms); the number of keys forgotten. Spans go
        by request, up to the first one stored at or after `before` (so none later, if the clock stepped back),
        _EXPIRE_CHUNK of them a statement: an hour's spans are millions of rows, and the lookups and reservations of
        ingest go on between the statements."""
        with self._lock, writing(IDEMPOTENCY_FILE):
            row = self._db.execute("SELECT first FROM span_appends WHERE at >= ? ORDER BY first LIMIT 1",
                                   (before,)).fetchone()
            cut = _NO_ENTRY if row is None else row[0]
            forgotten = self._db.execute("DELETE FROM keys WHERE at < ?", (before,)).rowcount
            forgotten += self._db.execute("DELETE FROM record_keys WHERE at < ?", (before,)).rowcount
        while True:
            with self._lock, writing(IDEMPOTENCY_FILE):
                (floor,) = self._db.execute("SELECT min(entry) FROM spans").fetchone()
                if floor is None or floor >= cut:
                    return forgotten
                end = min(cut, floor + _EXPIRE_CHUNK)
                self._db.execute("DELETE FROM spans WHERE entry < ?", (end,))
                self._db.execute("DELETE FROM span_appends WHERE first < ?", (end,))


def _forget_from(db: sqlite3.Connection, entry: int) -> None:
    """Delete the keys and span ids reserved for appends at audit-log entry `entry` and after."""
    db.execute("DELETE FROM keys WHERE first + count > ?", (entry,))
    db.execute("DELETE FROM spans WHERE entry >= ?", (entry,))
    db.execute("DELETE FROM span_appends WHERE first >= ?", (entry,))
