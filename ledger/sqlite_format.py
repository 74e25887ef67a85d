"""What an SQLite file of a data directory is, and in which format (DESIGN.md §4, storage): the application_id and
user_version of its header, as PostgreSQL's PG_VERSION says for its directory.

A file is claimed before anything is written to it (not even its journal mode): one of another kind copied in its
place, or one a later vouchnet wrote in a format this one does not know, is refused and left as it was.

A later format bumps `FileFormat.version`; this version refuses it, and the later one reads the versions from
`FileFormat.oldest` on, upgrading the file in the transaction that marks it (`claim`'s `upgrade`). A file written
before files were marked (both marks 0) is taken as version 1 if its tables are all the kind's, and marked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .disk_failure import open_failure

# (a start then refuses the file missing while the data directory's stores.list lists it, naming what a new one loses
# and the command that accepts it: `vouchnet stores accept-loss`)
_RESTORE = ("restore this node's own file from a backup, or move it aside to start with a new one (the start then says "
            "what that loses, and how to accept it)")


@dataclass(frozen=True)
class FileFormat:
    """The marks of one kind of file: `kind` says what it is ("a digest state file"), `tables` those it may hold,
    `remedy` what an operator does about a file that is not one, `oldest` the earliest version its store upgrades
    (default: `version`, none earlier)."""

    kind: str
    application_id: int
    version: int
    tables: frozenset[str]
    remedy: str = _RESTORE
    oldest: int | None = None


def claim(db: sqlite3.Connection, path: Path, fmt: FileFormat, error: type[Exception],
          upgrade: Callable[[sqlite3.Connection, int], None] | None = None) -> None:
    """Mark a new (empty) file, or one from before marks holding only `fmt.tables`, as `fmt`; check any other file's
    marks. A file holding tables of a version from `fmt.oldest` to before `fmt.version` is upgraded first, in the
    same transaction, by `upgrade(db, its version)`. Raises `error` naming the file, what it holds and what to do;
    nothing is written then. sqlite3.Error if the file cannot be written (nothing is written then either)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        marks = check(db, path, fmt, error)
        version = marks[1] or 1  # (a file from before marks is version 1)
        if version < fmt.version and _tables(db):
            assert upgrade is not None, f"{fmt.kind}: version {version} is readable (oldest), but nothing upgrades it"
            upgrade(db, version)
        if marks != (fmt.application_id, fmt.version):
            db.execute(f"PRAGMA application_id = {fmt.application_id}")
            db.execute(f"PRAGMA user_version = {fmt.version}")
        db.execute("COMMIT")
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")


def check(db: sqlite3.Connection, path: Path, fmt: FileFormat, error: type[Exception]) -> tuple[int, int]:
    """The file's marks (application_id, user_version); raises `error` if they, or its tables, are not `fmt`'s. For a
    file opened read-only (beside the node that writes it), as `claim` but marking nothing."""
    try:
        (app_id,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        tables = _tables(db)
    except sqlite3.DatabaseError as e:  # not an SQLite database, or a damaged one, or its disk failing
        raise error(open_failure(path, e, f"{path}: not {fmt.kind} ({e}): {fmt.remedy}")) from None
    problem = _problem(app_id, 1 if (app_id, version) == (fmt.application_id, 0) else version, tables, fmt)
    if problem is not None:
        raise error(f"{path}: {problem}")
    return app_id, version


def _tables(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")}


def _problem(app_id: int, version: int, tables: set[str], fmt: FileFormat) -> str | None:
    if app_id == fmt.application_id:
        if version > fmt.version:
            return (f"{fmt.kind} in format version {version}, newer than this vouchnet reads ({fmt.version}): it was "
                    f"written by a later vouchnet; run that version, or {fmt.remedy}")
        return _older_than_read(version, fmt)
    if app_id != 0 or version != 0:
        return (f"not {fmt.kind}: an SQLite database with application_id {app_id:#x} and user_version {version} "
                f"({fmt.kind} has {fmt.application_id:#x}): another file copied in its place? {fmt.remedy}")
    if foreign := sorted(tables - fmt.tables):
        return f"not {fmt.kind}: an SQLite database holding tables {', '.join(foreign)}: another file copied in its " \
               f"place? {fmt.remedy}"
    return _older_than_read(1, fmt) if tables else None  # (version 1, from before marks; none: a new file)


def _older_than_read(version: int, fmt: FileFormat) -> str | None:
    """What is wrong with a file of `fmt`'s kind in format `version` (not newer than `fmt.version`), if anything."""
    if version < (fmt.oldest or fmt.version):
        return f"{fmt.kind} in format version {version}, which this vouchnet cannot upgrade to {fmt.version}"
    return None
