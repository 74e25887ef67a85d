"""Vouches as the trust engine keeps them (DESIGN.md §6): org→org edges for reputation, agent vouches for the
cold-start prior, revocations (also those that arrive before their vouch), and expiry. An org's vouch for an agent
replaces its earlier one of the same basis (its chain orders them), so an agent's prior weighs one vouch per org and
basis however many an org sends. A vouch with a `scope` (DESIGN.md §3) is the issuer's word for the tools it names
only: it stands in for its issuer's earlier vouch of its basis like any other, but the agent-wide lift counts
unscoped vouches alone (the engine adds a scoped one in a check of a tool its scope names)."""

from __future__ import annotations

import math
from array import array
from collections.abc import Collection
from dataclasses import dataclass, fields
from operator import attrgetter

import numpy as np

from vouching.arrays import array_columns, grid_sum_by
from vouching.evidence import InvalidEvidence
from vouching.params import AGENT_BASES

_BASIS_CODES = {basis: code for code, basis in enumerate(AGENT_BASES)}
_AGENT_BITS = 31  # of a latest-vouch key (`latest_key`), below its vouch_key: an agent index is an array("i") item


def vouch_key(issuer: int, basis: str) -> int:
    """An agent's latest vouch of org `issuer` (its index) and `basis`, as its key among the agent's (TrustEngine
    ._agent_vouches): an int, which the garbage collector does not track, so that neither is the agent's dict. Keyed by
    a tuple, made tracked, the dict stayed tracked until a full collection untracked it: under a rebuild after key
    adopt or a flood of new agents, the first one after walked a dict an agent, 96-112 ms of CPU on the loop at 2*10^5
    of them, where it takes 59-64 ms now (benchmarks/adopt_rebuild.py --records 20000 --flood 20000, README)."""
    return issuer * len(AGENT_BASES) + _BASIS_CODES[basis]


def issuer_and_basis(key: int) -> tuple[int, str]:
    """The org index and basis `vouch_key` made `key` of."""
    issuer, code = divmod(key, len(AGENT_BASES))
    return issuer, AGENT_BASES[code]


def latest_key(agent: int, issuer: int, basis: str) -> int:
    """The latest vouch of org `issuer` for `agent` (indexes) with `basis`, as its key in VouchBook._latest: an int,
    as `vouch_key` is for the same reason. Keyed by (agent, issuer, basis) tuples, the book's one dict of them all
    stayed tracked until a full collection untracked it: the first after a rebuild's announce (node.trust) walked it,
    57-67 ms of CPU at 2*10^5 agents, where it takes 41-44 ms now (benchmarks/adopt_rebuild.py --records 20000
    --flood 20000, README)."""
    return vouch_key(issuer, basis) << _AGENT_BITS | agent


def latest_of(key: int) -> tuple[int, int, str]:
    """The agent, issuer and basis `latest_key` made `key` of."""
    return key & ((1 << _AGENT_BITS) - 1), *issuer_and_basis(key >> _AGENT_BITS)


@dataclass(slots=True)
class Vouch:
    record_id: bytes
    issuer: int  # org index
    subject: int  # an org index for org-peer vouches, an agent index otherwise
    weight: float
    basis: str
    ts: int
    expires: int | None
    scope: tuple[str, ...] | None
    column: int = -1  # row in the agent-vouch columns, or in the org-vouch columns for an org-peer vouch
    revoked_at: int | None = None

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires is None or now < self.expires)

    def covers(self, tool: str | None) -> bool:
        """Whether the vouch counts in a score for `tool` (None: the agent's general score): an unscoped vouch
        always, a scoped one only for a tool its scope names exactly (a scope is a grant: no word matching)."""
        return self.scope is None or tool is not None and tool in self.scope

    @property
    def for_org(self) -> bool:
        return self.basis == "org-peer"

    def row(self) -> tuple:
        """Its fields in order, as VouchBook keeps it (`Vouch(*row)` is the vouch again)."""
        return _ROW(self)


_ROW = attrgetter(*(f.name for f in fields(Vouch)))


class VouchBook:
    """Every vouch seen, by record id; also as columns (agent vouches, org vouches) for reputation and the full
    recompute."""

    def __init__(self, basis_weights: dict[str, float]) -> None:
        self._basis_weights = basis_weights
        # Record id -> the vouch as a row (Vouch.row): a tuple of numbers, strings and bytes, which the garbage
        # collector untracks, where it walked a Vouch object a vouch at each full collection (benchmarks/gc_objects.py).
        self.by_id: dict[bytes, tuple] = {}
        # Record id -> {revoking org: the ts of its first revocation}: of a vouch not arrived yet, whose issuer is not
        # known yet, each org's (one a record may name; the issuer's alone applies once the vouch arrives).
        self._pending: dict[bytes, dict[int, int]] = {}
        self.agent = array("i")
        self.issuer = array("i")
        self.strength = array("d")  # basis weight x vouch weight: the prior lift at full voucher weight
        self.expires = array("d")
        self.revoked_at = array("d")  # the time its issuer revoked it, or inf
        self.standing = array("b")  # not replaced by a later vouch of its issuer for its agent with its basis
        self.general = array("b")  # unscoped: counts in the agent's general score
        self.basis = array("b")  # its basis, as its index in AGENT_BASES
        self._latest: dict[int, int] = {}  # latest_key(agent, issuer, basis) -> column of the latest
        self.org_issuer = array("i")
        self.org_subject = array("i")
        self.org_weight = array("d")
        self.org_expires = array("d")
        self.org_active = array("b")
        self.org_vouches: list[bytes] = []  # record ids by org-vouch column

    def __contains__(self, record_id: bytes) -> bool:
        return record_id in self.by_id

    def __getitem__(self, record_id: bytes) -> Vouch:
        """The vouch `record_id`, made from its row: a copy, which the book's methods alone change in the book."""
        return Vouch(*self.by_id[record_id])

    def get(self, record_id: bytes) -> Vouch | None:
        """`self[record_id]`, or None if the book has no such vouch."""
        row = self.by_id.get(record_id)
        return None if row is None else Vouch(*row)

    def add(self, vouch: Vouch) -> None:
        """Keep a new vouch (the caller checked it is new); a revocation that came first applies now. An agent
        vouch replaces its issuer's earlier one for the agent with the same basis."""
        expires = math.inf if vouch.expires is None else float(vouch.expires)
        if not vouch.for_org:
            vouch.column = len(self.agent)
            replaced = self._latest.get(key := latest_key(vouch.subject, vouch.issuer, vouch.basis))
            if replaced is not None:
                self.standing[replaced] = 0
            self._latest[key] = vouch.column
            self.standing.append(1)
            self.general.append(vouch.scope is None)
            self.basis.append(_BASIS_CODES[vouch.basis])
            self.agent.append(vouch.subject)
            self.issuer.append(vouch.issuer)
            self.strength.append(self._basis_weights[vouch.basis] * vouch.weight)
            self.expires.append(expires)
            self.revoked_at.append(math.inf)
        else:
            vouch.column = len(self.org_issuer)
            self.org_issuer.append(vouch.issuer)
            self.org_subject.append(vouch.subject)
            self.org_weight.append(vouch.weight)
            self.org_expires.append(expires)
            self.org_active.append(1)
            self.org_vouches.append(vouch.record_id)
        self.by_id[vouch.record_id] = vouch.row()
        revoked_at = self._pending.pop(vouch.record_id, {}).get(vouch.issuer)
        if revoked_at is not None:
            self._revoke(vouch, revoked_at)

    def revoke(self, issuer: int, record_id: bytes, ts: int) -> Vouch | None:
        """Revoke the issuer's vouch `record_id`; returns it, or None if it has not arrived yet (kept pending, beside
        any other org's: another org's pending revocation of the vouch overwrote its issuer's, which then never
        applied) or is another org's, which this revocation leaves as it is (as a pending one does once its vouch
        arrives). Of one org's revocations of a vouch, the first counts, pending or not."""
        vouch = self.get(record_id)
        if vouch is None:
            self._pending.setdefault(record_id, {}).setdefault(issuer, ts)
            return None
        if vouch.issuer != issuer:
            return None
        self._revoke(vouch, ts)
        return vouch

    def _revoke(self, vouch: Vouch, ts: int) -> None:
        if vouch.revoked_at is None:
            vouch.revoked_at = ts
            if vouch.for_org:
                self.org_active[vouch.column] = 0
            else:
                self.revoked_at[vouch.column] = ts
            self.by_id[vouch.record_id] = vouch.row()

    def resubject_orgs(self, old: int, new: int) -> None:
        """Org vouches for org `old` become vouches for org `new` (key rotation: `old` was a later key of `new`);
        one that `new` gave `old` vouched for the org itself and counts for nothing (as if never given)."""
        for column in np.flatnonzero(np.asarray(self.org_subject, dtype=np.int64) == old).tolist():
            vouch = self[self.org_vouches[column]]
            vouch.subject = self.org_subject[column] = new
            self.by_id[vouch.record_id] = vouch.row()
            if vouch.issuer == new:
                self.org_weight[column] = 0.0
                self._revoke(vouch, vouch.ts)

    def frozen(self) -> VouchBook:
        """A book holding a numpy copy of this one's columns (a few MB), for the full recompute to read off the
        trio thread; it cannot take vouches."""
        copy = VouchBook(self._basis_weights)
        vars(copy).update({name: np.array(column) for name, column in array_columns(self).items()})
        return copy

    def org_edges(self, now: float, excluded: Collection[int]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
        """(src, dst, weight, span) of the live org→org edges, in the order their first live vouch came; of several
        vouches for one pair, the strongest counts. Edges touching an `excluded` org are left out. `span` is [the
        last expiry at or before `now`, the next after it): the times at which these are the live edges."""
        issuer = np.asarray(self.org_issuer, dtype=np.int64)
        subject = np.asarray(self.org_subject, dtype=np.int64)
        expires = np.asarray(self.org_expires)
        out = np.fromiter(excluded, dtype=np.int64, count=len(excluded))
        kept = (np.asarray(self.org_active) == 1) & ~np.isin(issuer, out) & ~np.isin(subject, out)
        live = np.flatnonzero(kept & (expires > now))
        pairs, first, pair_of = np.unique(issuer[live] << 32 | subject[live], return_index=True, return_inverse=True)
        best = np.zeros(len(pairs))
        np.maximum.at(best, pair_of, np.asarray(self.org_weight)[live])
        order = np.argsort(first)
        span = (float(expires[kept & (expires <= now)].max(initial=-math.inf)),
                float(expires[live].min(initial=math.inf)))
        return issuer[live][first[order]], subject[live][first[order]], best[order], span

    def lifts(self, weights: np.ndarray, now: float, n_agents: int) -> np.ndarray:
        """Per agent, the prior lift of its live unscoped vouches, each times its voucher's weight (before the cap):
        what its general score counts."""
        agent = np.frombuffer(self.agent, dtype=np.int32)
        issuer = np.frombuffer(self.issuer, dtype=np.int32)
        live = self._standing() & (np.frombuffer(self.expires) > now)
        return grid_sum_by(agent, np.frombuffer(self.strength) * live * weights[issuer], n_agents)

    def _standing(self) -> np.ndarray:
        """Which agent vouches count in general scores (before expiry): unscoped, not revoked, not replaced."""
        return ((np.frombuffer(self.revoked_at) == math.inf) & (np.frombuffer(self.standing, dtype=np.int8) == 1)
                & (np.frombuffer(self.general, dtype=np.int8) == 1))

    def agent_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Copies of (issuer, agent, basis, strength, latest) of every agent vouch ever given; `basis` as its index in
        AGENT_BASES, `latest`: whether it is its issuer's latest for its agent and basis (not replaced by a later one;
        revoked or not)."""
        return (np.frombuffer(self.issuer, dtype=np.int32).copy(), np.frombuffer(self.agent, dtype=np.int32).copy(),
                np.frombuffer(self.basis, dtype=np.int8).copy(), np.frombuffer(self.strength).copy(),
                np.frombuffer(self.standing, dtype=np.int8) == 1)

    def ends(self) -> np.ndarray:
        """Per agent vouch, when it stopped standing for its agent: revoked or expired (inf: neither)."""
        return np.minimum(np.frombuffer(self.revoked_at), np.frombuffer(self.expires))

    def operator_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """(agent, issuer) of each org's latest agent vouch of basis operator that stands unrevoked (expired too): an
        org that said the agent is its own is its operator until it takes that back (DESIGN.md §6, verified needs
        independence)."""
        operator = np.flatnonzero((np.frombuffer(self.basis, dtype=np.int8) == _BASIS_CODES["operator"])
                                  & (np.frombuffer(self.standing, dtype=np.int8) == 1)
                                  & (np.frombuffer(self.revoked_at) == math.inf))
        return np.frombuffer(self.agent, dtype=np.int32)[operator], np.frombuffer(self.issuer, dtype=np.int32)[operator]

    def org_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of (issuer, subject, weight) of every org vouch ever given."""
        return (np.array(self.org_issuer, dtype=np.int64), np.array(self.org_subject, dtype=np.int64),
                np.array(self.org_weight))


def check_weight(weight: float) -> None:
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 < weight <= 1:
        raise InvalidEvidence(f"weight: must be a number in (0, 1], got {weight!r}")
