"""engine.snapshot: the trust engine as a replay of the records ledger's first `size` records left it
(vouching.engine_state), so that a start replays only the records after them, as a database replays only its log's
tail after a checkpoint. A cache: any snapshot a start cannot use (missing, damaged, of another format, of another
ledger, parameters, roots or org keys) means a full replay, never a refused start. Roots are compared as the orgs
they name (vouching.engine_state.restore): a rotated org configured as a root by its earlier or its later key is one
root, and keeps the snapshot, as roots listed in another order do (the engine numbers the orgs they name in did
order, each by its first key); a root added, removed or replaced does not.

The file is MAGIC; the length of the header (4 bytes, big-endian); the header, a CBOR map (format, size, the
ledger's RFC 9162 root at size, this node's org keys, the length of the state, the lengths of its chunks, each
column's typecode, item size, byte order and length, and SHA-256 of the rest of the header's CBOR, the state, the
chunks and the columns); the state's CBOR, each of its columns (array.array) a tag COLUMN_TAG of the column's number
and each of its lists of more than CHUNK_ROWS items (agents, vouches, ...) a tag ROWS_TAG of how many chunks hold
them; the chunks' CBOR, each an array of CHUNK_ROWS items of a list or fewer (read back as tuples: `_row`), in the
order of the lists' tags; and the columns' bytes, one after the other. A column is written from its array and read
straight back into one, and every length is checked against the file's before anything is allocated: a start from it
holds the engine and the state's other parts, not the file's bytes and their decoding besides (format 1, a CBOR array
of header and state, held 3.3 times the file at its peak). The state is encoded and decoded a chunk at a time
(`encoding`, `decoding`), so that a running node does it on its loop between its other work: format 2's state, one
CBOR item decoded and encoded in a worker thread, stalled the loop 0.5-2.4 s under a flood at 1.2-2.2*10^5 agents
(benchmarks/snapshot_forward.py). No pickle: a data directory file executes no code.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import sys
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import cbor2

from gossip.store import CommittedIndex, RecordStore
from ledger.files import Buffer, replace_file
from vouching.engine_state import StateMismatch, drained, restoring as restoring_state
from vouching.scoring import TrustEngine

log = logging.getLogger(__name__)
SNAPSHOT_FILE = "engine.snapshot"
MAGIC = b"vouchnet engine snapshot\n"
FORMAT = 9  # bump with any change of what vouching.engine_state captures or of this file's layout
COLUMN_TAG = 0x766E636F  # "vnco": a column of the state, by its number (an unassigned CBOR tag)
ROWS_TAG = 0x766E726F  # "vnro": a list of the state, by how many of the chunks after the state hold its items
# Items of a list a chunk holds: rows of agents, vouches or latest vouches (vouching.engine_state), 1-5 ms of cbor2
# each way at 10^5 agents, against 0.3-1.6 s for the whole state in one call. Format 3's: `decoding` refuses a chunk
# of more as damaged, so that a lower one would make every file written before unusable (a bump of FORMAT, then).
CHUNK_ROWS = 1_000
MAX_HEADER = 1 << 20  # bytes; a header names a few keys and a column for each of ~40 engine columns
TYPECODES = "bBhHiIlLqQfd"  # the numeric array typecodes a column may have
FORMAT_1 = b"\x82"  # what followed MAGIC in format 1 (a CBOR array of header and state), never a header's length


@dataclass(frozen=True)
class Snapshot:
    """A captured engine state (vouching.engine_state.capture) of the ledger's first `size` records."""

    size: int
    root: bytes
    own_keys: tuple[str, ...]
    state: dict[str, Any]


class Unusable(Exception):
    """Why a snapshot cannot stand in for the replay of its records; the message says so."""


class Missing(Unusable):
    """There is no engine.snapshot: none written yet (node.trust writes one from SNAPSHOT_AFTER records), or deleted."""


def write(data_dir: Path, snapshot: Snapshot) -> None:
    """Write engine.snapshot whole and durably (`encoding` at once, then `write_parts`)."""
    write_parts(data_dir, drained(encoding(snapshot)))


def write_parts(data_dir: Path, parts: Parts) -> None:
    """Write the `parts` encoded (`encoding`) as engine.snapshot, with its header and checksum, whole and durably
    (ledger.files.replace_file): a crash leaves the one there was. The checksum of the columns and the file's I/O: a
    worker thread's (SHA-256 of 29 MiB of columns at 10^6 records held the loop 38 ms, benchmarks/startup.py)."""
    header = {"format": FORMAT, "size": parts.size, "root": parts.root, "own_keys": list(parts.own_keys),
              "state": len(parts.state), "chunks": [len(chunk) for chunk in parts.chunks],
              "columns": [[c.typecode, c.itemsize, sys.byteorder, len(c)] for c in parts.columns]}
    body = [parts.state, *parts.chunks, *parts.columns]
    encoded = cbor2.dumps({**header, "sha256": checksum(header, body)})
    replace_file(data_dir / SNAPSHOT_FILE, [MAGIC, len(encoded).to_bytes(4, "big"), encoded, *body])


def encoding(snapshot: Snapshot) -> Generator[None, None, Parts]:
    """The parts of the file for `snapshot` (`write_parts`), yielding after each chunk's encoding: its state's lists of
    more than CHUNK_ROWS items are encoded CHUNK_ROWS items at a time, and its columns are written from their arrays.
    The state must not change until the file is written."""
    columns: list[array] = []
    lists: list[list] = []
    state = cbor2.dumps(_numbered(snapshot.state, columns, lists))
    yield
    chunks: list[bytes] = []
    for items in lists:
        for start in range(0, len(items), CHUNK_ROWS):
            chunks.append(cbor2.dumps([_numbered(item, columns, None) for item in items[start:start + CHUNK_ROWS]]))
            yield
    return Parts(snapshot.size, snapshot.root, snapshot.own_keys, state, chunks, columns)


def checksum(header: dict[str, Any], body: Iterable[Buffer]) -> bytes:
    """The header's sha256: SHA-256 of the rest of the header's CBOR and of the state, the chunks and the columns."""
    digest = hashlib.sha256(cbor2.dumps(header))
    for part in body:
        digest.update(part)
    return digest.digest()


def _numbered(value: Any, columns: list[array], lists: list[list] | None) -> Any:
    """`value` with each array in it, appended to `columns`, in its place as a tag of its number there; and, unless
    `lists` is None, each list of more than CHUNK_ROWS items, appended to `lists`, as a tag of its chunks' count."""
    if isinstance(value, array):
        columns.append(value)
        return cbor2.CBORTag(COLUMN_TAG, len(columns) - 1)
    if isinstance(value, dict):
        return {key: _numbered(item, columns, lists) for key, item in value.items()}
    if isinstance(value, list):
        if lists is not None and len(value) > CHUNK_ROWS:
            lists.append(value)
            return cbor2.CBORTag(ROWS_TAG, -(-len(value) // CHUNK_ROWS))
        return [_numbered(item, columns, lists) for item in value]
    return value


def _columns_in(value: Any, columns: list[array], taken: set[int], lists: list[tuple[list, int]] | None) -> Any:
    """`value` with each column tag in it replaced by its column, each of `columns` once (its number to `taken`);
    and, unless `lists` is None, each rows tag by an empty list, appended to `lists` with its chunks' count, for
    `decoding` to fill."""
    if isinstance(value, cbor2.CBORTag):
        number = value.value
        if type(number) is not int:
            raise ValueError(f"tag {value.tag}")
        if value.tag == ROWS_TAG and lists is not None and number > 0:
            lists.append(([], number))
            return lists[-1][0]
        if value.tag != COLUMN_TAG or not 0 <= number < len(columns) or number in taken:
            raise ValueError(f"tag {value.tag}")
        taken.add(number)
        return columns[number]
    if isinstance(value, dict):
        return {key: _columns_in(item, columns, taken, lists) for key, item in value.items()}
    if isinstance(value, list):
        return [_columns_in(item, columns, taken, lists) for item in value]
    return value


def _row(value: Any, columns: list[array], taken: set[int]) -> Any:
    """A chunk's item as a capture holds it (vouching.engine_state's rows: tuples of numbers, strings, bytes and
    tuples), its CBOR arrays as tuples and its column tags as their columns (`_columns_in`). Tuples of such values
    alone are untracked by the garbage collector once it has seen them: as lists, the rows decoded set off full
    collections of them all, 55-240 ms each (benchmarks/snapshot_forward.py)."""
    if isinstance(value, list):
        return tuple([_row(item, columns, taken) for item in value])
    if isinstance(value, (cbor2.CBORTag, dict)):
        return _columns_in(value, columns, taken, None)
    return value


@dataclass
class Parts:
    """engine.snapshot's parts: as read and checked against its checksum, not decoded yet (`decoding`); or encoded,
    not written yet (`write_parts`)."""

    size: int
    root: bytes
    own_keys: tuple[str, ...]
    state: bytes
    chunks: list[bytes]
    columns: list[array]


def read(data_dir: Path) -> Snapshot:
    """engine.snapshot as written (`read_parts`, then `decoding` at once); Unusable if it is missing, damaged, of
    another format or of a machine of another byte order."""
    return drained(decoding(read_parts(data_dir)))


def read_parts(data_dir: Path) -> Parts:
    """engine.snapshot's parts, checked against its checksum, for `decoding`; Unusable as `read`. The file's I/O
    alone: a worker thread's."""
    try:
        with open(data_dir / SNAPSHOT_FILE, "rb") as file:
            return _read(file, os.fstat(file.fileno()).st_size)
    except FileNotFoundError:
        raise Missing("there is none yet") from None
    except OSError as error:
        raise Unusable(f"it cannot be read ({error.strerror or error})") from None


def _read(file: IO[bytes], length: int) -> Parts:
    """`read` of the open file of `length` bytes: no part is read or allocated before its length is known to be
    within the file's."""
    if file.read(len(MAGIC)) != MAGIC:
        raise Unusable("it is not an engine snapshot")
    prefix = file.read(4)
    if prefix[:1] == FORMAT_1:
        raise Unusable(f"it is of format 1, and this version reads format {FORMAT}")
    header_length = int.from_bytes(prefix, "big")
    if not 0 < header_length <= min(MAX_HEADER, length):
        raise Unusable("it is damaged (cut short, or its header's length is not one)")
    try:
        header = cbor2.loads(file.read(header_length))
        fmt = header["format"]
    except Exception:  # (cbor2 raises several kinds for bytes cut short or damaged)
        raise Unusable("it is damaged (its header is not CBOR of its layout)") from None
    if fmt != FORMAT:
        raise Unusable(f"it is of format {fmt!r}, and this version reads format {FORMAT}")
    try:
        size, root, own_keys, state_length, chunk_lengths, columns, expected = (
            header[k] for k in ("size", "root", "own_keys", "state", "chunks", "columns", "sha256"))
        layout = [_column_layout(*column) for column in columns]
        if not (_count(size) and _count(state_length) and isinstance(root, bytes) and isinstance(expected, bytes)
                and isinstance(own_keys, list) and all(isinstance(key, str) for key in own_keys)
                and isinstance(chunk_lengths, list) and all(map(_count, chunk_lengths))):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise Unusable("it is damaged (its header is not of its layout)") from None
    if len(MAGIC) + 4 + header_length + state_length + sum(chunk_lengths) \
            + sum(count * itemsize for _, itemsize, count in layout) != length:
        raise Unusable("it is damaged (cut short, or its lengths are not its size)")
    state = file.read(state_length)
    chunks = [file.read(chunk_length) for chunk_length in chunk_lengths]
    arrays = [_read_column(file, *column) for column in layout]
    del header["sha256"]
    if checksum(header, [state, *chunks, *arrays]) != expected or len(state) != state_length \
            or list(map(len, chunks)) != chunk_lengths:
        raise Unusable("it is damaged (it does not match its checksum)")
    return Parts(size, root, tuple(own_keys), state, chunks, arrays)


def decoding(parts: Parts) -> Generator[None, None, Snapshot]:
    """The snapshot of the `parts` read (`read_parts`), yielding after each chunk's decoding (`encoding`); Unusable
    if its state is not of its layout. Drops each chunk's bytes once decoded."""
    try:
        taken: set[int] = set()
        lists: list[tuple[list, int]] = []
        decoded = _columns_in(cbor2.loads(parts.state), parts.columns, taken, lists)
        if sum(count for _, count in lists) != len(parts.chunks):
            raise ValueError("chunks")
        chunks = iter(range(len(parts.chunks)))
        for items, count in lists:
            for number in itertools.islice(chunks, count):
                yield
                chunk, parts.chunks[number] = cbor2.loads(parts.chunks[number]), b""
                if not isinstance(chunk, list) or not 0 < len(chunk) <= CHUNK_ROWS:
                    raise ValueError("chunk")
                items += [_row(item, parts.columns, taken) for item in chunk]
    except Exception:  # (cbor2 raises several kinds for damaged bytes; _columns_in ValueError)
        raise Unusable("it is damaged (its state is not CBOR of its layout)") from None
    if len(taken) != len(parts.columns) or not isinstance(decoded, dict):
        raise Unusable("it is damaged (its state is not of its layout)")
    return Snapshot(parts.size, parts.root, parts.own_keys, decoded)


def _count(value: Any) -> bool:
    """Whether a header's `value` is a count (a non-negative int)."""
    return type(value) is int and value >= 0


def _column_layout(typecode: Any, itemsize: Any, byteorder: Any, count: Any) -> tuple[str, int, int]:
    """A header's column as (typecode, item size, count); ValueError if it is not one, Unusable if it is of a
    machine whose items are of other sizes or byte order."""
    if not (isinstance(typecode, str) and len(typecode) == 1 and typecode in TYPECODES and _count(count)):
        raise ValueError(typecode)
    if (itemsize, byteorder) != (array(typecode).itemsize, sys.byteorder):
        raise Unusable(f"it was written on a machine of other item sizes or byte order ({itemsize}-byte "
                       f"{byteorder!r}-endian {typecode!r} columns)")
    return typecode, itemsize, count


def _read_column(file: IO[bytes], typecode: str, itemsize: int, count: int) -> array:
    """The next `count` items of the file as an array, read into it (no bytes object of them besides)."""
    column = array(typecode, bytes(itemsize)) * count
    with memoryview(column).cast("B") as view:
        done = 0
        while done < len(view):
            got = file.readinto(view[done:])
            if not got:
                raise Unusable("it is damaged (cut short while it was read)")
            done += got
    return column


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
    """`restored` with the `digests` the snapshot counted (`counted_digests`, whose index this closes), once `check`
    found it usable. Touches nothing but the engine and the index: a worker thread may run it."""
    try:
        restored(snapshot, engine, digests.ids())
    finally:
        digests.index.close()


def restored(snapshot: Snapshot, engine: TrustEngine, digests: Iterable[bytes]) -> None:
    """`restore` the snapshot's state into `engine` with the ids of the `digests` it counted; Unusable (the engine
    unusable too) if the state is not one this engine can take. `restoring` at once."""
    drained(restoring(snapshot, engine, digests))


def restoring(snapshot: Snapshot, engine: TrustEngine, digests: Iterable[bytes]) -> Generator[None, None, None]:
    """`restored`, yielding after each chunk of rows (vouching.engine_state.restoring), for a running node's loop."""
    try:
        yield from restoring_state(snapshot.state, engine, digests)
    except StateMismatch as error:
        raise Unusable(str(error)) from None
    except Exception as error:  # a state missing a part, or a part of another shape: KeyError, TypeError, ...
        raise Unusable(f"it is damaged (its state is not of the shape this version needs: {type(error).__name__} "
                       f"{str(error)[:80]})") from None


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
