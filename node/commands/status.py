"""`vouchnet status` and `vouchnet peers`: what the running node is, holds, and is connected to."""

from __future__ import annotations

import argparse
from typing import Any

from .common import Subparsers, add_command, open_client, print_json

_FIRST = ("did", "network", "peer_id")  # shown first; the rest of the node's answer follows in its own order


def register(subparsers: Subparsers) -> None:
    status = add_command(
        subparsers,
        "status",
        summary="show the running node: its org did, network, addresses and what it holds",
        description="Ask the running node what it is (org did, network, peer id, listen addresses, its org's "
        "earlier keys if it rotated) and what it holds (records, records held for a missing predecessor, orgs in "
        "its replication horizon, orgs flagged for equivocation, gossip it rejected by reason). `log` says how its "
        "records ledger stands to the newest checkpoint of it that peers hold: ok, behind (it signs no checkpoint "
        "until it has grown to that size) or diverged (restored from a copy older than a published checkpoint: it "
        "signs none again). `own_records_from_peers` counts records of its own key that it did not sign: its "
        "history coming back after a restore, or a thief's: either is worth an alert.",
        examples=["vouchnet status", "vouchnet status --dir /srv/vouchnet --json"],
        run=_status,
    )
    status.add_argument("--json", action="store_true", help="print the node's answer as JSON")
    peers = add_command(
        subparsers,
        "peers",
        summary="list the peers the node is connected to",
        description="List the libp2p peers the running node is connected to, one a line: the peer id, the org "
        "(the did:key of the same key), the peer's GossipSub score here (0 for a peer that behaves; negative for "
        "one penalised, e.g. for gossip this node rejected: not its org's reputation, which `vouchnet orgs` shows) "
        "and whether it serves catch-up sync and cosigning (false for a gossip-only peer).",
        examples=["vouchnet peers", "vouchnet peers --api http://127.0.0.1:8700 --json"],
        run=_peers,
    )
    peers.add_argument("--json", action="store_true", help="print the peers as a JSON list")


def _status(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        info = client.node()
    if args.json:
        print_json(info)
        return 0
    keys = [k for k in _FIRST if k in info] + [k for k in info if k not in _FIRST]
    width = max(map(len, keys), default=0)
    for key in keys:
        print(f"{key + ':':<{width + 1}} {_show(info[key])}")
    return 0


def _peers(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        peers = client.peers()
    if args.json:
        print_json(peers)
        return 0
    for peer in peers:
        print("  ".join(f"{key}={_show(value)}" for key, value in peer.items()))
    if not peers:
        print("no peers connected")
    return 0


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "-"
    if isinstance(value, dict):  # e.g. the ledger's size and root, the rejected records' counts by reason
        return "  ".join(f"{key}={_show(item)}" for key, item in value.items()) if value else "-"
    return str(value)
