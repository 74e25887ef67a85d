"""The trust engine (DESIGN.md §6, issue 3): consumes vouches, revocations, digests, equivocation flags and this
node's own observations, and answers "how far may this node trust this agent?" with an explained score.

Two speeds. Evidence is counted as it arrives (a few microseconds per record) and a score is computed on demand
from the agent's accumulators and the current org weights, then cached for reads at the same `now`: a record about
the agent updates the cached sums by the terms it changes, a change of the org weights lets them lapse. The sums are
taken term by term on the grid at the `now` asked for, never decayed from an earlier read's: every node holding the
same records gives the same score at the same `now`, whenever it read.
Org-level trust (PageRank reputation, credibility from the deviation test, voucher accountability) is refreshed
by the full recompute (vouching.recompute), which also scores every agent at once with numpy; a change of the org
vouch graph refreshes reputation alone on the next read. The full recompute works on a snapshot, so that it may run
off the thread that feeds and reads the engine: `start_snapshot` and `snapshot` copy, `install` swaps the result in.
"""

from __future__ import annotations

import heapq
import math
from array import array
from bisect import bisect_right, insort
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import chain, islice
from operator import itemgetter

import numpy as np

from vouching.arrays import ColumnsCopy, array_columns
from vouching.batch import ScoreTable
from vouching.confirmation import DISCREDITED, FULL, LIGHT, counted_bad, discredited_orgs, standing_of
from vouching.deviation import DeviationTest, credibility
from vouching.dp_discount import discounted, dp_threshold
from vouching.evidence import NO_OUTCOMES, EvidenceStore, InvalidEvidence, Outcomes, Weighed, weigh
from vouching.explanation import (BAD_COUNTS, MAX_LISTED_PARTS, Explanation, OrgPart, OrgReputation, Score, VouchPart,
                                  VouchShare)
from vouching.grid import EXACT_BELOW, on_grid
from vouching.params import AGENT_BASES, HOUR_MS, ScoringParams
from vouching.recompute import AgentSums, Recompute, Recomputed
from vouching.reputation import OrgStanding, org_standing
from vouching.rules import cap_score, explain_rules
from vouching.seen import SeenIds
from vouching.quantiles import score_of, source_cap
from vouching.tiers import tier_of
from vouching.vouches import Vouch, VouchBook, check_weight, issuer_and_basis, vouch_key

INF = math.inf
STALE_BARRED = array("q", [-1]).tobytes()  # an agent's `_barred` of a weights version before any
COPY_ROWS = 1 << 13  # evidence or deviation rows a snapshot copies per step: about 1 MB, a fraction of a ms


def latest_vouches(vouches: dict[int, bytes]) -> Iterator[tuple[int, str, bytes]]:
    """An agent's latest vouches (keyed by `vouch_key`), each as its org's index, its basis and its record id."""
    for key, record_id in vouches.items():
        yield *issuer_and_basis(key), record_id


class SnapshotCopy:
    """The evidence and deviation columns, the bulk of what the full recompute reads, being copied a chunk per
    `step`, for `TrustEngine.snapshot` to complete."""

    def __init__(self, evidence: EvidenceStore, deviation: DeviationTest) -> None:
        self.evidence = ColumnsCopy(array_columns(evidence))
        self.deviation = ColumnsCopy(array_columns(deviation))
        self.touched: set[int] = set()  # agents whose evidence may have been rewritten since the copy began

    def step(self, rows: int = COPY_ROWS) -> bool:
        """Copy the next chunk of `rows`; False once all the rows there were at the start are copied."""
        return self.evidence.step(rows) or self.deviation.step(rows)


def _exact(entry: tuple) -> bool:
    """Whether a cache entry's sums (of terms on the grid, none negative) are below EXACT_BELOW, and so every partial
    sum of their terms is exact in any order: this node's own good is capped per window (its total is not), and an
    event may report up to 2^53 - 1 outcomes."""
    _, _, good, good_held, bad, reports, _, _, lift, _, _, full, discredited, light = entry
    return max(good, good_held, bad, reports, lift, full, discredited, sum(light[1::2])) < EXACT_BELOW


def flat_pairs(pairs: dict[int, int] | dict[int, float]) -> tuple[float, ...]:
    """`pairs` as key, value, key, value, ...: how a cache entry holds its witnesses per independence group (group,
    pairs, ...) and its reports per group (group, heaviest, ...), and engine.snapshot an agent's evidence pairs
    (vouching.engine_state). A tuple of numbers alone, which a collection untracks at once, with the entry holding it
    (of (group, pairs) tuples, made after the tuple holding them, a full collection untracks a level at a time; a
    dict, never)."""
    return tuple(chain.from_iterable(pairs.items()))


def paired(flat: tuple[int, ...]) -> Iterable[tuple[int, int]]:
    """The (key, value) pairs `flat_pairs` flattened."""
    return zip(flat[::2], flat[1::2])


def _replaced(flat: tuple, old: tuple, new: tuple) -> dict:
    """The per-group sums `flat` (`flat_pairs`) with one org's terms `old` taken out and `new` put in (a group left with
    none is dropped): a cache entry's witnesses or LIGHT bad per independence group, as a record changes one org's."""
    sums = dict(paired(flat))
    for group, value in paired(old):
        if sums[group] == value:
            del sums[group]
        else:
            sums[group] -= value
    for group, value in paired(new):
        sums[group] = sums.get(group, 0) + value
    return sums


def _count_reports_once_per_group(org_parts: list[OrgPart], start: int) -> None:
    """Of the parts from `start` on, mark as not counted the recent bad reports of all but one org of each
    independence group: the one counting most (ties: the least did), whose reports are the group's (`_sums`)."""
    counting: dict[str, OrgPart] = {}
    for part in islice(org_parts, start, None):
        held = counting.get(part.group)
        if part.counted_reports and (held is None or (part.counted_reports, held.org) > (held.counted_reports,
                                                                                           part.org)):
            counting[part.group] = part
    for i in range(start, len(org_parts)):
        part = org_parts[i]
        if part.counted_reports and counting[part.group] is not part:
            org_parts[i] = replace(part, counts_reports=False)


def _org_order(part: OrgPart) -> tuple[float, float, str]:
    """An org's evidence in Explanation's order: the most counted (good plus bad) first, then by weight and did."""
    return -(part.counted_good + part.counted_bad), -part.weight, part.org


class TrustEngine:
    """Scores agents from this node's point of view. Ids are did strings; times are milliseconds."""

    def __init__(self, own_org: str, roots: Iterable[str] = (), params: ScoringParams | None = None, *,
                 epoch_ms: int = HOUR_MS) -> None:
        if type(epoch_ms) is not int or epoch_ms < 1:
            raise ValueError(f"epoch_ms: must be a positive integer of ms, got {epoch_ms!r}")
        self.params = params or ScoringParams()
        p = self.params
        self.own_org = own_org
        # The length of this node's digest epochs ([telemetry] epoch_seconds): its own observations are counted as
        # its digest of their epoch is (add_first_hand), so that a restart, which counts that digest, changes nothing.
        self.epoch_ms = epoch_ms
        # Neither vouches alone nor one org's good evidence alone (nor one cap window of this node's own: the
        # EvidenceStore's) may lift an agent above provisional. On the grid, so that one org's term (weight x cap,
        # rounded to the grid) never exceeds it.
        self._source_cap = source_cap(p)
        self._cold_score = score_of(p.prior_good, p.prior_bad, p.quantile)
        self._orgs: list[str] = []
        self._org_index: dict[str, int] = {}
        self._by_did: list[tuple[str, int]] = []  # (did, index) of every org, sorted: org order and listing pages
        self._weights: list[float] = []  # what each org's digests count, 0..1: standing x credibility
        self._voucher_weights: list[float] = []  # what each org's agent vouches count: standing x accountability
        self._groups: list[int] = []  # independence group of each org
        # Whether each org's credibility is below an unchecked org's (vouching.confirmation), as of the last refresh;
        # orgs heard of since are not.
        self._discredited: tuple[bool, ...] = ()
        # Each agent by its index, in lists of dicts, tuples and numbers rather than an object an agent: the garbage
        # collector walks every object it tracks at each full collection, holding the node's loop meanwhile, and
        # untracks a tuple holding none at any collection, a dict only at a full one (benchmarks/gc_objects.py), so
        # that an agent's dicts hold ints and bytes alone, never tracked (`vouch_key`).
        self._agent_dids: list[str] = []
        self._agent_index: dict[str, int] = {}
        self._pairs: list[dict[int, int]] = []  # org index -> evidence pair
        self._agent_vouches: list[dict[int, bytes]] = []  # vouch_key(issuer, basis) -> its latest vouch's id
        # (weights version, time, good, good held at the per-org cap, bad, reports, capped lift, witnesses): sums at
        # `time`, for reads at that same time until an input changes (DESIGN.md §6: a rounded total decayed to a later
        # time is not the sum of its decayed terms, so a node would score by when it last read). Summed by `_sums`, it
        # goes on with the uncapped lift, the witnesses per independence group and each group's heaviest reports
        # (`flat_pairs`), and the bad of its FULL and of its DISCREDITED sources and that of each group's LIGHT orgs
        # (vouching.confirmation), and a record about the agent updates it by the terms it changes (`_changing`,
        # `_changed`).
        self._caches: list[tuple | None] = []
        self._stamps: list[int] = []  # the engine's `_stamp` when the agent's evidence or vouches last changed
        self._scoped: set[int] = set()  # agents ever given a scoped vouch: a check of a tool may need its own score
        # Agent index, of those ever given a vouch of basis operator -> the weights version and the groups its
        # operators with weight bar from witnessing for it (`_operator_groups`), as the bytes of an array("q"): kept,
        # so that a record about an agent of thousands of vouches need not look through them all; of a version before
        # the current one, stale. Bytes, which the garbage collector does not track, as `_agent_vouches` holds.
        self._barred: dict[int, bytes] = {}
        self._vouches = VouchBook(p.basis_weights)
        self._seen_digests = SeenIds()
        # Per key (a record's `iss`), the latest ts of its records fed so far (`chain_time`): a str and an int a key,
        # which the garbage collector does not track.
        self._chain_times: dict[str, int] = {}
        # Halves of key rotations fed whose other half is not yet (`chain_rotation`): "prior successor" -> the key
        # that signed it.
        self._rotation_halves: dict[str, str] = {}
        self._rotation_links: dict[str, str] = {}  # key rotations fed whole (`chain_rotation`): prior -> successor
        self._equivocators: set[int] = set()
        self._merged: set[int] = set()  # indices of keys merged into their org (merge_org): no org of their own
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
        self._graph_edits = 1  # changes of the org graph, new orgs included ...
        self._graph_seen = 0  # ... that the current reputation reflects
        self._edges_span = (-INF, INF)  # the times at which the live org edges are those reputation is of
        self._stamp = 0  # bumped as a snapshot begins and as it is taken (see `_stamps`)
        self._copying: SnapshotCopy | None = None  # the snapshot being copied
        # The agent sums of the last recompute installed: its snapshot count, the weights version it installed,
        # the sums; an agent's cache entry is taken from them on its next read (see `_renewed`).
        self._recomputed: tuple[int, int, AgentSums] | None = None
        self._own = self._org(own_org)
        # Numbered in did order, not as configured: the orgs' numbers are in engine.snapshot, which a reordering of
        # the roots in config.toml then keeps (node.engine_snapshot).
        self._roots = sorted({self._own, *(self._org(r) for r in sorted(roots))})

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
        self._graph_edits += 1
        self.org_changes += 1

    def add_agent_vouch(self, issuer: str, agent: str, weight: float, basis: str, *, record_id: bytes, ts: int,
                        expires: int | None = None, scope: Iterable[str] | None = None) -> None:
        """A vouch for an agent (basis operator, audit, developer or interaction): lifts its prior, in place of the
        issuer's earlier vouch for the agent with the same basis (fed in the issuer's chain order)."""
        check_weight(weight)
        if basis not in AGENT_BASES:
            raise InvalidEvidence(f"basis: must be one of {', '.join(AGENT_BASES)} for an agent, got {basis!r}")
        if record_id in self._vouches:
            return
        a = self._agent(agent)
        vouch = Vouch(record_id, self._org(issuer), a, float(weight), basis, ts, expires,
                      None if scope is None else tuple(scope))
        terms = self._changing(a, vouch.issuer, basis)
        self._vouches.add(vouch)
        key = vouch_key(vouch.issuer, basis)
        if basis == "operator" and key not in self._agent_vouches[a] and vouch.revoked_at is None:
            barred = array("q", self._barred.get(a, STALE_BARRED))
            if barred[0] == self._version:  # (a thousand keys' operator vouches: no quadratic rebuild)
                barred.extend(group for group in self._barring((vouch.issuer,)) if group not in barred[1:])
            self._barred[a] = barred.tobytes()
        elif basis == "operator":  # it replaces the org's earlier one, or came revoked: it may end or renew a bar
            self._barred[a], terms = STALE_BARRED, None
        self._agent_vouches[a][key] = record_id  # (replaces the issuer's earlier one, as VouchBook.add does)
        if scope is not None:
            self._scoped.add(a)
        self._changed(a, terms, vouch.issuer, basis)

    def chain_time(self, key: str, ts: int) -> int:
        """When a record of `key` dated `ts` was signed, as far as its chain tells (DESIGN.md §3: a key's chain orders
        its records, each ts is the key's word): the latest ts of it and of every record before it in the chain. Fed
        each record of the key in its chain's order (feed_record), as a node accepts them; so a pure function of the
        chain, the same whatever order other keys' records arrive in. A revocation is dated by it (`revoke`): a key
        cannot date one before anything it signed earlier."""
        latest = self._chain_times[key] = max(ts, self._chain_times.get(key, ts))
        return latest

    def chain_rotation(self, prior: str, successor: str, *, by: str) -> None:
        """Half of a rotation of keys (DESIGN.md §2, vouching.succession) signed by key `by`: `prior`'s last record
        naming `successor`, or `successor`'s first naming `prior`. Once both are fed, `successor`'s chain dates its
        records no earlier than `prior`'s last (`chain_time`), whichever half came first: the acceptor holds what the
        successor signs after its first record until the link, so a rotated org's later key cannot date a revocation
        back before what its earlier key signed, nor the key after it, whichever of their links came first (a
        key's first record may name both its prior and its successor). One half alone moves nothing: a key cannot push
        another's dates."""
        pair = f"{prior} {successor}"
        other = self._rotation_halves.pop(pair, None)
        if other is None or other == by:
            self._rotation_halves[pair] = by
            return
        self._rotation_links[prior] = successor
        key = prior
        while key in self._rotation_links:  # on along the links made before this one; ends where a date is not moved
            later = self._rotation_links[key]
            if self._chain_times[later] >= self._chain_times[key]:
                return
            self._chain_times[later] = self._chain_times[key]
            key = later

    def revoke(self, issuer: str, record_id: bytes, *, ts: int) -> str | None:
        """A revocation of one of the issuer's earlier vouches, dated `ts` (its `chain_time`, fed by feed_record); it
        stops counting from now on. The agent whose vouch it revoked, if any (None for an org vouch, a vouch that has
        not arrived yet, or another org's vouch, which it leaves counting: a key that merely claims to replace the
        voucher may send one)."""
        known = self._vouches.get(record_id)
        terms = None if known is None or known.for_org else \
            self._changing(known.subject, known.issuer, known.basis)
        vouch = self._vouches.revoke(self._org(issuer), record_id, ts)
        if vouch is None:
            return None
        if vouch.for_org:
            self._graph_edits += 1
            self.org_changes += 1
            return None
        if vouch.basis == "operator" and self._agent_vouches[vouch.subject].get(
                vouch_key(vouch.issuer, "operator")) == record_id:  # the org is the agent's operator no more
            self._barred[vouch.subject], terms = STALE_BARRED, None
        self._changed(vouch.subject, terms, vouch.issuer, vouch.basis)
        return self._agent_dids[vouch.subject]

    def add_digest(self, issuer: str, agent: str, *, epoch: int, length: int, outcomes: Outcomes,
                   high_risk: Outcomes = NO_OUTCOMES, record_id: bytes, ts: int,
                   dp_epsilon: float | None = None) -> None:
        """A behaviour digest: what `issuer` saw `agent` do over [epoch, epoch + length), dated when it ends (or the
        record's time, if earlier) and capped in the window holding that date: an org cannot stretch digests for
        many past windows to end now, undecayed, each under a cap of its own. A digest declaring `dp_epsilon`
        counts its bad cells beyond the noise it declares only (vouching.dp_discount)."""
        if type(epoch) is not int or epoch < 0:
            raise InvalidEvidence(f"epoch: must be a non-negative integer of ms, got {epoch!r}")
        if type(length) is not int or length <= 0:
            raise InvalidEvidence(f"length: must be a positive integer of ms, got {length!r}")
        if dp_epsilon is not None:
            if type(dp_epsilon) is not float or not (math.isfinite(dp_epsilon) and dp_epsilon > 0):
                raise InvalidEvidence(f"dp_epsilon: must be a finite float greater than 0, got {dp_epsilon!r}")
            outcomes, high_risk = discounted(outcomes, high_risk,
                                             dp_threshold(dp_epsilon, self.params.dp_false_alarm))
        batch = weigh(outcomes, high_risk, self.params)
        if issuer == self.own_org or not self._seen_digests.add(record_id):
            return  # this node's own digests repeat its first-hand observations; a digest counts once
        end = min(epoch + length, ts)
        self._count(self._agent(agent), self._org(issuer), end, max(end - 1, 0) // self.params.cap_window_ms, batch,
                    outcomes, capped=True)

    def add_first_hand(self, agent: str, *, ts: int, outcomes: Outcomes, high_risk: Outcomes = NO_OUTCOMES) -> None:
        """This node's own observations of `agent` (a batch of outcomes at `ts`): full weight, capped per window
        (EvidenceStore.add), counted as part of the epoch of `epoch_ms` holding `ts` (`add_own_epoch`)."""
        if type(ts) is not int or ts < 0:
            raise InvalidEvidence(f"ts: must be a non-negative integer of ms, got {ts!r}")
        t = ts - ts % self.epoch_ms + self.epoch_ms - 1  # (add_own_epoch's, inline: this is the hot path)
        batch = weigh(outcomes, high_risk, self.params)
        self._count(self._agent(agent), self._own, t, t // self.params.cap_window_ms, batch, outcomes, capped=False)

    def add_own_epoch(self, agent: str, *, end: int, outcomes: Outcomes, high_risk: Outcomes = NO_OUTCOMES) -> None:
        """This node's own observations of `agent` in its digest epoch ending at `end` (DESIGN.md §6 first-hand
        evidence): full weight, dated at the epoch's last instant and counted in the cap window holding it (whose
        good counts at most C/2: EvidenceStore.add), as its digest of the epoch counts at a peer. Whether they come
        event by event as they are made or as the digest at a restart (whatever epoch length it was made under), the
        sums are the same: bad reports are per epoch (per window for epochs shorter than one), and nothing decays
        before the epoch ends."""
        if type(end) is not int or end < 1:
            raise InvalidEvidence(f"end: must be a positive integer of ms, got {end!r}")
        batch = weigh(outcomes, high_risk, self.params)
        t = end - 1
        self._count(self._agent(agent), self._own, t, t // self.params.cap_window_ms, batch, outcomes, capped=False)

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
        self._graph_edits += 1

    # ---- reads --------------------------------------------------------------------------------------------

    def score(self, agent: str, *, now: int, tool: str | None = None) -> Score:
        """The agent's current score; an unknown agent gets the cold-start score, never an error. With `tool`, the
        score a check of that tool decides on: the general one plus the live vouches whose scope names the tool
        (DESIGN.md §3 `scope`), computed on demand for the few agents holding such vouches."""
        self._ensure_reputation(now)
        a = self._agent_index.get(agent)
        if a is None:
            return Score(agent, self._cold_score, tier_of(self._cold_score), 0.0, int(now))
        if tool is not None and a in self._scoped and tool in self._scopes(a, now):
            cache = self._sums(a, now, None, tool)
        else:
            cache = self._caches[a]
            if cache is None or cache[0] != self._version or cache[1] != now:
                cache = self._caches[a] = self._renewed(a, now)
        p = self.params
        _, _, good, good_held, bad, reports, lift, witnesses, *_ = cache
        good += good_held
        value, caps = cap_score(score_of(p.prior_good + lift + good, p.prior_bad + bad, p.quantile), reports,
                                witnesses, p)
        evidence = lift + good + bad
        return Score(agent, value, tier_of(value), evidence / (evidence + p.confidence_half), int(now), caps)

    def explain(self, agent: str, *, now: int, tool: str | None = None,
                listed: int | None = MAX_LISTED_PARTS) -> Explanation:
        """The score (for `tool`, as `score` gives it) with every count, decay and rule behind it, and the `listed`
        heaviest vouches and orgs' evidence (None: all of them), in Explanation's order, with how many there are: a
        vouch's part is made only for those listed (at 5,000 vouches, making all took 30 ms)."""
        p = self.params
        score = self.score(agent, now=now, tool=tool)
        a = self._agent_index.get(agent)
        parts: tuple[list[OrgPart], list[tuple], list[float]] = ([], [], [])
        sums = self._sums(a, now, parts, tool) if a is not None else \
            self._sums(None, now, parts, tool, pairs=(), vouches=())  # an agent the engine does not hold
        org_parts, vouch_keys, (lift,) = parts
        # Heaviest first, ties in a canonical order, not the order the records arrived in (DESIGN.md §6: every node
        # agrees). A vouch's key is unique (its record id), so the vouch itself is never compared.
        listed_orgs = sorted(org_parts, key=_org_order) if listed is None else \
            heapq.nsmallest(listed, org_parts, key=_org_order)
        vouches = tuple(VouchPart(record_id.hex(), issuer, basis, v.weight, -less_weight, -less_lift, status, v.scope,
                                  v.expires)
                        for less_lift, less_weight, issuer, basis, record_id, v, status
                        in (sorted(vouch_keys) if listed is None else heapq.nsmallest(listed, vouch_keys)))
        _, _, good, good_held, bad, reports, capped_lift, witnesses, _, _, _, full, discredited, light = sums
        good += good_held
        alpha, beta = p.prior_good + capped_lift + good, p.prior_bad + bad
        uncorroborated_bad = full + discredited + sum(light[1::2], 0.0) - bad
        return Explanation(
            score=score, prior_good=p.prior_good, prior_bad=p.prior_bad, vouch_lift=capped_lift,
            vouch_lift_cap=self._source_cap, vouches=vouches, vouches_total=len(vouch_keys), orgs=tuple(listed_orgs),
            orgs_total=len(org_parts), alpha=alpha,
            beta=beta, quantile=p.quantile, uncapped_score=score_of(alpha, beta, p.quantile),
            recent_bad_reports=reports, uncorroborated_bad=uncorroborated_bad, independent_orgs=witnesses,
            good_half_life_ms=p.good_half_life_ms,
            bad_half_life_ms=p.bad_half_life_ms, report_half_life_ms=p.report_half_life_ms,
            witness_min_weight=p.independent_min_weight, witness_min_good=p.independent_min_good,
            rules=tuple(explain_rules(score.caps, lift, capped_lift, reports, witnesses, uncorroborated_bad, org_parts,
                                      int(now), p)),
            tool=tool,
        )

    def scopes(self, agent: str, *, now: int) -> tuple[str, ...]:
        """The tools the agent's live scoped vouches name, sorted: checks of these may differ from its general
        score (a caller caching general scores asks the node for them). Only of vouches whose voucher has weight:
        any key may sign scoped vouches, and the tools of weightless ones, which open nothing, would grow every
        score and check answer about the agent past what a client reads."""
        self._ensure_reputation(now)
        a = self._agent_index.get(agent)
        return tuple(sorted(self._scopes(a, now))) if a is not None and a in self._scoped else ()

    def operators(self, agent: str, *, now: int) -> tuple[str, ...]:
        """The orgs (each by its first key) with a live vouch of basis `operator` for the agent, sorted: whose agent
        it is, by their word, whatever their weight (an agent credential stands for the agent only if its issuer is
        one, DESIGN.md §8), but for an org proven to equivocate, whose word counts nothing (DESIGN.md §5): its
        credentials would stand for an agent it says is its own, any agent, as an honest operator's do. Of an agent
        never given one (not in `_barred`), at once: the node's stream asks this of every agent it announces."""
        a = self._agent_index.get(agent)
        if a is None or a not in self._barred:
            return ()
        book, equivocators = self._vouches, self._equivocators
        return tuple(sorted(self._orgs[issuer] for issuer, basis, record_id in latest_vouches(self._agent_vouches[a])
                            if basis == "operator" and issuer not in equivocators and book[record_id].active(now)))

    def heaviest_first(self, orgs: Iterable[str], *, now: int) -> tuple[str, ...]:
        """`orgs` (each by a key of its) by their reputation at this node, heaviest first, ties by did: an org no
        one here vouches for weighs 0, and any number of such keys, which anyone can make, come after every org
        that weighs something (who operates an agent, node.trust.listed_issuers, lists the first 64)."""
        self._ensure_reputation(now)
        index, reputation = self._org_index, self._reputation
        return tuple(sorted(orgs, key=lambda org: (-reputation[index[org]] if org in index else 0.0, org)))

    @property
    def cold_score(self) -> int:
        """The score of an agent no evidence or vouch names (`score` of an unknown agent)."""
        return self._cold_score

    def org(self, did: str, *, now: int, listed: int | None = MAX_LISTED_PARTS) -> OrgReputation:
        """How this node sees an org (an unknown org gets reputation 0), with the `listed` heaviest vouches for it
        (None: all)."""
        self._ensure_reputation(now)
        o = self._org_index.get(did)
        if o is None:  # credibility as of an org nobody could check yet, as one first heard of has
            untested = float(credibility(np.zeros(1), np.zeros(1), self.params)[0])
            return OrgReputation(did, 0.0, 0.0, 0.0, untested, 1.0, 0.0, 0.0, False, False, False, did, (), 0,
                                 self._full_weight, self.params.independent_min_weight)
        return self._org_reputation(o, np.flatnonzero(self._edges[1] == o), listed)

    def orgs(self, *, now: int, after: str | None = None, limit: int | None = None,
             listed: int | None = MAX_LISTED_PARTS) -> list[OrgReputation]:
        """The orgs this node has heard of in did order (DESIGN.md §8, GET /v1/orgs): those whose did sorts after
        `after`, at most `limit` of them. Paging on the last did of a page lists each org known throughout exactly
        once, however many are heard of meanwhile; each with its `listed` heaviest vouches. The vouches are grouped
        by the org they name once, not searched for each org: that made the listing quadratic in the orgs known
        (0.53 s at 16,000)."""
        self._ensure_reputation(now)
        start = 0 if after is None else bisect_right(self._by_did, after, key=itemgetter(0))
        page = list(islice((o for _, o in islice(self._by_did, start, None) if o not in self._merged), limit))
        dst = self._edges[1]
        by_dst = np.argsort(dst, kind="stable")  # each org's vouches in the order org() finds them
        grouped, wanted = dst[by_dst], np.array(page, dtype=np.int64)
        begins, ends = np.searchsorted(grouped, wanted, side="left"), np.searchsorted(grouped, wanted, side="right")
        return [self._org_reputation(o, by_dst[b:e], listed)
                for o, b, e in zip(page, begins.tolist(), ends.tolist())]

    def _org_reputation(self, o: int, vouches: np.ndarray, listed: int | None) -> OrgReputation:
        """Org `o` as `org` gives it, `vouches` being the indexes of the org edges that name it, in order; a share is
        made only for the `listed` heaviest (None: all), in OrgReputation's order."""
        src, _, weight, flow = self._edges
        orgs = self._orgs
        keys = zip((-f for f in flow[vouches].tolist()), (-w for w in weight[vouches].tolist()),
                   (orgs[s] for s in src[vouches].tolist()))
        shares = [VouchShare(issuer, -less_weight, -less_inflow) for less_inflow, less_weight, issuer
                  in (sorted(keys) if listed is None else heapq.nsmallest(listed, keys))]
        return OrgReputation(
            org=self._orgs[o],
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
            vouched_by_total=len(vouches),
            full_weight_reputation=self._full_weight,
            witness_min_weight=self.params.independent_min_weight,
        )

    def reputations(self, *, now: int) -> dict[str, float]:
        """Every known org's personalised PageRank reputation (they sum to 1)."""
        self._ensure_reputation(now)
        return {d: r for o, (d, r) in enumerate(zip(self._orgs, self._reputation.tolist())) if o not in self._merged}

    def agents(self) -> tuple[str, ...]:
        return tuple(self._agent_dids)

    def holds(self, agent: str) -> bool:
        """Whether the engine holds evidence or vouches on `agent` (otherwise its score is the cold start)."""
        return agent in self._agent_index

    def knows_org(self, did: str) -> bool:
        """Whether the engine knows `did` as an org: this node's own, a trust root, the issuer of a record it took,
        the subject of an org-peer vouch, or a key merged into its org (what `org` then answers on)."""
        return did in self._org_index

    def merge_org(self, key: str, org: str) -> bool:
        """Key rotation (DESIGN.md §2, vouching.succession): `key` turned out to be a later key of `org`. What named
        `key` as an org (vouches for it, a flag, a root) counts for `org` from now on, and `key` stands for `org`;
        False if the engine never heard of `key`. The caller feeds nothing `key` issued before this (the acceptor
        sets a new key's records aside until its rotation is known), so only those mentions need moving. A flag on
        `key` carries over to `org`, but for this node's own org, which it does not distrust (as feed_record skips a
        flag of a key of its own: the engine then equals one that knew the link from the start)."""
        k = self._org_index.get(key)
        if k is None:
            return False
        if k == self._own:
            raise InvalidEvidence(f"key: {key} is this node's own org; it cannot become a later key of another")
        o = self._org(org)
        self._org_index[key] = o
        self._merged.add(k)
        self._vouches.resubject_orgs(k, o)
        if k in self._roots:
            self._roots = sorted((set(self._roots) - {k}) | {o})
        if k in self._equivocators:
            self._equivocators.discard(k)
            if o != self._own:
                self.flag_equivocator(org)
        self._version += 1
        self._graph_edits += 1
        self.org_changes += 1
        return True

    def rename_org(self, old: str, new: str) -> bool:
        """Key rotation closing a cycle of keys (vouching.succession): the org the engine knows as `old` is known as
        `new`, one of its keys, from now on; False if the engine never heard of `old`."""
        o = self._org_index.get(old)
        if o is None:
            return False
        self._by_did.remove((self._orgs[o], o))
        insort(self._by_did, (new, o))
        self._orgs[o] = new
        self._org_index[new] = o
        self._version += 1
        self._graph_edits += 1
        self.org_changes += 1
        return True

    # ---- full recompute -------------------------------------------------------------------------------------

    def recompute(self, *, now: int) -> ScoreTable:
        """Refresh credibility, reputation and accountability, then score every agent (vouching.recompute), at once
        and on the engine's own columns, for callers that may hold their thread that long. It overtakes a snapshot
        begun and a recompute not installed yet."""
        self._stamp += 1
        self._copying = None
        return self.install(self._recompute(now, self._evidence, self._deviation, self._vouches).compute())

    def start_snapshot(self) -> SnapshotCopy:
        """Begin copying what the full recompute reads: step the copy to its end, then hand it to `snapshot`. The
        engine may take records between steps. This overtakes a copy begun earlier, and a recompute not installed
        yet (installing it would rewrite verdicts being copied)."""
        self._stamp += 1
        self._copying = SnapshotCopy(self._evidence, self._deviation)
        return self._copying

    def snapshot(self, copying: SnapshotCopy, *, now: int) -> Recompute:
        """Complete the copy, copying again the evidence of agents touched since it began, and take the rest of what
        the full recompute reads (org-level state and the vouches, a few MB), all as the engine is now; records
        taken from here on are the next recompute's."""
        if copying is not self._copying:
            raise RuntimeError("snapshot: a later start_snapshot or recompute overtook this copy")
        rewritten = [pair for a in copying.touched for pair in self._pairs[a].values()]
        self._copying = None
        evidence = self._evidence.frozen(copying.evidence.finish(rewritten))
        deviation = self._deviation.frozen(copying.deviation.finish(()))
        self._stamp += 1
        return self._recompute(now, evidence, deviation, self._vouches.frozen())

    def install(self, done: Recomputed) -> ScoreTable:
        """Swap in what `Recompute.compute` made of the latest snapshot, at once. Agents touched since the snapshot
        keep being scored from their own sums, and a change of the org graph since it refreshes reputation on the
        next read, just as if the recompute had run at the snapshot and those records come after it."""
        if done.stamp != self._stamp:
            raise RuntimeError("install: another snapshot was begun since this recompute's")
        self._deviation.adopt(done.deviation)
        self._agreements, self._disagreements = done.agreements, done.disagreements
        self._credibility, self._accountability = done.credibility, done.accountability
        self._adopt(done.standing, done.edges_span, done.graph_edits)
        self._recomputed = (done.stamp, self._version, done.sums)
        return done.table

    # ---- internals ----------------------------------------------------------------------------------------

    def _org(self, did: str) -> int:
        o = self._org_index.get(did)
        if o is None:
            o = self._org_index[did] = len(self._orgs)
            self._orgs.append(did)
            insort(self._by_did, (did, o))
            self._weights.append(0.0)
            self._voucher_weights.append(0.0)
            self._groups.append(o)
            self._graph_edits += 1
        return o

    def _agent(self, did: str) -> int:
        a = self._agent_index.get(did)
        if a is None:
            a = self._agent_index[did] = len(self._agent_dids)
            self._agent_dids.append(did)
            self._pairs.append({})
            self._agent_vouches.append({})
            self._caches.append(None)
            self._stamps.append(0)
        return a

    def _count(self, a: int, o: int, t: int, window: int, batch: Weighed, outcomes: Outcomes, *,
               capped: bool) -> None:
        terms = self._changing(a, o)
        pairs = self._pairs[a]
        pair = pairs.get(o)
        if pair is None:
            pair = pairs[o] = self._evidence.new_pair(a, o, first_hand=o == self._own)
        self._evidence.add(pair, float(t), window, batch, outcomes.total, capped=capped)
        self._deviation.append(a, o, window, float(t), outcomes.total, outcomes.failures, outcomes.denied)
        self._changed(a, terms, o)

    def _recompute(self, now: int, evidence: EvidenceStore, deviation: DeviationTest, vouches: VouchBook
                   ) -> Recompute:
        """What the full recompute reads, from these stores and the engine's org-level state as it is now."""
        self._grow_org_arrays()
        return Recompute(
            now=now, params=self.params, source_cap=self._source_cap, own=self._own, roots=list(self._roots),
            equivocators=sorted(self._equivocators), n_orgs=len(self._orgs),
            agents=tuple(self._agent_dids), evidence=evidence, deviation=deviation, vouches=vouches,
            stamp=self._stamp, graph_edits=self._graph_edits, org_order=self._org_order(),
        )

    def _touch(self, a: int) -> None:
        """The agent's evidence or vouches changed: its cache lapses, and so does its part of a recompute
        snapshotted before now; a snapshot being copied copies its evidence again."""
        self._caches[a] = None
        self._stamps[a] = self._stamp
        if self._copying is not None:
            self._copying.touched.add(a)

    def _changing(self, a: int, o: int, basis: str | None = None) -> tuple | None:
        """Before a record changes org `o`'s evidence of the agent or its vouch of `basis`: their terms in the agent's
        cache entry, if `_sums` made it under the current weights and its sums are exact (`_exact`); else None."""
        cache = self._caches[a]
        if cache is None or len(cache) == 8 or cache[0] != self._version or not _exact(cache):
            return None
        return self._terms(a, cache[1], o, basis)

    def _changed(self, a: int, terms: tuple | None, o: int, basis: str | None = None) -> None:
        """After the change: the agent's cache entry takes the new terms in place of the old (`_changing`'s), or lapses.
        Every term is on the grid, so that the entry is exactly what summing every org's and vouch's again gives while
        its sums stay below EXACT_BELOW (else it lapses): a record then costs a few terms, not the agent's every org
        and vouch (an org's fresh keys, each vouching for or reporting on an agent, made each read after a record of
        theirs cost time growing with the keys)."""
        entry = self._caches[a]
        self._touch(a)
        if terms is None or entry is None:
            return
        version, now, good, good_held, _, reports, _, _, lift, witnesses, heaviest, full, discredited, light = entry
        new = self._terms(a, now, o, basis)
        heaviest = dict(paired(heaviest))
        reporting = self._groups[o]
        held = heaviest.get(reporting, 0.0)
        if new[5] >= held:  # (terms[5], new[5]: org o's reports alone)
            if new[5]:
                heaviest[reporting] = new[5]
            reports += new[5] - held
        elif terms[5] == held:
            return  # the group's heaviest reports fell: which of its orgs' are now is not kept
        groups = _replaced(witnesses, terms[9], new[9])
        for group in self._operator_groups(a):  # (an operator vouch may have just barred one)
            groups.pop(group, None)
        good += new[2] - terms[2]
        good_held += new[3] - terms[3]
        full += new[11] - terms[11]
        discredited += new[12] - terms[12]
        light = _replaced(light, terms[13], new[13])
        lift += new[8] - terms[8]
        entry = (version, now, good, good_held, counted_bad(full, light.values(), discredited, self._source_cap),
                 reports, min(lift, self._source_cap), len(groups), lift, flat_pairs(groups), flat_pairs(heaviest),
                 full, discredited, flat_pairs(light))
        if _exact(entry):
            self._caches[a] = entry

    def _terms(self, a: int, now: float, o: int, basis: str | None) -> tuple:
        """Org `o`'s evidence of the agent and its vouch of `basis` (None: none), summed as `_sums` sums them all."""
        pair = self._pairs[a].get(o)
        record_id = None if basis is None else self._agent_vouches[a].get(vouch_key(o, basis))
        return self._sums(a, now, None, pairs=() if pair is None else ((o, pair),),
                          vouches=() if record_id is None else (self._vouches[record_id],))

    def _ensure_reputation(self, now: float) -> None:
        """Refresh reputation if the org graph changed or `now` lies outside the span of times its live edges are
        those of the current reputation: a read at an earlier time than the last refresh counts the org vouches
        live then, as any node reading at that time does."""
        since, until = self._edges_span
        if self._graph_edits != self._graph_seen or not since <= now < until:
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
        """Reputation, weights and groups over the live org vouches, with the credibility and accountability the
        last recompute found."""
        self._grow_org_arrays()
        src, dst, weight, edges_span = self._vouches.org_edges(now, self._equivocators)
        standing = org_standing(len(self._orgs), src, dst, weight, self._roots, self._own,
                                sorted(self._equivocators), self._credibility, self._accountability, self.params,
                                self._org_order())
        self._adopt(standing, edges_span, self._graph_edits)

    def _org_order(self) -> np.ndarray:
        """The org indices sorted by did (then index, for a key merged into an org renamed to it): the order org
        reputation is computed in, the same at every node (DESIGN.md §6)."""
        return np.array([o for _, o in self._by_did], dtype=np.int64)

    def _adopt(self, standing: OrgStanding, edges_span: tuple[float, float], graph_edits: int) -> None:
        """Take new org standing, computed when the org graph had seen `graph_edits` changes; agent caches lapse.
        Orgs heard of since it was computed get no weight until the next refresh, which their arrival made due."""
        extra = range(len(standing.weights), len(self._orgs))
        self._reputation = standing.reputation
        self._edges = standing.edges
        self._weights = standing.weights.tolist() + [0.0] * len(extra)
        self._voucher_weights = standing.voucher_weights.tolist() + [0.0] * len(extra)
        self._groups = standing.groups.tolist() + list(extra)
        self._discredited = tuple(discredited_orgs(self._credibility, self.params).tolist())
        self._full_weight = standing.full_weight
        self._edges_span = edges_span
        self._graph_seen = graph_edits
        self._version += 1

    def _renewed(self, a: int, now: float) -> tuple:
        """A new cache entry for the agent at `now`: the last recompute's, if the weights are still the ones it
        installed, the agent has not changed since its snapshot, and no entry replaced it since; else the agent's
        sums. (Taken on first read, it is what filling every agent's cache at `install` would have given.)"""
        if self._recomputed is not None:
            stamp, version, sums = self._recomputed
            cache = self._caches[a]
            if version == self._version and sums.now == now and self._stamps[a] < stamp and (
                    cache is None or cache[0] != version):
                return sums.entry(a, version)
        return self._sums(a, now, None)

    def _scopes(self, a: int, now: float) -> set[str]:
        """The tools the agent's live scoped vouches name, of those whose voucher has weight (others count for no
        tool)."""
        weights = self._voucher_weights
        return {tool for v in self._vouches_of(a)
                if v.scope is not None and v.active(now) and weights[v.issuer] > 0 for tool in v.scope}

    def _operator_groups(self, a: int) -> Sequence[int]:
        """The independence groups of the orgs with weight whose latest vouch of basis operator for the agent stands
        unrevoked (expired too): its operator's word and that of the orgs it minted are not independent of it
        (DESIGN.md §6, verified needs independence); an org that revoked it has taken back its word that the agent is
        its own. One without weight (outside the org graph, or an equivocator) shares its group with no org of
        weight, so leaving it out bars no witness the more, and keeps the groups few: each of a thousand keys outside
        the graph is a group of its own."""
        raw = self._barred.get(a)
        if raw is None:
            return ()
        barred = array("q", raw)
        if barred[0] != self._version:
            book = self._vouches
            operators = (issuer for issuer, basis, record_id in latest_vouches(self._agent_vouches[a])
                         if basis == "operator" and book[record_id].revoked_at is None)
            barred = array("q", (self._version, *self._barring(operators)))
            self._barred[a] = barred.tobytes()
        return barred[1:]

    def _barring(self, operators: Iterable[int]) -> dict[int, None]:
        """The groups of those of `operators` with weight, each once."""
        groups, weights = self._groups, self._voucher_weights
        return dict.fromkeys(groups[o] for o in operators if weights[o] > 0)

    def _vouches_of(self, a: int) -> Iterable[Vouch]:
        """The agent's latest vouch of each issuer and basis."""
        return map(self._vouches.__getitem__, self._agent_vouches[a].values())

    def _sums(self, a: int | None, now: float, parts: tuple[list, list, list] | None, tool: str | None = None, *,
              pairs: Iterable[tuple[int, int]] | None = None, vouches: Iterable[Vouch] | None = None) -> tuple:
        """Agent `a`'s weighted sums at `now`, as a cache entry (see `_caches`) followed by the uncapped lift and
        the witnesses per group, counting the vouches that cover `tool` (Vouch.covers; None: the unscoped ones); with
        `parts`, also each org's and vouch's part and the uncapped vouch lift. Of the agent's evidence `pairs` and
        `vouches` only, if given (both, for an agent the engine does not hold: None)."""
        p, ev = self.params, self._evidence
        weights, groups = self._weights, self._groups
        k_good, k_bad, k_report = ev.k_good, ev.k_bad, ev.k_report
        good = good_held = full = discredited = 0.0
        light: dict[int, float] = {}  # independence group -> the weighted bad of its LIGHT orgs
        good_cap = self._source_cap
        discredited_flags = self._discredited
        witnesses: dict[int, int] = {}  # independence group -> witness pairs in it
        heaviest: dict[int, float] = {}  # independence group -> the heaviest weighted recent reports of its orgs
        first_part = 0 if parts is None else len(parts[0])
        barred = () if a is None else self._operator_groups(a)
        min_weight, min_good = p.independent_min_weight, p.independent_min_good
        ahead = now + p.future_tolerance_ms
        for o, pair in self._pairs[a].items() if pairs is None else pairs:
            w = weights[o]
            t_ref = ev.t_ref[pair]
            first_hand = ev.first_hand[pair]
            if t_ref > ahead and not first_hand:
                w = 0.0  # another org's word dated beyond the tolerance: nothing until then
            if w == 0 and parts is None:
                continue  # counts nothing and witnesses nothing
            age = now - t_ref if now > t_ref else 0.0
            g = ev.good[pair] * math.exp(-age * k_good)
            b = ev.bad[pair] * math.exp(-age * k_bad)
            r = ev.reports[pair]
            if r:
                r *= math.exp(-age * k_report)
            if ev.win_raw_violation[pair]:
                open_age = now - ev.win_t[pair]
                r += ev.open_report(pair) * math.exp(-(open_age if open_age > 0 else 0.0) * k_report)
            # Each term on the grid, as the full recompute's sums take them: sums the same in any order.
            if g > good_cap and not first_hand:
                good_held += on_grid(w * good_cap)
            else:
                good += on_grid(w * g)
            standing = standing_of(w, first_hand, o < len(discredited_flags) and discredited_flags[o], p)
            if standing == FULL:
                full += on_grid(w * b)
            elif standing == LIGHT:
                light[groups[o]] = light.get(groups[o], 0.0) + on_grid(w * b)
            else:
                discredited += on_grid(w * b)
            counted_reports = 0.0 if standing == DISCREDITED else on_grid(w * r)
            if counted_reports > heaviest.get(groups[o], 0.0):
                heaviest[groups[o]] = counted_reports
            operators_group = groups[o] in barred
            witness = w >= min_weight and g >= min_good and not operators_group
            if witness:
                witnesses[groups[o]] = witnesses.get(groups[o], 0) + 1
            if parts is not None:
                parts[0].append(OrgPart(
                    org=self._orgs[o], first_hand=bool(first_hand), weight=w, good=g,
                    good_cap=INF if first_hand else good_cap, bad=b, recent_bad_reports=r,
                    batches=ev.batches[pair], events=ev.events[pair], capped=ev.capped[pair],
                    ignored=ev.ignored[pair], last_evidence=int(t_ref), independent=witness,
                    group=self._orgs[groups[o]], operators_group=operators_group, counts_reports=True,
                    bad_counts=BAD_COUNTS[standing],
                ))
        reports = sum(heaviest.values(), 0.0)  # (of terms on the grid: exact in any order)
        if parts is not None:
            _count_reports_once_per_group(parts[0], first_part)
        lift = 0.0
        voucher_weights = self._voucher_weights
        for v in self._vouches_of(a) if vouches is None else vouches:
            voucher_weight = voucher_weights[v.issuer]
            active = v.active(now)
            counts = active and v.covers(tool)
            contribution = on_grid(p.basis_weights[v.basis] * v.weight * voucher_weight) if counts else 0.0
            lift += contribution
            if parts is not None:  # its order's key (see explain), the vouch and its status
                status = ("revoked" if v.revoked_at is not None else "expired" if not active
                          else "out of scope" if not counts
                          else "counted" if voucher_weight > 0 else "voucher has no weight")
                parts[1].append((-contribution, -voucher_weight, self._orgs[v.issuer], v.basis, v.record_id, v,
                                 status))
        if parts is not None:
            parts[2].append(lift)
        return (self._version, now, good, good_held, counted_bad(full, light.values(), discredited, good_cap), reports,
                min(lift, good_cap), len(witnesses), lift, flat_pairs(witnesses), flat_pairs(heaviest), full,
                discredited, flat_pairs(light))
