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
The hold lives in memory: a restart starts it again, from the log's latest time. A clock that steps back is not
followed below the log's latest time (the floor), nor does the node's time run on from there until the clock
catches up; the time seen does, so a clock put right again is taken at once. A clock creeping ahead by less than a
day a reading is taken.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

DAY_MS = 24 * 3600 * 1000
CLOCK_STEP_MS = DAY_MS  # how far ahead of the time the node has seen its clock may be taken at once
CLOCK_HOLD_SECONDS = 24 * 3600.0  # how long a clock further ahead must stay so before it is taken
log = logging.getLogger(__name__)


class NodeTime:
    """The node's time in ms (module docstring), from a wall `clock` in ms and a `monotonic` one in seconds."""

    def __init__(self, clock: Callable[[], int], monotonic: Callable[[], float] = time.monotonic) -> None:
        self._clock, self._monotonic = clock, monotonic
        self._seen: tuple[int, float] | None = None  # the node's time at its last reading, and the monotonic time then
        self._ahead_since: float | None = None  # monotonic time the clock was first seen too far ahead

    @property
    def held(self) -> bool:
        """Whether the clock is held as a step ahead of the time the node has seen."""
        return self._ahead_since is not None

    def now(self, floor: int) -> int:
        """The node's time, never earlier than `floor` (the audit log's latest acceptance time or seal; 0 for an
        empty log, whose first reading is taken whatever it is)."""
        wall, mono = self._clock(), self._monotonic()
        seen = floor
        if self._seen is not None:
            seen = max(seen, self._seen[0] + int((mono - self._seen[1]) * 1000))
        if seen and wall > seen + CLOCK_STEP_MS:
            if self._ahead_since is None:
                self._ahead_since = mono
                log.warning("clock over a day ahead of the time the node has seen: acceptance times, digests and "
                            "retention follow the time the node has seen for a day, in case it is a wrong step "
                            "(after a stop or suspend of over a day, nothing to do)",
                            extra={"fields": {"ahead_ms": wall - seen, "hold_seconds": CLOCK_HOLD_SECONDS}})
            if mono - self._ahead_since < CLOCK_HOLD_SECONDS:
                self._seen = (seen, mono)
                return seen
            log.info("clock stayed ahead for the hold: the node takes it", extra={"fields": {"ahead_ms": wall - seen}})
        elif self._ahead_since is not None:
            log.info("clock back within a day of the time the node has seen: the node takes it")
        now = max(wall, floor)
        self._seen, self._ahead_since = (now, mono), None  # a clock put back below the floor: the time seen runs on
        return now
