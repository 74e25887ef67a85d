"""A real testnet through the CLI, as an operator runs one: three node processes go up, a short scenario runs with
a SIGKILL and restart and a partition, the report is written, and `down` leaves no process or port behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testnet.cluster import Cluster
from testnet.processes import alive

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

SHORT = Path(__file__).with_name("short.toml")  # kill honest[1] at 2 s for 2 s; cut off honest[2] at 7 s for 4 s


def vouchnet(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "node.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_three_nodes_run_a_scenario_with_a_kill_and_a_partition_and_leave_nothing_running(tmp_path):
    directory, out = tmp_path / "testnet", tmp_path / "report"
    try:
        up = vouchnet("testnet", "up", "--nodes", 3, "--dir", directory)
        assert up.returncode == 0, up.stderr
        cluster = Cluster.open(directory)
        assert all(f"{e.name}  {e.api_url}  {e.did}" in up.stdout.splitlines() for e in cluster.state.nodes)
        pids = [(e.pid, e.started) for e in cluster.state.nodes]
        assert all(alive(pid, started) for pid, started in pids)

        status = vouchnet("testnet", "status", "--dir", directory, "--json")
        assert [row["running"] for row in json.loads(status.stdout)] == [True] * 3

        run = vouchnet("testnet", "run", SHORT, "--dir", directory, "--out", out)
        assert run.returncode == 0, run.stderr
        results = json.loads((out / "results.json").read_text())
        measured = results["measurements"]
        kill, partition = measured["catch_up"]
        assert (kill["fault"], kill["node"]) == ("kill", "n01") and kill["backlog_records"] > 0
        assert (partition["fault"], partition["side"]) == ("partition", ["n02"])
        assert partition["connections_crossing_after_cut"] == 0 and partition["backlog_records"] > 0
        assert measured["convergence"]["converged"], measured["convergence"]
        assert measured["checkpoints"]["all_current_and_witnessed"], measured["checkpoints"]
        assert measured["propagation"]["to_each_node"]["count"] > 0
        page = (out / "report.html").read_text()
        assert page.count('src="data:image/png;base64,') == 3
        assert {p.name for p in out.iterdir()} == {"results.json", "report.html", "scores.png", "latency.png",
                                                   "confusion.png"}
    finally:
        down = vouchnet("testnet", "down", "--dir", directory)
    assert down.returncode == 0, down.stderr
    assert "no node process is alive and no node port accepts connections" in down.stdout
    assert Cluster.open(directory).leftovers() == []
    assert not any(alive(pid, started) for pid, started in pids)
