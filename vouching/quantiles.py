"""Scores (DESIGN.md §6): a score is a lower quantile of the Beta posterior x 1000."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import betaincinv

from vouching.grid import grid_floor
from vouching.params import ScoringParams
from vouching.tiers import MAX_SCORE, TRUSTED


def score_of(alpha: float, beta: float, quantile: float) -> int:
    """The `quantile` lower quantile of Beta(alpha, beta), as an integer score 0..1000 (rounded down)."""
    return min(MAX_SCORE, int(float(betaincinv(alpha, beta, quantile)) * MAX_SCORE))


def scores_of(alpha: np.ndarray, beta: np.ndarray, quantile: float) -> np.ndarray:
    """`score_of` over arrays."""
    return np.minimum(MAX_SCORE, np.floor(betaincinv(alpha, beta, quantile) * MAX_SCORE)).astype(np.int64)


def max_prior_lift(prior_good: float, prior_bad: float, quantile: float) -> float:
    """The largest vouch lift (added to prior_good) that keeps an agent with no evidence below `trusted`.

    Found by bisection on the monotone score of Beta(prior_good + lift, prior_bad); this is how "a vouch alone
    never lifts an agent above provisional" is enforced.
    """
    if score_of(prior_good, prior_bad, quantile) >= TRUSTED:
        raise ValueError("prior_good, prior_bad: the prior alone must score below trusted")
    low, high = 0.0, 1.0
    while score_of(prior_good + high, prior_bad, quantile) < TRUSTED:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        if score_of(prior_good + mid, prior_bad, quantile) < TRUSTED:
            low = mid
        else:
            high = mid
    return low


@lru_cache(maxsize=8)
def _source_cap(prior_good: float, prior_bad: float, quantile: float) -> float:
    return grid_floor(max_prior_lift(prior_good, prior_bad, quantile))


def source_cap(params: ScoringParams) -> float:
    """C, the most good one source alone may add, on the grid: vouches together, one other org's decayed good, and
    one cap window of this node's own observations (DESIGN.md §6: none of them alone lifts an agent above
    provisional)."""
    return _source_cap(params.prior_good, params.prior_bad, params.quantile)
