"""`vouchnet audit export`, `audit verify` and `audit check`: an agent's raw events for an auditor, the auditor's
check of them (node.audit_export), and the org's check of its whole audit log (node.audit_check). Export and check
read the data directory itself (records.ledger read-only), so they work with or without the node running."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gossip.store import LEDGER_FILE, RecordReader
from ledger.files import replace_file
from node.audit_log import AUDIT_FILE
from node.cli_commands import summary_of
from node.store_manifest import DIGESTS_FILE
from vouching import Record, did_key
from vouching.counts import counted

from .common import (
    CommandFailed,
    StderrProgress,
    Subparsers,
    UsageError,
    add_command_group,
    add_dir_option,
    add_local_command,
    did_argument,
    org_did_argument,
)
from .signing import signing_key
from .vouches import parse_date_or_time


_MS_FORM = "or ms since the Unix epoch, 13 digits (1767225600000)"


def instant(text: str) -> int:
    """argparse type: a moment as ms since the Unix epoch, 13 digits (2001-09-09 to 2286-11-20), or a date or time
    (UTC unless a zone is given). Any other bare number is refused: 2026 is a year, 20260101 a date, 1767225600 seconds,
    and reading them as ms exported from the first seconds of 1970."""
    if text.isascii() and text.isdigit():
        if len(text) == 13:
            return int(text)
        raise argparse.ArgumentTypeError(f"expected a date (2026-12-31), a time (2026-12-31T12:00:00Z) {_MS_FORM}, "
                                         f"got {text!r}: ms since the Unix epoch have 13 digits")
    return parse_date_or_time(text, _MS_FORM)


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers,
        "audit",
        summary=summary_of("audit"),
        description="The org's private audit log of telemetry events.",
        examples=["vouchnet audit export --agent did:key:z6Mk... --from 2026-01-01 --to 2026-02-01 --out alice.json",
                  "vouchnet audit verify alice.json --org did:key:z6Mk...", "vouchnet audit check --dir /srv/vouchnet"],
    )
    export = add_local_command(
        commands,
        "export",
        run=_export,
        summary="an agent's events with inclusion proofs against a checkpoint signed by the org",
        description="Write one agent's events accepted in [--from, --to), widened to whole digest epochs so that "
        "each epoch's evidence root can be recomputed, with RFC 9162 inclusion proofs against a checkpoint of the "
        "audit log signed now with the org key (refused while a `key rotate` is unfinished: run it again, or start the "
        "node, first), each with its entry's salt (random bytes that keep the org's evidence roots from being guessed "
        "from events). After a `key rotate`, the export holds the org's rotation chain (its signed org records "
        "linking each earlier key to the next, read from records.ledger), so that the digests of its earlier keys "
        "match too. Events pruned by retention cannot be exported. It reads the audit log read-only, so it runs "
        "beside the running node too. Exits 1 naming a damaged entry that may be the agent's; one that decodes as "
        "another agent's is named in a warning and left out.",
        examples=[
            "vouchnet audit export --agent did:key:z6Mk... --from 2026-01-01 --to 2026-02-01 --out alice.json",
            "vouchnet audit export --dir ./alice --agent did:key:z6Mk... --from 1767225600000 --to 1767229200000",
        ],
    )
    export.add_argument("--agent", required=True, type=did_argument, metavar="DID", help="the agent's did:key")
    export.add_argument("--from", dest="start", required=True, type=instant, metavar="WHEN",
                        help="a date, a time (UTC unless a zone is given) or ms since the Unix epoch (13 digits)")
    export.add_argument("--to", dest="end", required=True, type=instant, metavar="WHEN", help="the same, exclusive")
    export.add_argument("--out", type=Path, metavar="FILE", help="write the export here (default: stdout)")
    add_dir_option(export)
    verify = add_local_command(
        commands,
        "verify",
        run=_verify,
        summary="check an export: the org's signature, every inclusion proof, every epoch's evidence root",
        description="Check an export as an auditor would: the checkpoint "
        "is signed by the org's did:key, each event is in the checkpointed log, each epoch's events hash to its "
        "evidence root, and, for each digest record given, to the root the org published, signed by one of the "
        "org's keys: the one the export names, or an earlier one its rotation chain links to it, before that key's "
        "rotation. An export proves what the org it names logged: give --org to require the org you expect (anyone "
        "can sign an export of their own).",
        examples=["vouchnet audit verify alice.json --org did:key:z6Mk... --digest d1.cose --digest d2.cose"],
    )
    verify.add_argument("file", type=Path, metavar="EXPORT", help="the file `vouchnet audit export` wrote")
    verify.add_argument("--org", type=org_did_argument, metavar="DID",
                        help="refuse an export of any other org (of which DID is a key: the newest, or one the "
                        "rotation chain links to it)")
    verify.add_argument("--digest", type=Path, action="append", default=[], metavar="FILE",
                        help="one of the org's digest records of the agent (COSE bytes, as GET /v1/records/{id} "
                        "serves it; GET /v1/records?issuer=ORG&kind=digest&subject=AGENT lists them), given again for "
                        "each epoch to check: an epoch without one is checked against the export's own root only")
    check = add_local_command(
        commands,
        "check",
        run=_check,
        summary="re-check the whole audit log: every entry, every stored hash, every digest the org signed",
        description=f"After a crash or a disk incident, check that the org's audit log ({AUDIT_FILE}) is intact: "
        "each entry is re-hashed and decoded as an event, the tree is rebuilt and compared with every hash the log "
        "stores (its roots and the proofs of exports are computed from them), acceptance times never decrease, "
        f"each epoch {DIGESTS_FILE} says was digested holds exactly its entries, and each digest the org signed (under "
        f"any of its keys, read from {LEDGER_FILE}) has the evidence_root and, without DP noise, the counts of its "
        "agent's entries in its epoch, each agent with entries in an epoch whose digests were all issued having one. "
        "Entries retention pruned keep only their hashes, checked against the tree "
        "above them; the digests of their epochs cannot be checked, and are counted. It only reads, so it runs "
        "beside the running node too; progress on stderr. Exits 1 naming each damaged entry, stored hash, epoch "
        "or digest (the first 20, and how many in all).",
        examples=["vouchnet audit check --dir /srv/vouchnet", "vouchnet audit check"],
    )
    add_dir_option(check)


def _export(args: argparse.Namespace) -> int:
    from node.audit_export import ExportError, export_agent
    from ledger import LedgerError
    from node.audit_log import AuditLog, DamagedEntry
    from node.digests import DigestState, DigestStateError

    if args.end <= args.start:
        raise UsageError("--to: must be later than --from")
    with signing_key(args) as (config, key):
        org = did_key(bytes(key.verify_key))
        _audit_file(config.data_dir)
        chain = _rotation_chain(config.data_dir, org)
        try:
            state = DigestState.open_readonly(config.data_dir)
        except DigestStateError as e:
            raise CommandFailed(str(e)) from None
        try:  # read-only: beside a running node, or in a data directory a crash left, it changes no file
            audit = AuditLog.open(config.data_dir, read_only=True)
        except LedgerError as e:
            state.close()
            raise CommandFailed(str(e)) from None
        damaged: list[DamagedEntry] = []
        try:
            document = export_agent(audit, state, key=key, org=org, network=config.network, agent=args.agent,
                                    start=args.start, end=args.end, chain=chain, damaged=damaged.append)
        except (ExportError, LedgerError) as e:  # LedgerError: a damaged entry or row, named
            raise CommandFailed(str(e)) from None
        finally:
            audit.close()
            state.close()
    text = json.dumps(document, indent=1) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        replace_file(args.out, text.encode())  # whole or not at all, and the user's alone: it holds raw telemetry
    for error in damaged:
        print(f"warning: {error}. It decodes as another agent's entry, and is left out: if the change was to its "
              f"agent, the export lacks an event of {args.agent} (its epoch's evidence_root then differs from the "
              "org's digest)", file=sys.stderr)
    print(f"{counted(len(document['entries']), 'event')}, {counted(len(document['epochs']), 'digested epoch')}",
          file=sys.stderr)
    return 0


def _rotation_chain(data_dir: Path, org: str) -> list[bytes]:
    """The org's rotation chain (node.audit_export.rotation_chain), read from records.ledger read-only: beside a
    running node, whose appends WAL lets it read past, as with the node stopped."""
    from gossip.store import LEDGER_FILE, RecordReader, StoreError
    from ledger import LedgerError
    from node.audit_export import rotation_chain
    from node.store_manifest import StoreLost, check_listed

    try:
        check_listed(data_dir, [LEDGER_FILE])
        if not (data_dir / LEDGER_FILE).exists():
            return []  # no record stored yet: no rotation either
        with RecordReader.open(data_dir) as records:
            return rotation_chain(records, org)
    except StoreLost as error:
        raise CommandFailed(str(error)) from None
    except (LedgerError, StoreError) as error:
        raise CommandFailed(f"records: {error}") from None


def _check(args: argparse.Namespace) -> int:
    from ledger import EntryPruned, Ledger, LedgerError
    from node.audit_check import AuditCheck, check_audit_log
    from node.config import ConfigError, default_data_dir, load_config
    from node.digests import DigestState, DigestStateError
    from node.keys import KeyFileError, load_org_key

    try:  # it writes and signs nothing: `sudo vouchnet audit check` reads a service user's directory, which `run`
        # as root would refuse (node.strict_modes)
        config = load_config(args.dir or default_data_dir())
    except ConfigError as error:
        raise UsageError(str(error)) from None
    try:
        org = did_key(bytes(load_org_key(config.key_path).verify_key))
    except KeyFileError as error:
        raise UsageError(str(error)) from None
    path = _audit_file(config.data_dir)
    # Read in this order beside a running node: each epoch digests.db lists, and each digest records.ledger holds,
    # is then of entries the audit log opened after them holds.
    try:
        state = DigestState.open_readonly(config.data_dir)
    except DigestStateError as error:
        raise CommandFailed(str(error)) from None
    try:
        epochs = state.epochs()
    except sqlite3.Error as error:
        raise CommandFailed(f"{config.data_dir / DIGESTS_FILE}: cannot be read ({error})") from None
    finally:
        state.close()
    with _org_digests(config.data_dir, org) as digests:
        try:
            with Ledger.open(path, read_only=True, to_repair=True) as ledger:  # to_repair: a wrong hash is named
                checked = check_audit_log(ledger, epochs, digests, progress=StderrProgress())
        except EntryPruned:
            raise CommandFailed(f"{path}: the node pruned entries by retention as they were read: run it again") \
                from None
        except LedgerError as error:
            raise CommandFailed(f"{error}: {_RESTORE}") from None
    if checked.problems.count:
        raise CommandFailed(_damage(path, checked))
    print(_intact(checked))
    return 0


def _audit_file(data_dir: Path) -> Path:
    """The audit log of `data_dir`, to be read (never made: export and check only read it); CommandFailed if the data
    directory made it and lost it, or holds none yet (the node has not started)."""
    from node.store_manifest import StoreLost, check_listed

    path = data_dir / AUDIT_FILE
    try:
        check_listed(data_dir, [AUDIT_FILE])
    except StoreLost as error:
        raise CommandFailed(str(error)) from None
    if not path.exists():
        raise CommandFailed(f"{path}: no such file: the node has not started yet (or is {data_dir} not its data "
                            "directory?)")
    return path


_RESTORE = ("restore audit.ledger and digests.db from one copy of the data directory taken before the fault (with the "
            "node stopped); what was accepted since the copy is lost")


def _damage(path: Path, checked: AuditCheck) -> str:
    """The failure of a damaged audit log: what is wrong, where, and what to do."""
    problems = checked.problems
    more = problems.count - len(problems.named)
    return (f"{path}: {counted(problems.count, 'problem')}:\n" + "".join(f"  {p}\n" for p in problems.named)
            + (f"  and {more} more\n" if more else "") + _RESTORE)


def _intact(checked: AuditCheck) -> str:
    """What an intact log was shown to be."""
    kept = checked.size - checked.pruned
    lines = [f"ok: {counted(kept, 'entry', 'entries')} re-hashed and decoded, in time order; the "
             f"{counted(checked.hashes, 'hash', 'hashes')} the log stores match its tree; "
             f"{counted(checked.epochs, 'digested epoch')} and {counted(checked.digests, 'digest')} of the org match "
             "their entries"]
    if checked.pruned:
        lines.append(f"{counted(checked.pruned, 'entry', 'entries')} pruned by retention keep only their hashes, "
                     f"checked against the tree; {counted(checked.digests_pruned, 'digest')} of their epochs not "
                     "checked")
    return "\n".join(lines)


@contextmanager
def _org_digests(data_dir: Path, org: str) -> Iterator[Iterator[Record]]:
    """The digest records of the org's keys (`org`, and those its rotation chain links to it), read from
    records.ledger as it stands now (read-only: beside a running node too); none if it holds no record yet."""
    from gossip.store import StoreError
    from ledger import LedgerError
    from node.audit_export import rotation_chain
    from node.store_manifest import StoreLost, check_listed
    from vouching import verify_record
    from vouching.succession import Succession

    try:
        check_listed(data_dir, [LEDGER_FILE])
        if not (data_dir / LEDGER_FILE).exists():
            yield iter(())
            return
        with RecordReader.open(data_dir) as records:
            succession = Succession()
            for raw in rotation_chain(records, org):
                succession.note(verify_record(raw))
            yield _scanned(records, succession.keys(org))
    except StoreLost as error:
        raise CommandFailed(str(error)) from None
    except (LedgerError, StoreError) as error:
        raise CommandFailed(f"records: {error}") from None


def _scanned(records: RecordReader, keys: Iterable[str]) -> Iterator[Record]:
    """The digest records of `keys`, as read: a records ledger failing meanwhile fails the command, naming it, not
    the audit log the check reads alongside."""
    from gossip.store import StoreError
    from ledger import LedgerError

    try:
        for key in keys:
            yield from records.scan(issuer=key, kind="digest")
    except (LedgerError, StoreError) as error:
        raise CommandFailed(f"records: {error}") from None


def _verify(args: argparse.Namespace) -> int:
    from node.audit_export import VerifyError, verify_export
    from node.strict_json import loads_strict

    try:
        # As I-JSON (RFC 7493): an export two JSON readers read two ways (a member name twice) verifies for neither,
        # and one nested deeper than Python's parser goes is refused as any other that is not JSON
        document = loads_strict(args.file.read_bytes())
        digests = [path.read_bytes() for path in args.digest]
    except ValueError as e:
        raise UsageError(f"{args.file}: not a JSON export ({e})") from None
    try:
        verified = verify_export(document, digests=digests)
    except VerifyError as e:
        raise CommandFailed(f"does not verify: {e}") from None
    if args.org is not None and args.org not in verified.keys:
        raise CommandFailed(f"does not verify: an export of org {document['org']}, not of {args.org}")
    earlier = f", rotated from {', '.join(verified.keys[:-1])}" if len(verified.keys) > 1 else ""
    print(f"ok: {counted(len(verified.events), 'event')} in a log of {counted(verified.size, 'entry', 'entries')}, "
          f"{counted(len(verified.epochs), 'epoch root')} recomputed, {counted(len(digests), 'digest')} matched; "
          f"agent {document['agent']}, org {document['org']}{earlier}")
    if verified.unmatched:
        print(f"note: {counted(verified.unmatched, 'event')} in no epoch a --digest was given for: an export can "
              "leave out events of such an epoch, or the whole epoch, and still verify (its evidence root is the "
              "export's own); the org's digest records of the agent show it "
              "(GET /v1/records?issuer=ORG&kind=digest&subject=AGENT)", file=sys.stderr)
    return 0
