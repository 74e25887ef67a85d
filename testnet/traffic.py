"""Agent traffic on a testnet: every round, each org reports (`POST /v1/events`) what the agents working for it did,
truthfully, or as its attack script says (testnet.attacks); in a background thread, in step with the wall clock,
each org's reports independent of the others' answers, as orgs' are."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

import numpy as np

from node.client import ClientError

from .agents import Agent, fabricated, observed
from .attacks import attacks_in_force, scripted_outcomes
from .cluster import Cluster
from .plan import Plan
from .workers import Worker


@dataclass
class TrafficStats:
    rounds: int = 0
    batches: int = 0
    events_accepted: int = 0
    events_rejected: int = 0
    batches_failed: int = 0  # the node was down or did not answer
    batches_skipped: int = 0  # a round's batch not sent: its node was still answering the one before
    failed_at: Counter[str] = field(default_factory=Counter)  # node -> its batches failed
    skipped_at: Counter[str] = field(default_factory=Counter)  # node -> its batches skipped
    # praise or slander attack (its index) -> how many of the batches its scripts were due in were "answered",
    # "failed" (unanswered or refused), "not sent" (the node down) or "skipped" (the node still answering the one
    # before)
    attack_batches: dict[int, Counter[str]] = field(default_factory=dict)

    def count_attack_batch(self, attacks: list[int], outcome: str) -> None:
        """Count a batch the praise and slander `attacks` were due in (attacks_in_force) as `outcome`."""
        for attack in attacks:
            self.attack_batches.setdefault(attack, Counter())[outcome] += 1


class Traffic(Worker):
    """Rounds of `round_seconds` from `t0` (wall seconds) until stopped."""

    def __init__(self, cluster: Cluster, plan: Plan, agents: dict[str, Agent], is_up: Callable[[str], bool],
                 seed: int) -> None:
        super().__init__(cluster, timeout=10.0)
        self.plan = plan
        self.agents = agents
        self.is_up = is_up
        self.stats = TrafficStats()
        self.t0 = 0.0
        self._rng = np.random.default_rng(seed)

    def start_at(self, t0: float) -> None:
        self.t0 = t0
        self.start()

    def batch(self, node: str, round_: int, t: float) -> list[dict]:
        """The events `node`'s org reports for one round at run time `t`."""
        ts = int(time.time() * 1000)
        traffic = self.plan.scenario.traffic
        scripted = scripted_outcomes(self.plan, node, t)
        events = []
        for agent in self.agents.values():
            if agent.plan.name in scripted:
                events += fabricated(agent, scripted[agent.plan.name], ts, traffic, self._rng)
            elif node in agent.plan.orgs:
                events += observed(agent, round_, ts, traffic, self._rng)
        return events

    def loop(self) -> None:
        """Each round, every running node not still answering its batch of a round before is sent its batch; one
        that is (stopped, overloaded: up to the client's timeout) skips the round, while the others go on in step. A
        batch an attack's scripts were due in is counted for the attack (TrafficStats.attack_batches), sent or not:
        one skipped apart from one its node, down, was not sent."""
        step = self.plan.scenario.traffic.round_seconds
        round_ = 0
        sending: dict[str, tuple[Future[dict | None], list[int]]] = {}
        while not self.stopping.is_set():
            self._count_answered(sending)
            t = time.time() - self.t0
            for node in self.cluster.names:
                attacks = attacks_in_force(self.plan, node, t)
                if not self.is_up(node):
                    self.stats.count_attack_batch(attacks, "not sent")
                    continue
                if node in sending:
                    self.stats.batches_skipped += 1
                    self.stats.skipped_at[node] += 1
                    self.stats.count_attack_batch(attacks, "skipped")
                else:
                    sending[node] = (self.pool.submit(self._send, node, self.batch(node, round_, t)), attacks)
            self.stats.rounds += 1
            round_ = int((time.time() - self.t0) / step) + 1  # a slow round is not made up for
            self.stopping.wait(max(0.0, self.t0 + round_ * step - time.time()))
        wait([future for future, _ in sending.values()])
        self._count_answered(sending)

    def _count_answered(self, sending: dict[str, tuple[Future[dict | None], list[int]]]) -> None:
        """Count the answers of the batches in `sending` (each with the attacks it was due for) that are answered (or
        failed), and drop them from it."""
        for node, (future, attacks) in list(sending.items()):
            if future.done():
                del sending[node]
                answer = future.result()
                self._count(node, answer)
                self.stats.count_attack_batch(attacks, "failed" if answer is None else "answered")

    def _send(self, node: str, events: list[dict]) -> dict | None:
        if not events:
            return {"accepted": 0, "rejected": []}
        try:
            return self.client(node).report_events(events)
        except ClientError:
            return None

    def _count(self, node: str, answer: dict | None) -> None:
        if answer is None:
            self.stats.batches_failed += 1
            self.stats.failed_at[node] += 1
            return
        self.stats.batches += 1
        self.stats.events_accepted += answer["accepted"]
        self.stats.events_rejected += len(answer["rejected"])
