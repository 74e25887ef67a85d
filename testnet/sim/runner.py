"""Runs one simulated network through the real `TrustEngine`, round by round (one round = one digest epoch).

Each round: the engine scores every agent (full recompute); each client org picks agents to interact with, by
score with exploration, as EigenTrust's evaluation did; agents behave; the observing node records its own
interactions first-hand; every org publishes its digests (truthful or not, by role); attackers add fabricated
praise. All honest clients consult the observing node's view: one engine stands for the honest network's
personalised view, which keeps a run of thousands of orgs cheap.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from testnet.sim.behaviour import DENIED, OK, OnOff, TurnedBad, Whitewasher, draw
from testnet.sim.network import Network, Org
from vouching.evidence import Outcomes
from vouching.params import HOUR_MS, ScoringParams
from vouching.scoring import ScoreTable, TrustEngine
from vouching.tiers import PROVISIONAL, TRUSTED, VERIFIED, tier_of, tier_rank

_TIER_FLOORS = np.array([PROVISIONAL, TRUSTED, VERIFIED])  # the tiers a client ranks offered agents by

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SimConfig:
    rounds: int = 60
    interactions: int = 4  # per client org and round
    observer_interactions: int = 40  # this node's own org is a large consumer
    private_interactions: int = 3  # per round between an org and its private agent
    candidates: int = 8  # agents offered for each interaction
    # Share of interactions that try an agent with little evidence, even one the default policy blocks, as
    # EigenTrust's evaluation tried peers nobody trusted yet.
    exploration: float = 0.1
    unknown_evidence: float = 1.0  # below this much behavioural evidence an agent counts as unknown
    praise_targets: int = 2  # agents each praising attacker praises per round
    dynamic_vouching: bool = False  # honest orgs vouch for orgs whose agents served them well
    vouch_every: int = 5
    whitewash_after: int = 0  # rounds an identity stays trusted before a whitewasher discards it (0: never)
    equivocation_round: int = -1  # the round in which orgs with role "equivocator" are caught
    params: ScoringParams = field(default_factory=ScoringParams)


@dataclass
class Switch:
    """A whitewasher discarded `old` for `fresh`."""

    round: int
    old: str
    fresh: str
    old_score: int
    fresh_score: int


@dataclass
class RunResult:
    name: str
    config: SimConfig
    rounds: int
    blocked: int = 0  # interactions not made: no acceptable agent was offered
    interactions: list[int] = field(default_factory=list)  # honest clients' interactions per round
    to_malicious: list[int] = field(default_factory=list)  # ... with malicious agents
    bad_from_malicious: list[int] = field(default_factory=list)  # ... that went wrong because of them
    class_scores: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # mean per round
    trusted_malicious: list[int] = field(default_factory=list)  # malicious agents at trusted or above
    trajectories: dict[str, list[int]] = field(default_factory=dict)  # tracked agents, per round
    final_scores: dict[str, int] = field(default_factory=dict)
    malicious: dict[str, bool] = field(default_factory=dict)  # ground truth per agent id
    behaviour: dict[str, str] = field(default_factory=dict)
    drops: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # turned-bad: bad digests
    #                                                   until below trusted, below provisional
    bad_digests: dict[str, int] = field(default_factory=dict)  # turned-bad: bad digests received
    max_after_first_bad: dict[str, int] = field(default_factory=dict)  # on-off agents, once acted on
    exposed: dict[str, int] = field(default_factory=dict)  # malicious agents: first round an honest org or
    #                                                        this node reported a violation by them
    acted_on: dict[str, int] = field(default_factory=dict)  # ... first round this node saw one, or an org whose
    #                                                         word alone is enough to act on reported one
    switches: list[Switch] = field(default_factory=list)
    reputation: dict[str, float] = field(default_factory=dict)  # final, per org
    roles: dict[str, str] = field(default_factory=dict)
    operators: dict[str, str] = field(default_factory=dict)  # agent -> operating org
    evidence_orgs: dict[str, set[str]] = field(default_factory=dict)  # honest clients that used each agent
    evidence_count: dict[str, int] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)  # agents some org reported on (or this node observed)
    script: list[list[tuple[str, str, int]]] = field(default_factory=list)  # per round: client, agent, outcome
    round_scores: list[dict[str, int]] = field(default_factory=list)  # every live agent's score, per round
    max_tier: dict[str, int] = field(default_factory=dict)  # highest tier rank each agent reached


class Simulation:
    """One run. With a `script` (another run's interactions) the same interactions happen again, whatever the
    scores say: only the reports differ, which isolates what lying reports do to the scores."""

    def __init__(self, name: str, network: Network, config: SimConfig, seed: int,
                 script: list[list[tuple[str, str, int]]] | None = None) -> None:
        self._script = script
        self.name = name
        self.net = network
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.engine = TrustEngine(network.observer, network.roots, config.params)
        self._ids = itertools.count(1)
        self.orgs = {o.did: o for o in network.orgs}
        self.agents = {a.did: a for a in network.agents}
        self.live: list[str] = [a.did for a in network.agents]  # identities in use
        self.result = RunResult(name, config, config.rounds)
        self.result.roles = {o.did: o.role for o in network.orgs}
        self._org_vouch_ids: dict[tuple[str, str], bytes] = {}
        self._experience: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # (client, org) -> ok, all
        self._trusted_since: dict[str, int] = {}
        self._exploiting: dict[str, int] = {}  # whitewasher identity -> round it started to misbehave
        for issuer, subject, weight in network.vouches:
            self._vouch_org(issuer, subject, weight, ts=0)
        for agent in network.agents:
            self._vouch_agent(agent.operator, agent.did, ts=0)
            self.result.malicious[agent.did] = agent.behaviour.malicious
            self.result.operators[agent.did] = agent.operator
            self.result.behaviour[agent.did] = agent.behaviour.name

    # ---- the run ------------------------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> RunResult:
        for r in range(self.config.rounds):
            if r == self.config.equivocation_round:
                for org in self.net.role("equivocator"):
                    self.engine.flag_equivocator(org.did)
            table = self.engine.recompute(now=r * HOUR_MS)
            self._observe(r, table)
            self._round(r, table)
            if self.config.dynamic_vouching and r % self.config.vouch_every == self.config.vouch_every - 1:
                self._revise_vouches((r + 1) * HOUR_MS)
            if progress:
                progress(r + 1, self.config.rounds)
        end = self.config.rounds * HOUR_MS
        table = self.engine.recompute(now=end)
        self._observe(self.config.rounds, table)
        self.result.final_scores = {did: table.score(did) or 0 for did in self.result.malicious}
        self.result.reputation = self.engine.reputations(now=end)
        return self.result

    def _round(self, r: int, table: ScoreTable) -> None:
        cfg, net = self.config, self.net
        ts = r * HOUR_MS + 1
        clients = [o for o in net.orgs if o.interacts]
        pool = [did for did in self.live if self.agents[did].partner is None]
        if not pool:
            return
        pool_scores = np.array([table.score(d) or 0 for d in pool], dtype=float)
        rows = {d: i for i, d in enumerate(table.agents)}
        pool_evidence = np.array([table.evidence[rows[d]] if d in rows else 0.0 for d in pool])
        pool_operator = np.array([self.agents[d].operator for d in pool])
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.result.script.append([])
        if self._script is not None:
            for client, agent, outcome in self._script[r]:
                self._interact(r, client, agent, counts, outcome)
        else:
            for client in clients:
                n = cfg.observer_interactions if client.did == net.observer else cfg.interactions
                for i in self._choose(client.did, n, pool_scores, pool_evidence, pool_operator):
                    self._interact(r, client.did, pool[i], counts)
            for did in self.live:
                partner = self.agents[did].partner
                if partner is not None:
                    for _ in range(cfg.private_interactions):
                        self._interact(r, partner, did, counts)
        for (client, agent), c in counts.items():
            outcomes = Outcomes(*c)
            if client == net.observer:
                self.engine.add_first_hand(agent, ts=ts, outcomes=outcomes)
                self.result.reported.add(agent)
                self._expose(agent, r, c, actionable=True)
            reported = self._report(self.orgs[client], agent, c)
            if reported is not None:
                self._digest(client, agent, r, reported)
        self._praise(r)

    def _choose(self, client: str, n: int, scores: np.ndarray, evidence: np.ndarray, operator: np.ndarray
                ) -> list[int]:
        """Indices into the pool: by score among the best tier offered (the default policy blocks untrusted
        agents: if nothing better is offered, the client does without), or, exploring, an unknown agent."""
        cfg, rng = self.config, self.rng
        cand = rng.integers(0, len(scores), size=(n, cfg.candidates))
        offered = operator[cand] != client
        s = scores[cand]
        rank = np.searchsorted(_TIER_FLOORS, s, side="right")
        best = np.where(offered, rank, -1).max(axis=1, keepdims=True)
        exploit = offered & (rank == best) & (best > 0)
        weight = np.where(exploit, np.maximum(s, 1.0), 0.0)
        unknown = offered & (evidence[cand] < cfg.unknown_evidence)
        explore = (rng.random(n) < cfg.exploration) & unknown.any(axis=1)
        weight[explore] = unknown[explore].astype(float)
        self.result.blocked += int((weight.sum(axis=1) == 0).sum())
        rows = np.flatnonzero(weight.sum(axis=1) > 0)
        cumulative = np.cumsum(weight[rows], axis=1)
        # One draw a row, as rng.random() row by row drew them; counting the cumulative weights at or below it is
        # searchsorted(side="right") on each row.
        drawn = rng.random(len(rows)) * cumulative[:, -1]
        picked = (cumulative <= drawn[:, None]).sum(axis=1)
        return [int(i) for i in cand[rows, picked]]

    def _interact(self, r: int, client: str, agent: str, counts: dict[tuple[str, str], list[int]],
                  outcome: int | None = None) -> None:
        a = self.agents[agent]
        if outcome is None:
            outcome = draw(a.behaviour.bad, self.rng) if agent in self._exploiting else a.behaviour.outcome(r, self.rng)
        counts[(client, agent)][outcome] += 1
        self.result.script[r].append((client, agent, outcome))
        experience = self._experience[(client, a.operator)]
        experience[0] += outcome == OK
        experience[1] += 1
        res = self.result
        if self.orgs[client].role == "honest":
            while len(res.interactions) <= r:
                res.interactions.append(0)
                res.to_malicious.append(0)
                res.bad_from_malicious.append(0)
            res.interactions[r] += 1
            if a.behaviour.malicious:
                res.to_malicious[r] += 1
                res.bad_from_malicious[r] += outcome != OK
            res.evidence_orgs.setdefault(agent, set()).add(client)
            res.evidence_count[agent] = res.evidence_count.get(agent, 0) + 1

    def _report(self, org: Org, agent: str, counts: list[int]) -> list[int] | None:
        """What `org` puts in its digest about `agent`, given what really happened."""
        reports = org.reports
        malicious = self.agents[agent].behaviour.malicious
        total = sum(counts)
        if reports == "truthful":
            return counts
        if reports == "slander":
            return [0, 0, total, 0] if not malicious else counts
        if reports == "inverted":
            return [total, 0, 0, 0] if malicious else [0, 0, total, 0]
        return None

    def _praise(self, r: int) -> None:
        targets = [did for did in self.live if self.agents[did].behaviour.malicious]
        if not targets:
            return
        k = min(self.config.praise_targets, len(targets))
        for org in self.net.orgs:
            if org.praises:
                for i in self.rng.choice(len(targets), size=k, replace=False):
                    self._digest(org.did, targets[i], r, [int(self.config.params.cap_good), 0, 0, 0])

    def _digest(self, issuer: str, agent: str, r: int, counts: list[int]) -> None:
        self.result.reported.add(agent)
        self.engine.add_digest(issuer, agent, epoch=r * HOUR_MS, length=HOUR_MS, outcomes=Outcomes(*counts),
                               record_id=self._rid(), ts=(r + 1) * HOUR_MS)
        if self.orgs[issuer].role != "honest":
            return
        if not counts[DENIED] or not self.agents[agent].behaviour.malicious:
            return
        now = (r + 1) * HOUR_MS
        # T5 and T6 count misbehaviour the node can act on: reported by an org whose word alone can trigger the
        # recent-misbehaviour rule.
        actionable = self.engine.org(issuer, now=now).weight >= self.config.params.reports_below_trusted
        self._expose(agent, r, counts, actionable=actionable)
        behaviour = self.agents[agent].behaviour
        if isinstance(behaviour, TurnedBad) and r >= behaviour.at and actionable and counts[OK] * 2 < sum(counts):
            self._track_drop(agent, now)

    def _expose(self, agent: str, r: int, counts: list[int], *, actionable: bool) -> None:
        if counts[DENIED] and self.agents[agent].behaviour.malicious:
            self.result.exposed.setdefault(agent, r)
            if actionable:
                self.result.acted_on.setdefault(agent, r)

    def _track_drop(self, agent: str, now: int) -> None:
        self.result.bad_digests[agent] = seen = self.result.bad_digests.get(agent, 0) + 1
        below_trusted, below_provisional = self.result.drops.get(agent, (None, None))
        score = self.engine.score(agent, now=now).score
        if below_trusted is None and score < TRUSTED:
            below_trusted = seen
        if below_provisional is None and score < PROVISIONAL:
            below_provisional = seen
        self.result.drops[agent] = (below_trusted, below_provisional)

    # ---- per-round bookkeeping ----------------------------------------------------------------------------

    def _observe(self, r: int, table: ScoreTable) -> None:
        res = self.result
        by_class: dict[str, list[int]] = defaultdict(list)
        trusted_malicious = 0
        res.round_scores.append({})
        for did in self.live:
            score = table.score(did)
            if score is None:
                continue
            res.round_scores[-1][did] = score
            behaviour = self.agents[did].behaviour
            by_class[behaviour.name].append(score)
            rank = tier_rank(tier_of(score))
            res.max_tier[did] = max(res.max_tier.get(did, 0), rank)
            if behaviour.malicious and score >= TRUSTED:
                trusted_malicious += 1
            if isinstance(behaviour, (TurnedBad, OnOff)) or self.agents[did].partner is not None:
                res.trajectories.setdefault(did, []).append(score)
            if isinstance(behaviour, OnOff) and r > res.acted_on.get(did, r):
                res.max_after_first_bad[did] = max(res.max_after_first_bad.get(did, 0), score)
            self._maybe_whitewash(r, did, score)
        for name, values in by_class.items():
            res.class_scores[name].append(float(np.mean(values)))
        res.trusted_malicious.append(trusted_malicious)

    def _maybe_whitewash(self, r: int, did: str, score: int) -> None:
        """A whitewasher's identity, once trusted for `whitewash_after` rounds, exploits that trust for
        `exploit` rounds (if any) and is then discarded for a fresh one."""
        behaviour = self.agents[did].behaviour
        if self.config.whitewash_after <= 0 or not isinstance(behaviour, Whitewasher):
            return
        if did not in self._trusted_since:
            if score >= TRUSTED:
                self._trusted_since[did] = r
            return
        if r - self._trusted_since[did] < self.config.whitewash_after:
            return
        if behaviour.exploit and did not in self._exploiting:
            self._exploiting[did] = r
        if r - self._exploiting.get(did, r) >= behaviour.exploit:
            self._switch(r, did)

    def _switch(self, r: int, did: str) -> None:
        agent = self.agents[did]
        fresh = f"{did}~{r}"
        self.agents[fresh] = type(agent)(fresh, agent.operator, agent.behaviour, agent.partner)
        self.live[self.live.index(did)] = fresh
        self._exploiting.pop(did, None)
        self.result.malicious[fresh] = agent.behaviour.malicious
        self.result.operators[fresh] = agent.operator
        self.result.behaviour[fresh] = agent.behaviour.name
        now = r * HOUR_MS
        self._vouch_agent(agent.operator, fresh, ts=now)
        self.result.switches.append(Switch(r, did, fresh, self.engine.score(did, now=now).score,
                                           self.engine.score(fresh, now=now).score))

    def _revise_vouches(self, now: int) -> None:
        """Honest orgs vouch for orgs whose agents served them well and revoke vouches for those that did not."""
        for (client, operator), (ok, total) in self._experience.items():
            if client == operator or self.orgs[client].role not in ("honest", "spy") or total < 5:
                continue
            key = (client, operator)
            ratio = ok / total
            if ratio >= 0.9 and key not in self._org_vouch_ids:
                self._vouch_org(client, operator, round(ratio, 3), ts=now)
            elif ratio < 0.8 and key in self._org_vouch_ids:
                self.engine.revoke(client, self._org_vouch_ids.pop(key), ts=now)

    def _vouch_org(self, issuer: str, subject: str, weight: float, *, ts: int) -> None:
        record = self._rid()
        self._org_vouch_ids[(issuer, subject)] = record
        self.engine.add_org_vouch(issuer, subject, weight, record_id=record, ts=ts)

    def _vouch_agent(self, operator: str, agent: str, *, ts: int) -> None:
        self.engine.add_agent_vouch(operator, agent, 1.0, "operator", record_id=self._rid(), ts=ts)

    def _rid(self) -> bytes:
        return next(self._ids).to_bytes(32, "big")

