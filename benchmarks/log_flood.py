"""Lines and bytes one hostile party makes a node write to its log, as fast as it can send over loopback: figures,
no targets; not a test. A whole node runs in-process (tests/node/in_process.py), logging as `vouchnet run` does
(node.logs.configure_logging, INFO) into a counter; the attacker is a libp2p host of its own, or an HTTP client on
a raw socket. `--no-limit` leaves out the node log's limit, vouching.log_limit (what a node wrote before it).

- sync-malformed: sync requests that are not CBOR, 4 streams at once, one after the other on each;
- sync-heads: well-formed heads requests, 4 streams at once, past the peer's serving budget (a Busy reply each);
- gossip-garbage: messages on the network's records topic that are not record batches;
- gossip-record: pubsub RPCs of 20 bytes with a sender record that is not one, on a stream of its own
  (py-libp2p logs an error for each);
- gossip-topics: pubsub RPCs each subscribing to a new topic whose name is 60,000 characters long, past the
  topics a peer may join (py-libp2p logs a warning naming the topic for each);
- api-token: POST /v1/vouches with a wrong bearer token, keep-alive;
- api-malformed: requests h11 refuses (a header line without a colon), a connection each.

    python benchmarks/log_flood.py [--seconds 5] [--no-limit] [attack ...]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from libp2p.pubsub.pb import rpc_pb2  # noqa: E402

from gossip.frames import encode_uvarint  # noqa: E402
from gossip.host import Host, HostError, open_host  # noqa: E402
from gossip.service import records_topic  # noqa: E402
from gossip.sync_messages import SYNC_PROTOCOL, HeadsRequest, encode_message  # noqa: E402
from node.daemon import GOSSIP_PROTOCOLS, Node  # noqa: E402
from vouching.log_limit import RateLimit  # noqa: E402
from node.logs import configure_logging  # noqa: E402
from tests.node.in_process import LOOPBACK, running  # noqa: E402


class Counted(io.TextIOBase):
    """A log stream counting what is written to it."""

    def __init__(self) -> None:
        self.lines = 0
        self.bytes = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        self.bytes += len(text.encode())
        return len(text)


async def _requests(node: Node, hostile: Host, frame: bytes) -> None:
    while True:
        try:
            async with await hostile.open_stream(node.host.peer_id, SYNC_PROTOCOL) as stream:
                while True:
                    await stream.write_frame(frame)
                    if await stream.read_frame(max_size=1 << 22) is None:
                        break
        except HostError:
            await trio.lowlevel.checkpoint()


async def sync_malformed(node: Node, hostile: Host) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(_requests, node, hostile, b"\xff\xfe not cbor")


async def sync_heads(node: Node, hostile: Host) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(_requests, node, hostile, encode_message(HeadsRequest("", 1000)))


async def gossip_garbage(node: Node, hostile: Host) -> None:
    topic = records_topic(node.network)
    await hostile.subscribe(topic, lambda peer, data: True)
    await hostile.wait_for_mesh(topic, node.host.peer_id)
    n = 0
    while True:
        n += 1
        await hostile.publish(topic, b"garbage %d" % n)


async def gossip_record(node: Node, hostile: Host) -> None:
    rpc = rpc_pb2.RPC(senderRecord=b"not a signed envelope").SerializeToString()
    frame = (encode_uvarint(len(rpc)) + rpc) * 100
    async with await hostile.open_stream(node.host.peer_id, GOSSIP_PROTOCOLS[0]) as stream:
        while True:
            await stream.write(frame)


async def gossip_topics(node: Node, hostile: Host) -> None:
    async with await hostile.open_stream(node.host.peer_id, GOSSIP_PROTOCOLS[0]) as stream:
        n = 0
        while True:
            n += 1
            topic = f"{n:08d}" + "t" * 60_000
            rpc = rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=topic)]).SerializeToString()
            await stream.write(encode_uvarint(len(rpc)) + rpc)


async def _http(node: Node, requests: Callable[[], bytes], keep_alive: bool) -> None:
    host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
    while True:
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            while True:
                await stream.send_all(requests())
                if not await stream.receive_some(65536) or not keep_alive:
                    break


async def api_token(node: Node, hostile: Host) -> None:
    body = b'{"subject": "did:key:x"}'
    request = (b"POST /v1/vouches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-token\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await _http(node, lambda: request, keep_alive=True)


async def api_malformed(node: Node, hostile: Host) -> None:
    await _http(node, lambda: b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", keep_alive=False)


ATTACKS: dict[str, Callable[[Node, Host], Awaitable[None]]] = {
    "sync-malformed": sync_malformed, "sync-heads": sync_heads, "gossip-garbage": gossip_garbage,
    "gossip-record": gossip_record, "gossip-topics": gossip_topics,
    "api-token": api_token, "api-malformed": api_malformed,
}


async def measure(name: str, seconds: float, limit: bool) -> str:
    counted = Counted()
    configure_logging()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(counted)
    if not limit:
        handler.filters = [f for f in handler.filters if not isinstance(f, RateLimit)]
    with tempfile.TemporaryDirectory() as tmp:
        async with running(Path(tmp) / "node") as node, open_host(os.urandom(32), list(LOOPBACK)) as hostile:
            await hostile.connect(node.host.listen_addrs[0])
            before, started, cpu = (counted.lines, counted.bytes), time.monotonic(), time.process_time()
            with trio.move_on_after(seconds):
                await ATTACKS[name](node, hostile)
            elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    lines, size = counted.lines - before[0], counted.bytes - before[1]
    return (f"{name:15} {lines / elapsed:9.1f} lines/s {size / elapsed / 1024:9.1f} KiB/s "
            f"({lines} lines in {elapsed:.1f} s, CPU {cpu:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("attacks", nargs="*", help=f"of {', '.join(ATTACKS)} (default: all)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-limit", action="store_true", help="without the node log's limit (vouching.log_limit)")
    args = parser.parse_args()
    if unknown := set(args.attacks) - set(ATTACKS):
        parser.error(f"no such attack: {', '.join(sorted(unknown))}")
    for name in args.attacks or list(ATTACKS):
        print(trio.run(measure, name, args.seconds, not args.no_limit), flush=True)


if __name__ == "__main__":
    main()
