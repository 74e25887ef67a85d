"""Starting a testnet's nodes: a port another process holds is found before any node is started."""

import socket

import pytest

from testnet import processes
from testnet.cluster import Cluster, ClusterError, free_ports
from testnet.state import NodeEntry, TestnetState


def test_a_taken_port_is_found_before_any_node_is_started(tmp_path, monkeypatch):
    spawned = []
    monkeypatch.setattr(processes, "spawn_node", lambda *args: spawned.append(args))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p2p, api, other = free_ports(3)
        state = TestnetState("testnet", 1, "mesh", (NodeEntry("n00", "nodes/n00", p2p, api, "did:a", "a"),
                                                    NodeEntry("n01", "nodes/n01", other, port, "did:b", "b")))
        with pytest.raises(ClusterError, match=f"n01: port {port} is taken by another process"):
            Cluster(tmp_path, state).start()
    assert spawned == []  # n00 was not left running by an `up` that failed
