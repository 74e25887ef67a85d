"""What a node keeps that grows as it runs, as figures per simulated day at 20 records/s (a growth hunt; not a test).

1. Per message routed: two hosts on loopback, A publishing `--messages` messages of a record's size to B, heartbeats
   every second. The Python memory both hold more after the second half than after the first (tracemalloc), per
   message, and what recent_message_deliveries holds of it (gossip.host quirk 41: a float each, for ever, before
   the fix). What the seen cache keeps (120 s of ids) is in the first figure: the run is shorter than its TTL.
2. Per hostile identity: a node, and `--peers` peers with fresh keys in turn, each connecting, sending a PRUNE of
   the node's topic asking for 2^40 s of backoff, and leaving once it is handled. The node's memory grown per
   identity over the second half, the identities a second one process managed, and the backoff entries held
   (quirk 42: each kept for ever before the fix), then MAX_PRUNE_BACKOFF_S + BACKOFF_SLACK_S later.
3. Per record stored, which is kept for ever by design: `--records` records (digests and vouches, alternately,
   as benchmarks/ingest.py makes them) appended in batches of 100 to a RecordStore: bytes a record in
   records.ledger and records.index, and the size of each -wal file after.

    python benchmarks/growth.py                       # 4,000 messages, 400 identities, 20,000 records
    python benchmarks/growth.py --messages 1000 --peers 100 --records 5000
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import sys
import tempfile
import time
import tracemalloc
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402
from libp2p.pubsub.pb import rpc_pb2  # noqa: E402

from benchmarks.ingest import make_records  # noqa: E402
from gossip.frames import encode_uvarint  # noqa: E402
from gossip.host import BACKOFF_SLACK_S, MAX_PRUNE_BACKOFF_S, HostConfig, _forget_backoffs, open_host  # noqa: E402
from gossip.store import INDEX_FILE, LEDGER_FILE, RecordStore  # noqa: E402
from vouching import load_record  # noqa: E402

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
TOPIC = "/vouchnet/growth/records/1"
DAY = 86_400 * 20  # records (or messages) a day at 20 a second
MESSAGE_BYTES = 600  # about one digest record


def _accept(peer: str, data: bytes) -> bool:
    return True


def _traced() -> int:
    return tracemalloc.get_traced_memory()[0]


async def per_message(messages: int) -> None:
    async with open_host(os.urandom(32), LOOPBACK) as a, open_host(os.urandom(32), LOOPBACK) as b:
        inboxes = [await a.subscribe(TOPIC, _accept), await b.subscribe(TOPIC, _accept)]  # (A's own come back)
        await a.connect(b.listen_addrs[0])
        await a.wait_for_mesh(TOPIC, b.peer_id)
        marks = []
        for half in range(2):
            for n in range(messages // 2):
                await a.publish(TOPIC, (b"%d-%d " % (half, n)).ljust(MESSAGE_BYTES, b"."))
                for inbox in inboxes:
                    await inbox.receive()
            await trio.sleep(6)  # past the message cache's 5 heartbeats
            gc.collect()
            marks.append(_traced())
        grown = (marks[1] - marks[0]) / (messages // 2)
        held = sum(len(v) for h in (a, b) for v in h._router.recent_message_deliveries.values())
        print(f"per message routed: {grown:.0f} bytes held by the two hosts once the message cache let go (the seen "
              f"cache's, for 120 s); recent_message_deliveries holds {held} of the {2 * messages} routed (quirk 41 "
              f"kept each, 32 bytes: {32 * DAY / 2**20:.0f} MiB a day at 20/s)")


def _hostile(address: str, node_id: str, peers: int, acks: Connection) -> None:
    """The hostile party, in a process of its own (its hosts' memory is not the node's): `peers` fresh keys in turn,
    each connecting, sending a PRUNE asking 2^40 s of backoff, and leaving once the node says it handled it."""
    rpc = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(prune=[rpc_pb2.ControlPrune(topicID=TOPIC, backoff=2**40)]))
    data = rpc.SerializeToString()

    async def flood() -> None:
        for _ in range(peers):
            async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(heartbeat_interval=30)) as peer:
                await peer.connect(address)
                async with await peer.open_stream(node_id, "/meshsub/1.2.0") as stream:
                    await stream.write(encode_uvarint(len(data)) + data)
                    await trio.to_thread.run_sync(acks.recv)

    trio.run(flood)


async def per_identity(peers: int) -> None:
    async with open_host(os.urandom(32), LOOPBACK) as node:
        await node.subscribe(TOPIC, _accept)
        spawn = multiprocessing.get_context("spawn")  # (a forked child would inherit the running trio loop)
        ours, theirs = spawn.Pipe()
        handle_prune, handled = node._router.handle_prune, 0
        marks: list[int] = []

        async def handle(prune: rpc_pb2.ControlPrune, sender: object) -> None:
            nonlocal handled
            await handle_prune(prune, sender)
            handled += 1
            if handled in (peers // 2, peers):  # that peer waits while the node settles and is measured
                await trio.sleep(1.5)  # a heartbeat
                gc.collect()
                marks.append(_traced())
            ours.send(None)

        node._router.handle_prune = handle  # type: ignore[method-assign]
        hostile = spawn.Process(target=_hostile, args=(node.listen_addrs[0], node.peer_id, peers, theirs))
        started = time.perf_counter()
        hostile.start()
        await trio.to_thread.run_sync(hostile.join)
        rate = peers / (time.perf_counter() - started)
        grown = (marks[1] - marks[0]) / (peers - peers // 2)
        held = sum(len(v) for v in node._router.back_off.values())
        later = {topic: dict(v) for topic, v in node._router.back_off.items()}
        _forget_backoffs(later, time.time() + MAX_PRUNE_BACKOFF_S + BACKOFF_SLACK_S)
        left = len(node._host.get_network().auto_connector._recent_disconnects)
        print(f"per hostile identity: {grown:.0f} bytes held by the node over the second half (py-libp2p's tables "
              f"of 1,000-2,000 peers filling), {rate:.1f} identities/s from one process; backoff entries {held} of "
              f"{peers}, {sum(map(len, later.values()))} a backoff later (quirk 42 kept each for ever); disconnections "
              f"remembered {left} (quirk 43 kept each for ever)")


def per_record(count: int) -> None:
    raws, _ = make_records(count, issuers=10)
    records = [load_record(raw) for raw in raws]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with RecordStore.open(directory) as store:
            for start in range(0, count, 100):
                store.append(records[start:start + 100])
            wal = {name: (directory / f"{name}-wal").stat().st_size for name in (LEDGER_FILE, INDEX_FILE)
                   if (directory / f"{name}-wal").exists()}
        sizes = {name: (directory / name).stat().st_size for name in (LEDGER_FILE, INDEX_FILE)}
        mean = sum(map(len, raws)) / count
        print(f"per record stored ({mean:.0f}-byte records): " + ", ".join(
            f"{name} {size / count:.0f} bytes ({size / count * DAY / 2**30:.2f} GiB a day at 20/s)"
            for name, size in sizes.items()) + "; -wal files while open: " + ", ".join(
            f"{name} {size / 2**20:.1f} MiB" for name, size in wal.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--peers", type=int, default=400)
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    tracemalloc.start()
    trio.run(per_message, args.messages)
    trio.run(per_identity, args.peers)
    tracemalloc.stop()
    per_record(args.records)


if __name__ == "__main__":
    main()
