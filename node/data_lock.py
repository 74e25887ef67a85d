"""One process at a time writes a data directory: the node, or a command that changes its chain while it is
stopped (`vouchnet key rotate`). An advisory lock (flock) on `node.lock`, released by the kernel when the holder
exits, however it exits; the kernel also says which process holds it (/proc/locks, on Linux), which the refusal names.

The org key has a lock of its own, `key.lock`: commands that sign with the key beside a running node or none
(`vouchnet agent new`, `audit export`) hold it shared from reading the key to their last signature, and replacing
the key (a rotation) holds it alone, so that nothing is signed with a key after the rotation that retires it."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "node.lock"
KEY_LOCK_FILE = "key.lock"


class DataDirBusy(Exception):
    """Another process (a running node, most likely) holds the data directory."""


@contextmanager
def locked_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's lock for the block; raises DataDirBusy at once if another process holds it."""
    def busy(fd: int) -> str:
        pid = holder(fd)
        return (f"{data_dir}: in use by another process{'' if pid is None else f', pid {pid}'} (is its node running?"
                " stop it first)")

    with _flock(data_dir / LOCK_FILE, fcntl.LOCK_EX, busy):
        yield


@contextmanager
def signing_with_key(data_dir: Path) -> Iterator[None]:
    """Hold the org key's lock shared for the block (read the key and sign within it); raises DataDirBusy at once
    if a rotation is replacing the key."""
    with _flock(data_dir / KEY_LOCK_FILE, fcntl.LOCK_SH,
                lambda fd: f"{data_dir}: a key rotation is replacing the org key; run this again once it has finished"):
        yield


@contextmanager
def replacing_key(data_dir: Path) -> Iterator[None]:
    """Hold the org key's lock alone for the block; raises DataDirBusy at once if a command is signing with the key."""
    with _flock(data_dir / KEY_LOCK_FILE, fcntl.LOCK_EX,
                lambda fd: f"{data_dir}: a command is signing with the org key (vouchnet agent new or audit export); "
                "run this again once it has finished"):
        yield


@contextmanager
def _flock(path: Path, operation: int, busy: Callable[[int], str]) -> Iterator[None]:
    """Hold an flock on `path` for the block; DataDirBusy(busy(fd)) at once if another process holds it. A symbolic
    link at `path` is refused (OSError ELOOP), not followed: the data directory's owner could plant one for a command
    run as root, which takes the lock before node.strict_modes refuses a directory of another user."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        raise OSError(errno.ELOOP, "a symbolic link where vouchnet keeps a lock file: not followed, as a command run "
                      "as root would create or lock the file it names; remove it", str(path)) from None
    try:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(busy(fd)) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def holder(fd: int, locks: Path = Path("/proc/locks")) -> int | None:
    """The pid of a process holding an flock on the file open at `fd`, as `locks` (Linux's /proc/locks) says; None
    where it is not known (another system, a holder outside this process's pid namespace, the lock since released)."""
    st = os.fstat(fd)
    file = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = locks.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()  # "1: FLOCK ADVISORY WRITE 1234 fe:00:2146451 0 EOF"; a waiter's has "->" after "1:"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == file and fields[4].isdigit() and int(fields[4]):
            return int(fields[4])
    return None
