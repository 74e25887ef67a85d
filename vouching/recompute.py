"""The full recompute (DESIGN.md §6) as a function of a snapshot of the trust engine: credibility from the deviation
test, reputation, voucher accountability, reputation again, then every agent's sums and score, with numpy. The
accountability is judged afresh (agents' conduct by the orgs' word at full accountability, each voucher's own left
out, their bad counted as the score counts it), not from the last recompute's, so that a recompute gives what a node
just restarted gives.

`TrustEngine.snapshot` copies all it reads, so that `Recompute.compute` may run on a worker thread while the engine
goes on taking records and answering reads; `TrustEngine.install` then swaps the result in at once. At 10^5 agents and
10^6 digests the compute takes about 0.25 s, which the node's trio loop cannot wait for (see node.trust).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vouching.accountability import accountability, conduct, others_evidence
from vouching.batch import ScoreTable, score_table, totals, weighted_evidence
from vouching.confirmation import discredited_orgs, reporting_orgs
from vouching.deviation import DeviationTest, credibility
from vouching.evidence import EvidenceStore
from vouching.params import ScoringParams
from vouching.reputation import OrgStanding, org_standing
from vouching.vouches import VouchBook


@dataclass(frozen=True)
class AgentSums:
    """Every agent's weighted sums at `now`, as `TrustEngine._caches` keeps them (in scoring)."""

    now: int
    good: np.ndarray
    good_held: np.ndarray
    bad: np.ndarray
    reports: np.ndarray
    lift: np.ndarray  # capped
    independent: np.ndarray

    def entry(self, agent: int, version: int) -> tuple:
        """The agent's cache entry, for org weights of `version`."""
        return (version, self.now, self.good.item(agent), self.good_held.item(agent),
                self.bad.item(agent), self.reports.item(agent), self.lift.item(agent),
                self.independent.item(agent))


@dataclass(frozen=True)
class Recomputed:
    """What a recompute found, for `TrustEngine.install`."""

    stamp: int
    graph_edits: int
    deviation: DeviationTest  # with this recompute's verdicts
    agreements: np.ndarray
    disagreements: np.ndarray
    credibility: np.ndarray
    accountability: np.ndarray
    standing: OrgStanding
    edges_span: tuple[float, float]  # the times at which the org edges it found are the live ones (org_edges)
    sums: AgentSums
    table: ScoreTable


@dataclass(frozen=True)
class Recompute:
    """What the full recompute reads, as the engine held it at one instant (`stamp`, and `graph_edits`: how many
    changes of the org graph it had seen). The stores are copies (see their `frozen`), or the engine's own when
    nothing else runs until the install (`TrustEngine.recompute`)."""

    now: int
    params: ScoringParams
    source_cap: float  # what one source (an org's good evidence, or vouches) may lift an agent
    own: int
    roots: list[int]
    equivocators: list[int]
    n_orgs: int
    agents: tuple[str, ...]
    evidence: EvidenceStore
    deviation: DeviationTest  # `compute` records its verdicts in it; `install` takes them back from a copy
    vouches: VouchBook
    stamp: int
    graph_edits: int
    org_order: np.ndarray  # org indices sorted by did: the order reputation is computed in (reputation.org_standing)

    def compute(self) -> Recomputed:
        """Refresh credibility, reputation and accountability, then score every agent. Touches nothing but the
        snapshot, so any thread may run it."""
        p, now = self.params, self.now
        n, n_agents = self.n_orgs, len(self.agents)
        is_root = np.zeros(n, dtype=bool)
        is_root[self.roots] = True
        tested = ~is_root
        tested[self.equivocators] = False
        reference = is_root.copy()  # what this node and its roots observed, but a root proven to equivocate
        reference[self.equivocators] = False
        agreements, disagreements = self.deviation.counts(n, reference, tested, now)
        credible = credibility(agreements, disagreements, p)
        credible[is_root] = 1.0
        src, dst, weight, edges_span = self.vouches.org_edges(now, self.equivocators)
        # Accountability is judged from scratch (every org at 1 for the first pass), not from the last recompute's:
        # each recompute then gives what a node just restarted gives (DESIGN.md §6, the same records the same score).
        first = self._standing(src, dst, weight, credible, np.ones(n))
        vouches = self.vouches.agent_columns()
        discredited = discredited_orgs(credible, p)
        evidence = weighted_evidence(self.evidence, first.weights, first.groups, discredited, now, self.source_cap, p)
        misbehaving, well_behaved = conduct(*others_evidence(*vouches[:2], evidence, n, n_agents, self.source_cap), p)
        ended = self.vouches.ends()
        gone = np.flatnonzero(misbehaving & (ended < np.inf))  # a vouch answers for misconduct begun while it stood
        if len(gone):
            began = self.deviation.misconduct_began(vouches[0][gone], vouches[1][gone],
                                                    reporting_orgs(first.weights, discredited, p))
            misbehaving[gone] = began <= ended[gone]
        equivocator = np.zeros(n, dtype=bool)
        equivocator[self.equivocators] = True
        accountable = accountability(n, *vouches, misbehaving, well_behaved, *self.vouches.org_columns(), equivocator,
                                     p)
        accountable[self.own] = 1.0
        standing = self._standing(src, dst, weight, credible, accountable)
        operated, operator = self.vouches.operator_columns()
        weighty = standing.voucher_weights[operator] > 0
        t = totals(self.evidence, standing.weights, standing.groups, discredited,
                   (operated[weighty], operator[weighty]), n_agents, now, self.source_cap, p)
        lift = np.minimum(self.vouches.lifts(standing.voucher_weights, now, n_agents), self.source_cap)
        sums = AgentSums(now, t.good, t.good_held, t.bad, t.reports, lift,
                         t.independent)
        return Recomputed(self.stamp, self.graph_edits, self.deviation, agreements, disagreements, credible,
                          accountable, standing, edges_span, sums, score_table(self.agents, t, lift, now, p))

    def _standing(self, src: np.ndarray, dst: np.ndarray, weight: np.ndarray, credible: np.ndarray,
                  accountable: np.ndarray) -> OrgStanding:
        return org_standing(len(accountable), src, dst, weight, self.roots, self.own, self.equivocators, credible,
                            accountable, self.params, self.org_order)
