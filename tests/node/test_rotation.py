"""`vouchnet key rotate`: the data directory's key replaced by a linked successor, crash-safely, only while the node
is stopped; and a peer that then hears from the node counts both keys as one org."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import sys
from dataclasses import replace

import httpx
import pytest
import trio

from gossip.batch import MAX_GOSSIP_MESSAGE, unpack
from gossip.host import Host, peer_id_from_public_key
from gossip.replica import Replica
from gossip.service import records_topic
from gossip.store import RecordStore
from node import cli
from node.audit_log import AuditLog
from node.config import load_config
from node.credential_registry import CredentialRegistry
from node.daemon import Node, StartupError, serve_node
from node.data_lock import DataDirBusy, locked_data_dir, replacing_key, signing_with_key
from node.keys import KeyFileError, create_org_key, load_org_key
from node.rotation import NEXT_KEY_FILE, Rotation, finish_interrupted_rotation, rotate_key, unpublished_link
from node.setup import init_data_dir
from vouching import did_key, org_body, public_key_from_did, verify_record, vouch_body

from ..factories import new_did
from .in_process import LOOPBACK, running
from .kill_points import killed_at


def _config(path, **settings):
    made = init_data_dir(path, network="test", listen=LOOPBACK, api="127.0.0.1:0")
    toml = made.data_dir / "config.toml"  # for `agent new`, which names it in credentials (the port is the OS's)
    toml.write_text(toml.read_text().replace('public_url = ""', 'public_url = "https://vouchnet.example.org"'))
    return replace(load_config(made.data_dir), checkpoint_interval=0.2, **settings)


def _did(config) -> str:
    return did_key(bytes(load_org_key(config.key_path).verify_key))


def _replica(config, store):
    return Replica(load_org_key(config.key_path), store, roots=(), max_hops=2, held_limit=10)


def test_a_rotation_links_a_new_key_and_destroys_the_old(tmp_path):
    config = _config(tmp_path / "a")
    old = _did(config)
    with RecordStore.open(config.data_dir) as store:
        _replica(config, store).issue("org", org_body("a", "test", ["/ip4/127.0.0.1/tcp/4001"]))
    rotation = rotate_key(config)
    assert rotation.old == old and rotation.new == _did(config) != old
    assert stat.S_IMODE(config.key_path.stat().st_mode) == 0o600
    assert not (config.data_dir / NEXT_KEY_FILE).exists()
    with RecordStore.open(config.data_dir) as store:
        replica = _replica(config, store)
        assert replica.succession.keys(rotation.new) == (old, rotation.new)
        first = next(store.scan(issuer=rotation.new))
        assert first.body.prior == old and first.body.addrs == ("/ip4/127.0.0.1/tcp/4001",)


def test_the_records_a_start_publishes_are_those_linking_a_key_that_signed_nothing_since_its_rotation(tmp_path):
    config = _config(tmp_path / "a")
    old = _did(config)
    with RecordStore.open(config.data_dir) as store:
        replica = _replica(config, store)
        replica.issue("org", org_body("a", "test", []))
        assert unpublished_link(store, replica.succession, old) == []  # never rotated
    rotation = rotate_key(config)
    with RecordStore.open(config.data_dir) as store:
        replica = _replica(config, store)
        linking = [store.at(old, 2), store.at(rotation.new, 1)]
        assert [verify_record(raw).body.next for raw in linking] == [rotation.new, None]
        assert unpublished_link(store, replica.succession, rotation.new) == linking
        replica.issue("org", org_body("a", "test", ["/ip4/127.0.0.1/tcp/4001"]))
        assert unpublished_link(store, replica.succession, rotation.new) == []  # its peers have had them since
    second = rotate_key(config)
    with RecordStore.open(config.data_dir) as store:
        replica = _replica(config, store)
        assert replica.succession.keys(second.new) == (old, rotation.new, second.new)
        linking = [store.at(rotation.new, 3), store.at(second.new, 1)]  # the last rotation, not the org's first
        assert [verify_record(raw).body.next for raw in linking] == [second.new, None]
        assert unpublished_link(store, replica.succession, second.new) == linking


def test_a_rotation_interrupted_after_signing_is_finished_by_the_next_start_or_run(tmp_path):
    for finish in (finish_interrupted_rotation, rotate_key):
        config = _config(tmp_path / finish.__name__)
        old = _did(config)
        successor = create_org_key(config.data_dir / NEXT_KEY_FILE)
        new = did_key(bytes(successor.verify_key))
        with RecordStore.open(config.data_dir) as store:  # the crash: signed, the new key's first record not yet
            _replica(config, store).issue("org", org_body("a", "test", next=new))
        rotation = finish(config)
        assert (rotation.old, rotation.new, _did(config)) == (old, new, new)
        with RecordStore.open(config.data_dir) as store:
            assert _replica(config, store).succession.keys(new) == (old, new)


def test_a_new_key_written_before_a_crash_is_the_one_the_rotation_uses(tmp_path):
    config = _config(tmp_path / "a")
    written = did_key(bytes(create_org_key(config.data_dir / NEXT_KEY_FILE).verify_key))
    assert finish_interrupted_rotation(config) is None  # never signed: nothing to finish, the key stays
    assert rotate_key(config).new == written


class _Killed(BaseException):
    """`vouchnet key rotate` killed at this point."""


def test_a_rotation_killed_while_writing_the_new_key_leaves_a_node_that_starts_and_rotates(tmp_path, monkeypatch):
    """Before: killed between creating org.key.next and writing it, the rotation left an empty file, and both the
    node's start and the next rotation refused it ("expected a 32-byte Ed25519 seed, found 0 bytes") until the
    operator deleted it by hand."""
    config = _config(tmp_path / "a")
    old = _did(config)

    def killed(*args):
        raise _Killed

    with monkeypatch.context() as patched:
        patched.setattr(os, "write", killed)
        with pytest.raises(_Killed):
            rotate_key(config)
    assert finish_interrupted_rotation(config) is None and _did(config) == old  # what the node's start does first
    assert rotate_key(config).new == _did(config) != old


@pytest.mark.parametrize("next_key", ["the org key", "an earlier key"])
def test_a_successor_that_is_not_a_new_key_is_refused_before_anything_is_signed(tmp_path, capsys, next_key):
    """Before: org.key.next holding the org key itself stopped the command with a traceback (InvalidRecord), and
    holding an earlier key of the org (a backup of org.key restored to the wrong name) rotated to it: the current key
    retired, and the earlier key, whose first record names no prior, installed in its place, its chain closed too,
    so the node refused to start and the org had no key left that may sign."""
    config = _config(tmp_path / "a")
    earlier = load_org_key(config.key_path)
    if next_key == "an earlier key":
        rotate_key(config)
    (config.data_dir / NEXT_KEY_FILE).write_bytes(bytes(load_org_key(config.key_path) if next_key == "the org key"
                                                        else earlier))
    os.chmod(config.data_dir / NEXT_KEY_FILE, 0o600)
    current, size = _did(config), _size(config)
    assert cli.main(["key", "rotate", "--dir", str(config.data_dir)]) == 2
    assert "a rotation needs a new key: remove the file and run again" in capsys.readouterr().err
    assert (_did(config), _size(config)) == (current, size)
    (config.data_dir / NEXT_KEY_FILE).unlink()
    assert rotate_key(config).old == current


def _size(config) -> int:
    with RecordStore.open(config.data_dir) as store:
        return store.size


async def test_a_retired_key_without_its_successor_refuses_to_rotate_or_start(tmp_path):
    config = _config(tmp_path / "a")
    with RecordStore.open(config.data_dir) as store:
        _replica(config, store).issue("org", org_body("a", "test", next=did_key(bytes(create_org_key(
            tmp_path / "elsewhere").verify_key))))
    with pytest.raises(KeyFileError, match=f"{NEXT_KEY_FILE}: does not hold the key"):
        rotate_key(config)
    with pytest.raises(StartupError, match="this key was retired by a rotation"):
        await serve_node(config)


@pytest.mark.parametrize("command", [["agent", "new", "--name", "bob", "--out", "{out}"],
                                     ["audit", "export", "--agent", new_did(), "--from", "2026-01-01", "--to",
                                      "2026-02-01", "--out", "{out}/export.json"]], ids=["agent-new", "audit-export"])
def test_a_key_retired_by_a_rotation_left_unfinished_signs_no_credential_nor_checkpoint(tmp_path, capsys, command):
    """Before: with the rotation signed and the new key not yet installed, `vouchnet agent new` minted a credential
    with the retired key, issued after its retirement, so the JWKS served that key for a day only while the
    credential had a year to live (and `audit export` signed a checkpoint of the audit log with it)."""
    config = _config(tmp_path / "a")
    successor = create_org_key(config.data_dir / NEXT_KEY_FILE)
    with RecordStore.open(config.data_dir) as store:  # the crash: signed, the new key's first record not yet
        _replica(config, store).issue("org", org_body("a", "test", next=did_key(bytes(successor.verify_key))))
    AuditLog.open(config.data_dir).close()  # as a node's start makes it: `audit export` reads it
    (out := tmp_path / "out").mkdir()
    argv = [*(arg.format(out=out) for arg in command), "--dir", str(config.data_dir)]
    assert cli.main(argv) == 1
    assert "this key was retired by a rotation to" in capsys.readouterr().err
    assert not any(out.iterdir())
    rotate_key(config)  # finished: the command signs with the new key
    assert cli.main(argv) == 0
    if command[0] == "agent":
        assert json.loads(capsys.readouterr().out)["issuer"] == did_key(bytes(successor.verify_key))


@pytest.mark.parametrize("command", [["agent", "new", "--name", "bob", "--out", "{out}"],
                                     ["audit", "export", "--agent", new_did(), "--from", "2026-01-01", "--to",
                                      "2026-02-01", "--out", "{out}/export.json"]], ids=["agent-new", "audit-export"])
def test_no_rotation_retires_the_key_a_command_is_signing_with(tmp_path, monkeypatch, capsys, command):
    """A rotation run while `vouchnet agent new` (or `audit export`) had read the key, between its check that the
    key was not retired and its signature: the command signed with the retired key after the rotation record, a
    credential the JWKS serves that key for only if an earlier one keeps it there."""
    config = _config(tmp_path / "a")
    AuditLog.open(config.data_dir).close()  # as a node's start makes it: `audit export` reads it
    rotations = []

    def rotating(sign):
        def signed_after_a_rotation(*args, **kwargs):
            try:
                rotations.append(rotate_key(config))
            except DataDirBusy as refused:
                rotations.append(refused)
            return sign(*args, **kwargs)
        return signed_after_a_rotation

    monkeypatch.setattr(CredentialRegistry, "allocate", rotating(CredentialRegistry.allocate))
    monkeypatch.setattr(AuditLog, "checkpoint", rotating(AuditLog.checkpoint))
    (out := tmp_path / "out").mkdir()
    assert cli.main([*(arg.format(out=out) for arg in command), "--dir", str(config.data_dir)]) == 0
    (refused,) = rotations
    assert isinstance(refused, DataDirBusy) and "signing with the org key" in str(refused)
    signer = (json.loads(capsys.readouterr().out) if command[0] == "agent" else
              json.loads((out / "export.json").read_text()))["issuer" if command[0] == "agent" else "org"]
    assert signer == _did(config)
    assert rotate_key(config).old == signer  # once the command is done


def test_no_command_signs_with_a_key_a_rotation_is_replacing(tmp_path, capsys):
    config = _config(tmp_path / "a")
    (out := tmp_path / "out").mkdir()
    with replacing_key(config.data_dir):
        assert cli.main(["agent", "new", "--out", str(out), "--dir", str(config.data_dir)]) == 1
    assert "a key rotation is replacing the org key" in capsys.readouterr().err
    assert not any(out.iterdir())


async def test_a_start_does_not_finish_a_rotation_while_a_command_signs_with_the_retired_key(tmp_path):
    config = _config(tmp_path / "a")
    successor = create_org_key(config.data_dir / NEXT_KEY_FILE)
    with RecordStore.open(config.data_dir) as store:  # the crash: signed, the new key's first record not yet
        _replica(config, store).issue("org", org_body("a", "test", next=did_key(bytes(successor.verify_key))))
    with signing_with_key(config.data_dir), pytest.raises(StartupError, match="signing with the org key"):
        await serve_node(config)
    assert finish_interrupted_rotation(config).new == _did(config)  # once it is done


async def test_a_running_nodes_directory_is_not_rotated_nor_run_twice(tmp_path):
    async with running(tmp_path / "a") as a:
        with pytest.raises(DataDirBusy, match="in use by another process"):
            rotate_key(a.config)
        with pytest.raises(StartupError, match="in use by another process"):
            await serve_node(a.config)
    with locked_data_dir(tmp_path / "a"):  # released when the node stopped
        pass


def test_the_cli_rotates_and_says_what_changed(tmp_path, capsys):
    config = _config(tmp_path / "a")
    old = _did(config)
    assert cli.main(["key", "rotate", "--dir", str(config.data_dir)]) == 0
    out = capsys.readouterr()
    printed = json.loads(out.out)
    assert printed["old"] == old and printed["new"] == _did(config) and printed["peer_id"].startswith("12D3KooW")
    assert "start the node to sign with" in out.err


def test_the_cli_refuses_a_running_nodes_directory_before_it_says_it_catches_up(tmp_path, capsys):
    """It said "catching up first: opening the node as a start does", and only then that the directory was in use."""
    config = _config(tmp_path / "a")
    old = _did(config)
    with locked_data_dir(config.data_dir):
        assert cli.main(["key", "rotate", "--dir", str(config.data_dir)]) == 1
    pid = f", pid {os.getpid()}" if os.path.exists("/proc/locks") else ""
    assert capsys.readouterr() == ("", f"vouchnet key rotate: {config.data_dir}: in use by another process{pid} (is "
                                       "its node running? stop it first)\n")
    assert _did(config) == old


class _CtrlCWhileLoading:
    """An import finder: a Ctrl-C arriving as module `name` starts to load."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, name, path=None, target=None):
        if name == self.name:
            raise KeyboardInterrupt


def _ctrl_c_while_loading(monkeypatch, module: str) -> None:
    monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(sys, "meta_path", [_CtrlCWhileLoading(module), *sys.meta_path])


@pytest.mark.parametrize("options, module", [([], "node.daemon"), (["--without-catch-up"], "gossip.host")],
                         ids=["its catch-up's", "the new peer id's"])
def test_a_ctrl_c_as_key_rotate_loads_py_libp2p_says_nothing_was_signed(tmp_path, monkeypatch, capsys, options,
                                                                         module):
    """py-libp2p loads for a second before the catch-up: a Ctrl-C then ended the command without a word (exit 130),
    and with --without-catch-up it loaded after signing: a Ctrl-C left the rotation made, its new did unsaid."""
    config = _config(tmp_path / "a")
    old, size = _did(config), _size(config)
    with monkeypatch.context() as patched:
        _ctrl_c_while_loading(patched, module)
        assert cli.main(["key", "rotate", "--dir", str(config.data_dir), *options]) == 130
    assert capsys.readouterr() == ("", "vouchnet key rotate: interrupted before signing: nothing was signed, and "
                                       "org.key holds the org's key still; run it again to rotate\n")
    assert (_did(config), _size(config)) == (old, size) and not (config.data_dir / NEXT_KEY_FILE).exists()
    assert cli.main(["key", "rotate", "--dir", str(config.data_dir), *options]) == 0
    assert json.loads(capsys.readouterr().out)["old"] == old != _did(config)


def test_a_ctrl_c_as_key_rotate_signs_says_to_run_it_again_which_finishes(tmp_path, monkeypatch, capsys):
    config = _config(tmp_path / "a")
    old = _did(config)

    def interrupted(*args):
        raise KeyboardInterrupt

    rotate = ["key", "rotate", "--dir", str(config.data_dir)]
    with monkeypatch.context() as patched:
        patched.setattr("node.rotation._install", interrupted)  # both records signed, the new key not yet org.key
        assert cli.main(rotate) == 130
    said = capsys.readouterr()
    assert (said.out, said.err.splitlines()[-1]) == ("", "vouchnet key rotate: interrupted while rotating: run it "
                                                         "again, which finishes what this run began")
    assert _did(config) == old
    with monkeypatch.context() as patched:
        _ctrl_c_while_loading(patched, "gossip.host")
        assert cli.main(rotate) == 130
    assert capsys.readouterr() == ("", "vouchnet key rotate: interrupted before it finished the rotation an earlier "
                                       "run signed: run it again (or start the node) to finish it\n")
    assert cli.main(rotate) == 0
    rotation = json.loads(capsys.readouterr().out)
    assert rotation["old"] == old and rotation["new"] == _did(config)
    with RecordStore.open(config.data_dir) as store:
        assert _replica(config, store).succession.keys(rotation["new"]) == (old, rotation["new"])


async def _rotated_once_heard(config, peer: Node) -> tuple[Rotation, trio.Event]:
    """Run the node of `config` until `peer` holds a record of its key, stop it, and rotate its key; with an event set
    once `peer` links two keys."""
    old = _did(config)
    heard, linked = trio.Event(), trio.Event()
    peer.replica.listeners.append(lambda records: heard.set() if any(r.iss == old for r in records) else None)
    peer.replica.link_listeners.append(lambda link: linked.set())
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_node, config)
        await heard.wait()
        nursery.cancel_scope.cancel()
    return rotate_key(config), linked


async def test_a_peer_counts_the_rotated_nodes_keys_as_one_org(tmp_path):
    async with running(tmp_path / "b") as b:
        config = _config(tmp_path / "a", bootstrap=(b.host.listen_addrs[0],))
        old = _did(config)
        b.replica.issue("vouch", vouch_body(old, 0.9, "org-peer"))  # a in b's horizon
        with trio.fail_after(30):
            rotation, linked = await _rotated_once_heard(config, b)
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                assert a.did == rotation.new
                await linked.wait()
                assert b.replica.succession.keys(rotation.new) == (old, rotation.new)
                async with httpx.AsyncClient(base_url=a.api_url) as api:  # credentials minted under either verify
                    keys = (await api.get("/.well-known/jwks.json")).json()["keys"]
                    assert (await api.get("/v1/node")).json()["earlier_keys"] == [old]
                assert [k["kid"].partition("#")[0] for k in keys] == [rotation.new, old]
                nursery.cancel_scope.cancel()


async def test_a_peer_the_rotated_node_does_not_reach_links_its_keys_without_waiting_for_a_sync_round(tmp_path):
    """`key rotate` signs the two linking records while the node is stopped; as it starts, the node publishes them, so
    that c, connected to b only, links the keys as soon as b relays them. Without that, c would wait for anti-entropy:
    b's next checkpoint, then a periodic sync round with b (its [p2p] sync_interval, an hour here)."""
    hour = {"sync_interval": 3600.0}
    async with running(tmp_path / "b", settings=hour) as b:
        bootstrap = (b.host.listen_addrs[0],)
        async with running(tmp_path / "c", settings={**hour, "bootstrap": bootstrap}) as c:
            config = _config(tmp_path / "a", bootstrap=bootstrap)
            old = _did(config)
            for peer in (b, c):
                peer.replica.issue("vouch", vouch_body(old, 0.9, "org-peer"))  # a in their horizons
            with trio.fail_after(30):
                rotation, linked = await _rotated_once_heard(config, c)
            new_peer = _peer_id(rotation.new)
            await c.set_blocked_peers([_peer_id(old), new_peer])  # a reaches c through b only
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    await nursery.start(serve_node, config)
                    await linked.wait()
                    nursery.cancel_scope.cancel()
            assert c.replica.succession.keys(rotation.new) == (old, rotation.new)
            assert new_peer not in c.host.connected_peers()


async def test_a_rotated_node_with_no_peer_to_dial_starts_and_publishes_the_linking_records_to_none(
        tmp_path, monkeypatch):
    """No bootstrap peer and no org record to dial: the start does not wait for a catch-up sync, and publishing the two
    linking records to no one raises nothing, the node running on."""
    config = _config(tmp_path / "a")
    old = _did(config)
    with RecordStore.open(config.data_dir) as store:
        _replica(config, store).issue("org", org_body("a", "test", []))
    rotation = rotate_key(config)
    with RecordStore.open(config.data_dir) as store:
        linking = [store.at(old, 2), store.at(rotation.new, 1)]
    messages, published, host_publish = [], trio.Event(), Host.publish

    async def publish(host: Host, topic: str, data: bytes) -> None:
        await host_publish(host, topic, data)
        if topic == records_topic(config.network):
            messages.append(unpack(data, MAX_GOSSIP_MESSAGE))
            published.set()

    monkeypatch.setattr(Host, "publish", publish)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(serve_node, config)
            assert node.startup_sync == "no_peers" and not node.host.connected_peers()
            await published.wait()
            assert messages[0][:2] == linking
            async with httpx.AsyncClient(base_url=node.api_url) as api:
                assert (await api.get("/v1/node")).json()["did"] == rotation.new
            nursery.cancel_scope.cancel()


def _peer_id(did: str) -> str:
    return peer_id_from_public_key(public_key_from_did(did))


def test_a_rotation_killed_at_any_point_of_its_writes_is_finished_by_the_next_start_and_rotate(tmp_path):
    """Each point a SIGKILL can land among the rotation's file writes (tests/node/kill_points.py), each in a copy of
    one data directory: the start's finish_interrupted_rotation, then `key rotate` if the old key is still the org's,
    leave one rotation, whose new key is the org key."""
    template = _config(tmp_path / "template")
    old = _did(template)
    for point in itertools.count(1):
        config = replace(template, data_dir=shutil.copytree(template.data_dir, tmp_path / f"killed-at-{point}"))
        if not killed_at(point, lambda: rotate_key(config)):
            break
        finish_interrupted_rotation(config)
        if _did(config) == old:
            rotate_key(config)
        new = _did(config)
        assert new != old
        with RecordStore.open(config.data_dir) as store:
            assert [r.body.next for r in store.scan(issuer=old, kind="org")] == [new], point
            assert _replica(config, store).succession.keys(new) == (old, new)
    assert point > 5
