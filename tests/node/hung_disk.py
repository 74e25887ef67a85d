"""A disk that never finishes a write, for a node run in a process of its own (ForkedCli.spawn's `before`), from the
moment a file `trigger` exists; `trigger`.hung is made as the first write held begins (it then waits for ever).
hang_fsyncs holds an fsync through Python (ledger.files' whole-file writes, made on worker threads); SQLite's own
fsyncs are not Python's, so hang_ledger_appends holds an append to a ledger in its transaction instead, where its
COMMIT's fsync would wait (a record's, on the node's own thread)."""

import os
import threading
from pathlib import Path

from ledger import tiles

_never = threading.Event()


def hang_fsyncs(trigger: str, name: str) -> None:
    """Hold each fsync of a file whose path holds `name`."""
    fsync = os.fsync

    def hung(fd: int) -> None:
        if os.path.exists(trigger) and name in os.readlink(f"/proc/self/fd/{fd}"):
            _held(trigger)
        fsync(fd)

    os.fsync = hung


def hang_ledger_appends(trigger: str, name: str) -> None:
    """Hold each append to the ledger file `name` (records.ledger, audit.ledger)."""
    write = tiles.TileStore.write

    def hung(self: tiles.TileStore, rows: list) -> None:
        if os.path.exists(trigger) and self._path.name == name:
            _held(trigger)
        write(self, rows)

    tiles.TileStore.write = hung


def _held(trigger: str) -> None:
    Path(f"{trigger}.hung").touch()
    _never.wait()
