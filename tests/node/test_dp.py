"""Differential privacy: the noise has the declared two-sided geometric distribution, and noisy digests keep
the digest's invariants. Statistical checks use fixed seeds and a Pearson chi-square test at significance 1e-4,
and show that the same test rejects a distribution whose epsilon is off by 20%."""

import math
import random

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from node.dp import _largest_remainders, geometric_alpha, noisy_counts, two_sided_geometric
from vouching.bodies import CATEGORIES, OUTCOMES
from vouching.params import ScoringParams

from tests.vouching.trust_world import World

Z_1E4 = 3.719  # the standard normal quantile for an upper tail of 1e-4


def pmf(k: int, alpha: float) -> float:
    return (1 - alpha) / (1 + alpha) * alpha ** abs(k)


def chi_square_critical(df: int) -> float:
    """The chi-square quantile for an upper tail of 1e-4 (Wilson-Hilferty; within 1% for df >= 3)."""
    return df * (1 - 2 / (9 * df) + Z_1E4 * math.sqrt(2 / (9 * df))) ** 3


def chi_square(samples: list[int], alpha: float, bound: int) -> tuple[float, int]:
    """Pearson's statistic of samples against the declared pmf, bins -bound..bound and the two tails."""
    n = len(samples)
    observed = {k: 0 for k in range(-bound - 1, bound + 2)}
    for x in samples:
        observed[max(-bound - 1, min(bound + 1, x))] += 1
    tail = alpha ** (bound + 1) / (1 + alpha)  # P(X > bound) = P(X < -bound)
    expected = {k: n * pmf(k, alpha) for k in range(-bound, bound + 1)} | {-bound - 1: n * tail, bound + 1: n * tail}
    statistic = sum((observed[k] - expected[k]) ** 2 / expected[k] for k in observed)
    return statistic, len(observed) - 1


def test_the_declared_pmf_sums_to_one():
    alpha = geometric_alpha(1.0)
    assert math.isclose(sum(pmf(k, alpha) for k in range(-200, 201)), 1.0, rel_tol=1e-12)


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 3.0])
def test_the_noise_has_the_declared_distribution(epsilon):
    alpha = geometric_alpha(epsilon)
    rng = random.Random(7)
    samples = [two_sided_geometric(rng, alpha) for _ in range(100_000)]
    bound = max(3, round(math.log(0.001) / math.log(alpha)))  # tails past this hold < 0.1% of the mass
    statistic, df = chi_square(samples, alpha, bound)
    assert statistic < chi_square_critical(df)
    wrong = geometric_alpha(epsilon * 1.2)
    statistic, df = chi_square(samples, wrong, bound)
    assert statistic > chi_square_critical(df), "the test is too weak to tell epsilon from 1.2 * epsilon"
    variance = 2 * alpha / (1 - alpha) ** 2
    mean = sum(samples) / len(samples)
    assert abs(mean) < 5 * math.sqrt(variance / len(samples))


def test_each_digest_cell_carries_noise_at_half_epsilon():
    """Far from zero nothing is clamped: a published count minus the true count is one cell's noise."""
    rng = random.Random(11)
    outcomes = {"ok": 5000, "error": 3000, "denied": 2000, "timeout": 1000}
    high_risk = {"ok": 1000, "error": 900, "denied": 800, "timeout": 700}
    categories = {c: 2000 for c in CATEGORIES[:5]} | {CATEGORIES[5]: 1000}
    alpha = geometric_alpha(0.8)
    samples = [noisy_counts(outcomes, high_risk, categories, epsilon=0.8, rng=rng).high_risk["denied"] - 800
               for _ in range(20_000)]
    statistic, df = chi_square(samples, alpha, 10)
    assert statistic < chi_square_critical(df)


counts = st.integers(0, 50)


@given(st.fixed_dictionaries({o: counts for o in OUTCOMES}), st.fixed_dictionaries({o: counts for o in OUTCOMES}),
       st.lists(counts, min_size=len(CATEGORIES), max_size=len(CATEGORIES)),
       st.floats(0.01, 10), st.integers(0, 2**32))
def test_noisy_counts_keep_the_digest_invariants(outcomes, extra, category_weights, epsilon, seed):
    outcomes = {o: outcomes[o] + extra[o] for o in OUTCOMES}
    high_risk = {o: extra[o] for o in OUTCOMES}
    total = sum(outcomes.values())
    categories = dict(zip(CATEGORIES, _largest_remainders(category_weights, total) if sum(category_weights)
                          else [total if c == "other" else 0 for c in CATEGORIES]))
    noisy = noisy_counts(outcomes, high_risk, categories, epsilon=epsilon, rng=random.Random(seed))
    assert all(v >= 0 for part in (noisy.outcomes, noisy.high_risk, noisy.categories) for v in part.values())
    assert all(noisy.high_risk[o] <= noisy.outcomes[o] for o in OUTCOMES)
    assert sum(noisy.categories.values()) == sum(noisy.outcomes.values())


@given(st.floats(min_value=0, exclude_min=True), st.integers(0, 2**32))
@example(1e-17, 0)
@example(1500.0, 0)
def test_an_epsilon_is_refused_by_name_or_its_noise_drawn(epsilon, seed):
    """Past about 1490, exp(-epsilon / 2) is 0 and a draw took log(0); below about 1.2e-16 it is 1 and a draw
    divided by log(1): the node's first digests failed with a math error, and again at every start."""
    try:
        geometric_alpha(epsilon)
    except ValueError as error:
        assert str(error).startswith("epsilon: must be a number from")
        return
    one = {o: int(o == "ok") for o in OUTCOMES}
    noisy = noisy_counts(one, dict.fromkeys(OUTCOMES, 0), {c: int(c == "tool") for c in CATEGORIES}, epsilon=epsilon,
                         rng=random.Random(seed))
    assert sum(noisy.outcomes.values()) < 2**63  # what a digest's events holds


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=8).filter(any), st.integers(0, 10_000))
def test_largest_remainders_split_a_total_proportionally(weights, total):
    shares = _largest_remainders(weights, total)
    assert sum(shares) == total
    whole = sum(weights)
    assert all(abs(share - w * total / whole) < 1 for share, w in zip(shares, weights))


@pytest.mark.parametrize("epsilon", [0.0, -1.0, math.inf, math.nan])
def test_epsilon_must_be_positive_and_finite(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        geometric_alpha(epsilon)


def test_a_clean_agent_s_dp_digests_do_not_make_it_a_violator_at_peers():
    """Each noisy cell is clamped at 0, so an empty one comes out about alpha / (1 - alpha^2) high on average
    (0.96 at epsilon = 1), and scoring weighs a violation 10 (20 if high-risk) against 1 for an ok: a day of digests
    of an agent doing 50 ok an hour, noised at epsilon = 1, is read by a peer as a day of policy violations, and
    the agent would fall below trusted there. Scoring judges a DP digest's bad cells against the noise it declares
    (vouching.dp_discount), so DP does not turn an org's clean agents into violators."""
    rng = random.Random(7)
    zero = dict.fromkeys(OUTCOMES, 0)
    clean = World(orgs=1)
    noised = World(orgs=1)
    for hour in range(24):
        noisy = noisy_counts({**zero, "ok": 50}, zero, {**dict.fromkeys(CATEGORIES, 0), "tool": 50}, epsilon=1.0,
                             rng=rng)
        clean.digest("org0", "a", hour, ok=50)
        noised.digest("org0", "a", hour, dp_epsilon=1.0, **noisy.outcomes,
                      **{f"hr_{k}": v for k, v in noisy.high_risk.items()})
    assert noised.engine.explain("a", now=noised.now).recent_bad_reports < ScoringParams().reports_below_trusted
    assert noised.tier("a") == clean.tier("a")


def test_a_violator_s_dp_digests_still_make_it_one_at_peers():
    """The discount hides what the declared noise explains, not a day of 30 denials an hour."""
    rng = random.Random(11)
    zero = dict.fromkeys(OUTCOMES, 0)
    noised = World(orgs=1)
    for hour in range(24):
        noisy = noisy_counts({**zero, "ok": 50, "denied": 30}, zero, {**dict.fromkeys(CATEGORIES, 0), "tool": 80},
                             epsilon=1.0, rng=rng)
        noised.digest("org0", "a", hour, dp_epsilon=1.0, **noisy.outcomes,
                      **{f"hr_{k}": v for k, v in noisy.high_risk.items()})
    assert noised.engine.explain("a", now=noised.now).recent_bad_reports >= ScoringParams().reports_below_trusted
    assert noised.tier("a") not in ("trusted", "verified")
