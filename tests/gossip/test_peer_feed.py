"""A subscriber of peer events that falls behind ends up with the right picture of who is connected
(gossip.peer_feed): the sync service and the peer manager act on each peer that comes or goes."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from gossip.host import HostConfig, PeerEvent, open_host
from gossip.peer_feed import PeerFeed

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


class Peers:
    """The host's side: peers coming and going, each connection numbered as the host's notifee numbers them, told
    to one subscriber's `feed`."""

    def __init__(self, capacity: int, before: Iterable[str] = ()) -> None:
        """`before`: the peers connected as the subscriber subscribes."""
        self._numbers = itertools.count(1)
        self.announced: dict[str, int] = {peer: next(self._numbers) for peer in before}
        self.feed = PeerFeed(capacity, self.announced)

    def come(self, peer: str) -> None:
        self.announced[peer] = next(self._numbers)
        self.feed.put(PeerEvent(peer, connected=True))

    def go(self, peer: str, *, closed_here: bool = False) -> None:
        del self.announced[peer]
        self.feed.put(PeerEvent(peer, connected=False, closed_here=closed_here))


def drained(feed: PeerFeed) -> list[PeerEvent]:
    events = []
    while True:
        try:
            events.append(feed.receive_nowait())
        except trio.WouldBlock:
            return events


def told(picture: set[str], events: list[PeerEvent]) -> set[str]:
    """The peers connected as `events` tell, from `picture`; each event must make sense after those before it."""
    picture = set(picture)
    for event in events:
        assert (event.peer_id in picture) != event.connected, f"{event} told twice"
        (picture.add if event.connected else picture.discard)(event.peer_id)
    return picture


@given(capacity=st.integers(1, 4), before=st.sets(st.sampled_from([f"peer{n}" for n in range(6)])),
       steps=st.lists(st.tuples(st.sampled_from(["flip", "read"]), st.integers(0, 5))))
def test_a_subscriber_behind_is_told_who_came_and_went(capacity: int, before: set[str],
                                                       steps: list[tuple[str, int]]) -> None:
    """Steps: peer n comes (or goes, if connected), or the subscriber reads up to n events; `before` are connected as
    it subscribes (it reads them from Host.connected_peers)."""
    peers = Peers(capacity, before)
    picture = set(before)
    for step, n in steps:
        if step == "flip":
            (peers.go if f"peer{n}" in peers.announced else peers.come)(f"peer{n}")
            continue
        for _ in range(n):
            try:
                picture = told(picture, [peers.feed.receive_nowait()])
            except trio.WouldBlock:
                break
    events = drained(peers.feed)
    assert len(events) <= max(capacity, 2 * 6)  # queued at most: `capacity`, or the changes among 6 peers
    assert told(picture, events) == set(peers.announced)


def test_a_peer_that_came_back_while_the_subscriber_was_behind_is_told_leaving_and_coming() -> None:
    """Its connection is a new one: the sync service owes it a round (one a catch-up may wait for), and the peer
    manager must not count its old connection's time towards the new one's."""
    peers = Peers(capacity=2)
    feed = peers.feed
    peers.come("a")
    peers.come("steady")
    assert drained(feed) == [PeerEvent("a", connected=True), PeerEvent("steady", connected=True)]
    peers.go("a")
    peers.come("a")
    peers.come("b")  # one more than the feed holds
    peers.go("b")
    assert drained(feed) == [PeerEvent("a", connected=False), PeerEvent("a", connected=True)]


def test_a_peer_connected_as_the_subscriber_subscribed_that_left_while_it_was_behind_is_told_gone() -> None:
    """The sync service and the peer manager read the peers connected as they subscribe: one of them gone while the
    service was behind must be told gone (its slot waits stopped, its redial scheduled), and one still there not told
    coming a second time (it was told of none of them, and the one gone left unsaid)."""
    peers = Peers(capacity=1, before=["early", "steady"])
    peers.go("early")
    peers.come("b")  # one more than the feed holds
    assert drained(peers.feed) == [PeerEvent("early", connected=False), PeerEvent("b", connected=True)]


def test_a_leaving_told_to_a_subscriber_behind_says_who_closed_the_last_connection_it_missed() -> None:
    """Found by stop 39: a leaving told in place of the events a subscriber missed said the peer or the network closed
    the connection (closed_here False) whoever did, so the peer manager hinted that a peer this node had closed itself
    (a disconnect, its block) may have blocked this node."""
    peers = Peers(capacity=1, before=["ours", "theirs", "back", "both", "later"])
    peers.go("ours", closed_here=True)
    peers.go("theirs")  # one more than the feed holds: "ours" is dropped with it
    peers.go("later", closed_here=True)  # dropped as it comes
    peers.go("back")
    peers.come("back")
    peers.go("both", closed_here=True)
    peers.come("both")
    peers.go("both")  # the last of its connections was closed by the peer
    left = {event.peer_id: event.closed_here for event in drained(peers.feed) if not event.connected}
    assert left == {"ours": True, "theirs": False, "later": True, "back": False, "both": False}
    peers.go("back", closed_here=True)
    peers.come("late")
    peers.go("late", closed_here=True)  # behind again: "late" came and went unseen, "back" left
    assert [(event, event.closed_here) for event in drained(peers.feed)] == [(PeerEvent("back", False), True)]


def test_a_subscriber_behind_keeps_nothing_of_peers_that_came_and_went_unseen() -> None:
    """Peer ids cost nothing: while a subscriber is behind, hostile peers coming and going by the thousand leave it
    holding what it tells (a leaving's closed_here) of the peers it was told are connected, and nothing of theirs."""
    peers = Peers(capacity=1, before=["kept"])
    peers.come("extra")  # one more than the feed holds: behind from here
    for n in range(1000):
        peers.come(f"fresh{n}")
        peers.go(f"fresh{n}", closed_here=bool(n % 2))
    peers.go("kept", closed_here=True)
    assert len(peers.feed._dropped_leavings) == 1
    assert [(event, event.closed_here) for event in drained(peers.feed)] == [
        (PeerEvent("kept", connected=False), True), (PeerEvent("extra", connected=True), False)]


def test_a_subscriber_behind_holds_up_no_other_and_its_drops_are_counted() -> None:
    announced: dict[str, int] = {}
    reading, behind = PeerFeed(2, announced), PeerFeed(1, announced)

    def put(event: PeerEvent) -> list[int]:
        """Each feed's count of the events it dropped, as the host puts `event` in both."""
        return [reading.put(event), behind.put(event)]

    announced["a"] = 1
    assert put(PeerEvent("a", connected=True)) == [0, 0]
    assert drained(reading) == [PeerEvent("a", connected=True)]
    announced["b"] = 2
    assert put(PeerEvent("b", connected=True)) == [0, 2]  # the one it held and this one
    del announced["b"]
    assert put(PeerEvent("b", connected=False)) == [0, 1]  # behind since: dropped as it comes
    assert drained(reading) == [PeerEvent("b", connected=True), PeerEvent("b", connected=False)]
    assert drained(behind) == [PeerEvent("a", connected=True)]  # b came and went meanwhile: nothing to tell


async def test_a_closed_feed_gives_what_it_holds_then_ends() -> None:
    peers = Peers(capacity=4)
    feed = peers.feed
    peers.come("a")
    feed.close()
    peers.come("b")  # after the host closed: not told
    assert [event async for event in feed] == [PeerEvent("a", connected=True)]


async def test_a_reader_waiting_is_woken_by_the_next_event() -> None:
    peers = Peers(capacity=4)
    feed = peers.feed
    got: list[PeerEvent] = []

    async def read() -> None:
        got.append(await feed.receive())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            peers.come("a")
    assert got == [PeerEvent("a", connected=True)]


@pytest.mark.slow
async def test_a_host_subscriber_that_fell_behind_reads_the_peers_connected() -> None:
    """The host's side: 3 peers connect while a subscriber holding 2 events reads none; it is then told of all 3
    (it used to be told of the first 2 only, the third's connection lost, and the sync service never pulled from it
    on its coming)."""
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(receive_buffer=2)) as node:
            events, watching = node.peer_events(), node.peer_events()
            async with (open_host(os.urandom(32), LOOPBACK) as a, open_host(os.urandom(32), LOOPBACK) as b,
                        open_host(os.urandom(32), LOOPBACK) as c):
                for peer in (a, b, c):
                    await peer.connect(node.listen_addrs[0])
                    assert await watching.receive() == PeerEvent(peer.peer_id, connected=True)
                picture = told(set(), drained(events))
                assert picture == {a.peer_id, b.peer_id, c.peer_id}
                assert node.stats().peer_events_dropped == 3  # the 2 held and the third, told instead as changes


@pytest.mark.slow
async def test_a_peer_that_came_back_while_a_host_subscriber_was_behind_is_told_leaving_and_coming() -> None:
    """The host's side: it numbers each coming of a peer anew, so a subscriber behind as a peer left and came back is
    told that it left and came (the sync service pulls from it as it comes, the peer manager counts the connection
    anew), not nothing, as if it had stayed."""
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(receive_buffer=1)) as node:
            events, watching = node.peer_events(), node.peer_events()
            async with open_host(os.urandom(32), LOOPBACK) as a:
                await a.connect(node.listen_addrs[0])
                assert await watching.receive() == PeerEvent(a.peer_id, connected=True)
                assert drained(events) == [PeerEvent(a.peer_id, connected=True)]
                await a.disconnect(node.peer_id)
                assert await watching.receive() == PeerEvent(a.peer_id, connected=False)
                await a.connect(node.listen_addrs[0])
                assert await watching.receive() == PeerEvent(a.peer_id, connected=True)
                assert drained(events) == [PeerEvent(a.peer_id, connected=False), PeerEvent(a.peer_id, connected=True)]
                assert node.stats().peer_events_dropped == 2  # the one it held and the second, told instead


@pytest.mark.slow
async def test_a_peer_that_came_and_left_while_a_host_subscriber_was_behind_is_not_told_of() -> None:
    """The host's side: it forgets a peer as it leaves, so a subscriber behind as one came and left is told nothing of
    it (told it is connected, the sync service would pull from a peer gone), only of the one that came and stayed."""
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(receive_buffer=1)) as node:
            events, watching = node.peer_events(), node.peer_events()
            async with open_host(os.urandom(32), LOOPBACK) as a, open_host(os.urandom(32), LOOPBACK) as b:
                for peer in (a, b):
                    await peer.connect(node.listen_addrs[0])
                    assert await watching.receive() == PeerEvent(peer.peer_id, connected=True)
                await a.disconnect(node.peer_id)
                assert await watching.receive() == PeerEvent(a.peer_id, connected=False)
                assert drained(events) == [PeerEvent(b.peer_id, connected=True)]
