"""What py-libp2p keeps for one hostile peer stays small (gossip.host quirks 46 and 47), over real connections on
loopback; benchmarks/p2p_memory.py measures it."""

import os

import pytest
import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from gossip.frames import encode_uvarint
from gossip.host import MAX_PEER_TOPICS, MAX_TOPIC_LENGTH, Host, open_host
from tests.gossip.test_host import LOOPBACK, TOPIC, accept_all
from tests.gossip.test_host_growth import QUIET, routed


async def send_subscriptions(node: Host, peer: Host, subscriptions: list[rpc_pb2.RPC.SubOpts]) -> None:
    """`peer` writes one RPC of `subscriptions` on a /meshsub stream of its own to `node`, and waits until `node`
    has handled them."""
    handled, handle = trio.Event(), node._pubsub.handle_subscription
    left = len(subscriptions)

    def counting(origin: ID, subscription: rpc_pb2.RPC.SubOpts) -> None:
        nonlocal left
        handle(origin, subscription)
        left -= 1
        if not left:
            handled.set()

    node._pubsub.handle_subscription = counting  # type: ignore[method-assign]
    try:
        async with await peer.open_stream(node.peer_id, "/meshsub/1.2.0") as stream:
            data = rpc_pb2.RPC(subscriptions=subscriptions).SerializeToString()
            await stream.write(encode_uvarint(len(data)) + data)
            await handled.wait()
    finally:
        del node._pubsub.handle_subscription


def topics_of(node: Host, peer: Host) -> list[str]:
    """The topics `node` keeps `peer`'s subscriptions to."""
    return [topic for topic, peers in node._pubsub.peer_topics.items() if ID.from_base58(peer.peer_id) in peers]


@pytest.mark.slow
async def test_a_host_keeps_a_few_short_topics_of_a_peer() -> None:
    """Quirk 46: py-libp2p kept a peer's subscriptions to 100 topics of any length: 6 MB for 60,000-character names."""
    subscribe = [rpc_pb2.RPC.SubOpts(subscribe=True, topicid=topic) for topic in
                 [TOPIC, *("x%d" % n + "x" * 60_000 for n in range(3)), *("t%d" % n for n in range(100))]]
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK, config=QUIET) as node, \
                open_host(os.urandom(32), LOOPBACK, config=QUIET) as peer:
            await node.subscribe(TOPIC, accept_all)
            await node.connect(peer.listen_addrs[0])
            await send_subscriptions(node, peer, subscribe)
            kept = topics_of(node, peer)
            assert TOPIC in kept and len(kept) == MAX_PEER_TOPICS
            assert max(map(len, kept)) <= MAX_TOPIC_LENGTH
            assert node.stats().hostile_input == 1  # the first refused; the rest are not logged
            await send_subscriptions(node, peer, [rpc_pb2.RPC.SubOpts(subscribe=False, topicid="t0"),
                                                  rpc_pb2.RPC.SubOpts(subscribe=True, topicid="later")])
            assert "later" in topics_of(node, peer) and "t0" not in topics_of(node, peer)


@pytest.mark.slow
async def test_a_host_keeps_no_copy_of_the_messages_it_routed() -> None:
    """Quirk 47: py-libp2p kept the last 500 to 1,000 messages routed, whole, to compare a later one of the same id."""
    with trio.fail_after(30):
        async with routed(20) as (a, b):
            assert not a._router.equivocation_detection and not b._router.equivocation_detection
