"""The agent credentials this org minted, in `credentials.db` beside the org key: each one's index in the org's
status lists (node.credential_status) and whether it is revoked.

`vouchnet agent new` and `vouchnet agent revoke` write it without a running node; the node reads it to serve its
status lists. SQLite in WAL mode lets both happen at once; an index is committed before its credential is signed,
so no two credentials ever share one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from ledger.disk_failure import open_failure
from ledger.sqlite_format import FileFormat, claim
from ledger.wal import use_wal
from ledger.writes_under_way import writing
from vouching.schema import InvalidRecord, text

from .credential_status import LIST_ENTRIES

CREDENTIALS_FILE = "credentials.db"
MAX_REASON = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_credentials (
    idx INTEGER PRIMARY KEY,  -- position in the org's status lists, from 0
    agent TEXT NOT NULL,
    name TEXT,
    issued_at INTEGER NOT NULL,  -- s
    expires_at INTEGER NOT NULL,  -- s
    revoked_at INTEGER,  -- s; NULL while valid
    reason TEXT
);
CREATE INDEX IF NOT EXISTS agent_credentials_agent ON agent_credentials (agent);
CREATE INDEX IF NOT EXISTS agent_credentials_name ON agent_credentials (name);
-- A status list is read at every request for it: the revoked few, without scanning the list's 131,072 rows.
CREATE INDEX IF NOT EXISTS agent_credentials_revoked ON agent_credentials (idx) WHERE revoked_at IS NOT NULL;
"""
FORMAT = FileFormat("a credential registry", 0x564E4352, 1, frozenset({"agent_credentials"}))  # "VNCR"


class RegistryError(Exception):
    """The registry cannot be opened, or a request names no credential; the message says which."""


class NotKept(Exception):
    """Within `CredentialRegistry.kept_only`, an answer that would have to be read: it was not kept, or the registry
    changed since it was read. Nothing but data_version was read."""


@dataclass(frozen=True)
class IssuedCredential:
    """One minted credential as `vouchnet agent list` shows it; times in s since the epoch."""

    index: int
    agent: str
    name: str | None
    issued_at: int
    expires_at: int
    revoked_at: int | None
    reason: str | None


class CredentialRegistry:
    """Indexes and revocations of this org's agent credentials. Any thread, one at a time (the node's API reads it
    in worker threads, and its kept answers on the event loop, node.credentials_api)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._kept: dict[tuple[str, tuple[int, ...]], int | None] = {}  # (query, values) -> answer, see `_counted`
        self._kept_version: tuple[int, int] | None = None
        self._kept_only = False  # see `kept_only`

    @classmethod
    def open(cls, data_dir: Path) -> CredentialRegistry:
        try:
            db = sqlite3.connect(data_dir / CREDENTIALS_FILE, isolation_level=None, timeout=10.0,
                                 check_same_thread=False)
            claim(db, data_dir / CREDENTIALS_FILE, FORMAT, RegistryError)
            use_wal(db)
            db.execute("PRAGMA synchronous = FULL")  # a lost revocation would let a credential live on
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            path = data_dir / CREDENTIALS_FILE
            raise RegistryError(open_failure(path, error, f"{path}: not a credential registry ({error})")) from None
        return cls(db)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def kept_only(self) -> Iterator[None]:
        """Within it, the answers kept until the registry changes (`_counted`: `lists`, `revoked_count`,
        `latest_expiry`) are served if it has not changed since they were read, and anything that would read more
        than data_version raises NotKept: for the event loop (node.credentials_api). data_version is read from the
        WAL index in shared memory, 5-11 us, and a WAL reader takes no lock a writer holds: it never waited for
        another process holding a write transaction open, committing or checkpointing (measured with the busy
        timeout at 0, which fails rather than waits)."""
        self._kept_only = True
        try:
            yield
        finally:
            self._kept_only = False

    def allocate(self, agent: str, *, name: str | None, issued_at: int, expires_at: int) -> int:
        """The index of a new credential for `agent`, durable on return (sign the credential after this)."""
        with self._transaction():
            (index,) = self._execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM agent_credentials").fetchone()
            self._execute("INSERT INTO agent_credentials (idx, agent, name, issued_at, expires_at) "
                          "VALUES (?, ?, ?, ?, ?)", (index, agent, name, issued_at, expires_at))
        return index

    def revoke(self, selector: str | int, *, reason: str, at: int) -> list[IssuedCredential]:
        """Revoke the valid credentials of the agent whose did or name is `selector`, or the one at index
        `selector`; the ones revoked now. RegistryError if it names no credential at all, or if `reason` is not
        printable text of 1 to MAX_REASON characters (the rule of a revoke record's reason, DESIGN §3)."""
        try:
            text(reason, "reason", MAX_REASON)
        except InvalidRecord as error:
            raise RegistryError(str(error)) from None
        where, values = ("idx = ?", (selector,)) if isinstance(selector, int) else ("agent = ? OR name = ?",
                                                                                    (selector, selector))
        with self._transaction():
            matching = self._select(f"WHERE {where}", values)
            if not matching:
                raise RegistryError(f"{selector}: no credential of this org has this "
                                    f"{'index' if isinstance(selector, int) else 'agent did or name'}")
            fresh = [c for c in matching if c.revoked_at is None]
            self._db.executemany("UPDATE agent_credentials SET revoked_at = ?, reason = ? WHERE idx = ?",
                                 [(at, reason, c.index) for c in fresh])
        return [replace(c, revoked_at=at, reason=reason) for c in fresh]

    def issued(self) -> list[IssuedCredential]:
        return self._select("", ())

    def latest_expiry(self, issued_by: int) -> int | None:
        """When the last unrevoked credential issued at or before `issued_by` (s) expires (s), if there is one. (In
        whole seconds, a credential issued in the second a key was retired may have been minted by that key.)

        Asked at every (public) JWKS request once a key is a day retired, and a scan of every credential (52 ms at
        131,072): kept until the registry changes (`_counted`)."""
        return self._counted("SELECT MAX(expires_at) FROM agent_credentials WHERE issued_at <= ? AND revoked_at IS "
                             "NULL", (issued_by,))

    def lists(self) -> int:
        """How many status lists the issued credentials span (at least one, all zeros when none was issued). Asked
        at every (public) GET of a list: kept until the registry changes (`_counted`)."""
        top = self._counted("SELECT MAX(idx) FROM agent_credentials", ())
        return 1 if top is None else top // LIST_ENTRIES + 1

    def revoked_positions(self, list_number: int) -> list[int]:
        """Positions of the revoked credentials in one status list."""
        first = list_number * LIST_ENTRIES
        rows = self._execute("SELECT idx FROM agent_credentials WHERE revoked_at IS NOT NULL AND idx >= ? "
                             "AND idx < ?", (first, first + LIST_ENTRIES))
        return [index - first for (index,) in rows]

    def revoked_count(self, list_number: int) -> int:
        """How many credentials of one status list are revoked: which ones, too, as revocations are never undone.
        Asked at every (public) GET of the list, and a count of its revoked (13-25 ms at 65,536): kept until the
        registry changes (`_counted`)."""
        first = list_number * LIST_ENTRIES
        count = self._counted("SELECT COUNT(*) FROM agent_credentials WHERE revoked_at IS NOT NULL AND idx >= ? "
                              "AND idx < ?", (first, first + LIST_ENTRIES))
        assert count is not None  # (a COUNT is a number)
        return count

    def _counted(self, query: str, values: tuple[int, ...]) -> int | None:
        """The one value `query` selects with `values`, as it was when last asked unless a connection, this one or
        another process's (`vouchnet agent`), changed the registry since."""
        (other_writes,) = self._db.execute("PRAGMA data_version").fetchone()
        if (version := (other_writes, self._db.total_changes)) != self._kept_version:
            self._kept, self._kept_version = {}, version
        if (query, values) not in self._kept:
            (self._kept[query, values],) = self._execute(query, values).fetchone()
        return self._kept[query, values]

    def _execute(self, statement: str, values: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """`statement` run with `values`; NotKept within `kept_only`, having run nothing."""
        if self._kept_only:
            raise NotKept(statement)
        return self._db.execute(statement, values)

    def _select(self, condition: str, values: tuple[object, ...]) -> list[IssuedCredential]:
        rows = self._execute("SELECT idx, agent, name, issued_at, expires_at, revoked_at, reason "
                             f"FROM agent_credentials {condition} ORDER BY idx", values)
        return [IssuedCredential(*row) for row in rows]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, named while it runs (ledger.writes_under_way)."""
        with writing(CREDENTIALS_FILE):
            self._execute("BEGIN IMMEDIATE")  # writers queue here, so MAX(idx) + 1 is never taken twice
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
