"""`vouchnet status` and `vouchnet peers`: what the running node is, holds, is connected to, and cannot reach."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from node.cli_commands import summary_of

from .common import Subparsers, add_command, aligned, open_client, print_json

_FIRST = ("did", "network", "peer_id")  # shown first; the rest of the node's answer follows in its own order


def register(subparsers: Subparsers) -> None:
    status = add_command(
        subparsers,
        "status",
        summary=summary_of("status"),
        description="Ask the running node what it is (org did, network, peer id, listen addresses, its org's "
        "earlier keys if it rotated) and what it holds (records, records held for a missing predecessor, orgs in "
        "its replication horizon, orgs flagged for equivocation, gossip it rejected by reason). `log` says how its "
        "records ledger stands to the newest checkpoint of it that peers hold: ok, behind (it signs no checkpoint "
        "until it has grown to that size) or diverged (restored from a copy older than a published checkpoint: it "
        "signs none again). `own_records_from_peers` counts records of its own key that it did not sign, across "
        "restarts, until acknowledged (`vouchnet own-records`): its history coming back after a restore, or a "
        "thief's: either is worth an alert (not those of a key adopted by `vouchnet key adopt`, which come back as "
        "it starts); those among them that conflict with a record it holds at their seq prove that someone else "
        "holds the key. `startup_sync` says how the catch-up sync its start ran before it signed went, with a peer "
        "it dials that holds the org's records: done (for a new org, with any peer it dials that holds none), "
        "no_peers, timed_out (no peer it dials completed a round), unreachable (none could be connected for a sync: "
        "each one's last dial failed or found it on another network, or it refused /vouchnet/sync/1) or unheld "
        "(those that did hold none of the org's records, as for an org no other org vouches for yet, or did not "
        "serve the head they named); when timed_out, unreachable or unheld it signs without it, until a later round "
        "ends it as it would have ended the start's (timed_out and unreachable turn unheld at a round with a peer "
        "that holds none), and its log says why; "
        "`own_org_flagged` is True once its own org is flagged as an equivocator; `takes_writes` is False while it "
        "cannot read its api.token, refusing every write.",
        examples=["vouchnet status", "vouchnet status --dir /srv/vouchnet --json"],
        run=_status,
    )
    status.add_argument("--json", action="store_true", help="print the node's answer as JSON")
    peers = add_command(
        subparsers,
        "peers",
        summary=summary_of("peers"),
        description="List the libp2p peers the running node knows: first those connected now, each with its source "
        "(bootstrap: the config's [p2p] bootstrap; org_record: an org record in its horizon names its address; "
        "inbound: it dialled in), its GossipSub score here (0 for a peer that behaves; negative for one penalised, "
        "e.g. for gossip this node rejected: not its org's reputation, which `vouchnet orgs` shows) and whether it "
        "serves catch-up sync and cosigning (no for a gossip-only peer); then those it dials but is not connected "
        "to, with how many dials failed in a row, when it dials next and why the last dial failed (one on the block "
        "list, PUT /v1/peers/blocked, is not dialled until taken off it: the header counts them, those found on "
        "another network too); then those found on another network (a mistyped bootstrap address, say), with that "
        "network: dialled ever less often, 30 s to an hour apart. Where to look when the node replicates nothing. "
        "--json adds each peer's org did and addresses.",
        examples=["vouchnet peers", "vouchnet peers --api http://127.0.0.1:8700 --json"],
        run=_peers,
    )
    peers.add_argument("--json", action="store_true", help="print the peers as a JSON list, connected ones first")


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
        connected = client.peers()
        known = list(client.iter_known_peers())
    peers = _listed(connected, known)
    if args.json:
        print_json(peers)
        return 0
    live = [peer for peer in peers if peer["connected"]]
    down, apart = [], []
    for peer in peers:
        if not peer["connected"]:  # (one blocked, with no next dial, is not dialled whatever network it was found on)
            (apart if peer.get("other_network") is not None and peer["next_dial_at"] is not None else down).append(peer)
    if not peers:
        print("no peers: none connected and none to dial (no [p2p] bootstrap peer in config.toml, and no org record "
              "in the node's horizon names an address)")
        return 0
    print(f"{len(live)} connected" if live else "no peers connected")
    _table(("PEER ID", "SOURCE", "SCORE", "SYNC"),
           [(p["peer_id"], p.get("source", "-"), _show(p.get("score")), _yes_no(p.get("serves_sync"))) for p in live])
    if down:
        now = time.time_ns() // 1_000_000
        print(_down_header(down))
        _table(("PEER ID", "SOURCE", "FAILURES", "NEXT DIAL", "LAST ERROR"),
               [(p["peer_id"], p["source"], str(p["failures"]), _next_dial(p["next_dial_at"], now),
                 _show(p["last_error"])) for p in down])
    if apart:
        now = time.time_ns() // 1_000_000
        print(f"{len(apart)} on another network, holding none of this network's records and dialled again ever less "
              "often, 30 s to an hour apart (a [p2p] bootstrap address mistyped, or that node's network)")
        _table(("PEER ID", "SOURCE", "NETWORK", "NEXT DIAL", "ADDRESSES"),
               [(p["peer_id"], p["source"], str(p["other_network"]), _next_dial(p["next_dial_at"], now),
                 _show(p["addrs"])) for p in apart])
    return 0


def _down_header(down: list[dict[str, Any]]) -> str:
    """The line over the peers not connected: how many, and how many of them are blocked, which GET /v1/peers shows
    with no next dial (gossip.peers.DialSchedule.known), the others dialled again with growing backoff."""
    blocked = sum(peer["next_dial_at"] is None for peer in down)
    if not blocked:
        return f"{len(down)} not connected, dialled again with growing backoff"
    if blocked == len(down):
        return f"{len(down)} not connected, blocked on this host: not dialled until unblocked"
    return f"{len(down)} not connected, dialled again with growing backoff ({blocked} blocked on this host: not " \
           "dialled until unblocked)"


def _listed(connected: list[dict[str, Any]], known: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every peer once, those connected first: what the node knows of each (GET /v1/peers's `known`), with a
    connected one's score and sync from `peers`."""
    by_id = {peer["peer_id"]: peer for peer in known}
    live = {peer["peer_id"]: {**by_id.get(peer["peer_id"], {}), **peer, "connected": True} for peer in connected}
    merged = [*live.values(), *(peer for peer in known if peer["peer_id"] not in live)]
    return sorted(merged, key=lambda peer: not peer["connected"])  # (stable: in peer id order within each part)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Rows under a header, in columns two spaces apart, each indented by two; nothing without rows."""
    if not rows:
        return
    for line in aligned([header, *rows]):
        print("  " + line)


def _next_dial(at_ms: int | None, now_ms: int) -> str:
    if at_ms is None:
        return "-"
    return f"in {math.ceil((at_ms - now_ms) / 1000)} s" if at_ms > now_ms else "due"


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def _nested(value: Any) -> str:
    """A value inside a mapping, a mapping itself in parentheses: `log`'s published checkpoint, `published=(size=9
    root=...)  ledger_root=...`, whose root read as a sibling of ledger_root without them."""
    return f"({_show(value)})" if isinstance(value, dict) and value else _show(value)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "-"
    if isinstance(value, dict):  # e.g. the ledger's size and root, the rejected records' counts by reason
        return "  ".join(f"{key}={_nested(item)}" for key, item in value.items()) if value else "-"
    return str(value)
