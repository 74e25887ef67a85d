"""How the sync server treats an inbound stream over time (trio's mock clock, an in-memory stream): a kept stream
idle after answering is closed quietly, one that never asks anything is reset and counted as a timeout, a
stream keeps being answered for as long as its peer keeps asking, no peer holds more than its share of streams, and
heads name every issuer stored; request frames longer than any request are refused unread, and long ones are
decoded off the event loop; a peer is served until its serving budget or the node's is spent, then told when to
come back (gossip.serving_budget); a heads or checkpoint request naming another network is answered with ours, and
the stream ends."""

import threading

import pytest
import trio
from nacl.signing import SigningKey

import gossip.sync_service
from gossip.frames import FrameError
from gossip.replica import Replica
from gossip.serving_budget import ServingRates, most_page_cost
from gossip.store import RecordStore
from gossip.sync_messages import (
    MAX_COUNT,
    MAX_ISSUER,
    MAX_RANGES,
    MAX_REQUEST_FRAME,
    MAX_SEQ,
    SYNC_PROTOCOL,
    Busy,
    CheckpointRequest,
    CosignRequest,
    ErrorReply,
    HeadsPage,
    HeadsRequest,
    OtherNetwork,
    Range,
    RecordsPage,
    RecordsRequest,
    Refused,
    decode_reply,
    encode_message,
)
from gossip.sync import SyncLimits
from gossip.sync_service import DECODE_ON_LOOP_BYTES, SyncService
from vouching.cbor import encode

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
        self.wrote = trio.Event()  # the server wrote a frame

    async def read_frame(self, max_size: int) -> bytes | None:
        frame = await self.incoming.receive()
        if frame is not None and len(frame) > max_size:  # as Stream.read_frame, which stops at the length prefix
            raise FrameError(f"frame of {len(frame)} bytes exceeds the limit of {max_size}")
        return frame

    async def write_frame(self, payload: bytes) -> None:
        self.written.append(payload)
        self.wrote.set()

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

    def staying_peers(self) -> list[str]:
        return []


@pytest.fixture
async def serving(tmp_path):
    """A running SyncService on a fake host; yields a function that opens an inbound stream to it."""
    with RecordStore.open(tmp_path) as store:
        replica = Replica(SigningKey.generate(), store, roots=(), max_hops=1, held_limit=10)
        host = FakeHost()
        service = SyncService(host, replica, network="test", timeout=TIMEOUT)
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
    assert service.stats.errors["timeout"] == 0


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
    assert service.stats.streams_served == 1 and not +service.stats.errors


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
        service = SyncService(host, replica, network="test", timeout=TIMEOUT)
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


@pytest.fixture
def decoded_on(monkeypatch) -> list[int]:
    """The thread ids that the sync service's requests were decoded on, in order."""
    threads: list[int] = []
    decode = gossip.sync_service.decode_request

    def recording(payload: bytes, protocol: str):
        threads.append(threading.get_ident())
        return decode(payload, protocol)

    monkeypatch.setattr(gossip.sync_service, "decode_request", recording)
    return threads


async def test_a_request_frame_longer_than_any_request_is_refused_unread(serving, decoded_on, autojump_clock):
    service, open_stream = serving
    stream = open_stream()
    await stream.incoming_send.send(bytes(MAX_REQUEST_FRAME + 1))  # replies may be a MiB; no request is
    with trio.fail_after(TIMEOUT):
        await stream.done.wait()
    assert stream.ended == "reset" and stream.written == [] and decoded_on == []
    assert service.stats.errors["limit"] == 1


async def test_the_longest_request_the_protocol_allows_is_answered(serving, decoded_on):
    service, open_stream = serving
    widest = "\U0010ffff" * MAX_ISSUER
    longest = encode_message(RecordsRequest(tuple(Range(widest, MAX_SEQ, MAX_SEQ) for _ in range(MAX_RANGES)),
                                            MAX_COUNT, MAX_COUNT))
    assert len(longest) == MAX_REQUEST_FRAME
    stream = open_stream()
    await stream.incoming_send.send(longest)
    with trio.fail_after(TIMEOUT):
        await stream.wrote.wait()
    assert decode_reply(stream.written[0]) == RecordsPage((), more=False)  # no such issuer here
    assert decoded_on != [threading.get_ident()]  # long: decoded on a worker thread


async def test_a_dense_request_is_decoded_off_the_event_loop_and_refused(serving, decoded_on):
    # A MiB of nested arrays took a second of the loop to decode; this one is as long as a request can be.
    service, open_stream = serving
    dense = encode({"t": "get", "ranges": [[[[[[[[[[[[[[0]]]]]]]]]]]]]] * 19_000, "limit": 1, "bytes": 1})
    assert DECODE_ON_LOOP_BYTES < len(dense) <= MAX_REQUEST_FRAME
    stream = open_stream()
    await stream.incoming_send.send(dense)
    with trio.fail_after(TIMEOUT):
        await stream.wrote.wait()
    (reply,) = stream.written
    assert isinstance(decode_reply(reply), ErrorReply) and service.stats.errors["malformed"] == 1
    assert len(decoded_on) == 1 and decoded_on[0] != threading.get_ident()
    # A short request (the usual heads request) is decoded on the loop: a thread would cost more than it saves.
    stream = open_stream()
    await stream.incoming_send.send(heads_request())
    with trio.fail_after(TIMEOUT):
        await stream.wrote.wait()
    assert decoded_on[1] == threading.get_ident()


LIMITS = SyncLimits(page_records=2, page_bytes=64 * 1024, heads_page=2)
PAGE = most_page_cost(LIMITS)  # each page is read only if the budgets hold this much
RATE = 10.0  # units a second
ISSUER = Org()
CHAIN = [ISSUER.record() for _ in range(40)]  # small records: a page of two costs 3 units, with its read
EVERYTHING = encode_message(RecordsRequest((Range(ISSUER.did, 1, MAX_SEQ),), 2, 64 * 1024))  # 20 pages of two


@pytest.fixture
async def budgeted(tmp_path):
    """A running SyncService holding CHAIN whose peers may each be served PAGE + 30 units at once (ten pages of
    two records, 31 units with the first page's read ahead, then less than a page is left), and all of them
    3 * PAGE; yields the service and a function that sends one request from a peer and returns the replies."""
    with RecordStore.open(tmp_path) as store:
        replica = Replica(SigningKey.generate(), store, roots=(ISSUER.did,), max_hops=1, held_limit=10)
        assert len(replica.accept(CHAIN).accepted) == len(CHAIN)
        host = FakeHost()
        rates = ServingRates(peer_rate=RATE, peer_burst=PAGE + 30, node_rate=RATE, node_burst=3 * PAGE)
        service = SyncService(host, replica, network="test", limits=LIMITS, serving=rates)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)

            async def served(peer: str, request: bytes) -> list:
                stream = FakeStream(peer)
                nursery.start_soon(host.handlers[SYNC_PROTOCOL], stream)
                await stream.incoming_send.send(request)
                await stream.incoming_send.send(None)  # and closes its side
                await trio.testing.wait_all_tasks_blocked()
                return [decode_reply(frame) for frame in stream.written]

            yield service, served
            nursery.cancel_scope.cancel()


async def test_a_peer_past_its_serving_budget_is_told_when_to_come_back_and_served_then(budgeted, autojump_clock):
    service, served = budgeted
    *pages, busy = await served("12D3KooWGreedy", EVERYTHING)
    # Ten pages of two records, then the budget holds less than a page's worth: come back when it is full again (ten
    # pages' worth, if it held more), at RATE units a second.
    assert [len(page.records) for page in pages] == [2] * 10 and all(page.more for page in pages)
    assert busy == Busy(4, "serving budget spent")  # 31 units at 10 a second
    assert service.stats.records_served == 20 and service.stats.served_busy == 1
    assert not +service.stats.errors  # the peer broke no rule (each reason at 0)
    assert isinstance((await served("12D3KooWOther", EVERYTHING))[0], RecordsPage)  # a budget of its own
    await trio.sleep(busy.retry_after)
    again = await served("12D3KooWGreedy", EVERYTHING)
    assert [type(reply) for reply in again] == [RecordsPage] * 10 + [Busy]


async def test_fresh_peer_ids_share_the_nodes_budget(budgeted, autojump_clock):
    service, served = budgeted
    sybils = 0
    while not isinstance((await served(f"12D3KooWSybil{sybils}", EVERYTHING))[0], Busy):
        sybils += 1
    # Each took its budget's worth, 31 units, out of the node's, until less than a page was left of it (the last of
    # them, perhaps, only part of its worth).
    assert 2 * PAGE // 31 <= sybils <= 2 * PAGE // 31 + 1
    (busy,) = await served("12D3KooWHonest", heads_request())  # every request is answered from it
    assert isinstance(busy, Busy)
    await trio.sleep(busy.retry_after)
    assert not isinstance((await served("12D3KooWHonest", heads_request()))[0], Busy)


async def test_ranges_of_issuers_we_do_not_hold_cost_their_look_ups(budgeted, autojump_clock):
    # Each range is a store query: 256 of issuers we do not hold made an empty page, which cost 1 unit.
    service, served = budgeted
    nobody = encode_message(RecordsRequest(tuple(Range(f"z{i}", 1, MAX_SEQ) for i in range(MAX_RANGES)),
                                           2, 64 * 1024))
    assert await served("12D3KooWProber", nobody) == [RecordsPage((), more=False)]
    assert isinstance((await served("12D3KooWProber", nobody))[0], Busy)


async def test_a_request_of_what_this_node_does_not_serve_is_refused_as_ever_past_the_budget(budgeted, autojump_clock):
    # A witness's client knows no Busy: it would take one for the peer breaking the protocol.
    service, served = budgeted
    assert isinstance((await served("12D3KooWGreedy", EVERYTHING))[-1], Busy)
    assert await served("12D3KooWGreedy", encode_message(CosignRequest(b"add-checkpoint"))) == [
        Refused(404, "this node does not witness")]


class SlowReaderStream(FakeStream):
    """An inbound stream whose peer asks, then does not read the answer (until the server's write times out)."""

    async def write_frame(self, payload: bytes) -> None:
        await trio.sleep_forever()


async def test_peers_slow_to_read_their_answers_hold_no_slot_of_the_requests_being_answered(tmp_path, autojump_clock):
    """Found by the sync hunt: a page waiting for its peer to read it held one of the max_inbound slots, so peers
    reading a page just before each write timed out (a few, under fresh ids) held them all, and every other request
    (cosign requests too) was reset as busy."""
    with RecordStore.open(tmp_path) as store:
        replica = Replica(SigningKey.generate(), store, roots=(), max_hops=1, held_limit=10)
        host = FakeHost()
        service = SyncService(host, replica, network="test", timeout=TIMEOUT, max_inbound=2)
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            for slow in (SlowReaderStream(f"12D3KooWSlow{i}") for i in range(2)):
                nursery.start_soon(host.handlers[SYNC_PROTOCOL], slow)
                await slow.incoming_send.send(heads_request())
            await trio.testing.wait_all_tasks_blocked()
            honest = FakeStream("12D3KooWHonest")
            nursery.start_soon(host.handlers[SYNC_PROTOCOL], honest)
            await honest.incoming_send.send(heads_request())
            await trio.testing.wait_all_tasks_blocked()
            assert honest.ended is None and len(honest.written) == 1 and not +service.stats.errors
            nursery.cancel_scope.cancel()


async def test_a_request_naming_another_network_is_answered_with_ours_and_ends_the_stream(serving, autojump_clock,
                                                                                          caplog):
    service, open_stream = serving
    for request in (HeadsRequest("", 10, "othernet"), CheckpointRequest("othernet")):
        stream = open_stream("12D3KooWOther")
        await stream.incoming_send.send(encode_message(request))
        with trio.fail_after(TIMEOUT):
            await stream.wrote.wait()
        await stream.incoming_send.send(heads_request())  # not read: the stream is done
        await trio.testing.wait_all_tasks_blocked()
        assert [decode_reply(frame) for frame in stream.written] == [OtherNetwork("test")]
    assert (service.stats.errors["network"], service.stats.peers_other_network) == (2, 1)
    assert service.stats.served_errors["network"] == 2  # (a peer's request, not a failure of this node's sync)
    [warning] = [r.getMessage() for r in caplog.records if "is on network" in r.getMessage()]  # once for the peer
    assert warning.startswith("peer 12D3KooWOther is on network 'othernet', this node on 'test': ")
    # Stating ours, or no network (an older client, or another implementation's), is served as ever.
    for request in (HeadsRequest("", 10, "test"), HeadsRequest("", 10)):
        stream = open_stream()
        await stream.incoming_send.send(encode_message(request))
        with trio.fail_after(TIMEOUT):
            await stream.wrote.wait()
        assert isinstance(decode_reply(stream.written[0]), HeadsPage)
    assert service.stats.errors["network"] == 2


async def test_a_peer_s_refused_request_is_counted_apart_from_this_node_s_own_failures(serving):
    """Before: sync_errors_total alone counted it, as it counts this node's failed sessions: an alert on this node's
    sync failing fired on a peer's malformed requests."""
    service, open_stream = serving
    stream = open_stream()
    await stream.incoming_send.send(b"\xff not CBOR")
    with trio.fail_after(TIMEOUT):
        await stream.wrote.wait()
    assert isinstance(decode_reply(stream.written[0]), ErrorReply)
    assert service.stats.errors["malformed"] == service.stats.served_errors["malformed"] == 1
    assert service.stats.rounds_failed == 0


async def test_a_peer_naming_another_network_at_each_request_is_counted_and_logged_once(serving, autojump_clock,
                                                                                        caplog):
    """Before: once per peer and network, so a hostile peer naming two in turn had every request logged, spending the
    call site's log limit (20 lines in 10 s) that another peer's one warning needs, and counted as a new peer."""
    service, open_stream = serving
    for i in range(30):
        stream = open_stream("12D3KooWHostile")
        await stream.incoming_send.send(encode_message(HeadsRequest("", 10, ("one", "two")[i % 2])))
        with trio.fail_after(TIMEOUT):
            await stream.wrote.wait()
    stream = open_stream("12D3KooWMistyped")
    await stream.incoming_send.send(encode_message(HeadsRequest("", 10, "othernet")))
    with trio.fail_after(TIMEOUT):
        await stream.wrote.wait()
    assert (service.stats.errors["network"], service.stats.peers_other_network) == (31, 2)
    said = [r.getMessage()[:29] for r in caplog.records if "is on network" in r.getMessage()]
    assert said == ["peer 12D3KooWHostile is on ne", "peer 12D3KooWMistyped is on n"]
