"""One subscriber's PeerEvents (gossip.host.Host.peer_events): each peer's first connection opening and its last one
closing, in order, and, for a subscriber that fell behind, what changed while it was behind in place of the events it
missed, so that it never acts on a wrong picture of who is connected.

A subscriber may hold `capacity` unread events. At one more, they are dropped, and so are the events that follow,
until it reads again: then it is told, as events, how the peers connected now differ from those connected as it
subscribed and those its events had told of since: a disconnection for each peer gone, or connected again since (its
connection not the one it knew of), then a connection for each peer come. A peer that came and went meanwhile is not
told of at all. A leaving told in place of those missed says whether this host closed the peer's connection as the
last leaving it missed of that peer said (closed_here). Memory stays bounded however fast hostile peers come and go:
`capacity` events (once it is told what changed, one a peer it was told is connected and one a peer connected now, at
most, besides), and the peers the subscriber was told are connected, each with the last leaving it missed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import trio


@dataclass(frozen=True)
class PeerEvent:
    """A peer's first connection opened (connected=True) or its last one closed (connected=False)."""

    peer_id: str
    connected: bool
    # For a leaving: this host closed the peer's last connection (a disconnect or block of the peer, a limit or a
    # budget, an idle or hostile connection, the host's shutdown), not the peer or the network, whose close read
    # before this host's went out is theirs (gossip.host quirk 63; for a subscriber that fell behind, told of a
    # leaving in place of the events it missed: as the last of them said). Events compare without it.
    closed_here: bool = field(default=False, compare=False)


class PeerFeed:
    """A subscriber's PeerEvents: `await receive()`, `receive_nowait()` or `async for`, as a trio memory channel's,
    ending (trio.EndOfChannel) once the host closed it and the events queued were read.

    `announced` is the host's peers connected now, a mapping the host keeps up to date, each with the number of the
    PeerEvent that told of its connection (numbers are never reused): it is read as a connection is put in (its
    number) and as a subscriber that fell behind reads again.
    """

    def __init__(self, capacity: int, announced: Mapping[str, int]) -> None:
        self._capacity = capacity
        self._announced = announced
        self._queue: deque[tuple[PeerEvent, int]] = deque()  # events unread, a connection's with its number
        # the peers connected as the events read so far tell, with their numbers: from those connected as it is made
        # (a subscriber reads Host.connected_peers for them), so that one of them gone while it is behind is told gone
        self._told: dict[str, int] = dict(announced)
        self._behind = False  # events were dropped since the last read: the next one tells what changed instead
        # the peers in _told whose leaving was dropped -> the closed_here of the last one, told with what changed
        self._dropped_leavings: dict[str, bool] = {}
        self._closed = False
        self._readers = trio.lowlevel.ParkingLot()

    def put(self, event: PeerEvent) -> int:
        """Queue `event` for the subscriber; returns how many events were dropped (those queued with it, once the
        subscriber is `capacity` events behind, and it, while the subscriber has not read since)."""
        if self._closed:
            return 0
        self._readers.unpark_all()
        if self._behind:
            self._note_dropped(event)
            return 1
        if len(self._queue) < self._capacity:
            self._queue.append((event, self._announced[event.peer_id] if event.connected else 0))
            return 0
        self._behind = True
        dropped = len(self._queue) + 1
        for queued, _ in self._queue:
            self._note_dropped(queued)
        self._note_dropped(event)
        self._queue.clear()
        return dropped

    def _note_dropped(self, event: PeerEvent) -> None:
        """Keep what a dropped leaving of a peer the subscriber was told is connected said of its close."""
        if not event.connected and event.peer_id in self._told:
            self._dropped_leavings[event.peer_id] = event.closed_here

    def close(self) -> None:
        """The host closed: the subscriber reads the events queued, then trio.EndOfChannel."""
        self._closed = True
        self._readers.unpark_all()

    def receive_nowait(self) -> PeerEvent:
        """The next event; trio.WouldBlock if there is none yet, trio.EndOfChannel once the host closed."""
        if self._behind and not self._closed:
            self._behind = False
            self._queue_changes()
        if not self._queue:
            raise trio.EndOfChannel if self._closed else trio.WouldBlock
        event, number = self._queue.popleft()
        if event.connected:
            self._told[event.peer_id] = number
        else:
            self._told.pop(event.peer_id, None)
        return event

    async def receive(self) -> PeerEvent:
        """The next event, waiting for one; trio.EndOfChannel once the host closed and every event was read."""
        await trio.lowlevel.checkpoint()
        while True:
            try:
                return self.receive_nowait()
            except trio.WouldBlock:
                await self._readers.park()

    def __aiter__(self) -> PeerFeed:
        return self

    async def __anext__(self) -> PeerEvent:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def _queue_changes(self) -> None:
        """Queue, in place of the events dropped, how the peers connected now differ from those the subscriber was
        told of: the ones gone (or connected anew) leave, then the ones come (or connected anew) arrive."""
        now = dict(self._announced)
        closed_here = self._dropped_leavings
        self._dropped_leavings = {}
        self._queue.extend((PeerEvent(peer, connected=False, closed_here=closed_here.get(peer, False)), 0)
                           for peer, number in self._told.items() if now.get(peer) != number)
        self._queue.extend((PeerEvent(peer, connected=True), number) for peer, number in now.items()
                           if self._told.get(peer) != number)
