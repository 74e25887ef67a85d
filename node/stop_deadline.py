"""The bound on `vouchnet run`'s stop (README "What `run` runs": a stop held up is cut short STOP_CUT_SECONDS
after the signal), kept when a disk never finishes an fsync: a store's write or close then never returns, and the
node's tasks and closes waiting for it would hold the stop up for ever. Past the bound, the process ends from a thread
of its own (the node's may be the one held), with one line naming the stores whose writes or closes had not returned
(ledger.writes_under_way), given SAY_SECONDS at most (a log the hung disk holds up must not hold the end), and exit
status 1. Nothing acknowledged is lost (DESIGN §4): every store commits durably before its write returns, and a write
that never returned was never acknowledged; the stores not yet closed are left as a kill leaves them, which each
one's next open takes (records.index replayed from records.ledger, SQLite's WAL).

The bound is armed by the signal itself (`armed_by_signals`), not by trio's reading of it: a write held on the node's
own thread (a record appended to records.ledger) holds trio's loop too, which would never read the signal."""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager

from ledger.writes_under_way import under_way

log = logging.getLogger("vouchnet.node")
LEFT_EXIT = 1  # the exit status of a stop cut short (`vouchnet run` exits 1 when the node fails)
# A stop held up past this (a store's write or close that never returns) is cut short; longer than the 2 s a stop
# takes (node.daemon.SHUTDOWN_SECONDS), so that a clean stop merely slowed by a loaded machine still ends cleanly.
STOP_CUT_SECONDS = 5.0
# Seconds a stop cut short gives its last line (and its child processes' end) before it exits without them: its
# stderr may be a pipe to a log writer whose disk is the one that hangs, full, its write (and the log's lock) held.
SAY_SECONDS = 1.0


class StopDeadline:
    """Armed as a stop begins (`arm`: by the signal, armed_by_signals), disarmed once it ended (`disarm`): if
    `seconds` pass in between, the line is logged and `exit(LEFT_EXIT)` called (os._exit: Python's own exit would
    wait for the node's tasks and closes)."""

    def __init__(self, seconds: float, *, exit: Callable[[int], object] = os._exit) -> None:
        self.seconds = seconds
        self._exit = exit
        self._lock = threading.Lock()
        self._over = False  # disarmed, or expired
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        """Start counting `seconds` (once: a second signal changes nothing); from any thread."""
        with self._lock:
            if self._timer is not None or self._over:
                return
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
        saying = threading.Thread(target=self._say_left, name="stop-cut-short", daemon=True)
        saying.start()
        saying.join(SAY_SECONDS)
        self._exit(LEFT_EXIT)

    def _say_left(self) -> None:
        """End the child processes, then log the line saying what the stop left, and flush it."""
        _end_child_processes()
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


@contextmanager
def armed_by_signals(deadline: StopDeadline, signals: Collection[int]) -> Iterator[None]:
    """While in the block (the node's run, whose end disarms `deadline`), arm `deadline` as one of `signals`
    arrives, whatever the node's thread is doing: each signal's handler in C (faulthandler's, whichever thread the
    signal interrupts) writes to a pipe a thread of this block reads, then calls the handler there was (trio's, which
    the block must be inside: chain). faulthandler writes the interrupted thread's traceback there, which is read and
    dropped; never blocking (a full pipe drops it)."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    threading.Thread(target=_arm_as_written, args=(read_end, deadline), name="stop-signal-watch", daemon=True).start()
    try:
        for signum in signals:
            faulthandler.register(signum, file=write_end, all_threads=False, chain=True)
        yield
    finally:
        deadline.disarm()
        for signum in signals:
            faulthandler.unregister(signum)
        os.close(write_end)  # (the thread reads its end to the end, and ends)


def _arm_as_written(read_end: int, deadline: StopDeadline) -> None:
    try:
        while os.read(read_end, 65536):
            deadline.arm()
    finally:
        os.close(read_end)


def _end_child_processes(wait: float = 0.5) -> None:
    """End the node's child processes (its record verifiers, [p2p] verify_processes), waiting `wait` seconds at most
    for them: left, each would find the node gone and write a traceback after the node's last line."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    ends = time.monotonic() + wait
    for child in children:
        child.join(max(0.0, ends - time.monotonic()))


def _flush_output() -> None:
    """What the process wrote and still buffers, written before it ends without Python's exit (which would flush it)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # (a closed pipe, a closed stream: nothing more can be said there)
            pass
