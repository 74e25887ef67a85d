"""The start's catch-up sync (node.daemon) with its only bootstrap peer telling it to come back later (a Busy
answer, trio's mock clock, a stand-in host, the real sync service and peer manager): the round the catch-up needs is
asked again as the peer's wait ends, not sooner, and the start ends then, not at startup_sync_seconds; so does
the late catch-up of a start that timed out."""

from __future__ import annotations

from gossip.host import StreamError

from ..gossip.test_sync_rounds import busy_once
from .test_catch_up_reach import STARTUP_SYNC_SECONDS, OneHost, a_peer, start

COME_BACK = 3  # seconds the peer's Busy answer asks the node to wait
DIAL_SECONDS = 0.3


async def test_a_start_whose_only_bootstrap_peer_says_to_come_back_later_ends_as_that_wait_ends(
        tmp_path, autojump_clock):
    """Found by stop 41's reader: the round returned at once while the peer's wait lasted, and only a new connection
    started one again, so the start waited all of startup_sync_seconds and said timed_out. The peer holds none of the
    new org's records: its second round's heads end the wait."""
    opened: list[float] = []
    host = OneHost(lambda peer: StreamError("never asked"), dial_seconds=DIAL_SECONDS)
    host.open_stream = busy_once(COME_BACK, opened)  # type: ignore[method-assign]
    started = await start(tmp_path, host, a_peer())
    assert started.caught_up.state == "done"
    assert opened == [DIAL_SECONDS, DIAL_SECONDS + COME_BACK]  # as the dial connected, then as the wait ended
    assert started.took == opened[-1] < STARTUP_SYNC_SECONDS


async def test_a_late_catch_up_whose_only_bootstrap_peer_said_to_come_back_later_ends_as_that_wait_ends(
        tmp_path, autojump_clock):
    """Found by stop 42's brief: the late catch-up (_catch_up_late) needed no round in the sync service's eyes, so the
    round due as the peer's wait ended (asked for while the start waited) was dropped then, and startup_sync stayed
    timed_out until a periodic round (22.5 to 37.5 s in). The peer's wait outlasts the start's; its second round's
    heads, naming none of the new org's keys, end the late catch-up as the wait ends."""
    come_back = 15  # seconds: past startup_sync_seconds
    opened: list[float] = []
    host = OneHost(lambda peer: StreamError("never asked"), dial_seconds=DIAL_SECONDS)
    host.open_stream = busy_once(come_back, opened)  # type: ignore[method-assign]
    started = await start(tmp_path, host, a_peer(), late=True)
    assert started.caught_up.state == "timed_out"
    assert opened == [DIAL_SECONDS, DIAL_SECONDS + come_back]
    assert started.late_done == opened[-1]
