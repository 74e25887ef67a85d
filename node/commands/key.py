"""`vouchnet key rotate`: replace the org key of a stopped node (node.rotation); `key adopt` and `key contest`: decide
a rotation of it that came back from peers as the node started (node.taken_back_rotation)."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gossip.store import StoreError
from ledger import LedgerError
from node.cli_commands import summary_of
from node.config import NodeConfig
from node.data_lock import DataDirBusy, locked_data_dir
from node.keys import KeyFileError
from node.rotation import retired_to, rotate_key
from node.store_manifest import StoreLost
from node.taken_back_rotation import TakenBackError, adopt, contest
from vouching import OrgBody, public_key_from_did

from .common import (
    CommandFailed,
    Subparsers,
    UsageError,
    add_command_group,
    add_dir_option,
    add_local_command,
    local_config,
    print_json,
)
from .node_code import run_node_code


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(subparsers, "key", summary=summary_of("key"), description="The org's Ed25519 key.",
                                 examples=["vouchnet key rotate --dir ./alice",
                                           "vouchnet key adopt --dir ./alice /media/newer-copy/org.key"])
    rotate = add_local_command(
        commands,
        "rotate",
        run=_rotate,
        summary="replace the org key (stop the node first)",
        description="Replace the org's key with a new one (on a schedule, or when it may soon be exposed). The old key "
        "signs an org record naming the new key, the new key signs its first record naming the old one, and the new "
        "key replaces org.key (the old key is destroyed). Every node that holds both records counts the two keys as "
        "one org: its vouches, evidence and reputation carry over (the old key's vouches export as credentials, and "
        "are revoked, with the new key), and agent credentials minted under the old key stay valid until they expire "
        "(the JWKS serves the old key while they live, and a day at least). The node's did and peer id change: start "
        "it again to announce them (the node dials its bootstrap peers and the orgs whose org records it holds, and a "
        "peer that has heard of the rotation dials the new peer id wherever it dialled the old one, bootstrap "
        "addresses included; a peer the node dials by neither, that knows it only as a bootstrap address, needs the "
        "new address, or to be one of the node's bootstrap peers). Run it with the node stopped; if it is interrupted, "
        "run it again (or, once it has signed, start the node) to finish (meanwhile `agent new` and `audit export` "
        "refuse to sign with the retired key); a Ctrl-C says whether it had signed. The new key is written to "
        "org.key.next first; a key already there must be a new one (not org.key itself, nor a key that signed "
        "records), or the command refuses it before signing anything. First it catches up, as the node does when it "
        "starts: it opens the node (on its [p2p] listen addresses, signing nothing; opening it replays its trust "
        "engine, from engine.snapshot or else from every record, as a start does) and waits up to [p2p] "
        "startup_sync_seconds for one catch-up sync to complete with a peer it dials that holds the org's records (a "
        "node stores only the records of orgs inside its horizon: a peer whose org vouches for this one does; "
        "another's answer proves nothing; for a new org, whose data directory holds none of its records, any peer it "
        "dials that holds none), saying so on stderr as each step begins, so that a data directory restored from an "
        "older copy takes back the records the org signed since and the rotation is signed after them (signed at a seq "
        "the org already used, it would get the org flagged as an equivocator everywhere). With no peer to dial (no "
        "bootstrap peers, no other org's address in its records) it rotates without; if none completes the sync in "
        "time it refuses, signing nothing, and says why: start the node once so that it catches up, stop it and run "
        "this again (with a peer that holds the org's records), or pass --without-catch-up if this data directory is "
        "current. A rotation of the key that comes back from peers stops it as it stops a start (see `key adopt`); a "
        "rotation interrupted after its record was signed is finished without a catch-up. A key that has already "
        "leaked is another matter: its holder can sign a rotation of its own, the conflict gets the org flagged as an "
        "equivocator everywhere, and the org then needs new vouches under a new key. Prints the old and the new did "
        "and the new peer id as JSON.",
        examples=["vouchnet key rotate --dir ./alice",
                  "vouchnet key rotate --dir ./alice --without-catch-up   # its data directory known to be current"],
    )
    add_dir_option(rotate)
    rotate.add_argument("--without-catch-up", action="store_true",
                        help="rotate at once, without the catch-up sync with a peer: only for a data directory known "
                        "to hold everything the org signed (not one restored from an older copy)")
    adopting = add_local_command(
        commands,
        "adopt",
        run=_adopt,
        summary="take the org's own rotation that came back as the node started",
        description="A node whose data directory was restored from a copy older than its org's last key rotation "
        "meets that rotation, signed by the key it holds, as it starts: it stops, naming the new key, and keeps the "
        "rotation in rotation.taken-back. If the org made it, run this with the stopped node's directory and FILE, "
        "the new key's org.key from the newer copy: FILE must hold exactly the key the rotation names and be "
        "readable by its owner alone (mode 0600). It replaces org.key (the retired key is destroyed), and the node "
        "then starts as the new key, taking back what that key signed from its peers. If a thief made the "
        "rotation, run `vouchnet key contest` instead. If it is interrupted, run it again to finish. Prints the new "
        "did as JSON.",
        examples=["vouchnet key adopt --dir ./alice /media/newer-copy/org.key"],
    )
    add_dir_option(adopting)
    adopting.add_argument("file", type=Path, metavar="FILE", help="the org.key of the key the rotation names")
    contesting = add_local_command(
        commands,
        "contest",
        run=_contest,
        summary="contest a thief's rotation that came back as the node started",
        description="A node that meets, as it starts, a rotation signed by the key it holds that its org did not "
        "make (a thief rotated a stolen copy of the key while the node was stopped) stops, naming the thief's key, "
        "and keeps the rotation in rotation.taken-back. Run this with the node stopped: the org key signs its own "
        "record at the rotation's seq (its last org record again), which the node's peers fetch when it starts, "
        "as a node running when a thief's rotation arrives does at once. Every node then flags the org, and the "
        "thief's key with it, as an equivocator: the thief's key never becomes the org, and the org must be set up "
        "again under a new key (vouchnet init). If the org made the rotation, run `vouchnet key adopt` instead. If "
        "it is interrupted, run it again to finish; it refuses a rotation an interrupted `key adopt` stored (run "
        "that again instead). Prints the org, the contested key and the rotation's seq as JSON.",
        examples=["vouchnet key contest --dir ./alice"],
    )
    add_dir_option(contesting)


def _rotate(args: argparse.Namespace) -> int:
    config = local_config(args)
    with _refused():  # at once while the node runs (it said it was catching up, then that the directory was in use)
        with locked_data_dir(config.data_dir):  # (taken again to rotate: a node started meanwhile refuses it)
            pass
        finishing = retired_to(config) is not None  # signed already: finishing signs nothing at a seq of the old key
    before = ("interrupted before it finished the rotation an earlier run signed: run it again (or start the node) "
              "to finish it" if finishing else "interrupted before signing: nothing was signed, and org.key holds the "
              "org's key still; run it again to rotate")
    with _said_if_interrupted(f"{args.command_name}: {before}"):
        if not (finishing or args.without_catch_up):
            _catch_up(config)
        # here, not above (py-libp2p's import would add 1 s to every command), and before signing: a Ctrl-C while it
        # loads leaves nothing signed
        from gossip.host import peer_id_from_public_key
    with _said_if_interrupted(f"{args.command_name}: interrupted while rotating: run it again, which finishes what "
                              "this run began"), _refused():
        rotation = rotate_key(config)
    print_json({"old": rotation.old, "new": rotation.new,
                "peer_id": peer_id_from_public_key(public_key_from_did(rotation.new))})
    print(f"rotated: start the node to sign with {rotation.new}", file=sys.stderr)
    return 0


def _catch_up(config: NodeConfig) -> None:
    """Before a rotation is signed, the catch-up sync a start runs (node.daemon.catch_up_stopped). Raises
    CommandFailed if no peer completed it in time, or as a start fails (a rotation of the key taken back, say)."""
    from node.daemon import HOLDER_HINT, catch_up_stopped  # here: py-libp2p's import would add 1 s to every command
    from node.logs import configure_logging

    seconds = config.startup_sync_seconds
    print("catching up first: opening the node as a start does, signing nothing (its trust engine is replayed, from "
          "engine.snapshot, or else from every record: 30 s or more at 10^6 records)", file=sys.stderr)

    def opened(node: Any) -> None:  # (a node.daemon.Node)
        if node.peer_manager.has_peers:  # (else nothing to wait for: "no peers" follows)
            print(f"opened: taking back from a peer anything the org signed that this data directory lacks (up to "
                  f"{seconds:g} s, [p2p] startup_sync_seconds)", file=sys.stderr)

    def setup() -> None:  # the node's warnings (a restored copy's records coming back, say) as `vouchnet run` logs them
        configure_logging(logging.WARNING)

    caught_up = run_node_code(config, functools.partial(catch_up_stopped, opened=opened), setup=setup)
    if caught_up.signs_unchecked:
        way = (f"{HOLDER_HINT}" if caught_up.unproven else
               "check [p2p] bootstrap (each peer's address, and that its node runs, on this network), then rotate"
               if caught_up.state == "unreachable" else
               f"start the node once (`vouchnet run --dir {config.data_dir}`) so that it catches up, stop it and "
               "rotate")
        raise CommandFailed(
            f"{caught_up.why(seconds)}, so nothing was signed: if this data directory was restored from an older "
            "copy, a rotation signed now could take a seq the org has used already, and get it flagged as an "
            f"equivocator everywhere. {way[0].upper()}{way[1:]}; or, if this data directory holds everything the org "
            "signed, run this again with --without-catch-up")
    if caught_up.state == "no_peers":
        print("no peers to catch up with (no bootstrap peers, no other org's address in its records): rotating "
              "without a catch-up", file=sys.stderr)
    else:
        print("caught up with a peer: rotating", file=sys.stderr)


def _adopt(args: argparse.Namespace) -> int:
    config = local_config(args)
    with _refused():
        did = adopt(config, args.file)
    print_json({"did": did})
    print(f"adopted: start the node to sign with {did}", file=sys.stderr)
    return 0


def _contest(args: argparse.Namespace) -> int:
    config = local_config(args)
    with _refused():
        rotation = contest(config)
    assert isinstance(rotation.body, OrgBody)
    print_json({"org": rotation.iss, "contested": rotation.body.next, "seq": rotation.seq})
    print("contested: start the node to publish it; then set the org up again under a new key", file=sys.stderr)
    return 0


@contextmanager
def _said_if_interrupted(message: str) -> Iterator[None]:
    """Ctrl-C in the block: `message`, the state it leaves the data directory in and what to do, on stderr; then the
    exit 130 a shell expects (node.cli.main)."""
    try:
        yield
    except KeyboardInterrupt:
        print(message, file=sys.stderr)
        raise


@contextmanager
def _refused() -> Iterator[None]:
    """What the block raises for a key, data directory or store that the key commands cannot use, as their refusal:
    a key or directory `vouchnet run` would refuse (KeyFileError) as UsageError; a node running on it, a rotation
    taken back, a store lost, or a records ledger that cannot be read (damaged: LedgerError, StoreError) as
    CommandFailed naming the file."""
    try:
        yield
    except KeyFileError as error:
        raise UsageError(str(error)) from None
    except (DataDirBusy, StoreLost, TakenBackError) as error:
        raise CommandFailed(str(error)) from None
    except (LedgerError, StoreError) as error:
        raise CommandFailed(f"records: {error}") from None
