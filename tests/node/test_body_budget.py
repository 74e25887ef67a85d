"""node.body_budget: the bytes of request bodies held at once, given back however a request ends, and taken from
those held unread too long by a request that finds no room."""

import pytest
import trio
import trio.testing
from starlette.requests import ClientDisconnect

from node.body_budget import BodyBudget, Evicted, OverBudget
from node.read_turns import ReadTurns


async def test_a_request_waits_for_room_then_takes_it():
    """It takes the room as soon as it is given back, not at the end of its wait (found by stop 45's review: a
    request not woken when room was given back waited its whole wait, 2 s at the node, then took it unnoticed)."""
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
            await trio.testing.wait_all_tasks_blocked()
            assert taken.is_set()
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


async def arrive_slowly(budget: BodyBudget, count: int, arriving: list[int], evicted: list[int]) -> None:
    """A request whose body's first `count` bytes arrived, and no more: listed in `arriving`, then if its room is
    taken, in `evicted`."""
    async with budget.holding() as held:
        try:
            with held.arriving():
                await held.take(count)
                arriving.append(count)
                await trio.sleep_forever()
        except Evicted:
            evicted.append(count)


async def test_a_request_that_finds_no_room_takes_that_of_bodies_arriving_longer_than_it_waited(autojump_clock):
    """Bodies sent slowly held the budget for as long as their clients took (30 s a request), every other request
    refused meanwhile. One that finds no room within its wait now takes the room of bodies arriving for longer than
    it waited, the longest first, as many as it needs: each refused (Evicted), all it held given back."""
    budget = BodyBudget(100, wait_s=2)
    arriving, evicted = [], []
    async with trio.open_nursery() as nursery:
        for count in (30, 40, 15):
            nursery.start_soon(arrive_slowly, budget, count, arriving, evicted)
            await trio.sleep(1)
        async with budget.holding() as waiting:
            await waiting.take(5)  # a body being read, not arriving
            nursery.start_soon(arrive_slowly, budget, 10, arriving, evicted)  # for less than the next one waits
            await trio.testing.wait_all_tasks_blocked()
            async with budget.holding() as newcomer:
                await newcomer.take(60)  # the two arriving longest hold enough: 10 free once they are given back
                await trio.testing.wait_all_tasks_blocked()
                assert sorted(evicted) == [30, 40] and budget.free == 10 and newcomer.bytes == 60
            nursery.cancel_scope.cancel()
    assert arriving == [30, 40, 15, 10] and budget.free == 100


async def test_bodies_arriving_are_kept_where_their_room_would_not_be_enough(autojump_clock):
    budget = BodyBudget(100, wait_s=2)
    async with budget.holding() as slow, budget.holding() as read:
        with slow.arriving():
            await slow.take(30)
            await read.take(60)
            await trio.sleep(10)
            with pytest.raises(OverBudget) as refused:
                async with budget.holding() as newcomer:
                    await newcomer.take(50)  # 10 free, and 30 arriving: not enough
            assert type(refused.value) is OverBudget and not slow.evicted and budget.free == 10
    assert budget.free == 100


async def test_bodies_arriving_for_less_than_the_wait_keep_their_room(autojump_clock):
    """Only a body arriving for longer than the newcomer waited is slow: one that began since is kept, however much
    room it holds, and the newcomer is refused."""
    budget = BodyBudget(100, wait_s=2)
    arriving, evicted = [], []
    async with budget.holding() as read, trio.open_nursery() as nursery:
        await read.take(100)  # a body being read, not arriving

        async def read_then_arrive() -> None:
            await trio.sleep(1)
            read.give_back(100)
            await arrive_slowly(budget, 90, arriving, evicted)  # (takes the room before the newcomer wakes)

        nursery.start_soon(read_then_arrive)
        with pytest.raises(OverBudget):
            async with budget.holding() as newcomer:
                await newcomer.take(60)  # 10 free at the end of its wait, and 90 arriving for 1 s of it
        assert arriving == [90] and evicted == [] and budget.free == 10
        nursery.cancel_scope.cancel()
    assert budget.free == 100


async def test_a_slow_body_that_finds_no_room_takes_that_of_others_not_its_own(autojump_clock):
    """A body arriving slowly can itself wait for room for its next bytes: it takes the room of those arriving
    longer than it waited, the longest first, never its own, and goes on arriving."""
    budget = BodyBudget(100, wait_s=2)
    arriving, evicted = [], []
    async with budget.holding() as slow:
        with slow.arriving():
            await slow.take(30)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(arrive_slowly, budget, 70, arriving, evicted)
                await trio.sleep(10)
                await slow.take(40)  # none free: the other's 70, arriving for 10 s, are enough
                await trio.testing.wait_all_tasks_blocked()
                assert evicted == [70] and not slow.evicted and slow.bytes == 70 and budget.free == 30
    assert budget.free == 100


async def wait_turn(budget: BodyBudget, turns: ReadTurns, count: int, read: list[int], evicted: list[str]) -> None:
    """A request whose body of `count` bytes arrived at once and waits its turn to be read: listed in `read` once its
    turn comes (then held), or if its room is taken meanwhile, its refusal in `evicted`."""
    async with budget.holding() as held:
        await held.take(count)
        try:
            await held.turn(turns, count)
        except Evicted as error:
            evicted.append(f"{count}: {error}")
            return
        read.append(count)
        try:
            await trio.sleep_forever()
        finally:
            turns.give_back()


async def test_a_request_that_finds_no_room_takes_that_of_bodies_waiting_their_turn_the_largest_first(autojump_clock):
    """Bodies waiting their turn to be read (one at a time) held their room however long they waited, and could not
    be taken: a client that queued bodies at the limit behind the reads had every exporter's request refused. A
    request that finds no room within its wait now takes, after that of bodies arriving slowly, the room of bodies
    waiting their turn for longer than it waited, the largest first (those read last, node.read_turns), as many as
    it needs; each refused (Evicted) and out of the queue, its room given back."""
    budget, turns = BodyBudget(100, wait_s=2), ReadTurns(1)
    arriving, evicted_arriving, read, evicted = [], [], [], []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_turn, budget, turns, 10, read, evicted)  # read at once, and held
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(arrive_slowly, budget, 5, arriving, evicted_arriving)
        for count in (30, 40, 15):
            nursery.start_soon(wait_turn, budget, turns, count, read, evicted)
            await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(1)
        async with budget.holding() as newcomer:
            await newcomer.take(45)  # none free: the body arriving, then the largest waiting, hold enough
            await trio.testing.wait_all_tasks_blocked()
            assert evicted_arriving == [5] and [refusal.split(":")[0] for refusal in evicted] == ["40"]
            assert "had been waiting its turn to be read for over 2 s" in evicted[0]
            assert budget.free == 0 and turns.waiting == 2 and read == [10]
            nursery.cancel_scope.cancel()
    assert budget.free == 100


async def test_bodies_waiting_their_turn_for_less_than_the_wait_keep_their_room(autojump_clock):
    budget, turns = BodyBudget(100, wait_s=2), ReadTurns(1)
    read, evicted = [], []
    async with budget.holding() as reading, trio.open_nursery() as nursery:
        await turns.take(1)
        await reading.take(100)

        async def give_back_then_wait() -> None:
            await trio.sleep(1)
            reading.give_back(90)
            await wait_turn(budget, turns, 90, read, evicted)  # (takes the room before the newcomer wakes)

        nursery.start_soon(give_back_then_wait)
        with pytest.raises(OverBudget):
            async with budget.holding() as newcomer:
                await newcomer.take(50)  # none free at the end of its wait, and 90 waiting for 1 s of it
        assert evicted == [] and turns.waiting == 1 and budget.free == 0
        nursery.cancel_scope.cancel()
    assert budget.free == 100


async def test_a_body_whose_room_is_taken_as_its_turn_comes_passes_the_turn_on():
    budget, turns = BodyBudget(100, wait_s=2), ReadTurns(1)
    read, evicted = [], []
    async with trio.open_nursery() as nursery:
        await turns.take(1)  # a read under way
        for count in (20, 30):
            nursery.start_soon(wait_turn, budget, turns, count, read, evicted)
            await trio.testing.wait_all_tasks_blocked()
        (first,) = [held for held in budget._unread if held.bytes == 20]
        turns.give_back()  # its turn given, and before it runs on, its room taken
        first.evict()
        await trio.testing.wait_all_tasks_blocked()
        assert read == [30] and [refusal.split(":")[0] for refusal in evicted] == ["20"] and budget.free == 70
        nursery.cancel_scope.cancel()
    assert budget.free == 100 and turns.waiting == 0
