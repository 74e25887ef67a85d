"""GET /v1/stream: a client sees a published change within a second, catches up after a reconnect, and a slow
client is dropped without ever holding up the publisher."""

import json

import httpx
from hypothesis import given
from hypothesis import strategies as st
import pytest
import trio
from fastapi import FastAPI

from node.api import create_app
from node.api.http_server import MAX_CONNECTIONS
from node.metrics import Registry
from node.stream import FULL_RETRY_S, MAX_CLIENTS, RESET, Broadcaster, EventStream, stream_router

from .fake_node import TOKEN, fake_node
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


async def _open_stream(address: tuple[str, int]) -> tuple[trio.SocketStream, bytes]:
    """A raw connection asking for /v1/stream, and the head of the answer (read up to its blank line)."""
    connection = await trio.open_tcp_stream(*address)
    await connection.send_all(b"GET /v1/stream HTTP/1.1\r\nHost: node\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += await connection.receive_some(4096)
    return connection, head


async def test_streams_beyond_their_cap_are_refused_and_never_take_the_connections_writes_need(tmp_path):
    """Reads need no token: MAX_CLIENTS idle streams once took every connection (MAX_CONNECTIONS), and writes and
    health checks were refused. With the cap of streams open, both get through; the next stream gets a 503."""
    metrics = Registry()
    broadcaster = Broadcaster(metrics)
    with fake_node(tmp_path) as node, trio.fail_after(60):  # a hang fails the test
        app = create_app(node, routers=[stream_router(broadcaster)])
        async with served(app) as url:
            address = (url.removeprefix("http://").split(":")[0], int(url.rsplit(":", 1)[1]))
            streams = [await _open_stream(address) for _ in range(MAX_CLIENTS)]
            assert all(head.startswith(b"HTTP/1.1 200") for _, head in streams)
            assert broadcaster.subscribers == MAX_CLIENTS < MAX_CONNECTIONS
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get("/healthz")).status_code == 200
                written = await client.put("/v1/peers/blocked", json={"peers": []},
                                           headers={"Authorization": f"Bearer {TOKEN}"})
                assert written.status_code == 200
                refused = await client.get("/v1/stream")
            assert refused.status_code == 503 and refused.headers["retry-after"] == str(FULL_RETRY_S)
            assert metrics.value("stream_refused_total") == 1  # an operator sees clients turned away
            assert refused.json() == {"error": "too_many_streams", "detail": f"/v1/stream: {MAX_CLIENTS} clients "
                                      "are connected, as many as the node serves; retry later"}
            for connection, _ in streams:
                await connection.aclose()


async def test_a_full_queue_drops_its_client_and_publish_never_waits(caplog):
    metrics = Registry()
    broadcaster = Broadcaster(metrics, queue_size=3)
    with broadcaster.subscribe() as slow, broadcaster.subscribe() as fast:
        for n in range(10):
            broadcaster.publish({"type": "score", "n": n})
            fast.receive.receive_nowait()
        assert slow.scope.cancel_called and not fast.scope.cancel_called
        assert broadcaster.subscribers == 1
    assert metrics.value("stream_dropped_total") == 1 and broadcaster.subscribers == 0
    assert caplog.messages == ["dropped a /v1/stream client: 3 events waited for it to read them"]


async def test_a_stream_client_that_never_reads_is_dropped_once_the_kernel_and_its_queue_are_full():
    """What a client that never reads costs is bounded: the socket buffers the kernel grants, then QUEUE_SIZE events
    (shared with every other client's queue), then it is dropped and its connection closed."""
    metrics = Registry()
    broadcaster = Broadcaster(metrics)
    with trio.fail_after(60):  # a client never dropped fails the test instead of hanging it
        async with served(app_for(broadcaster)) as url:
            connection, _ = await _open_stream((url.removeprefix("http://").split(":")[0], int(url.rsplit(":", 1)[1])))
            published = 0
            while not metrics.value("stream_dropped_total"):
                broadcaster.publish({"type": "score", "padding": "x" * 60_000})
                published += 1
                await trio.testing.wait_all_tasks_blocked()  # the server writes what the socket takes
            assert broadcaster.subscribers == 0 and published > broadcaster.queue_size
            try:  # what was sent, then the end the server made (the fail_after above if it made none)
                while await connection.receive_some(1 << 20):
                    pass
            except trio.BrokenResourceError:
                pass  # ended by a reset: the server closed with data unread


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
