"""engine.snapshot: the trust engine as a replay of the records ledger's first `size` records left it
(vouching.engine_state), so that a start replays only the records after them, as a database replays only its log's
tail after a checkpoint. A cache: any snapshot a start cannot use (missing, damaged, of another format, of another
ledger, parameters, roots or org keys) means a full replay, never a refused start.

The file is MAGIC, then one CBOR array: a header (format, size, the ledger's RFC 9162 root at size, this node's org
keys, SHA-256 of the state) and the state's CBOR bytes. No pickle: a data directory file executes no code.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from gossip.store import RecordStore
from ledger.files import replace_file
from vouching.engine_state import StateMismatch, restore
from vouching.scoring import TrustEngine

log = logging.getLogger(__name__)
SNAPSHOT_FILE = "engine.snapshot"
MAGIC = b"vouchnet engine snapshot\n"
FORMAT = 1  # bump with any change of what vouching.engine_state captures or of this file's layout


@dataclass(frozen=True)
class Snapshot:
    """A captured engine state (vouching.engine_state.capture) of the ledger's first `size` records."""

    size: int
    root: bytes
    own_keys: tuple[str, ...]
    state: dict[str, Any]


class Unusable(Exception):
    """Why a snapshot cannot stand in for the replay of its records; the message says so."""


def write(data_dir: Path, snapshot: Snapshot) -> None:
    """Write engine.snapshot whole and durably (ledger.files.replace_file): a crash leaves the one there was."""
    state = cbor2.dumps(snapshot.state)
    header = {"format": FORMAT, "size": snapshot.size, "root": snapshot.root, "own_keys": list(snapshot.own_keys),
              "sha256": hashlib.sha256(state).digest()}
    replace_file(data_dir / SNAPSHOT_FILE, MAGIC + cbor2.dumps([header, state]))


def read(data_dir: Path) -> Snapshot:
    """engine.snapshot as written; Unusable if it is missing, damaged or of another format."""
    try:
        data = (data_dir / SNAPSHOT_FILE).read_bytes()
    except FileNotFoundError:
        raise Unusable("there is none yet") from None
    except OSError as error:
        raise Unusable(f"it cannot be read ({error.strerror or error})") from None
    if not data.startswith(MAGIC):
        raise Unusable("it is not an engine snapshot")
    try:
        header, state = cbor2.loads(data[len(MAGIC):])
        fmt, size, root, own_keys, digest = (header[k] for k in ("format", "size", "root", "own_keys", "sha256"))
    except Exception:  # (cbor2 raises several kinds for bytes cut short or damaged)
        raise Unusable("it is damaged (cut short, or not CBOR of its layout)") from None
    if fmt != FORMAT:
        raise Unusable(f"it is of format {fmt!r}, and this version reads format {FORMAT}")
    if not isinstance(state, bytes) or hashlib.sha256(state).digest() != digest:
        raise Unusable("it is damaged (its state does not match its checksum)")
    try:
        return Snapshot(size, root, tuple(own_keys), cbor2.loads(state))
    except Exception:
        raise Unusable("it is damaged (its state is not CBOR)") from None


def load(data_dir: Path, engine: TrustEngine, store: RecordStore, *, identity: Callable[[str], str],
         own_keys: Iterable[str]) -> int:
    """Make `engine`, fresh from its constructor, what a replay of the first records of `store` makes, from the data
    directory's snapshot (`read`, `counted_digests`, `install`): how many records it covers. Unusable, leaving the
    engine unusable too, if the snapshot cannot stand in for their replay."""
    snapshot = read(data_dir)
    install(snapshot, engine, counted_digests(snapshot, store, identity=identity, own_keys=own_keys))
    return snapshot.size


def counted_digests(snapshot: Snapshot, store: RecordStore, *, identity: Callable[[str], str],
                    own_keys: Iterable[str]) -> list[bytes]:
    """The ids of the digests `snapshot` counted (not this node's own), once `check` found it usable; on the
    store's thread (its index is SQLite)."""
    check(snapshot, store, identity=identity, own_keys=own_keys)
    own = set(own_keys)
    return [rid for rid, iss in store.ids_of("digest", before=snapshot.size) if iss not in own]


def install(snapshot: Snapshot, engine: TrustEngine, digests: Iterable[bytes]) -> None:
    """`restore` the snapshot's state into `engine` with its counted `digests`; Unusable (the engine unusable too)
    if the state is not one this engine can take. Touches nothing but the engine: a worker thread may run it."""
    try:
        restore(snapshot.state, engine, digests)
    except StateMismatch as error:
        raise Unusable(str(error)) from None
    except (KeyError, TypeError, ValueError):  # (a state missing a part, or a part of another shape)
        raise Unusable("it is damaged (its state lacks a part this version needs)") from None


def check(snapshot: Snapshot, store: RecordStore, *, identity: Callable[[str], str], own_keys: Iterable[str]) -> None:
    """Unusable unless `snapshot` is of a prefix of this ledger (its root at the snapshot's size) and counts each of
    its records as a replay now does: this node's org has the same keys, and no rotation since has made a key it
    counts as an org part of another (`identity`, vouching.succession)."""
    if snapshot.size > store.size:
        raise Unusable(f"it covers {snapshot.size} records and the ledger holds {store.size} (a ledger restored "
                       "from an older copy)")
    if store.ledger.root(snapshot.size) != snapshot.root:
        raise Unusable(f"the ledger's first {snapshot.size} records are not those it covers (another ledger)")
    if snapshot.own_keys != tuple(sorted(own_keys)):
        raise Unusable("this node's org has rotated its key since")
    try:
        orgs = snapshot.state["engine"]["_org_index"]
        joined = any(identity(key) != key for key in orgs)
    except (KeyError, TypeError):
        raise Unusable("it is damaged (its state lacks a part this version needs)") from None
    if joined:
        raise Unusable("a rotation since has joined a key it counts as an org to another org")
