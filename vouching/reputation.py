"""Org reputation (DESIGN.md §6): personalised PageRank from the trust roots over org→org vouches, the weight an
org's word carries, and which orgs are independent of each other.

Pure functions over edge arrays. Mass that an org does not pass on (it vouches for little, or it has lost
credibility or accountability) returns to the roots, so a region reached only through a few vouches holds
at most what flows in through them, however many orgs it creates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import breadth_first_order

from vouching.arrays import sum_by
from vouching.params import ScoringParams


@dataclass(frozen=True)
class OrgStanding:
    """What the org graph gives each org: its reputation, what its digests count (`weights`: standing x
    credibility) and its agent vouches (`voucher_weights`: standing), its independence group, and the reputation
    flowing along each live edge (`edges`: src, dst, weight, flow)."""

    reputation: np.ndarray
    weights: np.ndarray
    voucher_weights: np.ndarray
    groups: np.ndarray
    edges: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    full_weight: float


def org_standing(n: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray, roots: list[int], own: int,
                 equivocators: list[int], credibility: np.ndarray, accountability: np.ndarray,
                 params: ScoringParams, order: np.ndarray) -> OrgStanding:
    """`_standing` computed with the orgs and edges in a canonical `order` (org indices sorted by did) rather than
    the order the node first heard of them: its float sums then come out the same at every node holding the same
    records (DESIGN.md §6). The results are indexed as the inputs are; edges come sorted by (src, dst) in `order`."""
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    by = np.lexsort((rank[dst], rank[src]))
    src, dst, weight = src[by], dst[by], weight[by]
    canon = _standing(n, rank[src], rank[dst], weight, sorted(rank[roots].tolist()), int(rank[own]),
                      sorted(rank[equivocators].tolist()), credibility[order], accountability[order], params)
    return OrgStanding(reputation=canon.reputation[rank], weights=canon.weights[rank],
                       voucher_weights=canon.voucher_weights[rank], groups=order[canon.groups[rank]],
                       edges=(src, dst, weight, canon.edges[3]), full_weight=canon.full_weight)


def _standing(n: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray, roots: list[int], own: int,
              equivocators: list[int], credibility: np.ndarray, accountability: np.ndarray,
              params: ScoringParams) -> OrgStanding:
    """Personalised PageRank over the live org vouches (src→dst), then each org's weights and group; the node's
    own org counts fully, an equivocator not at all, nor as a root: a root proven to equivocate, left in, took its
    share of every restart and gave it to no one, so that every other org's reputation fell with the full-weight
    reference, which fell twice as fast (the mean over the roots, its 0 included), and weak orgs weighed more."""
    p = params
    roots = sorted(set(roots) - set(equivocators))  # never empty: the node's own org is a root, and never flagged
    keep = credibility * accountability
    keep[equivocators] = 0.0
    rep, share = personalised_pagerank(n, src, dst, weight, np.asarray(roots), keep, restart=p.restart,
                                       tolerance=p.ppr_tolerance, max_iterations=p.ppr_max_iterations)
    rep[equivocators] = 0.0
    is_root = np.zeros(n, dtype=bool)
    is_root[roots] = True
    full_weight = full_weight_reference(rep, np.asarray(roots), p.full_weight_share)
    standing = np.minimum(1.0, rep / full_weight) * accountability
    standing[own] = 1.0
    standing[equivocators] = 0.0
    flow = rep[src] * share * (1.0 - p.restart)
    return OrgStanding(reputation=rep, weights=standing * credibility, voucher_weights=standing,
                       groups=independence_groups(n, src, dst, flow, is_root, p.principal_share),
                       edges=(src, dst, weight, flow), full_weight=full_weight)


def personalised_pagerank(n: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray, roots: np.ndarray,
                          keep: np.ndarray, *, restart: float, tolerance: float, max_iterations: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(reputation per org summing to 1, the transition share of each edge).

    From org i a step follows edge i→j with probability keep[i] * w_ij / max(1, sum_j w_ij); the rest of the
    step, and a `restart` share of every step, goes back to the roots (uniformly).
    """
    if n == 0:
        return np.zeros(0), np.zeros(0)
    personal = np.zeros(n)
    personal[roots] = 1.0 / len(roots)
    out_sum = sum_by(src, weight, n)
    share = keep[src] * weight / np.maximum(1.0, out_sum[src])
    rep = personal.copy()
    for _ in range(max_iterations):
        moved = sum_by(dst, rep[src] * share, n)
        returned = 1.0 - moved.sum()
        new = restart * personal + (1.0 - restart) * (moved + returned * personal)
        change = np.abs(new - rep).sum()
        rep = new
        if change < tolerance:
            break
    return rep, share


def full_weight_reference(rep: np.ndarray, roots: np.ndarray, share: float) -> float:
    """The reputation at and above which an org's digests and vouches count fully: `share` x the mean reputation
    of the trust roots. Relative to the roots, so that no number of Sybils can move it."""
    return float(rep[roots].mean() * share)


def independence_groups(n: int, src: np.ndarray, dst: np.ndarray, flow: np.ndarray, is_root: np.ndarray,
                        principal_share: float) -> np.ndarray:
    """A group label per org (DESIGN.md §6; README "How scores are computed", 7). Only the trust roots and the orgs
    a root vouches for found groups; a root-vouched org that gets more than `principal_share` of its inflow of
    reputation from one voucher other than a root is in that voucher's group. Any other org is in the group of its
    heaviest voucher (by `flow`) of those one vouch nearer the roots, so the orgs that only k colluding orgs vouch
    for fall in at most the colluders' k groups, however many they are and however they vouch for each other. An
    org that no chain of vouches from a root reaches (it has no reputation) is in its heaviest voucher's group. Of
    vouchers with equal flow the first in index order counts: the did order in `org_standing`, so that every node
    finds the same groups.

    Orgs in one group may all be one operator's creation; "independent orgs" means distinct groups.
    """
    parent = np.arange(n)
    if len(src):
        hops = _hops_from_roots(n, src, dst, is_root)
        founder = is_root.copy()
        founder[dst[is_root[src]]] = True
        by_flow = np.lexsort((-src, flow, dst))  # by destination, then flow: each org's heaviest vouch comes last
        nearer = by_flow[((hops[src] < hops[dst]) | np.isinf(hops[dst]))[by_flow]]
        near = _last_per_org(dst, nearer)
        near = near[~founder[dst[near]]]
        parent[dst[near]] = src[near]
        top = _last_per_org(dst, by_flow)
        inflow = sum_by(dst, flow, n)
        principal = top[(flow[top] > principal_share * inflow[dst[top]]) & founder[dst[top]] & ~is_root[dst[top]]
                         & ~is_root[src[top]]]
        parent[dst[principal]] = src[principal]
    return _resolve(parent)


def _hops_from_roots(n: int, src: np.ndarray, dst: np.ndarray, is_root: np.ndarray) -> np.ndarray:
    """The fewest vouches (src→dst) leading to each org from a root: 0 for a root, inf for an org none reaches.

    A breadth-first search from a node `n` vouching for every root gives each org's predecessor on a shortest path;
    its depth follows by pointer doubling, as in `_resolve` (scipy's dijkstra took 0.6 ms at 8,000 orgs, half the
    rest of the grouping)."""
    roots = np.flatnonzero(is_root)
    graph = csr_array((np.ones(len(src) + len(roots)), (np.concatenate([src, np.full(len(roots), n)]),
                                                         np.concatenate([dst, roots]))), shape=(n + 1, n + 1))
    _, predecessor = breadth_first_order(graph, n, return_predecessors=True)
    reached = predecessor >= 0
    up = np.where(reached, predecessor, np.arange(n + 1))
    depth = reached.astype(np.int64)  # from each org to `up`, which ends at node n or (not reached) the org itself
    while (up[up] != up).any():
        depth = depth + depth[up]
        up = up[up]
    return np.where(reached[:n], depth[:n] - 1.0, np.inf)


def _last_per_org(dst: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Of edge indices `order`, grouped by `dst`, the last of each group."""
    last = np.ones(len(order), dtype=bool)
    last[:-1] = dst[order][1:] != dst[order][:-1]
    return order[last]


def _resolve(parent: np.ndarray) -> np.ndarray:
    """Follow parent pointers to a fixed point; a cycle of principals is one group, labelled by its least org.

    By pointer doubling, in O(n log n) numpy: a refresh of reputation follows every change of the org graph, and
    walking the pointers in Python took 17 ms at 8,000 orgs, so an org inside the horizon that vouched for fresh keys
    one at a time between its digests cost the node time quadratic in their number (63 s for 8,000)."""
    n = len(parent)
    end = parent.copy()  # after the loop: the org 2^k >= n steps on, a fixed point or on the terminal cycle
    least = np.arange(n)  # after the loop: for an org on a cycle, the least org of its cycle
    step = 1
    while step < n:
        least = np.minimum(least, least[end])
        end = end[end]
        step *= 2
    return np.where(parent[end] == end, end, least[end])
