"""Corroborated bad evidence (DESIGN.md §6, README "How scores are computed", 4): the bad evidence of orgs below the
witness weight counts beyond one source's cap only as far as other sources report as much, and that of orgs the
deviation test discredited only as far as this node's own observations and orgs at the witness weight confirm it, so
that one org, or one independence group, cannot slander an agent."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vouching.arrays import sum_by
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


def reporting_orgs(weights: np.ndarray, discredited: np.ndarray, params: ScoringParams) -> np.ndarray:
    """Per org, whether its bad evidence counts in an agent's score on its own word: it has weight and is no
    DISCREDITED source (`standing_of`; one's counts only as far as FULL sources report as much). When an agent's
    misconduct began is read from their reports alone (DeviationTest.misconduct_began)."""
    return (weights > 0) & ((weights >= params.independent_min_weight) | ~discredited)


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


def counted_bad_less(subject: np.ndarray, left_out: np.ndarray, evidence: tuple[np.ndarray, ...], n_orgs: int,
                     n_agents: int, source_cap: float) -> np.ndarray:
    """Per (`subject`, pair `left_out` or -1): the subject's bad evidence counted as its score counts it
    (`counted_bad_array`) from its evidence pairs but that one, as if the pair's org had reported nothing of it.
    `evidence`: per pair, agent, org, weighted good and bad on the grid, standing and independence group
    (batch.weighted_evidence). A group's LIGHT bad only counts where an agent's LIGHT bad exceeds `source_cap`: the
    groups of those agents alone are summed."""
    agent, _, _, bad, standing, group = evidence
    sums = [sum_by(agent, bad * (standing == kind), n_agents)[subject] for kind in (FULL, LIGHT, DISCREDITED)]
    out = np.flatnonzero(left_out >= 0)
    pair = left_out[out]
    for kind, total in zip((FULL, LIGHT, DISCREDITED), sums):
        total[out] -= np.where(standing[pair] == kind, bad[pair], 0.0)
    full, light, discredited = sums
    top = np.zeros(len(subject))
    heavy = np.flatnonzero(light > source_cap)  # elsewhere no group's bad is beyond what the rest report and C
    if len(heavy):
        top[heavy] = _top_light_group_less(subject[heavy], left_out[heavy], agent, bad, standing, group, n_orgs,
                                           n_agents)
    return counted_bad_array(full, light, top, discredited, source_cap)


def _top_light_group_less(subject: np.ndarray, left_out: np.ndarray, agent: np.ndarray, bad: np.ndarray,
                          standing: np.ndarray, group: np.ndarray, n_orgs: int, n_agents: int) -> np.ndarray:
    """Per (`subject`, pair `left_out` or -1): the largest LIGHT bad of one of the subject's independence groups, that
    pair's left out, from each agent's two largest group sums."""
    wanted = np.zeros(n_agents, dtype=bool)
    wanted[subject] = True
    rows = np.flatnonzero((standing == LIGHT) & wanted[agent])
    key = agent[rows].astype(np.int64) * n_orgs + group[rows]
    order = np.argsort(key, kind="stable")
    keys = key[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    group_key, group_bad = keys[starts], np.add.reduceat(bad[rows][order], starts)  # sums on the grid: exact
    by_size = np.lexsort((group_bad, group_key // n_orgs))  # by agent, then bad: each agent's largest last
    owner = (group_key // n_orgs)[by_size]
    last = np.r_[owner[1:] != owner[:-1], True]
    second = np.r_[(owner[1:] == owner[:-1]) & last[1:], False]
    first_bad, first_key, second_bad = np.zeros(n_agents), np.full(n_agents, -1, dtype=np.int64), np.zeros(n_agents)
    first_bad[owner[last]], first_key[owner[last]] = group_bad[by_size][last], group_key[by_size][last]
    second_bad[owner[second]] = group_bad[by_size][second]
    top = first_bad[subject]
    out = np.flatnonzero(left_out >= 0)
    out = out[standing[left_out[out]] == LIGHT]
    pair = left_out[out]
    own_key = subject[out].astype(np.int64) * n_orgs + group[pair]
    own_bad = group_bad[np.searchsorted(group_key, own_key)] - bad[pair]
    other = np.where(first_key[subject[out]] == own_key, second_bad[subject[out]], first_bad[subject[out]])
    top[out] = np.maximum(own_bad, other)
    return top
