"""The grid agent sums are taken on (DESIGN.md §6: every node computing over the same records agrees on a score).

Each term of an agent's sums is rounded to a multiple of 2^-20 pseudo-observations; sums of such values below 2^33
are exact in float64, so they do not depend on the order the terms are added in, which is the order records arrived
in. Without the grid, three bad reports summed to 2.0 at one node and to 1.9999999999999998 at another, a tier apart.
Free of numpy: the explanation (which the client SDK imports) adds its parts up on it too.
"""

import math

GRID = 2.0 ** 20
EXACT_BELOW = 2.0 ** 33  # sums of terms on the grid, each and in all below this, are exact in float64


def on_grid(value: float) -> float:
    """`value` rounded to the nearest multiple of 1 / GRID (ties to even), as arrays.grid_sum_by rounds."""
    return round(value * GRID) / GRID


def grid_floor(value: float) -> float:
    """The largest multiple of 1 / GRID at or below `value`: a cap on the grid, which no term rounds past."""
    return math.floor(value * GRID) / GRID
