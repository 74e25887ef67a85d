"""Whom a node asks to cosign its checkpoints: its trust roots first (under any of their keys), then an order of its
own that spreads the network's cosigning evenly over the nodes."""

from collections import Counter

from gossip.witnessing import witness_order
from vouching import did_key

ORGS = [did_key(bytes([i]) * 32) for i in range(1, 21)]


def peers_of(own: str) -> dict[str, str]:
    return {f"peer-{org}": org for org in ORGS if org != own}


def unrotated(org: str) -> str:
    return org


def test_trust_roots_come_first_in_the_order_given_by_the_hash():
    own, roots = ORGS[0], frozenset(ORGS[5:8])
    order = witness_order(own, roots, peers_of(own), unrotated)
    assert {order[i].removeprefix("peer-") for i in range(3)} == roots
    assert sorted(order) == sorted(peers_of(own))
    reversed_input = dict(reversed(list(peers_of(own).items())))
    assert order == witness_order(own, roots, reversed_input, unrotated)  # not the input order


def test_a_trust_root_that_rotated_its_key_still_comes_first():
    own, root, successor = ORGS[0], ORGS[5], did_key(b"\x63" * 32)
    peers = {**{p: org for p, org in peers_of(own).items() if org != root}, "peer-successor": successor}
    first_key = {successor: root}
    order = witness_order(own, frozenset([root]), peers, lambda org: first_key.get(org, org))
    assert order[0] == "peer-successor"
    unaware = witness_order(own, frozenset([root]), peers, unrotated)  # as a node that missed the rotation
    assert unaware[0] != "peer-successor" and order[1:] == [p for p in unaware if p != "peer-successor"]


def test_each_node_has_its_own_order():
    orders = {tuple(p.removeprefix("peer-") for p in witness_order(own, frozenset(), peers_of(own), unrotated))[:8]
              for own in ORGS}
    assert len(orders) == len(ORGS)


def test_with_eight_witnesses_among_twenty_nodes_no_node_is_asked_by_many_more_than_eight():
    asked = Counter(org for own in ORGS for org in (p.removeprefix("peer-") for p in
                                                  witness_order(own, frozenset(), peers_of(own), unrotated)[:8]))
    assert sum(asked.values()) == 20 * 8
    assert max(asked.values()) <= 13 and min(asked.values()) >= 3  # a uniform choice would give 8 on average
