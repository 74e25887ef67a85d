"""Differential privacy for digest counts: the two-sided geometric mechanism (Ghosh, Roughgarden, Sundararajan,
"Universally utility-maximizing privacy mechanisms", 2009), added so the digest's invariants still hold.

A digest publishes, for one agent and epoch, counts by outcome, their high-risk subset, and counts by category.
They all derive from two histograms, to which each event adds exactly 1 cell:
- H1, outcome x risk (8 cells): outcomes[o] = H1[o, low] + H1[o, high], high_risk[o] = H1[o, high];
- H2, category (6 cells).
Adding or removing one event changes the 14 cells by 2 in L1 norm, so independent two-sided geometric noise
with alpha = exp(-epsilon / 2) on every cell, P(k) = (1 - alpha) / (1 + alpha) * alpha^|k|, makes the pair of
histograms epsilon-differentially private (the discrete Laplace mechanism with sensitivity 2). Everything
published is computed from the noisy cells alone (post-processing keeps the guarantee):
1. each noisy cell is clamped at 0;
2. outcomes, high_risk and events = sum(outcomes) are read from H1, so high_risk <= outcomes holds;
3. categories are H2 rescaled to sum to events by largest remainders (ties to the earlier category in wire
   order); all of events goes to `other` if every H2 cell is 0.
Clamping biases empty cells upwards: by alpha / (1 - alpha^2) each on average (0.96 at epsilon = 1).
The digest declares epsilon as `dp.eps`. Which agents have a digest in an epoch is not hidden.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vouching.bodies import CATEGORIES, OUTCOMES


@dataclass(frozen=True)
class NoisyCounts:
    outcomes: dict[str, int]
    high_risk: dict[str, int]
    categories: dict[str, int]


# Beyond these bounds exp(-epsilon / 2) rounds to 1 (no draw ends) or to 0 (log(0)): the noise cannot be drawn.
EPSILON_RULE = "must be a number from about 1.2e-16 to 1490, whose noise exp(-epsilon / 2) is strictly between 0 and 1"


def geometric_alpha(epsilon: float) -> float:
    """The per-cell noise parameter for a digest at `epsilon` (sensitivity 2, see the module docstring); raises
    ValueError for an epsilon whose noise cannot be drawn (EPSILON_RULE)."""
    alpha = math.exp(-epsilon / 2) if math.isfinite(epsilon) and epsilon > 0 else math.nan
    if not 0 < alpha < 1:
        raise ValueError(f"epsilon: {EPSILON_RULE}, got {epsilon!r}")
    return alpha


def two_sided_geometric(rng: random.Random, alpha: float) -> int:
    """One draw with P(k) = (1 - alpha) / (1 + alpha) * alpha^|k|: the difference of two geometric draws."""
    return _geometric(rng, alpha) - _geometric(rng, alpha)


def _geometric(rng: random.Random, alpha: float) -> int:
    """P(G >= k) = alpha^k, by inversion: G = floor(ln U / ln alpha) with U uniform on (0, 1]."""
    return math.floor(math.log(1.0 - rng.random()) / math.log(alpha))


def _largest_remainders(weights: Sequence[int], total: int) -> list[int]:
    """Integers proportional to `weights` summing to `total` (Hamilton's method; ties to the lower index)."""
    whole = sum(weights)
    shares = [w * total // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(weights[i] * total % whole), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares


def noisy_counts(
    outcomes: Mapping[str, int],
    high_risk: Mapping[str, int],
    categories: Mapping[str, int],
    *,
    epsilon: float,
    rng: random.Random,
) -> NoisyCounts:
    """The epsilon-DP counts of one digest (see the module docstring for the mechanism and the invariants)."""
    alpha = geometric_alpha(epsilon)

    def noisy(count: int) -> int:
        return max(0, count + two_sided_geometric(rng, alpha))

    risky = {o: noisy(high_risk[o]) for o in OUTCOMES}
    out = {o: noisy(outcomes[o] - high_risk[o]) + risky[o] for o in OUTCOMES}
    events = sum(out.values())
    cells = [noisy(categories[c]) for c in CATEGORIES]
    if events == 0:
        shares = [0] * len(CATEGORIES)
    elif sum(cells) == 0:
        shares = [events if c == "other" else 0 for c in CATEGORIES]
    else:
        shares = _largest_remainders(cells, events)
    return NoisyCounts(out, risky, dict(zip(CATEGORIES, shares)))
