"""Who trusts whom when a testnet comes up, and whom each node dials first.

A topology gives every node the orgs it roots (config.toml `[trust] roots`) and vouches for with `org-peer`
vouches, so that each node's replication horizon holds the others. Bootstrap lists only seed connectivity: peers
learn the rest from `org` records.
"""

from __future__ import annotations

import random

TOPOLOGIES = {
    "mesh": "every org roots and vouches for every other (a small consortium)",
    "ring": "every org roots and vouches for its two neighbours on a ring",
    "star": "the first org roots and vouches for all; all root and vouch for it",
    "random": "every org roots and vouches for three others drawn with the seed",
    "none": "no roots and no vouches: each node holds its own records only",
}
_RANDOM_DEGREE = 3


def trust_edges(topology: str, n: int, seed: int) -> dict[int, list[int]]:
    """For each node index, the indexes of the nodes it roots and vouches for (never itself)."""
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology: must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
    everyone = range(n)
    if topology == "mesh":
        return {i: [j for j in everyone if j != i] for i in everyone}
    if topology == "ring":
        return {i: sorted({(i - 1) % n, (i + 1) % n} - {i}) for i in everyone}
    if topology == "star":
        return {i: [j for j in everyone if j != i] if i == 0 else [0] for i in everyone}
    if topology == "random":
        rng = random.Random(seed)
        return {i: sorted(rng.sample([j for j in everyone if j != i], min(_RANDOM_DEGREE, n - 1))) for i in everyone}
    return {i: [] for i in everyone}


def bootstrap_indexes(i: int, n: int) -> list[int]:
    """The nodes node `i` dials at start: its ring neighbours and the first node, which keeps the graph connected
    from the first start on."""
    return sorted({(i - 1) % n, (i + 1) % n, 0} - {i})
