"""SQLite connections whose reads fail as a failing disk's or a damaged file's do, for the stores' refusals."""

import sqlite3


def sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    """The error SQLite raises with `message` and the extended result `code`."""
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


class FailingReads:
    """A store's connection, whose reads fail as on a disk I/O error (writes go through); or with `error`."""

    def __init__(self, db, error: sqlite3.Error | None = None) -> None:
        self._db = db
        self._error = error or sqlite3.OperationalError("disk I/O error")

    def execute(self, sql: str, *args):
        if sql.lstrip().startswith("SELECT"):
            raise self._error
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._db, name)
