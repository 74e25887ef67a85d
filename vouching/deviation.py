"""The deviation test (DESIGN.md §6): an org whose digests contradict what this node and its trust roots observed
of the same agent at about the same time loses credibility.

A digest is tested against the reference evidence (this node's first-hand observations and its roots' digests)
about the same agent within `deviation_window_ms` of it. It disagrees when its count of violations, or (in a
digest of five events or more) of failures of any kind, is implausible under the reference: more than
`deviation_z` standard deviations of the beta-binomial predictive from the reference rate. Verdicts decay like
bad evidence. Both lies (slander) and praise of agents the reference saw fail (ballot-stuffing) disagree.
Verdicts are kept, and a batch is re-tested only when reference evidence for its agent near its time arrives, so
a refresh costs what changed.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from vouching.arrays import distinct, grid_sum_by
from vouching.evidence import MAX_EVENTS, InvalidEvidence
from vouching.params import ScoringParams

_WINDOW_BITS = 40  # key = agent << 40 | window
_UNTESTED, _AGREES, _DISAGREES = 0, 1, 2
_MIN_EVENTS_FOR_FAILURES = 5
RETEST_ROWS = 1 << 16  # batches `_retest` takes at a time
PACK_BITS = 21  # a batch's counts below 2^21 are kept three to an int64
_PACKED, _PACK_MASK = 1 << PACK_BITS, (1 << PACK_BITS) - 1


class DeviationTest:
    """Every batch of outcomes this node counted (who reported it, about which agent and window, how many events
    and failures) and each batch's latest verdict."""

    def __init__(self, params: ScoringParams) -> None:
        self.params = params
        self.key = array("q")
        self.org = array("i")
        self.t = array("d")
        # A batch's events, failures and violations, PACK_BITS bits each, or -1 - i for the i-th triple of `_wide`:
        # 8 bytes a batch where three int64 columns took 24 (and 32 a batch of 2^21 events or more, which is rare).
        self.counts_packed = array("q")
        # Only appended to, and read an item at a time (never through a buffer, which would stop an append while a
        # recompute reads it on another thread): a frozen copy shares it. Not a column (arrays.array_columns).
        self._wide = array("q")
        self.verdict = array("b")
        self._tested_upto = 0  # batches before this one have verdicts against the reference as it then was
        self._reference: tuple[int, ...] = ()  # the reference orgs the verdicts are against (`counts`)

    def __len__(self) -> int:
        return len(self.key)

    def append(self, agent: int, org: int, window: int, t: float, events: int, failures: int,
               violations: int) -> None:
        if window >= 1 << _WINDOW_BITS:
            raise InvalidEvidence(f"epoch: window {window} is beyond the year 30000 at this cap_window_ms")
        if events < _PACKED and failures < _PACKED and violations < _PACKED:
            packed = events | failures << PACK_BITS | violations << 2 * PACK_BITS
        elif max(events, failures, violations) > MAX_EVENTS:
            raise InvalidEvidence(f"outcomes: at most {MAX_EVENTS} events a batch, got {events}")
        else:
            packed = -1 - len(self._wide) // 3
            self._wide.extend((events, failures, violations))
        self.key.append(agent << _WINDOW_BITS | window)
        self.org.append(org)
        self.t.append(t)
        self.counts_packed.append(packed)
        self.verdict.append(_UNTESTED)

    def frozen(self, columns: dict[str, np.ndarray]) -> DeviationTest:
        """A test holding `columns` (a numpy copy of this one's, see `arrays.ColumnsCopy`) and this test's progress,
        for the full recompute to test and count on off the trio thread; `adopt` takes its verdicts back."""
        copy = DeviationTest(self.params)
        vars(copy).update(columns)
        copy._wide = self._wide  # the triples of its rows are in it already, and stay as they are
        copy._tested_upto = self._tested_upto
        copy._reference = self._reference
        return copy

    def adopt(self, tested: DeviationTest) -> None:
        """Take the verdicts that `counts` reached on a `frozen` copy of this test (batches appended since the copy
        stay untested; only `counts` changes verdicts, so none changed here meanwhile). On the test itself, a no-op."""
        np.frombuffer(self.verdict, dtype=np.int8)[:len(tested)] = tested.verdict
        self._tested_upto = tested._tested_upto
        self._reference = tested._reference

    def counts(self, n_orgs: int, is_reference: np.ndarray, tested: np.ndarray, now: float
               ) -> tuple[np.ndarray, np.ndarray]:
        """(agreements, disagreements) per org, each verdict decayed with the bad-evidence half-life; orgs not
        `tested` get none. Other reference orgs (`is_reference`) than the last call's, as when a root's key is merged
        into its org by a rotation or a root is proven to equivocate, retest every batch: a verdict against the
        reference as it was, kept, gave other verdicts than a node that held the same records from the start."""
        agreements, disagreements = np.zeros(n_orgs), np.zeros(n_orgs)
        if len(self.key) == 0:
            return agreements, disagreements
        reference = tuple(np.flatnonzero(is_reference).tolist())
        if reference != self._reference:
            np.frombuffer(self.verdict, dtype=np.int8)[:] = _UNTESTED
            self._tested_upto, self._reference = 0, reference
        self._retest(is_reference)
        verdict = np.frombuffer(self.verdict, dtype=np.int8)
        org = np.frombuffer(self.org, dtype=np.int32)
        t = np.frombuffer(self.t)
        k = math.log(2) / self.params.bad_half_life_ms
        # RETEST_ROWS batches at a time. Each term on the grid: the same counts whatever order the digests arrived in
        # (DESIGN.md §6), and whatever pieces they are summed in (sums of terms on the grid are exact).
        for first in range(0, len(verdict), RETEST_ROWS):
            rows = first + np.flatnonzero(verdict[first:first + RETEST_ROWS] != _UNTESTED)
            rows = rows[tested[org[rows]]]
            fade = np.exp(-np.maximum(0.0, now - t[rows]) * k)
            disagrees = verdict[rows] == _DISAGREES
            agreements += grid_sum_by(org[rows], fade * ~disagrees, n_orgs)
            disagreements += grid_sum_by(org[rows], fade * disagrees, n_orgs)
        return agreements, disagreements

    def _retest(self, is_reference: np.ndarray) -> None:
        """Test new batches, and old ones with new reference evidence for their agent near their time, RETEST_ROWS
        batches at a time: each verdict is the batch's own, and the temporaries stay a few MB however many batches
        there are (at a start, every batch is new: in one pass they took 94 bytes a batch)."""
        key = np.frombuffer(self.key, dtype=np.int64)
        reference = is_reference[np.frombuffer(self.org, dtype=np.int32)]
        ref_keys, inverse = np.unique(key[reference], return_inverse=True)
        sums = [np.concatenate([[0.0], np.cumsum(np.bincount(inverse, weights=column, minlength=len(ref_keys)))])
                for column in self._counts(reference)]
        reach = self.params.deviation_window_ms // self.params.cap_window_ms
        checked = ref_keys >> _WINDOW_BITS  # an agent nobody checked: nothing to test
        start = self._tested_upto
        changed = distinct(key[start:][reference[start:]])
        verdict = np.frombuffer(self.verdict, dtype=np.int8)
        for first in range(start if len(changed) == 0 else 0, len(key), RETEST_ROWS):
            rows = first + np.flatnonzero(~reference[first:first + RETEST_ROWS])
            agent, new = key[rows] >> _WINDOW_BITS, rows >= start
            test = new & _member(agent, checked)
            if len(changed):
                near = (np.searchsorted(changed, key[rows] + reach, side="right")
                        > np.searchsorted(changed, key[rows] - reach, side="left"))
                test |= ~new & near & _member(agent, changed >> _WINDOW_BITS)
            rows = rows[test]
            low = np.searchsorted(ref_keys, key[rows] - reach, side="left")
            high = np.searchsorted(ref_keys, key[rows] + reach, side="right")
            n_ref, k_ref, v_ref = (s[high] - s[low] for s in sums)
            verdict[rows] = self._verdicts(rows, n_ref, k_ref, v_ref)
        self._tested_upto = len(key)

    def misconduct_began(self, voucher: np.ndarray, subject: np.ndarray, reporting: np.ndarray) -> np.ndarray:
        """Per vouch (its `voucher` and `subject`), the date of the first batch about its subject, of a `reporting` org
        (per org: whose bad counts in a score on its own word, confirmation.reporting_orgs) other than its voucher, in
        which the agent violated policy or failed half its events or more: when its misconduct began, by the other
        orgs' word; inf where no such batch is. Ties of date: any org's but the voucher's."""
        key = np.frombuffer(self.key, dtype=np.int64)
        org = np.frombuffer(self.org, dtype=np.int32)
        began = np.full(len(subject), math.inf)
        rows = np.flatnonzero(_member(key >> _WINDOW_BITS, subject) & reporting[org])
        events, failures, violations = self._counts(rows)
        rows = rows[(violations > 0) | ((events > 0) & (2 * failures >= events))]
        if not len(rows):
            return began
        agent, by, t = key[rows] >> _WINDOW_BITS, org[rows], np.frombuffer(self.t)[rows]
        n_agents = int(max(agent.max(), subject.max())) + 1
        order = np.lexsort((t, agent))  # by agent, then date: each agent's first batch first
        first = order[np.concatenate([[True], agent[order][1:] != agent[order][:-1]])]
        first_t, first_org = np.full(n_agents, math.inf), np.full(n_agents, -1)
        first_t[agent[first]], first_org[agent[first]] = t[first], by[first]
        other_t = np.full(n_agents, math.inf)  # the first of an org other than that of the agent's first batch
        others = by != first_org[agent]
        np.minimum.at(other_t, agent[others], t[others])
        began[:] = np.where(first_org[subject] == voucher, other_t[subject], first_t[subject])
        return began

    def _counts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The events, failures and violations of `rows` (indices or a mask), as floats."""
        packed = np.frombuffer(self.counts_packed, dtype=np.int64)[rows]
        counts = np.stack([packed & _PACK_MASK, packed >> PACK_BITS & _PACK_MASK, packed >> 2 * PACK_BITS])
        wide = np.flatnonzero(packed < 0)
        if len(wide):
            items = (3 * (-1 - packed[wide]))[:, None] + np.arange(3)
            counts[:, wide] = np.fromiter(map(self._wide.__getitem__, items.ravel().tolist()), dtype=np.int64,
                                          count=items.size).reshape(-1, 3).T
        events, failures, violations = counts.astype(np.float64)
        return events, failures, violations

    def _verdicts(self, rows: np.ndarray, n_ref: np.ndarray, k_ref: np.ndarray, v_ref: np.ndarray) -> np.ndarray:
        p = self.params
        n, failures, violations = self._counts(rows)
        # Violations are tested in every digest. Failures in all are tested only in digests of several events:
        # a lone error may be the reporting org's own infrastructure failing, not the agent.
        deviates = _implausible(violations, n, v_ref, n_ref, p.deviation_z)
        deviates |= (n >= _MIN_EVENTS_FOR_FAILURES) & _implausible(failures, n, k_ref, n_ref, p.deviation_z)
        testable = (n_ref >= p.deviation_min_reference) & (n > 0)
        return np.where(testable, np.where(deviates, _DISAGREES, _AGREES), _UNTESTED).astype(np.int8)


def _member(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """values ∈ members, for small non-negative integers (agent indices), by table lookup."""
    table = np.zeros(int(max(values.max(initial=0), members.max(initial=0))) + 1, dtype=bool)
    table[members] = True
    return table[values]


def _implausible(k: np.ndarray, n: np.ndarray, k_ref: np.ndarray, n_ref: np.ndarray, z: float) -> np.ndarray:
    """k of n is more than z standard deviations from the mean of the beta-binomial predictive of a rate
    estimated as k_ref of n_ref (Jeffreys prior). A single claimed violation of an agent the reference saw commit
    none in 3 events is 2.6 standard deviations out."""
    rate = (k_ref + 0.5) / (n_ref + 1.0)
    variance = n * rate * (1 - rate) * (n_ref + 1.0 + n) / (n_ref + 2.0)
    return np.abs(k - n * rate) > z * np.sqrt(variance)


def credibility(agree: np.ndarray, disagree: np.ndarray, params: ScoringParams) -> np.ndarray:
    """((agreements + a) / (agreements + disagreements + a + b)) ** exponent, per org."""
    a, b = params.credibility_prior_agree, params.credibility_prior_disagree
    return ((agree + a) / (agree + disagree + a + b)) ** params.credibility_exponent
