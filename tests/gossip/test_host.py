import contextlib
import logging
import os
import socket
import struct
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import nacl.signing
import pytest
import trio
import trio.testing
from libp2p.abc import INetConn
from libp2p.network.auto_connector import AutoConnector
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.stream_muxer.yamux.yamux import FLAG_SYN, TYPE_WINDOW_UPDATE, YAMUX_HEADER_FORMAT

import gossip.host
from gossip.frames import FrameError, encode_uvarint
from gossip.peer_feed import PeerFeed
from gossip.verdict import Verdict
from gossip.host import (
    SENDER_RECORD_TTL_S,
    Host,
    HostConfig,
    HostError,
    InvalidPeerId,
    PeerEvent,
    ProtocolNotSupported,
    Stream,
    StreamError,
    open_host,
    peer_id_from_public_key,
    _PeerNotifee,
    _SenderRecords,
    peer_public_key,
)

from .logged import logged

TOPIC = "/vouchnet/test/records"
LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
STALL_S = 20  # seconds a subscriber of a burst may go without a message


def accept_all(peer: str, data: bytes) -> bool:
    return True


@asynccontextmanager
async def network(
    n: int, validators: dict[int, object] | None = None, links: list[tuple[int, int]] | None = None
) -> AsyncIterator[tuple[list[Host], list[trio.MemoryReceiveChannel]]]:
    """n hosts on loopback, all subscribed to TOPIC, linked (default: every pair) and meshed."""
    validators = validators or {}
    links = links if links is not None else [(i, j) for i in range(n) for j in range(i + 1, n)]
    async with AsyncExitStack() as stack:
        hosts = [await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK)) for _ in range(n)]
        inboxes = [await h.subscribe(TOPIC, validators.get(i, accept_all)) for i, h in enumerate(hosts)]
        for i, j in links:
            assert await hosts[i].connect(hosts[j].listen_addrs[0]) == hosts[j].peer_id
        for i, j in links:
            await hosts[i].wait_for_mesh(TOPIC, hosts[j].peer_id)
            await hosts[j].wait_for_mesh(TOPIC, hosts[i].peer_id)
        yield hosts, inboxes


class Tally:
    """A validator's count of the messages it judged, and an event set when the count reaches `until`."""

    def __init__(self, until: int) -> None:
        self.count, self.until, self.reached = 0, until, trio.Event()

    def judged(self) -> int:
        self.count += 1
        if self.count == self.until:
            self.reached.set()
        return self.count


async def receive(inbox: trio.MemoryReceiveChannel, count: int) -> list:
    return [await inbox.receive() for _ in range(count)]


def test_peer_id_embeds_the_ed25519_public_key() -> None:
    public = bytes(nacl.signing.SigningKey(b"\x07" * 32).verify_key)
    peer = peer_id_from_public_key(public)
    assert peer.startswith("12D3KooW")
    assert peer_public_key(peer) == public


@pytest.mark.parametrize(
    ("peer", "rule"),
    [
        ("", "not a canonical"),
        ("not-base58!", "not base58"),
        ("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "does not embed its public key"),
        ("16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY", "key type Secp256k1, expected Ed25519"),
    ],
)
def test_peer_ids_without_an_ed25519_key_are_refused(peer: str, rule: str) -> None:
    with pytest.raises(InvalidPeerId, match=rule):
        peer_public_key(peer)


@pytest.mark.slow
async def test_the_host_peer_id_is_the_seed_key() -> None:
    seed = os.urandom(32)
    with trio.fail_after(10):
        async with open_host(seed, LOOPBACK) as host:
            assert peer_public_key(host.peer_id) == bytes(nacl.signing.SigningKey(seed).verify_key)
            assert host.listen_addrs[0].startswith("/ip4/127.0.0.1/tcp/")
            assert host.listen_addrs[0].endswith(f"/p2p/{host.peer_id}")


@pytest.mark.slow
async def test_hosts_connect_and_gossip_reaches_every_host() -> None:
    with trio.fail_after(20):
        async with network(4) as (hosts, inboxes):
            assert hosts[0].connected_peers() == sorted(h.peer_id for h in hosts[1:])
            await hosts[2].publish(TOPIC, b"vouch")
            for inbox in inboxes:
                origin, data = await inbox.receive()
                assert (origin, data) == (hosts[2].peer_id, b"vouch")


@pytest.mark.slow
async def test_a_burst_of_1000_publishes_arrives_complete_everywhere() -> None:
    burst = [b"record %d" % i for i in range(1000)]
    # A lost message fails the test STALL_S after the last one came, a hang at 300 s; how long the burst takes is the
    # machine's (47 s at a load of 7 on two cores, past the 45 s this test allowed), not this test's.
    with trio.fail_after(300):
        async with network(3) as (hosts, inboxes):
            received: dict[int, list[bytes]] = {}

            async def drain(i: int) -> None:
                received[i] = []
                while len(received[i]) < len(burst):
                    with trio.fail_after(STALL_S):
                        received[i].append((await inboxes[i].receive())[1])

            async with trio.open_nursery() as nursery:
                for i in range(1, len(hosts)):
                    nursery.start_soon(drain, i)
                for data in burst:
                    await hosts[0].publish(TOPIC, data)
            assert all(set(got) == set(burst) for got in received.values())  # (as many: none twice)
            assert sum(h.stats().dropped_slow_subscriber for h in hosts) == 0


@pytest.mark.slow
async def test_a_validator_that_raises_rejects_the_message_and_the_host_lives() -> None:
    def buggy(peer: str, data: bytes) -> bool:
        if data == b"unexpected":
            raise KeyError("validator bug")
        return True

    with trio.fail_after(20):
        async with network(2, validators={1: buggy}) as (hosts, inboxes):
            await hosts[0].publish(TOPIC, b"unexpected")
            await hosts[0].publish(TOPIC, b"fine")
            assert await inboxes[1].receive() == (hosts[0].peer_id, b"fine")
            assert hosts[1].stats().validator_errors == 1
            await hosts[1].publish(TOPIC, b"still gossiping")
            assert await inboxes[0].receive() == (hosts[0].peer_id, b"unexpected")  # its own publishes
            assert await inboxes[0].receive() == (hosts[0].peer_id, b"fine")
            assert await inboxes[0].receive() == (hosts[1].peer_id, b"still gossiping")


@pytest.mark.slow
async def test_a_rejected_message_is_not_relayed() -> None:
    def no_bad(peer: str, data: bytes) -> bool:
        return not data.startswith(b"bad")

    with trio.fail_after(20):
        # a line: 0 - 1 - 2, so everything host 2 gets passed host 1's validator
        async with network(3, validators={1: no_bad}, links=[(0, 1), (1, 2)]) as (hosts, inboxes):
            await hosts[0].publish(TOPIC, b"bad vouch")
            await hosts[0].publish(TOPIC, b"good vouch")
            assert await inboxes[2].receive() == (hosts[0].peer_id, b"good vouch")
            with pytest.raises(trio.WouldBlock):
                inboxes[2].receive_nowait()
            assert hosts[1].stats().rejected == 1


@pytest.mark.slow
async def test_a_message_id_seen_valid_before_does_not_let_other_data_skip_validation() -> None:
    # py-libp2p caches verdicts by message id (from || seqno) for 300 s and forgets seen ids after 120 s: an origin
    # that sends other data under an id that passed once would have it delivered and relayed unvalidated.
    seen: list[bytes] = []
    forged_seen = trio.Event()

    def only_valid(peer: str, data: bytes) -> bool:
        seen.append(data)
        if data == b"forged":
            forged_seen.set()
        return data == b"valid"

    with trio.fail_after(20):
        async with network(2, validators={1: only_valid}) as (hosts, inboxes):
            await hosts[0].publish(TOPIC, b"valid")
            assert await inboxes[1].receive() == (hosts[0].peer_id, b"valid")
            receiver, origin = hosts[1]._pubsub, hosts[0]._pubsub
            (msg_id,) = receiver.seen_messages.cache
            receiver.seen_messages.cache.clear()  # as 120 s later
            forged = rpc_pb2.Message(data=b"forged", topicIDs=[TOPIC], from_id=msg_id[len(msg_id) - 8 - 38:][:38],
                                     seqno=msg_id[-8:])
            forged.signature = origin.sign_key.sign(b"libp2p-pubsub:" + forged.SerializeToString())
            forged.key = origin.host.get_public_key().serialize()
            rpc = rpc_pb2.RPC(publish=[forged]).SerializeToString()
            stream = await hosts[0].open_stream(hosts[1].peer_id, "/meshsub/1.1.0")
            await stream.write(encode_uvarint(len(rpc)) + rpc)
            with trio.move_on_after(2):  # (with the bug, the validator never sees it)
                await forged_seen.wait()
            assert seen == [b"valid", b"forged"]  # validated, and rejected
            with pytest.raises(trio.WouldBlock):
                inboxes[1].receive_nowait()


@pytest.mark.slow
async def test_an_ignored_message_costs_its_forwarder_nothing_and_is_judged_again_from_another_peer() -> None:
    # Quirk 28: host 2 ignores the first copy it sees of each message, from whichever of 0 (origin) or 1 (relayer)
    # it comes; the second copy is judged afresh (the first was not marked seen) and accepted.
    judged: dict[bytes, list[str]] = {}
    both_judged = trio.Event()

    def first_copy_ignored(peer: str, data: bytes) -> Verdict:
        judged.setdefault(data, []).append(peer)
        if len(judged[data]) == 2:
            both_judged.set()
        return Verdict.IGNORE if len(judged[data]) == 1 else Verdict.ACCEPT

    with trio.fail_after(20):
        async with network(3, validators={2: first_copy_ignored}) as (hosts, inboxes):
            await hosts[0].publish(TOPIC, b"vouch")
            assert await inboxes[2].receive() == (hosts[0].peer_id, b"vouch")
            await both_judged.wait()
            assert sorted(judged[b"vouch"]) == sorted([hosts[0].peer_id, hosts[1].peer_id])
            assert (hosts[2].stats().ignored, hosts[2].stats().rejected) == (1, 0)
            assert hosts[2].peer_score(hosts[0].peer_id) == hosts[2].peer_score(hosts[1].peer_id) == 0


@pytest.mark.slow
async def test_ignored_messages_are_not_relayed_and_never_penalise_the_relayer() -> None:
    # A line 0 - 1 - 2; host 2 ignores all but the first two messages that host 1 relays. Were they rejected, host 1's
    # score would fall below the publish threshold after six (the reproduction of quirk 28).
    tally = Tally(20)

    def two_only(peer: str, data: bytes) -> Verdict:
        if data == b"after":
            return Verdict.ACCEPT
        return Verdict.ACCEPT if tally.judged() <= 2 else Verdict.IGNORE

    with trio.fail_after(20):
        async with network(4, validators={2: two_only}, links=[(0, 1), (1, 2), (2, 3)]) as (hosts, inboxes):
            for i in range(20):
                await hosts[0].publish(TOPIC, b"m%d" % i)
            await tally.reached.wait()
            assert (hosts[2].stats().ignored, hosts[2].stats().rejected) == (18, 0)
            assert hosts[2].peer_score(hosts[1].peer_id) == 0
            assert await receive(inboxes[3], 2) == [(hosts[0].peer_id, b"m0"), (hosts[0].peer_id, b"m1")]
            await hosts[1].publish(TOPIC, b"after")  # host 1's own messages still pass host 2
            assert await inboxes[3].receive() == (hosts[1].peer_id, b"after")


@pytest.mark.parametrize(("answer", "verdict"), [
    (True, Verdict.ACCEPT), (Verdict.ACCEPT, Verdict.ACCEPT), (Verdict.IGNORE, Verdict.IGNORE),
    (False, Verdict.REJECT), (Verdict.REJECT, Verdict.REJECT), (None, Verdict.REJECT), (1, Verdict.REJECT),
    ("accept", Verdict.REJECT),
])
async def test_a_validator_s_answer_is_a_verdict_and_only_true_or_accept_accepts(answer: object,
                                                                                 verdict: Verdict) -> None:
    async with open_host(os.urandom(32), LOOPBACK) as host:
        assert host._call_validator(TOPIC, lambda peer, data: answer, "12D3KooWPeer", b"m") is verdict


async def test_publish_refuses_a_message_its_own_validator_ignores() -> None:
    async with open_host(os.urandom(32), LOOPBACK) as host:
        await host.subscribe(TOPIC, lambda peer, data: Verdict.IGNORE)
        with pytest.raises(HostError, match="own validator ignored the message"):
            await host.publish(TOPIC, b"m")


@pytest.mark.slow
async def test_a_peer_that_sends_invalid_messages_loses_score_until_it_is_ignored() -> None:
    rejections = Tally(6)

    def no_bad(peer: str, data: bytes) -> bool:
        if data != b"bad":
            return True
        rejections.judged()
        return False

    with trio.fail_after(20):
        async with network(3, validators={1: no_bad}, links=[(0, 1), (2, 1)]) as (hosts, _):
            for _ in range(6):
                await hosts[0].publish(TOPIC, b"bad")
            await rejections.reached.wait()
            threshold = HostConfig().scoring.publish_threshold
            assert hosts[1].peer_score(hosts[0].peer_id) < threshold  # its messages are dropped from now on
            assert hosts[1].peer_score(hosts[2].peer_id) == 0


@pytest.mark.slow
async def test_meshes_settle_within_their_bounds_and_honest_hosts_never_penalise_each_other() -> None:
    # Ten hosts, every pair connected, meshes of 2-4 around 3: the first heartbeats graft and prune, both ends of each
    # PRUNE back off (quirk 20), and then the meshes hold still, no host grafting more every heartbeat (quirk 22).
    config = HostConfig(mesh_degree=3, mesh_degree_low=2, mesh_degree_high=4, heartbeat_interval=0.1)
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            hosts = [await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK, config=config))
                     for _ in range(10)]
            for i, host in enumerate(hosts):
                await host.subscribe(TOPIC, accept_all)
                for other in hosts[:i]:
                    await host.connect(other.listen_addrs[0])
            quiet, prunes = 0, -1
            while quiet < 30:  # heartbeats in a row without a prune anywhere, polled at the heartbeat's pace
                await trio.sleep(config.heartbeat_interval)
                now = sum(h.stats().mesh_prunes for h in hosts)
                quiet, prunes = (quiet + 1 if now == prunes else 0), now
            assert prunes > 0  # the meshes were reshaped on the way
            # Within D_hi, and none empty. A host may sit below D_lo: when ten join at once, about one run in
            # fifteen leaves a host pruned by nearly every peer, and the spec has it wait out those backoffs.
            assert all(1 <= len(h.mesh_peers(TOPIC)) <= 4 for h in hosts), [len(h.mesh_peers(TOPIC)) for h in hosts]
            scores = {(a.peer_id, b.peer_id): a.peer_score(b.peer_id) for a in hosts for b in hosts if a is not b}
            assert min(scores.values()) >= 0, [pair for pair, score in scores.items() if score < 0]


async def test_a_backoff_lasts_longer_for_grafting_a_peer_than_for_refusing_its_graft() -> None:
    import time
    from types import SimpleNamespace

    from libp2p.peer.id import ID  # the router's own peer type

    from gossip.host import BACKOFF_SLACK_S, _GossipSub, _RetainedScores  # the router: quirk 20 is in its backoff rules

    router = _GossipSub(protocols=["/meshsub/1.1.0"], degree=6, degree_low=4, degree_high=12,
                        retained=_RetainedScores(period=0, cap=0))
    prunes = []

    async def send(control, to_peer) -> None:
        prunes.extend((to_peer, prune.topicID, prune.backoff) for prune in control.prune)

    router.emit_control_message = send
    peer = ID.from_base58(peer_id_from_public_key(nacl.signing.SigningKey.generate().verify_key.encode()))
    router.pubsub = SimpleNamespace(peer_topics={TOPIC: {peer}})  # the one peer subscribed to TOPIC
    router.peer_protocol[peer] = "/meshsub/1.1.0"
    router.mesh[TOPIC] = set()

    await router.emit_prune(TOPIC, peer, False, False)  # e.g. refusing its GRAFT
    assert prunes == [(peer, TOPIC, router.prune_back_off)]
    assert router.mesh_heartbeat()[0] == {}  # we back off from it too

    router.back_off[TOPIC][peer] = int(time.time()) - 1  # the backoff ended a moment ago by our clock ...
    assert router.mesh_heartbeat()[0] == {}  # ... but the peer's, counted from a later moment, may not have
    assert not router._check_back_off(peer, TOPIC)  # while a GRAFT from the peer is accepted at once

    router.back_off[TOPIC][peer] = int(time.time()) - BACKOFF_SLACK_S - 1
    assert router.mesh_heartbeat()[0] == {peer: [TOPIC]}


@pytest.mark.slow
async def test_publish_refuses_what_it_could_not_deliver() -> None:
    with trio.fail_after(10):
        async with open_host(os.urandom(32), LOOPBACK) as host:
            await host.subscribe(TOPIC, lambda peer, data: data != b"invalid")
            with pytest.raises(HostError, match="own validator rejected"):
                await host.publish(TOPIC, b"invalid")
            with pytest.raises(HostError, match="exceeds max_message_size"):
                await host.publish(TOPIC, bytes(256 * 1024 + 1))
            with pytest.raises(HostError, match="already subscribed"):
                await host.subscribe(TOPIC, accept_all)


ECHO = "/vouchnet/test/echo/1"


ONCE = "/vouchnet/test/once/1"


async def echo_frames(stream) -> None:
    while (frame := await stream.read_frame(max_size=1024)) is not None:
        await stream.write_frame(frame)


async def answer_once(stream) -> None:
    await stream.write_frame(b"the answer")


@pytest.mark.slow
async def test_a_stream_protocol_echoes_length_prefixed_frames() -> None:
    with trio.fail_after(20):
        async with network(2, links=[(0, 1)]) as (hosts, _):
            hosts[1].set_stream_handler(ECHO, echo_frames)
            async with await hosts[0].open_stream(hosts[1].peer_id, ECHO) as stream:
                assert stream.remote_peer == hosts[1].peer_id
                for payload in (b"", b"heads", bytes(range(256)) * 4):
                    await stream.write_frame(payload)
                    assert await stream.read_frame(max_size=1024) == payload
                await stream.write_frame(b"x" * 100)
                with pytest.raises(FrameError, match="frame length 100 exceeds the limit of 10"):
                    await stream.read_frame(max_size=10)

            async with await hosts[0].open_stream(hosts[1].peer_id, ECHO) as stream:
                await stream.write(encode_uvarint(1025))  # the handler refuses it and resets the stream
                with pytest.raises(StreamError):
                    await stream.read_frame(max_size=1024)

            async with await hosts[0].open_stream(hosts[1].peer_id, ECHO) as stream:
                await stream.write_frame(b"the handler still serves new streams")
                assert await stream.read_frame(max_size=1024) == b"the handler still serves new streams"

            hosts[1].set_stream_handler(ONCE, answer_once)  # returns at once: the stream is closed, not reset
            async with await hosts[0].open_stream(hosts[1].peer_id, ONCE) as stream:
                assert await stream.read_frame(max_size=1024) == b"the answer"
                assert await stream.read_frame(max_size=1024) is None

            with pytest.raises(ProtocolNotSupported, match="does not serve it"):
                await hosts[0].open_stream(hosts[1].peer_id, "/vouchnet/test/absent/1")


class _EndingNetStream:
    """Stands for a py-libp2p stream that delivers `data`, then ends (its peer closed it, or the connection went)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.muxed_stream = self  # read by Stream for reset_received
        self.reset_received = False

    async def read(self, max_bytes: int) -> bytes:
        chunk, self._data = self._data[:max_bytes], self._data[max_bytes:]
        return chunk


@pytest.mark.parametrize(("data", "message"), [
    (encode_uvarint(300)[:1], "ended inside a frame length prefix"),
    (encode_uvarint(10) + b"half", "ended after 4 of 10 frame bytes"),
])
async def test_a_stream_that_ends_inside_a_frame_broke_and_sent_no_malformed_frame(data, message) -> None:
    # A peer that stops or drops mid-frame looks like one that cuts a frame short: a sync client took the cut for
    # a protocol offence, and disconnected (and reported) a peer for its crash.
    stream = Stream(_EndingNetStream(data), "12D3KooWPeer", ECHO)
    with pytest.raises(StreamError, match=f"{ECHO} stream from 12D3KooWPeer: {message}"):
        await stream.read_frame(max_size=1024)


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root_records() -> Iterator[list[logging.LogRecord]]:
    """The records of WARNING or worse that reach the root logger's handlers (the application's logging), once each:
    caplog can hold one twice, as pytest also puts its handler on every logger that does not propagate as a test
    starts, which `libp2p` does until a host starts (quirk 7)."""
    kept = _Kept()
    logging.getLogger().addHandler(kept)
    yield kept.records
    logging.getLogger().removeHandler(kept)


def libp2p_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("libp2p") and r.levelno >= logging.ERROR]


@pytest.mark.slow
async def test_a_protocol_the_peer_does_not_serve_is_refused_quietly_and_remembered_while_connected(
        caplog: pytest.LogCaptureFixture) -> None:
    absent = "/vouchnet/test/absent/1"
    with trio.fail_after(20), caplog.at_level(logging.WARNING):
        async with network(2, links=[(0, 1)]) as ((a, b), _):
            with pytest.raises(ProtocolNotSupported, match=f"open {absent} stream to {b.peer_id}: .*serve it$"):
                await a.open_stream(b.peer_id, absent)
            assert a.refused(b.peer_id, absent) and not a.refused(b.peer_id, "/vouchnet/test/other/1")
            b.set_stream_handler(absent, answer_once)
            with pytest.raises(ProtocolNotSupported, match="said so earlier on this connection"):
                await a.open_stream(b.peer_id, absent)  # not asked again while connected

            events = a.peer_events()
            await a.disconnect(b.peer_id)
            while (await events.receive()) != PeerEvent(b.peer_id, connected=False):
                pass
            await a.connect(b.listen_addrs[0])
            assert not a.refused(b.peer_id, absent)  # it may serve more now
            async with await a.open_stream(b.peer_id, absent) as stream:
                assert await stream.read_frame(max_size=1024) == b"the answer"
    assert libp2p_errors(caplog) == []  # quirk 23: py-libp2p's seven-line ERROR per refusal is DEBUG


@pytest.mark.slow
async def test_a_stream_that_comes_before_its_served_protocol_has_a_handler_waits_for_it_and_is_not_refused() -> None:
    """A node listens before its services set their handlers (node.daemon): a peer redialling a node that restarts
    opens its sync stream in that window. It was answered "na", and the peer's host, remembering the refusal for the
    connection, passed the node over (no sync with it) until the connection closed; now the stream waits for the
    handler. A protocol the host was not told it serves is refused, and remembered, as before."""
    late, other = "/vouchnet/test/late/1", "/vouchnet/test/other/1"
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(served_protocols=(late,))) as b, \
                open_host(os.urandom(32), LOOPBACK) as a:
            await a.connect(b.listen_addrs[0])
            async with await a.open_stream(b.peer_id, late) as stream:  # (negotiated: b took it, with no handler)
                await stream.write_frame(b"asked before b serves it")
                b.set_stream_handler(late, echo_frames)
                assert await stream.read_frame(max_size=1024) == b"asked before b serves it"
            assert not a.refused(b.peer_id, late)
            async with await a.open_stream(b.peer_id, late) as stream:
                await stream.write_frame(b"and after")
                assert await stream.read_frame(max_size=1024) == b"and after"
            with pytest.raises(HostError, match="not be served already"):
                b.set_stream_handler(late, answer_once)
            with pytest.raises(ProtocolNotSupported, match="does not serve it"):
                await a.open_stream(b.peer_id, other)
            assert a.refused(b.peer_id, other)


@pytest.mark.slow
async def test_a_stream_of_a_served_protocol_that_no_handler_takes_in_time_is_reset_not_refused() -> None:
    """A node whose service never came within HostConfig.early_stream_wait: the peer's stream is reset (a failed
    exchange it tries again later), not refused for the connection; the host's other streams are served meanwhile."""
    late = "/vouchnet/test/late/1"
    with trio.fail_after(20):
        config = HostConfig(served_protocols=(late,), early_stream_wait=0.2)
        async with open_host(os.urandom(32), LOOPBACK, config=config) as b, open_host(os.urandom(32), LOOPBACK) as a:
            b.set_stream_handler(ONCE, answer_once)
            await a.connect(b.listen_addrs[0])
            async with await a.open_stream(b.peer_id, late) as stream:
                async with await a.open_stream(b.peer_id, ONCE) as served:
                    assert await served.read_frame(max_size=1024) == b"the answer"
                with pytest.raises(StreamError, match="reset by the peer"):
                    await stream.read_frame(max_size=1024)
            assert not a.refused(b.peer_id, late)
            b.set_stream_handler(late, answer_once)
            async with await a.open_stream(b.peer_id, late) as stream:
                assert await stream.read_frame(max_size=1024) == b"the answer"


@pytest.mark.slow
@pytest.mark.parametrize("gone", ["disconnected", "blocked"])
async def test_a_stream_waiting_for_its_handler_is_reset_once_its_peer_leaves_or_is_blocked(gone: str) -> None:
    """Found by stop 38: a stream that waited for its handler was handed to it once set, though its peer had left, or
    been blocked (whose streams set_blocked says are reset), as it waited; the service then served a stream no one
    was on. It is reset instead, at once (its task waited on up to early_stream_wait), and the handler serves only
    the streams that come once the peer is back."""
    late = "/vouchnet/test/late/1"
    handed: list[Stream] = []

    async def serve(stream: Stream) -> None:
        handed.append(stream)
        await echo_frames(stream)

    with trio.fail_after(20), logged(
            "gossip.host", logging.DEBUG, "reset, its peer reset it, left or was blocked as it waited") as reset:
        config = HostConfig(served_protocols=(late,), early_stream_wait=60)
        async with open_host(os.urandom(32), LOOPBACK, config=config) as b, open_host(os.urandom(32), LOOPBACK) as a:
            events = b.peer_events()
            await a.connect(b.listen_addrs[0])
            async with await a.open_stream(b.peer_id, late) as early:
                await early.write_frame(b"asked before b serves it")
                if gone == "blocked":
                    await b.set_blocked([a.peer_id])
                else:
                    await a.disconnect(b.peer_id)
                while (await events.receive()) != PeerEvent(a.peer_id, connected=False):
                    pass
            await reset.arrived.wait()  # with no handler set yet, well within early_stream_wait
            b.set_stream_handler(late, serve)
            await b.set_blocked([])
            await a.connect(b.listen_addrs[0])
            async with await a.open_stream(b.peer_id, late) as stream:
                await stream.write_frame(b"once back")
                assert await stream.read_frame(max_size=1024) == b"once back"
    assert len(handed) == 1


@pytest.mark.slow
async def test_a_stream_its_peer_reset_as_it_waited_for_its_handler_is_not_served() -> None:
    """Found by stop 39: a stream that its peer reset as it waited for its handler (the peer's read timed out, say),
    its connection staying up, was handed to the handler once set: the service served a stream no one was on, its
    write failing (logged as the handler's error)."""
    late = "/vouchnet/test/late/1"
    handed: list[Stream] = []

    async def serve(stream: Stream) -> None:
        handed.append(stream)
        await stream.read_frame(max_size=1024)
        await stream.write_frame(b"served")

    with trio.fail_after(20):
        config = HostConfig(served_protocols=(late,))
        async with open_host(os.urandom(32), LOOPBACK, config=config) as b, open_host(os.urandom(32), LOOPBACK) as a:
            b.set_stream_handler(ONCE, answer_once)
            await a.connect(b.listen_addrs[0])
            early = await a.open_stream(b.peer_id, late)
            await early.write_frame(b"given up on")
            await early.reset()
            async with await a.open_stream(b.peer_id, ONCE) as stream:  # b read the reset first: frames are in order
                assert await stream.read_frame(max_size=1024) == b"the answer"
            b.set_stream_handler(late, serve)
            async with await a.open_stream(b.peer_id, late) as stream:
                await stream.write_frame(b"asked once served")
                assert await stream.read_frame(max_size=1024) == b"served"
            assert a.connected_peers() == [b.peer_id]
    assert len(handed) == 1


@pytest.mark.parametrize("protocol", ["vouchnet/sync/1", "/meshsub/1.1.0"])
def test_served_protocols_are_stream_protocols(protocol: str) -> None:
    with pytest.raises(ValueError, match="served_protocols"):
        HostConfig(served_protocols=(protocol,))


@pytest.mark.slow
async def test_a_plaintext_peer_is_refused() -> None:
    from libp2p import new_host  # only to build the kind of peer vouchnet must refuse
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.network.exceptions import SwarmException
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
    from multiaddr import Multiaddr

    key_pair = create_new_key_pair(os.urandom(32))
    plaintext = new_host(key_pair=key_pair, sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)})
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as host, plaintext.run([Multiaddr(LOOPBACK[0])]):
            with pytest.raises(SwarmException):
                await plaintext.connect(info_from_p2p_addr(Multiaddr(host.listen_addrs[0])))
            assert host.connected_peers() == []
            await plaintext.close()


@pytest.mark.slow
async def test_closing_the_host_leaves_no_listener_and_no_task() -> None:
    with trio.fail_after(20):
        tasks_before = trio.lowlevel.current_statistics().tasks_living
        async with network(2) as (hosts, _):
            port = int(hosts[0].listen_addrs[0].split("/")[4])
            assert trio.lowlevel.current_statistics().tasks_living > tasks_before
        assert trio.lowlevel.current_statistics().tasks_living == tasks_before
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        for listener in listeners:
            await listener.aclose()


@pytest.mark.slow
async def test_a_peer_that_was_down_can_be_redialled_at_once() -> None:
    seed = os.urandom(32)
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as dialer:
            events = dialer.peer_events()
            async with open_host(seed, LOOPBACK) as peer:
                addr = peer.listen_addrs[0]
                await dialer.connect(addr)
            assert [await events.receive() for _ in range(2)][1] == PeerEvent(peer.peer_id, connected=False)
            with pytest.raises(HostError, match=f"dial {addr}: .*(refused|connect)"):
                await dialer.connect(addr)
            port = addr.split("/")[4]
            async with open_host(seed, [f"/ip4/127.0.0.1/tcp/{port}"]) as back:
                assert await dialer.connect(addr) == back.peer_id


@asynccontextmanager
async def subscribed(seed: bytes, peer: Host | None = None) -> AsyncIterator[tuple[Host, trio.MemoryReceiveChannel]]:
    """A host of `seed` subscribed to TOPIC, and its inbox; connected to `peer`, if given, and with it in its mesh."""
    async with open_host(seed, LOOPBACK) as host:
        inbox = await host.subscribe(TOPIC, accept_all)
        if peer is not None:
            await host.connect(peer.listen_addrs[0])
            await host.wait_for_mesh(TOPIC, peer.peer_id)
        yield host, inbox


@pytest.mark.slow
async def test_a_host_restarted_at_once_meshes_with_its_peer_again_and_they_hear_each_other() -> None:
    # Quirk 53: the peer's pubsub could keep its stream on the closed connection and skip the new one (about one restart
    # in two here, hence four), so the restarted host never heard the peer's subscription: no mesh on its side, and
    # its messages reached the peer by no route.
    seed = os.urandom(32)
    with trio.fail_after(40):
        async with subscribed(os.urandom(32)) as (peer, inbox):
            for run in range(5):  # a start and four restarts, with no moment between
                async with subscribed(seed, peer) as (host, mine):
                    await peer.wait_for_mesh(TOPIC, host.peer_id)
                    await host.publish(TOPIC, b"run %d" % run)
                    assert await inbox.receive() == (host.peer_id, b"run %d" % run)
                    await peer.publish(TOPIC, b"welcome %d" % run)
                    assert await inbox.receive() == (peer.peer_id, b"welcome %d" % run)  # its own
                    while await mine.receive() != (peer.peer_id, b"welcome %d" % run):
                        pass  # its own, and the peer's recent messages, which it sends a newcomer


@pytest.mark.slow
async def test_the_messages_of_a_restarted_host_are_not_taken_for_its_earlier_ones() -> None:
    # Quirk 54: py-libp2p numbered a host's messages on from the second it started, and a peer drops a message whose
    # origin and seqno it saw within 120 s: a host restarted within n seconds of a start, after n messages, was not
    # heard.
    seed = os.urandom(32)
    with trio.fail_after(20):
        async with subscribed(os.urandom(32)) as (peer, inbox):
            for run, count in ((0, 20), (1, 3)):
                async with subscribed(seed, peer) as (host, _):
                    sent = [b"%d.%d" % (run, i) for i in range(count)]
                    for data in sent:
                        await host.publish(TOPIC, data)
                    assert sorted(await receive(inbox, count)) == sorted((host.peer_id, data) for data in sent)


@pytest.mark.slow
async def test_connect_explains_a_wrong_peer_id_and_a_bad_address(caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(20), caplog.at_level(logging.WARNING):
        async with open_host(os.urandom(32), LOOPBACK) as a, open_host(os.urandom(32), LOOPBACK) as b:
            impostor = peer_id_from_public_key(os.urandom(32))
            wrong = b.listen_addrs[0].replace(b.peer_id, impostor)
            rotated = f"dial {wrong}: the host there is {b.peer_id}, not {impostor} \\(a node that rotated its key"
            with pytest.raises(HostError, match=rotated):
                await a.connect(wrong)
            closed_port = f"/ip4/127.0.0.1/tcp/1/p2p/{impostor}"  # the new address is dialled, not the old one
            with pytest.raises(HostError, match=f"^dial {closed_port}: connection refused \\(nothing listens there"):
                await a.connect(closed_port)
            with pytest.raises(HostError, match="a peer address must end in /p2p/<peer id>"):
                await a.connect("/ip4/127.0.0.1/tcp/1")
            assert a.connected_peers() == []
    assert libp2p_errors(caplog) == []  # the refused dial is ours to report (quirk 23)


@pytest.mark.slow
async def test_peer_events_report_first_connection_and_last_disconnection() -> None:
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as a:
            events = a.peer_events()
            async with open_host(os.urandom(32), LOOPBACK) as b:
                await b.connect(a.listen_addrs[0])
                assert await events.receive() == PeerEvent(b.peer_id, connected=True)
            assert await events.receive() == PeerEvent(b.peer_id, connected=False)


@pytest.mark.slow
@pytest.mark.parametrize("closes", ["disconnect", "block"])
async def test_a_peer_s_leaving_tells_whether_this_host_closed_its_connection(closes: str) -> None:
    """A peer's node reads a connection it closed itself (a disconnect, a block) apart from one the peer closed, which
    it may take for the peer's block of it (gossip.peers)."""
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as a, open_host(os.urandom(32), LOOPBACK) as b:
            a_events, b_events = a.peer_events(), b.peer_events()
            await b.connect(a.listen_addrs[0])
            assert await a_events.receive() == PeerEvent(b.peer_id, connected=True)
            assert await b_events.receive() == PeerEvent(a.peer_id, connected=True)
            if closes == "block":
                await a.set_blocked([b.peer_id])
            else:
                await a.disconnect(b.peer_id)
            closed_by_a, closed_by_b = await a_events.receive(), await b_events.receive()
    assert closed_by_a == PeerEvent(b.peer_id, connected=False) and closed_by_a.closed_here
    assert closed_by_b == PeerEvent(a.peer_id, connected=False) and not closed_by_b.closed_here


@pytest.mark.slow
@pytest.mark.parametrize("leaves", ["disconnecting", "its socket closed"])
async def test_a_peer_s_close_that_came_before_this_host_s_went_out_is_the_peer_s(leaves: str) -> None:
    """Quirk 63: a connection this host began to close (a disconnect, a block) counted as closed here from that moment,
    so the peer's own close, read before this host's GO_AWAY went out, read as this host's: the peer manager then left
    out the hint that a peer closing each connection as it opens may have blocked this node. The peer's close is its
    GO_AWAY, or a read that fails as its socket closes with none sent (its process killed, say)."""
    with trio.fail_after(20):
        async with network(2) as ([a, b], _), trio.open_nursery() as nursery:
            events = a.peer_events()
            # The meshes' traffic over: no frame of b's but its GO_AWAY (and pings) comes while the streams lock is
            # held below, which a's reading task would wait for.
            await trio.testing.wait_all_tasks_blocked(cushion=0.2)
            [conn] = a._host.get_network().connections[ID.from_base58(b.peer_id)]
            muxer = conn.muxed_conn
            async with muxer.streams_lock:  # a's close waits for it before writing its GO_AWAY
                nursery.start_soon(a.disconnect, b.peer_id)
                await trio.testing.wait_all_tasks_blocked()
                assert muxer.closed_here  # (a's close has begun)
                if leaves == "disconnecting":
                    await b.disconnect(a.peer_id)
                else:
                    [theirs] = b._host.get_network().connections[ID.from_base58(a.peer_id)]
                    await theirs.muxed_conn.secured_conn.close()
                await muxer.event_shutting_down.wait()  # a read b's GO_AWAY, or its read failed
            gone = await events.receive()
    assert gone == PeerEvent(b.peer_id, connected=False) and not gone.closed_here


def _socket_of(conn: INetConn) -> trio.socket.SocketType:
    """The TCP socket under a host's connection (Noise over py-libp2p's raw connection)."""
    return conn.muxed_conn.secured_conn.conn.conn.stream.stream.socket  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_a_peer_s_reset_that_fails_this_host_s_go_away_is_the_peer_s_close() -> None:
    """Found by stop 41: a connection this host began to close whose GO_AWAY's write failed, the peer having reset the
    connection first, counted as closed here (the write marked the connection shutting down, so the read that failed
    next no longer said the end was the peer's): the peer manager then left out the hint that a peer closing each
    connection as it opens may have blocked this node."""
    with trio.fail_after(20):
        async with network(2) as ([a, b], _), trio.open_nursery() as nursery:
            events = a.peer_events()
            await trio.testing.wait_all_tasks_blocked(cushion=0.2)  # (the meshes' traffic over, as above)
            [conn] = a._host.get_network().connections[ID.from_base58(b.peer_id)]
            [theirs] = b._host.get_network().connections[ID.from_base58(a.peer_id)]
            muxer, their_muxer = conn.muxed_conn, theirs.muxed_conn
            async with muxer.streams_lock:  # a's close waits for it before writing its GO_AWAY
                nursery.start_soon(a.disconnect, b.peer_id)
                await trio.testing.wait_all_tasks_blocked()
                assert muxer.closed_here  # (a's close has begun)
                # b opens a stream, which a's reading task waits for the lock to take: it reads nothing more
                syn = struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_WINDOW_UPDATE, FLAG_SYN, their_muxer.next_stream_id, 0)
                await their_muxer._write_frame(syn)
                await trio.testing.wait_all_tasks_blocked()
                b_socket = _socket_of(theirs)
                b_socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                b_socket.close()  # b resets the connection (a TCP RST)
                await trio.lowlevel.wait_readable(_socket_of(conn))  # the RST reached a
            gone = await events.receive()  # (a's GO_AWAY's write failed: the connection was reset)
    assert gone == PeerEvent(b.peer_id, connected=False) and not gone.closed_here


@pytest.mark.slow
async def test_a_host_stopped_by_cancellation_closes_its_connections() -> None:
    """How a node stops (its nursery cancelled): its peers must see it go (quirk 25), or their streams to it hang
    and it is unreachable from them when it comes back."""
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as a:
            await a.subscribe(TOPIC, accept_all)
            events = a.peer_events()
            async with trio.open_nursery() as nursery:

                async def stopped_by_cancellation(task_status: trio.TaskStatus[str]) -> None:
                    async with open_host(os.urandom(32), LOOPBACK) as b:
                        await b.subscribe(TOPIC, accept_all)
                        await b.connect(a.listen_addrs[0])
                        await b.wait_for_mesh(TOPIC, a.peer_id)
                        task_status.started(b.peer_id)
                        await trio.sleep_forever()

                b = await nursery.start(stopped_by_cancellation)
                assert await events.receive() == PeerEvent(b, connected=True)
                nursery.cancel_scope.cancel()
            assert await events.receive() == PeerEvent(b, connected=False)
            assert a.connected_peers() == []


@pytest.mark.slow
async def test_a_peer_that_hung_up_mid_stream_does_not_stay_connected_though_it_is_listed_still() -> None:
    """Quirk 62: a stream to a peer whose host stopped fails while the peer is still among the connected peers, so a
    fetch of gaps took a peer that left mid-session for one that reset its stream and stayed (the issuer backed off);
    staying_peers says at once that it left. A stream the peer resets, staying, leaves it connected."""
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as a, trio.open_nursery() as nursery:
            stop, read = trio.CancelScope(), trio.Event()

            async def reads_then_resets(stream: Stream) -> None:
                await stream.read_frame(max_size=1024)
                await stream.reset()

            async def reads_then_hangs_on(stream: Stream) -> None:
                await stream.read_frame(max_size=1024)
                read.set()
                await trio.sleep_forever()

            async def b_until_stopped(task_status: trio.TaskStatus[Host]) -> None:
                with stop:
                    async with open_host(os.urandom(32), LOOPBACK) as b:
                        b.set_stream_handler(ONCE, reads_then_resets)
                        b.set_stream_handler(ECHO, reads_then_hangs_on)
                        task_status.started(b)
                        await trio.sleep_forever()

            b = await nursery.start(b_until_stopped)
            await a.connect(b.listen_addrs[0])
            async with await a.open_stream(b.peer_id, ONCE) as stream:
                await stream.write_frame(b"asked")
                with pytest.raises(StreamError, match="reset by the peer"):
                    await stream.read_frame(max_size=1024)
            assert a.staying_peers() == [b.peer_id]
            async with await a.open_stream(b.peer_id, ECHO) as stream:
                await stream.write_frame(b"asked")
                await read.wait()
                stop.cancel()
                with pytest.raises(StreamError):
                    await stream.read_frame(max_size=1024)
                assert a.staying_peers() == []
                assert a.connected_peers() == [b.peer_id]  # (the quirk: still listed)


class _Connection:
    def __init__(self, peer: ID, *, closed_here: bool = False) -> None:
        self.muxed_conn = type("Muxed", (), {"peer_id": peer, "closed_here": closed_here})()


class _Network:
    def __init__(self) -> None:
        self.connections: dict[ID, list[_Connection]] = {}
        self.auto_connector = AutoConnector(self)  # type: ignore[arg-type]  # told of each disconnection (quirk 43)


async def test_a_peer_back_before_its_old_connection_was_reported_gone_is_reported_back() -> None:
    """Quirk 26: py-libp2p may notify an old connection's end after a new connection to the same peer."""
    events: list[PeerEvent] = []
    notifee = _PeerNotifee(events.append, lambda peer: False, close_timeout=1.0)
    peer_id = peer_id_from_public_key(bytes(nacl.signing.SigningKey.generate().verify_key))
    peer, network = ID.from_base58(peer_id), _Network()
    old, new, second = _Connection(peer), _Connection(peer), _Connection(peer)
    network.connections[peer] = [old]
    await notifee.connected(network, old)  # type: ignore[arg-type]
    network.connections[peer] = [new]  # the swarm dropped the old one and holds the new one
    await notifee.connected(network, new)  # type: ignore[arg-type]
    await notifee.disconnected(network, old)  # type: ignore[arg-type]  # late
    assert events == [PeerEvent(peer_id, True), PeerEvent(peer_id, False), PeerEvent(peer_id, True)]
    network.connections[peer] = [new, second]  # two live connections: one peer, one event each way
    await notifee.connected(network, second)  # type: ignore[arg-type]
    await notifee.disconnected(network, new)  # type: ignore[arg-type]
    assert len(events) == 3
    await notifee.disconnected(network, second)  # type: ignore[arg-type]
    assert events[3:] == [PeerEvent(peer_id, False)]


@pytest.mark.parametrize("closed_here", [(True,), (False,), (True, False)])
async def test_a_peer_back_before_its_old_connection_was_reported_gone_is_told_who_closed_it(closed_here) -> None:
    """Quirk 26: the leaving told as a peer's new connection is found before its old ones were reported gone says
    closed_here if this host closed each of them (else the peer manager hints that a peer this node closed itself
    may have blocked it), and one of them closed by the peer or the network makes it False."""
    events: list[PeerEvent] = []
    notifee = _PeerNotifee(events.append, lambda peer: False, close_timeout=1.0)
    peer_id = peer_id_from_public_key(bytes(nacl.signing.SigningKey.generate().verify_key))
    peer, network = ID.from_base58(peer_id), _Network()
    old = [_Connection(peer, closed_here=here) for here in closed_here]
    network.connections[peer] = old
    for conn in old:
        await notifee.connected(network, conn)  # type: ignore[arg-type]
    new = _Connection(peer)
    network.connections[peer] = [new]  # the swarm dropped the old ones and holds the new one
    await notifee.connected(network, new)  # type: ignore[arg-type]
    assert events == [PeerEvent(peer_id, True), PeerEvent(peer_id, False), PeerEvent(peer_id, True)]
    assert events[1].closed_here == all(closed_here)


@pytest.mark.slow
async def test_malformed_pubsub_input_is_counted_not_fatal() -> None:
    from libp2p.pubsub.pb import rpc_pb2  # to forge the hostile message

    fake_origin = bytes([0x12, 0x20]) + bytes(32)  # a sha2-256 multihash: no key inside the peer id
    forged = rpc_pb2.RPC(publish=[rpc_pb2.Message(
        data=b"x", topicIDs=[TOPIC], from_id=fake_origin, seqno=bytes(8), signature=b"s", key=b"garbage")])
    with trio.fail_after(20):
        async with network(2) as (hosts, inboxes):
            stream = await hosts[0].open_stream(hosts[1].peer_id, "/meshsub/1.1.0")
            for rpc in (forged.SerializeToString(), b"\xff\xff\xff\xff not protobuf"):
                await stream.write(encode_uvarint(len(rpc)) + rpc)
            with pytest.raises(StreamError, match="reset by the peer"):
                await stream.read()  # host 1 gave up on the undecodable RPC
            await hosts[0].publish(TOPIC, b"after the garbage")
            assert await inboxes[1].receive() == (hosts[0].peer_id, b"after the garbage")
            assert hosts[1].stats().hostile_input == 2


@pytest.mark.slow
async def test_libp2p_logs_reach_the_application_logging(caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(10):
        async with open_host(os.urandom(32), LOOPBACK):
            with caplog.at_level(logging.WARNING):
                logging.getLogger("libp2p.pubsub.gossipsub").warning("from inside py-libp2p")
    assert "from inside py-libp2p" in caplog.text


@pytest.mark.slow
async def test_py_libp2p_records_of_failures_it_also_raises_are_debug_and_others_pass(
        root_records: list[logging.LogRecord]) -> None:
    from libp2p.tools.anyio_service.exceptions import LifecycleError  # what a stopping swarm raises

    def log(name: str, level: int, message: str, *args: object) -> None:
        logging.getLogger(f"libp2p.{name}").log(level, message, *args, stacklevel=2)  # each call its own call site

    incoming = "Error in handle_incoming for peer 12D3KooWPeer: "  # yamux's record, formatted as it logs it
    with trio.fail_after(10):
        async with open_host(os.urandom(32), LOOPBACK):
            log("protocol_muxer.multiselect_client", logging.ERROR, "MultiselectClient handshake: read failed: %s",
                "fail to read from multiselect communicator")
            log("transport.tcp.tcp", logging.ERROR, "Failed to open TCP stream: %s", "[Errno 111] refused")
            log("network.swarm", logging.WARNING, "[ADDCONN_FAIL] add_conn failed for peer %s: %r\n%s", "peer",
                LifecycleError("Cannot schedule task after service has stopped"), "Traceback ...")
            log("network.swarm", logging.WARNING, "[ADDCONN_FAIL] add_conn failed for peer %s: %r\n%s", "peer",
                RuntimeError("something new"), "Traceback ...")
            log("stream_muxer.yamux.yamux", logging.ERROR, incoming + "ClosedResourceError: ")
            log("stream_muxer.yamux.yamux", logging.ERROR, incoming + "ConnectionClosedError: TCP connection reset by "
                "remote peer: [Errno 104] Connection reset by peer")
            log("stream_muxer.yamux.yamux", logging.ERROR, incoming + "ValueError: something new")
            log("host.basic_host", logging.ERROR, "a failure nobody raises")
    assert [(r.levelname, r.getMessage().split(": ")[:2]) for r in root_records] == [
        ("WARNING", ["[ADDCONN_FAIL] add_conn failed for peer peer", "RuntimeError('something new')\nTraceback ..."]),
        ("ERROR", ["Error in handle_incoming for peer 12D3KooWPeer", "ValueError"]),
        ("ERROR", ["a failure nobody raises"])]


@pytest.mark.slow
async def test_a_stream_the_peer_opens_as_the_host_closes_the_connection_draws_no_error_from_py_libp2p(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Quirk 23: yamux ACKs a stream the peer opens, then hands it on through a channel that the host's close of the
    connection closed meanwhile, and py-libp2p logged `ERROR Error in handle_incoming for peer X:
    ClosedResourceError`. Here the ACK's write is held until the close has begun, as a slow socket holds it."""
    from libp2p.stream_muxer.yamux.yamux import FLAG_ACK, HEADER_SIZE

    acked, write_frame = trio.Event(), gossip.host._Yamux._write_frame

    async def held_ack(muxer: gossip.host._Yamux, data: bytes) -> None:
        await write_frame(muxer, data)
        if str(muxer.peer_id) == opener and struct.unpack(YAMUX_HEADER_FORMAT, data[:HEADER_SIZE])[1:3] == (
                TYPE_WINDOW_UPDATE, FLAG_ACK):  # a's ACK of a stream b opens (b's, or one b's pubsub opens)
            acked.set()
            await muxer.event_shutting_down.wait()  # the close, under way

    async def open_and_lose(peer: str) -> None:
        with pytest.raises(HostError):  # (the connection closed under it)
            await b.open_stream(peer, "/vouchnet/test/any/1")

    monkeypatch.setattr(gossip.host._Yamux, "_write_frame", held_ack)
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as a, open_host(os.urandom(32), LOOPBACK) as b:
            opener = b.peer_id
            with caplog.at_level(logging.DEBUG, "libp2p.stream_muxer.yamux.yamux"):  # (once the hosts set levels)
                await b.connect(a.listen_addrs[0])
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(open_and_lose, a.peer_id)
                    await acked.wait()
                    await a.disconnect(b.peer_id)
    closed = {(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records if "ClosedResourceError" in r.msg}
    assert closed == {("DEBUG", f"Error in handle_incoming for peer {b.peer_id}")}  # reproduced, and routine


@pytest.mark.slow
async def test_a_peer_that_makes_py_libp2p_warn_on_every_message_gets_one_line_and_a_count(
        root_records: list[logging.LogRecord]) -> None:
    # Quirk 59: py-libp2p queues each message for a connected peer it has not heard join the topic, 100 at most, and
    # warned for each one it dropped past them; a peer that joins another of the host's topics only drew a line per
    # message.
    with trio.fail_after(40):
        async with open_host(os.urandom(32), LOOPBACK) as host, open_host(os.urandom(32), LOOPBACK) as peer:
            for joined in (host, peer):  # a topic both join, so that the host has heard the peer's subscriptions
                await joined.subscribe("/vouchnet/test/checkpoints", accept_all)
            await host.subscribe(TOPIC, accept_all)
            await peer.connect(host.listen_addrs[0])
            await host.wait_for_mesh("/vouchnet/test/checkpoints", peer.peer_id)
            for n in range(1101):  # the first 101 fill the peer's queue (trimmed before a message is added)
                await host.publish(TOPIC, b"%d" % n)
            assert host.stats().pending_dropped == 1000
    warnings = [r for r in root_records if r.getMessage().startswith("pending message queue for peer")]
    assert len(warnings) == 1  # the window (60 s) outlasts the test


@pytest.mark.slow
async def test_a_py_libp2p_logger_created_after_the_host_started_is_limited_too(
        root_records: list[logging.LogRecord]) -> None:
    # Quirk 59: py-libp2p makes some loggers only as it first uses them (libp2p.connection_shutdown,
    # libp2p.network.stream.net_stream), after a host started; the limit was only on the loggers there at its start.
    name = f"libp2p.created_after_start_{os.urandom(4).hex()}"
    with trio.fail_after(10):
        async with open_host(os.urandom(32), LOOPBACK):
            assert name not in logging.root.manager.loggerDict
            late = logging.getLogger(name)
            for _ in range(5):
                late.warning("warned again")
    assert [r.getMessage() for r in root_records if r.name == name] == ["warned again"]


@pytest.mark.slow
async def test_a_port_in_use_is_refused_not_shared() -> None:
    with trio.fail_after(10):
        async with open_host(os.urandom(32), LOOPBACK) as first:
            port = first.listen_addrs[0].split("/")[4]
            with pytest.raises(HostError, match=f"cannot listen on /ip4/127.0.0.1/tcp/{port}: Address already in use"):
                async with open_host(os.urandom(32), [f"/ip4/127.0.0.1/tcp/{port}"]):
                    pass


@pytest.mark.slow
async def test_an_error_in_the_body_comes_out_unwrapped() -> None:
    with trio.fail_after(10), pytest.raises(KeyError, match="from the body"):
        async with open_host(os.urandom(32), LOOPBACK):
            raise KeyError("from the body")



@pytest.mark.slow
async def test_a_peer_that_stops_reading_is_disconnected_and_does_not_block_publishing(loopback_clock) -> None:
    from libp2p import new_host  # a peer that joins the topic, then never reads what it is sent
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.pubsub.pb import rpc_pb2
    from multiaddr import Multiaddr

    meshsub = TProtocol("/meshsub/1.1.0")
    stalled = new_host(key_pair=create_new_key_pair(os.urandom(32)))
    stalled.set_stream_handler(meshsub, lambda stream: trio.sleep_forever())
    join = rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=TOPIC)]).SerializeToString()
    config = HostConfig(publish_stall_timeout=1.0)
    with trio.fail_after(30):
        async with (
            open_host(os.urandom(32), LOOPBACK, config=config) as publisher,
            open_host(os.urandom(32), LOOPBACK) as healthy,
            stalled.run([Multiaddr(LOOPBACK[0])]),
        ):
            await publisher.subscribe(TOPIC, accept_all)
            inbox = await healthy.subscribe(TOPIC, accept_all)
            await healthy.connect(publisher.listen_addrs[0])
            await stalled.connect(info_from_p2p_addr(Multiaddr(publisher.listen_addrs[0])))
            stream = await stalled.new_stream(ID.from_base58(publisher.peer_id), [meshsub])
            await stream.write(encode_uvarint(len(join)) + join)
            stalled_id = stalled.get_id().to_base58()
            await publisher.wait_for_mesh(TOPIC, stalled_id)
            await publisher.wait_for_mesh(TOPIC, healthy.peer_id)
            burst = [bytes([i]) * 256 * 1024 for i in range(48)]  # 12 MiB: more than a yamux window of 8 MiB
            for data in burst:
                await publisher.publish(TOPIC, data)
            assert publisher.stats().stalled_peers_disconnected == 1
            assert stalled_id not in publisher.connected_peers()
            assert [data for _, data in await receive(inbox, len(burst))] == burst
            await stalled.close()


@pytest.mark.slow
async def test_peers_that_stop_reading_are_disconnected_all_at_once(monkeypatch) -> None:
    """A publish held by peers whose send queues stayed over half full closed their connections one peer at a time,
    so it waited up to close_timeout (twice, a close cut off finished: quirk 60) for each in turn; now all at once."""
    with trio.fail_after(20):
        async with AsyncExitStack() as stack:
            publisher = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK, config=HostConfig(
                publish_stall_timeout=0.1, close_timeout=CUT_S)))
            peers = [await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK)) for _ in range(3)]
            events = publisher.peer_events()
            for peer in peers:
                await publisher.connect(peer.listen_addrs[0])
            await connected(events, peers)
            stalled = [ID.from_base58(peer.peer_id) for peer in peers[:2]]
            monkeypatch.setattr(publisher._pubsub, "peers_with_full_queues", lambda limit: [
                peer for peer in stalled if peer in publisher._host.get_network().connections])
            close, closes = gossip.host._close_connection, []

            async def recorded(conn: INetConn, timeout: float) -> None:
                closes.append(("begun", conn.muxed_conn.peer_id))
                await close(conn, timeout)
                closes.append(("ended", conn.muxed_conn.peer_id))

            monkeypatch.setattr(gossip.host, "_close_connection", recorded)
            await publisher.publish(TOPIC, b"x")
            assert [what for what, _ in closes] == ["begun", "begun", "ended", "ended"]
            assert {peer for _, peer in closes} == set(stalled)
            assert publisher.connected_peers() == [peers[2].peer_id]
            assert publisher.stats().stalled_peers_disconnected == 2


@pytest.mark.slow
async def test_concurrent_writes_to_one_stream_do_not_interleave() -> None:
    intact: list[bool] = []
    all_read = trio.Event()

    async def check_frames(stream) -> None:
        while (frame := await stream.read_frame(max_size=200_000)) is not None:
            intact.append(len(set(frame)) == 1)
        all_read.set()

    with trio.fail_after(20):
        async with network(2, links=[(0, 1)]) as (hosts, _):
            hosts[1].set_stream_handler(ECHO, check_frames)
            async with await hosts[0].open_stream(hosts[1].peer_id, ECHO) as stream:

                async def write_many(fill: int) -> None:
                    for _ in range(10):
                        await stream.write_frame(bytes([fill]) * 100_000)  # two yamux frames each

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(write_many, 1)
                    nursery.start_soon(write_many, 2)
            await all_read.wait()
    assert intact == [True] * 20


@pytest.mark.slow
async def test_noise_frames_survive_a_connection_that_delivers_small_pieces() -> None:
    import libp2p.io.msgio  # the read that py-libp2p 0.8.1 gives up on after 100 pieces (quirk 17)

    class Trickle:
        def __init__(self, data: bytes) -> None:
            self.data = data

        async def read(self, n: int) -> bytes:
            piece, self.data = self.data[:min(n, 600)], self.data[min(n, 600):]
            return piece

    frame = bytes(range(256)) * 255
    async with open_host(os.urandom(32), LOOPBACK):
        assert await libp2p.io.msgio.read_exactly(Trickle(frame), len(frame)) == frame


async def test_a_reader_returns_window_credit_in_halves_not_per_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from libp2p.stream_muxer.yamux.yamux import DEFAULT_WINDOW_SIZE, YamuxStream  # to count WINDOW_UPDATEs

    credits: list[int] = []
    send_window_update = YamuxStream.send_window_update

    async def counted(self: YamuxStream, increment: int, skip_lock: bool = False) -> None:
        credits.append(increment)
        await send_window_update(self, increment, skip_lock)

    monkeypatch.setattr(YamuxStream, "send_window_update", counted)
    frames, size = 2000, 1000  # 2 MB in small frames: eight windows, thousands of reads
    got: list[bytes] = []
    all_read = trio.Event()

    async def collect(stream) -> None:
        while (frame := await stream.read_frame(max_size=size)) is not None:
            got.append(frame)
        all_read.set()

    with trio.fail_after(20):
        async with network(2, links=[(0, 1)]) as (hosts, _):
            credits.clear()  # the connection's set-up streams are not this test's
            hosts[1].set_stream_handler(ECHO, collect)
            async with await hosts[0].open_stream(hosts[1].peer_id, ECHO) as stream:
                for i in range(frames):
                    await stream.write_frame(i.to_bytes(4, "big") * (size // 4))
            await all_read.wait()
    assert got == [i.to_bytes(4, "big") * (size // 4) for i in range(frames)]  # more than the window got through
    assert all(credit >= DEFAULT_WINDOW_SIZE // 2 for credit in credits)
    assert len(credits) <= frames * size // (DEFAULT_WINDOW_SIZE // 2) + 2  # quirk 21: py-libp2p sent one per read


@pytest.mark.slow
async def test_a_small_connection_limit_is_accepted() -> None:
    async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(max_connections=8)) as host:
        assert host.listen_addrs


@pytest.mark.slow
async def test_inbound_connections_that_closed_leave_room_for_new_ones() -> None:
    """Quirk 31: py-libp2p kept each inbound connection's slot until the host stopped, so a host accepted
    max_connections - min_connections inbound connections in its life (here 1; a node's default, 50), one peer
    reconnecting could use them all, and then no peer could dial in again."""
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(max_connections=2)) as server:
            events = server.peer_events()
            for _ in range(3):
                async with open_host(os.urandom(32), LOOPBACK) as client:
                    await client.connect(server.listen_addrs[0])
                    assert await events.receive() == PeerEvent(client.peer_id, connected=True)
                assert await events.receive() == PeerEvent(client.peer_id, connected=False)


@pytest.mark.slow
async def test_half_a_small_connection_limit_is_open_to_inbound_connections() -> None:
    """Inbound slots are max_connections - min_connections, and min_connections was the low watermark, as large as
    max_connections up to 50: a host of max_connections 8 to 50 (a node of max_peers up to 25) took one inbound
    connection at a time."""
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(
                open_host(os.urandom(32), LOOPBACK, config=HostConfig(max_connections=8)))
            clients = [await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK)) for _ in range(4)]
            events = server.peer_events()
            for client in clients:
                await client.connect(server.listen_addrs[0])
            await connected(events, clients)  # (a dial returns once the dialler's end holds the connection)
            assert server.connected_peers() == sorted(client.peer_id for client in clients)


@pytest.mark.slow
async def test_a_peer_that_hangs_up_is_not_redialled_behind_the_callers_back(loopback_clock) -> None:
    """Quirk 32: pubsub, told of a new connection, opened its stream with a call that dials the peer if it is no
    longer connected, and retried: a peer that hangs up at once (here, one that blocked us) was redialled about
    three times a second at first, whatever the node's backoff."""
    with trio.fail_after(20):
        async with network(1) as ([a], _), open_host(os.urandom(32), LOOPBACK) as b:
            await b.set_blocked([a.peer_id])
            events = a.peer_events()
            await a.connect(b.listen_addrs[0])
            await trio.sleep(1.5)  # a few of pubsub's redials, 0.3 s apart
            connections = 0
            with contextlib.suppress(trio.WouldBlock):
                while True:
                    connections += events.receive_nowait().connected
    assert connections == 1


# Seconds an inbound connection has to be put to use (quirk 34): real time, as py-libp2p's connections run timers
# of their own (yamux pings and reads, identify) that a mock clock's jump over the grace period sets off. Long
# enough for the tests' connections and streams to happen within it.
GRACE = 5.0


async def connected(events: PeerFeed, peers: list[Host]) -> None:
    """Returns once `events` told of each of `peers` connecting (in any order)."""
    waiting = {peer.peer_id for peer in peers}
    while waiting:
        event = await events.receive()
        if event.connected:
            waiting.discard(event.peer_id)


async def disconnected(events: PeerFeed, peers: list[Host]) -> None:
    """Returns once `events` told of each of `peers` disconnecting."""
    waiting = {peer.peer_id for peer in peers}
    while waiting:
        event = await events.receive()
        if not event.connected:
            waiting.discard(event.peer_id)


async def replaced(events: PeerFeed, newcomer: Host, left: Host) -> None:
    """Returns once `events` told of `newcomer` connecting and of `left` disconnecting, in either order: the slot
    is freed as the newcomer's connection comes, so which is told first depends on the machine's load."""
    waiting = {(newcomer.peer_id, True), (left.peer_id, False)}
    while waiting:
        event = await events.receive()
        waiting.discard((event.peer_id, event.connected))


@pytest.mark.slow
async def test_idle_inbound_connections_do_not_lock_out_a_new_peer() -> None:
    """Quirk 34: inbound connections that were never put to use held their slot for ever, so peers of fresh keys
    (free to make) filled a node's inbound slots and no other peer could dial in. Now, with every slot taken, a
    newcomer takes the oldest idle one's, grace or not."""
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK, config=HostConfig(
                max_connections=8, idle_inbound_grace=600)))  # 4 inbound slots; no grace ends during the test
            events = server.peer_events()
            idle = [await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK)) for _ in range(4)]
            newcomer = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK))
            for peer in idle:  # one for each inbound slot; each connects and subscribes to nothing
                await peer.connect(server.listen_addrs[0])
                await connected(events, [peer])
            await newcomer.connect(server.listen_addrs[0])
            await replaced(events, newcomer, idle[0])
            assert server.connected_peers() == sorted(p.peer_id for p in [*idle[1:], newcomer])
            assert server.stats().idle_inbound_closed == 1


@pytest.mark.slow
async def test_an_idle_inbound_connection_is_closed_as_its_grace_ends() -> None:
    """Quirk 34: a peer that connects and does nothing gives its slot back after the grace period, needed or not.
    Nothing has to happen within this grace, so it is short: the connected and disconnected events queue alike."""
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(idle_inbound_grace=0.5)) as server, \
                open_host(os.urandom(32), LOOPBACK) as idle:
            events = server.peer_events()
            await idle.connect(server.listen_addrs[0])
            await connected(events, [idle])
            await disconnected(events, [idle])
            assert server.stats().idle_inbound_closed == 1


async def echo(stream: Stream) -> None:
    await stream.write(await stream.read())


async def ping(client: Host, peer_id: str) -> None:
    """A round trip on a new /echo/1 stream from `client` to `peer_id`."""
    async with await client.open_stream(peer_id, "/echo/1") as stream:
        await stream.write(b"ping")
        assert await stream.read() == b"ping"


@pytest.mark.slow
async def test_an_inbound_connection_put_to_use_is_never_closed_as_idle() -> None:
    """Quirk 34: a peer that subscribes to a topic, opens a stream the host serves, or is opened one, keeps its
    connection past the grace period; one that does none of it, connected after them, is closed."""
    with trio.fail_after(30 + GRACE):
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK, config=HostConfig(
                idle_inbound_grace=GRACE)))
            server.set_stream_handler("/echo/1", echo)
            await server.subscribe(TOPIC, accept_all)
            events = server.peer_events()
            subscriber, opener, opened, idle = [
                await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK)) for _ in range(4)]
            opened.set_stream_handler("/echo/1", echo)
            await subscriber.subscribe(TOPIC, accept_all)  # (its first RPC to the server says so)
            await subscriber.connect(server.listen_addrs[0])  # each puts its connection to use as it connects
            await opener.connect(server.listen_addrs[0])
            await ping(opener, server.peer_id)
            await opened.connect(server.listen_addrs[0])
            await connected(events, [subscriber, opener, opened])
            await ping(server, opened.peer_id)
            await idle.connect(server.listen_addrs[0])
            await disconnected(events, [idle])  # its grace ended last: the others' were checked before
            assert server.stats().idle_inbound_closed == 1
            assert server.connected_peers() == sorted(p.peer_id for p in (subscriber, opener, opened))


@pytest.mark.slow
async def test_a_protected_peer_is_not_closed_for_a_stranger() -> None:
    """Quirk 34: with every inbound slot taken, a newcomer takes an idle stranger's slot, never that of a protected
    peer (a node's bootstrap peers and horizon orgs), even one that connected earlier and stays idle."""
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK, config=HostConfig(
                max_connections=4, idle_inbound_grace=600)))  # 2 inbound slots
            events = server.peer_events()
            horizon, stranger, newcomer = [
                await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK)) for _ in range(3)]
            server.set_protected(lambda peer_id: peer_id == horizon.peer_id)
            for peer in (horizon, stranger):
                await peer.connect(server.listen_addrs[0])
                await connected(events, [peer])
            await newcomer.connect(server.listen_addrs[0])
            await replaced(events, newcomer, stranger)
            assert server.connected_peers() == sorted([horizon.peer_id, newcomer.peer_id])


@pytest.mark.slow
async def test_a_newcomer_finding_every_slot_in_use_is_refused() -> None:
    """Quirk 34: connections in use are never closed for a newcomer; with no idle one, it is refused as before."""
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK, config=HostConfig(
                max_connections=4, idle_inbound_grace=600)))  # 2 inbound slots
            await server.subscribe(TOPIC, accept_all)
            subscribers = [await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK)) for _ in range(2)]
            newcomer = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK))
            for peer in subscribers:
                await peer.subscribe(TOPIC, accept_all)
                await peer.connect(server.listen_addrs[0])
                await server.wait_for_mesh(TOPIC, peer.peer_id)
            with pytest.raises(HostError):
                await newcomer.connect(server.listen_addrs[0])
            assert server.connected_peers() == sorted(p.peer_id for p in subscribers)
            assert server.stats().idle_inbound_closed == 0


@pytest.mark.slow
async def test_a_blocked_peer_is_cut_off_both_ways_until_unblocked() -> None:
    with trio.fail_after(20):
        async with network(2) as ([a, b], _):
            a_events, b_events = a.peer_events(), b.peer_events()
            await a.set_blocked([b.peer_id])
            assert a.blocked == [b.peer_id]
            assert await a_events.receive() == PeerEvent(b.peer_id, connected=False)
            assert a.connected_peers() == []
            with pytest.raises(HostError, match="blocked"):
                await a.connect(b.listen_addrs[0])
            with pytest.raises(HostError, match="blocked"):
                await a.open_stream(b.peer_id, "/echo/1")
            assert await b_events.receive() == PeerEvent(a.peer_id, connected=False)
            try:  # b may complete its handshake before a closes the connection; either way it does not stay
                await b.connect(a.listen_addrs[0])
            except HostError:
                pass
            else:
                assert await b_events.receive() == PeerEvent(a.peer_id, connected=True)
                assert await b_events.receive() == PeerEvent(a.peer_id, connected=False)
            assert a.connected_peers() == []
            with pytest.raises(trio.WouldBlock):
                a_events.receive_nowait()  # a never announced the refused connection to its services

            await a.set_blocked([])
            assert a.blocked == []
            assert await a.connect(b.listen_addrs[0]) == b.peer_id
            assert await a_events.receive() == PeerEvent(b.peer_id, connected=True)


CUT_S = 0.01  # a close_timeout that cuts every close: py-libp2p's sleeps 0.1 s twice (quirk 60)


class _StalledScope:
    """A connection's resource scope whose release never ends: SwarmConn.close releases it before the muxer's close."""

    async def close(self) -> None:
        await trio.sleep_forever()


@pytest.mark.slow
@pytest.mark.parametrize("cut", ["in the muxer's close", "before the muxer's close"])
async def test_a_blocked_peer_whose_close_is_cut_off_is_dropped_and_reported_gone(cut: str) -> None:
    """Quirk 60: a close cut off by close_timeout still takes the connection off the swarm's list and reports the
    peer gone, as a close that finished does; without it the dead connection stayed listed and no event came. Found
    by stop 39: one cut off before SwarmConn.close reached the muxer's close, finished by closing the socket, read as
    the peer's or the network's (closed_here False): the peer manager then hinted that the peer, which this node had
    blocked, may have blocked it."""
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(close_timeout=CUT_S)) as a, \
                open_host(os.urandom(32), LOOPBACK) as b:
            events = a.peer_events()
            await a.connect(b.listen_addrs[0])
            assert await events.receive() == PeerEvent(b.peer_id, connected=True)
            if cut == "before the muxer's close":
                [conn] = a._host.get_network().connections[ID.from_base58(b.peer_id)]
                conn.set_resource_scope(_StalledScope())
            await a.set_blocked([b.peer_id])
            assert a.connected_peers() == []
            gone = await events.receive()
    assert gone == PeerEvent(b.peer_id, connected=False) and gone.closed_here


@pytest.mark.slow
@pytest.mark.parametrize("cancelled_at", [0, 1, 2, 3])
async def test_a_block_cancelled_as_it_closes_connections_leaves_no_blocked_peer_connected(cancelled_at: int,
                                                                                           monkeypatch) -> None:
    """set_blocked closed the blocked peers' connections one peer at a time, and a caller cancelled meanwhile (an API
    request's timeout, say) left the peers it had not reached connected, and the connection it was closing half
    closed and listed (quirk 60); their gossip was dropped and their streams reset, but the connections stayed.
    Cancelled before it starts (0) or as it begins closing the n-th connection, it still closes them all."""
    with trio.fail_after(20):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK))
            peers = [await stack.enter_async_context(open_host(os.urandom(32), LOOPBACK)) for _ in range(4)]
            events = a.peer_events()
            for peer in peers:
                await a.connect(peer.listen_addrs[0])
            await connected(events, peers)
            blocked, kept = peers[:3], peers[3]
            close, begun = gossip.host._close_connection, 0
            with trio.CancelScope() as scope:

                async def cancelling(conn: object, timeout: float) -> None:
                    nonlocal begun
                    begun += 1
                    if begun == cancelled_at:
                        scope.cancel()
                    await close(conn, timeout)  # type: ignore[arg-type]

                monkeypatch.setattr(gossip.host, "_close_connection", cancelling)
                if cancelled_at == 0:
                    scope.cancel()
                await a.set_blocked([peer.peer_id for peer in blocked])
            assert a.connected_peers() == [kept.peer_id]
            await disconnected(events, blocked)
            assert a.blocked == sorted(peer.peer_id for peer in blocked)


@pytest.mark.slow
async def test_a_host_stopped_while_a_block_s_close_hangs_stops_at_once() -> None:
    """A block's closes are shielded from its caller's cancellation (quirk 60), but not from the host's own stop (a
    node's shutdown, the nursery it runs in cancelled): a blocked peer's close that did not end held the stop for
    close_timeout (5 s; a node's shutdown has 2 s in all), though the host's exit closes every connection anyway.
    The peer sees the host go at once: the close cut off still closes the socket (the swarm's stop closes only
    connections not closing yet), or the peer closed it itself as its writes timed out (10 s)."""
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as b:
            events = b.peer_events()
            async with trio.open_nursery() as nursery:

                async def blocking_b_when_stopped(task_status: trio.TaskStatus[str]) -> None:
                    async with open_host(os.urandom(32), LOOPBACK) as a:
                        await a.connect(b.listen_addrs[0])
                        [conn] = a._host.get_network().connections[ID.from_base58(b.peer_id)]
                        conn.set_resource_scope(_StalledScope())
                        async with trio.open_nursery() as blocking:
                            blocking.start_soon(a.set_blocked, [b.peer_id])
                            await trio.testing.wait_all_tasks_blocked()
                            task_status.started(a.peer_id)
                            await trio.sleep_forever()

                a = await nursery.start(blocking_b_when_stopped)
                assert await events.receive() == PeerEvent(a, connected=True)
                stopped_at = trio.current_time()
                nursery.cancel_scope.cancel()
            assert trio.current_time() - stopped_at < 2.0  # (the node's SHUTDOWN_SECONDS)
            gone = await events.receive()
            assert gone == PeerEvent(a, connected=False) and not gone.closed_here
            assert b.connected_peers() == []


def _fill(raw: socket.socket) -> int:
    """Write to a non-blocking socket until it takes no more, ever smaller pieces; returns the bytes it took."""
    took = 0
    for size in (65536, 4096, 1):
        with contextlib.suppress(BlockingIOError):
            while True:
                took += raw.send(bytes(size))
    return took


async def _fill_socket(conn: INetConn, theirs: INetConn) -> None:
    """Fill the buffers between a host's connection and its peer's (`theirs`), the peer reading nothing: the host's
    next write to it waits. Small buffers, which the kernel does not grow meanwhile. Raw bytes: the peer, should it
    read again, takes them for a broken Noise frame and hangs up."""
    _socket_of(theirs).setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    _socket_of(conn).setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    raw = socket.socket(fileno=os.dup(_socket_of(conn).fileno()))
    raw.setblocking(False)
    try:
        quiet = 0
        while quiet < 3:  # (the kernel frees a little room as the peer's acknowledgements come: no event says when)
            quiet = 0 if _fill(raw) else quiet + 1
            await trio.sleep(0.05)
    finally:
        raw.close()  # (the duplicate)


@dataclass
class _Stopped:
    reset_took: float  # seconds from the stop until a's task left its stream's `async with` (resetting the stream)
    port: int  # where a listened
    socket: trio.socket.SocketType  # a's connection's to b


async def _stop_holding_a_stream_to_a_peer_reading_nothing(config: HostConfig, *,
                                                           reset_once_stopping: bool = False) -> _Stopped:
    """Stop host a (cancelled, as a node stops) while a task of its holds a stream to peer b, which reads nothing more
    (its reading task waits for a lock the test holds) and to which a's writes have filled the sockets' buffers; the
    task resets the stream as it is cancelled, or, `reset_once_stopping`, once the host's stop has begun. Under
    loopback_clock, the close_timeout that a's exit waits out (b holds its close's write) passes at once."""
    left_at: list[float] = []
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK) as b:
            b.set_stream_handler(ECHO, echo_frames)
            async with trio.open_nursery() as nursery:

                async def a_holding_a_stream(task_status: trio.TaskStatus[Host]) -> None:
                    async with open_host(os.urandom(32), LOOPBACK, config=config) as a:
                        await a.connect(b.listen_addrs[0])
                        try:
                            async with await a.open_stream(b.peer_id, ECHO) as stream:
                                await stream.write_frame(b"asked")
                                assert await stream.read_frame(max_size=1024) == b"asked"
                                task_status.started(a)
                                try:
                                    await trio.sleep_forever()
                                finally:
                                    if reset_once_stopping:
                                        with trio.CancelScope(shield=True):  # (the host's own tasks end first)
                                            await trio.testing.wait_all_tasks_blocked()
                                        assert a._closes.stopping
                        finally:
                            left_at.append(trio.current_time())

                a = await nursery.start(a_holding_a_stream)
                port = int(a.listen_addrs[0].split("/")[4])
                [conn] = a._host.get_network().connections[ID.from_base58(b.peer_id)]
                [theirs] = b._host.get_network().connections[ID.from_base58(a.peer_id)]
                mine = conn.muxed_conn
                syn = struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_WINDOW_UPDATE, FLAG_SYN, mine.next_stream_id, 0)
                await theirs.muxed_conn.streams_lock.acquire()  # b's reading task waits for it at a's next stream:
                await mine._write_frame(syn)  # b reads nothing more
                await _fill_socket(conn, theirs)
                stopped_at = trio.current_time()
                nursery.cancel_scope.cancel()
            theirs.muxed_conn.streams_lock.release()
    return _Stopped(left_at[0] - stopped_at, port, _socket_of(conn))


@pytest.mark.slow
async def test_a_host_stopping_does_not_wait_to_reset_a_stream_to_a_peer_reading_nothing(loopback_clock) -> None:
    """Found by stop 41: a stream's `async with` left as the host stops (a node's shutdown cancels its tasks) reset the
    stream shielded within close_timeout (quirk 61), and a peer reading nothing holds the reset's write: the stop
    waited close_timeout (5 s; the node's, 0.5 s of its 2 s) for each such stream in turn, though the host's exit
    closes the connection anyway."""
    stopped = await _stop_holding_a_stream_to_a_peer_reading_nothing(HostConfig())
    assert stopped.reset_took < 2.0  # (the node's SHUTDOWN_SECONDS; close_timeout is 5 s)


@pytest.mark.slow
async def test_a_stream_reset_after_the_host_began_to_stop_is_not_waited_for_either(loopback_clock) -> None:
    """The host's stop cuts off the resets under way, and shields none begun after it (a task's cleanup, say, that
    resets its stream once the host's own tasks have ended): shielded, each held the stop for close_timeout."""
    stopped = await _stop_holding_a_stream_to_a_peer_reading_nothing(HostConfig(), reset_once_stopping=True)
    assert stopped.reset_took < 2.0  # (the node's SHUTDOWN_SECONDS; close_timeout is 5 s)


@pytest.mark.slow
async def test_a_host_stopped_with_a_peer_reading_nothing_stops_listening_and_hangs_up(loopback_clock) -> None:
    """Found by stop 41: the host's exit closed its listeners last, after every connection, all within close_timeout
    (quirk 5), and a peer reading nothing holds this host's GO_AWAY's write for all of it: the host's port still
    accepted connections after open_host() had returned (a node restarted in-process could not listen there), and the
    connection whose close was cut off stayed open, the peer never told."""
    stopped = await _stop_holding_a_stream_to_a_peer_reading_nothing(HostConfig(close_timeout=1.0))
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", stopped.port)
    assert stopped.socket.fileno() == -1  # closed


@pytest.mark.slow
async def test_an_idle_inbound_connection_whose_close_is_cut_off_is_dropped_and_reported_gone() -> None:
    """Quirk 60, for quirk 34's close of an idle inbound connection."""
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(
                    close_timeout=CUT_S, idle_inbound_grace=0.2)) as server, \
                open_host(os.urandom(32), LOOPBACK) as idle:
            events = server.peer_events()
            await idle.connect(server.listen_addrs[0])
            await connected(events, [idle])
            await disconnected(events, [idle])
            assert server.connected_peers() == []
            assert server.stats().idle_inbound_closed == 1


async def test_blocking_a_string_that_is_not_a_peer_id_changes_nothing() -> None:
    async with open_host(os.urandom(32), LOOPBACK) as a:
        peer = peer_id_from_public_key(os.urandom(32))
        await a.set_blocked([peer])
        with pytest.raises(InvalidPeerId):
            await a.set_blocked(["not-a-peer-id"])
        assert a.blocked == [peer]


class _FakeHost:
    """Stands for a py-libp2p BasicHost in the sender-record cache: its peerstore's local record is `local`."""

    def __init__(self) -> None:
        self.local = b"v1"

    def get_peerstore(self) -> "_FakeHost":
        return self

    def get_local_record(self) -> bytes:
        return self.local


def _rpc(record: bytes | None = None) -> rpc_pb2.RPC:
    rpc = rpc_pb2.RPC()
    if record is not None:
        rpc.senderRecord = record
    return rpc


def test_a_peer_s_signed_record_is_checked_once_while_it_stays_the_same() -> None:
    checked: list[tuple[bytes, str]] = []

    def check(rpc, host, peer) -> bool:  # the library's maybe_consume_signed_record: b"bad" fails
        checked.append((rpc.senderRecord, peer))
        return rpc.senderRecord != b"bad"

    clock = [1000.0]
    records, host = _SenderRecords(lambda host: (b"ours", False), check, clock=lambda: clock[0]), _FakeHost()
    for _ in range(3):
        assert records.consume(_rpc(b"v1"), host, "peer-a")
    assert records.consume(_rpc(b"v1"), host, "peer-b")  # the same bytes from another peer
    assert records.consume(_rpc(b"v2"), host, "peer-a")  # a new record
    assert not records.consume(_rpc(b"bad"), host, "peer-a")
    assert not records.consume(_rpc(b"bad"), host, "peer-a")  # a failure is never remembered
    assert records.consume(_rpc(), host, "peer-a")  # no record: nothing to check, as in the library
    clock[0] += SENDER_RECORD_TTL_S + 1
    assert records.consume(_rpc(b"v2"), host, "peer-a")  # checked again now and then
    assert checked == [(b"v1", "peer-a"), (b"v1", "peer-b"), (b"v2", "peer-a"), (b"bad", "peer-a"),
                       (b"bad", "peer-a"), (b"v2", "peer-a")]


def test_our_signed_record_is_made_again_when_it_changed_or_its_ttl_passed() -> None:
    made: list[object] = []

    def make(host: _FakeHost) -> tuple[bytes, bool]:  # the library's env_to_send_in_RPC, which may renew the record
        made.append(host)
        return host.local, True

    clock = [1000.0]
    records, host, other = _SenderRecords(make, lambda *args: True, clock=lambda: clock[0]), _FakeHost(), _FakeHost()
    assert [records.to_send(host) for _ in range(3)] == [(b"v1", True), (b"v1", False), (b"v1", False)]
    records.to_send(other)
    host.local = b"v2"  # identify issued a newer record (our addresses changed)
    assert records.to_send(host) == (b"v2", True)
    clock[0] += SENDER_RECORD_TTL_S + 1
    records.to_send(host)
    assert made == [host, other, host, host]


async def test_peers_still_learn_each_other_s_signed_records(monkeypatch: pytest.MonkeyPatch) -> None:
    import libp2p.pubsub.gossipsub

    with trio.fail_after(20):
        async with network(2) as (hosts, inboxes):
            # (pubsub's own copy of the name is wrapped by quirk 45's gate, gossipsub's is the one quirk 24 set)
            records = libp2p.pubsub.gossipsub.maybe_consume_signed_record.__self__
            assert isinstance(records, _SenderRecords)  # quirk 24 is on
            sender = ID.from_base58(hosts[0].peer_id)
            peerstore = hosts[1]._host.get_peerstore()
            del peerstore.peer_record_map[sender]  # forgotten (identify had stored it), and not yet seen in pubsub:
            monkeypatch.setattr(records, "_accepted", weakref.WeakKeyDictionary())
            for _ in range(5):
                await hosts[0].publish(TOPIC, b"x")
                await inboxes[1].receive()
            envelope = peerstore.get_peer_record(sender)
    assert envelope is not None and envelope.record().peer_id == sender  # pubsub's record went through the library


async def test_a_host_verifies_the_signatures_of_others_messages_not_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from libp2p.crypto.ed25519 import Ed25519PublicKey  # to count signature checks (quirk 29)

    checked: list[bytes] = []
    verify = Ed25519PublicKey.verify

    def counted(self: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
        checked.append(data)
        return verify(self, data, signature)

    monkeypatch.setattr(Ed25519PublicKey, "verify", counted)
    with trio.fail_after(20):
        async with network(2) as (hosts, inboxes):
            checked.clear()  # handshakes and peer records are not this test's
            for data in (b"one", b"two", b"three"):
                await hosts[0].publish(TOPIC, data)
            await hosts[1].publish(TOPIC, b"four")
            for inbox in inboxes:  # a host's own messages reach its own subscription too
                assert sorted(data for _, data in await receive(inbox, 4)) == [b"four", b"one", b"three", b"two"]
    # each message once, by the host it reached, none by its publisher (peer records sign another prefix)
    assert len([data for data in checked if data.startswith(b"libp2p-pubsub:")]) == 4


async def test_rpcs_queued_for_a_peer_go_out_merged_in_order_within_the_size_limit() -> None:
    from libp2p.pubsub.rpc_queue import RpcQueue  # to queue RPCs for the sending loop (quirk 30)
    from libp2p.utils.varint import decode_varint_with_size

    class Written:
        def __init__(self) -> None:
            self.rpcs: list[rpc_pb2.RPC] = []

        async def write(self, data: bytes) -> None:
            rpc = rpc_pb2.RPC()
            length, start = decode_varint_with_size(data)
            rpc.ParseFromString(data[start:start + length])
            self.rpcs.append(rpc)

    def idontwant(mid: bytes) -> rpc_pb2.RPC:
        return rpc_pb2.RPC(control=rpc_pb2.ControlMessage(idontwant=[rpc_pb2.ControlIDontWant(messageIDs=[mid])]))

    def publish(i: int, size: int) -> rpc_pb2.RPC:
        return rpc_pb2.RPC(publish=[rpc_pb2.Message(data=bytes([i]) * size, topicIDs=[TOPIC])])

    queue = RpcQueue(max_message_size=2_500)
    for rpc in (idontwant(b"a"), publish(0, 1_000), idontwant(b"b"), idontwant(b"c"), publish(1, 1_000),
                publish(2, 2_490), idontwant(b"d")):
        queue.push(rpc)
    queue.close()
    stream = Written()
    async with open_host(os.urandom(32), LOOPBACK) as host:
        await host._pubsub.handle_sending_messages(ID(b"peer"), stream, queue)  # type: ignore[arg-type]
    # one message per RPC (a receiver handles an RPC's messages in no set order), within the size limit
    assert [([m.data[0] for m in rpc.publish], [i.messageIDs[0] for i in rpc.control.idontwant])
            for rpc in stream.rpcs] == [([0], [b"a", b"b", b"c"]), ([1], []), ([2], []), ([], [b"d"])]


@pytest.mark.slow
async def test_a_stream_left_by_cancellation_is_reset_not_left_open() -> None:
    """Quirk 61: a sync session ended for a catch-up, or at its 10-minute bound, leaves its stream's `async with`
    cancelled; the reset was cancelled with it, and the stream stayed open on both sides for the connection's life."""
    held = "/vouchnet/test/held/1"
    told: list[str] = []
    done = trio.Event()

    async def read_until_told(stream: Stream) -> None:
        try:
            while await stream.read():  # (what the client asked, then the end, reset or closed)
                pass
            told.append("closed")
        except StreamError as error:
            told.append(str(error))
        done.set()

    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as client, open_host(os.urandom(32), LOOPBACK) as server:
            server.set_stream_handler(held, read_until_told)
            await client.connect(server.listen_addrs[0])
            with trio.CancelScope() as session:
                async with await client.open_stream(server.peer_id, held) as stream:
                    await stream.write(b"asked")
                    session.cancel()
                    await stream.read()
            with trio.move_on_after(5):
                await done.wait()
            assert told == [f"{held} stream from {client.peer_id}: reset by the peer"]
