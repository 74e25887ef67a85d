"""Corroborated bad evidence (DESIGN.md §6, README "How scores are computed", 4): the bad evidence of orgs below the
witness weight counts beyond one source's cap only as far as other sources report as much, and that of orgs the
deviation test discredited only as far as this node's own observations and orgs at the witness weight confirm it, so
that one org, or one independence group, cannot slander an agent."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vouching.deviation import credibility
from vouching.params import ScoringParams

FULL, LIGHT, DISCREDITED = 0, 1, 2  # how a source's bad evidence counts: `standing_of`


def standing_of(weight: float, first_hand: bool, discredited: bool, params: ScoringParams) -> int:
    """FULL for this node's own observations and orgs at the witness weight (`independent_min_weight`); below it,
    DISCREDITED for an org the deviation test discredited (`discredited_orgs`), else LIGHT (an org nobody could check
    yet, or one of little reputation)."""
    if first_hand or weight >= params.independent_min_weight:
        return FULL
    return DISCREDITED if discredited else LIGHT


def discredited_orgs(credibilities: np.ndarray, params: ScoringParams) -> np.ndarray:
    """Per org, whether its credibility is below that of an org nobody could check yet: the deviation test found its
    digests disagreeing with what this node and its roots observed once or more for every two times they agreed
    (with the default priors, agreements A < 2 x disagreements D)."""
    untested = credibility(np.zeros(1), np.zeros(1), params)[0]
    return credibilities < untested


def counted_bad(full: float, light: Iterable[float], discredited: float, source_cap: float) -> float:
    """An agent's bad evidence from the weighted bad of its FULL sources, of each independence group's LIGHT orgs
    (`light`) and of its DISCREDITED orgs, all on the grid: a LIGHT group's bad beyond what every other source reports
    counts at most `source_cap` (C, as one org's good), and DISCREDITED bad at most as much as FULL bad."""
    light = list(light)
    light_sum, top = sum(light, 0.0), max(light, default=0.0)
    return full + light_sum - max(0.0, 2 * top - full - light_sum - source_cap) + min(discredited, full)


def counted_bad_array(full: np.ndarray, light: np.ndarray, top: np.ndarray, discredited: np.ndarray,
                      source_cap: float) -> np.ndarray:
    """`counted_bad` over arrays, each group's LIGHT bad given as their sum (`light`) and the largest (`top`)."""
    return full + light - np.maximum(0.0, 2 * top - full - light - source_cap) + np.minimum(discredited, full)
