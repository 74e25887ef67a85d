"""Crash safety: a writer SIGKILLed at random moments never loses an acknowledged append (issue 2 item 4)."""

import pytest

from .crash_harness import run


@pytest.mark.slow
def test_no_acknowledged_append_is_lost_when_the_writer_is_killed(tmp_path):
    report = run(tmp_path / "log", kills=200, seed=2)
    assert report.kills == 200
    assert report.acknowledged > 0  # the writers got to append, so the kills landed among appends
    assert report.size >= report.acknowledged
