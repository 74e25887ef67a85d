"""A node whose data directory was restored from an older copy takes back, from its peers, the records it signed
since, before it signs again: otherwise its next record would be a second one at a seq it already used, and its
org would be flagged as an equivocator everywhere."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace

import httpx
import pytest
import trio

from gossip.checkpoints import CHECKPOINT_FILE
from gossip.service import GossipService
from gossip.store import RecordStore
from node import cli
from node.config import load_config
from node.daemon import Node, StartupError, serve_node
from node.keys import load_org_key
from node.rotation import rotate_key
from node.setup import init_data_dir
from vouching import did_key, verify_record, vouch_body

from ..factories import new_did
from .in_process import LOOPBACK, holds, records_of, running

pytestmark = pytest.mark.slow


def _org_vouched_by(b, path):
    """A new org's data directory at `path`, its node bootstrapping from `b`, which vouches for it (the org inside
    b's horizon); its config and did."""
    made = init_data_dir(path, network="test", listen=LOOPBACK, api="127.0.0.1:0")
    config = replace(load_config(made.data_dir), bootstrap=(b.host.listen_addrs[0],))
    org = did_key(bytes(load_org_key(config.key_path).verify_key))
    b.replica.issue("vouch", vouch_body(org, 0.9, "org-peer"))
    return config, org


async def _saved_checkpoint(node: Node) -> None:
    """Wait until `node` has saved a checkpoint of its log in its data directory (published: saved first)."""
    saved = trio.Event()
    node.witnessing.listeners.append(lambda note: saved.set())
    if node.witnessing.checkpoint_note() is None:
        await saved.wait()


async def test_a_node_restored_from_an_older_copy_signs_after_what_it_signed_since(tmp_path, caplog):
    async with running(tmp_path / "b", settings={"sync_interval": 0.5}) as b:  # b fetches what gossip misses
        config, org = _org_vouched_by(b, tmp_path / "a")
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                await holds(b, a.replica.store.head(org).id)  # its org record, signed as it started
                nursery.cancel_scope.cancel()
            shutil.copytree(config.data_dir, tmp_path / "backup")
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)  # on another port: a new org record at start
                for _ in range(2):
                    a.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
                signed = a.replica.store.head(org).seq
                await records_of(b, lambda r: r.iss == org and r.seq == signed)
                nursery.cancel_scope.cancel()
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
