"""node.body_budget: the bytes of request bodies held at once, given back however a request ends."""

import pytest
import trio
import trio.testing
from starlette.requests import ClientDisconnect

from node.body_budget import BodyBudget, OverBudget


async def test_a_request_waits_for_room_then_takes_it():
    budget = BodyBudget(100, wait_s=60)
    async with budget.holding() as first:
        await first.take(80)
        async with trio.open_nursery() as nursery:
            taken = trio.Event()

            async def second() -> None:
                async with budget.holding() as held:
                    await held.take(50)
                    taken.set()

            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            assert not taken.is_set()
            first.give_back(80)
    assert budget.free == 100


async def test_no_room_within_the_wait_is_over_budget_and_nothing_taken(autojump_clock):
    budget = BodyBudget(100, wait_s=2)
    async with budget.holding() as first:
        await first.take(60)
        with pytest.raises(OverBudget):
            async with budget.holding() as second:
                await second.take(30)
                await second.take(30)
        assert budget.free == 40
    assert budget.free == 100


async def test_a_client_gone_or_a_cancelled_request_gives_back_what_it_took():
    budget = BodyBudget(100, wait_s=60)
    with pytest.raises(ClientDisconnect):
        async with budget.holding() as held:
            await held.take(70)
            raise ClientDisconnect()
    with trio.CancelScope() as scope:
        async with budget.holding() as held:
            await held.take(70)
            scope.cancel()
            await held.take(70)  # no room: waits, and is cancelled
    assert budget.free == 100
