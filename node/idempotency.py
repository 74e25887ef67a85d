"""Idempotency keys for `POST /v1/events` (IETF draft-ietf-httpapi-idempotency-key-header): a batch retried with the
same key is answered from the first reply and never appended twice. Kept in `idempotency.db` for WINDOW_MS, as
long as any event of the batch could be accepted again: dated up to MAX_SKEW_MS ahead of the clock at the key's
first use, an event is taken until MAX_AGE_MS after its date (node.events).

Crash safety without a shared transaction: the key's row, naming the audit-log range the batch will occupy, is
committed before the batch is appended. Appends are atomic and come from one writer, so on opening, a row whose
range lies beyond the audit log's size belongs to an append that never happened, and is dropped. A key whose
append failed while the node runs is forgotten at once (`release`); if even that write fails (a full disk), the key
is looked up as absent until it is forgotten, which `settle` does before the audit log grows again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .events import MAX_AGE_MS, MAX_SKEW_MS

IDEMPOTENCY_FILE = "idempotency.db"
WINDOW_MS = MAX_AGE_MS + MAX_SKEW_MS
MAX_KEY = 255


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
"""


@dataclass(frozen=True)
class StoredReply:
    """What the first request with a key was answered, and a hash of its body."""

    fingerprint: bytes
    status: int
    reply: bytes


def check_key(value: str) -> str | None:
    """Why an Idempotency-Key header value is unusable, or None if it is fine."""
    if not 0 < len(value) <= MAX_KEY or not (value.isascii() and value.isprintable()):
        return f"Idempotency-Key: must be 1 to {MAX_KEY} printable ASCII characters"
    return None


class IdempotencyStore:
    """Keys of batches already appended to the audit log, with their replies. Callable from any thread (the
    ingest commits run in a worker thread); calls are serialised by a lock."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path
        self._lock = threading.Lock()
        self._unreleased: set[str] = set()  # keys of failed appends not yet deleted (`release`)

    @classmethod
    def open(cls, data_dir: Path, *, log_size: int) -> IdempotencyStore:
        """Open the store beside the audit log, whose current size is `log_size`; raises IdempotencyStoreError if
        the file is not an SQLite database."""
        try:
            db = sqlite3.connect(data_dir / IDEMPOTENCY_FILE, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")  # a lost row would let a retried batch count twice
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise IdempotencyStoreError(f"{data_dir / IDEMPOTENCY_FILE}: not an idempotency store ({error})") from None
        db.execute("DELETE FROM keys WHERE first + count > ?", (log_size,))
        return cls(db, data_dir / IDEMPOTENCY_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def lookup(self, key: str) -> StoredReply | None:
        with self._lock:
            if key in self._unreleased:
                return None
            row = self._db.execute("SELECT fingerprint, status, reply FROM keys WHERE key = ?", (key,)).fetchone()
        return None if row is None else StoredReply(row[0], row[1], row[2])

    def reserve(self, key: str, reply: StoredReply, *, first: int, count: int, at: int) -> None:
        """Record the key for a batch about to be appended at [first, first + count); durable on return. Raises
        IdempotencyStoreError naming the file if it cannot be written."""
        with self._lock, self._writing("reserve"):
            self._db.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, reply.fingerprint, first, count, reply.status, reply.reply, at),
            )

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as error:  # a full disk, say
            raise IdempotencyStoreError(f"{self._path}: {what}: {error}") from error

    def release(self, key: str) -> None:
        """Forget a reserved key whose append failed. Never raises: a key that cannot be deleted now is looked up as
        absent, and deleted by `settle`."""
        with self._lock:
            self._unreleased.add(key)
        try:
            self.settle()
        except IdempotencyStoreError:
            pass  # the caller raises its append's error; `settle` raises this one before the next append

    def settle(self) -> None:
        """Delete the keys of failed appends `release` could not (raises IdempotencyStoreError if it still cannot):
        before the audit log grows, or a later batch would fill their ranges and they would be answered as stored."""
        with self._lock, self._writing("forget the keys of failed appends"):
            for key in sorted(self._unreleased):
                self._db.execute("DELETE FROM keys WHERE key = ?", (key,))
                self._unreleased.discard(key)

    def expire(self, before: int) -> int:
        """Forget keys first used before `before` (ms); the number forgotten."""
        with self._lock:
            return self._db.execute("DELETE FROM keys WHERE at < ?", (before,)).rowcount
