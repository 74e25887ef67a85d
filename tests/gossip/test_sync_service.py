"""Catch-up sync between real libp2p hosts on loopback: catching up after being offline, partitions healing,
equivocation flagged everywhere, and hostile peers on the sync protocol, as client and as server."""

from __future__ import annotations

import os

import pytest
import trio

from gossip.frames import encode_uvarint
from gossip.host import StreamError, open_host, peer_id_from_public_key
from gossip.sync_messages import SYNC_PROTOCOL, HeadsPage, HeadsRequest, RecordsPage, decode_request, encode_message
from gossip.sync_service import SyncService
from ledger import LedgerError
from node.config import Limits
from vouching import revoke_body, vouch_body
from vouching.cbor import encode

from ..factories import Org, new_did
from .nodes import LOOPBACK, identities, ledger_verifies, running, until

pytestmark = pytest.mark.slow


def issue(node, count: int) -> None:
    for _ in range(count):
        node.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))


async def _round_over(sync: SyncService) -> None:
    """Wait until a full round of `sync`'s with some peer is over (check what it should have done first: one over
    before the call is not waited for)."""
    over = trio.Event()

    def told(peer: str) -> None:
        over.set()

    sync.round_over_listeners.append(told)
    try:
        await over.wait()
    finally:
        sync.round_over_listeners.remove(told)


CHECKED_BY = {"the event loop": {}, "worker threads": {"verify_threads": 2},
              "a worker process": {"verify_processes": 1}}


@pytest.mark.parametrize("checked_by", ["the event loop", "a worker process"])
async def test_a_node_offline_while_500_records_were_issued_catches_up_on_reconnect(tmp_path, checked_by):
    a, b = identities(tmp_path, 2)
    roots = (a.did, b.did)
    with trio.fail_after(60):
        async with running(a, roots) as node_a:
            async with running(b, roots) as node_b:
                await node_b.host.connect(node_a.addr)
                issue(node_a, 3)
                await until(lambda: node_b.replica.store.heads().get(a.did) == 3, [node_b])
            size_before = 3
            issue(node_a, 500)  # b is offline
            limits = Limits(sync_page_records=50)  # the node's own limits
            async with running(b, roots, limits=limits, **CHECKED_BY[checked_by]) as node_b:
                await node_b.host.connect(node_a.addr)  # the connection alone starts the catch-up
                await until(lambda: node_b.replica.store.heads().get(a.did) == 503, [node_b])
                assert node_b.records() == node_a.records()
                assert ledger_verifies(node_b)
                ledger = node_b.replica.store.ledger
                assert len(ledger.consistency_proof(size_before, ledger.size)) > 0  # it grew from what it had
                assert node_b.sync.stats.records_fetched == 500
                assert node_b.sync.limits.page_records == 50


async def test_two_groups_that_were_apart_converge_to_one_record_set(tmp_path):
    ids = identities(tmp_path, 4)
    roots = tuple(i.did for i in ids)
    with trio.fail_after(60):
        async with (
            running(ids[0], roots, sync_interval=0.5) as n0,
            running(ids[1], roots, sync_interval=0.5) as n1,
            running(ids[2], roots, sync_interval=0.5) as n2,
            running(ids[3], roots, sync_interval=0.5) as n3,
        ):
            nodes = [n0, n1, n2, n3]
            await n0.host.connect(n1.addr)  # group one
            await n2.host.connect(n3.addr)  # group two
            for node in nodes:
                issue(node, 20)
            await until(lambda: n0.records() == n1.records() and n2.records() == n3.records(), nodes)
            assert n0.records() != n2.records()
            await n1.host.connect(n2.addr)  # the bridge
            await until(lambda: all(node.records() == n0.records() for node in nodes) and len(n0.records()) == 80,
                        nodes)
            assert all(ledger_verifies(node) for node in nodes)


async def test_an_org_that_signs_two_records_with_one_seq_is_flagged_at_every_node(tmp_path):
    ids = identities(tmp_path, 3)
    cheat = Org()
    roots = (*(i.did for i in ids), cheat.did)
    honest = [cheat.record() for _ in range(3)]
    other_branch = cheat.fork(3, honest[1].id)
    with trio.fail_after(60):
        async with (
            running(ids[0], roots, sync_interval=0.5) as n0,
            running(ids[1], roots, sync_interval=0.5) as n1,
            running(ids[2], roots, sync_interval=0.5) as n2,
        ):
            nodes = [n0, n1, n2]
            n0.replica.accept(honest)
            n2.replica.accept(honest[:2] + [other_branch])
            await n0.host.connect(n1.addr)  # a line: 0 - 1 - 2, so node 1 hears both branches
            await n1.host.connect(n2.addr)
            await until(lambda: all(cheat.did in node.replica.flagged for node in nodes), nodes)


async def test_a_record_of_a_node_s_key_conflicting_with_its_own_that_sync_brings_is_listed_with_its_bytes(tmp_path):
    """Another copy of node 0's key signed a second record at the seq of node 0's last, and node 1 holds it: node 0
    fetches it as evidence of a fork, signs none against its own org, and lists it with the peer it came from."""
    a, b = identities(tmp_path, 2)
    roots = (a.did, b.did)
    with trio.fail_after(60):
        async with running(a, roots, sync_interval=0.5) as n0, running(b, roots, sync_interval=0.5) as n1:
            ours = n0.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
            theirs = Org(key=n0.replica.key).fork(ours.seq, None)
            n1.replica.accept([theirs])
            await n0.host.connect(n1.addr)
            while not n0.replica.own_records.listed():  # (listed as the session fetching it accepts it)
                await _round_over(n0.sync)
            assert [
                (r.id, r.peer, r.conflicts_with, n0.replica.own_records.cose(r.number))
                for r in n0.replica.own_records.listed()] == [
                (theirs.id, n1.host.peer_id, ours.id, theirs.raw)]
            assert n0.replica.own_from_peers == 1 and not n0.replica.store.has(theirs.id)


async def test_garbage_on_the_sync_protocol_cannot_crash_a_node(tmp_path):
    a, b = identities(tmp_path, 2)
    roots = (a.did, b.did)
    with trio.fail_after(40):
        async with running(a, roots) as node, open_host(os.urandom(32), LOOPBACK) as attacker:
            issue(node, 5)
            await attacker.connect(node.addr)
            garbage = [
                b"\xff\xfe not cbor",
                encode({"t": "heads", "after": 7, "limit": 1}),
                encode({"t": "get", "ranges": [["x", 5, 1]], "limit": 1, "bytes": 1}),
                encode([1, 2, 3]),
            ]
            for frame in garbage:
                async with await attacker.open_stream(node.host.peer_id, SYNC_PROTOCOL) as stream:
                    await stream.write_frame(frame)
                    assert b"error" in await stream.read_frame(max_size=4096)  # told why, then closed
                    assert await stream.read_frame(max_size=4096) is None
            async with await attacker.open_stream(node.host.peer_id, SYNC_PROTOCOL) as stream:
                await stream.write(encode_uvarint(100 * 1024 * 1024))  # a frame larger than any limit
                with pytest.raises(StreamError):
                    await stream.read_frame(max_size=4096)
            # still serving, correctly
            async with await attacker.open_stream(node.host.peer_id, SYNC_PROTOCOL) as stream:
                await stream.write_frame(encode_message(HeadsRequest("", 10)))
                assert a.did.encode() in await stream.read_frame(max_size=1 << 20)
            assert node.sync.stats.errors["malformed"] == 4 and node.sync.stats.errors["limit"] == 1


@pytest.mark.parametrize("checked_by", list(CHECKED_BY))
async def test_a_peer_that_serves_invalid_records_is_disconnected(tmp_path, caplog, checked_by):
    (a,) = identities(tmp_path, 1)
    fake = Org()
    valid = [fake.record().raw for _ in range(2)]
    forged = bytearray(fake.record().raw)
    forged[-1] ^= 1

    async def hostile_server(stream) -> None:
        while (frame := await stream.read_frame(max_size=1 << 20)) is not None:
            if isinstance(decode_request(frame), HeadsRequest):
                await stream.write_frame(encode_message(HeadsPage((), more=False)))
            else:
                await stream.write_frame(encode_message(RecordsPage((*valid, bytes(forged)), more=False)))

    with trio.fail_after(40):
        async with (
            running(a, (a.did, fake.did), **CHECKED_BY[checked_by]) as node,
            open_host(os.urandom(32), LOOPBACK) as attacker,
        ):
            attacker.set_stream_handler(SYNC_PROTOCOL, hostile_server)
            events = node.host.peer_events()
            await node.host.connect(attacker.listen_addrs[0])
            await node.sync.fetch_gaps(attacker.peer_id, {fake.did: (1, 5)})
            assert node.sync.stats.errors["invalid_record"] == 1
            assert "records[2]: " in caplog.text  # the forged one, wherever the page was checked
            assert node.sync.stats.peers_disconnected == 1
            async for event in events:
                if not event.connected:
                    break
            assert attacker.peer_id not in node.host.connected_peers()
            assert node.replica.store.size == 0


async def test_gaps_gossip_reports_are_fetched_from_the_peer_that_has_them(tmp_path):
    a, b = identities(tmp_path, 2)
    org = Org()
    chain = [org.record() for _ in range(8)]
    roots = (a.did, b.did, org.did)
    with trio.fail_after(30):
        async with running(a, roots) as node_a, running(b, roots) as node_b:
            node_b.replica.accept(chain)
            await node_a.host.connect(node_b.addr)
            await until(lambda: node_a.records() == node_b.records(), [node_a])  # the round on connecting
            newer = [org.record() for _ in range(4)]
            node_b.replica.accept(newer)
            outcome = node_a.replica.accept(newer[2:])  # gossip delivered the last two first
            assert node_a.replica.held_count == 2
            node_a.sync.request_gaps(node_b.host.peer_id, outcome.gaps)  # what the gossip service calls
            await until(lambda: node_a.replica.store.heads().get(org.did) == 12, [node_a])
            assert node_a.replica.held_count == 0 and node_a.sync.stats.gap_requests == 1

            later = [org.record() for _ in range(3)]
            node_b.replica.accept(later)
            outcome = node_a.replica.accept(later[1:])
            absent = peer_id_from_public_key(bytes(32))  # the records' publisher, not connected to us
            node_a.sync.request_gaps(absent, outcome.gaps)
            await until(lambda: node_a.replica.store.heads().get(org.did) == 15, [node_a])  # from node b instead


async def test_an_org_entering_the_horizon_has_its_whole_history_fetched_at_once(tmp_path):
    a, b = identities(tmp_path, 2)
    org = Org()
    history = [org.record() for _ in range(10)]
    with trio.fail_after(30):
        async with running(a, (a.did, b.did)) as node_a, running(b, (b.did, org.did)) as node_b:
            node_b.replica.accept(history)
            issue(node_b, 1)
            await node_a.host.connect(node_b.addr)
            await until(lambda: b.did in node_a.replica.store.heads(), [node_a])  # the round on connecting
            assert org.did not in node_a.replica.store.heads()  # outside a's horizon: not fetched
            node_a.replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))  # no sync round is due for 30 s
            await until(lambda: node_a.replica.store.heads().get(org.did) == 10, [node_a])


async def test_an_org_that_leaves_the_horizon_and_comes_back_has_what_it_issued_meanwhile_fetched(tmp_path):
    a, b = identities(tmp_path, 2)
    org = Org()
    with trio.fail_after(25):  # sooner than the first periodic sync round (30 s)
        async with running(a, (a.did, b.did)) as node_a, running(b, (b.did, org.did)) as node_b:
            node_b.replica.accept([org.record() for _ in range(3)])
            vouch = node_a.replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
            await node_a.host.connect(node_b.addr)
            await until(lambda: node_a.replica.store.heads().get(org.did) == 3, [node_a])
            node_a.replica.issue("revoke", revoke_body(vouch.id, "paused"))
            node_b.replica.accept([org.record() for _ in range(4)])  # issued while outside a's horizon
            node_a.replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
            await until(lambda: node_a.replica.store.heads().get(org.did) == 7, [node_a])


async def test_a_round_whose_records_a_full_disk_cannot_store_fails_and_the_node_runs_on(tmp_path, monkeypatch):
    """The store's error out of a sync round stopped the sync service, and with it the whole node; and again at
    every start while the disk stayed full, as the start-up sync fetched what the node lacked."""
    def full(entries):
        raise LedgerError("records.ledger: append: disk I/O error")

    a, b = identities(tmp_path, 2)
    roots = (a.did, b.did)
    with trio.fail_after(30):
        async with running(a, roots) as node_a, running(b, roots) as node_b:
            issue(node_b, 5)
            with monkeypatch.context() as disk:
                disk.setattr(node_a.replica.store.ledger, "append", full)
                await node_a.host.connect(node_b.addr)
                while not node_a.sync.stats.errors["storage"]:  # (no record accepted wakes `until`)
                    await _round_over(node_a.sync)
            assert node_a.replica.store.heads().get(b.did) is None
            await node_a.sync.sync_with(node_b.host.peer_id)
            assert node_a.replica.store.heads().get(b.did) == 5
