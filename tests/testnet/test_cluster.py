"""Making and starting a testnet: a creation cut short leaves nothing behind, and a port another process holds is
found before any node is started."""

import socket

import pytest

from testnet import cluster as cluster_module
from testnet import processes
from testnet.cluster import Cluster, ClusterError
from testnet import state
from testnet.ports import choose_ports
from testnet.state import NodeEntry


def test_a_taken_port_is_found_before_any_node_is_started(tmp_path, monkeypatch):
    spawned = []
    monkeypatch.setattr(processes, "spawn_node", lambda *args: spawned.append(args))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p2p, api, other = choose_ports(3)
        network = state.TestnetState("testnet", 1, "mesh", (NodeEntry("n00", "nodes/n00", p2p, api, "did:a", "a"),
                                                            NodeEntry("n01", "nodes/n01", other, port, "did:b", "b")))
        with pytest.raises(ClusterError, match=f"n01: port {port} is taken by another process"):
            Cluster(tmp_path, network).start()
    assert spawned == []  # n00 was not left running by an `up` that failed


def test_a_port_another_process_took_after_down_is_not_called_a_node_still_running(tmp_path):
    """The machine's other processes bind ports of the ephemeral range, where a testnet's are, and may take one of a
    stopped node's."""
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
