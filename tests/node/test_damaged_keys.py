"""A key file missing or damaged (not a 32-byte seed) is refused with what to do about it, said for the file and the
command that read it: the data directory's org.key restored from a backup, `key adopt`'s FILE given the newer copy's
org.key, org.key.next removed before its rotation was signed and restored after. Found by stop 45's operator walk:
every one of them said "expected a 32-byte Ed25519 seed, found 5 bytes" and nothing more, and `key adopt FILE`
missing was told to restore it from a backup of the data directory."""

from __future__ import annotations

import os

import pytest

from gossip.replica import Replica
from gossip.store import RecordStore
from node import cli
from node.config import load_config
from node.keys import KeyFileError, create_org_key, load_org_key
from node.rotation import NEXT_KEY_FILE, finish_interrupted_rotation, rotate_key
from node.setup import init_data_dir
from vouching import did_key, org_body

from .test_taken_back_rotation import taken_back  # noqa: F401 (a fixture)

RESTORE = "restore it from a backup of this data directory: it is the org's identity"


def _config(path):
    made = init_data_dir(path, network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    return load_config(made.data_dir)


def _damage(path):
    path.write_bytes(b"short")
    os.chmod(path, 0o600)


def _err(argv, capsys) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    refusal = [line for line in err.splitlines() if not line.startswith("ts=")]  # (`run` logs as it starts)
    assert len(refusal) == 1, err  # one line, no traceback
    return refusal[0]


@pytest.mark.parametrize("command", [["run"], ["key", "rotate"], ["key", "contest"],
                                     ["agent", "new", "--name", "bob", "--out", "{out}"]], ids=" ".join)
def test_a_damaged_org_key_is_to_be_restored_from_a_backup(tmp_path, capsys, command):
    config = _config(tmp_path / "a")
    _damage(config.key_path)
    argv = [word.format(out=tmp_path / "out") for word in command]
    err = _err([*argv, "--dir", str(config.data_dir)], capsys)
    assert f"{config.key_path}: damaged: an org key is a 32-byte Ed25519 seed, and it holds 5 bytes; {RESTORE}" in err


def test_init_keeping_a_damaged_key_says_to_remove_it_for_a_new_org_or_restore_it(tmp_path, capsys):
    config = _config(tmp_path / "a")
    (config.data_dir / "config.toml").unlink()  # an init cut short: init keeps the key it finds
    _damage(config.key_path)
    err = _err(["init", "--dir", str(config.data_dir), "--network", "test"], capsys)
    assert ("holds 5 bytes; init keeps the org key of a directory holding no config.toml (an init cut short): remove "
            "it and run init again to make a new org under a new key, or, if the org used this key, restore it from a "
            "backup") in err


@pytest.mark.parametrize("damage", ["missing", "damaged"])
def test_key_adopt_says_to_give_it_the_newer_copy_s_key(taken_back, tmp_path, capsys, damage):  # noqa: F811
    config, rotation = taken_back
    given = tmp_path / "given.key"
    if damage == "damaged":
        _damage(given)
    err = _err(["key", "adopt", "--dir", str(config.data_dir), str(given)], capsys)
    assert f"{given}: {damage}" in err
    assert (f"give it the org.key of the newer copy of the data directory, the key {rotation.body.next} the rotation "
            "names; org.key is unchanged") in err
    assert "from a backup of this data directory" not in err


def test_a_damaged_new_key_of_a_rotation_not_yet_signed_is_to_be_removed(tmp_path, capsys):
    config = _config(tmp_path / "a")
    org = did_key(bytes(load_org_key(config.key_path).verify_key))
    _damage(config.data_dir / NEXT_KEY_FILE)
    assert finish_interrupted_rotation(config) is None  # a start leaves it for `key rotate`, and starts
    err = _err(["key", "rotate", "--dir", str(config.data_dir), "--without-catch-up"], capsys)
    assert ("it is the new key an interrupted `vouchnet key rotate` made before signing anything (org.key is "
            "unchanged): remove it and run `vouchnet key rotate` again, which makes another") in err
    (config.data_dir / NEXT_KEY_FILE).unlink()  # as it says
    assert rotate_key(config).old == org


def test_a_damaged_new_key_of_a_signed_rotation_is_to_be_restored(tmp_path, capsys):
    config = _config(tmp_path / "a")
    key = load_org_key(config.key_path)
    new = did_key(bytes(create_org_key(tmp_path / "backup.key").verify_key))
    with RecordStore.open(config.data_dir) as store:  # the rotation signed, its key then damaged
        Replica(key, store, roots=(), max_hops=2, held_limit=10).issue("org", org_body("a", "test", next=new))
    _damage(config.data_dir / NEXT_KEY_FILE)
    way_forward = (f"restore org.key.next, holding {new}, from a backup taken since the rotation was signed (then "
                   "start the node, or run `vouchnet key rotate` again, to finish it); without that key the org can "
                   "sign nothing more, and must be set up again under a new key")
    with pytest.raises(KeyFileError, match="holds 5 bytes") as refused:  # the node's start
        finish_interrupted_rotation(config)
    assert way_forward in str(refused.value)
    assert way_forward in _err(["key", "rotate", "--dir", str(config.data_dir)], capsys)
    (config.data_dir / NEXT_KEY_FILE).unlink()
    assert way_forward in _err(["key", "rotate", "--dir", str(config.data_dir)], capsys)  # missing: the same
