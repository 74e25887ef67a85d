"""Scores and tiers (DESIGN.md §6): a score is a lower quantile of the Beta posterior x 1000, and a tier is a band
of scores with the thresholds the ecosystem's SDKs already use.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.special import betaincinv

Tier = Literal["verified", "trusted", "provisional", "untrusted"]

TIERS: tuple[Tier, ...] = ("untrusted", "provisional", "trusted", "verified")  # lowest first
VERIFIED = 800
TRUSTED = 500
PROVISIONAL = 200
MAX_SCORE = 1000


def tier_of(score: int) -> Tier:
    """The tier of a score (the independence rule for `verified` is applied to the score before this)."""
    if score >= VERIFIED:
        return "verified"
    if score >= TRUSTED:
        return "trusted"
    if score >= PROVISIONAL:
        return "provisional"
    return "untrusted"


def tier_rank(tier: str) -> int:
    """0 for untrusted up to 3 for verified; raises ValueError naming an unknown tier."""
    try:
        return TIERS.index(tier)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"tier: must be one of {', '.join(TIERS)}, got {tier!r}") from None


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
