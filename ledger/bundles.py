"""The entries of a ledger (DESIGN.md §4), packed up to 16 to an SQLite row.

A row holds the consecutive entries [first, first + n) of one appended batch: `ends` is n little-endian uint32
end offsets into `data`, their concatenation. One row per 16 entries rather than per entry is most of the
append speed (benchmarks/ledger.py); a row stops growing at 16 KiB, so reading one entry reads little else.
Rows never change once written, except that pruning empties entries (their hashes live in the tiles).
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterable
from itertools import accumulate
from pathlib import Path

from .errors import EntryPruned, LedgerError

SCHEMA = "CREATE TABLE entries (first INTEGER PRIMARY KEY, ends BLOB NOT NULL, data BLOB NOT NULL);"
_MAX_ENTRIES = 16
_MAX_BYTES = 16 << 10

Row = tuple[int, bytes, bytes]  # (first, ends, data)


def _row(first: int, entries: list[bytes]) -> Row:
    return first, struct.pack(f"<{len(entries)}I", *accumulate(map(len, entries))), b"".join(entries)


class EntryStore:
    """Reads and writes the entries table; the caller owns transactions and the size and prune marks."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path

    def _split(self, row: Row) -> list[bytes]:
        first, ends, data = row
        sound = type(ends) is bytes and type(data) is bytes and len(ends) % 4 == 0
        offsets = struct.unpack(f"<{len(ends) // 4}I", ends) if sound else ()
        if not offsets or offsets[-1] != len(data) or any(a > b for a, b in zip(offsets, offsets[1:])):
            raise LedgerError(f"{self._path}: corrupt: the entry row from {first} is malformed")
        return [data[a:b] for a, b in zip((0, *offsets), offsets)]

    def rows(self, first: int, batch: list[bytes]) -> list[Row]:
        """The rows packing `batch`, whose first entry gets index `first`."""
        rows, start, size = [], 0, 0
        for i, entry in enumerate(batch, 1):
            size += len(entry)
            if i - start == _MAX_ENTRIES or size >= _MAX_BYTES or i == len(batch):
                rows.append(_row(first + start, batch[start:i]))
                start, size = i, 0
        return rows

    def write(self, rows: Iterable[Row]) -> None:
        """Store `rows` inside the caller's transaction."""
        self._db.executemany("INSERT INTO entries VALUES (?, ?, ?)", rows)

    def _row_holding(self, index: int) -> tuple[int, list[bytes]]:
        row = self._db.execute(
            "SELECT first, ends, data FROM entries WHERE first <= ? ORDER BY first DESC LIMIT 1", (index,)
        ).fetchone()
        entries = self._split(row) if row else []
        if not row or index >= row[0] + len(entries):
            raise LedgerError(f"{self._path}: corrupt: no row holds entry {index}")
        return row[0], entries

    def read(self, start: int, end: int, pruned: int) -> list[bytes]:
        """Entries [start, end), which must be below the stored size."""
        if start == end:
            return []
        if start < pruned:
            raise EntryPruned(f"entry {start}: pruned (entries before {pruned} keep only their hashes)")
        first, entries = self._row_holding(start)
        out = entries[start - first : end - first]
        next_first = first + len(entries)
        for row in self._db.execute(
            "SELECT first, ends, data FROM entries WHERE first > ? AND first < ? ORDER BY first", (first, end)
        ):
            if row[0] != next_first:
                raise LedgerError(f"{self._path}: corrupt: no row holds entry {next_first}")
            entries = self._split(row)
            out += entries[: end - row[0]]
            next_first += len(entries)
        if len(out) != end - start:
            raise LedgerError(f"{self._path}: corrupt: no row holds entry {start + len(out)}")
        return out

    def prune(self, before: int) -> None:
        """Empty entries [0, before) inside the caller's transaction: drop the rows wholly before `before`, and
        rewrite the row across it."""
        first, entries = self._row_holding(before - 1)
        self._db.execute("DELETE FROM entries WHERE first < ?", (first,))
        if before == first + len(entries):
            self._db.execute("DELETE FROM entries WHERE first = ?", (first,))
        else:
            kept = [b""] * (before - first) + entries[before - first :]
            self._db.execute("REPLACE INTO entries VALUES (?, ?, ?)", _row(first, kept))

    def check(self, size: int, pruned: int) -> bytes | None:
        """Raise LedgerError unless the rows hold exactly entries [pruned, size); the last entry, if any."""
        if size == pruned:
            if self._db.execute("SELECT first FROM entries LIMIT 1").fetchone() is not None:
                raise LedgerError(f"{self._path}: corrupt: entry rows remain though all {size} entries are pruned")
            return None
        head = self._db.execute("SELECT first, ends, data FROM entries ORDER BY first LIMIT 1").fetchone()
        tail = self._db.execute("SELECT first, ends, data FROM entries ORDER BY first DESC LIMIT 1").fetchone()
        if head is None or not head[0] <= pruned < head[0] + len(self._split(head)):
            raise LedgerError(
                f"{self._path}: corrupt: the first entry row does not hold entry {pruned} (the first unpruned)"
            )
        last = self._split(tail)
        if tail[0] + len(last) != size:
            raise LedgerError(
                f"{self._path}: corrupt: stored size {size} disagrees with the entry rows, which end at"
                f" {tail[0] + len(last)}"
            )
        return last[-1]
