"""Signing with the org key in a data directory, as `vouchnet agent new` and `audit export` do: under the lock
that keeps a key rotation out, and refused while one is unfinished (DESIGN §2)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from nacl.signing import SigningKey

from gossip.store import StoreError
from ledger import LedgerError
from node.config import NodeConfig
from node.data_lock import DataDirBusy, signing_with_key
from node.keys import KeyFileError, load_signing_key
from node.rotation import retired_to
from node.store_manifest import StoreLost

from .common import CommandFailed, UsageError, local_config


@contextmanager
def signing_key(args: argparse.Namespace) -> Iterator[tuple[NodeConfig, SigningKey]]:
    """local_config and the org key (node.keys.load_signing_key), for a command that signs with the key: sign within
    the block, which no rotation enters (node.data_lock.signing_with_key). Raises UsageError for a key, or a data
    directory, `vouchnet run` would refuse; CommandFailed if a rotation is replacing the key, or one the key signed
    has not finished (node.rotation.retired_to): what it signed would be of a key its org no longer uses."""
    config = local_config(args)
    with ExitStack() as stack:
        try:
            stack.enter_context(signing_with_key(config.data_dir))
        except DataDirBusy as error:
            raise CommandFailed(str(error)) from None
        try:
            key = load_signing_key(config)  # read under the lock: a rotation may have replaced it until then
        except KeyFileError as error:
            raise UsageError(str(error)) from None
        try:
            successor = retired_to(config)
        except (LedgerError, StoreError) as error:
            raise CommandFailed(f"records: {error}") from None
        except StoreLost as error:
            raise CommandFailed(str(error)) from None
        if successor is not None:
            raise CommandFailed(f"{config.key_path}: this key was retired by a rotation to {successor} that has not "
                                f"finished, and signs nothing more: run `vouchnet key rotate --dir {config.data_dir}` "
                                "again, or start the node, to finish it; then run this again")
        yield config, key
