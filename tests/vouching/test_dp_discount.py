"""A DP digest's bad cells count beyond the noise it declares only (vouching.dp_discount, DESIGN.md §6)."""

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


@given(st.tuples(counts, counts, counts, counts), st.tuples(counts, counts, counts), st.integers(1, MAX_EVENTS))
def test_the_discount_keeps_ok_and_the_high_risk_subset(outcomes, risky, threshold):
    high_risk = Outcomes(0, *(min(r, o) for r, o in zip(risky, outcomes[1:])))
    out, high = discounted(Outcomes(*outcomes), high_risk, threshold)
    assert out.ok == outcomes[0]
    for name in ("error", "denied", "timeout"):
        assert getattr(high, name) <= getattr(out, name) <= getattr(Outcomes(*outcomes), name)
        assert getattr(high, name) == max(0, getattr(high_risk, name) - threshold)
