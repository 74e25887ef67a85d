"""Nodes on loopback for the sync and witnessing tests: a host, a replica over a store in a directory, the
services under test in one nursery; a wait on replica changes that needs no polling, and one for a sync round begun
now (a round running already waited out); a stand-in host with peers connected, for tests that count sessions
instead of running them; and a pace that stallers keep with made-up heads."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
from nacl.signing import SigningKey

from gossip.host import Host, open_host
from gossip.peer_feed import PeerEvent
from gossip.peer_pace import PeerPace
from gossip.replica import Replica
from gossip.store import RecordStore
from gossip.sync import SyncLimits
from gossip.sync_messages import SYNC_PROTOCOL, HeadsPage, Reply
from gossip.sync_service import PageLimits, SyncService
from gossip.witnessing import Witnessing
from ledger import tree_hash
from vouching import did_key, verify_record

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
NETWORK = "test"


@dataclass
class Identity:
    """A node's seed and data directory, which outlive any one run of it."""

    seed: bytes
    directory: Path

    @property
    def did(self) -> str:
        return did_key(bytes(SigningKey(self.seed).verify_key))


def identities(tmp_path: Path, count: int) -> list[Identity]:
    made = [Identity(os.urandom(32), tmp_path / f"node{i}") for i in range(count)]
    for identity in made:
        identity.directory.mkdir()
    return made


class ConnectedHost:
    """What SyncService.run asks of a host, with `peers` connected from the start, of which `refusing` refused a
    sync stream (nodes in another language, say); `connect` and `disconnect` make peers come and go, told to
    the reader of `peer_events` (the service, running)."""

    def __init__(self, peers: list[str], *, refusing: Collection[str] = ()) -> None:
        self._peers, self._refusing = peers, refusing
        self._events_send, self._events = trio.open_memory_channel[object](0)

    def set_stream_handler(self, protocol: str, handler: object) -> None:
        pass

    def peer_events(self) -> trio.MemoryReceiveChannel[object]:
        return self._events

    def connected_peers(self) -> list[str]:
        return list(self._peers)

    def staying_peers(self) -> list[str]:
        return list(self._peers)

    def refused(self, peer: str, protocol: str) -> bool:
        return peer in self._refusing and protocol == SYNC_PROTOCOL

    async def connect(self, peer: str) -> None:
        self._peers.append(peer)
        await self._events_send.send(PeerEvent(peer, connected=True))

    async def disconnect(self, peer: str) -> None:
        self._peers.remove(peer)
        await self._events_send.send(PeerEvent(peer, connected=False))


class HeadsKeepingPace(PeerPace):
    """gossip.peer_pace's account with every head counted, heads of made-up issuers too: for stallers standing in for
    peers that keep their pace with records (an org inside the horizon signing in a loop), whose signing and checking
    would cost a test minutes. A test sets it as gossip.sync_service's PeerPace."""

    def read(self, reply: Reply, size: int, *, used_heads: int = 0, held_heads: int = 0) -> None:
        super().read(reply, size, used_heads=len(reply.heads) if isinstance(reply, HeadsPage) else used_heads)


class IdleGossip:
    """A gossip service that runs and does nothing: a node's catch-up (node.daemon) starts one."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()


@dataclass
class Node:
    host: Host
    replica: Replica
    sync: SyncService
    witnessing: Witnessing | None

    @property
    def addr(self) -> str:
        return self.host.listen_addrs[0]

    def records(self) -> set[bytes]:
        store = self.replica.store
        return {raw for _, raw in store.query(limit=store.size)}


@asynccontextmanager
async def running(
    identity: Identity,
    roots: tuple[str, ...],
    *,
    sync_interval: float = 30.0,
    witness_interval: float | None = None,
    witnesses: int = 8,
    gossip_interval: float = 10.0,
    max_inbound: int = 16,
    limits: SyncLimits | PageLimits = SyncLimits(),
    verify_threads: int = 0,
    verify_processes: int = 0,
) -> AsyncIterator[Node]:
    """A node until the block ends; `witness_interval` also runs its witnessing (with `witnesses` and
    `gossip_interval`); `max_inbound` bounds the sync requests it answers at once."""
    with RecordStore.open(identity.directory) as store:
        replica = Replica(SigningKey(identity.seed), store, roots=roots, max_hops=3, held_limit=1000)
        async with open_host(identity.seed, LOOPBACK) as host, trio.open_nursery() as nursery:
            witnessing = None
            if witness_interval is not None:
                witnessing = Witnessing(host, replica, network=NETWORK, interval=witness_interval,
                                        witnesses=witnesses, gossip_interval=gossip_interval,
                                        state_dir=identity.directory)
                await nursery.start(witnessing.run)
            sync = SyncService(host, replica, network=NETWORK, limits=limits, interval=sync_interval, timeout=5.0,
                               max_inbound=max_inbound, cosigner=witnessing.cosign if witnessing else None,
                               checkpoints=witnessing.held_checkpoint if witnessing else None,
                               verify_threads=verify_threads, verify_processes=verify_processes)
            if witnessing is not None:  # (as node.daemon wires them)
                witnessing.log_listeners.append(sync.heard_log)
                witnessing.network_listeners.append(sync.heard_other_network)
            await nursery.start(sync.run)
            yield Node(host, replica, sync, witnessing)
            nursery.cancel_scope.cancel()


async def until(condition: Callable[[], bool], nodes: list[Node]) -> None:
    """Return once `condition()` holds, re-checking whenever one of the nodes' replicas accepts records."""
    while not condition():
        changed = trio.Event()

        def wake(records: object) -> None:
            changed.set()

        for node in nodes:
            node.replica.listeners.append(wake)
        try:
            if not condition():
                await changed.wait()
        finally:
            for node in nodes:
                node.replica.listeners.remove(wake)


async def round_from_now(node: Node, peer: str) -> None:
    """A full sync round of `node`'s with `peer` that begins now, run to its end. One already running is waited out
    first: sync_with returns at once then, and that round may have read the peer's heads before what the caller
    wants pulled existed (it came at the next periodic round, 30 s on)."""
    while True:
        over = trio.Event()

        def told(ended: str) -> None:
            if ended == peer:
                over.set()

        node.sync.round_over_listeners.append(told)
        try:
            await node.sync.sync_with(peer)
            if over.is_set():  # (a round that ran tells its end before sync_with returns)
                return
            await over.wait()
        finally:
            node.sync.round_over_listeners.remove(told)


def ledger_verifies(node: Node) -> bool:
    """Every entry of the node's records ledger is a valid record, chains follow, and the root covers them all."""
    ledger = node.replica.store.ledger
    entries = ledger.entries(0, ledger.size)
    heads: dict[str, bytes] = {}
    for raw in entries:
        record = verify_record(raw)
        if record.prev != heads.get(record.iss):
            return False
        heads[record.iss] = record.id
    return ledger.root() == tree_hash(entries)
