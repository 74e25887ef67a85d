"""`vouchnet testnet status`: each node as its API reports it, and whether the others have checked and cosigned
its latest checkpoint (the checkpoint's signatures are verified here against the testnet's keys)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ledger import CosignatureVerifier, Ed25519Verifier, NoteError, cosigner_name, log_origin, open_checkpoint
from node.client import ClientError, NodeUnreachable
from node.commands.common import aligned
from node.keys import KeyFileError
from vouching import public_key_from_did

from . import prometheus
from .cluster import Cluster
from .observe import RecordInfo
from .state import NodeEntry

if TYPE_CHECKING:
    from .plan import Plan


# Said after a running node's answer that did not come in time: why (as node.commands.common.NO_ANSWER_CAUSES, on one
# line), and what shows which it is.
_NO_ANSWER = (": it is starting (it answers once its catch-up sync with its peers has ended, its log then saying `node "
              "running`), or it is stopped (SIGSTOP, a debugger) or overloaded")


@dataclass(frozen=True)
class Checkpoint:
    size: int
    cosigned_by: tuple[str, ...]  # dids of the testnet's other orgs whose valid cosignature the note carries


@dataclass(frozen=True)
class NodeStatus:
    name: str
    did: str
    api_url: str
    running: bool
    error: str | None = None  # why the API gave no answer, or was not asked
    peers: int | None = None
    ledger_size: int | None = None
    checkpoint: Checkpoint | None = None
    rejected: int | None = None  # gossip messages the gate refused plus records that broke their issuer's chain
    flagged: int | None = None  # orgs this node holds equivocation evidence against
    log_running: bool | None = None  # whether its log process runs (Cluster.log_running); None if not known
    unreadable: bool = False  # its api.token could not be read (`error` says why), so its API was not asked
    # down without being stopped (`down`, a failed `up`): killed, crashed, or the machine restarted
    exited: bool = False
    blocks: tuple[str, ...] | None = None  # the nodes on its peer block list (a PeerID no node has now, as is)


def checkpoint_of(note: bytes, entry: NodeEntry, network: str, others: list[str]) -> Checkpoint:
    """The size of a node's checkpoint and who of `others` cosigned it; raises NoteError if the node's own
    signature or a cosignature of a known org does not verify."""
    origin = log_origin(network, entry.did, "records")
    verifiers = [Ed25519Verifier(origin, public_key_from_did(entry.did))]
    verifiers += [CosignatureVerifier(cosigner_name(did), public_key_from_did(did)) for did in others]
    checkpoint, signatures = open_checkpoint(note, verifiers)
    names = {s.name for s in signatures}
    return Checkpoint(checkpoint.size, tuple(did for did in others if cosigner_name(did) in names))


def flagged_keys(records: Iterable[RecordInfo], orgs: Iterable[Sequence[str]]) -> set[str]:
    """The offenders the `equivocation` records among `records` name, and every key of each org (given as its keys)
    one of whose keys is among them: an equivocation by one key of an org flags all its keys, those it rotated to
    afterwards too (vouching.succession)."""
    offenders = {r.about for r in records if r.kind == "equivocation"}
    return offenders | {key for keys in orgs if offenders.intersection(keys) for key in keys}


def followers_by_node(plan: Plan, orgs: Mapping[str, Sequence[str]], dids: Mapping[str, str],
                      flagged: set[str]) -> dict[str, list[str]]:
    """Node -> the dids of its followers (Plan.followers), the nodes of orgs (node -> its keys) one of whose keys is
    `flagged` left out of every horizon: the `followers` witnessed judges each node's checkpoint by."""
    equivocators = {node for node, keys in orgs.items() if flagged.intersection(keys)}
    return {node: [dids[m] for m in plan.followers(node, equivocators)] for node in plan.nodes}


def witnessed(row: NodeStatus, followers: Iterable[str], flagged: set[str], witnesses: int) -> bool:
    """The node's checkpoint covers its whole ledger and carries the cosignatures of as many of its `followers` (the
    other orgs whose horizon holds its org: no other cosigns its log, gossip.witnessing) that are not `flagged`
    equivocators as it asks to cosign: `witnesses`, or all of them if fewer."""
    checkpoint = row.checkpoint
    if checkpoint is None or checkpoint.size != row.ledger_size:
        return False
    return witness_cosignatures(row, followers, flagged) >= expected_cosigners(row, followers, flagged, witnesses)


def witness_cosignatures(row: NodeStatus, followers: Iterable[str], flagged: set[str]) -> int:
    """How many of the node's `followers` not `flagged` cosigned its checkpoint (0 without one): those witnessed
    counts."""
    cosigned = row.checkpoint.cosigned_by if row.checkpoint is not None else ()
    return len(set(cosigned) & _witnesses(row, followers, flagged))


def expected_cosigners(row: NodeStatus, followers: Iterable[str], flagged: set[str], witnesses: int) -> int:
    """How many cosignatures the node's checkpoint is to carry (witnessed): `witnesses`, or as many followers not
    flagged as it has if fewer."""
    return min(witnesses, len(_witnesses(row, followers, flagged)))


def _witnesses(row: NodeStatus, followers: Iterable[str], flagged: set[str]) -> set[str]:
    return set(followers) - flagged - {row.did}


def node_status(cluster: Cluster, name: str) -> NodeStatus:
    entry = cluster.entry(name)
    running = cluster.running(name)
    base = NodeStatus(name, entry.did, entry.api_url, running,
                      log_running=cluster.log_running(name) if running else None)
    if not base.running:
        return replace(base, exited=entry.pid is not None)  # a node stopped by the testnet has its pid cleared
    others = [n.did for n in cluster.state.nodes if n.name != name]
    try:
        client = cluster.client(name, timeout=5.0)
    except (KeyFileError, OSError) as e:  # (the token missing, too open, not a token, or denied us)
        return replace(base, error=str(e), unreadable=True)
    try:
        with client:
            info = client.node()
            peers = len(client.peers())
            note = client.checkpoint()
            samples = prometheus.parse(client.metrics())
            blocked = client.blocked_peers()
    except ClientError as e:
        error = str(e) + (_NO_ANSWER if isinstance(e, NodeUnreachable) and e.timed_out else "")
        return NodeStatus(**{**base.__dict__, "error": error})
    try:
        checkpoint = None if note is None else checkpoint_of(note, entry, cluster.state.network, others)
    except NoteError as e:
        return NodeStatus(**{**base.__dict__, "error": f"its checkpoint does not verify: {e}"})
    rejected = sum(info["rejected"].values()) + prometheus.total(samples, "vouchnet_gossip_records_rejected_total")
    by_peer = {n.peer_id: n.name for n in cluster.state.nodes}
    return NodeStatus(name, entry.did, entry.api_url, True, None, peers, info["ledger"]["size"], checkpoint,
                      int(rejected), info["flagged_total"], base.log_running,
                      blocks=tuple(by_peer.get(peer, peer) for peer in blocked))


def table(rows: list[NodeStatus], directory: Path, holder: str | None = None) -> str:
    """The status rows as an aligned text table, with notes below it naming the commands to run on the testnet in
    `directory`, which `holder` (dir_lock.holder's `PID: vouchnet COMMAND`) holds now, if any: `up` waits for it."""
    header = ("node", "org did", "state", "peers", "ledger", "checkpoint", "cosigned by", "rejected", "flagged",
              "blocks")
    lines = [header]
    total = len(rows) - 1
    for row in rows:
        state = "up" if row.running and row.error is None else ("error" if row.running else
                                                                  "exited" if row.exited else "down")
        state = "unreadable" if row.unreadable else state
        state += ", no log" if row.running and row.log_running is False else ""
        if row.ledger_size is None:
            lines.append((row.name, _short(row.did), state, *("-",) * 7))
            continue
        checkpoint = row.checkpoint
        size = "-" if checkpoint is None else f"{checkpoint.size}" + ("" if checkpoint.size == row.ledger_size else "*")
        cosigned = "-" if checkpoint is None else f"{len(checkpoint.cosigned_by)}/{total}"
        lines.append((row.name, _short(row.did), state, str(row.peers), str(row.ledger_size), size, cosigned,
                      str(row.rejected), str(row.flagged), ",".join(row.blocks or ()) or "-"))
    text = "\n".join(aligned(lines))
    notes = [f"{row.name}: {row.error}" for row in rows if row.error]
    on = f"--dir {directory}"
    held = "" if holder is None else f" once the command that holds the directory now ends ({holder})"
    notes += [f"{row.name}: exited without `vouchnet testnet down` (killed, crashed, or the machine restarted): "
              f"`vouchnet testnet logs {row.name} {on}` shows its last lines, `vouchnet testnet up {on}` starts it "
              f"again{held}" for row in rows if row.exited]
    notes += [f"{row.name}: its log process is gone: what it writes is lost, and `vouchnet testnet logs {row.name} "
              f"{on}` shows nothing new (`vouchnet testnet down {on}`, then `up`, restarts it with its log)"
              for row in rows if row.running and row.log_running is False]
    if any(row.blocks for row in rows):
        notes.append("the network is cut: " + "; ".join(f"{row.name} blocks {', '.join(row.blocks)}"
                                                         for row in rows if row.blocks)
                     + " (peer block lists: no connection, gossip or sync crosses them until they are emptied or the "
                     "node restarts; a partition a run made is healed when it ends, and one left by a killed run when "
                     f"the next run starts, or by `vouchnet testnet down {on}` then `up`)")
    if any(r.checkpoint and r.checkpoint.size != r.ledger_size for r in rows):
        notes.append("*: the latest checkpoint is behind the ledger (one is signed every checkpoint_interval)")
    return "\n".join([text, *notes])


def _short(did: str) -> str:
    """did:key:z6Mk…last6: enough to tell a testnet's orgs apart (`--json` shows them whole)."""
    return f"{did[:12]}…{did[-6:]}"
