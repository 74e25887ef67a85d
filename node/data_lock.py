"""One process at a time writes a data directory: the node, or a command that changes its chain while it is
stopped (`vouchnet key rotate`). An advisory lock (flock) on `node.lock`, released by the kernel when the holder
exits, however it exits."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "node.lock"


class DataDirBusy(Exception):
    """Another process (a running node, most likely) holds the data directory."""


@contextmanager
def locked_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's lock for the block; raises DataDirBusy at once if another process holds it."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(f"{data_dir}: in use by another process (is its node running? stop it first)") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
