"""Telling an SQLite file's disk failing from the file being damaged (DESIGN.md §4, storage): a store whose open fails
for want of space (SQLite cannot size the -shm file of a WAL database: SQLITE_IOERR_SHMSIZE), or a read of which the
disk fails (SQLITE_IOERR_READ), is sound, and must not be called damaged or not the store it is, nor the operator
told to move it aside."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# SQLite's primary result codes of a disk failing, not of the file's contents (nor of a path missing: CANTOPEN)
_DISK_FAILURES = frozenset({sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY})


def disk_failed(error: sqlite3.Error) -> bool:
    """Whether `error` is the disk's failure (full, failing, read-only), not the file's contents."""
    return getattr(error, "sqlite_errorcode", 0) & 0xFF in _DISK_FAILURES


def disk_failure(path: Path, error: sqlite3.Error, *, done: str = "opened") -> str:
    """What to tell the operator of a store at `path` that could not be `done` (opened, read) as its disk failed with
    `error`."""
    return (f"{path}: cannot be {done}, as its storage failed ({error}: a full disk, or one failing or read-only): the "
            "file itself is not found corrupt; free space or fix the disk, then try again")


def open_failure(path: Path, error: sqlite3.Error, otherwise: str) -> str:
    """What to tell of a store at `path` whose open failed with `error`: its disk's failure, or else `otherwise`."""
    return disk_failure(path, error) if disk_failed(error) else otherwise


def read_failure(path: Path, error: sqlite3.Error) -> str:
    """What to tell of a store at `path` a read of which failed with `error`: its disk's failure, or else that it
    cannot be read."""
    return disk_failure(path, error, done="read") if disk_failed(error) else f"{path}: cannot be read ({error})"
