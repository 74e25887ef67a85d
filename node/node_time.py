"""The node's time (DESIGN §4, §7): what acceptance times, the closing and stamping of digests, and retention
follow. It is the wall clock, but a clock that stepped more than `CLOCK_STEP_MS` ahead of the time the node has seen
(the audit log's latest acceptance time or seal, and the clock's last reading taken plus the monotonic time since)
is taken only once it has stayed so for `CLOCK_HOLD_SECONDS` of monotonic time; meanwhile the node's time is the
time it has seen, running on with the monotonic clock. As CockroachDB's clock refuses a reading beyond its max offset,
but after a day instead of at once: one batch accepted while the clock ran a year ahead would set every later
acceptance time a year ahead (they never decrease), and the org would publish no digest for a year (an epoch is one
range of the log). An operator has a day to put the clock right (log line, `vouchnet_clock_held`).

What it gives up: a step ahead cannot be told from the node having been stopped, or its host suspended, for over a
day (CLOCK_MONOTONIC does not count a suspend). Such a node dates what it accepts in its first day from where it
stopped (the log's latest time, plus the time it has run since), its events a day late in its digests, which are
stamped with that time too (never ahead of peers' clocks, and after their epoch's end); after the day, the clock.
The hold outlives a restart (node.clock_hold): a reading never writes (it may be on the trio thread); node.hold_saver
saves the hold on a worker thread as its service starts and each `HOLD_SAVE_SECONDS` after, and the audit log as it
closes, and a restart goes on from the time seen and the time held saved, so that a node restarted more often than
daily (a crash loop, a daily deploy) still takes its clock after a day of hold in all; a crash loses the hold's time
since the last save (`HOLD_SAVE_SECONDS` at most), and neither the time stopped nor the restart counts.
A clock that steps back is not followed below the log's latest time (the floor), nor does the node's time run on
from there until the clock catches up (digests wait meanwhile: a warning line, `vouchnet_clock_behind_seconds`); the
time seen does, so a clock put right again is taken at once. A clock creeping ahead by less than a day a reading is
taken.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .clock_hold import Hold, read_hold, remove_hold, write_hold

DAY_MS = 24 * 3600 * 1000
CLOCK_STEP_MS = DAY_MS  # how far ahead of the time the node has seen its clock may be taken at once
CLOCK_HOLD_SECONDS = 24 * 3600.0  # how long a clock further ahead must stay so before it is taken
# How often a held clock's hold is saved (node.hold_saver), the most a crash loses of it: each save is a file of 70
# bytes written durably, off the trio thread, 8640 a day of hold (benchmarks/clock_hold.py: 1-10 ms each).
HOLD_SAVE_SECONDS = 10.0
CLOCK_BEHIND_LOG_MS = 1000  # how far behind the floor a clock put back is said to be in a warning line
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HoldSave:
    """What a save makes of `hold_file` (NodeTime.to_save): the hold as it stood, or None: removed (the hold is over).
    `order` says which of two saves was taken later."""

    order: int
    hold: Hold | None


class NodeTime:
    """The node's time in ms (module docstring), from a wall `clock` in ms and a `monotonic` one in seconds; the hold
    is saved in `hold_file` (node.clock_hold), if given, and read back from it at the first reading. Thread-safe: the
    ingest reads it on a worker thread, the digest service on the trio thread, and saves are written on another."""

    def __init__(self, clock: Callable[[], int], monotonic: Callable[[], float] = time.monotonic,
                 hold_file: Path | None = None) -> None:
        self._clock, self._monotonic, self._hold_file = clock, monotonic, hold_file
        self._seen: tuple[int, float] | None = None  # the node's time at its last reading, and the monotonic time then
        self._ahead_since: float | None = None  # monotonic time the clock was first seen too far ahead
        self._file_may_hold = hold_file is not None  # until removed: a hold saved by an earlier run, or a damaged file
        self._restored = False
        self._behind = False  # whether the clock was last read over CLOCK_BEHIND_LOG_MS below the floor
        self._lock = threading.Lock()  # the state above, between readings and `to_save`
        self._saves_taken = 0  # HoldSave.order of the last `to_save`
        self._write_lock = threading.Lock()  # one `write` at a time, so that none lands after a later one
        self._saves_written = 0  # HoldSave.order of the last `write` done

    @property
    def held(self) -> bool:
        """Whether the clock is held as a step ahead of the time the node has seen."""
        return self._ahead_since is not None

    def now(self, floor: int) -> int:
        """The node's time, never earlier than `floor` (the audit log's latest acceptance time or seal; 0 for an
        empty log, whose first reading is taken whatever it is). Nothing is written (`to_save`)."""
        with self._lock:
            return self._read(floor)

    def _read(self, floor: int) -> int:
        wall, mono = self._clock(), self._monotonic()
        if not self._restored:
            self._restore(mono)
        seen = floor
        if self._seen is not None:
            seen = max(seen, self._seen[0] + _elapsed_ms(self._seen[1], mono))
        if seen and wall > seen + CLOCK_STEP_MS:
            if self._ahead_since is None:
                self._ahead_since = mono
                log.warning("clock over a day ahead of the time the node has seen: acceptance times, digests and "
                            "retention follow the time the node has seen for a day, in case it is a wrong step "
                            "(after a stop or suspend of over a day, nothing to do)",
                            extra={"fields": {"ahead_ms": wall - seen, "hold_seconds": CLOCK_HOLD_SECONDS}})
            if _elapsed_ms(self._ahead_since, mono) < CLOCK_HOLD_SECONDS * 1000:
                self._seen = (seen, mono)
                return seen
            log.info("clock stayed ahead for the hold: the node takes it", extra={"fields": {"ahead_ms": wall - seen}})
        elif self._ahead_since is not None:
            log.info("clock back within a day of the time the node has seen: the node takes it")
        self._note_behind(floor - wall)
        now = max(wall, floor)
        self._seen, self._ahead_since = (now, mono), None  # a clock put back below the floor: the time seen runs on
        return now

    def save(self) -> None:
        """Save the hold as it stands now (`to_save`, then `write`), on this thread: as the audit log closes."""
        if (save := self.to_save()) is not None:
            self.write(save)

    def to_save(self) -> HoldSave | None:
        """What a save would make of `hold_file` now: the hold, if the clock is held; its removal, if it is not, but
        the file may hold an earlier hold (or a damaged one); None if there is nothing to write (or no file, or no
        reading yet, which reads an earlier run's hold). Cheap, no I/O: for the trio thread, before `write`."""
        with self._lock:
            if self._hold_file is None or not self._restored:
                return None
            if self._ahead_since is None or self._seen is None:
                if not self._file_may_hold:
                    return None
                hold = None
            else:
                mono = self._monotonic()
                hold = Hold(min(mono - self._ahead_since, CLOCK_HOLD_SECONDS),
                            self._seen[0] + _elapsed_ms(self._seen[1], mono))
            self._saves_taken += 1
            return HoldSave(self._saves_taken, hold)

    def write(self, save: HoldSave) -> None:
        """Make `hold_file` what `save` says, durably (node.clock_hold), on any thread, unless a save taken later has
        been written: never an earlier hold over a later one, nor over the file's removal. A failed write is logged,
        and the hold goes on in memory (a later save tries again)."""
        assert self._hold_file is not None
        with self._write_lock:
            if save.order <= self._saves_written:
                return
            try:
                if save.hold is None:
                    remove_hold(self._hold_file)
                else:
                    write_hold(self._hold_file, save.hold)
            except OSError as error:
                if save.hold is None:
                    log.warning("%s: cannot be removed (%s), though the clock is no longer held: tried again at the "
                                "next save", self._hold_file, error.strerror or error)
                else:
                    log.warning("%s: the hold of the clock not saved (%s): a restart would hold it a day again; "
                                "tried again at the next save", self._hold_file, error.strerror or error)
                return
            self._saves_written = save.order
            with self._lock:
                self._file_may_hold = save.hold is not None

    def _restore(self, mono: float) -> None:
        """Go on with the hold an earlier run saved (node.clock_hold), from its time seen and time held."""
        self._restored = True
        hold = None if self._hold_file is None else read_hold(self._hold_file, CLOCK_HOLD_SECONDS)
        if hold is None:
            return
        self._seen, self._ahead_since = (hold.seen_ms, mono), mono - hold.held_seconds
        log.info("a clock held as a step ahead before this start: the hold goes on while it stays ahead",
                 extra={"fields": {"held_seconds": round(hold.held_seconds), "seen_ms": hold.seen_ms,
                                   "hold_seconds": CLOCK_HOLD_SECONDS}})

    def _note_behind(self, behind_ms: int) -> None:
        """Say once when the clock is found put back below the floor, and once when it has caught up."""
        if behind_ms > CLOCK_BEHIND_LOG_MS and not self._behind:
            self._behind = True
            log.warning("clock behind the audit log's latest time: acceptance times stay there and no epoch's digests "
                        "are issued until the clock catches up; put the clock right",
                        extra={"fields": {"behind_ms": behind_ms}})
        elif behind_ms <= 0 and self._behind:
            self._behind = False
            log.info("clock caught up with the audit log's latest time")


def _elapsed_ms(since: float, mono: float) -> int:
    """The monotonic time from `since` to `mono` in whole ms, rounded: the difference of two float readings is off
    by a few ulps (a day read as 86399.99999999999 s), which truncated lost a ms at each reading and held a clock a
    ms past its day."""
    return round((mono - since) * 1000)
