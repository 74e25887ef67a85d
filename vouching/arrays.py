"""Small numpy helpers shared by the scoring modules."""

from __future__ import annotations

from array import array
from collections.abc import Iterable

import numpy as np

from vouching.grid import GRID


def sum_by(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Float sums of `values` grouped by `index` into `n` bins (np.bincount, but float even when empty)."""
    return np.bincount(index, weights=values, minlength=n).astype(np.float64, copy=False)


def grid_sum_by(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """`sum_by` of `values` each rounded to the grid: the same sums whatever order the values come in."""
    return sum_by(index, on_grid_array(values), n)


def on_grid_array(values: np.ndarray) -> np.ndarray:
    """`values` each rounded to the grid (vouching.grid; np.rint rounds ties to even, as `on_grid` does)."""
    return np.rint(values * GRID) / GRID


def distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted: np.unique by sorting (numpy 2.3+ hashes instead, about 8x slower on 10^5
    integers, and holding the GIL throughout)."""
    ordered = np.sort(values)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(ordered) else ordered


def in_distinct(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Whether each of `values` is one of `known` (sorted and distinct, as `distinct` gives them): np.isin by binary
    search, which sorts neither (np.isin sorts both together, 10^6 values against a few)."""
    if not len(known):
        return np.zeros(len(values), dtype=bool)
    return known[np.minimum(np.searchsorted(known, values), len(known) - 1)] == values


def array_columns(store: object) -> dict[str, array]:
    """The `array.array` attributes of a store but those named with a leading underscore: its columns."""
    return {name: value for name, value in vars(store).items() if isinstance(value, array) and name[0] != "_"}


class ColumnsCopy:
    """A numpy copy of a store's equal-length columns, taken a chunk of rows at a time while the store keeps
    growing and rewriting rows in place: `finish` copies the rows appended meanwhile, and again the rows the
    caller says were rewritten, so that the copy is the columns as they are when `finish` is called."""

    def __init__(self, columns: dict[str, array]) -> None:
        self._columns = columns
        rows = len(next(iter(columns.values())))
        self._rows = rows  # rows present at the start: `step` copies these
        self._done = 0
        # Room for rows appended while the steps run, so that `finish` need not move what they copied.
        room = rows + rows // 16 + 1024
        self._copies = {name: np.empty(room, dtype=np.asarray(column).dtype) for name, column in columns.items()}

    def step(self, rows: int) -> bool:
        """Copy up to `rows` more of the rows present at the start; False once all of them are copied."""
        start, stop = self._done, min(self._done + rows, self._rows)
        for name, column in self._columns.items():
            self._copies[name][start:stop] = np.asarray(column)[start:stop]
        self._done = stop
        return stop < self._rows

    def finish(self, rewritten: Iterable[int]) -> dict[str, np.ndarray]:
        """The copy, complete as the columns are now; `rewritten`: rows that may have changed since they were
        copied (any may be named; those not yet copied are copied now anyway)."""
        done = self._done
        again = np.fromiter(rewritten, dtype=np.int64)
        again = again[again < done]
        out = {}
        for name, column in self._columns.items():
            live = np.asarray(column)
            copy = self._copies[name]
            if len(live) > len(copy):  # more rows arrived than there was room for: move what is copied (rare)
                copy = np.concatenate([copy[:done], np.empty(len(live) - done, dtype=copy.dtype)])
            copy[done:len(live)] = live[done:]
            copy[again] = live[again]
            out[name] = copy[:len(live)]
        return out
