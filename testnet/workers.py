"""Background threads that talk to every node of a testnet: a client per node (following the node's API when a
restart moves it), a pool to ask the nodes in parallel, and a stop that waits for the thread and closes the
clients."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor

from node.client import NodeClient

from .cluster import Cluster


class Worker(ABC):
    """Runs `loop()` in a daemon thread from `start()` until `stop()`; `loop` should return soon after
    `self.stopping` is set (wait on it rather than sleep)."""

    def __init__(self, cluster: Cluster, *, timeout: float) -> None:
        self.cluster = cluster
        self.stopping = threading.Event()
        self.timeout = timeout
        self._clients = {name: cluster.client(name, timeout=timeout) for name in cluster.names}
        self.pool = ThreadPoolExecutor(max_workers=len(cluster.names), thread_name_prefix=type(self).__name__)
        self._thread = threading.Thread(target=self.loop, name=type(self).__name__, daemon=True)

    @abstractmethod
    def loop(self) -> None:
        """The thread's work."""

    def client(self, name: str) -> NodeClient:
        """The node's client (one thread at a time asks a node), made anew at the node's API address if a restart
        moved it (Cluster.move_taken_ports)."""
        client = self._clients[name]
        if client.base_url != self.cluster.entry(name).api_url:
            client.close()
            client = self._clients[name] = self.cluster.client(name, timeout=self.timeout)
        return client

    def start(self) -> None:
        self._thread.start()

    def ask_to_stop(self) -> None:
        """Have the thread stop, not waiting for it (`stop` does): workers asked so together wait out their asks in
        hand (a node not answering: up to its timeout) at once, not one after another."""
        self.stopping.set()

    def stop(self) -> None:
        """Stop the thread (if it was started) and close the clients; calling it again does nothing."""
        self.ask_to_stop()
        if self._thread.ident is not None:
            self._thread.join()
        self.pool.shutdown()
        for client in self._clients.values():
            client.close()
