"""Agent behaviour models for the trust simulation: what an agent does when an org interacts with it.

An outcome is one of OK, ERROR, DENIED (a policy violation) or TIMEOUT, the digest's outcome keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OK, ERROR, DENIED, TIMEOUT = 0, 1, 2, 3
OUTCOMES = ("ok", "error", "denied", "timeout")


@dataclass(frozen=True)
class Behaviour:
    """Outcome probabilities (ok, error, denied, timeout) of a well-behaved and of a misbehaving agent; `bad_in`
    says in which rounds it misbehaves."""

    name: str
    good: tuple[float, float, float, float] = (0.96, 0.03, 0.0, 0.01)
    bad: tuple[float, float, float, float] = (0.05, 0.15, 0.8, 0.0)

    def misbehaves(self, round_: int) -> bool:
        return False

    def outcome(self, round_: int, rng: np.random.Generator) -> int:
        return draw(self.bad if self.misbehaves(round_) else self.good, rng)

    @property
    def malicious(self) -> bool:
        """Ground truth for the metrics: does this agent ever misbehave on purpose?"""
        return True


@dataclass(frozen=True)
class Honest(Behaviour):
    name: str = "honest"

    @property
    def malicious(self) -> bool:
        return False


@dataclass(frozen=True)
class Malicious(Behaviour):
    """Always misbehaves (EigenTrust threat models A and B)."""

    name: str = "malicious"

    def misbehaves(self, round_: int) -> bool:
        return True


@dataclass(frozen=True)
class Camouflage(Behaviour):
    """Behaves well with probability `f` per interaction (EigenTrust threat model C)."""

    name: str = "camouflage"
    f: float = 0.5

    def outcome(self, round_: int, rng: np.random.Generator) -> int:
        return draw(self.good if rng.random() < self.f else self.bad, rng)


@dataclass(frozen=True)
class TurnedBad(Behaviour):
    """Behaves well until round `at`, then misbehaves for good."""

    name: str = "turned-bad"
    at: int = 0

    def misbehaves(self, round_: int) -> bool:
        return round_ >= self.at


@dataclass(frozen=True)
class OnOff(Behaviour):
    """Alternates `on` rounds of good behaviour with `off` rounds of misbehaviour, starting `phase` rounds in."""

    name: str = "on-off"
    on: int = 6
    off: int = 2
    phase: int = 0

    def misbehaves(self, round_: int) -> bool:
        return (round_ + self.phase) % (self.on + self.off) >= self.on


def draw(probabilities: tuple[float, float, float, float], rng: np.random.Generator) -> int:
    """One outcome drawn from its probabilities (rng.choice is far slower for a single draw)."""
    u = rng.random()
    for outcome, p in enumerate(probabilities):
        u -= p
        if u < 0:
            return outcome
    return OK


@dataclass(frozen=True)
class Whitewasher(Behaviour):
    """Behaves well, and once its identity has been trusted for a while discards it for a fresh one; with
    `exploit` > 0 it first misbehaves for that many rounds (the runner keeps that state per identity)."""

    name: str = "whitewasher"
    exploit: int = 0

    @property
    def malicious(self) -> bool:
        return self.exploit > 0
