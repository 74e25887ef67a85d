"""Tiers (DESIGN.md §6): bands of scores 0..1000 with the thresholds the ecosystem's SDKs already use.

Free of numpy and scipy, so that the client SDK's policy can use it; the quantiles are in vouching.quantiles.
"""

from __future__ import annotations

from typing import Literal

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
