"""A DP digest's cells count beyond the noise it declares only (vouching.dp_discount, DESIGN.md §6)."""

import math

from hypothesis import given
from hypothesis import strategies as st

from vouching.dp_discount import discounted, dp_threshold, tail
from vouching.evidence import MAX_EVENTS, Outcomes
from vouching.params import ScoringParams


@given(st.floats(1e-3, 50), st.floats(1e-12, 0.4))
def test_the_threshold_is_the_smallest_count_the_noise_reaches_at_most_at_the_false_alarm_rate(epsilon, rate):
    t = dp_threshold(epsilon, rate)
    alpha = math.exp(-epsilon / 2)
    assert t >= 1
    assert tail(alpha, t) <= rate < tail(alpha, t - 1)


def test_the_default_threshold_at_epsilon_1_is_13():
    assert dp_threshold(1.0, ScoringParams().dp_false_alarm) == 13


@given(st.floats(5e-324, 1e-18))
def test_a_tiny_epsilon_saturates_the_threshold(epsilon):
    assert dp_threshold(epsilon, 1e-3) == MAX_EVENTS


counts = st.integers(0, 2**62)


@given(st.tuples(counts, counts, counts, counts), st.tuples(counts, counts, counts, counts), st.integers(1, MAX_EVENTS))
def test_the_discount_takes_the_threshold_off_each_cell_and_keeps_the_high_risk_subset(outcomes, risky, threshold):
    high_risk = Outcomes(*(min(r, o) for r, o in zip(risky, outcomes)))
    out, high = discounted(Outcomes(*outcomes), high_risk, threshold)
    for name in ("ok", "error", "denied", "timeout"):
        assert getattr(high, name) <= getattr(out, name) <= getattr(Outcomes(*outcomes), name)
        assert getattr(high, name) == max(0, getattr(high_risk, name) - threshold)


def test_a_digest_declaring_a_tiny_epsilon_counts_nothing_not_only_no_failure():
    """Otherwise an org could declare an epsilon whose noise explains every failure of its agents, while their ok
    counts counted in full."""
    out, high = discounted(Outcomes(ok=10_000, denied=500), Outcomes(ok=100, denied=500), dp_threshold(1e-9, 1e-3))
    assert out == high == Outcomes()
