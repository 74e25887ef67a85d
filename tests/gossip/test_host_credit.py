"""A host's writes to a peer that is slow to read, or reads nothing, waiting for yamux window credit (gossip.host
quirk 65): bounded by the writer's own deadline, or WINDOW_WAIT_S for a writer without one, and woken by the credit
or the stream's end, not polled. Real connections on loopback, under a mock clock that jumps to the next timer once
the hosts wait (loopback_clock: the hosts' timeouts with it), so that waits of seconds take milliseconds; a wait for a
writer's wait is an event (CreditWaits), not a time."""

import os
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from libp2p.stream_muxer.yamux.yamux import DEFAULT_WINDOW_SIZE

import gossip.host
from gossip.host import Stream, StreamError, _YamuxStream, open_host
from tests.gossip.test_host import LOOPBACK

SLOW = "/vouchnet/test/slow"
PAST_THE_WINDOW = 2 * DEFAULT_WINDOW_SIZE + 1000  # bytes a write sends: more than the peer's window, twice
LIBRARY_WAIT_S = 5.0  # py-libp2p's YamuxStream.write gave up on window credit after this, whatever the deadline


class CreditWaits:
    """Wakes a test as the n-th wait of a write for window credit begins (_YamuxStream._wait_for_credit): the
    writer is then waiting on the stream's event, where only the peer's credit or the stream's end wakes it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self._begun: defaultdict[int, trio.Event] = defaultdict(trio.Event)
        wait_for_credit = _YamuxStream._wait_for_credit

        async def counted(changed: trio.Event) -> None:
            self.count += 1
            self._begun[self.count].set()
            await wait_for_credit(changed)

        monkeypatch.setattr(_YamuxStream, "_wait_for_credit", staticmethod(counted))

    async def begun(self, count: int) -> None:
        """Until `count` waits for credit have begun."""
        await self._begun[count].wait()


@pytest.fixture
def credit_waits(monkeypatch: pytest.MonkeyPatch) -> CreditWaits:
    return CreditWaits(monkeypatch)


class _TaskSteps(trio.abc.Instrument):
    """Counts the times one task is run (woken) by trio's scheduler."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task, self.steps = task, 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += task is self.task


@asynccontextmanager
async def writer_and_reader(serve) -> AsyncIterator[Stream]:  # type: ignore[no-untyped-def]
    """A stream from one host to another whose SLOW handler is `serve`."""
    async with open_host(os.urandom(32), LOOPBACK) as writer, open_host(os.urandom(32), LOOPBACK) as reader:
        reader.set_stream_handler(SLOW, serve)
        await writer.connect(reader.listen_addrs[0])
        async with await writer.open_stream(reader.peer_id, SLOW) as stream:
            yield stream


async def _read_nothing(stream: Stream) -> None:
    await trio.sleep_forever()


@pytest.mark.slow
async def test_a_write_to_a_peer_slow_to_read_completes_past_5_s_within_its_deadline(loopback_clock) -> None:
    """py-libp2p failed a write that waited 5 s for window credit, whatever its caller's deadline: a sync server's page
    to a client busy checking the previous one for 6 s broke at 5 s, though the server gives each write 10 s."""
    received = []
    read = trio.Event()

    async def read_late(stream: Stream) -> None:
        await trio.sleep(LIBRARY_WAIT_S + 1)
        received.append(await stream.read_frame(PAST_THE_WINDOW))
        read.set()

    payload = os.urandom(PAST_THE_WINDOW)
    with trio.fail_after(60):
        async with writer_and_reader(read_late) as stream:
            start = trio.current_time()
            with trio.fail_after(10):  # the caller's deadline (the sync server's timeout)
                await stream.write_frame(payload)
            assert trio.current_time() - start > LIBRARY_WAIT_S
            await read.wait()
    assert received == [payload]


@pytest.mark.slow
async def test_a_write_to_a_peer_reading_nothing_waits_unwoken_until_the_caller_s_deadline(loopback_clock) -> None:
    """A write to a peer that grants no credit ends at its caller's deadline, not at py-libp2p's 5 s, and waits for
    the credit without being woken meanwhile: py-libp2p looked at the window every 10 ms (200 streams to a peer reading
    nothing: 0.6 s of CPU in 2.5 s, benchmarks/p2p_exhaust.py credit)."""
    deadline = LIBRARY_WAIT_S + 2
    with trio.fail_after(60):
        async with writer_and_reader(_read_nothing) as stream:
            steps = _TaskSteps(trio.lowlevel.current_task())
            trio.lowlevel.add_instrument(steps)
            start = trio.current_time()
            try:
                with pytest.raises(trio.TooSlowError), trio.fail_after(deadline):
                    await stream.write(b"x" * PAST_THE_WINDOW)
            finally:
                trio.lowlevel.remove_instrument(steps)
            assert trio.current_time() - start >= deadline
    assert steps.steps < 100  # (the window's frames, their locks and writes; py-libp2p's polls: 100 a second)


@pytest.mark.slow
async def test_a_write_without_a_deadline_to_a_peer_reading_nothing_fails_after_the_window_wait(loopback_clock) -> None:
    """A peer reading nothing cannot hold a writer that set no deadline of its own (pubsub's sending loop) for ever:
    its write fails once it has waited WINDOW_WAIT_S for credit."""
    failed: list[tuple[float, str]] = []
    async with trio.open_nursery() as no_deadline:  # its tasks are outside the test's bound, as pubsub's sending loop
        with trio.fail_after(60):
            async with writer_and_reader(_read_nothing) as stream:
                done = trio.Event()

                async def write() -> None:
                    start = trio.current_time()
                    try:
                        await stream.write(b"x" * PAST_THE_WINDOW)
                    except StreamError as error:
                        failed.append((trio.current_time() - start, str(error)))
                    done.set()

                no_deadline.start_soon(write)
                await done.wait()
    [(waited, error)] = failed
    assert waited >= gossip.host.WINDOW_WAIT_S > LIBRARY_WAIT_S and "no window credit" in error


@pytest.mark.slow
async def test_two_tasks_writing_one_yamux_stream_past_its_window_are_both_woken_by_the_credit(
        loopback_clock, credit_waits: CreditWaits) -> None:
    """A yamux stream may be written from two tasks at once (YamuxStream takes its own lock for each frame; pubsub's
    writers did so before quirk 18's lock): both writers waiting for window credit go on as it comes, as they did
    when py-libp2p looked at the window every 10 ms; neither waits out its deadline for a wake-up the other took."""
    sizes = (DEFAULT_WINDOW_SIZE + 1000, 1000)
    read = 0
    all_read = trio.Event()

    async def read_late(stream: Stream) -> None:
        nonlocal read
        await credit_waits.begun(2)  # both writers are waiting for credit
        while read < sum(sizes):
            read += len(await stream.read())
        all_read.set()

    written: list[int] = []
    with trio.fail_after(60):
        async with writer_and_reader(read_late) as stream:
            yamux_stream = stream._stream.muxed_stream  # (below Stream's lock, as two pubsub writers were)

            async def write(size: int) -> None:
                await yamux_stream.write(b"x" * size)
                written.append(size)

            with trio.fail_after(5):  # (the deadline a writer whose wake-up was lost would wait out)
                async with trio.open_nursery() as writers:
                    writers.start_soon(write, sizes[0])
                    await credit_waits.begun(1)  # the first is waiting for credit as the second starts
                    writers.start_soon(write, sizes[1])
            await all_read.wait()
    assert sorted(written) == sorted(sizes) and read == sum(sizes)


@pytest.mark.slow
@pytest.mark.parametrize("end", ["stream reset", "connection closed"])
async def test_a_write_waiting_for_credit_fails_as_the_peer_ends_its_stream(
        end: str, loopback_clock, credit_waits: CreditWaits) -> None:
    """A write waiting for window credit fails as the peer resets the stream, or its connection closes, not at its
    caller's deadline: a sync server's page to a client that gave up, or left, would otherwise hold its serving slot
    for the rest of the 10 s."""
    async with open_host(os.urandom(32), LOOPBACK) as writer, open_host(os.urandom(32), LOOPBACK) as reader:
        ended_at: list[float] = []

        async def end_unread(stream: Stream) -> None:
            await credit_waits.begun(1)  # the writer is waiting for credit
            ended_at.append(trio.current_time())
            if end == "stream reset":
                await stream.reset()
            else:
                await reader.disconnect(writer.peer_id)

        reader.set_stream_handler(SLOW, end_unread)
        await writer.connect(reader.listen_addrs[0])
        with trio.fail_after(60):
            async with await writer.open_stream(reader.peer_id, SLOW) as stream:
                with pytest.raises(StreamError), trio.fail_after(10):  # (the sync server's deadline)
                    await stream.write(b"x" * PAST_THE_WINDOW)
                [ended] = ended_at
                assert trio.current_time() - ended < 1
