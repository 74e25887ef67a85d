"""The bytes of request bodies the telemetry endpoints hold at once, across requests (DESIGN §7): a shared budget
each request takes its body's bytes from, as they are received and as they are decompressed, before it holds them,
and gives back when it is answered. A request that cannot get its share within a short wait is refused (503 with
Retry-After, which OTLP/HTTP §Failures has exporters retry), so a flood of small gzip bodies that inflate to the
limit cannot hold the node's memory a full body a connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


class OverBudget(Exception):
    """The budget had no room for a request's bytes within its wait."""


class BodyBudget:
    """At most `total` bytes held at once; a request waits up to `wait_s` for room before OverBudget."""

    def __init__(self, total: int, wait_s: float) -> None:
        self.total, self.wait_s = total, wait_s
        self.free = total
        self._freed = trio.Event()

    @asynccontextmanager
    async def holding(self) -> AsyncIterator[Holding]:
        """A request's share, all of it given back on leaving, however the request ends."""
        held = Holding(self)
        try:
            yield held
        finally:
            self._give(held.bytes)
            held.bytes = 0

    async def _take(self, count: int) -> None:
        with trio.move_on_after(self.wait_s):
            while self.free < count:
                await self._freed.wait()
            self.free -= count
            return
        raise OverBudget(f"the node holds {self.total} bytes of request bodies at once, all taken; retry")

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

    async def take(self, count: int) -> None:
        """Hold `count` more bytes, waiting for room; raises OverBudget."""
        await self._budget._take(count)
        self.bytes += count

    def give_back(self, count: int) -> None:
        """Hold `count` bytes fewer (taken, then not needed)."""
        count = min(count, self.bytes)
        self.bytes -= count
        self._budget._give(count)
