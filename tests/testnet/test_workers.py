"""The threads that ask a testnet's nodes follow a node whose API port a restart moved."""

import socket

from testnet.cluster import Cluster
from testnet.workers import Worker

from .test_cluster import created


class Idle(Worker):
    def loop(self) -> None:
        self.stopping.wait()


def test_a_worker_asks_a_node_at_the_api_port_a_restart_moved_it_to(tmp_path, monkeypatch):
    cluster: Cluster = created(tmp_path, monkeypatch, nodes=1)
    worker = Idle(cluster, timeout=1.0)
    first = worker.client("n00")
    assert worker.client("n00") is first and first.base_url == cluster.entry("n00").api_url
    with socket.socket() as service:
        service.bind(("127.0.0.1", cluster.entry("n00").api_port))
        service.listen()
        (moved,) = cluster.move_taken_ports(["n00"])  # as the runner's restart of a killed node does
    assert worker.client("n00").base_url == cluster.entry("n00").api_url != first.base_url, moved
    worker.stop()
