"""Watching a running testnet through the nodes' APIs, in background threads: which node holds which record since
when (`GET /v1/records`, from where the last poll left off), and what every node scores every agent
(`GET /v1/agents/{did}/score`). A node that is down is skipped; a failed call is counted, not fatal.
"""

from __future__ import annotations

import random
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from node.client import ClientError, NodeApiError, NodeClient

from .cluster import Cluster
from .workers import Worker

PAGE = 500


@dataclass(frozen=True)
class RecordInfo:
    id: str
    iss: str
    kind: str
    seq: int
    ts: float  # issuer's clock, wall seconds
    about: str | None  # a vouch's subject, an equivocation's offender


@dataclass(frozen=True)
class ScoreSample:
    at: float  # wall seconds
    node: str
    agent: str  # the simulated agent's name
    did: str  # the identity asked about (a whitewashed agent has several)
    score: int
    tier: str
    confidence: float


class _Watch(Worker):
    """A thread that calls `sample(node, client)` for every running node every `interval` s until stopped."""

    def __init__(self, cluster: Cluster, is_up: Callable[[str], bool], interval: float) -> None:
        super().__init__(cluster, timeout=5.0)
        self.is_up = is_up
        self.interval = interval
        self.errors = 0
        self.last_error: str | None = None  # "node: the error" of the latest ask that failed
        self.lock = threading.Lock()
        self._jitter = random.Random()

    def sample_all(self) -> None:
        """One round over every running node, in parallel; returns when all have answered (or failed)."""
        nodes = [n for n in self.cluster.names if self.is_up(n)]
        for failure in self.pool.map(self._guarded, nodes):
            if failure is not None:
                with self.lock:
                    self.errors += 1
                    self.last_error = failure

    def _guarded(self, node: str) -> str | None:
        """`sample` of the node; what failed it, if anything ("node: the error")."""
        try:
            self.sample(node, self.client(node))
        except ClientError as e:
            return f"{node}: {e}"
        return None

    @abstractmethod
    def sample(self, node: str, client: NodeClient) -> None:
        """Ask one node (through `client`, which only this call uses at a time) and keep what it says."""

    def loop(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            self.sample_all()
            # Jittered, so that sampling does not lock into phase with the nodes' own periods (epochs, checkpoints)
            # and report the same offset every time.
            pause = self.interval * self._jitter.uniform(0.5, 1.5)
            self.stopping.wait(max(0.0, pause - (time.monotonic() - started)))


class RecordWatch(_Watch):
    """When each node was first seen holding each record (to within `interval`)."""

    def __init__(self, cluster: Cluster, is_up: Callable[[str], bool], interval: float) -> None:
        super().__init__(cluster, is_up, interval)
        self.records: dict[str, RecordInfo] = {}
        self.seen: dict[str, dict[str, float]] = {}  # record id -> node -> wall seconds
        self.held: dict[str, set[str]] = {name: set() for name in cluster.names}
        self._cursors: dict[str, int | None] = {name: None for name in cluster.names}

    def sample(self, node: str, client: NodeClient) -> None:
        while True:
            page = client.records(after=self._cursors[node], limit=PAGE)
            now = time.time()
            with self.lock:
                for record in page["records"]:
                    self._note(node, record, now)
            if page["next"] is None:
                if page["records"]:
                    self._cursors[node] = page["records"][-1]["index"]
                return
            self._cursors[node] = page["next"]

    def _note(self, node: str, record: dict, now: float) -> None:
        rid = record["id"]
        if rid not in self.records:
            body = record["body"]
            about = body.get("subject") if record["kind"] == "vouch" else body.get("offender")
            self.records[rid] = RecordInfo(rid, record["iss"], record["kind"], record["seq"], record["ts"] / 1000,
                                           about)
        self.seen.setdefault(rid, {}).setdefault(node, now)
        self.held[node].add(rid)

    def snapshot(self) -> list[RecordInfo]:
        """Every record seen so far (a copy: the watch goes on adding to its own)."""
        with self.lock:
            return list(self.records.values())

    def holding(self, ids: set[str]) -> dict[str, int]:
        """Node -> how many of `ids` it holds."""
        with self.lock:
            return {node: len(held & ids) for node, held in self.held.items()}


class ScoreWatch(_Watch):
    """Every node's score of every agent identity in `identities()` (agent name -> its dids), every `interval` s."""

    def __init__(self, cluster: Cluster, is_up: Callable[[str], bool], interval: float,
                 identities: Callable[[], dict[str, list[str]]]) -> None:
        super().__init__(cluster, is_up, interval)
        self.identities = identities
        self.samples: list[ScoreSample] = []

    def sample(self, node: str, client: NodeClient) -> None:
        """Every identity's score at `node`; one the node refuses (an error of its own) leaves the others asked and
        kept, the refusal raised once they are; a node that does not answer ends the round at once, keeping those
        answered before."""
        found, refused = [], None
        try:
            for agent, dids in self.identities().items():
                for did in dids:
                    try:
                        answer = client.score(did)
                    except NodeApiError as e:
                        refused = refused or e
                        continue
                    found.append(ScoreSample(time.time(), node, agent, did, answer["score"], answer["tier"],
                                             answer["confidence"]))
        finally:
            with self.lock:
                self.samples += found
        if refused is not None:
            raise refused


@dataclass
class Timeline:
    """What the run did and when (wall seconds), for the report and the measurements."""

    events: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, *, at: float | None = None, **details: object) -> dict:
        """An entry of `kind` dated `at`, or now."""
        entry = {"at": time.time() if at is None else at, "kind": kind, **details}
        with self.lock:
            self.events.append(entry)
        return entry
