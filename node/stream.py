"""`GET /v1/stream`: server-sent events (WHATWG HTML §9.2) of score and tier changes, for SDK caches (DESIGN §8).

`Broadcaster.publish(event)` is synchronous and never waits: each client has a bounded queue, and a client whose
queue is full is dropped (its connection closed, counted and logged), so a slow reader can cost the node nothing
but its slot. Each event has an id `<boot>-<n>`; a client reconnecting with `Last-Event-ID` gets what it missed
from a bounded replay buffer, or an `event: reset` (drop your cache) when that is not possible, e.g. across a node
restart.

Reads need no token, and a stream holds its connection for as long as the client stays: at most MAX_CLIENTS at
once, a quarter of the API's connections (node.api.http_server.MAX_CONNECTIONS), so that streams never take the
connections writes and health checks need. One more gets a 503 with a JSON reason and Retry-After, before any event.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from fastapi import APIRouter, Request, Response
from starlette.types import Receive, Scope, Send

from .api.errors import error_body, error_response
from .api.http_server import MAX_CONNECTIONS
from .api.json_body import StrictJsonRoute
from .metrics import Registry

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
MAX_CLIENTS = MAX_CONNECTIONS // 4
FULL_RETRY_S = 10  # Retry-After of a stream refused for MAX_CLIENTS
KEEPALIVE_S = 15.0
RETRY_MS = 3000
RESET = b"event: reset\ndata: {}\n\n"


@dataclass(eq=False)
class Subscription:
    """One client: its queue of frames, and the scope its connection runs in (cancelled to drop it)."""

    send: trio.MemorySendChannel[bytes]
    receive: trio.MemoryReceiveChannel[bytes]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class Broadcaster:
    """Fans events out to the connected clients."""

    def __init__(self, metrics: Registry, *, queue_size: int = QUEUE_SIZE, keepalive: float = KEEPALIVE_S,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.queue_size, self.keepalive, self.max_clients = queue_size, keepalive, max_clients
        self._boot = secrets.token_hex(4)
        self._seq = 0
        self._replay: deque[tuple[int, bytes]] = deque(maxlen=queue_size)
        self._subscribers: set[Subscription] = set()
        self._published = metrics.counter("stream_events_total", "Events published to /v1/stream")
        self._dropped = metrics.counter("stream_dropped_total", "Stream clients dropped for falling behind")
        self._refused = metrics.counter("stream_refused_total", "Stream clients refused: max_clients were connected")
        metrics.collect("stream_clients", "Clients connected to /v1/stream", lambda: len(self._subscribers))

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def refuses(self) -> bool:
        """Whether max_clients are subscribed, so that a client asking now must be refused (counted, as refused)."""
        if len(self._subscribers) < self.max_clients:
            return False
        self._refused.inc()
        return True

    def publish(self, event: Mapping[str, Any]) -> None:
        """Send `event` (JSON; its "type", e.g. "score" or "tier", is the SSE event name) to every client."""
        kind = event.get("type")
        if not isinstance(kind, str) or not kind.isidentifier():
            raise ValueError('event: needs a "type" that is an identifier, e.g. "score"')
        self._seq += 1
        data = json.dumps(event, separators=(",", ":"))  # one line: JSON escapes every newline
        frame = f"id: {self._boot}-{self._seq}\nevent: {kind}\ndata: {data}\n\n".encode()
        self._replay.append((self._seq, frame))
        self._published.inc()
        for subscriber in list(self._subscribers):
            try:
                subscriber.send.send_nowait(frame)
            except trio.WouldBlock:
                self._drop(subscriber)

    def _drop(self, subscriber: Subscription) -> None:
        self._subscribers.discard(subscriber)
        subscriber.scope.cancel()
        self._dropped.inc()
        log.warning("dropped a /v1/stream client: %d events waited for it to read them", self.queue_size)

    def _missed(self, last_event_id: str | None) -> list[bytes]:
        """What a client that last saw `last_event_id` needs first: the frames after it, or a reset."""
        if last_event_id is None:
            return []
        boot, _, seq = last_event_id.partition("-")
        if boot == self._boot and seq.isascii() and seq.isdigit() and len(seq) < 20:  # "²".isdigit(); int() refuses it
            last = int(seq)
            oldest = self._replay[0][0] if self._replay else self._seq + 1
            if oldest - 1 <= last <= self._seq:
                return [frame for n, frame in self._replay if n > last]
        return [RESET]

    @contextmanager
    def subscribe(self, last_event_id: str | None = None) -> Iterator[Subscription]:
        """A client's subscription for as long as the block runs."""
        send, receive = trio.open_memory_channel[bytes](self.queue_size)
        subscriber = Subscription(send, receive)
        for frame in self._missed(last_event_id):
            send.send_nowait(frame)
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)
            send.close()


class EventStream(Response):
    """The `text/event-stream` response of one client, ended when it disconnects or is dropped."""

    media_type = "text/event-stream"

    def __init__(self, broadcaster: Broadcaster, last_event_id: str | None) -> None:
        # Not Response.__init__: it would declare a Content-Length for an empty body (as StreamingResponse avoids).
        self.status_code, self.background = 200, None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.broadcaster, self.last_event_id = broadcaster, last_event_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.broadcaster.refuses():  # (and no await until subscribed: no other stream can come in between)
            detail = (f"/v1/stream: {self.broadcaster.max_clients} clients are connected, as many as the node "
                      "serves; retry later")
            refusal = error_response(503, "too_many_streams", detail, {"Retry-After": str(FULL_RETRY_S)})
            await refusal(scope, receive, send)
            return
        with self.broadcaster.subscribe(self.last_event_id) as subscriber:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            with subscriber.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_until_disconnected, receive, nursery.cancel_scope)
                    await _body(send, f"retry: {RETRY_MS}\n\n".encode())
                    while True:
                        frame = b": keep-alive\n\n"  # a comment, so proxies and clients see the line is alive
                        with trio.move_on_after(self.broadcaster.keepalive):
                            frame = await subscriber.receive.receive()
                        await _body(send, frame)


async def _body(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _until_disconnected(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def stream_router(broadcaster: Broadcaster) -> APIRouter:
    router = APIRouter(route_class=StrictJsonRoute, tags=["stream"])

    @router.get(
        "/v1/stream",
        response_class=EventStream,
        status_code=200,  # for the OpenAPI document, which cannot read it from EventStream's constructor
        responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"},
                   503: error_body("As many streams as the node serves are connected")},
    )
    async def stream(request: Request) -> EventStream:
        """Server-sent events of score and tier changes: `event: <type>` with a JSON `data` line and an `id`;
        send `Last-Event-ID` on reconnect to get what was missed (or `event: reset`). An agent's `score` event
        comes also when only its scoped tools (`scopes`) or who operates it changed, and carries, as a check answer
        does, `issuers`, `issuers_complete` and `cold_start`. Comments keep it alive.
        503 `too_many_streams` (with Retry-After) while as many clients as the node serves are connected."""
        return EventStream(broadcaster, request.headers.get("last-event-id"))

    return router
