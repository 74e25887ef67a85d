"""The trust engine (DESIGN.md §6, issue 3): consumes vouches, revocations, digests, equivocation flags and this
node's own observations, and answers "how far may this node trust this agent?" with an explained score.

Two speeds. Evidence is counted as it arrives (a few microseconds per record) and a score is computed on demand
from the agent's accumulators and the current org weights, then cached until something it depends on changes.
Org-level trust (PageRank reputation, credibility from the deviation test, voucher accountability) is refreshed
by `recompute`, which also scores every agent at once with numpy; a change of the org vouch graph refreshes
reputation alone on the next read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from vouching.accountability import accountability, agent_conduct
from vouching.batch import ScoreTable, Totals, evidence_totals, score_table, totals
from vouching.deviation import DeviationTest, credibility
from vouching.evidence import NO_OUTCOMES, EvidenceStore, InvalidEvidence, Outcomes, Weighed, weigh
from vouching.explanation import Explanation, OrgPart, OrgReputation, Score, VouchPart, VouchShare
from vouching.params import AGENT_BASES, ScoringParams
from vouching.reputation import full_weight_reference, independence_groups, personalised_pagerank
from vouching.rules import cap_score, explain_rules
from vouching.quantiles import max_prior_lift, score_of
from vouching.tiers import tier_of
from vouching.vouches import Vouch, VouchBook, check_weight

INF = math.inf


@dataclass(slots=True)
class _Agent:
    did: str
    pairs: dict[int, int] = field(default_factory=dict)  # org index -> evidence pair
    vouches: list[Vouch] = field(default_factory=list)
    # (weights version, time, valid through, good, good held at the per-org cap, bad, reports, capped lift,
    # witnesses): sums at `time`, which decay exactly as their parts do (the held good stays put) until an
    # input changes, a witness or vouch lapses, or a held org's good decays below the cap (times are whole ms,
    # so a vouch expiring at E is last live at E - 1).
    cache: tuple | None = None


class TrustEngine:
    """Scores agents from this node's point of view. Ids are did strings; times are milliseconds."""

    def __init__(self, own_org: str, roots: Iterable[str] = (), params: ScoringParams | None = None) -> None:
        self.params = params or ScoringParams()
        p = self.params
        self.own_org = own_org
        # Neither vouches alone nor one org's good evidence alone may lift an agent above provisional.
        self._source_cap = max_prior_lift(p.prior_good, p.prior_bad, p.quantile)
        self._cold_score = score_of(p.prior_good, p.prior_bad, p.quantile)
        self._orgs: list[str] = []
        self._org_index: dict[str, int] = {}
        self._weights: list[float] = []  # what each org's digests count, 0..1: standing x credibility
        self._voucher_weights: list[float] = []  # what each org's agent vouches count: standing x accountability
        self._groups: list[int] = []  # independence group of each org
        self._agents: list[_Agent] = []
        self._agent_dids: list[str] = []
        self._agent_index: dict[str, int] = {}
        self._vouches = VouchBook(p.basis_weights)
        self._seen_digests: set[bytes] = set()
        self._equivocators: set[int] = set()
        self._evidence = EvidenceStore(p)
        self._deviation = DeviationTest(p)
        # Org-level state, refreshed by `recompute` (credibility, accountability) or on graph changes (the rest).
        self._credibility = np.ones(0)
        self._accountability = np.ones(0)
        self._agreements = np.zeros(0)
        self._disagreements = np.zeros(0)
        self._reputation = np.zeros(0)
        self._edges = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
        self._full_weight = 1.0
        self._version = 0  # bumped whenever org weights or groups change: agent caches then lapse
        # Changes of the org vouch graph or of the equivocators so far: each may move every agent's score, so a
        # caller announcing scores (node.trust) recomputes soon after one instead of at its next periodic round.
        self.org_changes = 0
        self._graph_dirty = True
        self._next_expiry = INF
        self._own = self._org(own_org)
        self._roots = sorted({self._own, *(self._org(r) for r in roots)})

    # ---- ingest -------------------------------------------------------------------------------------------

    def add_org_vouch(self, issuer: str, subject: str, weight: float, *, record_id: bytes, ts: int,
                      expires: int | None = None) -> None:
        """An org-peer vouch: an edge of the org graph."""
        check_weight(weight)
        if issuer == subject:
            raise InvalidEvidence("subject: an org cannot vouch for itself")
        if record_id in self._vouches:
            return
        self._vouches.add(Vouch(record_id, self._org(issuer), self._org(subject), float(weight), "org-peer", ts,
                                expires, None))
        self._graph_dirty = True
        self.org_changes += 1

    def add_agent_vouch(self, issuer: str, agent: str, weight: float, basis: str, *, record_id: bytes, ts: int,
                        expires: int | None = None, scope: Iterable[str] | None = None) -> None:
        """A vouch for an agent (basis operator, audit, developer or interaction): lifts its prior."""
        check_weight(weight)
        if basis not in AGENT_BASES:
            raise InvalidEvidence(f"basis: must be one of {', '.join(AGENT_BASES)} for an agent, got {basis!r}")
        if record_id in self._vouches:
            return
        a = self._agent(agent)
        vouch = Vouch(record_id, self._org(issuer), a, float(weight), basis, ts, expires,
                      None if scope is None else tuple(scope))
        self._vouches.add(vouch)
        record = self._agents[a]
        record.vouches.append(vouch)
        record.cache = None
        if basis == "operator" and vouch.issuer in record.pairs:
            self._evidence.operator[record.pairs[vouch.issuer]] = 1

    def revoke(self, issuer: str, record_id: bytes, *, ts: int) -> str | None:
        """A revocation of one of the issuer's earlier vouches; it stops counting from now on. The agent whose
        vouch it revoked, if any (None for an org vouch, or a vouch that has not arrived yet)."""
        vouch = self._vouches.revoke(self._org(issuer), record_id, ts)
        if vouch is None:
            return None
        if vouch.for_org:
            self._graph_dirty = True
            self.org_changes += 1
            return None
        agent = self._agents[vouch.subject]
        agent.cache = None
        return agent.did

    def add_digest(self, issuer: str, agent: str, *, epoch: int, length: int, outcomes: Outcomes,
                   high_risk: Outcomes = NO_OUTCOMES, record_id: bytes, ts: int) -> None:
        """A behaviour digest: what `issuer` saw `agent` do over [epoch, epoch + length)."""
        if type(epoch) is not int or epoch < 0:
            raise InvalidEvidence(f"epoch: must be a non-negative integer of ms, got {epoch!r}")
        if type(length) is not int or length <= 0:
            raise InvalidEvidence(f"length: must be a positive integer of ms, got {length!r}")
        batch = weigh(outcomes, high_risk, self.params)
        if issuer == self.own_org or record_id in self._seen_digests:
            return  # this node's own digests repeat its first-hand observations
        self._seen_digests.add(record_id)
        self._count(self._agent(agent), self._org(issuer), min(epoch + length, ts),
                    epoch // self.params.cap_window_ms, batch, outcomes, capped=True)

    def add_first_hand(self, agent: str, *, ts: int, outcomes: Outcomes, high_risk: Outcomes = NO_OUTCOMES) -> None:
        """This node's own observations of `agent` (a batch of outcomes at `ts`): full weight, no cap."""
        if type(ts) is not int or ts < 0:
            raise InvalidEvidence(f"ts: must be a non-negative integer of ms, got {ts!r}")
        batch = weigh(outcomes, high_risk, self.params)
        self._count(self._agent(agent), self._own, ts, ts // self.params.cap_window_ms, batch, outcomes,
                    capped=False)

    def flag_equivocator(self, org: str) -> None:
        """An org proven to have equivocated: its vouches and digests count nothing from now on."""
        o = self._org(org)
        if o == self._own:
            raise InvalidEvidence("offender: this node does not distrust its own org")
        if o in self._equivocators:
            return
        self._equivocators.add(o)
        self.org_changes += 1
        self._weights[o] = 0.0
        self._voucher_weights[o] = 0.0
        self._version += 1
        self._graph_dirty = True

    # ---- reads --------------------------------------------------------------------------------------------

    def score(self, agent: str, *, now: int) -> Score:
        """The agent's current score; an unknown agent gets the cold-start score, never an error."""
        if self._graph_dirty or now >= self._next_expiry:
            self._refresh_reputation(now)
        a = self._agent_index.get(agent)
        if a is None:
            return Score(agent, self._cold_score, tier_of(self._cold_score), 0.0, int(now))
        record = self._agents[a]
        cache = record.cache
        if cache is None or cache[0] != self._version or not cache[1] <= now <= cache[2]:
            cache = record.cache = self._sums(record, now, None)
        p = self.params
        age = now - cache[1]
        good = cache[3] * math.exp(-age * self._evidence.k_good) + cache[4]
        bad = cache[5] * math.exp(-age * self._evidence.k_bad)
        reports = cache[6] * math.exp(-age * self._evidence.k_report)
        value, caps = cap_score(score_of(p.prior_good + cache[7] + good, p.prior_bad + bad, p.quantile), reports,
                                cache[8], p)
        evidence = cache[7] + good + bad
        return Score(agent, value, tier_of(value), evidence / (evidence + p.confidence_half), int(now), caps)

    def explain(self, agent: str, *, now: int) -> Explanation:
        """The score with every contribution, count, decay and rule behind it."""
        p = self.params
        score = self.score(agent, now=now)
        a = self._agent_index.get(agent)
        parts: tuple[list[OrgPart], list[VouchPart], list[float]] = ([], [], [])
        sums = self._sums(self._agents[a] if a is not None else _Agent(agent), now, parts)
        org_parts, vouch_parts, (lift,) = parts
        _, _, _, good, good_held, bad, reports, capped_lift, witnesses = sums
        good += good_held
        alpha, beta = p.prior_good + capped_lift + good, p.prior_bad + bad
        return Explanation(
            score=score, prior_good=p.prior_good, prior_bad=p.prior_bad, vouch_lift=capped_lift,
            vouch_lift_cap=self._source_cap, vouches=tuple(vouch_parts), orgs=tuple(org_parts), alpha=alpha,
            beta=beta, quantile=p.quantile, uncapped_score=score_of(alpha, beta, p.quantile),
            recent_bad_reports=reports, independent_orgs=witnesses, good_half_life_ms=p.good_half_life_ms,
            bad_half_life_ms=p.bad_half_life_ms, report_half_life_ms=p.report_half_life_ms,
            rules=tuple(explain_rules(score.caps, lift, capped_lift, reports, witnesses, org_parts, p)),
        )

    def org(self, did: str, *, now: int) -> OrgReputation:
        """How this node sees an org (an unknown org gets reputation 0)."""
        self._ensure_reputation(now)
        o = self._org_index.get(did)
        if o is None:
            return OrgReputation(did, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, False, False, False, did, (),
                                 self._full_weight)
        src, dst, weight, flow = self._edges
        shares = sorted(
            (VouchShare(self._orgs[int(src[e])], float(weight[e]), float(flow[e])) for e in np.flatnonzero(dst == o)),
            key=lambda v: -v.inflow,
        )
        return OrgReputation(
            org=did,
            reputation=float(self._reputation[o]),
            weight=self._weights[o],
            voucher_weight=self._voucher_weights[o],
            credibility=float(self._credibility[o]),
            accountability=float(self._accountability[o]),
            agreements=float(self._agreements[o]),
            disagreements=float(self._disagreements[o]),
            root=o in self._roots,
            own=o == self._own,
            equivocator=o in self._equivocators,
            group=self._orgs[self._groups[o]],
            vouched_by=tuple(shares),
            full_weight_reputation=self._full_weight,
        )

    def orgs(self, *, now: int) -> list[OrgReputation]:
        """Every org this node has heard of, highest weight first."""
        self._ensure_reputation(now)
        return sorted((self.org(d, now=now) for d in self._orgs), key=lambda r: (-r.weight, -r.reputation, r.org))

    def reputations(self, *, now: int) -> dict[str, float]:
        """Every known org's personalised PageRank reputation (they sum to 1)."""
        self._ensure_reputation(now)
        return dict(zip(self._orgs, self._reputation.tolist()))

    def agents(self) -> tuple[str, ...]:
        return tuple(self._agent_dids)

    # ---- full recompute -------------------------------------------------------------------------------------

    def recompute(self, *, now: int) -> ScoreTable:
        """Refresh credibility, reputation and accountability, then score every agent (numpy)."""
        p = self.params
        self._grow_org_arrays()
        n = len(self._orgs)
        is_root = self._root_mask()
        tested = ~is_root
        tested[list(self._equivocators)] = False
        self._agreements, self._disagreements = self._deviation.counts(n, is_root, tested, now)
        self._credibility = credibility(self._agreements, self._disagreements, p)
        self._credibility[is_root] = 1.0
        self._refresh_reputation(now)
        good, bad = evidence_totals(self._evidence, np.asarray(self._weights), len(self._agents), now,
                                    self._source_cap)
        misbehaving, well_behaved = agent_conduct(good, bad, p)
        equivocator = np.zeros(n, dtype=bool)
        equivocator[list(self._equivocators)] = True
        self._accountability = accountability(n, *self._vouches.agent_columns(), misbehaving, well_behaved,
                                              *self._vouches.org_columns(), equivocator, p)
        self._accountability[self._own] = 1.0
        self._refresh_reputation(now)
        weights = np.asarray(self._weights)
        t = totals(self._evidence, weights, np.asarray(self._groups), len(self._agents), now, self._source_cap, p)
        lift = np.minimum(self._vouches.lifts(np.asarray(self._voucher_weights), now, len(self._agents)),
                          self._source_cap)
        self._fill_caches(t, lift, now)
        return score_table(self.agents(), t, lift, now, p)

    # ---- internals ----------------------------------------------------------------------------------------

    def _org(self, did: str) -> int:
        o = self._org_index.get(did)
        if o is None:
            o = self._org_index[did] = len(self._orgs)
            self._orgs.append(did)
            self._weights.append(0.0)
            self._voucher_weights.append(0.0)
            self._groups.append(o)
            self._graph_dirty = True
        return o

    def _agent(self, did: str) -> int:
        a = self._agent_index.get(did)
        if a is None:
            a = self._agent_index[did] = len(self._agents)
            self._agents.append(_Agent(did))
            self._agent_dids.append(did)
        return a

    def _count(self, a: int, o: int, t: int, window: int, batch: Weighed, outcomes: Outcomes, *,
               capped: bool) -> None:
        agent = self._agents[a]
        pair = agent.pairs.get(o)
        if pair is None:
            operator = any(v.issuer == o and v.basis == "operator" for v in agent.vouches)
            pair = agent.pairs[o] = self._evidence.new_pair(a, o, operator=operator, first_hand=o == self._own)
        self._evidence.add(pair, float(t), window, batch, outcomes.total, capped=capped)
        self._deviation.append(a, o, window, float(t), outcomes.total, outcomes.failures, outcomes.denied)
        agent.cache = None

    def _root_mask(self) -> np.ndarray:
        mask = np.zeros(len(self._orgs), dtype=bool)
        mask[self._roots] = True
        return mask

    def _ensure_reputation(self, now: float) -> None:
        if self._graph_dirty or now >= self._next_expiry:
            self._refresh_reputation(now)

    def _grow_org_arrays(self) -> None:
        """Orgs first heard of since the last refresh: untested credibility, full accountability."""
        more = len(self._orgs) - len(self._credibility)
        if more:
            untested = credibility(np.zeros(more), np.zeros(more), self.params)
            self._credibility = np.concatenate([self._credibility, untested])
            self._credibility[self._roots] = 1.0
            self._accountability = np.concatenate([self._accountability, np.ones(more)])
            self._agreements = np.concatenate([self._agreements, np.zeros(more)])
            self._disagreements = np.concatenate([self._disagreements, np.zeros(more)])

    def _refresh_reputation(self, now: float) -> None:
        """Personalised PageRank over the live org vouches, then each org's weight and group."""
        p = self.params
        self._grow_org_arrays()
        n = len(self._orgs)
        src, dst, weight, next_expiry = self._vouches.org_edges(now, self._equivocators)
        keep = self._credibility * self._accountability
        equivocating = list(self._equivocators)
        keep[equivocating] = 0.0
        rep, share = personalised_pagerank(n, src, dst, weight, np.asarray(self._roots), keep, restart=p.restart,
                                           tolerance=p.ppr_tolerance, max_iterations=p.ppr_max_iterations)
        rep[equivocating] = 0.0
        is_root = self._root_mask()
        self._full_weight = full_weight_reference(rep, np.asarray(self._roots), p.full_weight_share)
        standing = np.minimum(1.0, rep / self._full_weight) * self._accountability
        standing[self._own] = 1.0
        standing[equivocating] = 0.0
        weights = standing * self._credibility
        flow = rep[src] * share * (1.0 - p.restart)
        self._reputation = rep
        self._edges = (src, dst, weight, flow)
        self._weights = weights.tolist()
        self._voucher_weights = standing.tolist()
        self._groups = independence_groups(n, src, dst, flow, is_root, p.principal_share).tolist()
        self._version += 1
        self._graph_dirty = False
        self._next_expiry = next_expiry

    def _fill_caches(self, t: Totals, lift: np.ndarray, now: int) -> None:
        """Give every agent the cache entry the full recompute just computed (see `_Agent.cache`)."""
        p, ev = self.params, self._evidence
        valid = np.full(len(self._agents), INF)
        agent = ev.column("agent")
        good = ev.column("good") * np.exp(-np.maximum(0.0, now - ev.column("t_ref")) * ev.k_good)
        witness = (np.asarray(self._weights)[ev.column("org")] >= p.independent_min_weight) & (
            good >= p.independent_min_good) & (ev.column("operator") == 0)
        if p.independent_min_good > 0:
            lapse = now + np.log(good[witness] / p.independent_min_good) / ev.k_good
            np.minimum.at(valid, agent[witness], lapse)
        held = (ev.column("first_hand") == 0) & (good > self._source_cap)
        np.minimum.at(valid, agent[held], now + np.log(good[held] / self._source_cap) / ev.k_good)
        future = (ev.column("t_ref") > now) | (ev.column("win_t") > now)
        valid[agent[future]] = now
        del agent, good, witness, held, future
        vouched, expiries = self._vouches.live_expiries(now)
        np.minimum.at(valid, vouched, expiries - 1)
        version = self._version
        rows = zip(valid.tolist(), t.good.tolist(), t.good_held.tolist(), t.bad.tolist(), t.reports.tolist(),
                   lift.tolist(), t.independent.tolist())
        for record, row in zip(self._agents, rows):
            record.cache = (version, now, *row)

    def _sums(self, agent: _Agent, now: float, parts: tuple[list, list, list] | None) -> tuple:
        """The agent's weighted sums at `now`, as a cache entry (see `_Agent.cache`); with `parts`, also each
        org's and vouch's part and the uncapped vouch lift."""
        p, ev = self.params, self._evidence
        weights, groups = self._weights, self._groups
        k_good, k_bad, k_report = ev.k_good, ev.k_bad, ev.k_report
        good = good_held = bad = reports = 0.0
        good_cap = self._source_cap
        valid_until = INF
        witnesses: set[int] = set()
        min_weight, min_good = p.independent_min_weight, p.independent_min_good
        for o, pair in agent.pairs.items():
            w = weights[o]
            if w == 0 and parts is None:
                continue  # counts nothing and witnesses nothing
            t_ref = ev.t_ref[pair]
            if t_ref > now or ev.win_t[pair] > now:
                valid_until = now  # evidence from the future: sums do not decay exactly yet; valid this instant
            age = now - t_ref if now > t_ref else 0.0
            g = ev.good[pair] * math.exp(-age * k_good)
            b = ev.bad[pair] * math.exp(-age * k_bad)
            r = ev.reports[pair]
            if r:
                r *= math.exp(-age * k_report)
            if ev.win_raw_violation[pair]:
                open_age = now - ev.win_t[pair]
                r += ev.open_report(pair) * math.exp(-(open_age if open_age > 0 else 0.0) * k_report)
            first_hand = ev.first_hand[pair]
            if g > good_cap and not first_hand:
                good_held += w * good_cap
                valid_until = min(valid_until, now + math.log(g / good_cap) / k_good)
            else:
                good += w * g
            bad += w * b
            reports += w * r
            witness = w >= min_weight and g >= min_good and not ev.operator[pair]
            if witness:
                witnesses.add(groups[o])
                if min_good > 0:  # when this witness's good evidence decays below the bar
                    valid_until = min(valid_until, now + math.log(g / min_good) / k_good)
            if parts is not None:
                parts[0].append(OrgPart(
                    org=self._orgs[o], first_hand=bool(first_hand), weight=w, good=g,
                    good_cap=INF if first_hand else good_cap, bad=b, recent_bad_reports=r,
                    batches=ev.batches[pair], events=ev.events[pair], capped=ev.capped[pair],
                    ignored=ev.ignored[pair], last_evidence=int(t_ref), independent=witness,
                    group=self._orgs[groups[o]],
                ))
        lift = 0.0
        voucher_weights = self._voucher_weights
        for v in agent.vouches:
            voucher_weight = voucher_weights[v.issuer]
            active = v.active(now)
            contribution = p.basis_weights[v.basis] * v.weight * voucher_weight if active else 0.0
            lift += contribution
            if active and v.expires is not None:
                valid_until = min(valid_until, v.expires - 1)
            if parts is not None:
                status = ("revoked" if v.revoked_at is not None else "expired" if not active
                          else "counted" if voucher_weight > 0 else "voucher has no weight")
                parts[1].append(VouchPart(v.record_id.hex(), self._orgs[v.issuer], v.basis, v.weight,
                                          voucher_weight, contribution, status, v.scope, v.expires))
        if parts is not None:
            parts[2].append(lift)
        return (self._version, now, valid_until, good, good_held, bad, reports, min(lift, self._source_cap),
                len(witnesses))
