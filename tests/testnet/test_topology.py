"""Topologies: who roots and vouches for whom when a testnet comes up, and whom each node dials first."""

import pytest

from testnet.topology import TOPOLOGIES, bootstrap_indexes, trust_edges


@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_no_org_roots_itself_and_every_edge_names_a_node(topology, n):
    edges = trust_edges(topology, n, seed=1)
    assert sorted(edges) == list(range(n))
    assert all(i not in targets and set(targets) <= set(range(n)) for i, targets in edges.items())


def test_the_shapes():
    assert trust_edges("mesh", 4, 1)[2] == [0, 1, 3]
    assert trust_edges("ring", 5, 1)[0] == [1, 4]
    assert trust_edges("star", 4, 1) == {0: [1, 2, 3], 1: [0], 2: [0], 3: [0]}
    assert trust_edges("none", 3, 1) == {0: [], 1: [], 2: []}
    assert trust_edges("random", 8, 5) == trust_edges("random", 8, 5) != trust_edges("random", 8, 6)
    with pytest.raises(ValueError, match="topology: must be one of"):
        trust_edges("tree", 3, 1)


@pytest.mark.parametrize("n", [2, 3, 10, 40])
def test_the_bootstrap_graph_reaches_every_node_from_the_first_start(n):
    reached, todo = {0}, [0]
    links = {i: set(bootstrap_indexes(i, n)) for i in range(n)}
    while todo:
        i = todo.pop()
        for j in links[i] | {k for k in range(n) if i in links[k]}:
            if j not in reached:
                reached.add(j)
                todo.append(j)
    assert reached == set(range(n))
