"""The replication horizon (DESIGN.md §5): orgs within `max_hops` org-peer vouches of this node's trust roots.

A node stores and counts records only of orgs inside its horizon, which bounds storage and Sybil spam. Expiry
is not consulted here: storage errs on the generous side, and scoring honours expiry itself.

Key rotation (vouching.succession) takes two records, one in each key's chain, and each must be accepted for the
keys to link, so each key brings the other inside at its own distance: the successor a key inside names in its
rotation, and the prior key a key inside names in its first record (a partner that met an org after its rotation
reaches only its new key, and must take in the old key's chain, which ends with the rotation). A successor's
vouches extend the horizon from there only if its predecessor's would (not an equivocator's); a prior's, only
once it has named its claimant back (a claim alone gives the claimed key no reach).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class Horizon:
    """Hop distances from the roots over org→org vouch edges, kept current as edges come and go."""

    def __init__(self, roots: Iterable[str], max_hops: int) -> None:
        if max_hops < 0:
            raise ValueError(f"max_hops: must be non-negative, got {max_hops}")
        self.max_hops = max_hops
        self._roots = frozenset(roots)
        self._edges: dict[bytes, tuple[str, str]] = {}  # record id -> (issuer, subject)
        self._out: dict[str, dict[bytes, str]] = {}  # issuer -> {record id: subject}
        self._in: dict[str, dict[bytes, str]] = {}  # subject -> {record id: issuer}
        self._successors: dict[str, str] = {}  # key -> the key its rotation record names
        self._priors: dict[str, str] = {}  # key -> the key its first record names as the one it replaces
        self._named_next_by: dict[str, set[str]] = {}  # key -> the keys whose rotation names it
        self._named_prior_by: dict[str, set[str]] = {}  # key -> the keys whose first record names it
        self._flagged: set[str] = set()
        self._hops: dict[str, int] = {}
        # Hops along paths whose vouches extend the horizon: none passes through an equivocator's rotation (an org
        # reached only that way is inside, in _hops, but its vouches reach nobody).
        self._reach: dict[str, int] = {}
        self._groups: dict[str, str] = {}  # `group`'s answers since the horizon last changed
        self._recompute()

    def __contains__(self, org: object) -> bool:
        return org in self._hops

    def hops(self, org: str) -> int | None:
        """Vouch hops from the nearest root, or None outside the horizon."""
        return self._hops.get(org)

    def members(self) -> frozenset[str]:
        return frozenset(self._hops)

    def group(self, org: str) -> str | None:
        """The org that brought `org` inside, as far as the horizon tells it (the founders of DESIGN §6's independence
        groups): `org` itself if it is a root or a root vouches for it (one hop), else the group of the first, by did,
        of its vouchers one hop nearer whose vouches extend the horizon, or else of the first key at its distance
        whose rotation or first record named it (a claimed prior key is where its claimant is); `org` itself if none
        is; None outside. The fresh keys an org vouches in, and the keys they name, are all in that org's group,
        however many they are. Kept until the horizon changes: an org vouched for again and again has as many
        vouchers to look through, and a node asks at each gap report (gossip.gap_queue)."""
        if org not in self._hops:
            return None  # (not kept: peer ids, and the orgs they stand for, cost nothing)
        if org not in self._groups:
            self._groups[org] = self._group(org)
        return self._groups[org]

    def _group(self, org: str) -> str:
        """`group` of an org inside, worked out."""
        hops = self._hops[org]
        seen = {org}
        while org not in self._roots:
            vouchers = [issuer for issuer in self._in.get(org, {}).values()
                        if self._reach.get(issuer) == hops - 1 and issuer not in self._flagged]
            if vouchers and hops <= 1:
                break
            partners = (*self._named_next_by.get(org, ()), *self._named_prior_by.get(org, ()))
            nearer = min(vouchers, default=None) or min((key for key in partners if self._hops.get(key) == hops
                                                         and key not in seen), default=None)
            if nearer is None:
                break
            org, hops = nearer, self._hops[nearer]
            seen.add(org)
        return org

    def __len__(self) -> int:
        """How many orgs are inside (members() without copying them)."""
        return len(self._hops)

    def add_edge(self, record_id: bytes, issuer: str, subject: str) -> set[str]:
        """Record an org-peer vouch; return the orgs it brought inside the horizon."""
        self._groups.clear()
        if record_id in self._edges or issuer == subject:
            return set()
        self._edges[record_id] = (issuer, subject)
        self._out.setdefault(issuer, {})[record_id] = subject
        self._in.setdefault(subject, {})[record_id] = issuer
        start = self._reach.get(issuer)
        if start is None or issuer in self._flagged or start >= self.max_hops:
            return set()
        return self._expand([(subject, start + 1, True)])

    def add_successor(self, key: str, successor: str) -> set[str]:
        """Record a key's rotation; return the orgs it brought inside the horizon."""
        self._groups.clear()
        if key in self._successors:
            return set()
        self._successors[key] = successor
        self._named_next_by.setdefault(successor, set()).add(key)
        linked = self._prior_steps(successor, key) if self._priors.get(successor) == key else []
        return self._expand(self._successor_steps(key, successor) + linked)

    def add_prior(self, key: str, prior: str) -> set[str]:
        """Record the prior key a key's first record names; return the orgs it brought inside the horizon."""
        self._groups.clear()
        if key in self._priors:
            return set()
        self._priors[key] = prior
        self._named_prior_by.setdefault(prior, set()).add(key)
        return self._expand(self._prior_steps(key, prior))

    def remove_edge(self, record_id: bytes) -> None:
        """Forget a revoked vouch; orgs reachable only through it fall outside the horizon. Only the orgs whose hops
        may rest on the vouch are placed again (`_repair`), not the whole horizon: an org inside may vouch for any
        number of fresh keys and revoke the vouches one by one, and a recompute each made that quadratic."""
        self._groups.clear()
        edge = self._edges.pop(record_id, None)
        if edge is None:
            return
        issuer, subject = edge
        _discard(self._out, issuer, record_id)
        _discard(self._in, subject, record_id)
        reach = self._reach.get(issuer)
        if reach is None or reach >= self.max_hops or issuer in self._flagged:
            return  # it extended nothing
        beyond = self.max_hops + 1
        if self._hops.get(subject, beyond) <= reach and self._reach.get(subject, beyond) <= reach:
            return  # the subject is nearer by other paths: nothing rests on this vouch
        self._repair([subject])

    def flag(self, *orgs: str) -> None:
        """Equivocating orgs (the keys of one org, however many): their vouches no longer extend the horizon (each
        stays inside if others reach it). Only the orgs their vouches and rotations reached are placed again
        (`_repair`), and none if none of them vouched for an org or rotated yet: a key that just joined a flagged
        org by its rotation signed nothing else yet that counts."""
        self._groups.clear()
        new = set(orgs) - self._flagged
        self._flagged |= new
        starts = [org for key in new for org in (*self._out.get(key, {}).values(), self._successors.get(key),
                                                 self._priors.get(key)) if org is not None]
        if starts:
            self._repair(starts)

    def _recompute(self) -> None:
        self._hops, self._reach = {}, {}
        self._expand([(root, 0, True) for root in self._roots])

    def _repair(self, starts: list[str]) -> None:
        """Place `starts` again, and every org whose hops may rest on theirs (those their vouches and rotations
        reach, and so on), from what reaches them from elsewhere: the same hops as a recompute, at the cost of the
        orgs placed again and what vouches for them."""
        affected = {org for org in starts if org in self._hops}
        queue = list(affected)
        while queue:
            org = queue.pop()
            for later in (*self._out.get(org, {}).values(), self._successors.get(org), self._priors.get(org)):
                if later is not None and later in self._hops and later not in affected:
                    affected.add(later)
                    queue.append(later)
        for org in affected:
            del self._hops[org]
            self._reach.pop(org, None)
        self._expand([step for org in affected for step in self._steps_into(org)])

    def _steps_into(self, org: str) -> list[tuple[str, int, bool]]:
        """What reaches `org` from the orgs placed now: a root's place, vouches, and the rotations naming it."""
        steps = [(org, 0, True)] if org in self._roots else []
        for issuer in self._in.get(org, {}).values():
            reach = self._reach.get(issuer)
            if reach is not None and reach < self.max_hops and issuer not in self._flagged:
                steps.append((org, reach + 1, True))
        for key in self._named_next_by.get(org, ()):
            steps += self._successor_steps(key, org)
        for key in self._named_prior_by.get(org, ()):
            steps += self._prior_steps(key, org)
        return steps

    def _successor_steps(self, key: str, successor: str) -> list[tuple[str, int, bool]]:
        """A rotation's successor is where its key is; its vouches extend only if the key's would."""
        steps = [(successor, hops, False)] if (hops := self._hops.get(key)) is not None else []
        if (reach := self._reach.get(key)) is not None and key not in self._flagged:
            steps.append((successor, reach, True))
        return steps

    def _prior_steps(self, key: str, prior: str) -> list[tuple[str, int, bool]]:
        """A claimed prior key is where its claimant is; its vouches extend only once it named the claimant back,
        and if the claimant's would."""
        steps = [(prior, hops, False)] if (hops := self._hops.get(key)) is not None else []
        linked = self._successors.get(prior) == key
        if linked and (reach := self._reach.get(key)) is not None and key not in self._flagged:
            steps.append((prior, reach, True))
        return steps

    def _expand(self, starts: list[tuple[str, int, bool]]) -> set[str]:
        """Breadth-first relaxation from `starts` (org, hops, whether its vouches extend from there); returns the
        orgs newly inside."""
        added: set[str] = set()
        queue: deque[str] = deque()
        beyond = self.max_hops + 1

        def relax(org: str, hops: int, extends: bool) -> None:
            improved = False
            if hops < self._hops.get(org, beyond):
                if org not in self._hops:
                    added.add(org)
                self._hops[org] = hops
                improved = True
            if extends and hops < self._reach.get(org, beyond):
                self._reach[org] = hops
                improved = True
            if improved:
                queue.append(org)

        for org, hops, extends in starts:
            relax(org, hops, extends)
        while queue:
            org = queue.popleft()
            if (successor := self._successors.get(org)) is not None:
                for step in self._successor_steps(org, successor):
                    relax(*step)
            if (prior := self._priors.get(org)) is not None:
                for step in self._prior_steps(org, prior):
                    relax(*step)
            reach = self._reach.get(org)
            if reach is not None and reach < self.max_hops and org not in self._flagged:
                for subject in self._out.get(org, {}).values():
                    relax(subject, reach + 1, True)
        return added


def _discard(index: dict[str, dict[bytes, str]], org: str, record_id: bytes) -> None:
    """Remove one vouch from an org's entry of an edge index, and the entry once it is empty."""
    edges = index[org]
    del edges[record_id]
    if not edges:
        del index[org]
