"""The deviation test (DESIGN.md §6): an org whose digests contradict what this node and its trust roots observed
of the same agent at about the same time loses credibility.

A digest is tested against the reference evidence (this node's first-hand observations and its roots' digests)
about the same agent in the same cap window or a neighbouring one. It disagrees when its failure count is
implausible under the reference: more than `deviation_z` standard deviations of the beta-binomial predictive
from the reference failure rate. Verdicts decay like bad evidence. Both lies (slander) and praise of agents the
reference saw fail (ballot-stuffing) disagree. Verdicts are kept, and a batch is re-tested only when reference
evidence for its agent and window arrives, so a refresh costs what changed, not what was ever seen.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from vouching.arrays import sum_by
from vouching.evidence import InvalidEvidence
from vouching.params import ScoringParams

_WINDOW_BITS = 40  # key = agent << 40 | window
_UNTESTED, _AGREES, _DISAGREES = 0, 1, 2


class DeviationTest:
    """Every batch of outcomes this node counted (who reported it, about which agent and window, how many events
    and failures) and each batch's latest verdict."""

    def __init__(self, params: ScoringParams) -> None:
        self.params = params
        self.key = array("q")
        self.org = array("i")
        self.t = array("d")
        self.events = array("q")
        self.failures = array("q")
        self.verdict = array("b")
        self._tested_upto = 0  # batches before this one have verdicts against the reference as it then was

    def __len__(self) -> int:
        return len(self.key)

    def append(self, agent: int, org: int, window: int, t: float, events: int, failures: int) -> None:
        if window >= 1 << _WINDOW_BITS:
            raise InvalidEvidence(f"epoch: window {window} is beyond the year 30000 at this cap_window_ms")
        self.key.append(agent << _WINDOW_BITS | window)
        self.org.append(org)
        self.t.append(t)
        self.events.append(events)
        self.failures.append(failures)
        self.verdict.append(_UNTESTED)

    def counts(self, n_orgs: int, is_reference: np.ndarray, tested: np.ndarray, now: float
               ) -> tuple[np.ndarray, np.ndarray]:
        """(agreements, disagreements) per org, each verdict decayed with the bad-evidence half-life; orgs not
        `tested` get none. The reference orgs (`is_reference`) must stay the same between calls."""
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
        return (sum_by(org[rows], fade * ~disagrees, n_orgs), sum_by(org[rows], fade * disagrees, n_orgs))

    def _retest(self, is_reference: np.ndarray) -> None:
        """Test new batches, and old ones whose agent and window (or a neighbour) got new reference evidence."""
        key = np.frombuffer(self.key, dtype=np.int64)
        org = np.frombuffer(self.org, dtype=np.int32)
        reference = is_reference[org]
        ref_keys, ref_inverse = np.unique(key[reference], return_inverse=True)
        ref_events = np.bincount(ref_inverse, weights=np.frombuffer(self.events, dtype=np.int64)[reference],
                                 minlength=len(ref_keys))
        ref_failures = np.bincount(ref_inverse, weights=np.frombuffer(self.failures, dtype=np.int64)[reference],
                                   minlength=len(ref_keys))
        start = self._tested_upto
        fresh = start + np.flatnonzero(~reference[start:])
        changed = np.unique(key[start:][reference[start:]])
        if len(changed) and start:
            near = np.unique(np.concatenate([changed - 1, changed, changed + 1]))
            agents = np.unique(changed >> _WINDOW_BITS)
            old = np.flatnonzero(~reference[:start])
            old = old[np.isin(key[old] >> _WINDOW_BITS, agents)]  # cheap first cut: only touched agents
            fresh = np.concatenate([old[np.isin(key[old], near)], fresh])
        if len(fresh):
            verdicts = self._verdicts(key[fresh], fresh, ref_keys, ref_events, ref_failures)
            np.frombuffer(self.verdict, dtype=np.int8)[fresh] = verdicts
        self._tested_upto = len(key)

    def _verdicts(self, keys: np.ndarray, rows: np.ndarray, ref_keys: np.ndarray, ref_events: np.ndarray,
                  ref_failures: np.ndarray) -> np.ndarray:
        p = self.params
        n_ref = np.zeros(len(rows))
        k_ref = np.zeros(len(rows))
        if len(ref_keys):
            for offset in (-1, 0, 1):
                probe = keys + offset
                at = np.minimum(np.searchsorted(ref_keys, probe), len(ref_keys) - 1)
                hit = ref_keys[at] == probe
                n_ref += np.where(hit, ref_events[at], 0.0)
                k_ref += np.where(hit, ref_failures[at], 0.0)
        n = np.frombuffer(self.events, dtype=np.int64)[rows].astype(np.float64)
        k = np.frombuffer(self.failures, dtype=np.int64)[rows]
        rate = (k_ref + 0.5) / (n_ref + 1.0)
        variance = n * rate * (1 - rate) * (n_ref + 1.0 + n) / (n_ref + 2.0)
        deviates = np.abs(k - n * rate) > p.deviation_z * np.sqrt(variance) + 0.5
        testable = (n_ref >= p.deviation_min_reference) & (n > 0)
        return np.where(testable, np.where(deviates, _DISAGREES, _AGREES), _UNTESTED).astype(np.int8)


def credibility(agree: np.ndarray, disagree: np.ndarray, params: ScoringParams) -> np.ndarray:
    """((agreements + a) / (agreements + disagreements + a + b)) ** exponent, per org."""
    a, b = params.credibility_prior_agree, params.credibility_prior_disagree
    return ((agree + a) / (agree + disagree + a + b)) ** params.credibility_exponent
