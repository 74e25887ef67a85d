"""How the sync server treats an inbound stream over time (trio's mock clock, an in-memory stream): a kept stream
idle after answering is closed quietly, one that never asks anything is reset and counted as a timeout, a
stream keeps being answered for as long as its peer keeps asking, no peer holds more than its share of streams, and
heads name every issuer stored."""

import pytest
import trio
from nacl.signing import SigningKey

from gossip.replica import Replica
from gossip.store import RecordStore
from gossip.sync_messages import SYNC_PROTOCOL, HeadsRequest, decode_reply, encode_message
from gossip.sync_service import SyncService

from ..factories import Org

TIMEOUT = 10.0


class FakeStream:
    """An inbound stream: frames the test sends in, frames the server writes out, and how it ended."""

    def __init__(self, remote_peer: str = "12D3KooWPeer") -> None:
        self.remote_peer = remote_peer
        self.incoming_send, self.incoming = trio.open_memory_channel[bytes | None](8)
        self.written: list[bytes] = []
        self.ended: str | None = None  # "close" or "reset"
        self.done = trio.Event()

    async def read_frame(self, max_size: int) -> bytes | None:
        return await self.incoming.receive()

    async def write_frame(self, payload: bytes) -> None:
        self.written.append(payload)

    async def close(self) -> None:
        self._end("close")

    async def reset(self) -> None:
        self._end("reset")

    def _end(self, how: str) -> None:
        self.ended = self.ended or how
        self.done.set()


class FakeHost:
    """What SyncService.run asks of a host, with no peers."""

    def __init__(self) -> None:
        self.handlers = {}
        self._events_send, self._events = trio.open_memory_channel(0)

    def set_stream_handler(self, protocol, handler) -> None:
        self.handlers[protocol] = handler

    def peer_events(self):
        return self._events

    def connected_peers(self) -> list[str]:
        return []


@pytest.fixture
async def serving(tmp_path):
    """A running SyncService on a fake host; yields a function that opens an inbound stream to it."""
    with RecordStore.open(tmp_path) as store:
        replica = Replica(SigningKey.generate(), store, roots=(), max_hops=1, held_limit=10)
        host = FakeHost()
        service = SyncService(host, replica, timeout=TIMEOUT)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)

            def open_stream(peer: str = "12D3KooWPeer") -> FakeStream:
                stream = FakeStream(peer)
                nursery.start_soon(host.handlers[SYNC_PROTOCOL], stream)
                return stream

            yield service, open_stream
            nursery.cancel_scope.cancel()


def heads_request() -> bytes:
    return encode_message(HeadsRequest(after="", limit=10))


async def test_a_kept_stream_idle_after_answering_is_closed_quietly(serving, autojump_clock):
    service, open_stream = serving
    stream = open_stream()
    await stream.incoming_send.send(heads_request())
    start = trio.current_time()
    with trio.fail_after(2 * TIMEOUT):  # mock time: a stream the server never ends fails the test
        await stream.done.wait()
    assert stream.ended == "close" and len(stream.written) == 1  # answered, then let go
    assert trio.current_time() - start == pytest.approx(TIMEOUT)
    assert "timeout" not in service.stats.errors


async def test_a_stream_that_never_asks_is_reset_as_a_timeout(serving, autojump_clock):
    service, open_stream = serving
    stream = open_stream()
    with trio.fail_after(2 * TIMEOUT):  # mock time: a stream the server never ends fails the test
        await stream.done.wait()
    assert stream.ended == "reset" and stream.written == []
    assert service.stats.errors["timeout"] == 1


async def test_a_stream_is_answered_for_as_long_as_its_peer_keeps_asking(serving, autojump_clock):
    service, open_stream = serving
    stream = open_stream()
    for _ in range(5):  # each request comes just before the idle timeout
        await stream.incoming_send.send(heads_request())
        await trio.sleep(TIMEOUT * 0.9)
    assert stream.ended is None and len(stream.written) == 5
    await stream.incoming_send.send(None)  # the peer closes its side: the handler returns, nothing counted
    await trio.testing.wait_all_tasks_blocked()
    assert service.stats.streams_served == 1 and not service.stats.errors


async def test_one_peer_cannot_take_every_inbound_stream_from_the_others(serving, autojump_clock):
    service, open_stream = serving
    hoarded = [open_stream("12D3KooWHoarder") for _ in range(service._streams.total_tokens)]
    await trio.testing.wait_all_tasks_blocked()
    honest = open_stream("12D3KooWHonest")
    await honest.incoming_send.send(heads_request())
    await trio.testing.wait_all_tasks_blocked()
    assert honest.ended is None and len(honest.written) == 1
    refused = sum(stream.ended == "reset" for stream in hoarded)  # at once, beyond the hoarder's share
    assert refused > 0 and service.stats.errors["busy"] == refused


async def test_issuers_first_seen_before_the_service_runs_are_served_in_heads(tmp_path, autojump_clock):
    # In a node, gossip runs (and accepts records) before sync has started: none of them may be left out of heads.
    issuer = Org()
    with RecordStore.open(tmp_path) as store:
        replica = Replica(SigningKey.generate(), store, roots=(issuer.did,), max_hops=1, held_limit=10)
        host = FakeHost()
        service = SyncService(host, replica, timeout=TIMEOUT)
        assert replica.accept([issuer.record()]).accepted
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            stream = FakeStream()
            nursery.start_soon(host.handlers[SYNC_PROTOCOL], stream)
            await stream.incoming_send.send(heads_request())
            await trio.testing.wait_all_tasks_blocked()
            reply = decode_reply(stream.written[0])
            assert [head.iss for head in reply.heads] == [issuer.did]
            nursery.cancel_scope.cancel()
