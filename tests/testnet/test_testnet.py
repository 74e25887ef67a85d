"""A real testnet through the CLI, as an operator runs one: three node processes go up on a port range, a short
scenario runs with a SIGKILL and restart, a key theft, a partition, a key rotation and a revocation inside it, the
report is written, and `down` leaves no process or port behind; then, while it is down, other processes take ports of
two of its nodes and `up` moves them, inside the range. One testnet serves both (starting three node processes costs
CI most of a test's time)."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.client import NodeApiError
from node.config import load_config
from testnet.cluster import Cluster
from testnet.ports import PortRange, choose_ports, ephemeral_range
from testnet.processes import alive
from testnet.state import NodeEntry, listen_addr

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

# kill honest[1] (n01) at 2 s for 2 s; steal the key of quiet (n02) at 5 s, cut it off at 7 s for 6 s; rotate the
# key of honest[0] (n00) at 8 s; n00 revokes its operator vouch for the bad agent at 10 s
SHORT = Path(__file__).with_name("short.toml")


def port_range() -> PortRange:
    """200 ports outside the ephemeral range, from where a testnet would draw one, for `up --ports`."""
    (first,) = choose_ports(1)
    low, high = ephemeral_range()
    first = min(first, low - 200) if first < low else min(first, 65535 - 199)
    return PortRange(first, first + 199)


def vouchnet(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "node.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


@contextmanager
def listening(port: int) -> Iterator[None]:
    """Another process's service on `port` (SO_REUSEADDR: a stopped node's connections may wait in TIME_WAIT)."""
    with socket.socket() as service:
        service.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        service.bind(("127.0.0.1", port))
        service.listen()
        yield


def eventually(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Ask the nodes until `check` holds (they gossip and sync on their own clocks), failing after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.2)


def announced(cluster: Cluster, at: str, node: str) -> list[str]:
    """The addresses `node`'s latest `org` record names, as the node `at` holds it."""
    with cluster.client(at) as client:
        return list(client.iter_records(issuer=cluster.entry(node).did, kind="org"))[-1]["body"]["addrs"]


def dialled(cluster: Cluster, at: str, node: str) -> tuple[bool, list[str]]:
    """Whether the node `at` is connected to `node`, and the addresses it dials it at."""
    with cluster.client(at) as client:
        (known,) = [p for p in client.known_peers()["known"] if p["peer_id"] == cluster.entry(node).peer_id]
    return known["connected"], known["addrs"]


def holds(cluster: Cluster, at: str, record_id: str) -> bool:
    with cluster.client(at) as client:
        try:
            client.record_json(record_id)
        except NodeApiError as e:
            assert e.status == 404, e
            return False
    return True


@dataclass(frozen=True)
class ScenarioRun:
    """A testnet brought up, run through short.toml and brought down, with what each step showed."""

    directory: Path
    out: Path
    ports: PortRange  # its `up --ports`
    up: subprocess.CompletedProcess
    at_up: list[NodeEntry]
    status: subprocess.CompletedProcess
    run: subprocess.CompletedProcess
    n01_announced: dict[str, list[str]] | None  # n01's addresses as n00 and n02 held them at the end (if it ran)
    down: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def scenario_run(module_disk_path) -> ScenarioRun:
    directory, out = module_disk_path / "testnet", module_disk_path / "report"
    n01_announced, ports = None, port_range()
    try:
        up = vouchnet("testnet", "up", "--nodes", 3, "--dir", directory, "--ports", ports)
        assert up.returncode == 0, up.stderr
        at_up = list(Cluster.open(directory).state.nodes)
        status = vouchnet("testnet", "status", "--dir", directory, "--json")
        run = vouchnet("testnet", "run", SHORT, "--dir", directory, "--out", out)
        if run.returncode == 0:
            cluster = Cluster.open(directory)
            n01_announced = {at: announced(cluster, at, "n01") for at in ("n00", "n02")}
    finally:
        down = vouchnet("testnet", "down", "--dir", directory)
    return ScenarioRun(directory, out, ports, up, at_up, status, run, n01_announced, down)


def test_three_nodes_run_a_scenario_with_faults_a_rotation_and_a_key_theft_and_leave_nothing_running(scenario_run):
    directory, out, up = scenario_run.directory, scenario_run.out, scenario_run.up
    cluster = Cluster.open(directory)
    assert all(f"{e.name}  {e.api_url}  {e.did}" in up.stdout.splitlines() for e in scenario_run.at_up)
    # The restarts below (n01 killed, n00 rotated) find their ports free: no outgoing connection of this machine,
    # nor another test's listener on port 0, is given a port outside the ephemeral range.
    low, high = ephemeral_range()
    assert not [p for e in scenario_run.at_up for p in (e.p2p_port, e.api_port) if low <= p <= high]
    first, last = scenario_run.ports.first, scenario_run.ports.last
    assert all(first <= p <= last for e in scenario_run.at_up for p in (e.p2p_port, e.api_port))  # `up --ports`
    pids = [(e.pid, e.started) for e in scenario_run.at_up]

    assert [row["running"] for row in json.loads(scenario_run.status.stdout)] == [True] * 3

    run = scenario_run.run
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
    rotated = cluster.entry("n00")
    old, new = rotated.keys
    assert (rotation["node"], rotation["old"], rotation["new"]) == ("n00", old, new) and old != new
    assert rotation["nodes_linking"] == rotation["of"] == 2 and rotation["linked_at_end"] == ["n01", "n02"]
    heal = next(e["at"] for e in results["timeline"] if e["kind"] == "heal")
    rotated_event = next(e for e in results["timeline"] if e["kind"] == "rotated")
    assert rotated_event["started"] + rotation["seconds_to_link"]["n02"] > heal - 0.5
    assert 0 < rotation["start_seconds"] == round(rotated_event["answered"] - rotated_event["started"], 2)
    bootstrap = load_config(directory / "nodes" / "n01").bootstrap
    assert f"/p2p/{rotated.peer_id}" in "".join(bootstrap)  # for n01's next start

    (theft,) = measured["attacks"]
    assert (theft["type"], theft["victim"], theft["offered_to"]) == ("key-theft", "n02", "n01")
    assert theft["flagged_everywhere"] and theft["nodes_flagging"] == theft["of"] == 3
    assert theft["distrusted_by"] == ["n00", "n01"]  # a node never distrusts its own org
    assert theft["thief_counts_for_nothing"] and set(theft["thief_key"]) == {"n00", "n01", "n02"}
    # n00, its key rotated at 8 s, revokes the vouch its first key made for the bad agent: every node holds the
    # revoke by the end (converged, below)
    (revocation,) = [e for e in results["timeline"] if e["kind"] == "revocation"]
    assert list(revocation["agents"]) == ["bad-0"] and revocation["agents"]["bad-0"]["operator"] == "n00"
    assert "revoke the operator vouches of bad" in run.stderr
    (verdict,) = results["verdicts"]
    assert verdict["outcome"] == "contained" and verdict["line"] in run.stdout.splitlines()
    assert measured["convergence"]["converged"], measured["convergence"]
    assert measured["checkpoints"]["all_current_and_witnessed"], measured["checkpoints"]
    assert measured["propagation"]["to_each_node"]["count"] > 0
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert {p.name for p in out.iterdir()} == {"results.json", "report.html", "scores.png", "latency.png",
                                               "confusion.png"}

    down = scenario_run.down
    assert down.returncode == 0, down.stderr
    assert "no node process is alive and no node port accepts connections" in down.stdout
    assert cluster.leftovers() == []
    assert not any(alive(pid, started) for pid, started in pids)


def test_a_stopped_testnet_whose_ports_another_process_took_comes_up_with_those_nodes_moved(scenario_run):
    """While the testnet is down (the one the scenario ran on), a service takes n01's p2p port and n02's API port:
    `up` moves them (said in a line each), inside the range it was made with (`up --ports`), rewrites the bootstrap
    lists that name n01, n01 announces its new address in a new `org` record, and records replicate both ways as
    before."""
    directory = scenario_run.directory
    assert scenario_run.down.returncode == 0, scenario_run.down.stderr
    before = Cluster.open(directory)
    n01, n02 = before.entry("n01"), before.entry("n02")
    assert scenario_run.n01_announced == {at: [listen_addr(n01.p2p_port)] for at in ("n00", "n02")}
    try:
        with listening(n01.p2p_port), listening(n02.api_port):
            up = vouchnet("testnet", "up", "--dir", directory)
            assert up.returncode == 0, up.stderr
            after = Cluster.open(directory)
            p2p, api = after.entry("n01").p2p_port, after.entry("n02").api_port
            assert up.stdout.splitlines()[:2] == [
                f"n01's p2p port {n01.p2p_port} is taken by another process; moved to {p2p}",
                f"n02's api port {n02.api_port} is taken by another process; moved to {api}"]
            assert (after.entry("n01").api_port, after.entry("n02").p2p_port) == (n01.api_port, n02.p2p_port)
            assert scenario_run.ports.first <= min(p2p, api) <= max(p2p, api) <= scenario_run.ports.last
            for dialer in ("n00", "n02"):
                bootstrap = load_config(directory / "nodes" / dialer).bootstrap
                assert after.entry("n01").p2p_addr in bootstrap and n01.p2p_addr not in bootstrap
            with after.client("n02") as client:  # at its new API port
                assert client.node()["did"] == n02.did

            eventually("every node holds n01's org record naming its new port", lambda: all(
                announced(after, at, "n01") == [listen_addr(p2p)] for at in after.names))
            # the others dial n01 at its new port only: its new org record replaced the address its old one named
            eventually("n00 and n02 connected to n01, knowing its new address only", lambda: all(
                dialled(after, at, "n01") == (True, [after.entry("n01").p2p_addr]) for at in ("n00", "n02")))
            with after.client("n00") as client:
                from_n00 = client.vouch(n01.did, 0.5, "org-peer")["id"]
            with after.client("n01") as client:
                from_n01 = client.vouch(n02.did, 0.5, "org-peer")["id"]
            eventually("the vouches reach every node", lambda: all(
                holds(after, at, record) for at in after.names for record in (from_n00, from_n01)))
    finally:
        down = vouchnet("testnet", "down", "--dir", directory)
    assert down.returncode == 0, down.stderr
