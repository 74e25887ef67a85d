"""Making and starting a testnet: a creation cut short leaves nothing behind, and a port another process took is
moved before its node starts."""

import re
import socket
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from node.cli import main
from node.config import load_config
from node.setup import init_data_dir
from testnet import cluster as cluster_module
from testnet import processes
from testnet.cluster import Cluster, ClusterError
from testnet.faults import Partition, peers_on_its_side
from testnet import state
from testnet.ports import PortRange, choose_ports
from testnet.state import NodeEntry, api_bind, listen_addr


class Spawned(Exception):
    """Stands for `vouchnet run`: the test looks at the node's config as it would start."""


def _init_in_process(directory, names, network, ports):
    """`vouchnet init` of every node, in this process (cluster._init_all runs it as processes)."""
    for i, name in enumerate(names):
        init_data_dir(directory / "nodes" / name, name=name, network=network, listen=(listen_addr(ports[2 * i]),),
                      api=api_bind(ports[2 * i + 1]))


def created(tmp_path, monkeypatch, *, nodes, ports=None):
    """A testnet made as `up` makes one, its nodes' data directories made in this process, none started."""
    monkeypatch.setattr(cluster_module, "_init_all", _init_in_process)
    return Cluster.create(tmp_path, nodes=nodes, seed=1, topology="mesh", ports=ports)


def test_a_port_another_process_took_is_moved_before_the_node_starts_and_its_dialers_are_told(tmp_path, monkeypatch):
    cluster = created(tmp_path, monkeypatch, nodes=3)
    n01, n02 = cluster.entry("n01"), cluster.entry("n02")
    spawned = []

    def spawn(data_dir, log_path):
        spawned.append(load_config(data_dir))
        raise Spawned

    monkeypatch.setattr(processes, "spawn_node", spawn)
    said = []
    with socket.socket() as p2p, socket.socket() as api:
        p2p.bind(("127.0.0.1", n01.p2p_port))
        api.bind(("127.0.0.1", n02.api_port))
        p2p.listen()
        api.listen()
        with pytest.raises(Spawned):
            cluster.start(["n01", "n02"], say=said.append)
    moved_p2p, moved_api = cluster.entry("n01").p2p_port, cluster.entry("n02").api_port
    assert said == [f"n01's p2p port {n01.p2p_port} is taken by another process; moved to {moved_p2p}",
                    f"n02's api port {n02.api_port} is taken by another process; moved to {moved_api}"]
    assert Cluster.open(tmp_path).state == replace(cluster.state, nodes=(
        cluster.entry("n00"), replace(n01, p2p_port=moved_p2p), replace(n02, api_port=moved_api)))
    assert spawned[0].listen == (listen_addr(moved_p2p),)  # n01 started on its new port, its API where it was
    assert (spawned[0].api_host, spawned[0].api_port) == ("127.0.0.1", n01.api_port)
    assert load_config(cluster.data_dir("n02")).api_port == moved_api
    for dialer in ("n00", "n02"):
        bootstrap = load_config(cluster.data_dir(dialer)).bootstrap
        assert cluster.entry("n01").p2p_addr in bootstrap and n01.p2p_addr not in bootstrap


def test_the_api_port_of_a_node_that_minted_agent_credentials_is_not_moved_but_named(tmp_path, monkeypatch):
    """Each credential names the API's URL for its status list, and a signed one can be neither rewritten nor
    re-issued to its agent from here: moved, the port left them all unverifiable (a verifier refuses a credential
    whose status it cannot read)."""
    cluster = created(tmp_path, monkeypatch, nodes=2)
    n01 = cluster.entry("n01")
    monkeypatch.chdir(tmp_path)
    assert main(["agent", "new", "--name", "alice", "--dir", str(cluster.data_dir("n01"))]) == 0
    monkeypatch.setattr(processes, "spawn_node", lambda *args: pytest.fail("a node was started"))
    with socket.socket() as api:
        api.bind(("127.0.0.1", n01.api_port))
        api.listen()
        with pytest.raises(ClusterError) as refused:
            cluster.start(["n01"])
    assert str(refused.value) == (
        f"n01's api port {n01.api_port} is taken by another process, and cannot move: n01 minted 1 agent credential "
        "(`vouchnet agent list`), each naming the API's URL for its status list; stop the process holding the port "
        "and start again")
    assert Cluster.open(tmp_path).entry("n01") == n01 and load_config(cluster.data_dir("n01")).api_port == n01.api_port


def test_a_port_another_process_took_after_down_is_not_called_a_node_still_running(tmp_path):
    """A service on the machine may bind a stopped node's port (a testnet's ports lie outside the ephemeral range,
    so no outgoing connection is given one, but a process may ask for any)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (p2p,) = choose_ports(1)
        network = state.TestnetState("testnet", 1, "mesh", (NodeEntry("n00", "nodes/n00", p2p, port, "did:a", "a"),))
        assert Cluster(tmp_path, network).leftovers() == [
            f"n00: port {port} accepts connections, though the node's process is gone: another process listens there"]


def test_a_testnet_whose_creation_is_interrupted_leaves_nothing_behind(tmp_path, monkeypatch):
    def interrupted(directory, names, network, ports):
        (directory / "nodes" / names[0]).mkdir(parents=True)  # one `vouchnet init` done, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster_module, "_init_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Cluster.create(tmp_path / "testnet", nodes=2, seed=1, topology="mesh")
    assert not (tmp_path / "testnet").exists()  # `up` again starts afresh instead of failing every `vouchnet init`


def test_node_directories_without_a_testnet_are_named_not_overwritten(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_module, "_init_all", lambda *args: pytest.fail("vouchnet init ran"))
    (tmp_path / "nodes" / "n00").mkdir(parents=True)
    with pytest.raises(ClusterError, match=f"{tmp_path}: holds nodes/ but no testnet.json"):
        Cluster.create(tmp_path, nodes=2, seed=1, topology="mesh")
    assert (tmp_path / "nodes" / "n00").exists()


def test_a_node_with_no_running_peer_on_its_side_is_rotated_without_a_catch_up(tmp_path, monkeypatch):
    """Its catch-up would time out and `vouchnet key rotate` refuse, failing the scenario's rotate fault; the testnet
    stopped the node itself, so its data directory is current."""
    side = Partition(side=("n00",), rest=("n01", "n02"))
    assert peers_on_its_side("n00", side, ["n01", "n02"]) == []
    assert peers_on_its_side("n01", side, ["n02"]) == ["n02"]
    assert peers_on_its_side("n00", None, ["n01"]) == ["n01"]
    assert peers_on_its_side("n00", None, []) == []
    cluster = created(tmp_path, monkeypatch, nodes=2)  # n01 is n00's bootstrap peer, and not running
    before = cluster.entry("n00").did
    old, new = cluster.rotate_key("n00", catch_up=False)
    assert old == before != new == cluster.entry("n00").did and cluster.entry("n00").former_dids == (before,)


def test_nodes_starting_are_asked_for_health_at_once_not_one_after_another(tmp_path, monkeypatch):
    """A start binds its API's port before its catch-up sync, so a node starting holds a request until it serves:
    asked one after another, a second each, N nodes took N seconds a round. Here each node answers only while every
    node is asked at once, so a testnet asking them in turn never sees one up."""
    nodes = 3
    asked_together = threading.Barrier(nodes)

    class Starting(BaseHTTPRequestHandler):
        def do_GET(self):
            try:
                asked_together.wait(timeout=0.5)
                status = 200
            except threading.BrokenBarrierError:
                asked_together.reset()
                status = 503
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Starting) for _ in range(nodes)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        entries = tuple(NodeEntry(f"n0{i}", f"nodes/n0{i}", p2p, server.server_address[1], f"did:{i}", str(i))
                        for i, (server, p2p) in enumerate(zip(servers, choose_ports(nodes))))
        monkeypatch.setattr(Cluster, "running", lambda self, name: True)
        said = []
        Cluster(tmp_path, state.TestnetState("testnet", nodes, "mesh", entries))._wait_healthy(
            [e.name for e in entries], lambda line, done, of: said.append(done), timeout=3)
        assert sorted(said) == [1, 2, 3]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_a_node_silent_while_starting_is_named_with_the_command_showing_its_log_on_this_testnet(tmp_path, monkeypatch):
    """Before: the command named no --dir, so run as given it showed the log of a node of ./vouchnet-testnet."""
    [api] = choose_ports(1)  # (free: nothing answers there)
    entry = NodeEntry("n00", "nodes/n00", 1, api, "did:0", "0")
    monkeypatch.setattr(Cluster, "running", lambda self, name: True)
    with pytest.raises(ClusterError, match=rf"^n00: no answer on /healthz within 0 s; see `vouchnet testnet logs n00 "
                       rf"--dir {re.escape(str(tmp_path))}`$"):
        Cluster(tmp_path, state.TestnetState("testnet", 1, "mesh", (entry,)))._wait_healthy(["n00"], None, timeout=0)


def test_a_testnet_confined_to_a_port_range_makes_and_moves_its_nodes_ports_inside_it(tmp_path, monkeypatch):
    """`up --ports FIRST-LAST`: before, a testnet drew its ports from 10000 up, anywhere outside the ephemeral range,
    so an operator whose firewall opens a range could not keep it there; a port moved later stays there too."""
    (first,) = choose_ports(1, within=PortRange(20000, 29990))
    within = PortRange(first, first + 9)
    cluster = created(tmp_path, monkeypatch, nodes=3, ports=within)
    given = {port for entry in cluster.state.nodes for port in (entry.p2p_port, entry.api_port)}
    assert len(given) == 6 and all(first <= port <= first + 9 for port in given), given
    for name in cluster.names:
        config = load_config(cluster.data_dir(name))
        assert config.listen == (listen_addr(cluster.entry(name).p2p_port),)
    assert Cluster.open(tmp_path).state.ports == within  # kept in testnet.json, for later moves
    monkeypatch.setattr(processes, "spawn_node", lambda *args: (_ for _ in ()).throw(Spawned()))
    n01 = cluster.entry("n01")
    with socket.socket() as p2p:
        p2p.bind(("127.0.0.1", n01.p2p_port))
        p2p.listen()
        with pytest.raises(Spawned):
            cluster.start(["n01"])
    moved = Cluster.open(tmp_path).entry("n01").p2p_port
    assert moved != n01.p2p_port and first <= moved <= first + 9 and moved not in given


def test_a_port_range_too_small_for_the_testnet_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_module, "_init_all", lambda *args: pytest.fail("vouchnet init ran"))
    with pytest.raises(ClusterError) as refused:
        Cluster.create(tmp_path / "testnet", nodes=3, seed=1, topology="mesh", ports=PortRange(48000, 48004))
    assert str(refused.value) == ("--ports 48000-48004: 5 ports, fewer than the 6 a testnet of 3 nodes needs (a p2p "
                                  "and an API port each)")
    assert not (tmp_path / "testnet").exists()
