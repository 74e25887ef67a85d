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
        self._successors: dict[str, str] = {}  # key -> the key its rotation record names
        self._priors: dict[str, str] = {}  # key -> the key its first record names as the one it replaces
        self._flagged: set[str] = set()
        self._hops: dict[str, int] = {}
        # Hops along paths whose vouches extend the horizon: none passes through an equivocator's rotation (an org
        # reached only that way is inside, in _hops, but its vouches reach nobody).
        self._reach: dict[str, int] = {}
        self._recompute()

    def __contains__(self, org: object) -> bool:
        return org in self._hops

    def hops(self, org: str) -> int | None:
        """Vouch hops from the nearest root, or None outside the horizon."""
        return self._hops.get(org)

    def members(self) -> frozenset[str]:
        return frozenset(self._hops)

    def add_edge(self, record_id: bytes, issuer: str, subject: str) -> set[str]:
        """Record an org-peer vouch; return the orgs it brought inside the horizon."""
        if record_id in self._edges or issuer == subject:
            return set()
        self._edges[record_id] = (issuer, subject)
        self._out.setdefault(issuer, {})[record_id] = subject
        start = self._reach.get(issuer)
        if start is None or issuer in self._flagged or start >= self.max_hops:
            return set()
        return self._expand([(subject, start + 1, True)])

    def add_successor(self, key: str, successor: str) -> set[str]:
        """Record a key's rotation; return the orgs it brought inside the horizon."""
        if key in self._successors:
            return set()
        self._successors[key] = successor
        linked = self._prior_steps(successor, key) if self._priors.get(successor) == key else []
        return self._expand(self._successor_steps(key, successor) + linked)

    def add_prior(self, key: str, prior: str) -> set[str]:
        """Record the prior key a key's first record names; return the orgs it brought inside the horizon."""
        if key in self._priors:
            return set()
        self._priors[key] = prior
        return self._expand(self._prior_steps(key, prior))

    def remove_edge(self, record_id: bytes) -> None:
        """Forget a revoked vouch; orgs reachable only through it fall outside the horizon."""
        edge = self._edges.pop(record_id, None)
        if edge is not None:
            del self._out[edge[0]][record_id]
            self._recompute()

    def flag(self, *orgs: str) -> None:
        """Equivocating orgs (the keys of one org, however many): their vouches no longer extend the horizon (each
        stays inside if others reach it). One recompute for all of them, and none if none of them vouched for an
        org or rotated yet: a key that just joined a flagged org by its rotation signed nothing else yet that
        counts."""
        new = set(orgs) - self._flagged
        self._flagged |= new
        if any(self._out.get(org) or org in self._successors or org in self._priors for org in new):
            self._recompute()

    def _recompute(self) -> None:
        self._hops, self._reach = {}, {}
        self._expand([(root, 0, True) for root in self._roots])

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
