"""`vouchnet vouch` and `vouchnet revoke`: sign a vouch as this org, or withdraw one."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from vouching.bodies import BASES, SCOPE_ITEM_MAX
from vouching.schema import InvalidRecord, text

from node.cli_commands import summary_of
from node.client import NodeUnreachable
from node.client.node_client import SignedRecord
from node.client._http import key_or_fresh
from .common import (
    CommandFailed, Subparsers, add_command, did_argument, is_record_id, open_client, print_json, weight_argument,
)

_DURATION = re.compile(r"([1-9][0-9]{0,5})([smhdw])")
_DURATION_SHAPED = re.compile(r"[0-9]+[smhdw]")  # a duration, of a length that may be out of _DURATION's range
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def register(subparsers: Subparsers) -> None:
    vouch = add_command(
        subparsers,
        "vouch",
        summary=summary_of("vouch"),
        description="Sign a vouch record as this org and publish it to the network. The weight says how strongly "
        "(0 < W <= 1); the basis says on what grounds: operator (you run it), audit, developer, interaction, or "
        "org-peer (an org you trust, which widens what this node replicates).",
        examples=[
            "vouchnet vouch did:key:z6Mk... --weight 0.8 --basis operator",
            "vouchnet vouch did:key:z6Mk... --weight 0.5 --basis audit --scope search --scope fetch "
            "--expires 30d",
            "vouchnet vouch did:key:z6Mk... --weight 1 --basis org-peer --expires 2026-12-31",
        ],
        run=_vouch,
    )
    vouch.add_argument("subject", metavar="DID", type=did_argument, help="the did:key of the agent or org vouched for")
    vouch.add_argument("--weight", type=weight_argument, required=True, metavar="W", help="how strongly, 0 < W <= 1")
    vouch.add_argument("--basis", choices=BASES, required=True, help="on what grounds")
    vouch.add_argument(
        "--scope", action="append", metavar="TOOL", type=_scope_argument,
        help="limit the vouch to this tool (repeat for more): it then counts only in checks of a tool named exactly "
        "so (case-sensitive), never in the agent's general score; default: no limit. Like any vouch it replaces "
        "this org's earlier one for the subject with the same basis, unscoped included. Not with --basis org-peer",
    )
    vouch.add_argument(
        "--expires",
        type=parse_expires,
        metavar="WHEN",
        help="when it lapses: a date or time (2026-12-31, 2026-12-31T12:00:00Z; UTC unless a zone is given) "
        "or a duration from now (90m, 12h, 30d, 2w); default: never (it counts until revoked, or replaced by this "
        "org's next vouch for the subject on the same basis)",
    )
    vouch.add_argument("--json", action="store_true", help="print the new record as JSON")
    _key_argument(vouch, "vouch")

    revoke = add_command(
        subparsers,
        "revoke",
        summary=summary_of("revoke"),
        description="Sign a revoke record withdrawing one of this org's vouches, named by its record id "
        "(`vouchnet records --issuer <your did> --kind vouch` lists them; after a key rotation, those made under "
        "an earlier key are listed with --issuer <that did>, and revoked the same way).",
        examples=['vouchnet revoke 3f2a...c9 --reason "agent retired"'],
        run=_revoke,
    )
    revoke.add_argument("record", metavar="RECORD_ID", type=_record_id, help="the vouch's record id, 64 hex digits")
    revoke.add_argument("--reason", required=True, help="why, 1 to 256 printable characters")
    revoke.add_argument("--json", action="store_true", help="print the revoke record as JSON")
    _key_argument(revoke, "revocation")


def _scope_argument(value: str) -> str:
    """argparse type: a tool to limit a vouch to, refused as the node refuses a scope entry (vouching.bodies), so
    that a usage error is said before the token is read or the node asked (it was the node's 422, exit 1)."""
    try:
        return text(value, "--scope", SCOPE_ITEM_MAX)
    except InvalidRecord:
        raise argparse.ArgumentTypeError(f"a tool's name, printable text of 1 to {SCOPE_ITEM_MAX} characters, got "
                                         f"{value!r}") from None


def _key_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--idempotency-key", metavar="KEY", type=_idempotency_key,
        help=f"the request's Idempotency-Key (default: a fresh one). If the node's answer is lost, the command says "
        f"which key it sent: run it again with that key, and the node answers with the {what} it signed, if it did, "
        "instead of signing a second (saying so on stderr)",
    )


def parse_expires(text: str) -> int:
    """An expiry as ms since the Unix epoch, from an ISO 8601 date or time, or a duration from now; a moment past
    is an ArgumentTypeError (the node would refuse the vouch as `body.expires: must be later than ts`)."""
    now = int(time.time() * 1000)
    if duration := _DURATION.fullmatch(text):
        return now + int(duration[1]) * _UNIT_MS[duration[2]]
    if _DURATION_SHAPED.fullmatch(text):  # (else refused as not a date, which would not say what is wrong)
        raise argparse.ArgumentTypeError(f"a duration is 1 to 999999 of its unit (90m, 12h, 30d, 2w), got {text!r}")
    expires = parse_date_or_time(text, "or a duration (30d, 12h)")
    if expires <= now:
        raise argparse.ArgumentTypeError(f"{text!r} is past: a vouch must lapse later than now")
    return expires


def parse_date_or_time(text: str, alternative: str) -> int:
    """An ISO 8601 date or time (UTC unless it names a zone) as ms since the Unix epoch; else an ArgumentTypeError
    listing what the argument takes, the `alternative` last."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date (2026-12-31), a time (2026-12-31T12:00:00Z) {alternative}, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _idempotency_key(value: str) -> str:
    """argparse type: an Idempotency-Key the node takes (node.idempotency.check_key), refused before the token is
    read or the node asked (it was the node's 400, exit 1)."""
    from node.idempotency import check_key  # (here: only a command given a key pays for its import)

    if (why := check_key(value)) is not None:
        raise argparse.ArgumentTypeError(f"{why.removeprefix('Idempotency-Key: ')}, got {value!r}")
    return value


def _vouch(args: argparse.Namespace) -> int:
    key = key_or_fresh(args.idempotency_key)
    with open_client(args, write=True) as client, _answer_lost(args, key, "vouch"):
        record = client.vouch(args.subject, args.weight, args.basis, scope=args.scope, expires=args.expires,
                              idempotency_key=key)
    _say_if_replayed(record, key, "vouch")
    if args.json:
        print_json(record)
    else:
        print(f"vouched for {args.subject}: record {record['id']}")
    return 0


def _record_id(text: str) -> str:
    """argparse type: a record id, so that a mistyped one is refused before the token is read or the node asked; a
    shortened one (`vouchnet score` and `orgs` show a vouch by its first 12 digits) is told where the whole is."""
    if not is_record_id(text):
        short = (": a vouch is named by its whole id, which `vouchnet records --kind vouch --issuer DID` lists (DID: "
                 "your org's, as `vouchnet status` shows it)") if re.fullmatch(r"[0-9a-f]{1,63}", text) else ""
        raise argparse.ArgumentTypeError(f"expected a vouch's record id, 64 hex digits, got {text!r}{short}")
    return text


def _revoke(args: argparse.Namespace) -> int:
    key = key_or_fresh(args.idempotency_key)
    with open_client(args, write=True) as client, _answer_lost(args, key, "revocation"):
        record = client.revoke(args.record, args.reason, idempotency_key=key)
    _say_if_replayed(record, key, "revocation")
    if args.json:
        print_json(record)
    else:
        print(f"revoked {record['body']['record']}: record {record['id']}")
    return 0


def _say_if_replayed(record: SignedRecord, key: str, what: str) -> None:
    """A note on stderr when the node answered with the record an earlier run with `key` had it sign."""
    if record.replayed:
        print(f"nothing signed now: the node had signed this {what} already, for an earlier run with "
              f"--idempotency-key {key}; its record follows", file=sys.stderr)


@contextmanager
def _answer_lost(args: argparse.Namespace, key: str, what: str) -> Iterator[None]:
    """A NodeUnreachable as a CommandFailed naming the key sent: the node may have signed the request's record."""
    try:
        yield
    except NodeUnreachable as error:
        raise CommandFailed(f"{error}; if the node got the request it may have signed the {what}: run the command "
                            f"again with --idempotency-key {key} to get it without signing a second") from None
