"""Whose turn it is to be read, among the telemetry requests read off the event loop (DESIGN §7): a few at once
(node.ingest_api.READS_AT_ONCE), the others waiting, the smallest body first (the longest waiting first among bodies
as large). A request's wait is then the reading of the smaller bodies ahead of it, not of every body queued before
it: an exporter's request of some hundred KB is read next, not after the bodies at the limit a client queued first
(about a second each), and a body waiting its turn is read last the larger it is, as node.body_budget gives the room
of the largest to a request that finds none.
"""

from __future__ import annotations

import heapq
import itertools

import trio


class ReadTurns:
    """At most `at_once` turns taken at a time; the others wait, the smallest body first."""

    def __init__(self, at_once: int) -> None:
        self._free = at_once
        self._waiting: list[tuple[int, int, trio.Event]] = []  # a heap: size, order of arrival, the turn given
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        """The requests waiting their turn."""
        return len(self._waiting)

    async def take(self, size: int) -> None:
        """Wait for the turn of a body of `size` bytes, then hold it until `give_back`."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._free and not self._waiting:
            self._free -= 1
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        given = trio.Event()
        entry = (size, next(self._arrivals), given)
        heapq.heappush(self._waiting, entry)
        try:
            await given.wait()
        except BaseException:  # (cancelled: the request ended, or its room was taken)
            if given.is_set():  # its turn came as it left: the next one's
                self.give_back()
            else:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise

    def give_back(self) -> None:
        """End a turn taken: the smallest body waiting has it next."""
        if self._waiting:
            heapq.heappop(self._waiting)[2].set()
        else:
            self._free += 1
