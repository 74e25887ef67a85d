"""The start's catch-up sync (node.daemon) with a peer already connected that it comes to dial as it waits (trio's
mock clock, a stand-in host, the real sync service and peer manager): the peer dialled in unasked, its round on
connecting ended, and then its org's `org` record came in (peer exchange); the catch-up needs a round with it, and
has one at once, not at the next periodic round or startup_sync_seconds; so does the late catch-up of a start that
timed out, the record coming in after, and with a peer it dials connected already as it begins."""

from __future__ import annotations

from pathlib import Path

import trio

from gossip.host import StreamError, peer_id_from_public_key
from gossip.replica import Replica
from gossip.sync_messages import SYNC_PROTOCOL, HeadsPage, encode_message
from vouching import org_body

from ..factories import Org
from ..gossip.test_sync_rounds import ScriptedPeerStream
from .test_catch_up_reach import STARTUP_SYNC_SECONDS, OneHost, Started, a_peer, start

DIAL_SECONDS = 0.3
RECORD_AT = 1.0  # seconds into the catch-up that gossip brings in the peer's org's `org` record


def _holding_nothing() -> ScriptedPeerStream:
    """A sync stream to a peer that holds none of the org's records: its heads name none."""

    async def nothing_held() -> bytes:
        await trio.lowlevel.checkpoint()
        return encode_message(HeadsPage((), more=False))

    return ScriptedPeerStream(nothing_held)


async def _a_start_coming_to_dial_a_connected_peer(tmp_path: Path, record_at: float, *,
                                                   late: bool = False) -> tuple[Started, list[float]]:
    """A new org's start whose bootstrap peer resets each sync stream (it may answer later: the wait goes on), with
    another peer connected unasked 0.3 s in, holding none of the org's records, whose org's `org` record comes in
    `record_at` s in; the start (and its late catch-up if `late`), and when each sync stream to that peer opened."""
    bootstrap, exchanged = a_peer(), Org()
    peer = peer_id_from_public_key(bytes(exchanged.key.verify_key))
    opened: list[float] = []
    host = OneHost(lambda p: StreamError(f"open {SYNC_PROTOCOL} stream to {p}: stream reset"),
                   dial_seconds=DIAL_SECONDS)
    resetting = host.open_stream

    async def open_stream(peer_id: str, protocol: str) -> object:
        if peer_id != peer:
            return await resetting(peer_id, protocol)
        opened.append(trio.current_time())
        return _holding_nothing()

    host.open_stream = open_stream  # type: ignore[method-assign]

    async def meanwhile(replica: Replica) -> None:
        await host.connect(f"/ip4/10.0.0.3/tcp/4001/p2p/{peer}")  # (it dialled in: the stand-in's event is the same)
        await trio.sleep_until(record_at)
        org = exchanged.record("org", org_body("exchanged", "test", ["/ip4/10.0.0.3/tcp/4001"]))
        assert replica.accept([org]).accepted == [org]

    return await start(tmp_path, host, bootstrap, roots=(exchanged.did,), meanwhile=meanwhile, late=late), opened


async def test_a_connected_peer_the_start_comes_to_dial_has_the_round_its_catch_up_needs_at_once(
        tmp_path, autojump_clock):
    """Found by stop 41's reader: a peer becoming one the node dials only told the sync service's waits that the
    catch-up needs had changed, and started no round; rounds start only as a peer connects, and periodically (30 s
    apart), so the start waited all of startup_sync_seconds and said timed_out. The other peer's round's heads end
    the wait."""
    started, opened = await _a_start_coming_to_dial_a_connected_peer(tmp_path, RECORD_AT)
    assert opened == [DIAL_SECONDS, RECORD_AT]  # as it connected, unasked; then as the node came to dial it
    assert (started.caught_up.state, started.took) == ("done", RECORD_AT)
    assert started.took < STARTUP_SYNC_SECONDS


async def test_a_connected_peer_the_late_catch_up_comes_to_dial_has_the_round_it_needs_at_once(
        tmp_path, autojump_clock):
    """Found by stop 42's brief: the late catch-up (_catch_up_late) needed no round in the sync service's eyes, so a
    peer it came to dial had none but at a periodic round (22.5 to 37.5 s in), startup_sync staying timed_out."""
    record_at = STARTUP_SYNC_SECONDS + 2
    started, opened = await _a_start_coming_to_dial_a_connected_peer(tmp_path, record_at, late=True)
    assert started.caught_up.state == "timed_out"
    assert opened == [DIAL_SECONDS, record_at]
    assert started.late_done == record_at


async def test_a_late_catch_up_has_a_round_at_once_with_a_peer_it_dials_connected_as_it_begins(
        tmp_path, autojump_clock):
    """The late catch-up (_catch_up_late) needs a round with each peer it dials that is connected as it begins: the
    start's rounds with it failed (here its only bootstrap peer reset each sync stream until the start timed out, then
    answers, holding none of the new org's records), and no peer connecting meanwhile, it would have none but at a
    periodic round (22.5 to 37.5 s in), startup_sync staying timed_out."""
    bootstrap = a_peer()
    answered_from: list[float] = []  # when each sync stream opened once the peer answers
    host = OneHost(lambda p: StreamError(f"open {SYNC_PROTOCOL} stream to {p}: stream reset"),
                   dial_seconds=DIAL_SECONDS)
    resetting = host.open_stream

    async def open_stream(peer_id: str, protocol: str) -> object:
        if trio.current_time() < STARTUP_SYNC_SECONDS:
            return await resetting(peer_id, protocol)
        answered_from.append(trio.current_time())
        return _holding_nothing()

    host.open_stream = open_stream  # type: ignore[method-assign]
    started = await start(tmp_path, host, bootstrap, late=True)
    assert started.caught_up.state == "timed_out"
    assert answered_from == [STARTUP_SYNC_SECONDS] and started.late_done == STARTUP_SYNC_SECONDS
