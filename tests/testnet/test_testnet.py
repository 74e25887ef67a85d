"""A real testnet through the CLI, as an operator runs one: three node processes go up, a short scenario runs with
a SIGKILL and restart, a key theft, a partition and a key rotation inside it, the report is written, and `down`
leaves no process or port behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import load_config
from testnet.cluster import Cluster
from testnet.ports import ephemeral_range
from testnet.processes import alive

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

# kill honest[1] (n01) at 2 s for 2 s; steal the key of quiet (n02) at 5 s, cut it off at 7 s for 6 s; rotate the
# key of honest[0] (n00) at 8 s
SHORT = Path(__file__).with_name("short.toml")


def vouchnet(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "node.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_three_nodes_run_a_scenario_with_faults_a_rotation_and_a_key_theft_and_leave_nothing_running(disk_path):
    directory, out = disk_path / "testnet", disk_path / "report"
    try:
        up = vouchnet("testnet", "up", "--nodes", 3, "--dir", directory)
        assert up.returncode == 0, up.stderr
        cluster = Cluster.open(directory)
        assert all(f"{e.name}  {e.api_url}  {e.did}" in up.stdout.splitlines() for e in cluster.state.nodes)
        # The restarts below (n01 killed, n00 rotated) find their ports free: no outgoing connection of this machine,
        # nor another test's listener on port 0, is given a port outside the ephemeral range.
        low, high = ephemeral_range()
        assert not [p for e in cluster.state.nodes for p in (e.p2p_port, e.api_port) if low <= p <= high]
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
        # n00's new key was refused across the cut from the moment it existed: nothing crossed, and the node on the
        # other side linked the keys only once healed
        assert partition["records_crossed"] == 0

        (rotation,) = measured["rotations"]
        rotated = Cluster.open(directory).entry("n00")
        old, new = rotated.keys
        assert (rotation["node"], rotation["old"], rotation["new"]) == ("n00", old, new) and old != new
        assert rotation["nodes_linking"] == rotation["of"] == 2 and rotation["linked_at_end"] == ["n01", "n02"]
        heal = next(e["at"] for e in results["timeline"] if e["kind"] == "heal")
        started = next(e["started"] for e in results["timeline"] if e["kind"] == "rotated")
        assert started + rotation["seconds_to_link"]["n02"] > heal - 0.5
        bootstrap = load_config(directory / "nodes" / "n01").bootstrap
        assert f"/p2p/{rotated.peer_id}" in "".join(bootstrap)  # for n01's next start

        (theft,) = measured["attacks"]
        assert (theft["type"], theft["victim"], theft["offered_to"]) == ("key-theft", "n02", "n01")
        assert theft["flagged_everywhere"] and theft["nodes_flagging"] == theft["of"] == 3
        assert theft["distrusted_by"] == ["n00", "n01"]  # a node never distrusts its own org
        assert theft["thief_counts_for_nothing"] and set(theft["thief_key"]) == {"n00", "n01", "n02"}
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
