"""The whole node killed (SIGKILL) and stopped (SIGTERM) under mixed load, then restarted: nothing answered is lost,
no retried batch is stored twice, nothing is flagged, the logs verify (tests/node/crash_node.py; many kills:
benchmarks/node_crash.py)."""

import random
import signal

import pytest

from .crash_node import run


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_node_killed_or_stopped_under_load_loses_nothing_it_answered(tmp_path, how):
    seed = random.randrange(1 << 32)
    report = run(tmp_path, 2, seed, sigterm_share=1.0 if how == signal.SIGTERM else 0.0, most_seconds=2.0)
    assert (report.kills, report.terms) == ((2, 0) if how == signal.SIGKILL else (0, 2))
    assert report.records and report.batches and report.peer_records
