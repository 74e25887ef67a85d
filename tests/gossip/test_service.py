"""The gossip service: our records published in lingering, paced batches; peers' records validated, delivered,
and relayed; hostile peers penalised. Publishing logic runs against a recording host on trio's mock clock; the
network behaviour on real py-libp2p hosts over loopback (marked slow).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from nacl.signing import SigningKey

from gossip.batch import pack, unpack
from gossip.host import Host, HostConfig, Received, open_host
from gossip.replica import Replica
from gossip.service import GossipService, records_topic
from gossip.store import RecordStore
from gossip.verdict import Verdict
from ledger import LedgerError
from node.config import Limits
from vouching import Record, did_key, org_body, vouch_body
from vouching.cbor import encode

from ..factories import Org, new_did

NETWORK = "test"
TOPIC = records_topic(NETWORK)
LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
LINGER = 0.025


def vouch() -> dict:
    return vouch_body(new_did(), 0.5, "operator")


class Heard:
    """Every record a replica accepted, and a way to wait for some."""

    def __init__(self, replica: Replica) -> None:
        self.ids: set[bytes] = set()
        self._changed = trio.Event()
        replica.listeners.append(self._hear)

    def _hear(self, records: list[Record]) -> None:
        self.ids.update(r.id for r in records)
        self._changed.set()
        self._changed = trio.Event()

    async def all_of(self, records: list[Record]) -> None:
        while not {r.id for r in records} <= self.ids:
            await self._changed.wait()


async def until(condition: Callable[[], bool]) -> None:
    """Poll what no event announces (peer scores, counters of messages py-libp2p validates in its own tasks)."""
    while not condition():
        await trio.sleep(0.01)


# --- publishing and delivery, against a host that records what is published -------------------------------


class RecordingHost:
    """The part of Host the service uses: subscribe, publish (recorded with the time), peer_id."""

    peer_id = "12D3KooWRecordingHost"

    def __init__(self) -> None:
        self.published: list[tuple[float, bytes]] = []

    async def subscribe(self, topic: str, validator: Callable[[str, bytes], Verdict]) -> trio.MemoryReceiveChannel:
        assert topic == TOPIC
        self.validator = validator
        self.inbox, receive = trio.open_memory_channel[Received](100)
        return receive

    async def publish(self, topic: str, data: bytes) -> None:
        assert self.validator(self.peer_id, data) is Verdict.ACCEPT  # as Host.publish does
        self.published.append((trio.current_time(), data))

    def records_published(self) -> list[bytes]:
        return [raw for _, data in self.published for raw in unpack(data, 1 << 20)]


@pytest.fixture
def me(tmp_path: Path) -> Replica:
    with RecordStore.open(tmp_path) as store:
        yield Replica(SigningKey.generate(), store, roots=(), max_hops=3, held_limit=100)


@asynccontextmanager
async def running(replica: Replica, **options: object) -> AsyncIterator[tuple[RecordingHost, GossipService]]:
    limits = options.pop("limits", Limits())
    host = RecordingHost()
    service = GossipService(host, replica, network=NETWORK, limits=limits, linger=LINGER, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        yield host, service
        nursery.cancel_scope.cancel()


async def test_a_lone_record_lingers_then_goes_out_alone(me: Replica, autojump_clock: trio.testing.MockClock) -> None:
    async with running(me) as (host, service):
        start = trio.current_time()
        record = me.issue("vouch", vouch())
        await trio.sleep(1)
        assert host.published == [(start + LINGER, pack([record.raw], 65536)[0])]
        assert (service.stats().published_messages, service.stats().published_records) == (1, 1)


async def test_records_issued_together_share_a_message(me: Replica, autojump_clock: trio.testing.MockClock) -> None:
    async with running(me) as (host, _):
        records = [me.issue("vouch", vouch()) for _ in range(40)]
        await trio.sleep(1)
        assert len(host.published) == 1
        assert host.records_published() == [r.raw for r in records]


async def test_a_full_message_goes_out_without_lingering(me: Replica, autojump_clock: trio.testing.MockClock) -> None:
    async with running(me, limits=Limits(gossip_batch_bytes=2000)) as (host, _):
        start = trio.current_time()
        records = [me.issue("vouch", vouch()) for _ in range(20)]  # ~300 bytes each: 6 to a message
        await trio.sleep(1)
        times = [t - start for t, _ in host.published]
        assert len(times) > 2 and times == [0] * (len(times) - 1) + [LINGER]  # only the last, partial one waits
        assert host.records_published() == [r.raw for r in records]
        assert all(len(data) <= 2000 for _, data in host.published)


async def test_a_burst_beyond_the_org_rate_is_paced_in_dense_messages_and_never_dropped(
    me: Replica, autojump_clock: trio.testing.MockClock
) -> None:
    rate = 50.0
    async with running(me, limits=Limits(org_records_per_second=rate)) as (host, service):
        start = trio.current_time()
        records = [me.issue("vouch", vouch()) for _ in range(400)]
        await trio.sleep(10)
        assert host.records_published() == [r.raw for r in records]
        sent = 0
        for t, data in host.published:
            sent += len(unpack(data, 65536))
            assert sent <= rate * 1.0 + rate * (t - start) + 1e-6  # one second of burst, then the rate
        assert len(host.published) <= 400 / rate + 1
        assert service.stats().queued_records == 0


async def test_only_our_own_records_are_published(me: Replica, autojump_clock: trio.testing.MockClock) -> None:
    partner = Org()
    me.issue("vouch", vouch_body(partner.did, 0.9, "org-peer"))
    async with running(me) as (host, _):
        assert me.accept([partner.record(), partner.record()]).accepted
        await trio.sleep(1)
        assert host.published == []


async def test_stored_records_handed_to_publish_stored_go_out_as_given_though_we_sign_nothing(
        me: Replica, autojump_clock: trio.testing.MockClock) -> None:
    """What a start after `vouchnet key rotate` hands over (the two records linking its keys, one of them another
    key's) is published once, in the order given, after lingering as our own records do, with no record of ours to
    carry it."""
    linking = [Org().record("org", org_body("org", "test", next=me.did)).raw, Org().record().raw]
    async with running(me) as (host, service):
        start = trio.current_time()
        service.publish_stored(linking)
        service.publish_stored([])
        await trio.sleep(1)
        assert host.published == [(start + LINGER, pack(linking, 65536)[0])]
        assert service.stats().published_records == 2 and service.stats().queued_records == 0


async def test_records_after_a_gap_are_held_and_the_gap_reported(
    me: Replica, autojump_clock: trio.testing.MockClock
) -> None:
    partner = Org()
    me.issue("vouch", vouch_body(partner.did, 0.9, "org-peer"))
    chain = [partner.record() for _ in range(4)]
    reported: list[tuple[str, dict]] = []
    async with running(me, on_gaps=lambda peer, gaps: reported.append((peer, gaps))) as (host, service):
        data = pack([r.raw for r in chain[2:]], 65536)[0]
        assert host.validator("12D3KooWForwarder", data) is Verdict.ACCEPT
        await host.inbox.send(Received("12D3KooWOrigin", data))
        await trio.sleep(1)
        [(origin, gaps)] = reported
        first, last = gaps[partner.did]
        assert (origin, list(gaps), first) == ("12D3KooWOrigin", [partner.did], 1) and last >= 2
        assert (service.stats().records_held, me.held_count) == (2, 2)
        me.accept(chain[:2])  # what sync would fetch
        assert me.store.head(partner.did).seq == 4


async def test_a_record_of_our_key_conflicting_with_ours_that_a_peer_gossips_is_listed_with_its_bytes(
    me: Replica, autojump_clock: trio.testing.MockClock
) -> None:
    """Proof that our key signed twice at one seq, relayed to us: not stored, no evidence signed against our own org,
    but listed (gossip.own_records) with the peer it came from."""
    ours = me.issue("vouch", vouch())
    theirs = Org(key=me.key).fork(ours.seq, None)
    async with running(me) as (host, service):
        data = pack([theirs.raw], 65536)[0]
        host.validator("12D3KooWThief", data)
        await host.inbox.send(Received("12D3KooWThief", data))
        await trio.sleep(1)
    assert [(r.id, r.peer, r.conflicts_with, me.own_records.cose(r.number)) for r in me.own_records.listed()] == [
        (theirs.id, "12D3KooWThief", ours.id, theirs.raw)]
    assert me.own_from_peers == 1 and me.store.size == 1


async def test_records_a_full_disk_cannot_store_are_dropped_and_the_service_runs_on(
    me: Replica, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's error out of a delivery stopped the gossip service, and with it the whole node (and again at
    each start, as start-up sync brought records while the disk stayed full). Peers and sync bring them again."""
    def full(entries: object) -> None:
        raise LedgerError("records.ledger: append: disk I/O error")

    partner = Org()
    me.issue("vouch", vouch_body(partner.did, 0.9, "org-peer"))
    chain = [partner.record() for _ in range(2)]
    async with running(me) as (host, service):
        for record in chain:
            data = pack([record.raw], 65536)[0]
            with monkeypatch.context() as disk:
                if record is chain[0]:
                    disk.setattr(me.store.ledger, "append", full)
                await host.inbox.send(Received("12D3KooWOrigin", data))
                await trio.sleep(1)
        assert me.store.head(partner.did) is None  # the second waits for the first, which was not stored
        await host.inbox.send(Received("12D3KooWOrigin", pack([chain[0].raw], 65536)[0]))
        await trio.sleep(1)
        assert me.store.head(partner.did).seq == 2
        assert service.stats().records_unstored == 1


# --- real py-libp2p hosts on loopback ------------------------------------------------------------------


@dataclass
class Node:
    host: Host
    replica: Replica
    service: GossipService
    heard: Heard


@asynccontextmanager
async def cluster(
    tmp_path: Path,
    n: int,
    *,
    links: list[tuple[int, int]] | None = None,
    roots: Callable[[list[str], int], tuple[str, ...]] = lambda dids, i: tuple(dids),
    limits: Limits = Limits(),
    limits_of: dict[int, Limits] | None = None,
) -> AsyncIterator[list[Node]]:
    """n nodes (host, replica over its own store, gossip service), linked (default: a line) and meshed; node i has
    `limits_of[i]`, if given, else `limits`."""
    links = links if links is not None else [(i, i + 1) for i in range(n - 1)]
    seeds = [os.urandom(32) for _ in range(n)]
    dids = [did_key(bytes(SigningKey(seed).verify_key)) for seed in seeds]
    async with AsyncExitStack() as stack:
        nodes = []
        stores = stack.enter_context(ExitStack())
        nursery = await stack.enter_async_context(trio.open_nursery())
        for i, seed in enumerate(seeds):
            host = await stack.enter_async_context(open_host(seed, LOOPBACK))
            (tmp_path / f"node{i}").mkdir()
            store = stores.enter_context(RecordStore.open(tmp_path / f"node{i}"))
            replica = Replica(SigningKey(seed), store, roots=roots(dids, i), max_hops=3, held_limit=1000)
            service = GossipService(host, replica, network=NETWORK, limits=(limits_of or {}).get(i, limits),
                                    linger=LINGER)
            await nursery.start(service.run)
            nodes.append(Node(host, replica, service, Heard(replica)))
        await link(*[(nodes[i].host, nodes[j].host) for i, j in links])
        yield nodes
        nursery.cancel_scope.cancel()


async def link(*pairs: tuple[Host, Host]) -> None:
    for a, b in pairs:
        await a.connect(b.listen_addrs[0])
    for a, b in pairs:
        await a.wait_for_mesh(TOPIC, b.peer_id)
        await b.wait_for_mesh(TOPIC, a.peer_id)


@asynccontextmanager
async def attacker(seed: bytes | None = None) -> AsyncIterator[Host]:
    """A peer that joins the records topic and publishes whatever it likes (it validates nothing)."""
    async with open_host(seed or os.urandom(32), LOOPBACK) as host:
        await host.subscribe(TOPIC, lambda peer, data: True)
        yield host


@pytest.mark.slow
async def test_a_vouch_issued_at_one_node_is_accepted_at_all_others(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with cluster(tmp_path, 4) as nodes:  # a line: nodes 2 and 3 hear it only through relays
            record = nodes[0].replica.issue("vouch", vouch())
            for node in nodes[1:]:
                await node.heard.all_of([record])
                assert node.replica.store.get(record.id) == record.raw


@pytest.mark.slow
async def test_a_burst_of_500_records_arrives_complete_at_every_node(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with cluster(tmp_path, 4, links=[(0, 1), (0, 2), (1, 2), (2, 3)]) as nodes:
            burst = [nodes[1].replica.issue("vouch", vouch()) for _ in range(500)]
            for node in nodes:
                await node.heard.all_of(burst)
                assert node.replica.store.heads()[nodes[1].replica.did] == 500
                assert node.service.stats().gate.rejected == dict.fromkeys(node.service.stats().gate.rejected, 0)
            assert nodes[1].service.stats().published_messages < 20  # batched, not 500 messages


FLOOD = 200


def tampered(record: Record) -> bytes:
    raw = bytearray(record.raw)
    raw[-1] ^= 1  # a byte of the signature
    return bytes(raw)


@pytest.mark.slow
async def test_a_peer_flooding_invalid_messages_is_penalised_and_honest_records_still_arrive(tmp_path: Path) -> None:
    stranger = Org()
    threshold = HostConfig().scoring.publish_threshold
    with trio.fail_after(30):
        async with cluster(tmp_path, 3, links=[(0, 1), (1, 2), (0, 2)]) as nodes, attacker() as flooder:
            await link(*[(flooder, node.host) for node in nodes[:2]])
            flooding = trio.Event()
            async with trio.open_nursery() as nursery:

                async def flood() -> None:
                    for i in range(FLOOD):
                        garbage = [tampered(stranger.record()), os.urandom(100)][i % 2]
                        await flooder.publish(TOPIC, encode([garbage]))
                        if i == 20:
                            flooding.set()

                nursery.start_soon(flood)
                await flooding.wait()
                honest = [nodes[2].replica.issue("vouch", vouch()) for _ in range(50)]
                for node in nodes:
                    await node.heard.all_of(honest)
            for node in nodes[:2]:
                await until(lambda: node.host.peer_score(flooder.peer_id) < threshold)
                rejected = node.service.stats().gate.rejected
                assert 5 <= sum(rejected.values()) < FLOOD / 2  # below the threshold, the rest cost no check
            late = nodes[0].replica.issue("vouch", vouch())
            for node in nodes[1:]:
                await node.heard.all_of([late])


@pytest.mark.slow
async def test_an_org_flooding_past_its_rate_is_penalised_and_the_honest_peer_relaying_its_flood_is_not(
    tmp_path: Path,
) -> None:
    # The relayer (node 0) allows the org more than the judge (node 1) does, so it relays what the judge finds over the
    # org's rate: ignored when the relayer brings it, rejected when the org itself does (GossipSub v1.1 IGNORE).
    seed = os.urandom(32)
    org = Org(key=SigningKey(seed))
    flood = [encode([org.record().raw]) for _ in range(FLOOD // 10)]
    # A burst of 1 record, and not one more within the test: at 1 a second (a burst of 2), a loaded machine took 3-4 s
    # to bring the flood to the judge, which let 3-4 more in, so fewer than all but 2 were ignored and the test hung.
    strict = Limits(org_records_per_second=1 / 60)
    threshold = HostConfig().scoring.publish_threshold
    with trio.fail_after(30):
        async with cluster(tmp_path, 2, limits_of={1: strict}) as nodes, attacker(seed) as flooder:
            relayer, judge = nodes
            await link((flooder, relayer.host), (flooder, judge.host))
            for data in flood:
                await flooder.publish(TOPIC, data)
            await until(lambda: relayer.service.stats().gate.accepted == len(flood))
            await until(lambda: judge.host.peer_score(flooder.peer_id) < threshold)
            await until(lambda: judge.service.stats().gate.ignored["org_rate"] >= len(flood) - 2)
            assert judge.host.peer_score(relayer.host.peer_id) == 0
            assert judge.service.stats().gate.rejected["org_rate"] >= 6  # from the org itself, till it was cut off
            late = relayer.replica.issue("vouch", vouch())  # the relayer's own records still pass the judge
            await judge.heard.all_of([late])


@pytest.mark.slow
async def test_garbage_of_every_kind_never_takes_a_node_down(tmp_path: Path) -> None:
    stranger = Org()
    garbage = [
        os.urandom(1000),  # not CBOR
        encode({"records": [stranger.record().raw]}),  # CBOR, not a batch
        encode([1, 2, 3]),  # a batch of no records
        bytes(100_000),  # over the batch limit (but under the host's)
        encode([b"not a record"]),
        encode([stranger.record().raw, tampered(stranger.record())]),  # one valid record, one forged
    ]
    with trio.fail_after(20):
        async with cluster(tmp_path, 2) as nodes, attacker() as sender:
            await link((sender, nodes[0].host))
            for data in garbage:
                await sender.publish(TOPIC, data)
            stats = nodes[0].service.stats
            await until(lambda: sum(stats().gate.rejected.values()) == len(garbage))
            assert stats().gate.rejected == {"oversized": 1, "malformed": 3, "invalid_record": 2, "org_rate": 0}
            assert nodes[0].host.stats().validator_errors == 0  # the validator never raised
            record = nodes[0].replica.issue("vouch", vouch())
            await nodes[1].heard.all_of([record])
            assert nodes[1].service.stats().gate.rejected == dict.fromkeys(stats().gate.rejected, 0)  # not relayed


@pytest.mark.slow
async def test_records_from_outside_a_node_s_horizon_are_relayed_but_not_stored_there(tmp_path: Path) -> None:
    def roots(dids: list[str], i: int) -> tuple[str, ...]:
        return (dids[0],) if i == 2 else ()  # node 2 trusts node 0; node 1 trusts no one but itself

    with trio.fail_after(20):
        async with cluster(tmp_path, 3, roots=roots) as nodes:  # a line: 0 - 1 - 2
            record = nodes[0].replica.issue("vouch", vouch())
            await nodes[2].heard.all_of([record])
            await until(lambda: nodes[1].service.stats().records_outside_horizon == 1)
            assert not nodes[1].replica.store.has(record.id)
            assert nodes[1].service.stats().gate.rejected == dict.fromkeys(nodes[1].service.stats().gate.rejected, 0)
