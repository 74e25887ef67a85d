"""The bound on `vouchnet run`'s stop (README "What `run` runs": SIGINT or SIGTERM stops it within 2 seconds), kept
when a disk never finishes an fsync: a store's write or close then never returns, and the node's tasks and closes
waiting for it would hold the stop up for ever. Past the bound, the process ends from a thread of its own (the node's
may be the one held), with one line naming the stores whose writes or closes had not returned
(ledger.writes_under_way) and exit status 1. Nothing acknowledged is lost (DESIGN §4): every store commits durably
before its write returns, and a write that never returned was never acknowledged; the stores not yet closed are left
as a kill leaves them, which each one's next open takes (records.index replayed from records.ledger, SQLite's WAL)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

from ledger.writes_under_way import under_way

log = logging.getLogger("vouchnet.node")
LEFT_EXIT = 1  # the exit status of a stop cut short (`vouchnet run` exits 1 when the node fails)


class StopDeadline:
    """Armed as a stop begins (`arm`), disarmed once it ended (`disarm`): if `seconds` pass in between, the line is
    logged and `exit(LEFT_EXIT)` called (os._exit: Python's own exit would wait for the node's tasks and closes)."""

    def __init__(self, seconds: float, *, exit: Callable[[int], object] = os._exit) -> None:
        self.seconds = seconds
        self._exit = exit
        self._lock = threading.Lock()
        self._over = False  # disarmed, or expired
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        """Start counting `seconds` (once: a second signal changes nothing)."""
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self._expired)
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        """The stop ended in time (or was never begun): nothing is cut short."""
        with self._lock:
            self._over = True
        if self._timer is not None:
            self._timer.cancel()

    def _expired(self) -> None:
        with self._lock:
            if self._over:
                return
            self._over = True
        left = under_way()
        if left:
            log.error(f"the stop did not end within {self.seconds:g} s: a write or close of {', '.join(left)} had not "
                      "returned (a disk not finishing an fsync?); exiting without it: what that write held was never "
                      "acknowledged, and all the node acknowledged before is on disk",
                      extra={"fields": {"left": ",".join(left)}})
        else:
            log.error(f"the stop did not end within {self.seconds:g} s, no store's write or close under way (a task "
                      "of the node did not end); exiting without it: all the node acknowledged is on disk")
        _flush_output()
        self._exit(LEFT_EXIT)


def _flush_output() -> None:
    """What the process wrote and still buffers, written before it ends without Python's exit (which would flush it)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # (a closed pipe, a closed stream: nothing more can be said there)
            pass
