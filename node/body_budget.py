"""The bytes of request bodies the telemetry endpoints hold at once, across requests (DESIGN §7): a shared budget
each request takes its body's bytes from, as they are received and as they are decompressed, before it holds them,
and gives back when it is answered. A request that cannot get its share within a short wait is refused (503 with
Retry-After, which OTLP/HTTP §Failures has exporters retry), so a flood of small gzip bodies that inflate to the
limit cannot hold the node's memory a full body a connection.

Nor can bodies sent slowly hold the budget against the others: a request that finds no room within its wait takes
the room of requests whose bodies have been arriving for longer than that wait, the longest first (each refused
as over budget), as the HTTP server gives a newcomer the slot of the connection waiting longest on its client. A
client that sends its body as fast as the node reads it, as a local exporter does, is never one of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import trio


class OverBudget(Exception):
    """The budget had no room for a request's bytes within its wait."""


class Evicted(OverBudget):
    """A request's body was still arriving, for longer than a request that found no room waited, and that request
    took its room."""


class BodyBudget:
    """At most `total` bytes held at once; a request waits up to `wait_s` for room before OverBudget."""

    def __init__(self, total: int, wait_s: float) -> None:
        self.total, self.wait_s = total, wait_s
        self.free = total
        self._freed = trio.Event()
        self._arriving: dict[Holding, None] = {}  # the requests whose bodies are arriving, the longest first

    @asynccontextmanager
    async def holding(self) -> AsyncIterator[Holding]:
        """A request's share, all of it given back on leaving, however the request ends."""
        held = Holding(self)
        try:
            yield held
        finally:
            self._give(held.bytes)
            held.bytes = 0

    async def _take(self, count: int, taker: Holding) -> None:
        with trio.move_on_after(self.wait_s):
            while self.free < count:
                await self._freed.wait()
            self.free -= count
            return
        self._evict_for(count, taker)
        if self.free < count:
            raise OverBudget(f"the node holds {self.total} bytes of request bodies at once, all taken; retry")
        self.free -= count

    def _evict_for(self, count: int, taker: Holding) -> None:
        """Give back the bytes of requests whose bodies have been arriving for longer than `taker` waited, the
        longest first, as many as `taker` needs for `count` bytes; none if they hold too few."""
        since = trio.current_time() - self.wait_s
        wanted, evicted = count - self.free, []
        for held in self._arriving:
            if wanted <= 0 or held.arriving_since > since:
                break
            if held is not taker and held.bytes:
                evicted.append(held)
                wanted -= held.bytes
        if wanted <= 0:
            for held in evicted:
                held.evict()

    def _give(self, count: int) -> None:
        if count:
            self.free += count
            self._freed.set()
            self._freed = trio.Event()


class Holding:
    """The bytes one request holds of a BodyBudget."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.bytes = 0
        self.arriving_since = 0.0  # trio's clock when its body began to arrive (while `arriving`)
        self.evicted = False
        self._arrival = trio.CancelScope()

    async def take(self, count: int) -> None:
        """Hold `count` more bytes, waiting for room; raises OverBudget (Evicted if its room was taken)."""
        if self.evicted:
            raise self._evicted()
        await self._budget._take(count, self)
        self.bytes += count

    def give_back(self, count: int) -> None:
        """Hold `count` bytes fewer (taken, then not needed)."""
        count = min(count, self.bytes)
        self.bytes -= count
        self._budget._give(count)

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """While the request's body arrives from its client: the block is cancelled and Evicted raised if another
        request takes its room (BodyBudget._evict_for), all it held given back."""
        self.arriving_since = trio.current_time()
        self._budget._arriving[self] = None
        try:
            with self._arrival:
                yield
        finally:
            self._budget._arriving.pop(self, None)
        if self.evicted:
            raise self._evicted()

    def evict(self) -> None:
        """Give back all this request holds, and end its body's arrival (Evicted)."""
        self.evicted = True
        self._budget._arriving.pop(self, None)
        self.give_back(self.bytes)
        self._arrival.cancel()

    def _evicted(self) -> Evicted:
        return Evicted(f"it had been arriving for over {self._budget.wait_s:g} s when a request found no room in "
                       f"the {self._budget.total} bytes of request bodies the node holds at once; send it faster, "
                       "or retry")
