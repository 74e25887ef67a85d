"""What hostile peers can make a node's peer management (gossip.peers, gossip.host) do, on loopback: figures, no
targets; not a test. Three attacks, each against a fresh host:

- hang-up: a peer that accepts each connection and closes it at once (here, one that blocked the node): how many
  connections the node makes to it, and how many of them its PeerManager dialled (quirk 32, DialSchedule);
- tarpits: K orgs in the horizon name an address that accepts TCP and never answers: how long until the node is
  connected to its live bootstrap peer (py-libp2p runs 32 dials at once; gossip.peers.MAX_DIALS);
- reconnects: N peers in turn connect to a host and leave: how many got in (quirk 31).

    python benchmarks/peer_attacks.py               # a minute of hang-ups, 100 tarpit orgs, 60 reconnects
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import trio
from nacl.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip.host import HostConfig, HostError, open_host  # noqa: E402
from gossip.peers import PeerManager  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from vouching import did_key, org_body, sign_record, verify_record, vouch_body  # noqa: E402

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


async def hang_up(seconds: float) -> str:
    """Connections a node's PeerManager (defaults) leads to with a bootstrap peer that blocked the node."""
    with tempfile.TemporaryDirectory() as directory, RecordStore.open(Path(directory)) as store:
        seed = os.urandom(32)
        replica = Replica(SigningKey(seed), store, roots=(), max_hops=3, held_limit=100)
        async with open_host(seed, LOOPBACK) as node, open_host(os.urandom(32), LOOPBACK) as peer:
            await peer.set_blocked([node.peer_id])
            events = node.peer_events()
            manager = PeerManager(node, replica, network="bench", bootstrap=[peer.listen_addrs[0]], max_peers=5)
            async with trio.open_nursery() as nursery:
                await nursery.start(manager.run)
                await trio.sleep(seconds)
                nursery.cancel_scope.cancel()
            connections = 0
            while True:
                try:
                    connections += events.receive_nowait().connected
                except trio.WouldBlock:
                    break
    return f"hang-up: {connections} connections in {seconds:.0f} s, {manager.dials} of them the manager's dials"


async def tarpits(orgs: int) -> str:
    """Seconds until a node's PeerManager (defaults) is connected to its live bootstrap peer while `orgs` orgs in its
    horizon name an address that accepts TCP and never answers."""

    async def tarpit(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    with tempfile.TemporaryDirectory() as directory, RecordStore.open(Path(directory)) as store:
        seed = os.urandom(32)
        replica = Replica(SigningKey(seed), store, roots=(), max_hops=3, held_limit=100)
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            nursery.start_soon(trio.serve_listeners, tarpit, listeners)
            address = f"/ip4/127.0.0.1/tcp/{listeners[0].socket.getsockname()[1]}"
            for _ in range(orgs):
                key = SigningKey.generate()
                did = did_key(bytes(key.verify_key))
                replica.issue("vouch", vouch_body(did, 0.9, "org-peer"))
                replica.accept([verify_record(sign_record(key, "org", org_body("tarpit", "bench", [address]), seq=1,
                                                          prev=None))])
            async with open_host(seed, LOOPBACK) as node, open_host(os.urandom(32), LOOPBACK) as live:
                events = node.peer_events()
                manager = PeerManager(node, replica, network="bench", bootstrap=[live.listen_addrs[0]], max_peers=50)
                start = time.monotonic()
                await nursery.start(manager.run)
                while (event := await events.receive()).peer_id != live.peer_id or not event.connected:
                    pass
                took = time.monotonic() - start
                nursery.cancel_scope.cancel()
    return f"tarpits: with {orgs} orgs naming a tarpit, the live bootstrap peer was connected after {took:.2f} s"


async def reconnects(peers: int) -> str:
    """Of `peers` peers that in turn connect to a host of max_connections 100 (a node's default) and leave, how many
    got in."""
    got_in = 0
    async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(max_connections=100)) as node:
        events = node.peer_events()
        for _ in range(peers):
            async with open_host(os.urandom(32), LOOPBACK) as peer:
                try:
                    await peer.connect(node.listen_addrs[0])
                except HostError:
                    continue
                got_in += 1
            while (await events.receive()).connected:  # until the node saw it leave
                pass
    return f"reconnects: {got_in} of {peers} peers connecting in turn got in"


async def main(args: argparse.Namespace) -> None:
    print(await hang_up(args.seconds))
    print(await tarpits(args.tarpits))
    print(await reconnects(args.peers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="of the hang-up attack (default 60)")
    parser.add_argument("--tarpits", type=int, default=100, help="orgs naming a tarpit (default 100)")
    parser.add_argument("--peers", type=int, default=60, help="peers connecting in turn (default 60)")
    trio.run(main, parser.parse_args())
