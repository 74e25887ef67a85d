"""What a long-running host keeps per message it routes and per peer it met stays bounded (gossip.host quirks 41
to 43), over real connections on loopback."""

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from gossip.frames import encode_uvarint
from gossip.host import (BACKOFF_SLACK_S, MAX_PRUNE_BACKOFF_S, Host, HostConfig, PeerEvent, _forget_backoffs,
                         open_host)
from tests.gossip.test_host import LOOPBACK, TOPIC, accept_all

QUIET = HostConfig(heartbeat_interval=30)  # the tests run the heartbeats they need


@asynccontextmanager
async def routed(count: int) -> AsyncIterator[tuple[Host, Host]]:
    """Hosts a and b meshed on TOPIC, `count` messages published by a and received by b."""
    async with open_host(os.urandom(32), LOOPBACK, config=QUIET) as a, \
            open_host(os.urandom(32), LOOPBACK, config=QUIET) as b:
        await a.subscribe(TOPIC, accept_all)
        inbox = await b.subscribe(TOPIC, accept_all)
        await a.connect(b.listen_addrs[0])
        await a.wait_for_mesh(TOPIC, b.peer_id)
        for n in range(count):
            await a.publish(TOPIC, b"message %d" % n)
        for _ in range(count):
            await inbox.receive()
        yield a, b


@pytest.mark.slow
async def test_a_host_keeps_no_time_per_message_routed_past_a_heartbeat() -> None:
    """Quirk 41: every message published or relayed left a float in recent_message_deliveries for ever."""
    with trio.fail_after(30):
        async with routed(50) as (a, b):
            for host in (a, b):
                host._router.mesh_heartbeat()
                assert not any(host._router.recent_message_deliveries.values())


async def prune_and_leave(node: Host, backoff: int) -> ID:
    """A peer that connects to `node`, sends a PRUNE of its topic asking for `backoff` seconds, and leaves once
    `node` has handled it."""
    handled, handle_prune = trio.Event(), node._router.handle_prune

    async def handle(prune: rpc_pb2.ControlPrune, sender: ID) -> None:
        await handle_prune(prune, sender)
        handled.set()

    node._router.handle_prune = handle  # type: ignore[method-assign]
    async with open_host(os.urandom(32), LOOPBACK, config=QUIET) as peer:
        await node.connect(peer.listen_addrs[0])
        prune = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(prune=[rpc_pb2.ControlPrune(topicID=TOPIC,
                                                                                       backoff=backoff)]))
        async with await peer.open_stream(node.peer_id, "/meshsub/1.2.0") as stream:
            data = prune.SerializeToString()
            await stream.write(encode_uvarint(len(data)) + data)
            await handled.wait()
    del node._router.handle_prune
    return ID.from_base58(peer.peer_id)


@pytest.mark.slow
async def test_the_backoff_of_a_peer_that_left_is_forgotten_once_over() -> None:
    """Quirk 42: a backoff was deleted only when looked up after it ended, which a peer gone never is."""
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK, config=QUIET) as node:
            await node.subscribe(TOPIC, accept_all)
            peer = await prune_and_leave(node, 1)
            node._router.mesh_heartbeat()
            assert peer in node._router.back_off[TOPIC]  # not over yet for grafting (quirk 20)
            node._router.back_off[TOPIC][peer] = int(time.time()) - BACKOFF_SLACK_S  # as if 11 s had passed
            node._router.mesh_heartbeat()
            assert TOPIC not in node._router.back_off


@pytest.mark.slow
async def test_a_peer_backs_a_host_off_for_a_bounded_time_whatever_its_prune_asks() -> None:
    """Quirk 42: a PRUNE asking for 2^40 s of backoff kept the peer in the host's table for 34,000 years."""
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK, config=QUIET) as node:
            await node.subscribe(TOPIC, accept_all)
            peer = await prune_and_leave(node, 2**40)
            assert node._router.back_off[TOPIC][peer] <= time.time() + MAX_PRUNE_BACKOFF_S


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                       st.dictionaries(st.integers(0, 20), st.integers(0, 100), max_size=8), max_size=3),
       st.integers(0, 120))
def test_forgetting_backoffs_keeps_exactly_those_not_over_for_grafting(table: dict[str, dict[int, int]],
                                                                      now: int) -> None:
    back_off = {topic: dict(peers) for topic, peers in table.items()}
    _forget_backoffs(back_off, now)  # type: ignore[arg-type]  # any hashable stands for a peer
    assert back_off == {topic: kept for topic, peers in table.items()
                        if (kept := {p: until for p, until in peers.items() if until + BACKOFF_SLACK_S > now})}


@pytest.mark.slow
async def test_a_host_keeps_nothing_of_a_peer_that_left_for_its_stopped_auto_connector() -> None:
    """Quirk 43: the swarm told the auto-connector of every disconnection, and only its rounds, stopped, pruned it."""
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK, config=QUIET) as node:
            events = node.peer_events()
            async with open_host(os.urandom(32), LOOPBACK, config=QUIET) as peer:
                await node.connect(peer.listen_addrs[0])
                assert await events.receive() == PeerEvent(peer.peer_id, connected=True)
            assert await events.receive() == PeerEvent(peer.peer_id, connected=False)
            assert not node._host.get_network().auto_connector._recent_disconnects
