"""Whose turn it is to be read, among the telemetry requests read off the event loop (DESIGN §7): a few at once
(node.ingest_api.READS_AT_ONCE), the others waiting, the smallest body first (the longest waiting first among bodies
as large). A request's wait is then the reading of the smaller bodies ahead of it, not of every body queued before
it: an exporter's request of some hundred KB is read next, not after the bodies at the limit a client queued first
(about a second each), and a body waiting its turn is read last the larger it is, as node.body_budget gives the room
of the largest to a request that finds none. A body that has waited OVERDUE_S has the next turn, the longest waiting
first: smaller bodies arriving without pause held a large one off for as long as they came (its client timing out).
"""

from __future__ import annotations

import heapq
import itertools

import trio

# A body waiting this long is read next, whatever its size (five reads of bodies at the limit, about a second each).
OVERDUE_S = 5.0


class ReadTurns:
    """At most `at_once` turns taken at a time; the others wait, the smallest body first, but a body waiting
    OVERDUE_S or longer before any other."""

    def __init__(self, at_once: int) -> None:
        self._free = at_once
        self._waiting: list[tuple[int, int, trio.Event]] = []  # a heap: size, order of arrival, the turn given
        self._arrivals = itertools.count()
        self._arrived: dict[int, float] = {}  # order of arrival of each body waiting -> when it began to wait

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
        self._arrived[entry[1]] = trio.current_time()
        try:
            await given.wait()
        except BaseException:  # (cancelled: the request ended, or its room was taken)
            if given.is_set():  # its turn came as it left: the next one's
                self.give_back()
            else:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
                del self._arrived[entry[1]]
            raise

    def give_back(self) -> None:
        """End a turn taken: the body waiting longest has it next if it has waited OVERDUE_S, else the smallest."""
        if not self._waiting:
            self._free += 1
            return
        first = next(iter(self._arrived))  # the longest waiting: keys are in order of arrival, as a dict keeps them
        if trio.current_time() - self._arrived[first] >= OVERDUE_S:
            entry = next(e for e in self._waiting if e[1] == first)
            self._waiting.remove(entry)
            heapq.heapify(self._waiting)
        else:
            entry = heapq.heappop(self._waiting)
        del self._arrived[entry[1]]
        entry[2].set()
