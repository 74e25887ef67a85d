"""A log rate-limited per call site: at most `burst` lines from one logging call in each `window` seconds, the rest
suppressed and counted, and the count written as a `suppressed` field on the next line of that call. A hostile peer
or API caller can trigger a line for each of its messages (a refused sync request, a rejected record, py-libp2p's
warnings), so without a limit one peer writes lines as fast as it can send: it fills the operator's disk and drowns
every other line. The metrics count each reject; the log shows that it happens and how often.

A call site is (file, line): the number of keys is bounded by the code, never by what peers send (a template
holding a peer's id, as py-libp2p's f-strings do, would give each peer a key of its own).

It is here, stdlib only, because each layer that logs is limited by it: the node's log (node.logs), py-libp2p's
(gossip.host, quirk 59) and the SDK's (node.client._log); vouching is the one package all three may import (DESIGN
§1: gossip never imports node, and the SDK imports neither gossip nor ledger).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

BURST = 20  # lines of one call site written in a window: a burst of distinct events (peers unreachable at start)
WINDOW_S = 10.0  # seconds


@dataclass
class _Site:
    start: float  # when its window began
    written: int = 0  # lines written in the window
    suppressed: int = 0  # lines suppressed in the window


class RateLimit(logging.Filter):
    """A handler's or logger's filter passing at most `burst` records of one call site per `window` seconds of
    `clock`; thread-safe: a logger's filters run on each logging thread (the SDK's sync client is called from its
    caller's threads), with no lock of logging's."""

    def __init__(self, burst: int = BURST, window: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        if burst < 1 or not window > 0:
            raise ValueError(f"a log rate limit needs burst >= 1 and window > 0 (got {burst}, {window})")
        self.burst = burst
        self.window = window
        self._clock = clock
        self._sites: dict[tuple[str, int], _Site] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.pathname, record.lineno)
        with self._lock:
            now = self._clock()
            site = self._sites.get(key)
            carried = 0
            if site is None or now - site.start >= self.window:
                carried = site.suppressed if site is not None else 0
                site = self._sites[key] = _Site(now)
            if site.written >= self.burst:
                site.suppressed += 1
                return False
            site.written += 1
        if carried:  # suppressed in the site's last window, said with its first line since
            self.carry(record, carried)
        return True

    def forked(self) -> None:
        """In a child forked from this process: a lock of its own, as another thread of the parent may have held this
        one as it forked (inside `filter`), and a lock held so stays held for ever in the child, whose next record
        through this filter would wait on it for ever. The counts are kept."""
        self._lock = threading.Lock()

    def carry(self, record: logging.LogRecord, suppressed: int) -> None:
        """Say on `record` how many lines of its call site were suppressed before it: a `suppressed` field."""
        record.fields = {**getattr(record, "fields", {}), "suppressed": suppressed}
