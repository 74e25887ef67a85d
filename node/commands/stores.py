"""`vouchnet stores accept-loss FILE`: a stopped node's data directory stops listing a store it lost, so that the next
start makes a new, empty one (node.store_manifest)."""

from __future__ import annotations

import argparse
import sys

from node.cli_commands import summary_of
from node.data_lock import DataDirBusy, locked_data_dir
from node.store_manifest import MANIFEST_FILE, STORES, NotAStore, StoreLost, unlist

from .common import (CommandFailed, Subparsers, UsageError, add_command_group, add_dir_option, add_local_command,
                     local_config)


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers, "stores", summary=summary_of("stores"),
        description=f"The stores a node's data directory has created, listed in {MANIFEST_FILE}: a start refuses "
        "one that is missing or empty.", examples=["vouchnet stores accept-loss credentials.db --dir ./alice"])
    accept = add_local_command(
        commands,
        "accept-loss",
        run=_accept_loss,
        summary="let the next start make a new, empty store in place of a lost one (stop the node first)",
        description="A store the data directory created is missing or empty, and no backup holds it: take it off "
        f"{MANIFEST_FILE}, so that the next `vouchnet run` makes a new, empty one, and what it held is lost for "
        "good (" + "; ".join(f"{name}: {held}" for name, (_, held) in STORES.items()) + "). Refused while the node "
        "runs, for a store that is there and not empty, and for one that is not listed. Restoring the file from a "
        "backup of this node's data directory loses less: try that first.",
        examples=["vouchnet stores accept-loss credentials.db --dir ./alice"],
    )
    accept.add_argument("file", metavar="FILE", help="the store's file name, as the start's refusal names it")
    add_dir_option(accept)


def _accept_loss(args: argparse.Namespace) -> int:
    config = local_config(args)
    try:
        with locked_data_dir(config.data_dir):
            unlist(config.data_dir, args.file)
    except NotAStore as error:  # (a bad argument: exit 2)
        raise UsageError(str(error)) from None
    except (DataDirBusy, StoreLost) as error:
        raise CommandFailed(str(error)) from None
    print(f"{config.data_dir / args.file}: no longer listed in {MANIFEST_FILE}; the next start makes a new one",
          file=sys.stderr)
    return 0
