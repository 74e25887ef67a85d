"""The node's open-files limit (node.open_files): raised to the hard limit at start, or a warning naming the fix."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest

from node.api.http_server import MAX_BUSY, MAX_CONNECTIONS
from node.open_files import OTHER_FILES
from node.setup import init_data_dir

SYSTEMD_SOFT = 1024  # systemd's default soft LimitNOFILE for a service
NEEDED = MAX_CONNECTIONS + MAX_BUSY + 50 + OTHER_FILES  # with the default max_peers
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _limits(pid: int) -> tuple[int, int]:
    """(soft, hard) open files of process `pid`, from /proc."""
    line = next(line for line in open(f"/proc/{pid}/limits") if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.skipif(HARD != resource.RLIM_INFINITY and HARD < NEEDED, reason="the hard limit is below the node's need")
def test_a_node_started_under_systemd_s_soft_limit_raises_it_to_the_hard_one(tmp_path):
    """Under 1024 open files, the API's 1,025th connection failed accept() with EMFILE: a slow client holding
    connections kept every other caller out instead of losing the longest waiting to the newcomer."""
    init_data_dir(tmp_path, network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    process = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "run", "--dir", str(tmp_path)], stderr=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (SYSTEMD_SOFT, HARD)))
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "api.url").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the node's own file, written once it listens: no event to wait on across processes
        assert (tmp_path / "api.url").exists()
        assert _limits(process.pid) == (HARD, HARD)
    finally:
        process.kill()
        process.wait()


def test_a_hard_limit_below_the_node_s_need_is_warned_of_with_the_fix():
    script = ("import logging, sys; logging.basicConfig(stream=sys.stdout, format='%(message)s'); "
              "from node.open_files import raise_open_files_limit; print(raise_open_files_limit(50))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (512, SYSTEMD_SOFT)))
    warning, limit = run.stdout.strip().splitlines()
    assert limit == str(SYSTEMD_SOFT)  # raised as far as the hard limit lets it
    assert f"may open only {SYSTEMD_SOFT} files, and needs {NEEDED}" in warning
    assert f"LimitNOFILE={NEEDED}" in warning and f"ulimit -n {NEEDED}" in warning
