"""Write-ahead logging for an SQLite file that other connections may be opening at the same moment.

SQLite quirk (3.40.1, observed on this machine): `PRAGMA journal_mode = WAL` on a new file answers SQLITE_BUSY
("database is locked") at once, without calling the connection's busy handler, while another connection is
switching the same file. Four threads opening one fresh file failed this way in 21 of 300 trials, so `vouchnet
agent new` starting beside a node could fail with "not a credential registry". The mode is kept in the file, so a
retry finds it set or sets it.
"""

from __future__ import annotations

import sqlite3
import time

_FIRST_PAUSE = 0.001  # s, doubled per retry
_LONGEST_PAUSE = 0.05  # s


def use_wal(db: sqlite3.Connection, *, timeout: float = 10.0) -> str:
    """Put `db` in WAL mode, retrying for up to `timeout` s while another connection holds the file; the journal
    mode SQLite answers ("wal", or another where the file cannot use one)."""
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    while True:
        try:
            (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
            return str(mode)
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, _LONGEST_PAUSE)
