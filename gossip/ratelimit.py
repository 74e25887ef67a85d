"""Token buckets per key (a peer, an issuing org) with bounded memory. Pure: the caller passes the time.

A bucket holds up to `burst` tokens and refills at `rate` per second; taking more than it holds fails and takes
nothing. A bucket that has refilled to full is the same as a new one, so it is forgotten; beyond `max_keys`
buckets the least recently used is forgotten even if not full (its key then starts again with a full bucket).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TokenBuckets(Generic[K]):
    """One token bucket per key, all with the same rate (tokens per second) and size (`burst` tokens)."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 10_000) -> None:
        if not rate > 0 or not burst > 0:
            raise ValueError(f"rate ({rate}) and burst ({burst}) must be positive")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, tuple[float, float]] = OrderedDict()  # key -> (tokens, as of), oldest use first

    def __len__(self) -> int:
        """Buckets remembered (keys seen recently whose bucket is not known to be full again)."""
        return len(self._buckets)

    def tokens(self, key: K, now: float) -> float:
        """Tokens `key` could take at `now`."""
        entry = self._buckets.get(key)
        if entry is None:
            return self.burst
        tokens, since = entry
        return min(self.burst, tokens + max(0.0, now - since) * self.rate)

    def wait_time(self, key: K, amount: float, now: float) -> float:
        """Seconds from `now` until `key` can take `amount` tokens (0 if it can now; inf if amount > burst)."""
        if amount > self.burst:
            return float("inf")
        return max(0.0, amount - self.tokens(key, now)) / self.rate

    def try_take(self, key: K, now: float, amount: float = 1.0) -> bool:
        """Take `amount` tokens from `key`'s bucket if it holds them; False (taking nothing) if not."""
        return self.try_take_all({key: amount}, now) is None

    def try_take_all(self, amounts: Mapping[K, float], now: float) -> K | None:
        """Take every amount from its key's bucket, or none of them: returns None, or the first key short of tokens."""
        available = {key: self.tokens(key, now) for key in amounts}
        for key, amount in amounts.items():
            if amount < 0:
                raise ValueError(f"cannot take a negative amount ({amount}) of tokens")
            if amount > available[key]:
                return key
        for key, amount in amounts.items():
            self._buckets[key] = (available[key] - amount, now)
            self._buckets.move_to_end(key)
        self._forget(now)
        return None

    def _forget(self, now: float) -> None:
        """Drop buckets from the least recently used end while they are full again, then down to max_keys."""
        while self._buckets:
            key, (tokens, since) = next(iter(self._buckets.items()))
            if len(self._buckets) <= self.max_keys and tokens + (now - since) * self.rate < self.burst:
                return
            del self._buckets[key]
