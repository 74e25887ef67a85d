"""Serving budgets without a network (gossip.serving_budget): the defaults serve an empty node's catch-up of 10^5
records at once, and every periodic round of its peers in step with it, however many orgs it holds heads of (10^5),
while a peer asking for them all again and again is told to come back."""

import pytest

from gossip.serving_budget import ServingBudget, ServingRates, most_page_cost, page_cost
from gossip.store import Head
from gossip.sync import Finished, IssuerIndex, Send, SyncClient, SyncLimits, SyncServer


def test_the_default_budget_serves_an_empty_nodes_catch_up_of_100_000_records_at_once():
    limits = SyncLimits()
    budget = ServingBudget(ServingRates(), most_page_cost(limits))
    for _ in range(100_000 // limits.page_records):  # records of 1 KiB, each page a range read
        assert budget.retry_after("12D3KooWNew", now=0.0) == 0
        budget.charge("12D3KooWNew", page_cost(limits.page_records + 1, limits.page_records * 1024), now=0.0)
    assert budget.retry_after("12D3KooWNew", now=0.0) == 0


class InStep:
    """The heads of `orgs` issuers (gossip.sync.RecordReader), each at seq 7: a node, and its peer in step with it.
    Issuers are named in 56 characters, as Ed25519 did:keys are."""

    def __init__(self, orgs: int) -> None:
        self._heads = {f"did:key:z6Mk{i:044d}": Head(7, bytes(32)) for i in range(orgs)}

    def head(self, iss: str) -> Head | None:
        return self._heads.get(iss)

    def heads(self) -> dict[str, int]:
        return {iss: head.seq for iss, head in self._heads.items()}

    def id_at(self, iss: str, seq: int) -> bytes | None:
        return self._heads[iss].id if seq == self._heads[iss].seq else None

    def issuer_range(self, iss: str, first_seq: int, limit: int) -> list[bytes]:
        raise AssertionError("a peer in step asks for no records")


@pytest.fixture(scope="module")
def round_of_100_000_orgs() -> list[int]:
    """What each page of a periodic round costs the node, served to a peer in step with it: every head of 10^5 orgs."""
    node = InStep(100_000)
    server, client = SyncServer(node, IssuerIndex(node), SyncLimits()), SyncClient(node, node.heads(), SyncLimits())
    costs, event = [], client.start()
    while isinstance(event, Send):
        units = server.units
        page = next(server.receive(event.payload))
        costs.append(page_cost(server.units - units, len(page)))
        event = client.receive(page)
    assert isinstance(event, Finished) and client.heads_held == 100_000
    return costs


def rounds_served(budget: ServingBudget, rounds: list[tuple[float, str]], costs: list[int]) -> int:
    """How many of `rounds` (when, and whose) `budget` serves to their end, pages costing `costs`, as
    SyncService._serve_pages does (a peer answered Busy is asked nothing more that round)."""
    served = 0
    for now, peer in rounds:
        for cost in costs:
            if budget.retry_after(peer, now):
                break
            budget.charge(peer, cost, now)
        else:
            served += 1
    return served


def test_periodic_rounds_of_peers_in_step_with_a_node_of_100_000_orgs_are_all_served(round_of_100_000_orgs):
    # Three rounds an interval (30 s) from eight peers in turn, for two hours: at a unit a head they took twice the
    # node's rate, and were answered Busy from 200 s on.
    budget = ServingBudget(ServingRates(), most_page_cost(SyncLimits()))
    rounds = [(interval * 30.0, f"12D3KooWPeer{(3 * interval + i) % 8}") for interval in range(240) for i in range(3)]
    assert rounds_served(budget, rounds, round_of_100_000_orgs) == len(rounds)


def test_a_peer_in_step_having_a_round_with_the_node_at_each_of_its_shortest_intervals_is_served(round_of_100_000_orgs):
    # 22.5 s apart (30 s less a quarter), for two hours: at a unit a head it took four times its own budget's rate.
    budget = ServingBudget(ServingRates(), most_page_cost(SyncLimits()))
    rounds = [(interval * 22.5, "12D3KooWOnlyPeer") for interval in range(320)]
    assert rounds_served(budget, rounds, round_of_100_000_orgs) == len(rounds)


def test_a_peer_asking_for_every_head_again_and_again_is_told_to_come_back(round_of_100_000_orgs):
    # Its budget of 250,000 units holds 27 rounds of 9,200 KiB at once, then one a 9.2 s (1,000 KiB a second).
    rates = ServingRates()
    budget = ServingBudget(rates, most_page_cost(SyncLimits()))
    cost = sum(round_of_100_000_orgs)
    assert 9_000 <= cost <= 9_500
    assert rounds_served(budget, [(0.0, "12D3KooWGreedy")] * 100, round_of_100_000_orgs) == rates.peer_burst // cost
    minute = [(second, "12D3KooWGreedy") for second in range(1, 61)]
    assert rounds_served(budget, minute, round_of_100_000_orgs) <= 60 * rates.peer_rate // cost + 1
