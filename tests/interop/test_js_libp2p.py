"""A js-libp2p peer (another language's libp2p, with its defaults) and a vouchnet node: they agree on the PeerID an
org key gives, connect over Noise and yamux, mesh on GossipSub, and carry record batches both ways, more bytes than
one yamux window, so our window-update schedule (gossip.host quirk 21) meets another implementation's; the node
keeps the backoff a js peer asks for and neither scores the other down; a js peer relays one node's records to
another; it catches up over /vouchnet/sync/1 with CBOR from another library (cborg); and the node witnesses a
checkpoint signed in JavaScript from the C2SP specs."""

from __future__ import annotations

import os
import time

import pytest
import trio
from nacl.signing import SigningKey

from gossip.batch import max_message_size, pack, unpack
from gossip.checkpoints import RECORDS_LOG
from gossip.host import ProtocolNotSupported, peer_id_from_public_key
from gossip.service import records_topic
from gossip.sync_messages import SYNC_PROTOCOL
from ledger import CosignatureVerifier, Ed25519Signer, cosigner_name, log_origin, open_checkpoint
from node.config import Limits
from node.daemon import Node
from vouching import verify_record, vouch_body

from ..factories import Org
from ..node.in_process import accepting, running
from .js_peer import JsPeer, js_peer

pytestmark = pytest.mark.slow
YAMUX_WINDOW = 256 * 1024  # the initial receive window every yamux stream starts with
DEFAULT_BATCH_BYTES = Limits().gossip_batch_bytes


def _an_org() -> tuple[bytes, Org]:
    seed = os.urandom(32)
    return seed, Org(key=SigningKey(seed), ts=int(time.time() * 1000))


async def test_a_js_libp2p_peer_keyed_by_an_org_key_has_the_peer_id_vouchnet_derives() -> None:
    seed, org = _an_org()
    async with js_peer(seed) as js:
        assert js.peer_id == peer_id_from_public_key(bytes(org.key.verify_key))


async def test_a_js_libp2p_org_joins_a_node_and_record_batches_flow_both_ways(tmp_path) -> None:
    seed, org = _an_org()
    topic = records_topic("test")
    async with running(tmp_path / "node", roots=(org.did,)) as node, js_peer(seed) as js:  # within its horizon
        with trio.fail_after(30):
            dialed = await js.command(dial=node.host.listen_addrs[0])
            assert (dialed["peer"], dialed["encryption"], dialed["multiplexer"]) == (
                node.host.peer_id, "/noise", "/yamux/1.0.0")
            await js.command(subscribe=topic)
            await node.host.wait_for_mesh(topic, js.peer_id)
            await js.command(await_mesh={"topic": topic, "peer": node.host.peer_id})

            # js -> vouchnet: the js org's own chain, in batches that together outgrow one yamux window.
            records = [org.vouch(Org().did) for _ in range(900)]
            messages = pack([r.raw for r in records], DEFAULT_BATCH_BYTES)
            assert sum(map(len, messages)) > YAMUX_WINDOW
            with accepting(node, {r.id for r in records}) as all_accepted:
                for data in messages:
                    assert (await js.command(publish={"topic": topic, "data": data.hex()}))["recipients"] == 1
                await all_accepted.wait()
            assert node.replica.store.head(org.did).seq == len(records)

            # vouchnet -> js: a vouch the node signs reaches the js peer, in a batch whose records verify.
            vouch = node.replica.issue("vouch", vouch_body(Org().did, 0.5, "org-peer"))
            await _until_received(js, topic, node.host.peer_id, vouch.id)
        await _never_penalised(js, node)


async def test_a_js_libp2p_peer_relays_records_between_two_nodes_that_never_meet(tmp_path) -> None:
    topic = records_topic("test")
    async with running(tmp_path / "a") as a, running(tmp_path / "b", roots=(a.did,)) as b, js_peer() as js:
        await b.set_blocked_peers([a.host.peer_id])  # b never connects to a: what a signs reaches b through js
        b.replica.accept([verify_record(raw) for raw in a.replica.store.issuer_range(a.did, 1, 100)])  # a's past
        with trio.fail_after(30):
            await js.command(subscribe=topic)
            for node in (a, b):
                await js.command(dial=node.host.listen_addrs[0])
                await node.host.wait_for_mesh(topic, js.peer_id)
                await js.command(await_mesh={"topic": topic, "peer": node.host.peer_id})
            vouch = a.replica.issue("vouch", vouch_body(Org().did, 0.5, "org-peer"))
            with accepting(b, {vouch.id}) as got:  # listening before a's message can arrive: no await between
                await got.wait()  # a's message, signed by a under StrictSign, forwarded by js-libp2p
        assert a.host.peer_id not in b.host.connected_peers()
        for node in (a, b):
            await _never_penalised(js, node)
        assert b.replica.store.get(vouch.id) == vouch.raw
        with pytest.raises(ProtocolNotSupported):  # what b's sync heard when js connected, asked again to be sure
            await b.host.open_stream(js.peer_id, SYNC_PROTOCOL)
        assert [(p["peer_id"], p["serves_sync"]) for p in b.peers()] == [(js.peer_id, False)]  # GET /v1/peers


async def test_a_node_keeps_the_backoff_a_js_libp2p_peer_asks_for_when_it_leaves_a_topic(tmp_path) -> None:
    topic = records_topic("test")
    async with running(tmp_path / "node") as node, js_peer() as js:
        with trio.fail_after(30):
            await js.command(dial=node.host.listen_addrs[0])
            await js.command(subscribe=topic)
            await node.host.wait_for_mesh(topic, js.peer_id)
            await js.command(await_mesh={"topic": topic, "peer": node.host.peer_id})
            await js.command(unsubscribe=topic)  # a PRUNE to the node, which asks it to stay away for 10 s
            await js.command(subscribe=topic)  # back at once: a node that ignored the backoff would GRAFT now
            await js.command(heartbeats=4)  # the node's heartbeat (1 s) has had its chances meanwhile
        assert js.peer_id not in node.host.mesh_peers(topic)
        await _never_penalised(js, node)  # js-libp2p takes points for a GRAFT during a backoff


async def test_a_node_witnesses_a_checkpoint_a_js_libp2p_org_signed(tmp_path) -> None:
    seed, org = _an_org()
    root = os.urandom(32)
    async with running(tmp_path / "node") as node, js_peer(seed) as js:
        node.replica.issue("vouch", vouch_body(org.did, 0.8, "org-peer"))  # a witness follows the orgs it replicates
        with trio.fail_after(30):
            await js.command(dial=node.host.listen_addrs[0])
            answer = await js.command(cosign={"peer": node.host.peer_id, "network": "test", "size": 5,
                                              "root": root.hex()})
    assert answer["reply"]["t"] == "cosigned", answer["reply"]
    # A note signed in JavaScript from the C2SP specs opened here, and our cosignature verifies over it.
    note = bytes.fromhex(answer["note"])
    origin = log_origin("test", org.did, RECORDS_LOG)
    checkpoint, _ = open_checkpoint(note, [Ed25519Signer(origin, org.key).verifier()])
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (origin, 5, root)
    cosigner = CosignatureVerifier(cosigner_name(node.did), bytes(node.key.verify_key))
    open_checkpoint(note + answer["reply"]["sig"].encode(), [cosigner])  # the line ends in its newline


async def test_a_js_libp2p_peer_catches_up_from_a_node_over_the_sync_protocol(tmp_path) -> None:
    seed, _ = _an_org()
    async with running(tmp_path / "node") as node, js_peer(seed) as js:
        issued = [node.replica.issue("vouch", vouch_body(Org().did, 0.5, "org-peer")) for _ in range(300)]
        with trio.fail_after(30):
            await js.command(dial=node.host.listen_addrs[0])
            synced = await js.command(sync={"peer": node.host.peer_id, "issuer": node.did})
        # Requests encoded by another CBOR library passed the node's strict decoder, and its answers decoded there.
        assert {iss: seq for iss, seq, _ in synced["heads"]} == node.replica.store.heads()
        own = [verify_record(bytes.fromhex(raw)) for raw in synced["records"]]
        assert [r.seq for r in own] == list(range(1, node.replica.store.head(node.did).seq + 1))
        assert synced["pages"] >= len(own) // 100  # asked for pages of 100
        assert [r.id for r in own][-len(issued):] == [r.id for r in issued]
        assert [bytes.fromhex(id_) for iss, _, id_ in synced["heads"] if iss == node.did] == [issued[-1].id]


async def _never_penalised(js: JsPeer, node: Node) -> None:
    """Neither side has scored the other below zero: js-libp2p's GossipSub takes points for protocol misconduct
    (a GRAFT during a backoff, IWANTs left unanswered), the node for invalid messages."""
    assert (await js.command(score=node.host.peer_id))["score"] >= 0
    assert node.host.peer_score(js.peer_id) >= 0


async def _until_received(js: JsPeer, topic: str, origin: str, record_id: bytes) -> None:
    """Read the js peer's gossip until a batch from `origin` holds the record; every record must verify."""
    while True:
        topic_got, sender, data = await js.messages.receive()
        assert (topic_got, sender) == (topic, origin)
        if record_id in {verify_record(raw).id for raw in unpack(data, max_message_size(DEFAULT_BATCH_BYTES))}:
            return
