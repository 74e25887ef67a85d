"""The whole node killed (SIGKILL) and stopped (SIGTERM) under mixed load, then restarted: nothing answered is lost,
no retried batch is stored twice, nothing is flagged, the logs verify (tests/node/crash_node.py; many kills:
benchmarks/node_crash.py)."""

import random
import signal

import pytest

from .crash_node import run, run_disk_full


@pytest.mark.slow
def test_a_node_killed_or_stopped_under_load_loses_nothing_it_answered(disk_path):
    """A SIGKILL, then a SIGTERM, each restart killed midway by chance: one pair of nodes for both (the forking
    server's imports are most of what a pair costs to start)."""
    seed = random.randrange(1 << 32)
    report = run(disk_path, 2, seed, most_seconds=2.0, startup_kill_share=0.5,
                 signals=(signal.SIGKILL, signal.SIGTERM))
    assert (report.kills, report.terms) == (1, 1)
    assert report.records and report.batches and report.peer_records


@pytest.mark.slow
def test_a_node_whose_files_cannot_grow_refuses_writes_clearly_and_takes_them_once_they_can(disk_path):
    """Before: the first digest epoch that could not be written stopped the node (a traceback, exit 1), and every
    refused write was a 500 with a traceback logged twice."""
    report = run_disk_full(disk_path)
    assert report.refused and report.answered
