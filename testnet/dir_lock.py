"""One command at a time changes a testnet: `up`, `run` and `down` hold an exclusive lock on `DIR/testnet.lock`
(flock(2), which the kernel releases when the holder ends, a crash or SIGKILL included, so a stale lock never stays),
and one started while another holds it is refused, naming the holder. Two `up`s at once each started the nodes the
other was starting, and each then failed, blaming a node, and stopped them; a second `run` rewrote the first's roots
and restarted its nodes mid-traffic. Linux and the BSDs (fcntl)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .made_dirs import missing, unmake
from .state import STATE_FILE

LOCK_FILE = "testnet.lock"
KERNEL_LOCKS = Path("/proc/locks")  # Linux: the locks held, one a line (`1: FLOCK  ADVISORY  WRITE PID MJ:MN:INODE ..`)


class Busy(Exception):
    """Another command holds the testnet directory's lock."""


@contextmanager
def one_at_a_time(directory: Path, command: str) -> Iterator[None]:
    """Hold `directory`'s lock while the body runs, `command` (e.g. "testnet up") written in it with our pid for a
    refused command to name; raises Busy at once if another process holds it. The directories made here for the lock,
    its parents too, are removed again if the body made no testnet in it."""
    made = missing(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "a process that has not said which"
            raise Busy(f"{directory} is in use by another command (pid {holder}): wait for it to end, or stop it "
                       "(Ctrl-C in its terminal), then try again") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}: vouchnet {command}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock
        if made and not (directory / STATE_FILE).exists():
            path.unlink(missing_ok=True)
            unmake(made)  # (those something else was put in meanwhile are left as they are)


def holder(directory: Path) -> str | None:
    """What holds `directory`'s lock now (`PID: vouchnet COMMAND`, as one_at_a_time wrote it), or None where nothing
    does or it cannot be told (no /proc/locks: not Linux). Read from the kernel's table of locks, not by trying the
    lock, which would refuse a command starting meanwhile."""
    path = directory / LOCK_FILE
    try:
        stat = path.stat()
        held = KERNEL_LOCKS.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    key = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"  # as the kernel prints a lock's file
    if not any("FLOCK" in fields and key in fields for fields in map(str.split, held.splitlines())):
        return None
    try:
        said = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        said = ""
    return said or "a process that has not said which"
