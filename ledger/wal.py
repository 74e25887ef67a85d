"""Write-ahead logging for an SQLite file that other connections may be opening at the same moment.

SQLite quirk (3.40.1, observed on this machine): `PRAGMA journal_mode = WAL` on a new file answers SQLITE_BUSY
("database is locked") at once, without calling the connection's busy handler, while another connection is
switching the same file. Four threads opening one fresh file failed this way in 21 of 300 trials, so `vouchnet
agent new` starting beside a node could fail with "not a credential registry". The mode is kept in the file, so a
retry finds it set or sets it.

A WAL file keeps its largest size: a checkpoint lets the next writes start again at its head, but never shrinks it
unless the connection's `journal_size_limit` says to (SQLite's default is no limit), so one large transaction
(a repair, a replay, an import) left its size on the disk for the life of the file. use_wal sets the limit.
"""

from __future__ import annotations

import sqlite3
import time

_FIRST_PAUSE = 0.001  # s, doubled per retry
_LONGEST_PAUSE = 0.05  # s
# What a checkpoint truncates the WAL back to: twice what SQLite's automatic checkpoint (every 1,000 pages of 4 KiB)
# lets it reach, so ordinary writes never pay for a truncation.
WAL_SIZE_LIMIT = 8 << 20


def use_wal(db: sqlite3.Connection, *, timeout: float = 10.0, size_limit: int = WAL_SIZE_LIMIT) -> str:
    """Put `db` in WAL mode, retrying for up to `timeout` s while another connection holds the file, with its WAL
    truncated back to `size_limit` bytes by each checkpoint that finds it larger; the journal mode SQLite answers
    ("wal", or another where the file cannot use one)."""
    db.execute(f"PRAGMA journal_size_limit = {int(size_limit)}")
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
