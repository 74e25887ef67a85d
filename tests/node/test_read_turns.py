"""node.read_turns: long telemetry requests read a few at a time, the smallest body waiting first."""

import trio
import trio.testing

from node.read_turns import OVERDUE_S, ReadTurns


async def take_in_turn(turns: ReadTurns, size: int, order: list, done: trio.Event, name: str = "") -> None:
    """Take the turn of a body of `size` bytes, note it (or `name`) in `order`, and hold it until `done`."""
    await turns.take(size)
    order.append(name or size)
    try:
        await done.wait()
    finally:
        turns.give_back()


async def test_the_smallest_body_waiting_is_read_next_then_the_first_come_among_as_large():
    """Bodies were read in the order they came: an exporter's request of some hundred KB waited behind every body
    at the limit a client had queued before it (about a second each). The smallest waiting is now read next."""
    turns = ReadTurns(1)
    order: list[str] = []
    ends = {name: trio.Event() for name in ("4000", "300 first", "3000", "300 second", "100")}
    async with trio.open_nursery() as nursery:
        for name, done in ends.items():
            nursery.start_soon(take_in_turn, turns, int(name.split()[0]), order, done, name)
            await trio.testing.wait_all_tasks_blocked()
        assert order == ["4000"] and turns.waiting == 4  # the first found none reading: read at once
        for name in ("4000", "100", "300 first", "300 second"):
            ends[name].set()
            await trio.testing.wait_all_tasks_blocked()
        ends["3000"].set()
    assert order == ["4000", "100", "300 first", "300 second", "3000"] and turns.waiting == 0


async def test_as_many_turns_at_once_as_given():
    turns = ReadTurns(2)
    order: list[int] = []
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        for size in (3, 2, 1):
            nursery.start_soon(take_in_turn, turns, size, order, done)
            await trio.testing.wait_all_tasks_blocked()
        assert order == [3, 2] and turns.waiting == 1
        done.set()
    assert order == [3, 2, 1]


async def test_a_request_that_leaves_while_it_waits_gives_up_its_place_or_the_turn_it_was_given():
    """A request cancelled while it waits (its client gone, its room taken) leaves the queue; one whose turn came
    as it was cancelled passes the turn on: nobody is left waiting for a turn that no one holds."""
    turns = ReadTurns(1)
    await turns.take(10)
    order: list[int] = []
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        gone, given_as_it_left = trio.CancelScope(), trio.CancelScope()

        async def leaving(scope: trio.CancelScope, size: int) -> None:
            with scope:
                await take_in_turn(turns, size, order, done)

        nursery.start_soon(leaving, gone, 1)
        nursery.start_soon(leaving, given_as_it_left, 2)
        nursery.start_soon(take_in_turn, turns, 3, order, done)
        await trio.testing.wait_all_tasks_blocked()
        gone.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert turns.waiting == 2
        given_as_it_left.cancel()  # cancelled, not yet run: its turn is given before it leaves
        turns.give_back()
        await trio.testing.wait_all_tasks_blocked()
        assert order == [3] and turns.waiting == 0
        done.set()
    await turns.take(20)  # the one turn there is, free again
    assert turns.waiting == 0


async def test_a_body_waiting_overdue_is_read_next_whatever_smaller_bodies_keep_coming(autojump_clock):
    """Smaller bodies arriving without pause held a large one off for as long as they came (its client timing out
    meanwhile): one that has waited OVERDUE_S is now read next, the longest waiting first."""
    turns = ReadTurns(1)
    order: list[str] = []
    ends: dict[str, trio.Event] = {}

    async def body(size: int, name: str) -> None:
        ends[name] = trio.Event()
        await take_in_turn(turns, size, order, ends[name], name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(body, 10, "first")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(body, 4_000_000, "large")
        await trio.testing.wait_all_tasks_blocked()
        for n in range(12):  # a small body arrives as each turn ends, a second apart
            nursery.start_soon(body, 100, f"small {n}")
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(1)
            ends[order[-1]].set()  # the body being read
            await trio.testing.wait_all_tasks_blocked()
        for done in ends.values():
            done.set()
    # The turn ending at OVERDUE_S s is the large body's, smaller ones read before it and after it (smallest first)
    overdue = int(OVERDUE_S)
    assert order == ["first", *(f"small {n}" for n in range(overdue - 1)), "large",
                     *(f"small {n}" for n in range(overdue - 1, 12))]
