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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from gossip.store import CommittedIndex, RecordStore
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
    directory's snapshot (`read`, `check`, `install`): how many records it covers. Unusable, leaving the engine
    unusable too, if the snapshot cannot stand in for their replay."""
    snapshot = read(data_dir)
    check(snapshot, store, identity=identity, own_keys=own_keys)
    install(snapshot, engine, counted_digests(snapshot, store, own_keys=own_keys))
    return snapshot.size


@dataclass(frozen=True)
class CountedDigests:
    """The ids of the digests a snapshot counted: those of the store's committed index, to read a page at a time
    where they are counted (a list of them all held ~390 bytes a digest, 390 MB at 10^6), and those of the records
    after its `end`."""

    index: CommittedIndex
    before: int
    excluding: tuple[str, ...]
    tail: list[bytes]

    def ids(self) -> Iterator[bytes]:
        yield from self.index.ids_of("digest", before=self.before, excluding=self.excluding)
        yield from self.tail


def counted_digests(snapshot: Snapshot, store: RecordStore, *, own_keys: Iterable[str]) -> CountedDigests:
    """The digests `snapshot` counted (not this node's own), for `install`; on the store's thread, which reads those
    of records its index has not committed yet (usually none: a store commits it at open)."""
    index, own = store.committed(), tuple(own_keys)
    tail = store.ids_of("digest", start=min(index.end, snapshot.size), before=snapshot.size, excluding=own)
    return CountedDigests(index, snapshot.size, own, tail)


def install(snapshot: Snapshot, engine: TrustEngine, digests: CountedDigests) -> None:
    """`restore` the snapshot's state into `engine` with the `digests` it counted (`counted_digests`, whose index
    this closes), once `check` found it usable; Unusable (the engine unusable too) if the state is not one this
    engine can take. Touches nothing but the engine and the index: a worker thread may run it."""
    try:
        restore(snapshot.state, engine, digests.ids())
    except StateMismatch as error:
        raise Unusable(str(error)) from None
    except (KeyError, TypeError, ValueError):  # (a state missing a part, or a part of another shape)
        raise Unusable("it is damaged (its state lacks a part this version needs)") from None
    finally:
        digests.index.close()


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
