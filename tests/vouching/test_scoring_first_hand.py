"""This node's own observations count as its digest of their epoch counts (TrustEngine.add_own_epoch): added as they
come or, at a restart, as the epoch's digest at once, an agent's score is the same (README "How scores are computed",
4 and 7)."""

from collections import defaultdict

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vouching.evidence import InvalidEvidence, Outcomes
from vouching.params import DAY_MS, HOUR_MS
from vouching.scoring import TrustEngine

_EPOCHS = st.sampled_from([60_000, 20 * 60_000, HOUR_MS, 5 * HOUR_MS // 2, 3 * HOUR_MS, DAY_MS])
# A batch of observations: (ms the clock moves first, ok, error, denied, timeout, whether the denials are high-risk)
_BATCHES = st.lists(st.tuples(st.integers(0, 2 * HOUR_MS), st.integers(0, 40), st.integers(0, 4),
                              st.integers(0, 2), st.integers(0, 3), st.booleans()), min_size=1, max_size=30)


@settings(max_examples=200)
@example(epoch=HOUR_MS, other=HOUR_MS, batches=[(0, 1, 0, 0, 0, False), (HOUR_MS, 1, 0, 0, 0, False),
                                                (0, 3, 0, 0, 0, False)], later=0)  # (D + 1) + 3 != D + 4
@given(epoch=_EPOCHS, other=_EPOCHS, batches=_BATCHES, later=st.integers(0, 10 * DAY_MS))
def test_an_epoch_s_observations_count_as_its_digest_does_bit_for_bit(epoch, other, batches, later):
    """Added batch by batch as they come, or per epoch as its digest at a restart (by an engine whose own epoch
    length may since have changed): the same score and the same explanation (first-hand good, bad and recent bad
    reports to the last bit; `batches`, the epochs), at any time. Summed as they came, decayed good plus a batch's
    good differed in the last bits."""
    live, restarted = TrustEngine("own", epoch_ms=epoch), TrustEngine("own", epoch_ms=other)
    ts, totals = 1_700_000_000_000, defaultdict(lambda: [0, 0, 0, 0, 0])
    for advance, ok, error, denied, timeout, risky in batches:
        ts += advance
        live.add_first_hand("a", ts=ts, outcomes=Outcomes(ok=ok, error=error, denied=denied, timeout=timeout),
                            high_risk=Outcomes(denied=denied if risky else 0))
        total = totals[ts - ts % epoch + epoch]
        for i, count in enumerate((ok, error, denied, timeout, denied if risky else 0)):
            total[i] += count
    for end, (ok, error, denied, timeout, risky_denied) in totals.items():
        outcomes = Outcomes(ok=ok, error=error, denied=denied, timeout=timeout)
        restarted.add_own_epoch("a", end=end, outcomes=outcomes, high_risk=Outcomes(denied=risky_denied))
    for now in (ts, ts + epoch, ts + later):
        assert restarted.explain("a", now=now) == live.explain("a", now=now)


def test_a_violation_counts_at_once_and_stays_undecayed_until_its_epoch_ends():
    """The score reacts to a bad event the instant it is added, with the epoch's whole report; dated at the epoch's
    last instant, the report starts to fade only once the epoch is over, as the epoch's digest does at a peer."""
    engine = TrustEngine("own", epoch_ms=3 * HOUR_MS)
    start = 3 * HOUR_MS * 1000
    end = start + 3 * HOUR_MS
    engine.add_first_hand("a", ts=start, outcomes=Outcomes(ok=60))
    assert "recent-bad-reports" not in engine.score("a", now=start).caps
    engine.add_first_hand("a", ts=start + 1, outcomes=Outcomes(denied=3))
    at_once, last_instant = engine.score("a", now=start + 1), engine.score("a", now=end - 1)
    assert "recent-bad-reports" in at_once.caps
    assert (last_instant.score, last_instant.caps) == (at_once.score, at_once.caps)
    reports = [part.recent_bad_reports for now in (start + 1, end - 1, end - 1 + DAY_MS)
               for part in engine.explain("a", now=now).orgs]
    assert reports[0] == reports[1] > 0.4 and reports[2] == pytest.approx(reports[0] / 2)


@pytest.mark.parametrize("epoch_ms", [0, -1, 1.5, HOUR_MS * 1.0, None])
def test_an_epoch_length_that_is_not_a_positive_integer_of_ms_is_refused(epoch_ms):
    with pytest.raises(ValueError, match="epoch_ms: must be a positive integer of ms"):
        TrustEngine("own", epoch_ms=epoch_ms)


@pytest.mark.parametrize("end", [0, -HOUR_MS, 1.5, None])
def test_an_own_epoch_without_a_positive_integer_end_is_refused(end):
    with pytest.raises(InvalidEvidence, match="end: must be a positive integer of ms"):
        TrustEngine("own").add_own_epoch("a", end=end, outcomes=Outcomes(ok=1))
