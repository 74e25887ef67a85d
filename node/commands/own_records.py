"""`vouchnet own-records list` and `vouchnet own-records acknowledge`: the records of the org's key that came from
peers (gossip.own_records), and the operator's acknowledgement of those explained."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from node.client import NodeClient
from vouching.counts import counted

from .common import Subparsers, add_command, add_command_group, aligned, open_client, positive_int, print_json

_WHAT = ("Records of the org's key that the node did not sign and that came from peers: its own history coming back "
         "after its data directory was restored from an older copy, or a thief's, if the key leaked. They are kept "
         "across restarts; those not acknowledged count in `own_records_from_peers` (`vouchnet status`) and the "
         "metric vouchnet_own_records_from_peers, which an alert watches. One that conflicts with a record the node "
         "holds at its seq (CONFLICTS_WITH names it) proves the key signed twice at one seq: someone else holds the "
         "key. The ledger does not take it; its bytes are kept (GET /v1/node/own-records/NUMBER/cose), with those of "
         "the record it conflicts with if the node held that one only (.../NUMBER/conflicts-with/cose), for 1,000 "
         "such records at most: acknowledging them makes room for later ones, the oldest acknowledged losing their "
         "bytes.")


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers, "own-records", summary="records of the org's key that came from peers, and acknowledging them",
        description=_WHAT, examples=["vouchnet own-records list", "vouchnet own-records acknowledge --through 42"])
    listing = add_command(
        commands, "list",
        summary="list them: number, key, seq, id, when accepted, the peer it came from, whether acknowledged, the "
        "record it conflicts with",
        description=_WHAT + " Lists them, one a line: NUMBER (what `acknowledge --through` takes), KEY, SEQ, ID, "
        "ACCEPTED (UTC), PEER (the PeerID it came from; - if submitted through the API), ACKNOWLEDGED, "
        "CONFLICTS_WITH; then, on stderr, how many are unacknowledged and how many conflict.",
        examples=["vouchnet own-records list", "vouchnet own-records list --json"], run=_list)
    listing.add_argument("--json", action="store_true", help="print them as a JSON list")
    acknowledge = add_command(
        commands, "acknowledge", summary="acknowledge them once explained, so that they no longer count",
        description="Acknowledge the listed records of the org's key up to a number (the first column of `list`), "
        "once explained (a restore from an older copy, say: never a key you cannot account for, which calls for a "
        "new key): they stay listed and no longer count in own_records_from_peers, which then counts only those "
        "numbered higher not yet acknowledged (0 if none). A record listed after the one numbered NUMBER has a "
        "higher number (numbers are never reused), so one that came after you looked is not acknowledged with those "
        "you looked at. Needs the API token; the node logs it at WARNING.",
        examples=["vouchnet own-records acknowledge --through 42"], run=_acknowledge)
    acknowledge.add_argument("--through", type=positive_int, metavar="NUMBER", required=True,
                             help="acknowledge those with this number or a lower one: the highest that `list` showed "
                             "and you explained")


def _list(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        records, unacknowledged, unlisted = _all(client)
    if args.json:
        print_json(records)
    else:
        _show(records, unacknowledged, unlisted)
    return 0


def _acknowledge(args: argparse.Namespace) -> int:
    with open_client(args, write=True) as client:
        answer = client.acknowledge_own_records(args.through)
    print(f"acknowledged {counted(answer['acknowledged'], 'record')} listed through number {args.through}; "
          f"{answer['unacknowledged']} unacknowledged", file=sys.stderr)
    return 0


def _all(client: NodeClient) -> tuple[list[dict[str, Any]], int, int]:
    """Every listed record, page by page, and the counts of unacknowledged ones and of conflicting ones not listed,
    as the last page gave them."""
    records: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.own_records(after=after)
        records += page["records"]
        if page["next"] is None:
            return records, page["unacknowledged"], page.get("conflicts_unlisted", 0)
        after = page["next"]


def _show(records: list[dict[str, Any]], unacknowledged: int, unlisted: int) -> None:
    if records:
        rows = [("NUMBER", "KEY", "SEQ", "ID", "ACCEPTED", "PEER", "ACKNOWLEDGED", "CONFLICTS_WITH")] + [
            (str(r["number"]), r["iss"], str(r["seq"]), r["id"], _when(r["accepted_ms"]), r["peer"] or "-",
             "yes" if r["acknowledged"] else "no", r.get("conflicts_with") or "-") for r in records]
        print("\n".join(aligned(rows)))
    conflicting = sum(1 for r in records if r.get("conflicts_with"))
    print(f"{counted(len(records), 'record')} of the org's key from peers, {unacknowledged} unacknowledged; "
          f"{conflicting} conflicting with the one the node held at its seq (the key signed twice at one seq)"
          + (f", and {unlisted} more not listed" if unlisted else ""), file=sys.stderr)


def _when(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
