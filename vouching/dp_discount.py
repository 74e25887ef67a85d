"""Scoring a DP digest against the noise it declares (DESIGN.md §6, §7): a digest with `dp.eps` carries
two-sided geometric noise on each of its outcome x risk cells (node/dp.py), clamped at 0, so an empty cell reads
about 0.96 at epsilon 1. Each cell counts only beyond `dp_threshold`, the noise the digest itself explains at
false-alarm rate `ScoringParams.dp_false_alarm`: ok and bad alike, since a count the noise explains says nothing
either way. Bad cells alone would let an org declare a tiny epsilon, so that the noise explains every failure of
its agents, while their ok counts counted in full; so discounted, such a digest counts nothing.

The trade-off: a digest at epsilon hides up to dp_threshold(epsilon) outcomes in each cell (13 at epsilon 1 and
r = 1e-3), which is the privacy it declares.
"""

from __future__ import annotations

import math

from .evidence import MAX_EVENTS, Outcomes, check_subset


def tail(alpha: float, m: int) -> float:
    """P(N >= m) for m >= 0 of the two-sided geometric with parameter `alpha`: alpha^m / (1 + alpha)."""
    return alpha**m / (1 + alpha)


def dp_threshold(epsilon: float, false_alarm: float) -> int:
    """The smallest m >= 1 with P(N >= m) <= `false_alarm`, N the noise of one cell at `epsilon` (alpha =
    exp(-epsilon / 2)); at most MAX_EVENTS, which a tiny epsilon reaches."""
    half = epsilon / 2
    alpha = math.exp(-half)
    estimate = math.log(false_alarm * (1 + alpha)) / -half if half > 0 else math.inf
    if not estimate < MAX_EVENTS:
        return MAX_EVENTS
    m = max(1, math.ceil(estimate))
    if m > 1 and tail(alpha, m - 1) <= false_alarm:  # the estimate is off by float rounding at most
        m -= 1
    elif tail(alpha, m) > false_alarm:
        m += 1
    return m


def discounted(outcomes: Outcomes, high_risk: Outcomes, threshold: int) -> tuple[Outcomes, Outcomes]:
    """A DP digest's outcomes and high-risk subset with `threshold` taken off each cell of the mechanism (the low-
    and the high-risk part of each outcome, node/dp.py), each clamped at 0: high_risk <= outcomes still holds."""
    check_subset(outcomes, high_risk)  # before: discounted, an invalid digest could pass as a valid one
    low, high = {}, {}
    for name in ("ok", "error", "denied", "timeout"):
        risky = getattr(high_risk, name)
        high[name] = max(0, risky - threshold)
        low[name] = max(0, getattr(outcomes, name) - risky - threshold) + high[name]
    return Outcomes(**low), Outcomes(**high)
