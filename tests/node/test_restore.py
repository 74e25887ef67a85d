"""A node whose data directory was restored from an older copy takes back, from its peers, the records it signed
since, before it signs again: otherwise its next record would be a second one at a seq it already used, and its
org would be flagged as an equivocator everywhere."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx
import pytest
import trio
from nacl.signing import SigningKey

from gossip.checkpoints import CHECKPOINT_FILE
from gossip.host import peer_id_from_public_key
from gossip.replica import Replica
from gossip.service import GossipService
from gossip.store import RecordStore
from gossip.sync_messages import SYNC_PROTOCOL_2, HeadEntry, HeadsPage, RecordsPage, decode_reply, encode_message
from gossip.sync_service import SyncService
from node import cli, daemon
from node.config import NodeConfig, load_config
from node.daemon import Node, StartupError, catch_up_stopped, serve_node
from node.keys import create_org_key, load_org_key
from node.logs import logfmt_fields
from node.rotation import NEXT_KEY_FILE, rotate_key
from node.setup import init_data_dir
from node.taken_back_rotation import TAKEN_BACK_FILE, refusal
from vouching import Record, did_key, org_body, verify_record, vouch_body

from ..factories import Org, new_did
from .in_process import LOOPBACK, holds, records_of, running

pytestmark = pytest.mark.slow


def _org_vouched_by(b, path, **init):
    """A new org's data directory at `path` (`init_data_dir`'s `init` too), its node bootstrapping from `b`, which
    vouches for it (the org inside b's horizon); its config and did."""
    made = init_data_dir(path, network="test", listen=LOOPBACK, api="127.0.0.1:0", bootstrap=(b.host.listen_addrs[0],),
                         **init)
    config = load_config(made.data_dir)  # from its config.toml, as `vouchnet key rotate` reads it
    org = did_key(bytes(load_org_key(config.key_path).verify_key))
    b.replica.issue("vouch", vouch_body(org, 0.9, "org-peer"))
    return config, org


async def _saved_checkpoint(node: Node) -> None:
    """Wait until `node` has saved a checkpoint of its log in its data directory (published: saved first)."""
    saved = trio.Event()
    node.witnessing.listeners.append(lambda note: saved.set())
    if node.witnessing.checkpoint_note() is None:
        await saved.wait()


async def _signed_more(config, b) -> int:
    """Start the node of `config`, sign two vouches, wait until `b` holds them, and stop it; the last seq signed."""
    async with trio.open_nursery() as nursery:
        a = await nursery.start(serve_node, config)
        for _ in range(2):
            a.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
        signed = a.replica.store.head(a.did).seq
        await records_of(b, lambda r: r.iss == a.did and r.seq == signed)
        nursery.cancel_scope.cancel()
    return signed


async def test_a_node_restored_from_an_older_copy_signs_after_what_it_signed_since(tmp_path, caplog):
    async with running(tmp_path / "b", settings={"sync_interval": 0.5}) as b:  # b fetches what gossip misses
        config, org = _org_vouched_by(b, tmp_path / "a")
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                await holds(b, a.replica.store.head(org).id)  # its org record, signed as it started
                nursery.cancel_scope.cancel()
            shutil.copytree(config.data_dir, tmp_path / "backup")
            signed = await _signed_more(config, b)  # on another port: a new org record at start, then two
            shutil.rmtree(config.data_dir)
            shutil.copytree(tmp_path / "backup", config.data_dir)
            with caplog.at_level(logging.CRITICAL, logger="gossip.replica"):
                async with trio.open_nursery() as nursery:
                    a = await nursery.start(serve_node, config)  # and again a new org record, signed after them
                    assert a.replica.own_from_peers == signed - 1 and a.replica.listener_errors == 0
                    assert f"vouchnet_own_records_from_peers {signed - 1}" in a.metrics.render().splitlines()
                    assert a.replica.store.head(org).seq == signed + 1
                    vouch = a.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
                    await records_of(b, lambda r: r.id == vouch.id)
                    nursery.cancel_scope.cancel()
        assert org not in b.replica.flagged and b.replica.store.head(org).seq == signed + 2
        assert "restored from an older copy" in caplog.text
        # The records taken back stay counted across a restart, until the operator acknowledges them.
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                assert f"vouchnet_own_records_from_peers {signed - 1}" in a.metrics.render().splitlines()
                async with httpx.AsyncClient(base_url=a.api_url) as api:
                    listed = (await api.get("/v1/node/own-records")).json()["records"]
                    assert [r["seq"] for r in listed] == list(range(2, signed + 1))
                    assert {r["peer"] for r in listed} == {b.host.peer_id}
                    answer = await api.post("/v1/node/own-records/acknowledge", json={"through": listed[-1]["number"]},
                                            headers={"Authorization": f"Bearer {a.token}"})
                assert answer.json() == {"acknowledged": signed - 1, "unacknowledged": 0}
                nursery.cancel_scope.cancel()
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                assert "vouchnet_own_records_from_peers 0" in a.metrics.render().splitlines()
                nursery.cancel_scope.cancel()


async def test_a_restored_start_far_behind_on_other_orgs_records_signs_once_its_own_are_back(tmp_path, monkeypatch):
    """What the node may sign next depends only on its org's records: its catch-up asks for them first and ends once
    they are in, the rest of the round going on. Here its peer sends no page of another org's records until the start
    has returned. Before: the catch-up ended only with the round, so a node far behind (10^5 records take some 25 s)
    timed out even with an honest peer, and signed at a seq the org may have used."""
    # (b signs no digest meanwhile: gossiped, it would have a fetch of b's gaps wait at the pages held back, first)
    async with running(tmp_path / "b", settings={"sync_interval": 0.5, "epoch_seconds": 3600.0}) as b:
        config, org = _org_vouched_by(b, tmp_path / "a", roots=(b.did,))  # b's records inside a's horizon
        with trio.fail_after(60):
            signed = await _restored_after_signing_more(config, b, tmp_path / "backup")
        others = [b.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator")) for _ in range(300)]
        released = trio.Event()
        write = b.sync._write

        async def others_held_back(stream, frame: bytes) -> None:
            reply = decode_reply(frame, SYNC_PROTOCOL_2)
            if isinstance(reply, RecordsPage) and any(verify_record(raw).iss != org for raw in reply.records):
                await released.wait()
            await write(stream, frame)

        monkeypatch.setattr(b.sync, "_write", others_held_back)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, replace(config, startup_sync_seconds=5.0))
                assert (a.startup_sync, a.sync.stats.rounds) == ("done", 0)  # the round still under way
                assert a.replica.store.head(org).seq == signed + 1  # its org record, after what it signed elsewhere
                released.set()
                await holds(a, others[-1].id)  # the rest of the round
                nursery.cancel_scope.cancel()
        assert org not in b.replica.flagged


async def test_a_restored_start_waits_for_every_holder_it_dials_not_only_the_first_to_answer(tmp_path, monkeypatch):
    """The first holder to answer may name an older head of the org: one offline since the copy was made, or a
    hostile node at a bootstrap address. Here `stale` names the copy's head and `fresh` answers only once that
    proved the records in. Before: the catch-up ended on stale's round, and the node signed its org record at a seq
    the org had used since, which fresh's answer showed a moment later: the org flagged as an equivocator for good."""
    async with running(tmp_path / "fresh", settings={"sync_interval": 0.5}) as fresh, \
            running(tmp_path / "stale", settings={"sync_interval": 0.5},
                    bootstrap=(fresh.host.listen_addrs[0],)) as stale:  # (pulling from fresh what a's gossip missed)
        made = init_data_dir(tmp_path / "a", network="test", listen=LOOPBACK, api="127.0.0.1:0",
                             bootstrap=(fresh.host.listen_addrs[0], stale.host.listen_addrs[0]))
        config = load_config(made.data_dir)
        org = did_key(bytes(load_org_key(config.key_path).verify_key))
        for holder in (fresh, stale):
            holder.replica.issue("vouch", vouch_body(org, 0.9, "org-peer"))
        with trio.fail_after(60):
            await _started_until_held(config, fresh)
            copy_head = fresh.replica.store.head(org)
            shutil.copytree(config.data_dir, tmp_path / "backup")
            signed = await _signed_more(config, fresh)
            await holds(stale, fresh.replica.store.head(org).id)
            shutil.rmtree(config.data_dir)
            shutil.copytree(tmp_path / "backup", config.data_dir)
        write = stale.sync._write

        async def copy_head_named(stream, frame: bytes) -> None:
            reply = decode_reply(frame, SYNC_PROTOCOL_2)
            if isinstance(reply, HeadsPage):
                frame = encode_message(replace(reply, heads=tuple(
                    HeadEntry(org, copy_head.seq, copy_head.id) if head.iss == org else head for head in reply.heads)))
            await write(stream, frame)

        stale_proved = trio.Event()
        told_holders = SyncService._told_holders

        def telling(service, client, peer_id: str) -> bool:
            told = told_holders(service, client, peer_id)
            if told and peer_id == stale.host.peer_id:
                stale_proved.set()
            return told

        fresh_write = fresh.sync._write

        async def heads_after_stale(stream, frame: bytes) -> None:
            if isinstance(decode_reply(frame, SYNC_PROTOCOL_2), HeadsPage):
                await stale_proved.wait()
            await fresh_write(stream, frame)

        # (the wait's bound is not what is tested: a loaded machine)
        monkeypatch.setattr(daemon, "SETTLE_SECONDS", 60.0)
        monkeypatch.setattr(stale.sync, "_write", copy_head_named)
        monkeypatch.setattr(SyncService, "_told_holders", telling)
        monkeypatch.setattr(fresh.sync, "_write", heads_after_stale)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, replace(config, startup_sync_seconds=30.0))
                assert stale_proved.is_set() and a.startup_sync == "done"
                assert a.replica.store.head(org).seq == signed + 1  # its org record, after what it signed elsewhere
                await holds(fresh, a.replica.store.head(org).id)
                nursery.cancel_scope.cancel()
        assert org not in fresh.replica.flagged and org not in stale.replica.flagged


async def test_a_new_org_s_start_signs_once_its_peer_s_heads_name_none_of_its_keys(tmp_path, monkeypatch):
    """A new org has signed nothing to take back: its catch-up ends as soon as the heads of a peer it dials, all read,
    name none of its keys, the rest of the round going on. Here the peer sends no page of its own records until the
    start has returned. Before: it ended only with the round, so a new org joining a network of 10^5 records in its
    horizon timed out and warned."""
    async with running(tmp_path / "b", settings={"epoch_seconds": 3600.0}) as b:
        others = [b.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator")) for _ in range(300)]
        made = init_data_dir(tmp_path / "a", network="test", listen=LOOPBACK, api="127.0.0.1:0",
                             bootstrap=(b.host.listen_addrs[0],), roots=(b.did,))  # b's records inside a's horizon
        released = trio.Event()
        write = b.sync._write

        async def pages_held_back(stream, frame: bytes) -> None:
            if isinstance(decode_reply(frame, SYNC_PROTOCOL_2), RecordsPage):
                await released.wait()
            await write(stream, frame)

        monkeypatch.setattr(b.sync, "_write", pages_held_back)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, replace(load_config(made.data_dir), startup_sync_seconds=5.0))
                assert (a.startup_sync, a.sync.stats.rounds) == ("done", 0)  # the round still under way
                assert a.replica.store.head(a.did).seq == 1  # its org record
                released.set()
                await holds(a, others[-1].id)  # the rest of the round
                nursery.cancel_scope.cancel()


async def test_a_start_waits_for_a_holder_that_a_peer_holding_none_of_its_records_names_to_it(tmp_path):
    """A start's catch-up ends, "unheld", once every peer it dials has answered that it holds none of the org's
    records, but only once their rounds are over: the `org` records a round brings in name peers to dial (peer
    exchange), and one of them may hold what the org signed. Here a's only bootstrap peer b holds none of a's records
    (a is two vouches from b, whose max_hops is 1) but holds the `org` record of c, which vouches for a and holds its
    records; a's data directory holds nothing of c's, so a learns of c from the rest of b's round only."""
    async with running(tmp_path / "c") as c, \
            running(tmp_path / "b", bootstrap=(c.host.listen_addrs[0],), settings={"max_hops": 1}) as b:
        made = init_data_dir(tmp_path / "a", network="test", listen=LOOPBACK, api="127.0.0.1:0",
                             bootstrap=(b.host.listen_addrs[0],), roots=(c.did,))
        config = replace(load_config(made.data_dir), startup_sync_seconds=30.0)
        with RecordStore.open(config.data_dir) as store:  # a has signed (a new org's wait ends at any round)
            Replica(load_org_key(config.key_path), store, roots=(), max_hops=2, held_limit=10).issue(
                "vouch", vouch_body(new_did(), 0.9, "operator"))
            signed = list(store.scan(issuer=made.did))
        c.replica.issue("vouch", vouch_body(made.did, 0.9, "org-peer"))
        assert c.replica.accept(signed).accepted  # (c's node holds a's records: a's node has not run yet)
        b.replica.issue("vouch", vouch_body(c.did, 0.9, "org-peer"))
        with trio.fail_after(60):
            await holds(b, c.replica.store.head(c.did).id)  # (c's records, its `org` record among them)
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                assert a.startup_sync == "done" and c.host.peer_id in a.host.connected_peers()
                assert b.replica.store.head(made.did) is None  # (b holds none of a's records)
                nursery.cancel_scope.cancel()


@pytest.mark.parametrize("way", ["adopt", "contest"])
async def test_a_start_that_takes_back_a_rotation_of_its_key_stops_until_its_operator_adopts_or_contests_it(
        tmp_path, capsys, way):
    """Restored from a copy older than the org's key rotation, a node takes that rotation back as it starts, as it
    would a thief's who rotated a stolen copy of the key while the node was stopped: it signs nothing and stops,
    naming the rotation and the two ways on, until its operator says whose it was (node.taken_back_rotation)."""
    async with running(tmp_path / "b", settings={"sync_interval": 0.5}) as b:
        config, old = _org_vouched_by(b, tmp_path / "a")
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                await holds(b, a.replica.store.head(old).id)
                await _saved_checkpoint(a)  # as a real backup holds: the old key's, which an adopt must set aside
                nursery.cancel_scope.cancel()
            assert old in (config.data_dir / CHECKPOINT_FILE).read_text()
            shutil.copytree(config.data_dir, tmp_path / "backup")
            new = rotate_key(config).new
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                await holds(b, a.replica.store.head(new).id)  # accepted once b holds the rotation: the keys linked
                nursery.cancel_scope.cancel()
            shutil.copytree(config.data_dir, tmp_path / "newer")
            with RecordStore.open(tmp_path / "newer") as store:
                newer = store.head(new).seq
            shutil.rmtree(config.data_dir)
            shutil.copytree(tmp_path / "backup", config.data_dir)
            rotation = verify_record(b.replica.store.at(old, b.replica.store.head(old).seq))
            assert rotation.body.next == new
            for _ in range(2):  # the second start refuses at once, the rotation kept from the first
                with pytest.RaisesGroup(pytest.RaisesExc(StartupError), allow_unwrapped=True,
                                        flatten_subgroups=True) as refused:
                    await serve_node(config)
                message = str(refused.value.exceptions[0] if isinstance(refused.value, BaseExceptionGroup)
                              else refused.value)
                assert f"signed a rotation to {new} on " in message and f"(seq {rotation.seq})" in message
                assert f"`vouchnet key adopt --dir {config.data_dir} FILE`" in message
                assert f"`vouchnet key contest --dir {config.data_dir}`" in message
                with RecordStore.open(config.data_dir) as store:
                    assert store.head(old).seq == rotation.seq - 1 and store.head(new) is None  # nothing signed
            assert old not in b.replica.flagged
            if way == "adopt":
                newer_key = tmp_path / "newer" / "org.key"
                assert cli.main(["key", "adopt", "--dir", str(config.data_dir), str(newer_key)]) == 0
                async with trio.open_nursery() as nursery:
                    a = await nursery.start(serve_node, config)
                    assert a.did == new and a.replica.succession.keys(new) == (old, new)
                    signed = a.replica.store.head(new)  # its org record, after what the key signed in the newer copy
                    assert signed.seq == newer + 1
                    assert a.startup_sync == "done" and a.replica.own_records.adopted is None  # none expected now
                    assert a.replica.own_from_peers == 0
                    await holds(b, signed.id)
                    nursery.cancel_scope.cancel()
                assert not {old, new} & b.replica.flagged
            else:
                assert cli.main(["key", "contest", "--dir", str(config.data_dir)]) == 0
                assert json.loads(capsys.readouterr().out) == {"org": old, "contested": new, "seq": rotation.seq}
                async with trio.open_nursery() as nursery:
                    a = await nursery.start(serve_node, config)
                    assert a.did == old
                    while not {old, new} <= b.replica.flagged:  # b fetches the node's record at the rotation's seq
                        await records_of(b, lambda r: r.kind == "equivocation")
                    nursery.cancel_scope.cancel()


async def test_after_key_adopt_a_start_stopped_before_its_catch_up_ended_takes_back_the_rest_at_the_next_as_expected(
        tmp_path, monkeypatch, caplog):
    """The adopted key's records come back in the start's catch-up sync as expected (INFO, not listed). Here the peer
    sends two pages of them (a record a page, each offered to the replica as the next comes), holds the rest back, and
    the start is stopped, having taken back the first; the next start takes back the rest as expected too. Before: at
    CRITICAL, listed as possibly a thief's, a false alarm to acknowledge."""
    async with running(tmp_path / "b", settings={"sync_interval": 0.5}) as b:
        config, old = _org_vouched_by(b, tmp_path / "a")
        with trio.fail_after(60):
            await _started_until_held(config, b)
            shutil.copytree(config.data_dir, tmp_path / "backup")
            new = rotate_key(config).new
            await _signed_more(config, b)  # the new key's org record, then two vouches
            shutil.copytree(config.data_dir, tmp_path / "newer")
            newer = [verify_record(b.replica.store.at(new, seq)) for seq in range(1, b.replica.store.head(new).seq + 1)]
            shutil.rmtree(config.data_dir)
            shutil.copytree(tmp_path / "backup", config.data_dir)
            with pytest.RaisesGroup(pytest.RaisesExc(StartupError), allow_unwrapped=True, flatten_subgroups=True):
                await serve_node(config)  # the rotation taken back
        assert cli.main(["key", "adopt", "--dir", str(config.data_dir), str(tmp_path / "newer" / "org.key")]) == 0
        pages = {"sent": 0}
        released = trio.Event()
        write = b.sync._write

        async def held_back_after_one(stream, frame: bytes) -> None:
            reply = decode_reply(frame, SYNC_PROTOCOL_2)
            if isinstance(reply, RecordsPage) and any(verify_record(raw).iss == new for raw in reply.records):
                pages["sent"] += 1
                if pages["sent"] > 2:
                    await released.wait()
            await write(stream, frame)

        monkeypatch.setattr(b.sync, "_write", held_back_after_one)
        starting: list[Node] = []
        started = trio.Event()
        take_back = daemon._take_back_own_records

        async def noted(node: Node, *args, **kwargs):
            node.sync._accept_records = 1  # each page offered as the next comes, not once the request ends
            starting.append(node)
            started.set()
            return await take_back(node, *args, **kwargs)

        monkeypatch.setattr(daemon, "_take_back_own_records", noted)
        one_a_page = replace(config, limits=replace(config.limits, sync_page_records=1), startup_sync_seconds=30.0)
        with caplog.at_level(logging.INFO, logger="gossip.replica"), trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_node, one_a_page)
                await started.wait()
                await holds(starting[0], newer[0].id)
                assert starting[0].startup_sync == "pending" and not starting[0].replica.store.has(newer[1].id)
                nursery.cancel_scope.cancel()  # stopped before its catch-up ended
            released.set()
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, one_a_page)
                assert a.startup_sync == "done" and a.replica.store.head(new).seq == len(newer) + 1  # its org record
                assert a.replica.own_from_peers == 0 and a.replica.own_records.listed() == []
                nursery.cancel_scope.cancel()
        said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gossip.replica"]
        assert [level for level, _ in said] == [logging.INFO] * len(said) and len(said) >= 2
        assert all("before `vouchnet key adopt`" in message for _, message in said)
        assert not {old, new} & b.replica.flagged


async def test_a_start_publishes_the_records_linking_its_keys_only_as_its_catch_up_sync_leaves_them(
        tmp_path, monkeypatch):
    """A start after `vouchnet key rotate` publishes the two records linking the keys (node.rotation.unpublished_link)
    once its catch-up sync has decided: restored from a copy made right after the rotation, it takes back what the new
    key signed since and publishes nothing; restored from it again after a second rotation, it takes that rotation
    back and stops, having published nothing; contested, it publishes nothing."""
    published: list[bytes] = []
    publish_stored = GossipService.publish_stored

    def recorded(service: GossipService, raws: list[bytes]) -> None:
        published.extend(raws)
        publish_stored(service, raws)

    monkeypatch.setattr(GossipService, "publish_stored", recorded)
    async with running(tmp_path / "b", settings={"sync_interval": 0.5}) as b:
        config, old = _org_vouched_by(b, tmp_path / "a")

        def restore() -> None:
            shutil.rmtree(config.data_dir)
            shutil.copytree(tmp_path / "backup", config.data_dir)

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                await holds(b, a.replica.store.head(old).id)
                nursery.cancel_scope.cancel()
            new = rotate_key(config).new
            shutil.copytree(config.data_dir, tmp_path / "backup")  # the new key's first record its last
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)  # on another port: an org record after the first
                store = a.replica.store
                assert published == [store.at(old, store.head(old).seq), store.at(new, 1)]
                await holds(b, store.head(new).id)
                nursery.cancel_scope.cancel()
            published.clear()
            restore()
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                assert a.startup_sync == "done" and a.replica.own_from_peers > 0
                nursery.cancel_scope.cancel()
            assert published == []
            latest = rotate_key(config).new
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                await holds(b, a.replica.store.head(latest).id)
                nursery.cancel_scope.cancel()
            published.clear()
            restore()
            with pytest.RaisesGroup(pytest.RaisesExc(StartupError), allow_unwrapped=True, flatten_subgroups=True):
                await serve_node(config)  # the rotation to `latest` taken back
            assert published == []
            assert cli.main(["key", "contest", "--dir", str(config.data_dir)]) == 0
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                assert a.did == new and a.startup_sync == "done"
                nursery.cancel_scope.cancel()
            assert published == []


async def _rotate(*options: str, config) -> tuple[int, str, str]:
    """`vouchnet key rotate` on `config`'s data directory, in a worker thread (it runs trio itself) while the test's
    nodes run on: its exit status, stdout and stderr."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = await trio.to_thread.run_sync(cli.main, ["key", "rotate", "--dir", str(config.data_dir), *options])
        out.seek(0), err.seek(0)
        return status, out.read(), err.read()


async def _started_until_held(config, b) -> None:
    """Start the node of `config`, wait until `b` holds the last record its key signed, and stop it."""
    async with trio.open_nursery() as nursery:
        a = await nursery.start(serve_node, config)
        await holds(b, a.replica.store.head(a.did).id)
        nursery.cancel_scope.cancel()


async def _restored_after_signing_more(config, b, backup) -> int:
    """Start the node of `config` until `b` holds what it signed, copy its data directory to `backup`, have it sign
    more (_signed_more), then put the copy back: a data directory restored from an older copy. The last seq signed."""
    await _started_until_held(config, b)
    shutil.copytree(config.data_dir, backup)
    signed = await _signed_more(config, b)
    shutil.rmtree(config.data_dir)
    shutil.copytree(backup, config.data_dir)
    return signed


async def test_key_rotate_restored_from_an_older_copy_catches_up_and_signs_after_what_the_org_signed_since(tmp_path):
    """Before: `key rotate` signed the rotation at the older copy's head, a seq the org had used since, and every
    node flagged the org as an equivocator for good."""
    async with running(tmp_path / "b", settings={"sync_interval": 0.5}) as b:
        config, old = _org_vouched_by(b, tmp_path / "a")
        with trio.fail_after(60):
            signed = await _restored_after_signing_more(config, b, tmp_path / "backup")
            status, out, err = await _rotate(config=config)
            assert status == 0, err
            new = json.loads(out)["new"]
            assert "catching up" in err and "caught up with a peer: rotating" in err
            # What came back is said as `vouchnet run` says it (before: a bare line, no level, from Python's fallback).
            came_back = [logfmt_fields(line) for line in err.splitlines()
                         if "came from peers: this node did not sign them" in line]
            assert came_back and all((f["level"], f["logger"]) == ("critical", "gossip.replica") for f in came_back)
            with RecordStore.open(config.data_dir) as store:
                rotation = verify_record(store.at(old, store.head(old).seq))
            assert (rotation.seq, rotation.body.next) == (signed + 1, new)
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                assert a.did == new
                await holds(b, a.replica.store.head(new).id)  # accepted once b holds the rotation: the keys linked
                nursery.cancel_scope.cancel()
        assert b.replica.succession.keys(new) == (old, new) and not {old, new} & b.replica.flagged


@asynccontextmanager
async def _silent_peer() -> AsyncIterator[tuple[str, list[int]]]:
    """A bootstrap address whose host accepts connections and never answers; and the list of connections it accepted
    (each a 1), for as long as the block runs."""
    accepted: list[int] = []

    async def hold(stream: trio.SocketStream) -> None:
        accepted.append(1)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(functools.partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        yield f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_from_public_key(bytes(SigningKey.generate().verify_key))}", \
            accepted
        nursery.cancel_scope.cancel()


def _silenced_org(path, peer: str, **init):
    """A new org's data directory whose one bootstrap peer is `peer`, with a catch-up of 0.5 s at most; its config."""
    made = init_data_dir(path, network="test", listen=LOOPBACK, api="127.0.0.1:0", bootstrap=(peer,), **init)
    toml = made.data_dir / "config.toml"
    toml.write_text(toml.read_text().replace("startup_sync_seconds = 10.0", "startup_sync_seconds = 0.5"))
    config = load_config(made.data_dir)
    assert config.startup_sync_seconds == 0.5
    return config


def _trusting_a_forker(path, peer: str) -> tuple[NodeConfig, Record]:
    """A silenced org (_silenced_org) whose trust root's first record it holds; and the root's other record at that
    seq, a fork for a peer to show it."""
    rooted = Org()
    ours = rooted.record()
    config = _silenced_org(path, peer, roots=(rooted.did,))
    with RecordStore.open(config.data_dir) as store:
        replica = Replica(load_org_key(config.key_path), store, roots=(rooted.did,), max_hops=2, held_limit=10)
        assert replica.accept([ours]).accepted == [ours]
    return config, rooted.fork(ours.seq, ours.prev)


def _chain(config) -> tuple[str, int]:
    """The org key's did and the seq of its last record in the data directory (0: none)."""
    did = did_key(bytes(load_org_key(config.key_path).verify_key))
    with RecordStore.open(config.data_dir) as store:
        head = store.head(did)
    return did, 0 if head is None else head.seq


async def _rotate_refused_signing_nothing(config) -> tuple[str, int]:
    """Run `vouchnet key rotate` on `config`'s data directory, which must refuse (timed out) and sign nothing; the
    org key's did and the seq of its last record (_chain), as before and after."""
    before = _chain(config)
    status, out, err = await _rotate(config=config)
    assert (status, out) == (1, "") and "so nothing was signed" in err
    assert _chain(config) == before
    return before


async def test_key_rotate_interrupted_during_its_catch_up_says_so_and_signs_nothing(tmp_path):
    """Ctrl-C while `key rotate` waits for its catch-up: exit 130 as a shell expects, no traceback, and a line saying
    that nothing was signed (before: the command ended without a word, leaving the operator to wonder)."""
    async with _silent_peer() as (peer, _accepted):
        made = init_data_dir(tmp_path / "a", network="test", listen=LOOPBACK, api="127.0.0.1:0", bootstrap=(peer,))
        config = load_config(made.data_dir)
        before = _chain(config)
        with trio.fail_after(60):
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "node.cli", "key", "rotate", "--dir", str(config.data_dir)],
                stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            said = b""
            while b"opened: taking back" not in said:  # (its catch-up waits up to startup_sync_seconds, 10 s)
                chunk = await process.stderr.receive_some()
                assert chunk, said
                said += chunk
            process.send_signal(signal.SIGINT)
            while chunk := await process.stderr.receive_some():
                said += chunk
            assert await process.wait() == 130
    text = said.decode()
    assert text.endswith("vouchnet key rotate: interrupted before signing: nothing was signed, and org.key holds the "
                         "org's key still; run it again to rotate\n") and "Traceback" not in text, text
    assert _chain(config) == before


def test_key_rotate_interrupted_as_a_task_of_the_node_runs_says_so_as_well(tmp_path, monkeypatch, capsys):
    """A Ctrl-C lands in whichever task runs as it comes; in a task of a nursery trio raises it inside an exception
    group. Before: a traceback and exit 1 instead of the line saying nothing was signed, in one run of many."""
    made = init_data_dir(tmp_path / "a", network="test", listen=LOOPBACK, api="127.0.0.1:0")
    before = _chain(load_config(made.data_dir))

    async def interrupted_in_a_task(config: NodeConfig, *, opened) -> None:
        async def pressed() -> None:
            raise KeyboardInterrupt

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pressed)
            await trio.sleep_forever()

    monkeypatch.setattr(daemon, "catch_up_stopped", interrupted_in_a_task)
    assert cli.main(["key", "rotate", "--dir", str(made.data_dir)]) == 130
    assert capsys.readouterr().err.endswith("vouchnet key rotate: interrupted before signing: nothing was signed, and "
                                            "org.key holds the org's key still; run it again to rotate\n")
    assert _chain(load_config(made.data_dir)) == before


async def test_key_rotate_refuses_when_no_peer_completes_the_catch_up_in_time_unless_told_to_go_without(tmp_path):
    with trio.fail_after(60):
        async with _silent_peer() as (peer, dialled):
            config = _silenced_org(tmp_path / "a", peer)
            before = _chain(config)
            status, out, err = await _rotate(config=config)
            assert (status, out) == (1, "")
            opening, opened, refused = err.splitlines()  # the bound said once the node is open: opening it replays
            assert opening.startswith("catching up first: opening the node") and "trust engine" in opening
            assert opened.startswith("opened: taking back from a peer") and "(up to 0.5 s," in opened
            assert ("no peer it dials completed a catch-up sync within 0.5 s ([p2p] startup_sync_seconds), so nothing"
                    in refused)
            assert f"`vouchnet run --dir {config.data_dir}`" in err and "again with --without-catch-up" in err
            assert dialled and _chain(config) == before and not (config.data_dir / NEXT_KEY_FILE).exists()
            dialled.clear()
            status, out, err = await _rotate("--without-catch-up", config=config)
            assert status == 0, err
            assert "catching up" not in err and not dialled  # the node was not opened
            assert json.loads(out)["old"] == before[0] and _chain(config)[0] == json.loads(out)["new"]


async def test_key_rotate_refuses_when_no_peer_it_dials_can_be_connected_naming_each_and_why(tmp_path):
    """Its one bootstrap peer is a node of another network: the catch-up ends as soon as that is found, not after
    startup_sync_seconds (20 s here), and the refusal names the peer, its network and what to check (before: it
    waited them out and said to start the node once, which would have found the same)."""
    with trio.fail_after(15):
        async with running(tmp_path / "b", network="othernet") as b:
            config = _silenced_org(tmp_path / "a", b.host.listen_addrs[0])
            toml = config.data_dir / "config.toml"
            toml.write_text(toml.read_text().replace("startup_sync_seconds = 0.5", "startup_sync_seconds = 20.0"))
            before = _chain(config)
            status, out, err = await _rotate(config=load_config(config.data_dir))
    assert (status, out) == (1, "") and _chain(config) == before
    assert re.search(re.escape("no peer it dials could be connected for a catch-up sync: it stopped waiting after ")
                     + r"[0-9]+(\.[0-9]+)? s" + re.escape(
                         " of the 20 s it may wait ([p2p] startup_sync_seconds), as each one's last dial failed or "
                         "found it on another network, or it is connected but refused /vouchnet/sync/1, and none is "
                         f"dialled again before then ({b.host.peer_id} (bootstrap): the peer is on network 'othernet', "
                         "not this node's), so nothing was signed"), err)
    assert "Check [p2p] bootstrap (each peer's address, and that its node runs, on this network), then rotate" in err


async def test_key_rotate_refuses_when_its_peers_hold_none_of_the_org_s_records_and_says_why(tmp_path):
    """A peer whose horizon leaves the org out holds none of its records: its answer that nothing is newer proves
    nothing, and the refusal says so and what to do. Before: a round with it ended the catch-up, and the rotation was
    signed at the data directory's head, whatever the org had signed since."""
    async with running(tmp_path / "b") as b:  # (b vouches for nobody: a is outside its horizon)
        made = init_data_dir(tmp_path / "a", network="test", listen=LOOPBACK, api="127.0.0.1:0",
                             bootstrap=(b.host.listen_addrs[0],))
        toml = made.data_dir / "config.toml"
        toml.write_text(toml.read_text().replace("startup_sync_seconds = 10.0", "startup_sync_seconds = 3.0"))
        config = load_config(made.data_dir)
        with RecordStore.open(config.data_dir) as store:  # a has signed (a new org's wait ends at any round)
            Replica(load_org_key(config.key_path), store, roots=(), max_hops=2, held_limit=10).issue(
                "vouch", vouch_body(new_did(), 0.9, "operator"))
        before = _chain(config)
        assert before[1] == 1
        with trio.fail_after(60):
            status, out, err = await _rotate(config=config)
        assert (status, out) == (1, ""), err
        refused = err.splitlines()[-1]
        assert ("1 peer it dials completed a catch-up sync within 3 s ([p2p] startup_sync_seconds) but holds none of "
                "this org's records") in refused and "so nothing was signed" in refused
        assert "A node whose org vouches for this one holds its records: add one to [p2p] bootstrap" in refused
        assert refused.endswith("run this again with --without-catch-up") and "`vouchnet run" not in refused
        assert _chain(config) == before and b.sync.stats.streams_served > 0


async def test_key_rotate_of_a_new_org_ends_its_catch_up_at_a_round_with_any_peer_it_dials(tmp_path):
    """A new org (its data directory holds none of its records) has nothing to take back, and no peer holds records it
    has not signed: the first round with a peer it dials ends the wait, as a start's."""
    async with running(tmp_path / "b") as b:  # (b vouches for nobody: a is outside its horizon)
        made = init_data_dir(tmp_path / "a", network="test", listen=LOOPBACK, api="127.0.0.1:0",
                             bootstrap=(b.host.listen_addrs[0],))
        config = load_config(made.data_dir)
        assert config.startup_sync_seconds == 10.0
        status, out, err = await _rotate(config=config)
        # (ended by the round: timed out at its 10 s, or unheld, the command would have refused, exit 1)
        assert status == 0 and "caught up with a peer: rotating" in err.splitlines(), err
        assert _chain(config)[1] == 1  # the new key's first record


async def test_key_rotate_with_no_peer_to_dial_rotates_and_says_so(tmp_path):
    made = init_data_dir(tmp_path / "a", network="test", listen=LOOPBACK, api="127.0.0.1:0")
    config = load_config(made.data_dir)
    with trio.fail_after(30):
        status, out, err = await _rotate(config=config)
    assert status == 0, err
    assert "no peers to catch up with" in err and _chain(config)[0] == json.loads(out)["new"] != made.did
    assert "opened: taking back" not in err  # (no wait "up to" startup_sync_seconds was ever going to happen)


async def test_key_rotate_finishes_a_signed_rotation_without_catching_up_again(tmp_path):
    """Interrupted once its rotation record is signed, a rotation needs no catch-up: that record is at the head."""
    with trio.fail_after(30):
        async with _silent_peer() as (peer, dialled):
            config = _silenced_org(tmp_path / "a", peer)
            old = _chain(config)[0]
            successor = create_org_key(config.data_dir / NEXT_KEY_FILE)
            new = did_key(bytes(successor.verify_key))
            with RecordStore.open(config.data_dir) as store:  # the crash: signed, the new key not yet installed
                Replica(load_org_key(config.key_path), store, roots=(), max_hops=2, held_limit=10).issue(
                    "org", org_body("a", "test", next=new))
            status, out, err = await _rotate(config=config)
            assert status == 0, err
            assert json.loads(out)["old"] == old and _chain(config) == (new, 1)
            assert "catching up" not in err and not dialled


async def test_key_rotate_that_takes_back_a_rotation_of_its_key_refuses_as_a_start_does(tmp_path):
    """Before: `key rotate` on a copy older than the org's last rotation signed a second rotation at its seq."""
    async with running(tmp_path / "b", settings={"sync_interval": 0.5}) as b:
        config, old = _org_vouched_by(b, tmp_path / "a")
        with trio.fail_after(60):
            await _started_until_held(config, b)
            shutil.copytree(config.data_dir, tmp_path / "backup")
            new = rotate_key(config).new
            await _started_until_held(config, b)
            shutil.rmtree(config.data_dir)
            shutil.copytree(tmp_path / "backup", config.data_dir)
            before = _chain(config)
            rotation = verify_record(b.replica.store.at(old, before[1] + 1))
            assert rotation.body.next == new
            for options in ((), ("--without-catch-up",)):  # the second refused at once, the rotation kept
                status, out, err = await _rotate(*options, config=config)
                assert (status, out) == (1, "")
                assert err.splitlines()[-1] == f"vouchnet key rotate: {refusal(config, rotation)}"
                assert verify_record((config.data_dir / TAKEN_BACK_FILE).read_bytes()) == rotation
                assert _chain(config) == before and not (config.data_dir / NEXT_KEY_FILE).exists()
        assert not {old, new} & b.replica.flagged


async def test_a_start_that_takes_back_a_rotation_of_its_key_stops_on_the_round_that_showed_it(tmp_path):
    """The rotation taken back is not stored, so the node never holds the head its peer names and that round proves
    nothing: the start stops on it all the same (it signs nothing, and refuses to start), not at the catch-up's bound.
    Before: it waited all of startup_sync_seconds to say so."""
    async with running(tmp_path / "b", settings={"sync_interval": 0.5}) as b:
        config, old = _org_vouched_by(b, tmp_path / "a")
        with trio.fail_after(60):
            await _started_until_held(config, b)
            shutil.copytree(config.data_dir, tmp_path / "backup")
            rotate_key(config)
            await _started_until_held(config, b)
            shutil.rmtree(config.data_dir)
            shutil.copytree(tmp_path / "backup", config.data_dir)
        with trio.fail_after(30):
            with pytest.RaisesGroup(pytest.RaisesExc(StartupError), allow_unwrapped=True, flatten_subgroups=True):
                await serve_node(replace(config, startup_sync_seconds=600.0))
        assert (config.data_dir / TAKEN_BACK_FILE).exists()


async def test_a_catch_up_is_not_done_by_a_peer_that_dialled_in_unasked(tmp_path):
    """Before: a round with any peer ended the catch-up (`key rotate`'s and a start's), so a node of the network
    dialling a restored node as it opened, answering that it held nothing, had the rotation signed at once, at the
    older copy's head: now only a round with a peer it dials (README: one of them) does."""
    with trio.fail_after(60):
        async with _silent_peer() as (peer, _), running(tmp_path / "stranger") as stranger:
            config = _silenced_org(tmp_path / "a", peer)
            toml = config.data_dir / "config.toml"
            toml.write_text(toml.read_text().replace("startup_sync_seconds = 0.5", "startup_sync_seconds = 5.0"))
            served = stranger.sync.stats.streams_served

            async def dialled_in(a: Node) -> None:
                await stranger.host.connect(f"{a.host.listen_addrs[0]}")

            async with trio.open_nursery() as nursery:
                caught_up = await catch_up_stopped(load_config(config.data_dir),
                                                   opened=lambda a: nursery.start_soon(dialled_in, a))
            assert caught_up.state == "timed_out" and stranger.sync.stats.streams_served > served


async def test_key_rotate_timed_out_signs_no_evidence_found_during_its_catch_up(tmp_path, monkeypatch):
    """Before: the catch-up's end signed what waited for it, timed out too: evidence of an equivocation a peer showed
    meanwhile was signed at the older copy's head (a seq the org may have used), and `key rotate` said nothing was."""
    defer = Replica.defer_signing

    def deferred_as_a_peer_shows_a_fork(replica: Replica) -> None:  # (as an answer in the catch-up sync would)
        defer(replica)
        replica.accept([theirs])

    with trio.fail_after(60):
        async with _silent_peer() as (peer, _):
            config, theirs = _trusting_a_forker(tmp_path / "a", peer)
            monkeypatch.setattr(Replica, "defer_signing", deferred_as_a_peer_shows_a_fork)
            before = await _rotate_refused_signing_nothing(config)
            toml = config.data_dir / "config.toml"  # interrupted (Ctrl-C) before it timed out, nothing either
            toml.write_text(toml.read_text().replace("startup_sync_seconds = 0.5", "startup_sync_seconds = 60.0"))
            deferred = trio.Event()
            monkeypatch.setattr(Replica, "defer_signing",
                                lambda replica: (deferred_as_a_peer_shows_a_fork(replica), deferred.set()))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(catch_up_stopped, load_config(config.data_dir))
                await deferred.wait()
                nursery.cancel_scope.cancel()
            assert _chain(config) == before


async def test_key_rotate_signs_nothing_a_peer_brings_in_as_the_node_s_services_start(tmp_path, monkeypatch):
    """Before: signing was deferred only once gossip, sync and the peer manager had started, and a peer connected
    while the node opened (its trust engine replaying, say) could meanwhile show a fork that the node signed evidence
    of at once, at the data directory's head, before a catch-up that then timed out."""
    start = GossipService.run

    async def run_showing_a_fork(gossip: GossipService, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(start, gossip))
            gossip._replica.accept([theirs])  # (as a peer's message would, once gossip has started)
            task_status.started()

    with trio.fail_after(60):
        async with _silent_peer() as (peer, _):
            config, theirs = _trusting_a_forker(tmp_path / "a", peer)
            monkeypatch.setattr(GossipService, "run", run_showing_a_fork)
            await _rotate_refused_signing_nothing(config)
