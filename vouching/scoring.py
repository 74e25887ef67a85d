"""The trust engine (DESIGN.md §6, issue 3): consumes vouches, revocations, digests, equivocation flags and this
node's own observations, and answers "how far may this node trust this agent?" with an explained score.

Two speeds. Evidence is counted as it arrives (a few microseconds per record) and a score is computed on demand
from the agent's accumulators and the current org weights. Org-level trust (PageRank reputation, credibility
from the deviation test, voucher accountability) is refreshed by `recompute`, which also scores every agent at
once with numpy; a change of the org vouch graph refreshes reputation alone on the next read.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from vouching.arrays import sum_by

from vouching.accountability import accountability, agent_conduct
from vouching.deviation import OutcomeLog, credibility, deviation_counts
from vouching.evidence import NO_OUTCOMES, EvidenceStore, InvalidEvidence, Outcomes, report_strengths, weigh
from vouching.explanation import Explanation, OrgPart, OrgReputation, Rule, Score, VouchPart, VouchShare
from vouching.params import AGENT_BASES, ScoringParams
from vouching.reputation import full_weight_reference, independence_groups, personalised_pagerank
from vouching.tiers import PROVISIONAL, TRUSTED, VERIFIED, max_prior_lift, score_of, scores_of, tier_of

INF = math.inf


@dataclass(slots=True)
class _Vouch:
    record_id: bytes
    issuer: int
    subject: int  # an org index for org-peer vouches, an agent index otherwise
    weight: float
    basis: str
    ts: int
    expires: int | None
    scope: tuple[str, ...] | None
    column: int = -1  # row in the agent-vouch columns
    revoked_at: int | None = None

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires is None or now < self.expires)


@dataclass(slots=True)
class _Agent:
    did: str
    pairs: dict[int, int] = field(default_factory=dict)  # org index -> evidence pair
    vouches: list[_Vouch] = field(default_factory=list)


@dataclass(frozen=True)
class ScoreTable:
    """Every known agent scored at one instant by `TrustEngine.recompute`: arrays indexed like `agents`."""

    agents: tuple[str, ...]
    scores: np.ndarray
    confidence: np.ndarray
    independent_orgs: np.ndarray
    computed_at: int

    @cached_property
    def _rows(self) -> dict[str, int]:
        return {did: i for i, did in enumerate(self.agents)}

    def score(self, agent: str) -> int | None:
        row = self._rows.get(agent)
        return None if row is None else int(self.scores[row])

    def tier(self, agent: str) -> str | None:
        value = self.score(agent)
        return None if value is None else tier_of(value)


class TrustEngine:
    """Scores agents from this node's point of view. Ids are did strings; times are milliseconds."""

    def __init__(self, own_org: str, roots: Iterable[str] = (), params: ScoringParams | None = None) -> None:
        self.params = params or ScoringParams()
        p = self.params
        self.own_org = own_org
        self._vouch_lift_cap = max_prior_lift(p.prior_good, p.prior_bad, p.quantile)
        self._orgs: list[str] = []
        self._org_index: dict[str, int] = {}
        self._weights: list[float] = []
        self._groups: list[int] = []
        self._agents: list[_Agent] = []
        self._agent_index: dict[str, int] = {}
        self._vouches: dict[bytes, _Vouch] = {}
        self._org_vouches: list[_Vouch] = []
        self._pending_revocations: dict[bytes, tuple[int, int]] = {}
        self._seen_digests: set[bytes] = set()
        self._equivocators: set[int] = set()
        self._evidence = EvidenceStore(p)
        self._log = OutcomeLog()
        # Agent-vouch columns, for the full recompute.
        self._av_agent = array("i")
        self._av_issuer = array("i")
        self._av_strength = array("d")  # basis weight x vouch weight
        self._av_expires = array("d")
        self._av_active = array("b")
        self._av_operator = array("b")
        # Org-level state, refreshed by `recompute` (credibility, accountability) or on graph changes (the rest).
        self._credibility = np.ones(0)
        self._accountability = np.ones(0)
        self._agreements = np.zeros(0)
        self._disagreements = np.zeros(0)
        self._reputation = np.zeros(0)
        self._edge_src = self._edge_dst = np.zeros(0, dtype=np.int64)
        self._edge_weight = self._edge_flow = np.zeros(0)
        self._group = np.zeros(0, dtype=np.int64)
        self._full_weight = 1.0
        self._graph_dirty = True
        self._next_expiry = INF
        self._own = self._org(own_org)
        self._roots = sorted({self._own, *(self._org(r) for r in roots)})

    # ---- ingest -------------------------------------------------------------------------------------------

    def add_org_vouch(self, issuer: str, subject: str, weight: float, *, record_id: bytes, ts: int,
                      expires: int | None = None) -> None:
        """An org-peer vouch: an edge of the org graph."""
        _check_weight(weight)
        if issuer == subject:
            raise InvalidEvidence("subject: an org cannot vouch for itself")
        if record_id in self._vouches:
            return
        vouch = _Vouch(record_id, self._org(issuer), self._org(subject), float(weight), "org-peer", ts, expires, None)
        self._register(vouch)
        self._org_vouches.append(vouch)
        self._graph_dirty = True

    def add_agent_vouch(self, issuer: str, agent: str, weight: float, basis: str, *, record_id: bytes, ts: int,
                        expires: int | None = None, scope: Iterable[str] | None = None) -> None:
        """A vouch for an agent (basis operator, audit, developer or interaction): lifts its prior."""
        _check_weight(weight)
        if basis not in AGENT_BASES:
            raise InvalidEvidence(f"basis: must be one of {', '.join(AGENT_BASES)} for an agent, got {basis!r}")
        if record_id in self._vouches:
            return
        a = self._agent(agent)
        vouch = _Vouch(record_id, self._org(issuer), a, float(weight), basis, ts, expires,
                       None if scope is None else tuple(scope), column=len(self._av_agent))
        self._av_agent.append(a)
        self._av_issuer.append(vouch.issuer)
        self._av_strength.append(self.params.basis_weights[basis] * vouch.weight)
        self._av_expires.append(INF if expires is None else float(expires))
        self._av_active.append(1)
        self._av_operator.append(basis == "operator")
        self._agents[a].vouches.append(vouch)
        self._register(vouch)

    def revoke(self, issuer: str, record_id: bytes, *, ts: int) -> None:
        """A revocation of one of the issuer's earlier vouches; it stops counting from now on."""
        vouch = self._vouches.get(record_id)
        if vouch is None:  # the vouch may still arrive (e.g. it is outside what this node has synced so far)
            self._pending_revocations[record_id] = (self._org(issuer), ts)
            return
        if self._orgs[vouch.issuer] != issuer:
            raise InvalidEvidence("record: a revocation must name a vouch of the same issuer")
        self._revoke(vouch, ts)

    def add_digest(self, issuer: str, agent: str, *, epoch: int, length: int, outcomes: Outcomes,
                   high_risk: Outcomes = NO_OUTCOMES, record_id: bytes, ts: int) -> None:
        """A behaviour digest: what `issuer` saw `agent` do over [epoch, epoch + length)."""
        if type(epoch) is not int or epoch < 0:
            raise InvalidEvidence(f"epoch: must be a non-negative integer of ms, got {epoch!r}")
        if type(length) is not int or length <= 0:
            raise InvalidEvidence(f"length: must be a positive integer of ms, got {length!r}")
        good, bad = weigh(outcomes, high_risk, self.params)
        if issuer == self.own_org or record_id in self._seen_digests:
            return  # this node's own digests repeat its first-hand observations
        self._seen_digests.add(record_id)
        o = self._org(issuer)
        self._count(self._agent(agent), o, min(epoch + length, ts), epoch // self.params.cap_window_ms,
                    good, bad, outcomes, capped=True)

    def add_first_hand(self, agent: str, *, ts: int, outcomes: Outcomes, high_risk: Outcomes = NO_OUTCOMES) -> None:
        """This node's own observations of `agent` (a batch of outcomes at `ts`): full weight, no cap."""
        good, bad = weigh(outcomes, high_risk, self.params)
        self._count(self._agent(agent), self._own, ts, ts // self.params.cap_window_ms, good, bad, outcomes,
                    capped=False)

    def flag_equivocator(self, org: str) -> None:
        """An org proven to have equivocated: its vouches and digests count nothing from now on."""
        o = self._org(org)
        if o == self._own:
            raise InvalidEvidence("offender: this node does not distrust its own org")
        self._equivocators.add(o)
        self._weights[o] = 0.0
        self._graph_dirty = True

    # ---- reads --------------------------------------------------------------------------------------------

    def score(self, agent: str, *, now: int) -> Score:
        """The agent's current score; an unknown agent gets the cold-start score, never an error."""
        self._ensure_reputation(now)
        return self._evaluate(agent, now, None)

    def explain(self, agent: str, *, now: int) -> Explanation:
        """The score with every contribution, count, decay and rule behind it."""
        self._ensure_reputation(now)
        parts: dict = {}
        self._evaluate(agent, now, parts)
        return parts["explanation"]

    def org(self, did: str, *, now: int) -> OrgReputation:
        """How this node sees an org (an unknown org gets reputation 0)."""
        self._ensure_reputation(now)
        o = self._org_index.get(did)
        if o is None:
            return OrgReputation(did, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, False, False, False, did, (), self._full_weight)
        incoming = np.flatnonzero(self._edge_dst == o)
        shares = sorted(
            (VouchShare(self._orgs[int(self._edge_src[e])], float(self._edge_weight[e]), float(self._edge_flow[e]))
             for e in incoming),
            key=lambda v: -v.inflow,
        )
        return OrgReputation(
            org=did,
            reputation=float(self._reputation[o]),
            weight=self._weights[o],
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

    def agents(self) -> tuple[str, ...]:
        return tuple(a.did for a in self._agents)

    # ---- full recompute -------------------------------------------------------------------------------------

    def recompute(self, *, now: int) -> ScoreTable:
        """Refresh credibility, reputation and accountability, then score every agent (numpy)."""
        self._grow_org_arrays()
        n = len(self._orgs)
        is_root = self._root_mask()
        tested = ~is_root
        tested[list(self._equivocators)] = False
        self._agreements, self._disagreements = deviation_counts(self._log, n, is_root, tested, now, self.params)
        cred = credibility(self._agreements, self._disagreements, self.params)
        cred[is_root] = 1.0
        self._credibility = cred
        self._refresh_reputation(now)
        good, bad, _, _ = self._aggregate(now, evidence_only=True)
        misbehaving, well_behaved = agent_conduct(good, bad, self.params)
        self._accountability = self._accountability_of(misbehaving, well_behaved)
        self._refresh_reputation(now)
        return self._table(now)

    # ---- internals: bookkeeping ---------------------------------------------------------------------------

    def _org(self, did: str) -> int:
        o = self._org_index.get(did)
        if o is None:
            o = self._org_index[did] = len(self._orgs)
            self._orgs.append(did)
            self._weights.append(0.0)
            self._groups.append(o)
            self._graph_dirty = True
        return o

    def _agent(self, did: str) -> int:
        a = self._agent_index.get(did)
        if a is None:
            a = self._agent_index[did] = len(self._agents)
            self._agents.append(_Agent(did))
        return a

    def _register(self, vouch: _Vouch) -> None:
        self._vouches[vouch.record_id] = vouch
        pending = self._pending_revocations.pop(vouch.record_id, None)
        if pending is not None and pending[0] == vouch.issuer:
            self._revoke(vouch, pending[1])

    def _revoke(self, vouch: _Vouch, ts: int) -> None:
        if vouch.revoked_at is not None:
            return
        vouch.revoked_at = ts
        if vouch.basis == "org-peer":
            self._graph_dirty = True
        else:
            self._av_active[vouch.column] = 0

    def _count(self, a: int, o: int, t: int, window: int, good: float, bad: float, outcomes: Outcomes, *,
               capped: bool) -> None:
        agent = self._agents[a]
        pair = agent.pairs.get(o)
        if pair is None:
            pair = agent.pairs[o] = self._evidence.new_pair(a, o)
        self._evidence.add(pair, float(t), window, good, bad, outcomes.total, capped=capped)
        self._log.append(a, o, window, float(t), outcomes.total, outcomes.failures)

    def _root_mask(self) -> np.ndarray:
        mask = np.zeros(len(self._orgs), dtype=bool)
        mask[self._roots] = True
        return mask

    # ---- internals: org level -----------------------------------------------------------------------------

    def _ensure_reputation(self, now: float) -> None:
        if self._graph_dirty or now >= self._next_expiry:
            self._refresh_reputation(now)

    def _grow_org_arrays(self) -> None:
        """Orgs first heard of since the last refresh: untested credibility, full accountability."""
        n = len(self._orgs)
        more = n - len(self._credibility)
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
        best: dict[tuple[int, int], float] = {}
        next_expiry = INF
        for v in self._org_vouches:
            if not v.active(now) or v.issuer in self._equivocators or v.subject in self._equivocators:
                continue
            if v.expires is not None:
                next_expiry = min(next_expiry, v.expires)
            key = (v.issuer, v.subject)
            best[key] = max(best.get(key, 0.0), v.weight)
        src = np.fromiter((k[0] for k in best), dtype=np.int64, count=len(best))
        dst = np.fromiter((k[1] for k in best), dtype=np.int64, count=len(best))
        weight = np.fromiter(best.values(), dtype=np.float64, count=len(best))
        keep = self._credibility * self._accountability
        equivocating = list(self._equivocators)
        keep[equivocating] = 0.0
        rep, share = personalised_pagerank(n, src, dst, weight, np.asarray(self._roots), keep, restart=p.restart,
                                           tolerance=p.ppr_tolerance, max_iterations=p.ppr_max_iterations)
        rep[equivocating] = 0.0
        is_root = self._root_mask()
        self._full_weight = full_weight_reference(rep, is_root, p.full_weight_share)
        weights = np.minimum(1.0, rep / self._full_weight) * self._credibility * self._accountability
        weights[self._own] = 1.0
        weights[equivocating] = 0.0
        flow = rep[src] * share * (1.0 - p.restart)
        self._group = independence_groups(n, src, dst, flow, is_root, p.principal_share)
        self._reputation = rep
        self._edge_src, self._edge_dst, self._edge_weight, self._edge_flow = src, dst, weight, flow
        self._weights = weights.tolist()
        self._groups = self._group.tolist()
        self._graph_dirty = False
        self._next_expiry = next_expiry

    def _accountability_of(self, misbehaving: np.ndarray, well_behaved: np.ndarray) -> np.ndarray:
        n = len(self._orgs)
        org_vouches = self._org_vouches
        equivocator = np.zeros(n, dtype=bool)
        equivocator[list(self._equivocators)] = True
        acct = accountability(
            n,
            np.frombuffer(self._av_issuer, dtype=np.int32).copy(),
            np.frombuffer(self._av_agent, dtype=np.int32).copy(),
            np.frombuffer(self._av_strength, dtype=np.float64).copy(),
            misbehaving, well_behaved,
            np.fromiter((v.issuer for v in org_vouches), dtype=np.int64, count=len(org_vouches)),
            np.fromiter((v.subject for v in org_vouches), dtype=np.int64, count=len(org_vouches)),
            np.fromiter((v.weight for v in org_vouches), dtype=np.float64, count=len(org_vouches)),
            equivocator, self.params,
        )
        acct[self._own] = 1.0
        return acct

    # ---- internals: agent scores ----------------------------------------------------------------------------

    def _aggregate(self, now: float, *, evidence_only: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per agent: weighted decayed good and bad, weighted recent bad reports, independent orgs."""
        p, ev = self.params, self._evidence
        n_agents = len(self._agents)
        weights = np.asarray(self._weights)
        agent = ev.column("agent")
        org = ev.column("org")
        w = weights[org]
        age = np.maximum(0.0, now - ev.column("t_ref"))
        good_now = ev.column("good") * np.exp(-age * ev.k_good)
        good = sum_by(agent, w * good_now, n_agents)
        bad = sum_by(agent, w * ev.column("bad") * np.exp(-age * ev.k_bad), n_agents)
        if evidence_only:
            return good, bad, np.zeros(0), np.zeros(0)
        open_strength = report_strengths(ev.column("win_raw_good"), ev.column("win_raw_bad"), p)
        open_age = np.maximum(0.0, now - ev.column("win_t"))
        recent = ev.column("reports") * np.exp(-age * ev.k_report) + open_strength * np.exp(-open_age * ev.k_report)
        reports = sum_by(agent, w * recent, n_agents)
        independent = self._independent_counts(agent, org, w, good_now, n_agents)
        return good, bad, reports, independent

    def _independent_counts(self, agent: np.ndarray, org: np.ndarray, w: np.ndarray, good_now: np.ndarray,
                            n_agents: int) -> np.ndarray:
        p = self.params
        n_orgs = len(self._orgs)
        witness = (w >= p.independent_min_weight) & (good_now >= p.independent_min_good)
        keys = agent.astype(np.int64) * n_orgs + org
        operator = np.frombuffer(self._av_operator, dtype=np.int8).astype(bool)
        operator_keys = (np.frombuffer(self._av_agent, dtype=np.int32).astype(np.int64)[operator] * n_orgs
                         + np.frombuffer(self._av_issuer, dtype=np.int32)[operator])
        witness &= ~np.isin(keys, operator_keys)
        group_keys = np.unique(agent[witness].astype(np.int64) * n_orgs + self._group[org[witness]])
        return np.bincount(group_keys // n_orgs, minlength=n_agents)

    def _table(self, now: int) -> ScoreTable:
        p = self.params
        n_agents = len(self._agents)
        good, bad, reports, independent = self._aggregate(now)
        weights = np.asarray(self._weights)
        strength = np.frombuffer(self._av_strength, dtype=np.float64)
        live = (np.frombuffer(self._av_active, dtype=np.int8) == 1) & (np.frombuffer(self._av_expires) > now)
        vouched = np.frombuffer(self._av_agent, dtype=np.int32)
        issuer = np.frombuffer(self._av_issuer, dtype=np.int32)
        lift = sum_by(vouched, strength * live * weights[issuer], n_agents)
        del strength, live, vouched, issuer
        lift = np.minimum(lift, self._vouch_lift_cap)
        scores = scores_of(p.prior_good + lift + good, p.prior_bad + bad, p.quantile)
        scores = np.where((scores >= VERIFIED) & (independent < p.verified_min_orgs), VERIFIED - 1, scores)
        scores = np.where(reports >= p.reports_below_trusted, np.minimum(scores, TRUSTED - 1), scores)
        scores = np.where(reports >= p.reports_below_provisional, np.minimum(scores, PROVISIONAL - 1), scores)
        evidence = lift + good + bad
        return ScoreTable(
            agents=self.agents(),
            scores=scores,
            confidence=evidence / (evidence + p.confidence_half),
            independent_orgs=independent,
            computed_at=int(now),
        )

    def _evaluate(self, did: str, now: float, parts: dict | None) -> Score:
        """One agent's score from its accumulators; fills `parts["explanation"]` when `parts` is given."""
        p, ev = self.params, self._evidence
        a = self._agent_index.get(did)
        agent = self._agents[a] if a is not None else _Agent(did)
        weights, groups = self._weights, self._groups
        good = bad = reports = 0.0
        witnesses: set[int] = set()
        operators = {v.issuer for v in agent.vouches if v.basis == "operator" and v.active(now)}
        org_parts: list[OrgPart] = []
        for o, pair in agent.pairs.items():
            w = weights[o]
            age = now - ev.t_ref[pair]
            if age < 0:
                age = 0.0
            g = ev.good[pair] * math.exp(-age * ev.k_good)
            b = ev.bad[pair] * math.exp(-age * ev.k_bad)
            open_age = now - ev.win_t[pair]
            r = ev.reports[pair] * math.exp(-age * ev.k_report)
            if ev.win_raw_good[pair] or ev.win_raw_bad[pair]:
                r += ev.open_report(pair) * math.exp(-(open_age if open_age > 0 else 0.0) * ev.k_report)
            good += w * g
            bad += w * b
            reports += w * r
            independent = (w >= p.independent_min_weight and g >= p.independent_min_good and o not in operators)
            if independent:
                witnesses.add(groups[o])
            if parts is not None:
                org_parts.append(OrgPart(
                    org=self._orgs[o], first_hand=o == self._own, weight=w, good=g, bad=b, recent_bad_reports=r,
                    batches=ev.batches[pair], events=ev.events[pair], capped=ev.capped[pair],
                    ignored=ev.ignored[pair], last_evidence=int(ev.t_ref[pair]), independent=independent,
                    group=self._orgs[groups[o]],
                ))
        lift = 0.0
        vouch_parts: list[VouchPart] = []
        for v in agent.vouches:
            voucher_weight = weights[v.issuer]
            contribution = p.basis_weights[v.basis] * v.weight * voucher_weight
            counted = v.active(now) and voucher_weight > 0
            if counted:
                lift += contribution
            if parts is not None:
                status = ("revoked" if v.revoked_at is not None else "expired" if not v.active(now)
                          else "counted" if counted else "voucher has no weight")
                vouch_parts.append(VouchPart(v.record_id.hex(), self._orgs[v.issuer], v.basis, v.weight,
                                             voucher_weight, contribution if counted else 0.0, status, v.scope,
                                             v.expires))
        capped_lift = min(lift, self._vouch_lift_cap)
        alpha = p.prior_good + capped_lift + good
        beta = p.prior_bad + bad
        uncapped = score_of(alpha, beta, p.quantile)
        value = uncapped
        caps: list[str] = []
        if value >= VERIFIED and len(witnesses) < p.verified_min_orgs:
            value = VERIFIED - 1
            caps.append("needs-independent-orgs")
        if reports >= p.reports_below_provisional:
            if value >= PROVISIONAL:
                value = PROVISIONAL - 1
                caps.append("recent-bad-reports")
        elif reports >= p.reports_below_trusted and value >= TRUSTED:
            value = TRUSTED - 1
            caps.append("recent-bad-reports")
        evidence = capped_lift + good + bad
        score = Score(did, value, tier_of(value), evidence / (evidence + p.confidence_half), int(now), tuple(caps))
        if parts is not None:
            parts["explanation"] = Explanation(
                score=score, prior_good=p.prior_good, prior_bad=p.prior_bad, vouch_lift=capped_lift,
                vouch_lift_cap=self._vouch_lift_cap, vouches=tuple(vouch_parts), orgs=tuple(org_parts),
                alpha=alpha, beta=beta, quantile=p.quantile, uncapped_score=uncapped, recent_bad_reports=reports,
                independent_orgs=len(witnesses), good_half_life_ms=p.good_half_life_ms,
                bad_half_life_ms=p.bad_half_life_ms, report_half_life_ms=p.report_half_life_ms,
                rules=tuple(self._rules(caps, lift, capped_lift, reports, len(witnesses), org_parts)),
            )
        return score

    def _rules(self, caps: list[str], lift: float, capped_lift: float, reports: float, witnesses: int,
               org_parts: list[OrgPart]) -> list[Rule]:
        p = self.params
        rules = []
        if lift > capped_lift:
            rules.append(Rule("vouch-cap", f"vouches would lift the prior by {lift:.2f}; capped at "
                                           f"{capped_lift:.2f} because a vouch alone never lifts above provisional"))
        if "needs-independent-orgs" in caps:
            rules.append(Rule("needs-independent-orgs",
                              f"verified needs good evidence from {p.verified_min_orgs} independent orgs; "
                              f"there are {witnesses}, so the score is held at {VERIFIED - 1}"))
        if "recent-bad-reports" in caps:
            limit = PROVISIONAL - 1 if reports >= p.reports_below_provisional else TRUSTED - 1
            rules.append(Rule("recent-bad-reports",
                              f"weighted recent bad reports {reports:.2f} (windows where bad evidence dominated) "
                              f"hold the score at {limit} or below"))
        capped = sum(o.capped for o in org_parts)
        if capped:
            rules.append(Rule("window-cap", f"{capped} digests were capped at {p.cap_good:g} good and "
                                            f"{p.cap_bad:g} bad per org, agent and {p.cap_window_ms // 60000} "
                                            f"minute window"))
        ignored = sum(o.ignored for o in org_parts)
        if ignored:
            rules.append(Rule("out-of-order", f"{ignored} digests for a window older than one already counted "
                                              f"from the same org were ignored"))
        distrusted = [o.org for o in org_parts if o.weight == 0 and not o.first_hand]
        if distrusted:
            rules.append(Rule("no-weight", f"digests from {len(distrusted)} orgs with no weight (outside the "
                                           f"trust graph, equivocating or discredited) count nothing"))
        return rules


def _check_weight(weight: float) -> None:
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 < weight <= 1:
        raise InvalidEvidence(f"weight: must be a number in (0, 1], got {weight!r}")

