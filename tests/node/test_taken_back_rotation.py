"""A rotation of the org key taken back as the node started (node.taken_back_rotation): the start refuses while it is
kept, and `vouchnet key adopt` and `key contest` decide it, each refusing what is not theirs to do. (The whole way,
with a peer, is tests/node/test_restore.py.)"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing

import pytest
import trio

from gossip.own_records import OWN_RECORDS_FILE, OwnRecords
from gossip.replica import Replica
from gossip.store import RecordStore
from node import cli
from node.config import load_config
from node.daemon import catch_up_stopped, serve_node
from node.keys import create_org_key, load_org_key
from node.setup import init_data_dir
from node.store_manifest import list_present
from node.taken_back_rotation import TAKEN_BACK_FILE, keep, kept
from vouching import did_key, org_body

from ..factories import Org


@pytest.fixture
def taken_back(tmp_path):
    """A stopped node's data directory keeping a rotation of its key to a successor whose org.key is in tmp_path."""
    config = _config(tmp_path / "a")
    key = load_org_key(config.key_path)
    successor = create_org_key(tmp_path / "org.key")
    with RecordStore.open(config.data_dir) as store:
        head = _replica(key, store).issue("org", org_body("a", "test"))
    rotation = Org(key=key, seq=head.seq, prev=head.id).record(
        "org", org_body("a", "test", next=did_key(bytes(successor.verify_key))))
    keep(config.data_dir, rotation)
    return config, rotation


def _config(path):
    made = init_data_dir(path, network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    return load_config(made.data_dir)


def _replica(key, store):
    return Replica(key, store, roots=(), max_hops=2, held_limit=10)


def _run(config, capsys) -> tuple[int, str]:
    status = cli.main(["run", "--dir", str(config.data_dir)])
    return status, capsys.readouterr().err


def test_the_start_refuses_while_a_rotation_taken_back_is_kept(taken_back, capsys):
    config, rotation = taken_back
    status, err = _run(config, capsys)
    assert status == 1
    assert f"signed a rotation to {rotation.body.next} on 2023-11-14T22:13:20Z (seq 2)" in err
    assert f"vouchnet key adopt --dir {config.data_dir} FILE" in err and "vouchnet key contest" in err
    (config.data_dir / TAKEN_BACK_FILE).write_bytes(b"not a record")
    status, err = _run(config, capsys)
    assert status == 1 and f"{TAKEN_BACK_FILE}: not a record" in err


def test_adopt_takes_only_the_successor_the_rotation_names_readable_by_its_owner_alone(taken_back, tmp_path, capsys):
    config, rotation = taken_back
    old = config.key_path.read_bytes()
    create_org_key(tmp_path / "other.key")
    assert cli.main(["key", "adopt", "--dir", str(config.data_dir), str(tmp_path / "other.key")]) == 2
    assert f"not {rotation.body.next}, the key the rotation names" in capsys.readouterr().err
    os.chmod(tmp_path / "org.key", 0o644)
    assert cli.main(["key", "adopt", "--dir", str(config.data_dir), str(tmp_path / "org.key")]) == 2
    assert "are too open; run `chmod 600" in capsys.readouterr().err
    assert config.key_path.read_bytes() == old and (config.data_dir / TAKEN_BACK_FILE).exists()
    with RecordStore.open(config.data_dir) as store:
        assert not store.has(rotation.id)
    os.chmod(tmp_path / "org.key", 0o600)
    assert cli.main(["key", "adopt", "--dir", str(config.data_dir), str(tmp_path / "org.key")]) == 0
    assert json.loads(capsys.readouterr().out) == {"did": rotation.body.next}
    assert config.key_path.read_bytes() == (tmp_path / "org.key").read_bytes()
    assert os.stat(config.key_path).st_mode & 0o777 == 0o600
    assert not (config.data_dir / TAKEN_BACK_FILE).exists()
    with RecordStore.open(config.data_dir) as store:
        assert store.has(rotation.id)  # the successor's first record, given back by peers, links at once


def _adopted(config):
    """The key the data directory's list of the org's records from peers expects records of (gossip.own_records)."""
    with RecordStore.open(config.data_dir) as store, closing(OwnRecords.open(config.data_dir, lambda: 0,
                                                                             store)) as own_records:
        return own_records.adopted


async def test_adopt_expects_the_successor_s_records_until_a_start_s_catch_up_sync_ends(taken_back, tmp_path):
    """What the successor signed in the newer copy comes back from peers as the node starts; a start interrupted
    before its catch-up sync ended (signing nothing) expects the rest at the next (tests/gossip/test_own_records.py);
    one whose catch-up ended (here: no peers to dial) and that signs does not."""
    config, rotation = taken_back
    assert cli.main(["key", "adopt", "--dir", str(config.data_dir), str(tmp_path / "org.key")]) == 0
    assert _adopted(config) == rotation.body.next
    with trio.CancelScope() as interrupted:
        await catch_up_stopped(config, opened=lambda node: interrupted.cancel())
    assert interrupted.cancelled_caught and _adopted(config) == rotation.body.next
    async with trio.open_nursery() as nursery:
        node = await nursery.start(serve_node, config)
        assert node.startup_sync == "no_peers" and node.replica.own_records.adopted is None
        nursery.cancel_scope.cancel()
    assert _adopted(config) is None


def test_adopt_refuses_a_data_directory_that_lost_its_list_of_the_org_s_records_from_peers(taken_back, tmp_path,
                                                                                           capsys):
    """It would make a new one, empty, which the start would then take as the list: a compromise signal lost."""
    config, rotation = taken_back
    with RecordStore.open(config.data_dir) as store:
        OwnRecords.open(config.data_dir, lambda: 0, store).close()
    list_present(config.data_dir)
    (config.data_dir / OWN_RECORDS_FILE).unlink()
    assert cli.main(["key", "adopt", "--dir", str(config.data_dir), str(tmp_path / "org.key")]) == 1
    assert f"{config.data_dir / OWN_RECORDS_FILE}: missing" in capsys.readouterr().err
    assert not (config.data_dir / OWN_RECORDS_FILE).exists() and (config.data_dir / TAKEN_BACK_FILE).exists()


def test_an_adopt_interrupted_after_storing_the_rotation_is_finished_by_running_it_again_not_contested(
        taken_back, tmp_path, capsys):
    config, rotation = taken_back
    with RecordStore.open(config.data_dir) as store:
        assert _replica(load_org_key(config.key_path), store).adopt(rotation)
    assert _run(config, capsys)[0] == 1  # the rotation kept: not "retired, put the successor in org.key.next"
    assert cli.main(["key", "contest", "--dir", str(config.data_dir)]) == 1
    assert "run that again to finish it" in capsys.readouterr().err
    assert cli.main(["key", "adopt", "--dir", str(config.data_dir), str(tmp_path / "org.key")]) == 0
    assert load_org_key(config.key_path).verify_key == load_org_key(tmp_path / "org.key").verify_key


def test_a_kept_rotation_naming_the_org_key_was_adopted_and_is_removed(taken_back, tmp_path):
    """`key adopt` stopped after installing the key, before removing the file."""
    config, rotation = taken_back
    config.key_path.write_bytes((tmp_path / "org.key").read_bytes())
    assert kept(config, rotation.body.next) is None and not (config.data_dir / TAKEN_BACK_FILE).exists()


def test_an_adopt_stopped_after_installing_the_key_is_finished_by_running_it_again(taken_back, tmp_path, capsys):
    """Run again, it said "missing: … nothing to decide" and exited 1, though it had only its file left to remove."""
    config, rotation = taken_back
    config.key_path.write_bytes((tmp_path / "org.key").read_bytes())
    assert cli.main(["key", "adopt", "--dir", str(config.data_dir), str(tmp_path / "org.key")]) == 0
    assert json.loads(capsys.readouterr().out) == {"did": rotation.body.next}
    assert not (config.data_dir / TAKEN_BACK_FILE).exists()


def test_contest_signs_the_org_record_again_at_the_rotations_seq(taken_back, capsys):
    config, rotation = taken_back
    assert cli.main(["key", "contest", "--dir", str(config.data_dir)]) == 0
    assert json.loads(capsys.readouterr().out) == {"org": rotation.iss, "contested": rotation.body.next, "seq": 2}
    with RecordStore.open(config.data_dir) as store:
        ours = store.head(rotation.iss)
        assert ours.seq == rotation.seq and ours.id != rotation.id
    assert not (config.data_dir / TAKEN_BACK_FILE).exists()


@pytest.mark.parametrize("command", [["adopt", "{dir}/org.key"], ["contest"]])
def test_with_no_rotation_taken_back_there_is_nothing_to_adopt_or_contest(tmp_path, capsys, command):
    config = _config(tmp_path / "a")
    args = [part.format(dir=config.data_dir) for part in command]
    assert cli.main(["key", *args, "--dir", str(config.data_dir)]) == 1
    assert f"{TAKEN_BACK_FILE}: missing: no rotation of the org key" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["key", "rotate"], ["key", "rotate", "--without-catch-up"], ["key", "adopt"],
                                     ["key", "contest"]])
@pytest.mark.parametrize("how", ["missing", "damaged"])
def test_the_key_commands_name_a_records_ledger_they_cannot_use_without_a_traceback(taken_back, tmp_path, capsys,
                                                                                     command, how):
    """`key rotate`, `key adopt` and `key contest` on a damaged records ledger (a stored hash flipped, as a disk fault
    would) or one lost (here: its index left, as stores.list does not list it yet) ended in a Python traceback;
    `vouchnet run` names the file, and so do they now."""
    config, _rotation = taken_back
    ledger = config.data_dir / "records.ledger"
    if how == "missing":
        ledger.unlink()
    else:
        with closing(sqlite3.connect(ledger)) as db, db:
            (hashes,) = db.execute("SELECT hashes FROM tiles WHERE id = 0").fetchone()
            db.execute("UPDATE tiles SET hashes = ? WHERE id = 0", (bytes([hashes[0] ^ 1]) + hashes[1:],))
    argv = [*command, "--dir", str(config.data_dir), *([str(tmp_path / "org.key")] if "adopt" in command else [])]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"vouchnet {' '.join(command[:2])}: records: ") and len(err.splitlines()) == 1, err
    assert (f"{ledger}: corrupt: " if how == "damaged" else "but records.ledger holds 0") in err
