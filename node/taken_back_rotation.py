"""A rotation of the org key that came back from peers as the node started (gossip.replica.RotationTakenBack): the
org's own, made before its data directory was restored from an older copy, or a thief's, signed with a stolen copy
of the key while the node was stopped. The two look the same, so the node decides neither, as ssh refuses a changed
host key: the start stops, keeping the rotation record in `rotation.taken-back` (nothing is signed, published or
changed), and refuses again while the file is there, until its operator runs one of two commands:

- `vouchnet key adopt FILE`: the rotation was the org's; FILE is the successor's org.key, from the newer copy of the
  data directory. It must hold exactly the key the rotation names (mode 0600); it replaces org.key durably, and the
  node starts as the successor, taking back its records from peers.
- `vouchnet key contest`: the rotation was a thief's; the org key signs its own record at the rotation's seq (its
  last org record again, gossip.replica.Replica.contest), which the node's peers fetch at its next start: the org,
  and the thief's key linked to it, are flagged as equivocators everywhere, as when a node meets a thief's rotation
  while it runs.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from nacl.signing import SigningKey

from gossip.own_records import OWN_RECORDS_FILE, OwnRecords
from gossip.replica import Replica
from gossip.store import LEDGER_FILE, RecordStore
from ledger.files import create_file, replace_file, sync_directory
from vouching import InvalidRecord, OrgBody, Record, did_key, verify_record

from .audit_log import wall_clock_ms
from .config import NodeConfig
from .data_lock import locked_data_dir, replacing_key
from .keys import KeyFileError, load_org_key, load_signing_key
from .record_time import record_time
from .store_manifest import check_listed

TAKEN_BACK_FILE = "rotation.taken-back"


class TakenBackError(Exception):
    """`rotation.taken-back` is missing, unreadable, or not a rotation of this data directory's org key."""


def keep(data_dir: Path, rotation: Record) -> None:
    """Keep the rotation record for the operator's decision (mode 0600, whole or not at all); one kept already stays."""
    try:
        create_file(data_dir / TAKEN_BACK_FILE, rotation.raw)
    except FileExistsError:
        pass


def kept(config: NodeConfig, org: str) -> Record | None:
    """The rotation of `org` (the org key's did) kept in the data directory, if any; raises TakenBackError. One
    naming `org` as its successor was adopted (`adopt` stopped after installing the key): its file is removed."""
    path = config.data_dir / TAKEN_BACK_FILE
    try:
        rotation = verify_record(path.read_bytes())
    except FileNotFoundError:
        return None
    except InvalidRecord as error:
        raise TakenBackError(f"{path}: not a record ({error}); restore it, or remove it and start the node again, "
                             "which takes the rotation back from peers again") from None
    if isinstance(rotation.body, OrgBody) and rotation.body.next == org:
        _remove(config)
        return None
    if rotation.iss != org or not isinstance(rotation.body, OrgBody) or rotation.body.next is None:
        raise TakenBackError(f"{path}: not a rotation of the org key {org}; remove it")
    return rotation


def refusal(config: NodeConfig, rotation: Record) -> str:
    """What the start says: the rotation, and the operator's two ways on."""
    assert isinstance(rotation.body, OrgBody)
    directory = config.data_dir
    return (f"key: the org key {rotation.iss} signed a rotation to {rotation.body.next} on "
            f"{record_time(rotation.ts)} (seq {rotation.seq}), which came back from peers as the node started: either "
            "the org made it before this data directory was restored from an older copy, or a thief holding a copy of "
            "the key made it while the node was stopped. Nothing was signed (it is kept in "
            f"{directory / TAKEN_BACK_FILE}). If the org made it: `vouchnet key adopt --dir {directory} FILE`, FILE "
            f"being the org.key of {rotation.body.next} from the newer copy. If not: `vouchnet key contest --dir "
            f"{directory}`, which gets the org and that key flagged as equivocators everywhere (set the org up again "
            "under a new key)")


def adopt(config: NodeConfig, key_file: Path) -> str:
    """`vouchnet key adopt`: if `key_file` holds the successor the kept rotation names, store the rotation (so that
    the successor's records, which peers give back, link to the org at once) and name the successor in the list of
    the org's records from peers (so that those records are expected until a start's catch-up sync ends,
    gossip.own_records), then make it the org key; the new did. Raises KeyFileError for a file that is not that key
    (or is readable by others) or an org key `vouchnet run` would refuse (node.keys.load_signing_key),
    TakenBackError, DataDirBusy, StoreLost, StoreError (a store that cannot be opened or written). Interrupted, it is
    finished by running it again: the kept file goes last."""
    with locked_data_dir(config.data_dir), replacing_key(config.data_dir):
        check_listed(config.data_dir, [LEDGER_FILE, OWN_RECORDS_FILE])  # (a lost list not made anew here)
        key = load_signing_key(config)
        org = did_key(bytes(key.verify_key))
        was_kept = (config.data_dir / TAKEN_BACK_FILE).exists()
        if (rotation := kept(config, org)) is None:
            if was_kept:  # an adopt stopped after installing the key, before removing the file: `kept` removed it
                return org
            raise _nothing_kept(config, org)
        assert isinstance(rotation.body, OrgBody)
        successor = load_org_key(key_file, f"give it the org.key of the newer copy of the data directory, the key "
                                           f"{rotation.body.next} the rotation names; org.key is unchanged")
        if (did := did_key(bytes(successor.verify_key))) != rotation.body.next:
            raise KeyFileError(f"{key_file}: holds {did}, not {rotation.body.next}, the key the rotation names; "
                               "org.key is unchanged")
        with RecordStore.open(config.data_dir) as store:
            if not store.has(rotation.id) and not _replica(config, key, store).adopt(rotation):
                raise TakenBackError(f"the rotation (seq {rotation.seq}) does not follow the records of {rotation.iss} "
                                     f"this data directory holds (to seq {_seq(store, rotation.iss)}); restore the "
                                     "newer copy of the data directory instead")
            with closing(OwnRecords.open(config.data_dir, wall_clock_ms, store)) as own_records:
                own_records.adopting(did)  # before the key: its records coming back are expected from the next start
        replace_file(config.key_path, bytes(successor))  # the old key, retired by the rotation, is destroyed
        _remove(config)
        return did


def contest(config: NodeConfig) -> Record:
    """`vouchnet key contest`: the org key's record contradicting the kept rotation, signed and stored (unless one
    stored already does), and the file removed; the rotation. Raises TakenBackError (also for a rotation an
    interrupted `adopt` stored), KeyFileError for an org key `vouchnet run` would refuse (node.keys.load_signing_key),
    DataDirBusy, StoreLost."""
    with locked_data_dir(config.data_dir):
        check_listed(config.data_dir, [LEDGER_FILE])
        key = load_signing_key(config)
        rotation = _kept(config, did_key(bytes(key.verify_key)))
        with RecordStore.open(config.data_dir) as store:
            if store.has(rotation.id):
                raise TakenBackError(f"the rotation (seq {rotation.seq}) is stored already, by a `vouchnet key adopt` "
                                     "that was interrupted: run that again to finish it")
            _replica(config, key, store).contest(rotation)
        _remove(config)
        return rotation


def _replica(config: NodeConfig, key: SigningKey, store: RecordStore) -> Replica:
    return Replica(key, store, roots=config.roots, max_hops=config.max_hops, held_limit=config.limits.held_records)


def _seq(store: RecordStore, did: str) -> int:
    head = store.head(did)
    return 0 if head is None else head.seq


def _kept(config: NodeConfig, org: str) -> Record:
    if (rotation := kept(config, org)) is None:
        raise _nothing_kept(config, org)
    return rotation


def _nothing_kept(config: NodeConfig, org: str) -> TakenBackError:
    return TakenBackError(f"{config.data_dir / TAKEN_BACK_FILE}: missing: no rotation of the org key {org} came back "
                          "from peers as the node started, so there is nothing to decide")


def _remove(config: NodeConfig) -> None:
    (config.data_dir / TAKEN_BACK_FILE).unlink()
    sync_directory(config.data_dir)
