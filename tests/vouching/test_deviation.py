"""The deviation test's verdicts and counts (DESIGN.md §6) are the same whether it keeps a batch's counts in three
int64 columns and takes its batches all at once, as it did, or packs them into one and takes RETEST_ROWS batches at
a time, as it does to hold less."""

import math
from array import array

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import vouching.deviation
from vouching.arrays import distinct, grid_sum_by
from vouching.deviation import _DISAGREES, _UNTESTED, _WINDOW_BITS, PACK_BITS, DeviationTest, _member
from vouching.evidence import MAX_EVENTS, InvalidEvidence
from vouching.params import DAY_MS, ScoringParams


class AllAtOnce(DeviationTest):
    """The deviation test as it was: a batch's counts in three int64 columns, and every batch to test, and every
    verdict to count, in one pass."""

    def __init__(self, params: ScoringParams) -> None:
        super().__init__(params)
        self.events, self.failures, self.violations = array("q"), array("q"), array("q")

    def append(self, agent: int, org: int, window: int, t: float, events: int, failures: int,
               violations: int) -> None:
        super().append(agent, org, window, t, events, failures, violations)
        self.events.append(events)
        self.failures.append(failures)
        self.violations.append(violations)

    def _counts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        events, failures, violations = (np.frombuffer(getattr(self, name), dtype=np.int64).astype(np.float64)[rows]
                                        for name in ("events", "failures", "violations"))
        return events, failures, violations

    def counts(self, n_orgs: int, is_reference: np.ndarray, tested: np.ndarray, now: float
               ) -> tuple[np.ndarray, np.ndarray]:
        if len(self.key) == 0:
            return np.zeros(n_orgs), np.zeros(n_orgs)
        self._retest(is_reference)
        verdict = np.frombuffer(self.verdict, dtype=np.int8)
        org = np.frombuffer(self.org, dtype=np.int32)
        rows = np.flatnonzero(verdict != _UNTESTED)
        rows = rows[tested[org[rows]]]
        age = np.maximum(0.0, now - np.frombuffer(self.t)[rows])
        fade = np.exp(-age * (math.log(2) / self.params.bad_half_life_ms))
        disagrees = verdict[rows] == _DISAGREES
        return (grid_sum_by(org[rows], fade * ~disagrees, n_orgs), grid_sum_by(org[rows], fade * disagrees, n_orgs))

    def _retest(self, is_reference: np.ndarray) -> None:
        key = np.frombuffer(self.key, dtype=np.int64)
        org = np.frombuffer(self.org, dtype=np.int32)
        reference = is_reference[org]
        ref_keys, inverse = np.unique(key[reference], return_inverse=True)
        sums = [np.concatenate([[0.0], np.cumsum(np.bincount(inverse, weights=column, minlength=len(ref_keys)))])
                for column in self._counts(reference)]
        reach = self.params.deviation_window_ms // self.params.cap_window_ms
        agent = key >> _WINDOW_BITS
        start = self._tested_upto
        rows = start + np.flatnonzero(~reference[start:])
        rows = rows[_member(agent[rows], ref_keys >> _WINDOW_BITS)]
        changed = distinct(key[start:][reference[start:]])
        if len(changed) and start:
            old = np.flatnonzero(~reference[:start])
            old = old[_member(agent[old], changed >> _WINDOW_BITS)]
            near = (np.searchsorted(changed, key[old] + reach, side="right")
                    > np.searchsorted(changed, key[old] - reach, side="left"))
            rows = np.concatenate([old[near], rows])
        if len(rows):
            low = np.searchsorted(ref_keys, key[rows] - reach, side="left")
            high = np.searchsorted(ref_keys, key[rows] + reach, side="right")
            n_ref, k_ref, v_ref = (s[high] - s[low] for s in sums)
            np.frombuffer(self.verdict, dtype=np.int8)[rows] = self._verdicts(rows, n_ref, k_ref, v_ref)
        self._tested_upto = len(key)


ORGS = 4  # 0 and 1 are the reference
# (agent, org, window, events, failures, violations): failures and violations are cut to at most events. Windows
# near 0 or near the last reach into the neighbouring agent's keys (agent << 40 | window).
windows = st.integers(0, 30) | st.integers((1 << _WINDOW_BITS) - 30, (1 << _WINDOW_BITS) - 1)
# Counts up to 12, about the largest packed three to an int64 (2^21 - 1), and far beyond it.
counts = st.integers(0, 12) | st.integers((1 << PACK_BITS) - 2, (1 << PACK_BITS) + 1) | st.integers(0, 1 << 40)
batch = st.tuples(st.integers(0, 3), st.integers(0, ORGS - 1), windows, counts, counts, counts)


# 200 examples: with the agent check below taken out of _retest and without this @example, seeds 1 and 2 found it
# after 69 and 106 passing examples.
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
# A reference batch of agent 1 at window 1 is near agent 0's last windows by key, but not of agent 0: agent 0's
# batch keeps its verdict (AGREES); re-tested, it would count agent 1's violations as agent 0's (DISAGREES).
@example([[(0, 2, (1 << _WINDOW_BITS) - 2, 10, 0, 0), (0, 0, (1 << _WINDOW_BITS) - 2, 10, 0, 0)],
          [(1, 0, 1, 12, 12, 12)]], 3, DAY_MS)
@given(st.lists(st.lists(batch, max_size=30), min_size=1, max_size=4), st.integers(1, 9), st.integers(0, 10 * DAY_MS))
def test_packed_counts_taken_a_few_batches_at_a_time_give_the_verdicts_and_counts_of_one_pass(rounds, rows, now):
    params = ScoringParams(deviation_window_ms=DAY_MS // 2)  # 12 windows: batches near and far, other agents' too
    is_reference, tested = np.arange(ORGS) < 2, np.arange(ORGS) >= 2
    original, vouching.deviation.RETEST_ROWS = vouching.deviation.RETEST_ROWS, rows
    try:
        chunked, whole = DeviationTest(params), AllAtOnce(params)
        for appended in rounds:
            for agent, org, window, events, failures, violations in appended:
                for test in (chunked, whole):
                    test.append(agent, org, window, float(window * params.cap_window_ms), events,
                                min(failures, events), min(violations, failures, events))
            counted = [test.counts(ORGS, is_reference, tested, float(now)) for test in (chunked, whole)]
            assert bytes(chunked.verdict) == bytes(whole.verdict)
            assert all(np.array_equal(a, b) for a, b in zip(*counted))
    finally:
        vouching.deviation.RETEST_ROWS = original


def test_a_batch_of_more_events_than_int64_holds_is_refused_and_the_test_goes_on():
    """It raised OverflowError with its key, org and time appended and its counts not: every later recompute read
    columns of different lengths."""
    test = DeviationTest(ScoringParams())
    test.append(0, 1, 0, 0.0, 5, 0, 0)
    try:
        test.append(0, 2, 0, 0.0, MAX_EVENTS + 1, 0, 0)
    except InvalidEvidence as error:
        assert "outcomes" in str(error)
    else:
        raise AssertionError("appended")
    assert len(test) == len(test.counts_packed) == 1
    test.append(0, 2, 0, 0.0, MAX_EVENTS, 1, 1)
    assert [column.tolist() for column in test._counts(np.arange(2))] == [[5, float(MAX_EVENTS)], [0, 1], [0, 1]]
