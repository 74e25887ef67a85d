"""Small numpy helpers shared by the scoring modules."""

from __future__ import annotations

import numpy as np


def sum_by(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Float sums of `values` grouped by `index` into `n` bins (np.bincount, but float even when empty)."""
    return np.bincount(index, weights=values, minlength=n).astype(np.float64, copy=False)
