"""A durable Merkle log (DESIGN.md §4): entries and RFC 9162 subtree hashes in one SQLite file.

WAL mode, synchronous=FULL, one transaction per appended batch; every subtree hash is stored (ledger.tiles), so
opening reads O(log n) rows and never replays the log.
"""

from __future__ import annotations

import errno
import operator
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from . import bundles, merkle, tiles
from .disk_failure import disk_failed, disk_failure
from .errors import EntryPruned, LedgerError, StoredHashError
from .files import sync_directory
from .wal import use_wal
from .writes_under_way import writing

APPLICATION_ID = 0x564E4C47  # "VNLG" at offset 68 of the SQLite header: this file is a vouchnet ledger
SCHEMA_VERSION = 1  # the header's user_version: checked before any table is read, so a new schema is free
_WAL_LIMIT = 64 << 20  # the WAL file is truncated back to this after a large batch is checkpointed
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = f"""
BEGIN;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
{bundles.SCHEMA}
{tiles.SCHEMA}
INSERT INTO meta VALUES ('tile_width', {tiles.TILE_WIDTH}), ('size', 0), ('pruned', 0);
COMMIT;
"""


class _Hashes(dict[merkle.Node, bytes]):
    """A merkle.HashReader over hashes held in memory."""

    def read_hashes(self, nodes: Sequence[merkle.Node]) -> list[bytes]:
        return [self[n] for n in nodes]


def _frontier_nodes(size: int) -> list[merkle.Node]:
    """The complete subtrees covering leaves [0, size), largest first: all a tree needs to grow and to root."""
    return [(level, (size >> level) - 1) for level in reversed(range(size.bit_length())) if (size >> level) & 1]


def _int(name: str, value: object) -> int:
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name}: must be an int, got {type(value).__name__}") from None


class Ledger:
    """One append-only Merkle log in one SQLite file. Open it with `Ledger.open(path)`.

    Layout: `meta` (schema version, tile width, size, pruned), `entries` (ledger.bundles: up to 16 entries to a
    row) and `tiles` (ledger.tiles: the hash of every complete subtree, 16 to a row). The frontier of the tree
    (the O(log n) subtrees covering it) is kept in memory, so appending and the current root read no hashes.

    Threading: calls are serialised by a lock, and the connection is opened with check_same_thread=False, so a
    Ledger may be called from any thread (trio.to_thread workers differ from call to call); concurrent calls
    wait for each other. Only one process may append: a second writer is detected and refused with LedgerError.
    """

    def __init__(
        self, path: Path, db: sqlite3.Connection, *, read_only: bool = False, to_repair: bool = False
    ) -> None:
        """Check the opened file is a ledger whose size agrees with its rows; use `Ledger.open`."""
        self._path = path
        self._db: sqlite3.Connection | None = db
        self._lock = threading.RLock()  # reentrant: `rewriting` holds it while its block reads and replaces hashes
        self._entries = bundles.EntryStore(db, path)
        self._tiles = tiles.TileStore(db, path)
        self._rewriting = False
        db.execute("PRAGMA query_only = ON")  # checking must never write, whatever the file holds
        # One snapshot for all the checks: another connection may append meanwhile (the node, while `vouchnet audit
        # export` opens its audit log), and a size read before an append and rows read after it disagree.
        db.execute("BEGIN")
        try:
            self._size, self._pruned = self._check_meta(db)
            last = self._entries.check(self._size, self._pruned)
            self._tiles.check(self._size)
            if (not to_repair and last is not None
                    and merkle.leaf_hash(last) != self._tiles.read_hashes([(0, self._size - 1)])[0]):
                raise StoredHashError(f"{path}: corrupt: entry {self._size - 1} does not match its stored leaf hash")
            self._load_frontier()
        finally:
            if db.in_transaction:  # (SQLite may have ended it on an error)
                db.execute("ROLLBACK")
        if read_only:
            return
        db.execute("PRAGMA query_only = OFF")
        if use_wal(db, size_limit=_WAL_LIMIT) != "wal":
            raise LedgerError(f"{path}: SQLite cannot use WAL mode for this file")
        db.execute("PRAGMA synchronous = FULL")

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False, to_repair: bool = False) -> Ledger:
        """Open the ledger at `path`, creating an empty one if nothing is there.

        With `read_only`, the ledger must exist (FileNotFoundError) and is never written (appending and pruning
        raise LedgerError): for checking it beside the process that appends to it, whose writes WAL mode lets it
        read past, one committed state at a time.

        Raises LedgerError if the file is not a ledger, is from a newer schema, or its size disagrees with its
        rows; the file is then left exactly as it was. StoredHashError (a LedgerError) if the last entry's stored
        hash is not its hash, unless `to_repair`: opened to rebuild the stored hashes (ledger.tree_repair), whose
        root and proofs are then not to be trusted until `rewriting` has replaced the wrong ones.
        """
        path = Path(path)
        if not read_only and not os.path.lexists(path):
            _create(path)
        _check_header(path)
        mode = "ro" if read_only else "rw"
        db = sqlite3.connect(
            f"{path.absolute().as_uri()}?mode={mode}", uri=True, isolation_level=None, check_same_thread=False
        )
        try:
            return cls(path, db, read_only=read_only, to_repair=to_repair)
        except sqlite3.Error as e:
            db.close()
            if disk_failed(e):
                raise LedgerError(disk_failure(path, e)) from e
            raise LedgerError(f"{path}: corrupt or not a ledger: {e}") from e
        except BaseException:
            db.close()
            raise

    def _load_frontier(self) -> None:
        """Read the frontier (the subtrees covering the tree) from the stored hashes, and compute the root."""
        nodes = _frontier_nodes(self._size)
        self._frontier = _Hashes(zip(nodes, self._tiles.read_hashes(nodes)))
        self._root = merkle.root_hash(self._size, self._frontier)

    def _check_meta(self, db: sqlite3.Connection) -> tuple[int, int]:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{self._path}: schema version {version} is newer than this vouchnet supports ({SCHEMA_VERSION});"
                " upgrade vouchnet to open it"
            )
        if version != SCHEMA_VERSION:
            raise LedgerError(f"{self._path}: not a ledger: schema version {version}")
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
        except sqlite3.OperationalError as e:
            raise LedgerError(f"{self._path}: not a ledger: {e}") from e
        if meta.get("tile_width") != tiles.TILE_WIDTH:
            raise LedgerError(f"{self._path}: corrupt: tile_width is {meta.get('tile_width')!r}")
        size, pruned = meta.get("size"), meta.get("pruned")
        if not (isinstance(size, int) and isinstance(pruned, int) and 0 <= pruned <= size):
            raise LedgerError(f"{self._path}: corrupt: size {size!r} and pruned {pruned!r} are not 0 <= pruned <= size")
        return size, pruned

    @contextmanager
    def _using(self, what: str) -> Iterator[sqlite3.Connection]:
        """One call at a time; storage failures become LedgerError naming the file and the operation."""
        with self._lock:
            if self._db is None:
                raise ValueError("ledger is closed")
            try:
                yield self._db
            except sqlite3.Error as e:
                raise LedgerError(f"{self._path}: {what}: {e}") from e

    @contextmanager
    def _transaction(self, db: sqlite3.Connection) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, refused if another writer has moved the stored size."""
        with writing(self._path.name):
            try:
                db.execute("BEGIN IMMEDIATE")
                (stored,) = db.execute("SELECT value FROM meta WHERE key = 'size'").fetchone()
                if stored != self._size:
                    raise LedgerError(
                        f"{self._path}: stored size is {stored}, this Ledger has {self._size}: another process wrote"
                        " to the ledger, or an earlier write failed after reaching the disk; reopen it"
                    )
                yield
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")

    @property
    def size(self) -> int:
        """The number of entries."""
        return self._size

    @property
    def pruned(self) -> int:
        """Entries [0, pruned) keep only their leaf hashes (see `prune`)."""
        return self._pruned

    def append(self, entries: Sequence[bytes]) -> int:
        """Append a batch in one transaction, durable when this returns; the index of the batch's first entry."""
        if isinstance(entries, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"entries: must be a list of bytes, got one {type(entries).__name__}")
        batch = list(entries)
        for i, e in enumerate(batch):
            if type(e) is not bytes:
                raise TypeError(f"entries[{i}]: must be bytes, got {type(e).__name__}")
        with self._using("append") as db:
            old, new = self._size, self._size + len(batch)
            if not batch:
                return old
            levels = merkle.appended_levels(old, list(map(merkle.leaf_hash, batch)), self._frontier)
            tile_rows = self._tiles.rows_after(old, levels)
            with self._transaction(db):
                self._entries.write(self._entries.rows(old, batch))
                self._tiles.write(tile_rows)
                db.execute("UPDATE meta SET value = ? WHERE key = 'size'", (new,))
            self._tiles.written(tile_rows)
            self._frontier = self._grown_frontier(old, new, levels)
            self._root = merkle.root_hash(new, self._frontier)
            self._size = new
            return old

    def _grown_frontier(self, old: int, new: int, levels: list[list[bytes]]) -> _Hashes:
        """The frontier of `new` leaves: each node is either in the old frontier or appended in `levels`."""
        frontier = _Hashes()
        for level, idx in _frontier_nodes(new):
            old_node = self._frontier.get((level, idx))
            frontier[(level, idx)] = old_node if old_node is not None else levels[level][idx - (old >> level)]
        return frontier

    def root(self, size: int | None = None) -> bytes:
        """RFC 9162 MTH of the first `size` entries (default: all of them)."""
        with self._using("root"):
            size = self._size_arg("size", size)
            return self._root if size == self._size else merkle.root_hash(size, self._tiles)

    def entry(self, index: int) -> bytes:
        """The bytes of entry `index`; EntryPruned if they were pruned to their hash."""
        with self._using("entry") as db:
            index = self._index_arg(index, self._size)
            return self._read(db, index, index + 1)[0]

    def entries(self, start: int, end: int) -> list[bytes]:
        """The bytes of entries [start, end), for paging through the log; EntryPruned if any was pruned."""
        with self._using("entries") as db:
            start, end = _int("start", start), _int("end", end)
            if not 0 <= start <= end <= self._size:
                raise IndexError(f"start, end: must satisfy 0 <= start <= end <= size={self._size}, got {start}, {end}")
            return self._read(db, start, end)

    def _read(self, db: sqlite3.Connection, start: int, end: int) -> list[bytes]:
        """Entries [start, end); EntryPruned if any was pruned, here or by the writer beside this reader (a second
        Ledger on the file, as `vouchnet audit export` opens beside the node): entries pruned since this one read the
        prune mark read as b"" or as rows gone, so then the mark is read again, after the rows."""
        try:
            entries = self._entries.read(start, end, self._pruned)
        except LedgerError:
            if not self._pruned_since(db, start):
                raise
        else:
            if b"" not in entries or not self._pruned_since(db, start):
                return entries
        raise EntryPruned(f"entry {start}: pruned (entries before {self._pruned} keep only their hashes)")

    def _pruned_since(self, db: sqlite3.Connection, index: int) -> bool:
        """Whether the stored prune mark, read again, has passed entry `index` since this Ledger last read it."""
        (stored,) = db.execute("SELECT value FROM meta WHERE key = 'pruned'").fetchone()
        self._pruned = max(self._pruned, stored)
        return index < self._pruned

    def stored_hashes(self, level: int, start: int, end: int) -> list[bytes]:
        """The stored hashes of nodes (level, start) to (level, end - 1): complete subtrees of 2**level entries, from
        which roots and proofs are computed (ledger.tree_check compares them with the entries)."""
        with self._using("stored_hashes"):
            level, start, end = _int("level", level), _int("start", start), _int("end", end)
            count = self._size >> level if level >= 0 else -1
            if not 0 <= start <= end <= count:
                raise IndexError(f"level, start, end: must satisfy 0 <= start <= end <= size >> level = {count}, got"
                                 f" {level}, {start}, {end}")
            return self._tiles.read_run(level, start, end) if start < end else []

    @contextmanager
    def rewriting(self) -> Iterator[None]:
        """One transaction for `replace_stored_hashes` (ledger.tree_repair): committed if the block ends normally,
        rolled back if it raises (or the process dies). The block's thread has the ledger to itself, and its reads
        see its replacements; the frontier and root are read anew from the stored hashes after it."""
        with self._using("rewriting") as db:
            try:
                with self._transaction(db):
                    self._rewriting = True
                    yield
            finally:
                self._rewriting = False
                self._tiles.forget()
                self._load_frontier()

    def replace_stored_hashes(self, level: int, hashes: dict[int, bytes]) -> None:
        """Inside `rewriting`: store the given hashes (index -> hash) for nodes (level, index) of the tree."""
        with self._using("replace_stored_hashes"):
            if not self._rewriting:
                raise LedgerError(f"{self._path}: stored hashes are replaced only inside Ledger.rewriting()")
            count = self._size >> level if _int("level", level) >= 0 else -1
            for index, digest in hashes.items():
                if not 0 <= _int("index", index) < count:
                    raise IndexError(f"index: must be in [0, size >> level = {count}), got {index} at level {level}")
                if type(digest) is not bytes or len(digest) != merkle.HASH_SIZE:
                    raise ValueError(f"hashes[{index}]: must be {merkle.HASH_SIZE} bytes")
            self._tiles.write(self._tiles.replaced(level, hashes))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1: the audit path of entry `index` in the tree of `size` (default: the current size)."""
        with self._using("inclusion_proof"):
            size = self._size_arg("size", size)
            return merkle.inclusion_proof(self._index_arg(index, size), size, self._tiles)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4.1: proof that the tree of `old` is a prefix of the tree of `new` (default: current)."""
        with self._using("consistency_proof"):
            new = self._size_arg("new", new)
            old = _int("old", old)
            if not 0 <= old <= new:
                raise ValueError(f"old: must be in [0, new={new}], got {old}")
            return merkle.consistency_proof(old, new, self._tiles)

    def prune(self, before: int) -> None:
        """Drop the bytes of entries [0, before), keeping their leaf hashes: roots and proofs stay valid.

        Durable when this returns and never undone; pruning no further than already pruned does nothing.
        The freed pages are reused by later appends (the file does not shrink).
        """
        with self._using("prune") as db:
            before = self._size_arg("before", before)
            if before <= self._pruned:
                return
            with self._transaction(db):
                self._entries.prune(before)
                db.execute("UPDATE meta SET value = ? WHERE key = 'pruned'", (before,))
            self._pruned = before

    def _size_arg(self, name: str, size: int | None) -> int:
        if size is None:
            return self._size
        size = _int(name, size)
        if not 0 <= size <= self._size:
            raise ValueError(f"{name}: must be in [0, {self._size}] (the ledger's size), got {size}")
        return size

    def _index_arg(self, index: int, size: int) -> int:
        index = _int("index", index)
        if not 0 <= index < size:
            raise IndexError(f"index: must be in [0, {size}), got {index}")
        return index

    def close(self) -> None:
        """Close the file; further calls raise ValueError. Closing twice is harmless."""
        with writing(self._path.name), self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _check_header(path: Path) -> None:
    """Refuse anything but a vouchnet ledger before SQLite touches the file."""
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise LedgerError(f"{path}: not a ledger: not an SQLite database")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id != APPLICATION_ID:
        raise LedgerError(
            f"{path}: not a ledger: an SQLite database with application_id {app_id:#x}"
            f" (a ledger has {APPLICATION_ID:#x})"
        )


def _create(path: Path) -> None:
    """Create an empty ledger atomically: built under a temporary name, then linked into place."""
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such directory for a new ledger", str(path.parent))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.creating")
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            use_wal(db)
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(_SCHEMA)
        finally:
            db.close()  # checkpoints the WAL into the file, syncs it and removes the WAL
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # created by someone else meanwhile: open theirs
    finally:
        tmp.unlink(missing_ok=True)
    sync_directory(path.parent)
