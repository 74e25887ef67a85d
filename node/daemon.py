"""`vouchnet run`: one trio root nursery holding the libp2p host, gossip, sync, witnessing, peers and the API.

Shutdown is cancelling that nursery (SIGINT or SIGTERM does it): every service is a task of it, so nothing is
left behind, and the ledger's appends are single transactions, so nothing is left half-written.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from typing import Any

import trio
from nacl.signing import SigningKey

from gossip.host import Host, HostConfig, open_host, peer_public_key
from gossip.peers import PeerManager, split_peer_addr
from gossip.replica import Replica
from gossip.service import GossipService
from gossip.store import RecordStore
from gossip.sync_service import SyncService
from gossip.witnessing import Witnessing
from vouching import OrgBody, did_key, load_record, org_body

from .api import ApiService
from .config import NodeConfig
from .keys import load_org_key, load_token

log = logging.getLogger("vouchnet.node")
SHUTDOWN_SECONDS = 2.0
_WILDCARDS = ("/ip4/0.0.0.0/", "/ip6/::/")


@dataclass
class Node:
    """A running node: what the API (node.api.NodeView) and tests see of it."""

    config: NodeConfig
    key: SigningKey
    token: str
    replica: Replica
    host: Host
    gossip: GossipService
    sync: SyncService
    witnessing: Witnessing
    peer_manager: PeerManager
    api_url: str = ""

    @property
    def did(self) -> str:
        return self.replica.did

    @property
    def network(self) -> str:
        return self.config.network

    def info(self) -> dict[str, Any]:
        store = self.replica.store
        return {
            "did": self.did,
            "name": self.config.name,
            "network": self.network,
            "peer_id": self.host.peer_id,
            "listen": self.host.listen_addrs,
            "api": self.api_url,
            "ledger": {"size": store.size, "root": store.ledger.root().hex()},
            "roots": sorted(self.config.roots),
            "horizon": len(self.replica.horizon.members()),
            "held_records": self.replica.held_count,
            "flagged": sorted(self.replica.flagged),
        }

    def peers(self) -> list[dict[str, Any]]:
        return [
            {"peer_id": p, "org": did_key(peer_public_key(p)), "score": self.host.peer_score(p)}
            for p in self.host.connected_peers()
        ]

    def checkpoint(self) -> bytes | None:
        return self.witnessing.checkpoint_note()


def announce_addrs(config: NodeConfig, host: Host) -> list[str]:
    """Where other orgs should dial us: the configured announce list, else our non-wildcard listen addresses."""
    if config.announce:
        return list(config.announce)
    bound = [split_peer_addr(a)[0] for a in host.listen_addrs]
    return [a for a in bound if not a.startswith(_WILDCARDS)]


def publish_org_record(replica: Replica, *, name: str, network: str, addrs: list[str]) -> None:
    """Issue our `org` record if we have none or it no longer says where and who we are (peer exchange)."""
    ours = replica.store.query(issuer=replica.did, kind="org", limit=replica.store.size)
    wanted = org_body(name, network, addrs)
    if ours:
        body = load_record(ours[-1][1]).body
        assert isinstance(body, OrgBody)
        if body.to_wire() == wanted:
            return
    replica.issue("org", wanted)


async def serve_node(config: NodeConfig, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
    """Run a node until cancelled; `task_status.started(node)` once every service is up and the API listens."""
    key = load_org_key(config.key_path)
    token = load_token(config.token_path)
    limits = config.limits
    with RecordStore.open(config.data_dir) as store:
        replica = Replica(key, store, roots=config.roots, max_hops=config.max_hops, held_limit=limits.held_records)
        host_config = HostConfig(max_message_size=limits.gossip_batch_bytes + 1024, close_timeout=SHUTDOWN_SECONDS / 2)
        async with open_host(bytes(key), list(config.listen), config=host_config) as host:
            sync = SyncService(host, replica, limits=limits, interval=config.sync_interval)
            node = Node(
                config=config,
                key=key,
                token=token,
                replica=replica,
                host=host,
                gossip=GossipService(host, replica, network=config.network, limits=limits, on_gaps=sync.request_gaps),
                sync=sync,
                witnessing=Witnessing(
                    host, replica, network=config.network, interval=config.checkpoint_interval,
                    state_dir=config.data_dir,
                ),
                peer_manager=PeerManager(host, replica, bootstrap=config.bootstrap, max_peers=limits.max_peers),
            )
            async with trio.open_nursery() as nursery:
                for service in (node.gossip, node.sync, node.witnessing, node.peer_manager):
                    await nursery.start(service.run)
                publish_org_record(replica, name=config.name, network=config.network,
                                   addrs=announce_addrs(config, host))
                api = ApiService(node, config.api_host, config.api_port)
                node.api_url = (await nursery.start(api.run))[0]
                log.info(
                    "node running",
                    extra={"fields": {"did": node.did, "peer_id": host.peer_id, "listen": ",".join(host.listen_addrs),
                                      "api": node.api_url, "network": config.network}},
                )
                task_status.started(node)


async def run_until_signalled(config: NodeConfig) -> None:
    """`vouchnet run`: serve the node until SIGINT or SIGTERM, then shut down within SHUTDOWN_SECONDS."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_node, config)
            async for signum in signals:
                log.info("shutting down", extra={"fields": {"signal": signal.Signals(signum).name}})
                nursery.cancel_scope.cancel()
                break
