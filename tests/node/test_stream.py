"""GET /v1/stream: a client sees a published change within a second, catches up after a reconnect, and a slow
client is dropped without ever holding up the publisher."""

import json

import httpx
from hypothesis import given
from hypothesis import strategies as st
import pytest
import trio
from fastapi import FastAPI

from node.metrics import Registry
from node.stream import RESET, Broadcaster, EventStream, stream_router

from .telemetry_node import served


def app_for(broadcaster):
    app = FastAPI()
    app.include_router(stream_router(broadcaster))
    return app


async def next_event(lines):
    """The next event's fields from an SSE line iterator (comments and retry lines skipped)."""
    fields = {}
    async for line in lines:
        if not line:
            if "data" in fields:
                return fields
            continue
        name, _, value = line.partition(": ")
        if name and name != "retry":
            fields[name] = value
    raise AssertionError("stream ended")


async def test_a_client_sees_a_tier_change_within_a_second():
    broadcaster = Broadcaster(Registry())
    with trio.fail_after(10):  # subscribing; the change itself must arrive within the second below
        async with served(app_for(broadcaster)) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                async with client.stream("GET", "/v1/stream") as response:
                    assert response.headers["content-type"].startswith("text/event-stream")
                    lines = response.aiter_lines()
                    assert await lines.__anext__() == "retry: 3000"  # subscribed
                    broadcaster.publish({"type": "tier", "agent": "did:key:z6Mk", "tier": "trusted", "score": 612})
                    with trio.fail_after(1):
                        event = await next_event(lines)
    assert event["event"] == "tier"
    assert json.loads(event["data"]) == {"type": "tier", "agent": "did:key:z6Mk", "tier": "trusted", "score": 612}


async def test_a_reconnecting_client_gets_what_it_missed_or_a_reset():
    broadcaster = Broadcaster(Registry(), queue_size=4)
    with trio.fail_after(10):  # a broken stream fails the test instead of hanging it
        async with served(app_for(broadcaster)) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                async with client.stream("GET", "/v1/stream") as response:
                    lines = response.aiter_lines()
                    await lines.__anext__()
                    broadcaster.publish({"type": "score", "n": 1})
                    seen = (await next_event(lines))["id"]
                broadcaster.publish({"type": "score", "n": 2})
                broadcaster.publish({"type": "score", "n": 3})
                async with client.stream("GET", "/v1/stream", headers={"Last-Event-ID": seen}) as response:
                    lines = response.aiter_lines()
                    missed = [json.loads((await next_event(lines))["data"])["n"] for _ in range(2)]
                assert missed == [2, 3]
                for n in range(4, 10):  # more than the replay buffer holds
                    broadcaster.publish({"type": "score", "n": n})
                for stale in (seen, "another-boot-3"):
                    async with client.stream("GET", "/v1/stream", headers={"Last-Event-ID": stale}) as response:
                        assert (await next_event(response.aiter_lines()))["event"] == "reset"


async def test_a_full_queue_drops_its_client_and_publish_never_waits():
    metrics = Registry()
    broadcaster = Broadcaster(metrics, queue_size=3)
    with broadcaster.subscribe() as slow, broadcaster.subscribe() as fast:
        for n in range(10):
            broadcaster.publish({"type": "score", "n": n})
            fast.receive.receive_nowait()
        assert slow.scope.cancel_called and not fast.scope.cancel_called
        assert broadcaster.subscribers == 1
    assert metrics.value("stream_dropped_total") == 1 and broadcaster.subscribers == 0


async def test_a_dropped_client_s_connection_ends_even_while_its_socket_is_stuck():
    broadcaster = Broadcaster(Registry(), queue_size=2)
    stuck = trio.Event()
    sent = []

    async def send(message):
        sent.append(message)
        if len(sent) == 3:  # the start, the retry line, then the socket stops taking data
            stuck.set()
            await trio.sleep_forever()

    async def receive():
        await trio.sleep_forever()

    with trio.fail_after(5):  # a client that was not dropped would keep the nursery open
        async with trio.open_nursery() as nursery:
            nursery.start_soon(EventStream(broadcaster, None), {"type": "http"}, receive, send)
            await trio.testing.wait_all_tasks_blocked()
            while not stuck.is_set():
                broadcaster.publish({"type": "score"})
                await trio.testing.wait_all_tasks_blocked()
            for _ in range(3):
                broadcaster.publish({"type": "score"})
    assert broadcaster.subscribers == 0  # the nursery closed: the response returned


async def test_an_idle_stream_carries_keep_alive_comments(autojump_clock):
    broadcaster = Broadcaster(Registry(), keepalive=15)
    sent = []

    async def send(message):
        sent.append(message.get("body"))

    async def receive():
        await trio.sleep_forever()

    with trio.move_on_after(40):
        await EventStream(broadcaster, None)({"type": "http"}, receive, send)
    assert sent[2:] == [b": keep-alive\n\n"] * 2


def test_events_need_a_type():
    with pytest.raises(ValueError, match="type"):
        Broadcaster(Registry()).publish({"score": 3})


def test_reset_is_a_well_formed_event():
    assert RESET.endswith(b"\n\n") and RESET.startswith(b"event: reset\n")


@given(st.text() | st.sampled_from(["1", "²", "¹²", "٣", "1" * 25]))
def test_any_last_event_id_gets_what_was_missed_or_a_reset(seq):
    broadcaster = Broadcaster(Registry())
    with broadcaster.subscribe() as first:  # a client learns the node's event ids as they come
        broadcaster.publish({"type": "score"})
        boot = first.receive.receive_nowait().split(b"\n")[0].removeprefix(b"id: ").split(b"-")[0].decode()
    broadcaster.publish({"type": "score"})
    frames = []
    with broadcaster.subscribe(f"{boot}-{seq}") as subscriber:
        while (frame := _queued(subscriber)) is not None:
            frames.append(frame)
    assert frames == [RESET] or (seq.isascii() and seq.isdigit() and len(frames) <= 2)


def _queued(subscriber):
    try:
        return subscriber.receive.receive_nowait()
    except trio.WouldBlock:
        return None
