"""The bytes of request bodies the telemetry endpoints hold at once, across requests (DESIGN §7): a shared budget
each request takes its body's bytes from before it holds them (node.ingest_api takes them, decompressed, and those of
what its read will hold, before the body is received), and gives back when it is answered. A request that cannot get
its share within a short wait is refused (503 with Retry-After, which OTLP/HTTP §Failures has exporters retry), so a
flood of small gzip bodies that inflate to the limit cannot hold the node's memory a full body a connection.

Nor can bodies held unread hold the budget against the others: a request that finds no room within its wait takes
the room of requests whose bodies have been arriving for longer than that wait, the longest first, then of those
that have been waiting their turn to be read for longer than that wait, the largest first (each refused as over
budget), as the HTTP server gives a newcomer the slot of the connection waiting longest on its client. A client that
sends its body as fast as the node reads it, as a local exporter does, is never one of the first. The second are
the bodies queued behind the node's reads (node.read_turns); the largest go first, as they would be read last, take
the longest to read and give back the most room: a client queueing bodies at the limit cannot have the room of an
exporter's far smaller request taken while it waits its turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import trio

from .read_turns import ReadTurns


class OverBudget(Exception):
    """The budget had no room for a request's bytes within its wait."""


class Evicted(OverBudget):
    """A request's body was still arriving, or waiting its turn to be read, for longer than a request that found no
    room waited, and that request took its room."""


class BodyBudget:
    """At most `total` bytes held at once; a request waits up to `wait_s` for room before OverBudget."""

    def __init__(self, total: int, wait_s: float) -> None:
        self.total, self.wait_s = total, wait_s
        self.free = total
        self._freed = trio.Event()
        self._unread: dict[Holding, None] = {}  # the requests whose bodies are arriving or waiting their turn

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
        longest first, then of those waiting their turn to be read for longer, the largest first, as many as `taker`
        needs for `count` bytes; none if they hold too few."""
        since = trio.current_time() - self.wait_s
        unread = [held for held in self._unread if held.unread_since <= since and held is not taker and held.bytes]
        waiting = sorted((held for held in unread if held.waiting), key=lambda held: held.bytes, reverse=True)
        wanted, evicted = count - self.free, []
        for held in [held for held in unread if not held.waiting] + waiting:
            if wanted <= 0:
                break
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
        self.unread_since = 0.0  # trio's clock when its body began to arrive, or to wait its turn (while unread)
        self.waiting = False  # (while unread) waiting its turn to be read, not arriving
        self.evicted = False
        self._unread = trio.CancelScope()

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
        with self._held_unread(waiting=False):
            yield

    async def turn(self, turns: ReadTurns, size: int) -> None:
        """Wait for the turn of its body of `size` bytes to be read, which the caller then gives back; Evicted, the
        turn not kept, if another request takes its room meanwhile (BodyBudget._evict_for)."""
        taken = False
        try:
            with self._held_unread(waiting=True):
                await turns.take(size)
                taken = True
        except Evicted:
            if taken:  # (its room taken as its turn came, before it ran on)
                turns.give_back()
            raise

    @contextmanager
    def _held_unread(self, *, waiting: bool) -> Iterator[None]:
        """The block cancelled, and Evicted raised, if another request takes this one's room meanwhile."""
        self.unread_since, self.waiting = trio.current_time(), waiting
        self._unread = trio.CancelScope()
        self._budget._unread[self] = None
        try:
            with self._unread:
                yield
        finally:
            self._budget._unread.pop(self, None)
        if self.evicted:
            raise self._evicted()

    def evict(self) -> None:
        """Give back all this request holds, and end its body's arrival or its wait for its turn (Evicted)."""
        self.evicted = True
        self._budget._unread.pop(self, None)
        self.give_back(self.bytes)
        self._unread.cancel()

    def _evicted(self) -> Evicted:
        doing, advice = ("waiting its turn to be read", "retry") if self.waiting else ("arriving",
                                                                                       "send it faster, or retry")
        return Evicted(f"it had been {doing} for over {self._budget.wait_s:g} s when a request found no room in "
                       f"the {self._budget.total} bytes of request bodies the node holds at once; {advice}")
