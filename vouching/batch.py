"""Scoring every agent at once (the numpy half of the full recompute, DESIGN.md §6): the same sums as the
per-agent score, over every (agent, org) evidence pair in a few vectorised passes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vouching.arrays import distinct, grid_sum_by, in_distinct, on_grid_array, sum_by
from vouching.confirmation import DISCREDITED, FULL, LIGHT, counted_bad_array
from vouching.evidence import EvidenceStore, report_strengths
from vouching.params import ScoringParams
from vouching.rules import cap_scores
from vouching.quantiles import scores_of
from vouching.tiers import tier_of


@dataclass(frozen=True)
class ScoreTable:
    """Every known agent scored at one instant: arrays indexed like `agents`."""

    agents: tuple[str, ...]
    scores: np.ndarray
    confidence: np.ndarray
    evidence: np.ndarray  # weighted behavioural pseudo-observations (good and bad; vouches left out)
    independent_orgs: np.ndarray
    computed_at: int
    _rows: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built with the table, so off the trio thread when the recompute is (about 10 ms at 10^5 agents).
        object.__setattr__(self, "_rows", {did: i for i, did in enumerate(self.agents)})

    def score(self, agent: str) -> int | None:
        row = self._rows.get(agent)
        return None if row is None else int(self.scores[row])

    def tier(self, agent: str) -> str | None:
        value = self.score(agent)
        return None if value is None else tier_of(value)


@dataclass(frozen=True)
class Totals:
    """Per agent at one instant: weighted decayed good (the part that decays, and the part held at the
    per-org cap, which stays put until its org's evidence decays below the cap), weighted decayed bad (as far as
    corroborated: vouching.confirmation), weighted recent bad reports (one org's per independence group, none of a
    discredited org), independent orgs."""

    good: np.ndarray
    good_held: np.ndarray
    bad: np.ndarray
    reports: np.ndarray
    independent: np.ndarray


def _decayed(store: EvidenceStore, weights: np.ndarray, now: float, good_cap: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pair: agent, org, org weight (0 for another org's evidence dated beyond the future tolerance), age of
    the accumulators, decayed good and bad (before weights), and whether the good is held at the per-org cap."""
    agent = store.column("agent")
    org = store.column("org")
    t_ref = store.column("t_ref")
    age = np.maximum(0.0, now - t_ref)
    good = store.column("good") * np.exp(-age * store.k_good)
    held = (store.column("first_hand") == 0) & (good > good_cap)
    good = np.where(held, good_cap, good)
    bad = store.column("bad") * np.exp(-age * store.k_bad)
    ahead = (t_ref > now + store.params.future_tolerance_ms) & (store.column("first_hand") == 0)
    return agent, org, np.where(ahead, 0.0, weights[org]), age, good, bad, held


def weighted_evidence(store: EvidenceStore, weights: np.ndarray, groups: np.ndarray, discredited_orgs: np.ndarray,
                      now: float, good_cap: float, params: ScoringParams) -> tuple[np.ndarray, ...]:
    """Per pair: agent, org, the weighted decayed good (capped per org) and bad pseudo-observations, each on the
    grid, so that an agent's sums less one org's part are the same whatever order the pairs come in, how its bad
    counts (`bad_standings`) and its org's independence group (`groups` per org)."""
    agent, org, w, _, good, bad, _ = _decayed(store, weights, now, good_cap)
    return (agent, org, on_grid_array(w * good), on_grid_array(w * bad),
            bad_standings(store, w, discredited_orgs, params), groups[org])


def bad_standings(store: EvidenceStore, w: np.ndarray, discredited_orgs: np.ndarray, params: ScoringParams
                  ) -> np.ndarray:
    """Per pair, how its bad evidence counts (confirmation.standing_of), from its org's weight `w` (per pair) and
    whether the deviation test discredited its org (`discredited_orgs` per org)."""
    full = (w >= params.independent_min_weight) | (store.column("first_hand") != 0)
    return np.where(full, FULL, np.where(discredited_orgs[store.column("org")], DISCREDITED, LIGHT))


def totals(store: EvidenceStore, weights: np.ndarray, groups: np.ndarray, discredited_orgs: np.ndarray,
           operators: tuple[np.ndarray, np.ndarray], n_agents: int, now: float, source_cap: float,
           params: ScoringParams) -> Totals:
    """Everything the score needs from the evidence, per agent (one org's good held at `source_cap`, and one
    independence group's uncorroborated bad: vouching.confirmation, `discredited_orgs` per org); no org in the
    independence group of one of an agent's `operators` ((agent, org) arrays, of the operators with weight)
    witnesses for it."""
    p = params
    n_orgs = len(weights)
    agent, org, w, age, good_now, bad_now, held = _decayed(store, weights, now, source_cap)
    open_strength = report_strengths(store.column("win_raw_good"), store.column("win_raw_bad"),
                                     store.column("win_raw_violation"), p)
    open_age = np.maximum(0.0, now - store.column("win_t"))
    recent = (store.column("reports") * np.exp(-age * store.k_report)
              + open_strength * np.exp(-open_age * store.k_report))

    group_key = agent.astype(np.int64) * n_orgs + groups[org]  # (agent, independence group of the org)
    operator_agent, operator = operators
    barred = distinct(operator_agent.astype(np.int64) * n_orgs + groups[operator])
    witness = ((w >= p.independent_min_weight) & (good_now >= p.independent_min_good)
               & ~in_distinct(group_key, barred))
    # An org alone in its group cannot share it with another witness: count those directly, and find the
    # distinct groups only among the rest.
    alone = (np.bincount(groups, minlength=n_orgs) == 1)[groups[org]]
    independent = np.bincount(agent[witness & alone], minlength=n_agents)
    shared = witness & ~alone
    group_keys = distinct(group_key[shared])
    independent += np.bincount(group_keys // n_orgs, minlength=n_agents)
    standing = bad_standings(store, w, discredited_orgs, p)
    full, discredited = standing == FULL, standing == DISCREDITED
    light = (standing == LIGHT) & (w > 0)
    bad = on_grid_array(w * bad_now)
    full_bad = sum_by(agent, bad * full, n_agents)
    return Totals(
        good=grid_sum_by(agent, w * good_now * ~held, n_agents),
        good_held=grid_sum_by(agent, w * good_now * held, n_agents),
        bad=counted_bad_array(full_bad, *_light_bad(agent[light], group_key[light], bad[light], full_bad, n_orgs,
                                                    source_cap),
                              sum_by(agent, bad * discredited, n_agents), source_cap),
        reports=sum_by(agent, _heaviest_of_group(group_key, on_grid_array(w * recent * ~discredited), alone),
                       n_agents),
        independent=independent,
    )


def _light_bad(agent: np.ndarray, group_key: np.ndarray, bad: np.ndarray, full: np.ndarray, n_orgs: int,
               source_cap: float) -> tuple[np.ndarray, np.ndarray]:
    """Per agent, the weighted bad of the LIGHT pairs given (confirmation.counted_bad), summed, and the largest sum of
    one of its independence groups' (`group_key`: agent x n_orgs + group); that only where it can count, where their
    sum exceeds the `full` bad by more than `source_cap` (a group's is at most their sum), 0 elsewhere: sorting every
    pair by group took longer than the rest of the recompute's sums."""
    n_agents = len(full)
    light = sum_by(agent, bad, n_agents)
    top = np.zeros(n_agents)
    rows = np.flatnonzero((light > full + source_cap)[agent])
    if len(rows):
        order = rows[np.argsort(group_key[rows], kind="stable")]
        keys = group_key[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        # (sums of terms on the grid: exact in any order)
        np.maximum.at(top, keys[starts] // n_orgs, np.add.reduceat(bad[order], starts))
    return light, top


def _heaviest_of_group(group_key: np.ndarray, reports: np.ndarray, alone: np.ndarray) -> np.ndarray:
    """`reports` (per pair) but 0 for each pair other than the heaviest of its (agent, independence group): a group's
    reports count once. Those `alone` in their group are kept as they are; the rest, few, sorted."""
    shared = np.flatnonzero(~alone & (reports > 0))
    order = shared[np.lexsort((reports[shared], group_key[shared]))]  # by group key, then reports: heaviest last
    lighter = order[:-1][group_key[order[1:]] == group_key[order[:-1]]]
    out = reports.copy()
    out[lighter] = 0.0
    return out


def score_table(agents: tuple[str, ...], t: Totals, lift: np.ndarray, now: int, params: ScoringParams
                ) -> ScoreTable:
    """Scores from the totals and the (capped) vouch lift, with the caps applied."""
    p = params
    good = t.good + t.good_held
    scores = scores_of(p.prior_good + lift + good, p.prior_bad + t.bad, p.quantile)
    evidence = lift + good + t.bad
    return ScoreTable(
        agents=agents,
        scores=cap_scores(scores, t.reports, t.independent, p),
        confidence=evidence / (evidence + p.confidence_half),
        evidence=good + t.bad,
        independent_orgs=t.independent,
        computed_at=int(now),
    )
