"""One process at a time writes a data directory: the node, or a command that changes its chain while it is
stopped (`vouchnet key rotate`). An advisory lock (flock) on `node.lock`, released by the kernel when the holder
exits, however it exits.

The org key has a lock of its own, `key.lock`: commands that sign with the key beside a running node or none
(`vouchnet agent new`, `audit export`) hold it shared from reading the key to their last signature, and replacing
the key (a rotation) holds it alone, so that nothing is signed with a key after the rotation that retires it."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "node.lock"
KEY_LOCK_FILE = "key.lock"


class DataDirBusy(Exception):
    """Another process (a running node, most likely) holds the data directory."""


@contextmanager
def locked_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's lock for the block; raises DataDirBusy at once if another process holds it."""
    with _flock(data_dir / LOCK_FILE, fcntl.LOCK_EX,
                f"{data_dir}: in use by another process (is its node running? stop it first)"):
        yield


@contextmanager
def signing_with_key(data_dir: Path) -> Iterator[None]:
    """Hold the org key's lock shared for the block (read the key and sign within it); raises DataDirBusy at once
    if a rotation is replacing the key."""
    with _flock(data_dir / KEY_LOCK_FILE, fcntl.LOCK_SH,
                f"{data_dir}: a key rotation is replacing the org key; run this again once it has finished"):
        yield


@contextmanager
def replacing_key(data_dir: Path) -> Iterator[None]:
    """Hold the org key's lock alone for the block; raises DataDirBusy at once if a command is signing with the key."""
    with _flock(data_dir / KEY_LOCK_FILE, fcntl.LOCK_EX,
                f"{data_dir}: a command is signing with the org key (vouchnet agent new or audit export); run this "
                "again once it has finished"):
        yield


@contextmanager
def _flock(path: Path, operation: int, busy: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(busy) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
