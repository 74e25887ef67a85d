"""`vouchnet key rotate`: replace this org's key (DESIGN.md §2, vouching.succession) in a stopped node's data
directory. Three durable steps, each safe to crash after, finished by running the command again or by starting the
node: the new key is written to `org.key.next` (mode 0600, whole or not at all; one already there must be a new
key, `_check_fresh`); the old key signs its rotation record naming the new
one and the new key signs its first record naming the old one (one commit each); `org.key.next` replaces `org.key`,
which destroys the old key: a retired key can only do harm (a second record at its last seq would get the org
flagged as an equivocator everywhere)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from gossip.replica import Replica
from gossip.store import INDEX_FILE, LEDGER_FILE, RecordReader, RecordStore, StoreError
from ledger.files import sync_directory
from vouching import did_key, org_body
from vouching.succession import Succession

from .config import NodeConfig
from .data_lock import DataDirBusy, locked_data_dir, replacing_key
from .keys import KeyFileError, create_org_key, load_org_key, load_signing_key
from .store_manifest import check_listed
from .taken_back_rotation import TakenBackError, kept, refusal

NEXT_KEY_FILE = "org.key.next"


@dataclass(frozen=True)
class Rotation:
    """A finished rotation: the org's keys before and after."""

    old: str
    new: str


def rotate_key(config: NodeConfig) -> Rotation:
    """Rotate the org key of `config`'s data directory (the node must be stopped); raises DataDirBusy or
    KeyFileError, StoreLost for a records ledger the data directory made and lost (whose records a new one would sign
    again), or TakenBackError while a rotation of the key that came back from peers is kept (node.taken_back_rotation:
    a rotation signed now would take its seq). A rotation left half done by a crash is finished, not started again.
    It signs at the head of the key's chain that the data directory holds: `vouchnet key rotate` runs the node's
    catch-up sync first (node.daemon.catch_up_stopped), for a directory restored from an older copy."""
    with locked_data_dir(config.data_dir), replacing_key(config.data_dir):
        check_listed(config.data_dir, [LEDGER_FILE])
        key = load_signing_key(config)
        next_path = _next_key_path(config)
        with RecordStore.open(config.data_dir) as store:
            replica = _replica(config, key, store)
            named = replica.succession.named_next(replica.did)
            if named is None:
                if (taken_back := kept(config, replica.did)) is not None:  # a rotation now would take its seq
                    raise TakenBackError(refusal(config, taken_back))
                successor = (load_org_key(next_path, _UNSIGNED_NEXT_KEY) if next_path.exists()
                             else create_org_key(next_path))
                _check_fresh(next_path, did_key(bytes(successor.verify_key)), replica)
                replica.issue("org", org_body(config.name, config.network, _addrs(store, replica.did),
                                              next=did_key(bytes(successor.verify_key))))
            else:
                successor = _named_key(next_path, named)
            return _finish(config, key, successor, store)


def finish_interrupted_rotation(config: NodeConfig) -> Rotation | None:
    """At the node's start, with the data directory locked: finish a rotation whose record was signed but whose
    key was not yet installed; None if there is none. Raises DataDirBusy if a command is signing with the key, and
    KeyFileError as node.keys.load_signing_key, or for an org.key.next the signed rotation needs that is missing or
    damaged. A new key whose rotation was never signed is left, unread, for the next `vouchnet key rotate` to use (or
    refuse, if damaged)."""
    next_path = _next_key_path(config)
    if not next_path.exists():
        return None
    key = load_signing_key(config)
    with RecordStore.open(config.data_dir) as store:
        last = store.latest_org(did_key(bytes(key.verify_key)))
        if last is None or last.next is None:  # (no rotation signed: the new key is not read)
            return None
        successor = load_org_key(next_path, _signed_next_key(last.next))
        if last.next != did_key(bytes(successor.verify_key)):
            return None
        with replacing_key(config.data_dir):  # not while a command signs with the retired key
            return _finish(config, key, successor, store)


def retired_to(config: NodeConfig) -> str | None:
    """The successor `org.key`'s rotation record names, if the key signed one (a `vouchnet key rotate` interrupted
    before it installed the new key): the key signs nothing more, credentials and checkpoints included. None while a
    node runs in the data directory, which finished any such rotation as it started (its records are not opened).
    The records are read through gossip.store.RecordReader, which writes nothing: a data directory a crash left is
    left as it is for the node's start to recover (RecordStore.open would replay the index and checkpoint the WALs).
    StoreLost for a records ledger the data directory made and lost (StoreError if only its index is left); None if
    it never made one."""
    try:
        with locked_data_dir(config.data_dir):
            check_listed(config.data_dir, [LEDGER_FILE])
            did = did_key(bytes(load_signing_key(config).verify_key))
            try:
                records = RecordReader.open(config.data_dir)
            except FileNotFoundError:
                if (config.data_dir / INDEX_FILE).exists():  # (a store makes its ledger first: this one was lost)
                    raise StoreError(f"{INDEX_FILE}: indexes records but {LEDGER_FILE} holds 0: it is missing; "
                                     "restore it (and its -wal file) from a backup") from None
                return None  # no records ledger: the key signed nothing
            with records:
                named = [record.body.next for record in records.scan(issuer=did, kind="org")]
    except DataDirBusy:
        return None
    return named[-1] if named else None  # (oldest first: a rotation record ends its key's chain)


def unpublished_link(store: RecordStore, succession: Succession, did: str) -> list[bytes]:
    """The two records that link key `did` to its org (DESIGN.md §2), for its node to publish as it starts, if `did`
    has signed nothing since its first record: `vouchnet key rotate` signed both while the node was stopped, so no
    peer has them, and a peer that the node does not connect to would otherwise wait for anti-entropy (a checkpoint
    of a peer that fetched them, then a periodic sync round) to link the keys. The earlier key's rotation naming
    `did` and `did`'s first record; none if `did` has no earlier key or has signed more since."""
    head, earlier = store.head(did), succession.earlier(did)
    if head is None or head.seq != 1 or not earlier:
        return []
    prior = store.head(earlier[0])
    assert prior is not None  # (linked: the prior's rotation naming `did` is stored)
    return [raw for raw in (store.at(earlier[0], prior.seq), store.at(did, 1)) if raw is not None]


def _finish(config: NodeConfig, key: SigningKey, successor: SigningKey, store: RecordStore) -> Rotation:
    """The new key's first record, if not yet signed, then the new key installed in place of the old."""
    old, new = did_key(bytes(key.verify_key)), did_key(bytes(successor.verify_key))
    if store.head(new) is None:
        replica = _replica(config, successor, store)
        replica.issue("org", org_body(config.name, config.network, _addrs(store, old), prior=old))
    _install(_next_key_path(config), config.key_path)
    return Rotation(old, new)


def _replica(config: NodeConfig, key: SigningKey, store: RecordStore) -> Replica:
    return Replica(key, store, roots=config.roots, max_hops=config.max_hops, held_limit=config.limits.held_records)


def _addrs(store: RecordStore, did: str) -> list[str]:
    """Where the org's last org record said it listens (the node announces anew when it starts)."""
    body = store.latest_org(did)
    return list(body.addrs) if body is not None else []


def _check_fresh(next_path: Path, successor: str, replica: Replica) -> None:
    """Refuse a successor that is not a fresh key (raises KeyFileError): the org key itself, or a key that signed
    records here (an earlier key of the org, restored from a backup, say). Named, it would retire the org key for
    a key whose first record, signed already, names no prior: the keys would never link, and the org would have no
    key left that may sign."""
    if successor == replica.did or replica.store.head(successor) is not None:
        what = "the org key itself" if successor == replica.did else "a key that has signed records already"
        raise KeyFileError(f"{next_path}: holds {successor}, {what}; a rotation needs a new key: remove the file and "
                           "run again (a new key is made)")


def _named_key(next_path: Path, named: str) -> SigningKey:
    """The successor key the rotation record names, from `org.key.next`; raises KeyFileError."""
    way_forward = _signed_next_key(named)
    if next_path.exists() and did_key(bytes((successor := load_org_key(next_path, way_forward)).verify_key)) == named:
        return successor
    raise KeyFileError(f"{next_path}: does not hold the key {named} this org's rotation record names, so the "
                       f"rotation cannot finish (this data directory's key signs nothing more); {way_forward}")


# What to do when org.key.next is missing or damaged: before its rotation was signed, it is any new key; after, the one
# key the rotation names, the org's only key that may sign
_UNSIGNED_NEXT_KEY = ("it is the new key an interrupted `vouchnet key rotate` made before signing anything (org.key "
                      "is unchanged): remove it and run `vouchnet key rotate` again, which makes another")


def _signed_next_key(named: str) -> str:
    return (f"restore org.key.next, holding {named}, from a backup taken since the rotation was signed (then start "
            "the node, or run `vouchnet key rotate` again, to finish it); without that key the org can sign nothing "
            "more, and must be set up again under a new key (`vouchnet init` in a new directory)")


def _install(next_path: Path, key_path: Path) -> None:
    """Make the new key the org key, durably: one rename, then the directory synced."""
    os.replace(next_path, key_path)
    sync_directory(key_path.parent)


def _next_key_path(config: NodeConfig) -> Path:
    return config.key_path.with_name(NEXT_KEY_FILE)
