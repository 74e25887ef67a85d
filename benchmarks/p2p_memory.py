"""What py-libp2p keeps in memory for one hostile peer, over real connections on loopback: figures, no targets; not a
test. Each attack runs against a fresh host, the hostile peer a host of its own in the same process; the figures are
what the process holds after the attack beyond what it held before, as tracemalloc sees it and as resident memory
(protobuf messages live in upb's arenas, which only the second sees), gossip.host quirks 46 and 47:

- topics: --count RPCs, each subscribing to one topic named by --length characters (1 MiB is what an RPC may be),
  the peer staying connected (a peer's subscriptions are forgotten as it leaves) (46);
- messages: --count messages of 256 KiB published to the host's topic, which its validator accepts, then the peer
  stops and the message caches have shifted them out (47).

    python benchmarks/p2p_memory.py                       # both
    python benchmarks/p2p_memory.py topics --count 100 --length 1000000
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import tracemalloc
from pathlib import Path

import trio
from libp2p.pubsub.pb import rpc_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip.batch import MAX_GOSSIP_MESSAGE  # noqa: E402
from gossip.frames import encode_uvarint  # noqa: E402
from gossip.host import Host, HostConfig, open_host  # noqa: E402

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
TOPIC = "/vouchnet/bench/memory"
QUIET = HostConfig(heartbeat_interval=30)  # heartbeats are run by hand where they matter


def accept(peer: str, data: bytes) -> bool:
    return True


def held() -> tuple[int, int]:
    """Bytes tracemalloc sees allocated after a collection, and the process's resident set: protobuf messages live
    in upb's arenas, allocated outside Python's allocator, which only the second sees (once glibc has handed what
    is free back to the system)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as statm:
        resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return tracemalloc.get_traced_memory()[0], resident


def more(before: tuple[int, int]) -> str:
    """What the process holds more than `before`: traced and resident, MiB."""
    after = held()
    return f"{(after[0] - before[0]) / 2**20:.1f} MiB traced, {(after[1] - before[1]) / 2**20:.1f} MiB resident"


async def topics(node: Host, count: int, length: int) -> str:
    await node.subscribe(TOPIC, accept)
    left, handled, handle = count, trio.Event(), node._pubsub.handle_subscription

    def counting(*args: object) -> None:
        nonlocal left
        handle(*args)
        left -= 1
        if not left:
            handled.set()

    node._pubsub.handle_subscription = counting  # type: ignore[method-assign]
    async with open_host(os.urandom(32), LOOPBACK, config=QUIET) as hostile:
        await node.connect(hostile.listen_addrs[0])
        before = held()
        async with await hostile.open_stream(node.peer_id, "/meshsub/1.2.0") as stream:
            for n in range(count):
                data = rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(
                    subscribe=True, topicid=f"{n:06d}".ljust(length, "x"))]).SerializeToString()
                await stream.write(encode_uvarint(len(data)) + data)
            await handled.wait()
            kept = sum(len(topic) for topic in node._pubsub.peer_topics if topic != TOPIC)
            return (f"{count} subscriptions of {length:,} characters: held {more(before)} more "
                    f"(both hosts), {kept:,} characters of topic names kept; hostile input counted "
                    f"{node.stats().hostile_input}")


async def messages(node: Host, count: int, length: int) -> str:
    inbox = await node.subscribe(TOPIC, accept)
    before = held()
    async with open_host(os.urandom(32), LOOPBACK, config=QUIET) as hostile:
        own = await hostile.subscribe(TOPIC, accept)
        await node.connect(hostile.listen_addrs[0])
        await hostile.wait_for_mesh(TOPIC, node.peer_id)
        for _ in range(count):
            await hostile.publish(TOPIC, os.urandom(MAX_GOSSIP_MESSAGE))
        for _ in range(count):
            await inbox.receive()
            await own.receive()  # (its own deliveries, which would keep the messages too)
    for cache in (node._router.mcache, hostile._router.mcache):  # (the stopped host stays referenced in-process)
        for _ in range(cache.history_size + 1):
            cache.shift()
    kept = sum(message.ByteSize() for message in node._router.equivocation_detection.values())
    return (f"{count} messages of {MAX_GOSSIP_MESSAGE // 1024} KiB: held {more(before)} more once"
            f" the peer stopped and the message caches shifted them out; the router keeps {kept / 2**20:.1f} MiB of "
            f"messages to detect equivocation")


async def main(chosen: list[str], count: int | None, length: int) -> None:
    attacks = {"topics": (topics, 100), "messages": (messages, 200)}
    for name in chosen:
        attack, default = attacks[name]
        async with open_host(os.urandom(32), LOOPBACK, config=QUIET) as node:
            print(f"{name}: {await attack(node, count or default, length)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("attacks", nargs="*", help="topics, messages (both by default)")
    parser.add_argument("--count", type=int, help="subscriptions or messages (100 and 200 by default)")
    parser.add_argument("--length", type=int, default=1_000_000, help="characters of each topic name")
    args = parser.parse_args()
    if unknown := set(args.attacks) - {"topics", "messages"}:
        parser.error(f"unknown attacks: {', '.join(sorted(unknown))} (topics, messages)")
    tracemalloc.start()
    trio.run(main, args.attacks or ["topics", "messages"], args.count, args.length)
