"""Serving budgets without a network (gossip.serving_budget): the defaults serve an empty node's catch-up of 10^5
records at once."""

from gossip.serving_budget import ServingBudget, ServingRates, most_page_cost, page_cost
from gossip.sync import SyncLimits


def test_the_default_budget_serves_an_empty_nodes_catch_up_of_100_000_records_at_once():
    limits = SyncLimits()
    budget = ServingBudget(ServingRates(), most_page_cost(limits))
    for _ in range(100_000 // limits.page_records):  # records of 1 KiB, each page a range read
        assert budget.retry_after("12D3KooWNew", now=0.0) == 0
        budget.charge("12D3KooWNew", page_cost(limits.page_records + 1, limits.page_records * 1024), now=0.0)
    assert budget.retry_after("12D3KooWNew", now=0.0) == 0
