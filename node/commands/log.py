"""`vouchnet log checkpoint`, `log verify` and `log repair`: the node's records ledger as a transparency log."""

from __future__ import annotations

import argparse
import base64
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from gossip.checkpoints import CHECKPOINT_FILE
from gossip.store import LEDGER_FILE
from node.cli_commands import summary_of
from node.client import NodeClient
from vouching.counts import counted

from .common import (
    CommandFailed,
    StderrProgress,
    Subparsers,
    UsageError,
    add_command,
    add_command_group,
    add_dir_option,
    add_local_command,
    data_dir_of,
    local_config,
    open_client,
    org_did_argument,
    positive_int,
    print_json,
)
from .log_repair import repair_log
from .log_verify import Dids, Verified, known_witnesses, named_witnesses, named_wrong, verify_log, weighed_by_node

CACHE_FILE = "verified.checkpoint"  # in the data directory: the checkpoint the last `log verify` accepted


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers,
        "log",
        summary=summary_of("log"),
        description="The node's records ledger is a Merkle log: every record it accepted, in order, under a "
        "checkpoint (a C2SP signed note) that its peers cosign.",
        examples=["vouchnet log checkpoint", "vouchnet log verify --dir /srv/vouchnet",
                  "vouchnet log repair --dir /srv/vouchnet"],
    )
    add_command(
        commands,
        "checkpoint",
        summary="print the latest signed checkpoint with its cosignatures",
        description="Print the node's latest checkpoint of its records ledger, a C2SP signed note: origin, size "
        "and root hash, then the org's signature and its witnesses' cosignatures.",
        examples=["vouchnet log checkpoint", "vouchnet log checkpoint --api http://127.0.0.1:8700 > checkpoint.txt"],
        run=_checkpoint,
    )
    verify = add_command(
        commands,
        "verify",
        summary="fetch the whole ledger and re-check it against the signed checkpoint",
        description="Fetch every entry of the node's records ledger from the running node (progress on stderr) and "
        "check that each is a validly signed record that follows its issuer's chain, that the entries hash to the "
        f"root of the node's latest checkpoint, that every hash the node's {LEDGER_FILE} stores for them (from which "
        "it builds its proofs) is the hash they give (read from the data directory, beside the running node: not "
        "with --api), that the org's key signed "
        "that checkpoint, that its cosignatures verify, and that it "
        f"is consistent with the checkpoint the previous run accepted (kept in {CACHE_FILE} in the data "
        "directory, or --cache FILE; signed by the org's earlier key if the ledger holds the key rotation that "
        "replaced it). Exits 1 naming the first check that fails. Anyone can make a key and cosign, so only the "
        "cosignatures of known witnesses count: the --witness orgs, else the orgs that the node of --known-by DIR, "
        "or of --dir, gives the weight of an independent witness (a voucher_weight, its standing, of at least its "
        "witness_min_weight, 0.3 by default: `vouchnet orgs DID --json`; none it flagged for equivocation), outside "
        "the independence group of the log's org; with --api alone, none; never a key of the log's org, an earlier "
        "one (that the ledger's key rotations replaced) included. The others are listed as not counted. "
        "Witnesses of one independence group (as that node sees them: the orgs one org vouched into being) count "
        "once for --min-witnesses, as an org can vouch for keys it made up.",
        examples=["vouchnet log verify", "vouchnet log verify --min-witnesses 1",
                  "vouchnet log verify --api http://127.0.0.1:8700 --cache ./node-a.checkpoint --known-by ./bob"],
        run=_verify,
    )
    verify.add_argument("--did", type=org_did_argument, help="the org did whose key must sign the checkpoint (default: "
                        "the did the node reports; pin it to check a node that might lie about its identity)")
    verify.add_argument("--cache", type=Path, metavar="FILE", help="where the last accepted checkpoint is kept "
                        f"(default: {CACHE_FILE} in the data directory, written there only as `vouchnet run` would "
                        "write: by the directory's owner, in a directory others may not write; none with --api)")
    known = verify.add_mutually_exclusive_group()
    known.add_argument("--witness", type=org_did_argument, action="append", metavar="DID",
                       help="an org whose cosignature counts as a known witness's (repeat it; default: the orgs the "
                       "node of --known-by or --dir gives a witness's weight; with --api alone, none)")
    known.add_argument("--known-by", type=Path, metavar="DIR", help="the data directory of the node (running) whose "
                       "view decides the known witnesses: the orgs it gives a witness's weight (default: --dir's)")
    verify.add_argument("--min-witnesses", type=positive_int, default=0, metavar="N", help="exit 1 (after the "
                        "report) unless known witnesses of at least N independence groups cosigned the checkpoint "
                        "(each --witness org its own)")
    verify.add_argument("--json", action="store_true", help="print what was verified as JSON")
    repair = add_local_command(
        commands,
        "repair",
        summary="rebuild the hashes the ledger stores from its entries (stop the node first)",
        description=f"Recompute every hash the node's {LEDGER_FILE} stores (from which it builds its proofs) from "
        "its entries, as log verify --dir compares them, and replace those that differ, in one transaction: "
        "nothing changes unless all are replaced, whatever stops it. Only once the entries are shown sound: those "
        f"the node's latest published checkpoint ({CHECKPOINT_FILE} in the data directory) covers must hash to its "
        "root, and those after it (all, if it saved none) must be validly signed records; otherwise an entry is "
        "damaged, nothing is repaired, and a copy of the data directory is the way back (exit 1). Run it with the "
        "node stopped (it takes the data directory's lock, as the node does); progress on stderr. Prints the wrong "
        "hashes it replaced, or that there was nothing to repair.",
        examples=["vouchnet log repair --dir /srv/vouchnet", "vouchnet log repair"],
        run=_repair,
    )
    add_dir_option(repair)


def _checkpoint(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        note = client.checkpoint()
    if note is None:
        raise CommandFailed("the node has not signed a checkpoint of its ledger yet")
    sys.stdout.flush()
    sys.stdout.buffer.write(note)  # the signed bytes as they are, whatever the terminal's encoding
    sys.stdout.buffer.flush()
    return 0


def _verify(args: argparse.Namespace) -> int:
    data_dir = data_dir_of(args)
    cache = args.cache or (data_dir / CACHE_FILE if data_dir is not None else None)
    if data_dir is not None and cache is not None and cache.resolve().parent == data_dir.resolve():
        # it writes there: refused where `vouchnet run` refuses, before the fetch (node.strict_modes)
        local_config(args)
    with open_client(args) as client, _judge(args, client) as judge:
        verified = verify_log(client, did=args.did, cache=cache, progress=StderrProgress(),
                              ledger_file=data_dir / LEDGER_FILE if data_dir is not None else None)
        if args.witness is not None:
            groups, unknown = known_witnesses(verified.cosigners, named_witnesses(frozenset(args.witness)),
                                              verified.log_keys)
        elif judge is not None:
            groups, unknown = known_witnesses(verified.cosigners, weighed_by_node(judge, verified.did),
                                              verified.log_keys)
        else:
            groups, unknown = {}, verified.cosigners
    if args.json:
        print_json({
            "did": verified.did,
            "size": verified.size,
            "root": base64.b64encode(verified.root).decode(),
            "witnesses": [did for dids in groups.values() for did in dids],
            "witness_groups": {group: list(dids) for group, dids in groups.items()},
            "unknown_cosigners": list(unknown),
            "consistent_from": verified.consistent_from,
            "stored_hashes": verified.stored_hashes,
        })
    else:
        _report(verified, cache, groups, unknown, _known_as(args))
    if len(groups) < args.min_witnesses:
        raise CommandFailed(f"the log verifies, but known witnesses of {counted(len(groups), 'independence group')} "
                            f"cosigned its checkpoint, fewer than --min-witnesses {args.min_witnesses}")
    return 0


def _judge(args: argparse.Namespace, client: NodeClient) -> AbstractContextManager[NodeClient | None]:
    """The client of the node whose view decides which cosigners are known witnesses (opened before the log is
    fetched, so that a wrong --known-by fails at once): --known-by's node, else that of --dir, the node checked; with
    --api alone none, as the node checked could vouch for keys it made up."""
    if args.known_by is None:
        return nullcontext(client if args.api is None else None)
    try:
        return open_client(argparse.Namespace(api=None, dir=args.known_by, token_file=None))
    except UsageError as e:
        raise UsageError(f"--known-by: {e}") from None


def _known_as(args: argparse.Namespace) -> str:
    """Whom `log verify` counts as witnesses, as its report says it."""
    if args.witness is not None:
        return "the --witness orgs, each its own group"
    if args.known_by is not None:
        return f"orgs the node of {args.known_by} gives a witness's weight, outside the log's org's group"
    if args.api is None:
        return "orgs this node gives a witness's weight, outside the log's org's group"
    return "none, with --api alone: give --known-by DIR, your node's, or --witness DID"


def _repair(args: argparse.Namespace) -> int:
    config = local_config(args)
    checkpoint, tree = repair_log(config.data_dir, config.network, progress=StderrProgress())
    if checkpoint is None:
        sound = "each a validly signed record (the node saved no checkpoint to check them against)"
    else:
        sound = f"the {counted(checkpoint.size, 'entry', 'entries')} of the node's checkpoint hashing to its root"
    if not tree.mismatches:
        print(f"nothing to repair: the {counted(tree.checked, 'hash', 'hashes')} {LEDGER_FILE} stores match its "
              f"entries, {sound}")
        return 0
    was = "hash was" if tree.mismatches == 1 else "hashes were"
    print(f"{tree.mismatches} stored {was} wrong: {named_wrong(tree)}")
    print(f"replaced with the hashes of the entries, {sound}; start the node and run `vouchnet log verify` to check "
          "its proofs")
    return 0


def _report(verified: Verified, cache: Path | None, groups: dict[str, Dids], unknown: Dids, known_as: str) -> None:
    verb = "verifies and hashes" if verified.size == 1 else "verify and hash"
    print(f"ok: {counted(verified.size, 'record')} {verb} to the root of the checkpoint signed by {verified.did}")
    if verified.stored_hashes is not None:
        hashes = counted(verified.stored_hashes, "hash", "hashes")
        print(f"the {hashes} of their tree that {LEDGER_FILE} stores (proofs are built from them) match them")
    else:
        print("the hashes the node stores (and builds its proofs from) were not checked: give --dir, the node's data "
              "directory, to check them")
    witnesses = sum(len(dids) for dids in groups.values())
    print(f"cosigned by {counted(witnesses, 'known witness', 'known witnesses')} of "
          f"{counted(len(groups), 'independence group')} ({known_as})"
          + "".join(f"\n  {did}" + ("" if did == group else f" (in the group of {group})")
                    for group, dids in groups.items() for did in dids))
    if unknown:
        print(f"not counted: {counted(len(unknown), 'cosignature')} by keys not known as witnesses (anyone can make a "
              "key and cosign)" + "".join(f"\n  {did}" for did in unknown))
    if verified.consistent_from is not None:
        print(f"consistent with the checkpoint of size {verified.consistent_from} verified before")
    elif cache is not None:
        print(f"no checkpoint was verified before; {cache} now holds this one")
    else:
        print("no earlier checkpoint to check consistency with (give --cache FILE to keep one)")
