"""What one hostile peer can make a host (gossip.host) spend over real connections on loopback: figures, no targets;
not a test. Each attack runs against a fresh host, the hostile peer a host of its own in the same process (so CPU
figures are both hosts'), writing raw yamux frames past its muxer, RPCs on a /meshsub stream of its own, or bare
sockets (gossip.host quirks 35-40, 49, 51, 57, 66-68):

- window: 64 MiB of DATA on the pubsub stream the host opened to the peer, which the host never reads (35);
- syns: SYNS (5,000) bare SYN frames, 500 to a write, never used: how long the host took to read and answer them,
  CPU, the ACKs and RSTs it wrote, the most streams it held at once (36, 67);
- answered: ANSWERED (1,000) streams opened with SYN+DATA frames naming a protocol whose handler answers and returns,
  200 to a write (each once the last were answered or reset), that the peer never closes: how many the host answered
  and still holds, how many it counts open, the memory Python allocated meanwhile (tracemalloc), how long it took (36);
- control-graft, control-ihave, control-iwant: 3 RPCs of 20,000 GRAFTs, IHAVEs (distinct topics) or IWANTs:
  CPU, warnings logged (37);
- iwant: 40 IWANT RPCs for 40 cached messages of 20 KB, 50 ms apart: bytes the host sent back (39);
- stall: 300 sockets that never start Noise, then a peer's connect() (38);
- proposals: one stream of 5,000 multistream-select proposals of unknown protocols: CPU (40);
- fill: 250 streams each sent a full initial window (256 KiB) while in negotiation: bytes the host buffers for one
  connection within the windows it granted;
- many: --connections peers of fresh keys (50 by default) each doing as `fill` at once, subscribed to a topic so that
  their connections are in use (34): the most bytes the host buffered across its connections, the connections it
  kept, and the process's RSS before, at its peak and after (44);
- churn-single, churn-packed: a subscribed peer alternating SUBSCRIBE and UNSUBSCRIBE of the host's topic while
  the host's message cache holds 30 messages of 20 KB: 2,000 RPCs of one pair each, or 4 RPCs of 2,500 pairs each
  (py-libp2p reads at most 5,000 subscriptions an RPC): CPU, the tasks the host started, the bytes of RPCs it wrote
  to the peer, warnings logged (51);
- ihave: --ihave-rpcs (90) RPCs, 9 a second (py-libp2p penalises a peer past 10 a second a topic), each an IHAVE of
  5,000 unseen ids of 20 bytes (110 KB) for the host's topic (heartbeat 1 s): the ids the host asked for in IWANTs,
  the bytes it wrote to the peer, CPU (57);
- deaf: pings, 5,000 to a write, from a peer that reads nothing (py-libp2p's own frame writer, default socket
  buffers): how long the host kept the connection, watched for DEAF_S (60) seconds (49);
- pings: --pings (5,000) pings in frames of 5,000 from a peer (py-libp2p's own frame writer): how long the host took
  to read them, how many it answered, CPU (66);
- tiny: --tiny (46,000) DATA frames of --tiny-bytes (1) each (600 KB of 1), 5,000 to a write, on a stream id never
  opened (the host reads and drops them), from a peer using py-libp2p's own frame writer: how long the host took to
  read them, CPU, whether it kept the connection (68);
- credit: the host writes past the receive window of each of CREDIT_STREAMS (200) streams to a peer that reads none
  of them, each write with a deadline of CREDIT_DEADLINE_S (8) seconds, as the node's sync writes have their timeout:
  the CPU the host spends while they wait for window credit that never comes, and when and how each write ended (65).

    python benchmarks/p2p_exhaust.py                 # every attack
    python benchmarks/p2p_exhaust.py syns control-graft    # some
    python benchmarks/p2p_exhaust.py many --connections 100
    python benchmarks/p2p_exhaust.py ihave --ihave-rpcs 20
    python benchmarks/p2p_exhaust.py tiny --tiny 100000
    python benchmarks/p2p_exhaust.py tiny --tiny-bytes 1023
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import os
import resource
import socket
import struct
import sys
import time
import tracemalloc
from contextlib import AsyncExitStack
from pathlib import Path

import trio
from libp2p.pubsub.pb import rpc_pb2
from libp2p.stream_muxer.yamux.yamux import (DEFAULT_WINDOW_SIZE, FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN, TYPE_DATA,
                                             TYPE_PING, TYPE_WINDOW_UPDATE, YAMUX_HEADER_FORMAT, Yamux)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip.frames import encode_uvarint  # noqa: E402
from gossip.host import Host, HostError, Stream, open_host  # noqa: E402

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
TOPIC = "/vouchnet/bench/exhaust"


def muxed(host: Host, peer_id: str):  # type: ignore[no-untyped-def]
    """`host`'s yamux connection to `peer_id`."""
    return next(c.muxed_conn for p, conns in host._host.get_network().connections.items()
                if p.to_base58() == peer_id for c in conns)


def peer_stream_ids(conn) -> int:  # type: ignore[no-untyped-def]
    """The parity of the stream ids the other end of `conn` opens."""
    return conn.next_stream_id % 2 ^ 1


def frame(kind: int, flags: int, stream_id: int, data: bytes = b"", length: int | None = None) -> bytes:
    return struct.pack(YAMUX_HEADER_FORMAT, 0, kind, flags, stream_id, len(data) if length is None else length) + data


def line(text: str) -> bytes:
    return encode_uvarint(len(text) + 1) + text.encode() + b"\n"


def accept(peer: str, data: bytes) -> bool:
    return True


async def window(node: Host, hostile: Host) -> str:
    await node.subscribe(TOPIC, accept)
    await hostile.subscribe(TOPIC, accept)
    await node.connect(hostile.listen_addrs[0])
    await node.wait_for_mesh(TOPIC, hostile.peer_id)
    raw, kept = muxed(hostile, node.peer_id), muxed(node, hostile.peer_id)
    target = next(i for i in raw.streams if i % 2 != raw.next_stream_id % 2)
    largest, sent = 0, 0
    try:
        for _ in range(1024):
            await raw._write_frame(frame(TYPE_DATA, 0, target, b"x" * 65536))
            sent += 65536
            largest = max(largest, sum(len(b) for b in kept.stream_buffers.values()))
    except Exception:
        pass
    return (f"{sent / 2**20:.1f} MiB sent; at most {largest / 2**20:.1f} MiB buffered; "
            f"connected at the end: {hostile.peer_id in node.connected_peers()}")


async def syns(node: Host, hostile: Host) -> str:
    await node.subscribe(TOPIC, accept)
    await hostile.subscribe(TOPIC, accept)  # in use: the hostile host never closes it as idle (quirk 34)
    await node.connect(hostile.listen_addrs[0])
    await trio.sleep(1)  # the hosts' own streams (pubsub, identify) opened first
    raw, kept = muxed(hostile, node.peer_id), muxed(node, hostile.peer_id)
    raw._write_frame = functools.partial(Yamux._write_frame, raw)  # py-libp2p's: no bound of the hostile host's
    first, most, written, last = raw.next_stream_id + 2000, 0, {"ACK": 0, "RST": 0}, trio.Event()
    last_id, write_frame = first + 2 * (SYNS - 1), kept._write_frame

    async def counting(data: bytes) -> None:
        _, kind, flags, stream_id, _ = struct.unpack(YAMUX_HEADER_FORMAT, data[:12])
        if kind == TYPE_WINDOW_UPDATE and stream_id >= first and flags & (FLAG_ACK | FLAG_RST):
            written["ACK" if flags & FLAG_ACK else "RST"] += 1
        await write_frame(data)
        if stream_id == last_id and flags & FLAG_RST:
            last.set()

    kept._write_frame = counting
    cpu, start = time.process_time(), time.monotonic()
    for batch in range(0, SYNS, 500):
        await raw._write_frame(b"".join(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, first + 2 * i)
                                        for i in range(batch, min(batch + 500, SYNS))))
        most = max(most, len(kept.streams))
    with trio.move_on_after(60):
        await last.wait()
    return (f"{SYNS:,} SYNs read and answered in {time.monotonic() - start:.1f} s, "
            f"{time.process_time() - cpu:.2f} s of CPU; the host wrote {written['ACK']:,} ACKs and "
            f"{written['RST']:,} RSTs; at most {most} streams held; connected at the end: "
            f"{hostile.peer_id in node.connected_peers()}")


async def answered(node: Host, hostile: Host) -> str:
    node.set_stream_handler(ONCE, _answer_once)
    await node.connect(hostile.listen_addrs[0])
    await trio.sleep(1)  # the hosts' own streams (pubsub, identify) opened first
    raw, kept = muxed(hostile, node.peer_id), muxed(node, hostile.peer_id)
    raw._write_frame = functools.partial(Yamux._write_frame, raw)  # py-libp2p's: no bound of the hostile host's
    first, request = raw.next_stream_id + 2000, line("/multistream/1.0.0") + line(ONCE)
    ended: dict[int, str] = {}
    write_frame, batch_ended = kept._write_frame, trio.Event()

    async def watching(data: bytes) -> None:
        await write_frame(data)
        _, _, flags, stream_id, _ = struct.unpack(YAMUX_HEADER_FORMAT, data[:12])
        if stream_id >= first and flags & (FLAG_FIN | FLAG_RST) and stream_id not in ended:
            ended[stream_id] = "RST" if flags & FLAG_RST else "FIN"
            if len(ended) % 200 == 0 or len(ended) == ANSWERED:
                batch_ended.set()

    kept._write_frame = watching
    tracemalloc.start()
    cpu, start, allocated = time.process_time(), time.monotonic(), tracemalloc.get_traced_memory()[0]
    with trio.move_on_after(60):
        for batch in range(0, ANSWERED, 200):  # (each batch once the last ended: the peer's host reads little)
            await raw._write_frame(b"".join(frame(TYPE_DATA, FLAG_SYN, first + 2 * i, request)
                                            for i in range(batch, min(batch + 200, ANSWERED))))
            await batch_ended.wait()
            batch_ended = trio.Event()
    allocated = tracemalloc.get_traced_memory()[0] - allocated
    tracemalloc.stop()
    held = sum(i >= first for i in kept.streams)
    return (f"{ANSWERED:,} streams opened: {sum(how == 'FIN' for how in ended.values()):,} answered, "
            f"{sum(how == 'RST' for how in ended.values()):,} reset, {held:,} held, {kept.inbound_open()} counted "
            f"open, {allocated / 2**20:.1f} MiB allocated ({allocated / max(held, 1) / 1024:.1f} KiB a stream held), "
            f"in {time.monotonic() - start:.1f} s, {time.process_time() - cpu:.2f} s of CPU")


async def _answer_once(stream: Stream) -> None:
    await stream.write(b"the answer")


async def control(node: Host, hostile: Host, kind: str) -> str:
    await node.subscribe(TOPIC, accept)
    await node.connect(hostile.listen_addrs[0])
    entries = {"graft": dict(graft=[rpc_pb2.ControlGraft(topicID=f"t{i}") for i in range(20_000)]),
               "ihave": dict(ihave=[rpc_pb2.ControlIHave(topicID=f"t{i}", messageIDs=[os.urandom(20)])
                                    for i in range(20_000)]),
               "iwant": dict(iwant=[rpc_pb2.ControlIWant(messageIDs=[os.urandom(20)]) for _ in range(20_000)])}[kind]
    data = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(**entries)).SerializeToString()
    warnings = _Count()
    logging.getLogger("libp2p").addHandler(warnings)
    graft = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(graft=[rpc_pb2.ControlGraft(topicID=TOPIC)]))
    cpu = time.process_time()
    async with await hostile.open_stream(node.peer_id, "/meshsub/1.2.0") as stream:
        for rpc in [data] * 3 + [graft.SerializeToString()]:  # the GRAFT of the host's topic, read last
            await stream.write(encode_uvarint(len(rpc)) + rpc)
        with trio.move_on_after(120):
            await node.wait_for_mesh(TOPIC, hostile.peer_id)
    logging.getLogger("libp2p").removeHandler(warnings)
    return (f"3 RPCs of {len(data)} bytes: {time.process_time() - cpu:.1f} s of CPU, {warnings.count} warnings, "
            f"{node.stats().control_dropped} entries dropped")


async def iwant(node: Host, hostile: Host) -> str:
    await node.subscribe(TOPIC, accept)
    inbox = await hostile.subscribe(TOPIC, accept)
    await node.connect(hostile.listen_addrs[0])
    await node.wait_for_mesh(TOPIC, hostile.peer_id)
    for _ in range(40):
        await node.publish(TOPIC, os.urandom(20_000))
    for _ in range(40):
        await inbox.receive()
    sent = [0]
    send_rpc = node._router.send_rpc
    node._router.send_rpc = lambda peer, rpc, *args: (sent.__setitem__(0, sent[0] + rpc.ByteSize()),  # type: ignore
                                                      send_rpc(peer, rpc, *args))[-1]
    ids = list(node._router.mcache.msgs)
    data = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(iwant=[rpc_pb2.ControlIWant(messageIDs=ids)])).SerializeToString()
    async with await hostile.open_stream(node.peer_id, "/meshsub/1.2.0") as stream:
        for _ in range(40):
            await stream.write(encode_uvarint(len(data)) + data)
            await trio.sleep(0.05)
    return f"40 IWANTs of {len(data)} bytes for {len(ids)} cached messages: {sent[0] / 2**20:.1f} MiB sent back"


async def stall(node: Host, honest: Host) -> str:
    port = int(node.listen_addrs[0].split("/")[4])
    sockets = []
    for i in range(300):
        sock = socket.socket()
        sock.bind(("127.0.0.2", 0))
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        sockets.append(sock)
        if i % 50 == 49:
            await trio.sleep(0.3)  # let the host accept them (its listen backlog is about 128)
    await trio.sleep(1)
    try:
        await honest.connect(node.listen_addrs[0])
        outcome = "connected"
    except HostError as error:
        outcome = f"refused ({str(error)[:60]}...)"
    for sock in sockets:
        sock.close()
    return f"300 stalled sockets, then a peer's connect(): {outcome}; {node.stats().handshakes_aborted} aborted"


async def proposals(node: Host, hostile: Host) -> str:
    await node.connect(hostile.listen_addrs[0])
    raw = muxed(hostile, node.peer_id)
    payload = line("/multistream/1.0.0") + b"".join(line(f"/unknown/{i}") for i in range(5000))
    cpu = time.process_time()
    await raw._write_frame(frame(TYPE_DATA, FLAG_SYN, raw.next_stream_id + 4000, payload))
    await trio.sleep(12)  # the negotiation's timeout, and more
    return f"5,000 proposals ({len(payload)} bytes): {time.process_time() - cpu:.1f} s of CPU"


async def fill_windows(node: Host, hostile: Host) -> None:
    """`hostile`, connected to `node`, opens 250 streams and sends each a full initial window (4 frames of 65,000
    bytes), which `node` cannot read while they are in negotiation."""
    raw = muxed(hostile, node.peer_id)
    first = raw.next_stream_id + 6000
    for k in range(250):
        await raw._write_frame(frame(TYPE_WINDOW_UPDATE, FLAG_SYN, first + 2 * k))
        for _ in range(4):
            await raw._write_frame(frame(TYPE_DATA, 0, first + 2 * k, b"x" * 65000))


def buffered(node: Host) -> int:
    """Bytes `node`'s yamux connections buffer, all of them."""
    return sum(len(b) for conns in node._host.get_network().connections.values() for c in conns
               for b in c.muxed_conn.stream_buffers.values())


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def fill(node: Host, hostile: Host) -> str:
    await node.connect(hostile.listen_addrs[0])
    await fill_windows(node, hostile)
    await trio.sleep(2)
    return (f"250 streams: {buffered(node) / 2**20:.1f} MiB buffered, "
            f"connected: {hostile.peer_id in node.connected_peers()}")


async def many(node: Host, _: Host) -> str:
    before, peak = rss_mib(), [0.0, 0]
    async with AsyncExitStack() as stack:
        hostiles = [await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK)) for _ in range(CONNECTIONS)]
        for hostile in hostiles:
            await hostile.subscribe(TOPIC, accept)  # in use: never closed as idle (quirk 34)
            await hostile.connect(node.listen_addrs[0])

        async def fill_one(hostile: Host) -> None:
            with contextlib.suppress(Exception):  # the node hung up
                await fill_windows(node, hostile)

        async def sample() -> None:
            while True:
                peak[:] = max(peak[0], rss_mib()), max(peak[1], buffered(node))
                await trio.sleep(0.1)

        start = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            async with trio.open_nursery() as fillers:
                for hostile in hostiles:
                    fillers.start_soon(fill_one, hostile)
            await trio.sleep(2)
            nursery.cancel_scope.cancel()
        took = time.monotonic() - start
        kept = sum(h.peer_id in node.connected_peers() for h in hostiles)
        held = buffered(node)
    stats = node.stats()
    refused = (f"; {stats.connections_over_budget} connections closed and {stats.streams_over_budget} streams reset "
               "over the node's budget" if hasattr(stats, "connections_over_budget") else "")
    return (f"{CONNECTIONS} peers filling 250 streams each in {took:.0f} s: at most {peak[1] / 2**20:.0f} MiB buffered "
            f"({held / 2**20:.0f} MiB at the end), {kept} connections kept{refused}; RSS {before:.0f} MiB before, "
            f"{peak[0]:.0f} at the peak, {rss_mib():.0f} after")


async def churn(node: Host, hostile: Host, rpcs: int, pairs: int) -> str:
    await node.subscribe(TOPIC, accept)
    await hostile.subscribe(TOPIC, accept)
    await node.connect(hostile.listen_addrs[0])
    await node.wait_for_mesh(TOPIC, hostile.peer_id)
    raw = muxed(hostile, node.peer_id)
    raw._write_frame = functools.partial(Yamux._write_frame, raw)  # py-libp2p's: no bound of the hostile host's
    for i in range(30):
        await node.publish(TOPIC, i.to_bytes(4, "big") + b"x" * 20_000)
    pubsub, counts = node._pubsub, {"tasks": 0, "bytes": 0}
    write_msg, run_task = pubsub.write_msg, pubsub.manager.run_task

    async def counting_write(stream, rpc):  # type: ignore[no-untyped-def]
        counts["bytes"] += rpc.ByteSize()
        return await write_msg(stream, rpc)

    def counting_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        counts["tasks"] += 1
        return run_task(*args, **kwargs)

    pubsub.write_msg, pubsub.manager.run_task = counting_write, counting_run
    pair = [rpc_pb2.RPC.SubOpts(subscribe=False, topicid=TOPIC), rpc_pb2.RPC.SubOpts(subscribe=True, topicid=TOPIC)]
    data = rpc_pb2.RPC(subscriptions=pair * pairs).SerializeToString()
    done = rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid="done")]).SerializeToString()
    warnings = _Count()
    logging.getLogger().addHandler(warnings)
    cpu, start = time.process_time(), time.monotonic()
    ended = ""
    try:
        async with await hostile.open_stream(node.peer_id, "/meshsub/1.2.0") as stream:
            for rpc in [data] * rpcs + [done]:
                await stream.write(encode_uvarint(len(rpc)) + rpc)
            while hostile.peer_id not in {p.to_base58() for p in node._pubsub.peer_topics.get("done", ())}:
                await trio.sleep(0.05)
            await trio.sleep(2)  # the tasks it started
    except HostError as error:
        ended = f" (ended: {error})"[:120]
    logging.getLogger().removeHandler(warnings)
    return (f"{rpcs} RPCs of {len(data)} bytes in {time.monotonic() - start:.1f} s{ended}: "
            f"{time.process_time() - cpu:.1f} s of CPU, {counts['tasks']:,} tasks, "
            f"{counts['bytes'] / 2**20:.1f} MiB written to the peer, {warnings.count} warnings")


async def ihave(node: Host, hostile: Host) -> str:
    await node.subscribe(TOPIC, accept)
    await node.connect(hostile.listen_addrs[0])
    pubsub, router, counts = node._pubsub, node._router, {"asked": 0, "bytes": 0, "read": 0}
    write_msg, handle_rpc = pubsub.write_msg, router.handle_rpc

    async def counting_write(stream, rpc):  # type: ignore[no-untyped-def]
        counts["asked"] += sum(len(entry.messageIDs) for entry in rpc.control.iwant)
        counts["bytes"] += rpc.ByteSize()
        return await write_msg(stream, rpc)

    async def counting_handle(rpc, peer):  # type: ignore[no-untyped-def]
        counts["read"] += 1
        return await handle_rpc(rpc, peer)

    pubsub.write_msg, router.handle_rpc = counting_write, counting_handle
    rpcs = [rpc_pb2.RPC(control=rpc_pb2.ControlMessage(ihave=[rpc_pb2.ControlIHave(
        topicID=TOPIC, messageIDs=[os.urandom(20) for _ in range(5000)])])).SerializeToString()
        for _ in range(IHAVE_RPCS)]
    cpu, start = time.process_time(), trio.current_time()
    async with await hostile.open_stream(node.peer_id, "/meshsub/1.2.0") as stream:
        for n, rpc in enumerate(rpcs):
            await trio.sleep_until(start + n / IHAVE_PER_S)
            await stream.write(encode_uvarint(len(rpc)) + rpc)
        while counts["read"] + pubsub.graylisted_rpcs < IHAVE_RPCS:  # a graylisted peer's RPCs are emptied unread
            await trio.sleep(0.05)
    await trio.sleep(0.5)  # the IWANTs still queued
    return (f"{IHAVE_RPCS} RPCs of {len(rpcs[0]):,} bytes read in {trio.current_time() - start:.1f} s: "
            f"{time.process_time() - cpu:.1f} s of CPU, {counts['asked']:,} ids asked in IWANTs, "
            f"{counts['bytes'] / 2**20:.1f} MiB written to the peer, {node.stats().control_dropped:,} ids dropped, "
            f"{pubsub.graylisted_rpcs} RPCs ignored as the peer's (graylisted), its score "
            f"{node.peer_score(hostile.peer_id):.0f}")


async def deaf(node: Host, hostile: Host) -> str:
    events = node.peer_events()
    await node.connect(hostile.listen_addrs[0])
    await events.receive()
    raw = muxed(hostile, node.peer_id)

    async def never(*_: object) -> bytes:
        await trio.sleep_forever()
        raise AssertionError

    raw.secured_conn.read = never
    raw._write_frame = functools.partial(Yamux._write_frame, raw)  # py-libp2p's: no bound of the hostile host's
    sent, start, closed = 0, time.monotonic(), None

    async def pings() -> None:
        nonlocal sent
        with contextlib.suppress(Exception):
            while True:
                await raw._write_frame(frame(TYPE_PING, FLAG_SYN, 0, length=1) * 5000)
                sent += 5000

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pings)
        with trio.move_on_after(DEAF_S):
            while (await events.receive()).connected:
                pass
            closed = time.monotonic() - start
        nursery.cancel_scope.cancel()
    held = f"closed after {closed:.1f} s" if closed is not None else f"still open after {DEAF_S} s"
    return f"{sent:,} pings sent; the host's connection {held}"


async def pings(node: Host, hostile: Host) -> str:
    events = node.peer_events()
    await node.connect(hostile.listen_addrs[0])
    await events.receive()
    raw, kept = muxed(hostile, node.peer_id), muxed(node, hostile.peer_id)
    raw._write_frame = functools.partial(Yamux._write_frame, raw)  # py-libp2p's: no bound of the hostile host's
    counts = {"read": 0, "answered": 0}
    header_read, write_frame = kept.header_read, kept._write_frame

    def reading(header: bytes, fields: tuple[int, ...], now: float) -> bytes:
        counts["read"] += fields[1] == TYPE_PING
        return header_read(header, fields, now)

    async def answering(data: bytes) -> None:
        counts["answered"] += data[1] == TYPE_PING and data[2:4] != b"\x00\x01"  # (its own pings have FLAG_SYN)
        await write_frame(data)

    kept.header_read, kept._write_frame = reading, answering
    cpu, start = time.process_time(), time.monotonic()
    with contextlib.suppress(Exception):  # the host hung up
        for sent in range(0, PINGS, 5000):
            await raw._write_frame(frame(TYPE_PING, FLAG_SYN, 0, length=1) * min(5000, PINGS - sent))
    while counts["read"] < PINGS and node.connected_peers():
        await trio.sleep(0.05)
    took = time.monotonic() - start
    return (f"{PINGS:,} pings ({PINGS * 12 / 1000:.0f} KB) read in {took:.1f} s, {counts['answered']:,} answered, "
            f"{time.process_time() - cpu:.2f} s of CPU; connected at the end: {bool(node.connected_peers())}")


async def tiny(node: Host, hostile: Host) -> str:
    await node.subscribe(TOPIC, accept)
    await hostile.subscribe(TOPIC, accept)  # in use: the hostile host never closes it as idle (quirk 34)
    await node.connect(hostile.listen_addrs[0])
    await node.wait_for_mesh(TOPIC, hostile.peer_id)
    raw, kept = muxed(hostile, node.peer_id), muxed(node, hostile.peer_id)
    raw._write_frame = functools.partial(Yamux._write_frame, raw)  # py-libp2p's: no bound of the hostile host's
    raw.keepalive_timeout = math.inf  # (the host's answers to its pings wait behind its frames)
    nowhere, read, header_read = raw.next_stream_id + 4000, [0], kept.header_read

    def reading(header: bytes, fields: tuple[int, ...], now: float) -> bytes:
        read[0] += fields[1] == TYPE_DATA and fields[3] == nowhere
        return header_read(header, fields, now)

    kept.header_read = reading
    cpu, start = time.process_time(), time.monotonic()
    with contextlib.suppress(Exception):  # the host hung up
        for sent in range(0, TINY, 5000):
            await raw._write_frame(frame(TYPE_DATA, 0, nowhere, b"x" * TINY_BYTES) * min(5000, TINY - sent))
    while read[0] < TINY and node.connected_peers():
        await trio.sleep(0.05)
    took = time.monotonic() - start
    return (f"{TINY:,} DATA frames of {TINY_BYTES:,} bytes ({TINY * (12 + TINY_BYTES) / 1000:,.0f} KB) read in "
            f"{took:.1f} s, {time.process_time() - cpu:.2f} s of CPU ({(time.process_time() - cpu) / took:.0%} of a "
            f"core); {read[0]:,} read, connected at the end: {bool(node.connected_peers())}")


async def credit(node: Host, hostile: Host) -> str:
    hostile.set_stream_handler(SINK, _read_nothing)
    await node.connect(hostile.listen_addrs[0])
    streams = [await node.open_stream(hostile.peer_id, SINK) for _ in range(CREDIT_STREAMS)]
    ended: dict[str, list[float]] = {}
    start = time.monotonic()

    async def write_past_window(stream: Stream) -> None:
        how = "cut at its deadline"
        with trio.move_on_after(CREDIT_DEADLINE_S):
            try:
                await stream.write(b"x" * (DEFAULT_WINDOW_SIZE + 65536))
                how = "written"
            except HostError as error:
                how = f"failed ({str(error).rsplit(': ', 1)[-1]})"
        ended.setdefault(how, []).append(time.monotonic() - start)

    async with trio.open_nursery() as nursery:
        for stream in streams:
            nursery.start_soon(write_past_window, stream)
        await trio.sleep(2.5)  # each stream's window sent (some 1.5 s): every write waits for credit
        cpu, wall = time.process_time(), time.monotonic()
        await trio.sleep(2.5)  # (py-libp2p gave up on each write 5 s into its wait)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    for stream in streams:
        await stream.reset()
    how = "; ".join(f"{len(times)} {how} after {min(times):.1f}-{max(times):.1f} s" for how, times in ended.items())
    return f"{CREDIT_STREAMS} writes waiting for window credit: {cpu:.2f} s of CPU in {wall:.1f} s; {how}"


async def _read_nothing(stream: Stream) -> None:
    await trio.sleep_forever()


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


CONNECTIONS = 50  # peers of the `many` attack (--connections)
DEAF_S = 60  # seconds the `deaf` attack watches the connection
IHAVE_RPCS = 90  # IHAVE RPCs of the `ihave` attack
IHAVE_PER_S = 9  # its pace: under py-libp2p's 10 IHAVEs a second a topic, past which it penalises the peer
PINGS = 5000  # pings of the `pings` attack (--pings)
TINY, TINY_BYTES = 46_000, 1  # DATA frames of the `tiny` attack (--tiny), and the bytes of each (--tiny-bytes)
SYNS = 5000  # SYN frames of the `syns` attack
ANSWERED = 1000  # streams of the `answered` attack
CREDIT_STREAMS, CREDIT_DEADLINE_S = 200, 8.0  # streams of the `credit` attack, and its writes' deadline
SINK = "/vouchnet/bench/sink"
ONCE = "/vouchnet/bench/once"  # answered, then closed for sending (the `answered` attack)
ATTACKS = {"window": window, "syns": syns, "answered": answered, "stall": stall, "iwant": iwant, "proposals": proposals,
           "fill": fill, "many": many, "deaf": deaf, "ihave": ihave, "pings": pings, "tiny": tiny, "credit": credit,
           "churn-single": lambda node, hostile: churn(node, hostile, 2000, 1),
           "churn-packed": lambda node, hostile: churn(node, hostile, 4, 2500),
           **{f"control-{kind}": (lambda kind: lambda node, hostile: control(node, hostile, kind))(kind)
              for kind in ("graft", "ihave", "iwant")}}


async def main(names: list[str]) -> None:
    for name in names:
        async with open_host(os.urandom(32), LOOPBACK) as node, open_host(os.urandom(32), LOOPBACK) as hostile:
            print(f"{name}: {await ATTACKS[name](node, hostile)}; maxrss "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("attacks", nargs="*", help=f"any of {', '.join(ATTACKS)} (default: all)")
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="peers of the `many` attack")
    parser.add_argument("--ihave-rpcs", type=int, default=IHAVE_RPCS, help="RPCs of the `ihave` attack")
    parser.add_argument("--pings", type=int, default=PINGS, help="pings of the `pings` attack")
    parser.add_argument("--tiny", type=int, default=TINY, help="DATA frames of the `tiny` attack")
    parser.add_argument("--tiny-bytes", type=int, default=TINY_BYTES, help="bytes of each frame of the `tiny` attack")
    args = parser.parse_args()
    chosen, CONNECTIONS, IHAVE_RPCS, PINGS, TINY, TINY_BYTES = (args.attacks or list(ATTACKS), args.connections,
                                                                args.ihave_rpcs, args.pings, args.tiny, args.tiny_bytes)
    if unknown := set(chosen) - set(ATTACKS):
        parser.error(f"unknown attacks {sorted(unknown)}; choose from {', '.join(ATTACKS)}")
    logging.basicConfig()
    logging.getLogger().handlers[0].setLevel(logging.ERROR)  # py-libp2p's warnings are counted, not printed
    trio.run(main, chosen)
