"""Agent evidence (DESIGN.md §6): outcome counts weighed into Beta pseudo-observations, capped per (org, agent,
window), decayed with separate half-lives for good and bad, and recent bad windows kept as "bad reports".

One `EvidenceStore` row ("pair") holds everything one org told this node about one agent; the node's own
first-hand observations are the pair of its own org, whose good counts at most C/2 a window. Columns are
`array.array`s so that a single update is a few Python operations; node.trust's recompute reads a numpy copy of them
(`frozen`), off the trio thread, and TrustEngine.recompute reads them in place.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, fields

import numpy as np

from vouching.grid import GRID, grid_floor, on_grid
from vouching.params import ScoringParams
from vouching.quantiles import source_cap

LN2 = math.log(2)
MAX_EVENTS = 2**63 - 1  # what a pair's `events` column holds


class InvalidEvidence(ValueError):
    """Evidence that breaks a rule of the model; the message names the field and the rule."""


@dataclass(frozen=True)
class Outcomes:
    """Counts of outcomes, as in a digest's `outcomes` and `high_risk` maps; `denied` is a policy violation."""

    ok: int = 0
    error: int = 0
    denied: int = 0
    timeout: int = 0

    def __post_init__(self) -> None:
        for name in _OUTCOME_NAMES:
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise InvalidEvidence(f"{name}: must be a non-negative integer, got {value!r}")

    @property
    def total(self) -> int:
        return self.ok + self.error + self.denied + self.timeout

    @property
    def failures(self) -> int:
        return self.error + self.denied + self.timeout


_OUTCOME_NAMES = tuple(f.name for f in fields(Outcomes))
NO_OUTCOMES = Outcomes()


@dataclass(frozen=True)
class Weighed:
    """A batch of outcomes as pseudo-observations: good, bad, and the part of bad that is violations."""

    good: float
    bad: float
    violation: float


def check_subset(outcomes: Outcomes, high_risk: Outcomes) -> None:
    """Raise InvalidEvidence unless `high_risk` is a subset of `outcomes`, outcome by outcome."""
    if high_risk is not NO_OUTCOMES:
        for name in _OUTCOME_NAMES:
            if getattr(high_risk, name) > getattr(outcomes, name):
                raise InvalidEvidence(f"high_risk.{name}: must not exceed outcomes.{name} (it is a subset)")


def weigh(outcomes: Outcomes, high_risk: Outcomes, params: ScoringParams) -> Weighed:
    """The pseudo-observations of a batch of outcomes whose high-risk subset is `high_risk`."""
    check_subset(outcomes, high_risk)
    violation = (params.violation_weight * (outcomes.denied - high_risk.denied)
                 + params.high_risk_violation_weight * high_risk.denied)
    bad = (violation + params.error_weight * (outcomes.error - high_risk.error)
           + params.high_risk_error_weight * high_risk.error + params.timeout_weight * outcomes.timeout)
    return Weighed(float(outcomes.ok), bad, violation)


def report_strength(good: float, bad: float, violation: float, params: ScoringParams) -> float:
    """How much a window with this evidence counts as a bad report: the violations' share of its evidence ramped
    from 0 at `bad_report_low` to 1 at `bad_report_high`, times the share of one violation's weight they reach.
    Errors alone never make a report: they may be the reporting org's own infrastructure failing."""
    total = good + bad
    if violation <= 0:
        return 0.0
    ramp = (violation / total - params.bad_report_low) / (params.bad_report_high - params.bad_report_low)
    return min(1.0, max(0.0, ramp)) * min(1.0, violation / params.violation_weight)


def report_strengths(good: np.ndarray, bad: np.ndarray, violation: np.ndarray, params: ScoringParams
                     ) -> np.ndarray:
    """`report_strength` over arrays."""
    total = good + bad
    share = np.divide(violation, total, out=np.zeros_like(total), where=total > 0)
    ramp = np.clip((share - params.bad_report_low) / (params.bad_report_high - params.bad_report_low), 0.0, 1.0)
    return ramp * np.minimum(1.0, violation / params.violation_weight)


def own_cap_good(params: ScoringParams) -> float:
    """The good this node's own observations count per cap window: C/2 (on the grid). A burst of events is one
    sample of how an agent behaves, not many, and one shorter than a window falls in two windows at most, so that
    no burst alone lifts an agent above provisional (C: vouching.quantiles.source_cap): trust takes evidence spread
    over at least three windows."""
    return grid_floor(source_cap(params) / 2)


def _scaled_to(good: float, bad: float, cap_good: float) -> tuple[float, float]:
    """Good and bad scaled by one factor (rounded to the grid) so that good is at most `cap_good`."""
    if good <= cap_good:
        return good, bad
    return cap_good, on_grid(bad * cap_good / good)


class EvidenceStore:
    """Per-(agent, org) accumulators. Long-term good/bad and committed bad reports are valued at the pair's
    `t_ref` (the latest evidence time) and decay from there; the current cap window is kept open."""

    def __init__(self, params: ScoringParams) -> None:
        self.params = params
        self.own_cap_good = own_cap_good(params)
        self.k_good = LN2 / params.good_half_life_ms
        self.k_bad = LN2 / params.bad_half_life_ms
        self.k_report = LN2 / params.report_half_life_ms
        self.agent = array("i")
        self.org = array("i")
        self.t_ref = array("d")
        self.good = array("d")
        self.bad = array("d")
        self.reports = array("d")
        self.window = array("q")
        self.win_good = array("d")  # counted (capped) evidence in the open window
        self.win_bad = array("d")
        self.win_raw_good = array("d")  # reported evidence in the open window: its bad share makes the report
        self.win_raw_bad = array("d")
        self.win_raw_violation = array("d")
        self.win_t = array("d")
        # The pair's last past window: the one it closed last or, first-hand, the one its latest late batch fell in,
        # the evidence reported in it, and the report it made and the time that is dated at (its latest batch's), so
        # that late batches of that window count under its cap and make its report anew of its totals.
        self.past_window = array("q")
        self.past_raw_good = array("d")
        self.past_raw_bad = array("d")
        self.past_raw_violation = array("d")
        self.past_report = array("d")
        self.past_t = array("d")
        self.batches = array("i")
        self.capped = array("i")
        self.ignored = array("i")
        self.events = array("q")
        self.first_hand = array("b")  # this node's own observations: full weight, `own_cap_good` a window

    def __len__(self) -> int:
        return len(self.agent)

    def new_pair(self, agent: int, org: int, *, first_hand: bool) -> int:
        self.agent.append(agent)
        self.org.append(org)
        self.first_hand.append(first_hand)
        for column in (self.t_ref, self.good, self.bad, self.reports, self.win_good, self.win_bad,
                       self.win_raw_good, self.win_raw_bad, self.win_raw_violation, self.win_t, self.past_raw_good,
                       self.past_raw_bad, self.past_raw_violation, self.past_report, self.past_t):
            column.append(0.0)
        self.window.append(-1)
        self.past_window.append(-1)
        for counter in (self.batches, self.capped, self.ignored):
            counter.append(0)
        self.events.append(0)
        return len(self.agent) - 1

    def add(self, pair: int, t: float, window: int, batch: Weighed, events: int, *, capped: bool) -> None:
        """Count a batch of evidence at time `t` in cap window `window`: another org's digest (`capped`) under the
        window's caps, a first-hand one under `_within_own_cap`. A first-hand pair's `batches` counts its epochs (its
        evidence is dated at an epoch's last instant: TrustEngine.add_first_hand): however the epoch's events came,
        in ingest batches, one by one at a restart or as its digest, it is one batch, as the node's digest of it is at
        a peer."""
        good, bad = batch.good, batch.bad
        if not (self.first_hand[pair] and self.batches[pair] and t == self.t_ref[pair]):
            self.batches[pair] += 1
        # Saturates: an org may report 2^53 - 1 events in each digest, and the column is int64.
        self.events[pair] = min(self.events[pair] + events, MAX_EVENTS)
        if window < self.window[pair]:
            if capped:  # an org's digests move forward in time; an older window may not refill its cap
                self.ignored[pair] += 1
                return
            # First-hand observations may arrive late (the node's digests coming back from peers after a restore from
            # an older copy): count them under their window's cap and report.
            g, b = self._within_past_cap(pair, window, batch, t)
            self._accumulate(pair, t, g, b)
            return
        if window > self.window[pair]:
            self._close_window(pair)
            self.window[pair] = window
        if capped:
            g, b = self._within_cap(pair, good, bad)
            if g < good or b < bad:
                self.capped[pair] += 1
        else:
            g, b = self._within_own_cap(pair, good, bad)
        self.win_good[pair] += g
        self.win_bad[pair] += b
        self.win_raw_good[pair] += good
        self.win_raw_bad[pair] += bad
        self.win_raw_violation[pair] += batch.violation
        self.win_t[pair] = max(self.win_t[pair], t)
        self._accumulate(pair, t, g, b)

    def _within_cap(self, pair: int, good: float, bad: float) -> tuple[float, float]:
        """What of a batch counts under the window's caps: the window's reported evidence scaled by one factor
        that keeps good within `cap_good` and bad within `cap_bad`, so that a busy agent's ratio of good to bad
        is kept (capping each alone would count a 3% error rate as two bad to one good), less what the window
        has counted already."""
        raw_good, raw_bad = self.win_raw_good[pair] + good, self.win_raw_bad[pair] + bad
        scale = min(1.0, self.params.cap_good / raw_good if raw_good > 0 else 1.0,
                    self.params.cap_bad / raw_bad if raw_bad > 0 else 1.0)
        return (max(0.0, raw_good * scale - self.win_good[pair]), max(0.0, raw_bad * scale - self.win_bad[pair]))

    def _within_own_cap(self, pair: int, good: float, bad: float) -> tuple[float, float]:
        """What a batch of first-hand evidence changes in what its window counts: the window's good, at most
        `own_cap_good`, and its bad scaled by the same factor, so that a busy agent's ratio is kept (DESIGN.md §6
        "capped per org and epoch"; README "Evidence"). Taken from the window's totals (on the grid), it is the same
        whatever order and batches the window's events came in, so that a restart, which counts the epoch's digest,
        changes nothing; the bad it adds is negative when more good scales the window down. The pair's `capped`
        counts the windows capped: it rises as a window's good first passes the cap."""
        before = self.win_raw_good[pair]
        g, b = _scaled_to(before + good, self.win_raw_bad[pair] + bad, self.own_cap_good)
        if before <= self.own_cap_good < before + good:
            self.capped[pair] += 1
        return g - self.win_good[pair], b - self.win_bad[pair]

    def _within_past_cap(self, pair: int, window: int, batch: Weighed, t: float) -> tuple[float, float]:
        """What a late batch of first-hand evidence at `t`, of a window before the open one, adds to good and bad:
        of the totals of its window so far if it is the pair's last past window (closed last, or that of the late
        batches before it), else of a window of its own, its good and bad as `_within_own_cap` takes them; and the
        window's report made anew of its totals (`_restate_report`), so that a window makes one report, the one its
        batches make in order. Each late batch under a cap and a report of its own, 60 one-minute digests of one hour
        coming back after a restore counted 61 good where a restart, replaying them in order, counted 2.66, and 60
        reports where it counted one."""
        if window != self.past_window[pair]:
            self.past_window[pair] = window
            self.past_raw_good[pair] = self.past_raw_bad[pair] = self.past_raw_violation[pair] = 0.0
            self.past_report[pair] = self.past_t[pair] = 0.0
        before = self.past_raw_good[pair], self.past_raw_bad[pair], self.past_raw_violation[pair]
        after = before[0] + batch.good, before[1] + batch.bad, before[2] + batch.violation
        self.past_raw_good[pair], self.past_raw_bad[pair], self.past_raw_violation[pair] = after
        g_before, b_before = _scaled_to(before[0], before[1], self.own_cap_good)
        g, b = _scaled_to(after[0], after[1], self.own_cap_good)
        if before[0] <= self.own_cap_good < after[0]:
            self.capped[pair] += 1
        self._restate_report(pair, report_strength(*after, self.params), t)
        return g - g_before, b - b_before

    def _restate_report(self, pair: int, strength: float, t: float) -> None:
        """Make the pair's last past window's report `strength`, dated at the later of `t` and the time its report
        was dated at, as in order a window's report is dated at its latest batch (`win_t`): the report it made is
        taken back as it has decayed since. Kept the strongest its batches made, a window whose first minute held a
        violation and the 59 after five ok events each made a report of 1 where the restart, of its totals, made
        none (and 0.4 caps a score below trusted)."""
        made, made_t = self.past_report[pair], self.past_t[pair]
        t = max(t, made_t)
        self.past_report[pair], self.past_t[pair] = strength, t
        if made or strength:
            self._bring_to(pair, t)
            t_ref = self.t_ref[pair]
            self.reports[pair] = max(0.0, self.reports[pair] - made * math.exp(-(t_ref - made_t) * self.k_report)
                                     + strength * math.exp(-(t_ref - t) * self.k_report))

    def open_report(self, pair: int) -> float:
        """The bad-report strength of the pair's open window (not yet decayed)."""
        return report_strength(self.win_raw_good[pair], self.win_raw_bad[pair], self.win_raw_violation[pair],
                               self.params)

    def _close_window(self, pair: int) -> None:
        if self.window[pair] >= 0:
            self.past_report[pair], self.past_t[pair] = self.open_report(pair), self.win_t[pair]
            self._commit_report(pair, self.past_report[pair], self.win_t[pair])
            self.past_window[pair] = self.window[pair]
            self.past_raw_good[pair], self.past_raw_bad[pair] = self.win_raw_good[pair], self.win_raw_bad[pair]
            self.past_raw_violation[pair] = self.win_raw_violation[pair]
        for column in (self.win_good, self.win_bad, self.win_raw_good, self.win_raw_bad, self.win_raw_violation,
                       self.win_t):
            column[pair] = 0.0

    def _commit_report(self, pair: int, strength: float, t: float) -> None:
        if strength > 0:
            self._bring_to(pair, t)
            self.reports[pair] += strength * math.exp(-(self.t_ref[pair] - t) * self.k_report)

    def _accumulate(self, pair: int, t: float, good: float, bad: float) -> None:
        self._bring_to(pair, t)
        lag = self.t_ref[pair] - t
        self.good[pair] += good * math.exp(-lag * self.k_good)
        # (At least 0: a first-hand window scaled down by more good takes back bad it counted, since decayed.)
        self.bad[pair] = max(0.0, self.bad[pair] + bad * math.exp(-lag * self.k_bad))

    def _bring_to(self, pair: int, t: float) -> None:
        """Move the pair's reference time forward to `t`, decaying what it holds. First-hand good and bad are taken
        to the grid as they decay: the batches added at one time then sum exactly, so that an epoch's events added
        as they came make what its digest adds at once (TrustEngine.add_own_epoch), bit for bit."""
        step = t - self.t_ref[pair]
        if step > 0:
            good, bad = self.good[pair] * math.exp(-step * self.k_good), self.bad[pair] * math.exp(-step * self.k_bad)
            if self.first_hand[pair]:  # (grid.on_grid, inline: an epoch's first batch of each agent comes here)
                good, bad = round(good * GRID) / GRID, round(bad * GRID) / GRID
            self.good[pair], self.bad[pair] = good, bad
            self.reports[pair] *= math.exp(-step * self.k_report)
            self.t_ref[pair] = t

    def column(self, name: str) -> np.ndarray:
        """A numpy view (no copy) of one column. While a view lives the column cannot grow: keep views local."""
        return np.asarray(getattr(self, name))

    def frozen(self, columns: dict[str, np.ndarray]) -> EvidenceStore:
        """A store holding `columns` (a numpy copy of this one's, see `arrays.ColumnsCopy`) for the full
        recompute to read off the trio thread; it cannot take evidence."""
        copy = EvidenceStore(self.params)
        vars(copy).update(columns)
        return copy
