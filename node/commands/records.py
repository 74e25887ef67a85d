"""`vouchnet records`: the records the node holds, filtered, one a line (or JSON lines)."""

from __future__ import annotations

import argparse
import json
from itertools import islice
from typing import Any

from node.cli_commands import summary_of
from node.record_time import record_time
from vouching.bodies import KINDS
from vouching.counts import counted
from vouching.identity import meant_as_did

from .common import (Subparsers, add_command, did_argument, is_record_id, open_client, org_did_argument,
                     positive_int)

_PAGE = 500  # the most the API gives in one page


def register(subparsers: Subparsers) -> None:
    records = add_command(
        subparsers,
        "records",
        summary=summary_of("records"),
        description="List the records the node holds (its own and those it replicated), oldest first, one a line: "
        "ledger index, kind, record id, issuer and seq, then what the record says. Filters combine.",
        examples=[
            "vouchnet records",
            "vouchnet records --kind vouch --subject did:key:z6Mk...",
            "vouchnet records --issuer did:key:z6Mk... --json | jq .body",
            "vouchnet records --kind revoke --subject 3f9c...e1  # the revoke of one vouch, by its record id",
        ],
        run=_records,
    )
    records.add_argument("--issuer", metavar="DID", type=org_did_argument, help="only records this org signed")
    records.add_argument("--kind", choices=KINDS, help="only records of this kind")
    records.add_argument("--subject", metavar="DID|ID", type=_subject,
                         help="only records about this did:key, or (for a revoke) about this vouch's record id")
    records.add_argument("--limit", type=positive_int, metavar="N", help="at most N records (default: all)")
    records.add_argument("--json", action="store_true", help="one JSON object a line (JSON lines)")


def _subject(text: str) -> str:
    """argparse type: what a record can be about, a did:key or (a revoke's) a record id; so that a mistyped one is
    an error, not an empty list, and a mistyped did is told what is wrong with it, as `score` tells it."""
    if is_record_id(text):
        return text
    if meant_as_did(text):
        return did_argument(text)
    raise argparse.ArgumentTypeError(f"expected a did:key, or a vouch's record id (64 hex digits), got {text!r}")


def _records(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        page = min(args.limit or _PAGE, _PAGE)
        found = client.iter_records(issuer=args.issuer, kind=args.kind, subject=args.subject, page=page)
        for record in islice(found, args.limit):
            print(json.dumps(record) if args.json else describe(record))
    return 0


def describe(record: dict[str, Any]) -> str:
    """One line for a record in its JSON form: index, kind, id, issuer and seq, then what it says."""
    return (
        f"#{record['index']} {record['kind']} {record['id']} by {record['iss']} seq {record['seq']}: "
        f"{_summary(record['kind'], record['body'])}"
    )


def _summary(kind: str, body: dict[str, Any]) -> str:
    if kind == "vouch":
        words = [f"{body['subject']} weight {body['weight']} basis {body['basis']}"]
        if body.get("scope"):
            words.append(f"scope {','.join(body['scope'])}")
        if body.get("expires") is not None:
            words.append(f"expires {record_time(body['expires'])}")
        return " ".join(words)
    if kind == "revoke":
        return f"revokes {body['record']}: {body['reason']}"
    if kind == "org":
        words = f"{body['name']} on {body['network']}" + (f" at {' '.join(body['addrs'])}" if body["addrs"] else "")
        if body.get("next"):  # a key rotation (vouchnet key rotate): this key's last record, and the new key's first
            words += f"; rotates this key to {body['next']}"
        if body.get("prior"):
            words += f"; the key that replaces {body['prior']}"
        return words
    if kind == "digest":
        return _digest_summary(body)
    if kind == "equivocation":
        return f"{body['offender']} signed two {body['type']}s that contradict each other"
    return json.dumps(body)


def _digest_summary(body: dict[str, Any]) -> str:
    """A digest's agent, epoch, and what its events came to (DESIGN §3): "7 events (6 ok, 1 denied; high-risk: 1
    denied)", so that a reader sees the violations a peer reported without reading the JSON."""
    words = (f"{body['agent']} from {record_time(body['epoch'])} for {_seconds(body['len'])}: "
             f"{counted(body['events'], 'event')}")
    outcomes, high_risk = _nonzero(body["outcomes"]), _nonzero(body["high_risk"])
    if outcomes:
        words += f" ({outcomes}" + (f"; high-risk: {high_risk}" if high_risk else "") + ")"
    if "dp" in body:
        words += f", counts with DP noise of epsilon {body['dp']['eps']:g}"
    return words


def _nonzero(counts: dict[str, int]) -> str:
    """The counts of a digest's count map that are not zero, in its order: "6 ok, 1 denied"."""
    return ", ".join(f"{n} {name}" for name, n in counts.items() if n)


def _seconds(ms: int) -> str:
    """A digest's epoch length, `len` ms (DESIGN §3), in seconds as exactly as it is written: "3600 s", "1.5 s"."""
    fraction = f".{ms % 1000:03d}".rstrip("0") if ms % 1000 else ""
    return f"{ms // 1000}{fraction} s"
