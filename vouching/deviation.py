"""The deviation test (DESIGN.md §6): an org whose digests contradict what this node and its trust roots observed
of the same agent at about the same time loses credibility.

A digest is tested against the reference evidence (this node's first-hand observations and its roots' digests)
about the same agent in the same cap window or a neighbouring one. It disagrees when its failure count is
implausible under the reference: more than `deviation_z` standard deviations of the beta-binomial predictive
from the reference failure rate. Verdicts decay like bad evidence. Both lies (slander) and praise of agents the
reference saw fail (ballot-stuffing) disagree.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from vouching.arrays import sum_by

from vouching.params import ScoringParams


class OutcomeLog:
    """Every batch of outcomes this node counted, one row each: who reported it, about whom, when, how many
    events and how many of them failed."""

    def __init__(self) -> None:
        self.agent = array("i")
        self.org = array("i")
        self.window = array("q")
        self.t = array("d")
        self.events = array("q")
        self.failures = array("q")

    def __len__(self) -> int:
        return len(self.agent)

    def append(self, agent: int, org: int, window: int, t: float, events: int, failures: int) -> None:
        self.agent.append(agent)
        self.org.append(org)
        self.window.append(window)
        self.t.append(t)
        self.events.append(events)
        self.failures.append(failures)


def deviation_counts(log: OutcomeLog, n_orgs: int, is_reference: np.ndarray, tested: np.ndarray, now: float,
                     params: ScoringParams) -> tuple[np.ndarray, np.ndarray]:
    """(agreements, disagreements) per org, each verdict decayed with the bad-evidence half-life."""
    agree = np.zeros(n_orgs)
    disagree = np.zeros(n_orgs)
    if len(log) == 0:
        return agree, disagree
    agent = np.frombuffer(log.agent, dtype=np.int32).astype(np.int64)
    org = np.frombuffer(log.org, dtype=np.int32)
    window = np.frombuffer(log.window, dtype=np.int64)
    events = np.frombuffer(log.events, dtype=np.int64).astype(np.float64)
    failures = np.frombuffer(log.failures, dtype=np.int64).astype(np.float64)
    t = np.frombuffer(log.t, dtype=np.float64)

    w_min = int(window.min())
    span = int(window.max()) - w_min + 3  # room for the neighbouring windows on both sides
    if (int(agent.max()) + 1) * span >= 2**62:
        raise ValueError("cap_window_ms: too small for the time span of the evidence")
    ref = is_reference[org]
    ref_key = agent[ref] * span + (window[ref] - w_min + 1)
    keys, inverse = np.unique(ref_key, return_inverse=True)
    ref_events = np.bincount(inverse, weights=events[ref], minlength=len(keys))
    ref_failures = np.bincount(inverse, weights=failures[ref], minlength=len(keys))

    rows = np.flatnonzero(tested[org] & (events > 0))
    n_ref = np.zeros(len(rows))
    k_ref = np.zeros(len(rows))
    if len(keys):
        base = agent[rows] * span + (window[rows] - w_min + 1)
        for offset in (-1, 0, 1):
            key = base + offset
            at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
            hit = keys[at] == key
            n_ref += np.where(hit, ref_events[at], 0.0)
            k_ref += np.where(hit, ref_failures[at], 0.0)
    enough = n_ref >= params.deviation_min_reference
    rows, n_ref, k_ref = rows[enough], n_ref[enough], k_ref[enough]
    n = events[rows]
    rate = (k_ref + 0.5) / (n_ref + 1.0)
    variance = n * rate * (1 - rate) * (n_ref + 1.0 + n) / (n_ref + 2.0)
    deviates = np.abs(failures[rows] - n * rate) > params.deviation_z * np.sqrt(variance) + 0.5
    fade = np.exp(-np.maximum(0.0, now - t[rows]) * (math.log(2) / params.bad_half_life_ms))
    agree += sum_by(org[rows], fade * ~deviates, n_orgs)
    disagree += sum_by(org[rows], fade * deviates, n_orgs)
    return agree, disagree


def credibility(agree: np.ndarray, disagree: np.ndarray, params: ScoringParams) -> np.ndarray:
    """((agreements + a) / (agreements + disagreements + a + b)) ** exponent, per org."""
    a, b = params.credibility_prior_agree, params.credibility_prior_disagree
    return ((agree + a) / (agree + disagree + a + b)) ** params.credibility_exponent
