"""The stored subtree hashes of a ledger (RFC 9162 tree, DESIGN.md §4), packed TILE_WIDTH to an SQLite row.

Tile `idx` of `level` holds the hashes of nodes (level, idx * TILE_WIDTH + j), concatenated, much as Go's sumdb
tlog packs hashes into tiles. Every level is stored, so reading a hash is a slice; only the last tile of a level
is partial, and it only ever grows, so whatever was read from it stays true.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from . import merkle
from .errors import LedgerError

# 16 hashes (512 bytes) pack 7 rows into a 4 KiB page, and a batch writes about one row per 8 entries;
# benchmarks/ledger.py has the figures behind the choice.
TILE_WIDTH = 16
SCHEMA = "CREATE TABLE tiles (id INTEGER PRIMARY KEY, hashes BLOB NOT NULL);"
_TILE_BYTES = TILE_WIDTH * merkle.HASH_SIZE
_CACHED_TILES = 8192  # ~5 MB: the upper levels of a large tree stay in memory
_H = merkle.HASH_SIZE

Row = tuple[int, bytes]  # (tile id, hashes)


def _tile_id(level: int, idx: int) -> int:
    """One integer key per tile keeps lookups and the checks on open cheap."""
    return level << 40 | idx


def _name(tile_id: int) -> str:
    return f"level {tile_id >> 40} tile {tile_id & (1 << 40) - 1}"


class TileStore:
    """A merkle.HashReader over the tiles table, keeping the most recently used tiles in memory."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def read_hashes(self, nodes: Sequence[merkle.Node]) -> list[bytes]:
        places = [(_tile_id(level, index // TILE_WIDTH), index % TILE_WIDTH * _H) for level, index in nodes]
        widths: dict[int, int] = {}
        for tile_id, offset in places:
            widths[tile_id] = max(widths.get(tile_id, 0), offset // _H + 1)
        tiles = self._tiles(widths)
        return [tiles[tile_id][offset : offset + _H] for tile_id, offset in places]

    def _tiles(self, widths: dict[int, int]) -> dict[int, bytes]:
        """The tiles by id, each holding at least the given number of hashes; those not in memory in one query."""
        found, missing = {}, []
        for tile_id, width in widths.items():
            blob = self._cache.get(tile_id)
            if blob is not None and len(blob) >= width * _H:
                self._cache.move_to_end(tile_id)
                found[tile_id] = blob
            else:
                missing.append(tile_id)
        if missing:
            marks = ", ".join("?" * len(missing))
            found.update(self._db.execute(f"SELECT id, hashes FROM tiles WHERE id IN ({marks})", missing))
            for tile_id in missing:
                self._remember(tile_id, self._checked(tile_id, found.get(tile_id, b""), widths[tile_id]))
        return found

    def _checked(self, tile_id: int, blob: object, width: int) -> bytes:
        """`blob`, read as tile `tile_id`, if it holds `width` (at least 1) or more hashes; else LedgerError."""
        if not (type(blob) is bytes and len(blob) % _H == 0 and max(width, 1) * _H <= len(blob) <= _TILE_BYTES):
            raise LedgerError(f"{self._path}: corrupt: hash {_name(tile_id)} is not {width} or more {_H}-byte hashes")
        return blob

    def read_run(self, level: int, start: int, end: int) -> list[bytes]:
        """The hashes of nodes (level, start) to (level, end - 1), start < end, in one query and not kept in memory:
        for a scan of the tree (ledger.tree_check), which reads each tile once."""
        first, last = _tile_id(level, start // TILE_WIDTH), _tile_id(level, (end - 1) // TILE_WIDTH)
        rows = dict(self._db.execute("SELECT id, hashes FROM tiles WHERE id BETWEEN ? AND ?", (first, last)))
        data = b"".join(
            self._checked(tile_id, rows.get(tile_id, b""), TILE_WIDTH if tile_id < last else (end - 1) % TILE_WIDTH + 1)
            for tile_id in range(first, last + 1)
        )
        offset = start % TILE_WIDTH * _H
        return [data[k : k + _H] for k in range(offset, offset + (end - start) * _H, _H)]

    def replaced(self, level: int, hashes: dict[int, bytes]) -> list[Row]:
        """The rows of `level`'s tiles with the hashes of the given nodes (index -> hash) replaced, for repairing
        them (ledger.tree_repair); the tiles touched are read in one query, not kept in memory."""
        if not hashes:
            return []
        by_tile: dict[int, list[int]] = {}
        for index in hashes:
            by_tile.setdefault(_tile_id(level, index // TILE_WIDTH), []).append(index)
        marks = ", ".join("?" * len(by_tile))
        stored = dict(self._db.execute(f"SELECT id, hashes FROM tiles WHERE id IN ({marks})", list(by_tile)))
        rows = []
        for tile_id, indices in by_tile.items():
            width = max(index % TILE_WIDTH for index in indices) + 1
            blob = bytearray(self._checked(tile_id, stored.get(tile_id, b""), width))
            for index in indices:
                offset = index % TILE_WIDTH * _H
                blob[offset : offset + _H] = hashes[index]
            rows.append((tile_id, bytes(blob)))
        return rows

    def forget(self) -> None:
        """Drop the tiles kept in memory: after a transaction that replaced stored hashes, committed or not."""
        self._cache.clear()

    def _remember(self, tile_id: int, blob: bytes) -> None:
        self._cache[tile_id] = blob
        self._cache.move_to_end(tile_id)
        if len(self._cache) > _CACHED_TILES:
            self._cache.popitem(last=False)

    def rows_after(self, old_size: int, levels: list[list[bytes]]) -> list[Row]:
        """The rows to write so the tiles also hold `levels` (merkle.appended_levels of a tree of `old_size`)."""
        rows = []
        for level, hashes in enumerate(levels):
            idx, offset = divmod(old_size >> level, TILE_WIDTH)
            tile_id = _tile_id(level, idx)
            prefix = self._tiles({tile_id: offset})[tile_id][: offset * _H] if offset else b""
            data = prefix + b"".join(hashes)
            rows += [(tile_id + k // _TILE_BYTES, data[k : k + _TILE_BYTES]) for k in range(0, len(data), _TILE_BYTES)]
        return rows

    def write(self, rows: list[Row]) -> None:
        """Store `rows` inside the caller's transaction."""
        self._db.executemany("INSERT OR REPLACE INTO tiles VALUES (?, ?)", rows)

    def written(self, rows: list[Row]) -> None:
        """After the transaction that wrote `rows` commits: keep each level's last tile, which appends extend."""
        for tile_id, blob in {tile_id >> 40: (tile_id, blob) for tile_id, blob in rows}.values():
            self._remember(tile_id, blob)

    def check(self, size: int) -> None:
        """Raise LedgerError unless the tiles hold exactly the complete subtrees of a tree of `size` leaves.

        Reads the last tile of each level: O(log size).
        """
        top = self._db.execute("SELECT max(id) FROM tiles").fetchone()[0]
        if (top is None and size) or (top is not None and top >> 40 != size.bit_length() - 1):
            raise LedgerError(f"{self._path}: corrupt: stored size {size} disagrees with the top hash tile")
        for level in range(size.bit_length()):
            count = size >> level
            last = _tile_id(level, (count - 1) // TILE_WIDTH)
            stored = self._db.execute("SELECT max(id) FROM tiles WHERE id < ?", (_tile_id(level + 1, 0),)).fetchone()[0]
            width = len(self._tiles({last: 1})[last]) // _H if stored == last else 0
            if width != count - (last & (1 << 40) - 1) * TILE_WIDTH:
                raise LedgerError(
                    f"{self._path}: corrupt: stored size {size} disagrees with the level-{level} hashes"
                    f" (the last tile should be {_name(last)} with {count % TILE_WIDTH or TILE_WIDTH} hashes)"
                )
