"""Faults an operator injects into a testnet: a node SIGKILLed and restarted with its data, a group of nodes cut
off from the rest, then healed, and a node's org key rotated (`vouchnet key rotate` between a clean stop and a
restart).

A partition is made with every node's peer block list (`PUT /v1/peers/blocked`): each node on one side refuses
every node on the other, so no connection, gossip, sync or cosigning crosses, while each side goes on working.
Restarting one side with bootstrap lists limited to it would not do: nodes learn each other's addresses from the
`org` records they already hold and would dial across. The block list is the node's own rule (no packet filter,
no root), and it is what an operator would use to stop talking to a peer.

A rotation changes the node's did and PeerID. The other nodes' bootstrap lists name the old PeerID until their
next start (the cluster rewrites them for that); the network learns the new key because the rotated node dials its
own bootstrap peers and every org whose `org` record it holds as soon as it is back, and its peers then sync its
rotation record and its new key's first record, which it also publishes (relayed to the nodes it is not connected
to). Inside a partition the other side's block lists are written again,
naming its new PeerID, before it starts (they named the old one, and it dials everyone it knows at once), and it is
cut off itself as a restarted node is.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from node.client import ClientError
from node.keys import KeyFileError

from .cluster import Cluster, Say

HEAL_TIMEOUT = 5.0  # seconds a node may take to empty its block list when a partition is healed


@dataclass(frozen=True)
class Partition:
    side: tuple[str, ...]  # the nodes cut off
    rest: tuple[str, ...]  # everyone else

    def blocked_at(self, node: str, cluster: Cluster) -> list[str]:
        """The PeerIDs `node` refuses while the partition holds: the other side's."""
        other = self.rest if node in self.side else self.side
        return [cluster.entry(n).peer_id for n in other]


def cut(cluster: Cluster, partition: Partition, up: Iterable[str]) -> None:
    """Make every running node refuse the other side (a node that is down gets its list when it restarts)."""
    for node in up:
        with cluster.client(node) as client:
            client.block_peers(partition.blocked_at(node, cluster))


def heal(cluster: Cluster, nodes: Iterable[str]) -> dict[str, str]:
    """Lift every block of `nodes`: the nodes dial each other again at once. All are asked at the same time, each
    within HEAL_TIMEOUT, so a node that does not answer neither holds up the others nor keeps them cut; returns node
    -> why its block list may still be in force (empty when every one was emptied)."""
    nodes = list(nodes)
    failed: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(nodes)), thread_name_prefix="heal") as pool:
        asked = {node: pool.submit(_unblock, cluster, node) for node in nodes}
        for node, answer in asked.items():
            try:
                answer.result()
            except (ClientError, KeyFileError, OSError) as e:
                failed[node] = str(e)
    return failed


def _unblock(cluster: Cluster, node: str) -> None:
    with cluster.client(node, timeout=HEAL_TIMEOUT) as client:
        client.block_peers([])


def unhealed(failed: dict[str, str], directory: Path) -> str:
    """What to tell an operator whose partition `heal` could not lift at the nodes of `failed`, and what to run."""
    reasons = "; ".join(f"{node}: {why}" for node, why in failed.items())
    return (f"the partition may still cut off {', '.join(failed)} (their block lists could not be emptied: {reasons}); "
            f"`vouchnet testnet status --dir {directory}` shows each node's block list, and `vouchnet testnet down "
            f"--dir {directory}` then `up` lifts them (a node forgets its block list when it restarts)")


def lift_leftover_blocks(cluster: Cluster, up: Iterable[str]) -> list[str]:
    """Empty the block list of each running node that holds one, a partition a run left when it was killed before
    it could heal it (a node forgets its list only when it restarts); returns those nodes."""
    lifted = []
    for node in up:
        with cluster.client(node) as client:
            if client.blocked_peers():
                client.block_peers([])
                lifted.append(node)
    return lifted


def crossing(cluster: Cluster, partition: Partition, up: Iterable[str]) -> list[tuple[str, str]]:
    """Connections that cross the partition, as each running node reports its peers (empty while it holds)."""
    by_peer = {cluster.entry(n).peer_id: n for n in cluster.names}
    found = []
    for node in up:
        with cluster.client(node) as client:
            peers = [by_peer.get(p["peer_id"]) for p in client.peers()]
        other = partition.rest if node in partition.side else partition.side
        found += [(node, peer) for peer in peers if peer in other]
    return found


def kill(cluster: Cluster, node: str) -> None:
    """SIGKILL: no clean shutdown, as a crash or an OOM kill."""
    cluster.kill(node)


def restart(cluster: Cluster, node: str, partition: Partition | None, say: Say) -> float:
    """Start the node again with its data (waiting until its API answers; a port of its that another process took
    meanwhile is moved, said to `say`); when its API answered (wall seconds). Inside a partition it is cut off again
    as soon as its API answers; the dials it makes while starting may cross for that moment, which the report's count
    of records that crossed the partition shows."""
    cluster.start([node], say=say)
    answered = time.time()
    if partition is not None:
        cut(cluster, partition, [node])
    return answered


@dataclass(frozen=True)
class Rotated:
    """A node's key rotation: its org's key before and after, the two records that link them (ids, hex), when the
    node was started again with its new key and when its API answered after that (wall seconds)."""

    node: str
    old: str
    new: str
    rotation: str  # the old key's last record, an `org` record naming the new key in `next`
    first: str  # the new key's first record, an `org` record naming the old key in `prior`
    started: float
    answered: float


def peers_on_its_side(node: str, partition: Partition | None, up: Iterable[str]) -> list[str]:
    """The running nodes `up` that `node` may reach: those on its side of the partition, if one holds."""
    return [n for n in up if n != node and (partition is None or (n in partition.side) == (node in partition.side))]


def rotate(cluster: Cluster, node: str, partition: Partition | None, up: Iterable[str], say: Say, *,
           catch_up: bool) -> Rotated:
    """Stop the node cleanly (SIGTERM, as `down` does), run `vouchnet key rotate` on its data directory (with its
    catch-up if `catch_up`: a running node it dials is on its side, testnet.plan.Plan.catch_up_peers) and start it
    again with its data, as `restart` does. Inside a partition, the other running nodes `up` (it is not among them)
    refuse its new PeerID before it starts."""
    cluster.stop([node])
    old, new = cluster.rotate_key(node, catch_up=catch_up)
    if partition is not None:
        cut(cluster, partition, up)
    started = time.time()
    answered = restart(cluster, node, partition, say)  # (not the cut that follows inside a partition)
    with cluster.client(node) as client:
        rotation = next(r for r in client.iter_records(issuer=old, kind="org") if r["body"].get("next") == new)
        first = next(client.iter_records(issuer=new))
    return Rotated(node, old, new, rotation["id"], first["id"], started, answered)
