"""This node's own observations count as its digest of their epoch counts (TrustEngine.add_own_epoch): added as they
come or, at a restart, as the epoch's digest at once, an agent's score is the same (README "How scores are computed",
4 and 7)."""

from collections import defaultdict

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vouching.evidence import InvalidEvidence, Outcomes, own_cap_good
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
    for before in range(8, 0, -1):  # trusted from earlier epochs (own good counts at most C/2 a window)
        engine.add_first_hand("a", ts=start - before * 3 * HOUR_MS, outcomes=Outcomes(ok=60))
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


@settings(max_examples=100)
@given(epoch=_EPOCHS, start=st.integers(0, DAY_MS), gaps=st.lists(st.integers(0, 5_000), min_size=1, max_size=60),
       ok=st.integers(1, 1_000))
def test_a_burst_of_clean_events_never_makes_an_unvouched_agent_trusted(epoch, start, gaps, ok):
    """However many clean events an agent makes within a minute (or anything under a window), wherever the window
    and epoch boundaries fall, this node's own observations leave it below trusted: a burst is one sample of how
    it behaves (README "How scores are computed", 4). Counted uncapped, 4 events made it trusted and 13 verified
    but for independence, and a partner's agent went from 50 to 651 after ten calls in five seconds."""
    engine = TrustEngine("own", epoch_ms=epoch)
    ts = 1_700_000_000_000 + start
    for gap in gaps:
        ts += gap
        engine.add_first_hand("a", ts=ts, outcomes=Outcomes(ok=ok))
        assert engine.score("a", now=ts).tier == "provisional"


def test_the_same_events_spread_over_three_windows_make_it_trusted():
    """Twelve clean events in a minute leave an agent provisional; the same twelve, four an hour, make it trusted
    from the third hour on, not before: trust takes evidence spread over time (own good counts C/2 a window)."""
    burst, spread = TrustEngine("own"), TrustEngine("own")
    start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS
    for i in range(12):
        burst.add_first_hand("a", ts=start + i * 5_000, outcomes=Outcomes(ok=1))
    assert burst.score("a", now=start + HOUR_MS).tier == "provisional"
    tiers = []
    for hour in range(3):
        for i in range(4):
            spread.add_first_hand("a", ts=start + hour * HOUR_MS + i * 5_000, outcomes=Outcomes(ok=1))
        tiers.append(spread.score("a", now=start + hour * HOUR_MS + HOUR_MS - 1).tier)
    assert tiers == ["provisional", "provisional", "trusted"]


def test_the_explanation_says_why_a_burst_of_own_events_was_capped():
    engine = TrustEngine("own")
    for i in range(10):
        engine.add_first_hand("a", ts=i * 500, outcomes=Outcomes(ok=1, error=1 if i == 9 else 0))
    explanation = engine.explain("a", now=5_000)
    own = explanation.orgs[0]
    assert (own.events, own.capped) == (11, 1)
    # Scaled by one factor: 1.66 of the 10 good, and the same share of the error's 0.5 bad.
    assert own.counted_good == own_cap_good(engine.params) == pytest.approx(1.66, abs=0.01)
    assert own.counted_bad == pytest.approx(0.5 * own.counted_good / 10, abs=1e-6)
    said = {r.code: r.text for r in explanation.rules}
    assert said["own-window-cap"] == (
        "this node's own observations were scaled down in 1 window (keeping the ratio of good to bad) to 1.66 good "
        "per 60 minute window: a burst of events is one sample of behaviour, so no burst alone lifts an agent above "
        "provisional; trust takes evidence spread over at least three windows")
    assert "window-cap" not in said  # that rule is about other orgs' digests
    assert "this node's own observations: weight 1.00; 11 events in 1 epoch;" in "\n".join(explanation.lines())
    assert "; 1 window capped" in "\n".join(explanation.lines())


# A past window's batches of one-minute epochs: (minute of the window, ok, error, denied)
_LATE = st.lists(st.tuples(st.integers(0, 59), st.integers(0, 5), st.integers(0, 2), st.integers(0, 1)),
                 min_size=1, max_size=40)


@settings(max_examples=200)
@example(batches=[(minute, 1, 0, 0) for minute in range(60)], in_order=0)  # (counted 61 good)
@example(batches=[(minute, 5, 0, 1) for minute in range(60)], in_order=0)  # (60 reports)
@example(batches=[(0, 0, 0, 1), *((minute, 5, 0, 0) for minute in range(1, 60))], in_order=0)  # (a report of 1)
@given(batches=_LATE, in_order=st.integers(0, 40))
def test_a_past_window_s_batches_arriving_late_count_under_its_cap_as_in_order(batches, in_order):
    """The node's own evidence of a window it has moved past (its digests of one-minute epochs coming back from peers
    after a restore from an older copy, some counted before the next window opened) counts the good and bad the
    window's batches count in order, within C/2 good for the window, its one capped window, and the one bad report
    its totals make, dated at its latest batch: a restart, replaying them in order, then gives the same score. Each
    late batch under a cap and a report of its own, 60 such digests of one ok event each counted 60 good, and of one
    violation among five ok events, 60 reports where the restart made one (held below provisional); the window's
    strongest report kept, a violation in its first minute and five ok events in each of the 59 after made 1
    where the restart made none (0.4 caps the score below trusted)."""
    start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS + HOUR_MS
    minutes = sorted(batches)
    late, ordered = TrustEngine("own", epoch_ms=60_000), TrustEngine("own", epoch_ms=60_000)
    for engine, before in ((late, in_order), (ordered, len(minutes))):
        for minute, ok, error, denied in minutes[:before]:
            engine.add_own_epoch("a", end=start + (minute + 1) * 60_000,
                                 outcomes=Outcomes(ok=ok, error=error, denied=denied))
        engine.add_first_hand("a", ts=start + HOUR_MS, outcomes=Outcomes(ok=1))  # the next window
        for minute, ok, error, denied in minutes[before:]:
            engine.add_own_epoch("a", end=start + (minute + 1) * 60_000,
                                 outcomes=Outcomes(ok=ok, error=error, denied=denied))
    now = start + HOUR_MS + 60_000
    (counted,), (reference,) = late.explain("a", now=now).orgs, ordered.explain("a", now=now).orgs
    # (In order, good and bad decay to the grid at each step.)
    assert counted.counted_good == pytest.approx(reference.counted_good, rel=1e-9, abs=1e-4)
    assert counted.counted_bad == pytest.approx(reference.counted_bad, rel=1e-9, abs=1e-4)
    assert counted.counted_good <= own_cap_good(late.params) + 1 + 1e-6
    assert counted.recent_bad_reports == pytest.approx(reference.recent_bad_reports, rel=1e-9, abs=1e-12)
    assert counted.capped == reference.capped


def test_late_batches_of_two_past_windows_make_a_report_each_as_in_order():
    """The node's digests of two hours it has moved past, each with a violation among a few ok events, coming back
    one hour after the other: each hour makes its own report, as a restart replaying them makes; the second hour's
    report is not taken for a change of the first's."""
    start = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS + HOUR_MS
    hours = [(hour, minute) for hour in range(2) for minute in range(3)]
    late, ordered = TrustEngine("own", epoch_ms=60_000), TrustEngine("own", epoch_ms=60_000)
    late.add_first_hand("a", ts=start + 2 * HOUR_MS, outcomes=Outcomes(ok=1))  # seen again, before they come back
    for engine in (late, ordered):
        for hour, minute in hours:
            engine.add_own_epoch("a", end=start + hour * HOUR_MS + (minute + 1) * 60_000,
                                 outcomes=Outcomes(ok=2, denied=1 if minute == 1 else 0))
    ordered.add_first_hand("a", ts=start + 2 * HOUR_MS, outcomes=Outcomes(ok=1))
    now = start + 2 * HOUR_MS + 60_000
    (counted,), (reference,) = late.explain("a", now=now).orgs, ordered.explain("a", now=now).orgs
    assert reference.recent_bad_reports > 1.9  # (two reports of 1, decayed for two hours at most)
    assert counted.recent_bad_reports == pytest.approx(reference.recent_bad_reports, rel=1e-9)
