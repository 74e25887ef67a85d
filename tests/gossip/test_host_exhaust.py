"""One hostile peer trying to exhaust a host's memory or tasks through the muxer, over real connections on loopback
(gossip.host quirk 35). The hostile peer is a host too; it writes raw yamux frames past its own muxer."""

import contextlib
import os
import struct

import pytest
import trio
from libp2p.io.exceptions import IOException
from libp2p.stream_muxer.yamux.yamux import TYPE_DATA, YAMUX_HEADER_FORMAT, Yamux

from gossip.host import Host, PeerEvent, open_host
from tests.gossip.test_host import LOOPBACK, TOPIC, accept_all

FRAME = 65536  # bytes of data in each raw DATA frame


def muxed_connection(host: Host, peer_id: str) -> Yamux:
    """`host`'s yamux connection to `peer_id`."""
    [connection] = [c for peer, conns in host._host.get_network().connections.items()
                    if peer.to_base58() == peer_id for c in conns]
    return connection.muxed_conn


def pubsub_stream_opened_by(host: Host, peer_id: str) -> int:
    """The yamux id of the pubsub stream that `peer_id` opened to `host` (it only ever writes to it)."""
    [connection] = [c for peer, conns in host._host.get_network().connections.items()
                    if peer.to_base58() == peer_id for c in conns]
    mine = connection.muxed_conn.next_stream_id % 2
    return next(s.muxed_stream.stream_id for s in connection.streams
                if str(s.get_protocol()).startswith("/meshsub/") and s.muxed_stream.stream_id % 2 != mine)


@pytest.mark.slow
async def test_a_peer_sending_past_its_receive_window_is_disconnected_not_buffered() -> None:
    """Quirk 35: py-libp2p buffered every byte a peer sent past the window it was granted, so a peer writing to the
    stream a host's pubsub opened to it (which the host never reads) grew the host's memory without bound."""
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK) as node, open_host(os.urandom(32), LOOPBACK) as hostile:
            await node.subscribe(TOPIC, accept_all)
            await hostile.subscribe(TOPIC, accept_all)
            events = node.peer_events()
            await node.connect(hostile.listen_addrs[0])
            await node.wait_for_mesh(TOPIC, hostile.peer_id)
            await hostile.wait_for_mesh(TOPIC, node.peer_id)
            assert await events.receive() == PeerEvent(hostile.peer_id, connected=True)
            target = pubsub_stream_opened_by(hostile, node.peer_id)
            raw = muxed_connection(hostile, node.peer_id)
            kept = muxed_connection(node, hostile.peer_id)
            largest = 0
            with contextlib.suppress(IOException):  # the node hung up
                for _ in range(64):  # 4 MiB, sixteen times the stream's window
                    await raw._write_frame(struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_DATA, 0, target, FRAME) + b"x" * FRAME)
                    largest = max(largest, sum(len(b) for b in kept.stream_buffers.values()))
            assert largest <= 2**20
            assert await events.receive() == PeerEvent(hostile.peer_id, connected=False)
            assert node.stats().hostile_input == 1

