"""Token buckets per peer or org: burst, refill, all-or-nothing takes, and memory that stays bounded."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossip.ratelimit import TokenBuckets


def test_a_new_key_may_burst_then_waits_for_the_refill() -> None:
    buckets = TokenBuckets[str](rate=10, burst=5)
    assert [buckets.try_take("peer", now=0.0) for _ in range(6)] == [True] * 5 + [False]
    assert buckets.wait_time("peer", 1, now=0.0) == pytest.approx(0.1)
    assert not buckets.try_take("peer", now=0.05)
    assert buckets.try_take("peer", now=0.1)
    assert buckets.tokens("other", now=0.1) == 5


def test_a_take_that_fails_takes_nothing() -> None:
    buckets = TokenBuckets[str](rate=1, burst=10)
    assert buckets.try_take("org", now=0.0, amount=7)
    assert not buckets.try_take("org", now=0.0, amount=4)
    assert buckets.tokens("org", now=0.0) == 3
    assert buckets.wait_time("org", 11, now=0.0) == float("inf")


def test_taking_from_several_keys_is_all_or_nothing() -> None:
    buckets = TokenBuckets[str](rate=1, burst=10)
    buckets.try_take("b", now=0.0, amount=8)
    assert buckets.try_take_all({"a": 5, "b": 5, "c": 1}, now=0.0) == "b"
    assert (buckets.tokens("a", 0.0), buckets.tokens("b", 0.0), buckets.tokens("c", 0.0)) == (10, 2, 10)
    assert buckets.try_take_all({"a": 5, "b": 2}, now=0.0) is None
    assert (buckets.tokens("a", 0.0), buckets.tokens("b", 0.0)) == (5, 0)
    with pytest.raises(ValueError, match="negative amount"):
        buckets.try_take("a", now=0.0, amount=-1)


def test_buckets_that_refilled_are_forgotten() -> None:
    buckets = TokenBuckets[int](rate=100, burst=100)
    for peer in range(1000):
        buckets.try_take(peer, now=peer * 0.001, amount=50)
    assert 499 <= len(buckets) <= 501  # each bucket is full again 0.5 s after its take: the last 0.5 s remain
    buckets.try_take(-1, now=10.0)
    assert len(buckets) == 1


def test_memory_is_bounded_even_when_every_key_is_busy() -> None:
    buckets = TokenBuckets[int](rate=0.001, burst=1, max_keys=100)
    for org in range(10_000):
        assert buckets.try_take(org, now=0.0)
    assert len(buckets) == 100


operations = st.lists(
    st.tuples(st.integers(0, 4), st.floats(0, 2), st.floats(0, 6, allow_nan=False)), max_size=80
)


@given(operations)
def test_forgetting_never_changes_a_verdict_while_keys_fit(steps: list[tuple[int, float, float]]) -> None:
    """Against a model that remembers every bucket forever: the same answers, with at most max_keys remembered."""
    buckets = TokenBuckets[int](rate=3, burst=5, max_keys=5)
    model: dict[int, tuple[float, float]] = {}
    now = 0.0
    for key, step, amount in steps:
        now += step
        tokens, since = model.get(key, (5.0, now))
        tokens = min(5.0, tokens + (now - since) * 3)
        expected = amount <= tokens
        model[key] = (tokens - amount if expected else tokens, now)
        assert buckets.try_take(key, now, amount) == expected
        assert len(buckets) <= 5
