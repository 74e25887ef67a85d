"""`vouchnet key rotate`: replace the org key of a stopped node (node.rotation)."""

from __future__ import annotations

import argparse
import sys

from node.data_lock import DataDirBusy
from node.keys import KeyFileError
from node.rotation import rotate_key
from node.store_manifest import StoreLost
from vouching import public_key_from_did

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


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(subparsers, "key", summary="the org key", description="The org's Ed25519 key.",
                                 examples=["vouchnet key rotate --dir ./alice"])
    rotate = add_local_command(
        commands,
        "rotate",
        run=_rotate,
        summary="replace the org key (stop the node first)",
        description="Replace the org's key with a new one (on a schedule, or when it may soon be exposed). The old key "
        "signs an org record naming the new key, the new key signs its first record naming the old one, and the "
        "new key replaces org.key (the old key is destroyed). Every node that holds both records counts the two "
        "keys as one org: its vouches, evidence and reputation carry over (the old key's vouches export as "
        "credentials, and are revoked, with the new key), and agent credentials minted under the old key stay "
        "valid until they expire (the JWKS serves the old key while they live, and a day at least). The node's "
        "did and peer id change: start it again to announce them (the node dials its bootstrap peers and the orgs whose org records it holds, and a peer "
        "that has heard of the rotation dials the new peer id wherever it dialled the old one, bootstrap addresses "
        "included; a peer the node dials by neither, that knows it only as a bootstrap address, needs the new "
        "address, or to be one of the node's bootstrap peers). Run it with the "
        "node stopped; if it is interrupted, run it again (or start the node) to finish (meanwhile `agent new` and "
        "`audit export` refuse to sign with the retired key). The new key is written to org.key.next first; a "
        "key already there must be a new one (not org.key itself, nor a key that signed records), or the command "
        "refuses it before signing anything. A key that has already "
        "leaked is another matter: its holder can sign a rotation of its own, the conflict gets the org flagged "
        "as an equivocator everywhere, and the org then needs new vouches under a new key. Prints the old and the new "
        "did and the new peer id as JSON.",
        examples=["vouchnet key rotate --dir ./alice"],
    )
    add_dir_option(rotate)


def _rotate(args: argparse.Namespace) -> int:
    config = local_config(args)
    try:
        rotation = rotate_key(config)
    except KeyFileError as error:
        raise UsageError(str(error)) from None
    except (DataDirBusy, StoreLost) as error:
        raise CommandFailed(str(error)) from None
    from gossip.host import peer_id_from_public_key  # here: py-libp2p's import would add 1 s to every command

    print_json({"old": rotation.old, "new": rotation.new,
                "peer_id": peer_id_from_public_key(public_key_from_did(rotation.new))})
    print(f"rotated: start the node to sign with {rotation.new}", file=sys.stderr)
    return 0
