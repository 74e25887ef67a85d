"""Whom a node asks to cosign its checkpoints: its trust roots first, then an order of its own that spreads the
network's cosigning evenly over the nodes."""

from collections import Counter

from gossip.witnessing import witness_order
from vouching import did_key

ORGS = [did_key(bytes([i]) * 32) for i in range(1, 21)]


def peers_of(own: str) -> dict[str, str]:
    return {f"peer-{org}": org for org in ORGS if org != own}


def test_trust_roots_come_first_in_the_order_given_by_the_hash():
    own, roots = ORGS[0], frozenset(ORGS[5:8])
    order = witness_order(own, roots, peers_of(own))
    assert {order[i].removeprefix("peer-") for i in range(3)} == roots
    assert sorted(order) == sorted(peers_of(own))
    assert order == witness_order(own, roots, dict(reversed(list(peers_of(own).items()))))  # not the input order


def test_each_node_has_its_own_order():
    orders = {tuple(p.removeprefix("peer-") for p in witness_order(own, frozenset(), peers_of(own)))[:8]
              for own in ORGS}
    assert len(orders) == len(ORGS)


def test_with_eight_witnesses_among_twenty_nodes_no_node_is_asked_by_many_more_than_eight():
    asked = Counter(org for own in ORGS for org in (p.removeprefix("peer-") for p in
                                                  witness_order(own, frozenset(), peers_of(own))[:8]))
    assert sum(asked.values()) == 20 * 8
    assert max(asked.values()) <= 13 and min(asked.values()) >= 3  # a uniform choice would give 8 on average
