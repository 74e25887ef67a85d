"""`vouchnet own-records list`, `evidence` and `acknowledge`: the records of the org's key that came from
peers (gossip.own_records), and the operator's acknowledgement of those explained."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import sys
from pathlib import Path
from typing import Any

from ledger.files import create_file
from node.cli_commands import summary_of
from node.client import NodeApiError, NodeClient
from vouching.counts import counted

from .common import (
    CommandFailed,
    Subparsers,
    add_command,
    add_command_group,
    aligned,
    open_client,
    positive_int,
    print_json,
)

_WHAT = ("Records of the org's key that the node did not sign and that came from peers: its own history coming back "
         "after its data directory was restored from an older copy, or a thief's, if the key leaked. They are kept "
         "across restarts; those not acknowledged count in `own_records_from_peers` (`vouchnet status`) and the "
         "metric vouchnet_own_records_from_peers, which an alert watches. One that conflicts with a record the node "
         "holds at its seq (CONFLICTS_WITH names it) proves the key signed twice at one seq: someone else holds the "
         "key. The ledger does not take it; its bytes are kept (GET /v1/node/own-records/NUMBER/cose), with those of "
         "the record it conflicts with if the node held that one only (.../NUMBER/conflicts-with/cose; `evidence "
         "NUMBER` writes both as files), for 1,000 "
         "such records at most: acknowledging them makes room for later ones, the oldest acknowledged losing their "
         "bytes.")

# Why the node serves no bytes of a record (its 410), but for bytes it dropped
_NOT_SERVED = {"bytes_not_kept": "the node never kept its bytes (it held the record only, listed by a version that "
                                 "kept none)"}


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers, "own-records", summary=summary_of("own-records"),
        description=_WHAT, examples=["vouchnet own-records list", "vouchnet own-records evidence 7 --out ./incident",
                                     "vouchnet own-records acknowledge --through 42"])
    listing = add_command(
        commands, "list",
        summary="list them: number, key, seq, id, when accepted, the peer it came from, whether acknowledged, the "
        "record it conflicts with, whether the node keeps the bytes of both",
        description=_WHAT + " Lists them, one a line: NUMBER (what `acknowledge --through` takes), KEY, SEQ, ID, "
        "ACCEPTED (UTC), PEER (the PeerID it came from; - if submitted through the API), ACKNOWLEDGED, "
        "CONFLICTS_WITH, then for a conflicting record BYTES and CONFLICTS_WITH_BYTES: whether the node keeps the "
        "bytes of the record and of the one it conflicts with, for `evidence`: kept, dropped (to make room for a "
        "later conflict's, the row acknowledged) or not_kept (a row listed by a version that kept none of a record "
        "the node held only), ? if the node cannot read its ledger's index now (said on stderr); then, on stderr, "
        "how many are unacknowledged and how many conflict.",
        examples=["vouchnet own-records list", "vouchnet own-records list --json"], run=_list)
    listing.add_argument("--json", action="store_true", help="print them as a JSON list")
    evidence = add_command(
        commands, "evidence", summary="write a conflicting record and the one it conflicts with as COSE files",
        description="Write the two records that prove the org's key signed twice at one seq: the conflicting record "
        "listed as NUMBER (a row of `list` with CONFLICTS_WITH) and the record it conflicts with, each a COSE_Sign1 "
        "file of the bytes as the key signed them, named own-record-NUMBER.cose and "
        "own-record-NUMBER-conflicts-with.cose. Each is checked against its id (the SHA-256 of its bytes) before it "
        "is written, whole or not at all, durably. They are public records: take them to forensics, or to other "
        "orgs, whose nodes flag the key as an equivocator once they hold both (DESIGN.md section 3); `POST "
        "/v1/records` of either to a node shows it refused as an equivocation. An existing file is never "
        "overwritten. The node may have dropped the bytes of an acknowledged row to make room for a later "
        "conflict's, or never kept those of a record it held only (a row listed by a version before own_records.db "
        "format 5): the command says so, writes the other, and exits 1.",
        examples=["vouchnet own-records evidence 7", "vouchnet own-records evidence 7 --out ./incident"],
        run=_evidence)
    evidence.add_argument("number", type=positive_int, metavar="NUMBER",
                          help="the conflicting record's number, the first column of `list`")
    evidence.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                          help="the directory to write them in (default: here)")
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
        records, unacknowledged, unlisted, unreadable = _all(client)
    if args.json:
        print_json(records)
    else:
        _show(records, unacknowledged, unlisted)
    if unreadable is not None:
        print(f"the node cannot read its ledger's index now ({unreadable}): whether each record is stored, and the "
              "bytes it would serve from its ledger (?), are not known; the list itself is whole", file=sys.stderr)
    return 0


def _acknowledge(args: argparse.Namespace) -> int:
    with open_client(args, write=True) as client:
        answer = client.acknowledge_own_records(args.through)
    print(f"acknowledged {counted(answer['acknowledged'], 'record')} listed through number {args.through}; "
          f"{answer['unacknowledged']} unacknowledged")
    return 0


def _evidence(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        page = client.own_records(after=args.number - 1)
        row = next((r for r in page["records"] if r["number"] == args.number), None)
        if row is None or not row.get("conflicts_with"):
            raise CommandFailed(f"no listed record numbered {args.number} that conflicts with one the node held "
                                "(`vouchnet own-records list` shows them, with CONFLICTS_WITH)")
        missing = 0
        for record_id, fetch, name in (
                (row["id"], client.own_record_cose, f"own-record-{args.number}.cose"),
                (row["conflicts_with"], client.own_record_conflicts_with_cose,
                 f"own-record-{args.number}-conflicts-with.cose")):
            try:
                raw = fetch(args.number)
            except NodeApiError as error:
                if error.status != 410:
                    raise
                print(f"{record_id}: not written, {_NOT_SERVED.get(error.code, 'the node keeps its bytes no longer')}: "
                      f"{error}", file=sys.stderr)
                missing += 1
                continue
            if hashlib.sha256(raw).hexdigest() != record_id:
                raise CommandFailed(f"the node answered record {record_id} with bytes of another id")
            path = args.out / name
            try:
                create_file(path, raw, mode=0o666)  # (whole or none: a part would pass for the evidence)
            except FileExistsError:
                raise CommandFailed(f"{path}: exists, and is not overwritten: move it, or give another --out") from None
            print(f"{path}: record {record_id}, key {row['iss']} at seq {row['seq']}")
    return 1 if missing else 0


def _all(client: NodeClient) -> tuple[list[dict[str, Any]], int, int, str | None]:
    """Every listed record, page by page, the counts of unacknowledged ones and of conflicting ones not listed, as
    the last page gave them, and why the node could not read its ledger's index for a page, if it could not."""
    records: list[dict[str, Any]] = []
    after, unreadable = 0, None
    while True:
        page = client.own_records(after=after)
        records += page["records"]
        unreadable = unreadable or page.get("ledger_unreadable")
        if page["next"] is None:
            return records, page["unacknowledged"], page.get("conflicts_unlisted", 0), unreadable
        after = page["next"]


def _show(records: list[dict[str, Any]], unacknowledged: int, unlisted: int) -> None:
    if records:
        rows = [("NUMBER", "KEY", "SEQ", "ID", "ACCEPTED", "PEER", "ACKNOWLEDGED", "CONFLICTS_WITH", "BYTES",
                 "CONFLICTS_WITH_BYTES")] + [
            (str(r["number"]), r["iss"], str(r["seq"]), r["id"], _when(r["accepted_ms"]), r["peer"] or "-",
             "yes" if r["acknowledged"] else "no", r.get("conflicts_with") or "-", _bytes(r, "bytes"),
             _bytes(r, "conflicts_with_bytes")) for r in records]
        print("\n".join(aligned(rows)))
    conflicting = sum(1 for r in records if r.get("conflicts_with"))
    print(f"{counted(len(records), 'record')} of the org's key from peers, {unacknowledged} unacknowledged; "
          f"{conflicting} conflicting with the one the node held at its seq (the key signed twice at one seq)"
          + (f", and {unlisted} more not listed" if unlisted else ""), file=sys.stderr)


def _bytes(row: dict[str, Any], field: str) -> str:
    """What `row` says of bytes (`field`): - for a row conflicting with none, ? where the node could not say."""
    return "-" if not row.get("conflicts_with") else row.get(field) or "?"


def _when(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
