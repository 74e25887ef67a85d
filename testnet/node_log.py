"""A testnet node's log file (DESIGN §9), written and followed. A process of its own reads what the node writes to
its stdout and stderr from a pipe and appends it to node.log, rotated by size as logging.handlers.RotatingFileHandler
does (node.log.1 the newest of `backups` older files; the oldest dropped): appended to for ever, a long experiment's
logs filled the disk. The rotation is here, not in the node: a node logs to stderr, and whatever runs it (systemd's
journal, a container runtime, the testnet) keeps and rotates what it writes, crash tracebacks and libraries' prints
included.

Run as a script, `python -I node_log.py PATH MAX_BYTES BACKUPS` (stdlib only: it imports neither the testnet nor
the node), it ends when the node closes the pipe, by exiting or being killed. It reads on whatever it cannot write
(a full disk): a node blocked writing to a full pipe would stop. `testnet logs` prints the last lines of the log
across its files (`last_lines`), and `-f` then follows node.log across rotations, as `tail -F` does.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import BinaryIO, TextIO

MAX_BYTES = 10 * 2**20  # a file's size past which it is rotated
BACKUPS = 5  # rotated files kept: a node's log takes at most (1 + BACKUPS) * MAX_BYTES
CHUNK = 65536  # bytes read at most at once: a longer line is written in pieces


def check_limits(max_bytes: int, backups: int) -> None:
    """ValueError unless a log rotated past `max_bytes` keeping `backups` is bounded."""
    if max_bytes < 1 or backups < 1:  # RotatingFileHandler with no backup appends for ever
        raise ValueError(f"a rotated log needs max_bytes >= 1 and backups >= 1 (got {max_bytes}, {backups})")


def copy(source: BinaryIO, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
    """Append each line of `source` to `path` until it ends, rotating first where the line would take the file
    past `max_bytes`. Bytes are written as read, UTF-8 or not (as Latin-1 text: a character a byte, so that the
    handler's sizes, in characters, are bytes)."""
    check_limits(max_bytes, backups)
    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="latin-1")
    handler.terminator = ""  # the node's lines end in their own newlines
    try:
        for chunk in iter(lambda: source.readline(CHUNK), b""):
            handler.emit(logging.makeLogRecord({"msg": chunk.decode("latin-1")}))
    finally:
        handler.close()


def last_lines(path: Path, log: TextIO, count: int, backups: int = BACKUPS) -> list[str]:
    """The last `count` lines of the log whose newest file is `path`, open as `log` (read to its end), oldest first:
    node.log's, and before them those of the rotated files node.log.1 to .`backups` that they need, newest first
    (one rotated after `log` was opened, which is `log`'s own file, is skipped: read already)."""
    lines = log.readlines()
    opened = os.fstat(log.fileno()).st_ino
    for number in range(1, backups + 1):
        if len(lines) >= count:
            break
        try:
            with open(f"{path}.{number}", encoding="utf-8", errors="replace") as older:
                if os.fstat(older.fileno()).st_ino != opened:
                    lines[:0] = older.readlines()
        except FileNotFoundError:
            break
    return lines[-count:] if count > 0 else []


def follow(path: Path, log: TextIO, wait: Callable[[], None] = lambda: time.sleep(0.2)) -> Iterator[str]:
    """Each line written to `path` from where `log`, open on it, stands; for ever. Once the file is rotated, the
    rest of the old one, then the new one's from its start."""
    try:
        while True:
            if line := log.readline():
                yield line
            elif _rotated(path, log):
                yield from log.readlines()  # written before the rotation, after the last read
                log.close()
                log = open(path, encoding="utf-8", errors="replace")
            else:
                wait()
    finally:
        log.close()


def _rotated(path: Path, log: TextIO) -> bool:
    """Whether `path` is a file other than the one `log` reads (False while it is missing: the writer is between
    renaming the old file and opening the new one)."""
    try:
        return os.stat(path).st_ino != os.fstat(log.fileno()).st_ino
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    copy(sys.stdin.buffer, Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
