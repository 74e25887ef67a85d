"""A data directory or config.toml others may write is refused as the node starts (node.strict_modes), as ssh's
StrictModes refuses, and by every command that signs with the org key or writes in the data directory; by the mode
bits, since the tests run as root, for whom access(2) allows everything."""

import os

import pytest

from gossip.replica import Replica
from gossip.store import RecordStore
from node import cli
from node.keys import create_org_key, load_org_key
from node.rotation import NEXT_KEY_FILE
from node.setup import init_data_dir
from node.strict_modes import TooOpen, check_strict_modes
from vouching import did_key, org_body

from ..factories import new_did


@pytest.fixture
def data_dir(tmp_path):
    init_data_dir(tmp_path / "node", network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    return tmp_path / "node"


@pytest.mark.parametrize("directory, config", [(0o700, 0o600), (0o755, 0o644), (0o1711, 0o444)])
def test_a_directory_and_config_only_their_owner_writes_are_accepted(data_dir, directory, config):
    os.chmod(data_dir, directory)
    os.chmod(data_dir / "config.toml", config)
    check_strict_modes(data_dir)


@pytest.mark.parametrize("name, mode", [("", 0o770), ("", 0o702), ("", 0o1777), ("config.toml", 0o664),
                                        ("config.toml", 0o646)])
def test_a_directory_or_config_group_or_others_may_write_is_refused_naming_the_chmod(data_dir, name, mode):
    path = data_dir / name if name else data_dir
    os.chmod(path, mode)
    with pytest.raises(TooOpen) as refused:
        check_strict_modes(data_dir)
    assert str(refused.value) == (f"{path}: writable by group or others (permissions {mode:04o}), so another user "
                                  f"could change what the node trusts; run `chmod go-w {path}`")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a file away")
@pytest.mark.parametrize("name", ["", "config.toml", "org.key"])
def test_a_directory_config_or_key_another_user_owns_is_refused_naming_the_chown(data_dir, name):
    """A node run as root on a directory a user owns would sign with whatever key that user put there (PostgreSQL
    refuses a data directory another user owns; ssh's StrictModes, a home another user owns)."""
    path = data_dir / name if name else data_dir
    os.chown(path, 12345, -1)
    with pytest.raises(TooOpen) as refused:
        check_strict_modes(data_dir)
    assert str(refused.value) == (f"{path}: owned by uid 12345, not by root (uid 0) vouchnet runs as, so that user "
                                  f"could replace it; run vouchnet as uid 12345, or, if root is to run the node, "
                                  f"`chown root {path}`")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a file away")
def test_a_node_takes_what_its_user_or_root_owns(data_dir, monkeypatch):
    """A service user's node reads a config.toml and key that root installed (root may change anything anyway)."""
    os.chown(data_dir, 12345, -1)
    monkeypatch.setattr(os, "geteuid", lambda: 12345)
    check_strict_modes(data_dir)


def _interrupted_rotation(data_dir):
    """A `key rotate` killed after it signed the rotation, which `key rotate` finishes without the catch-up."""
    successor = create_org_key(data_dir / NEXT_KEY_FILE)
    with RecordStore.open(data_dir) as store:
        Replica(load_org_key(data_dir / "org.key"), store, roots=(), max_hops=2, held_limit=10).issue(
            "org", org_body("a", "test", next=did_key(bytes(successor.verify_key))))


_SIGNING = {
    "key rotate --without-catch-up": (["key", "rotate", "--without-catch-up"], lambda data_dir: None),
    "key rotate, finishing": (["key", "rotate"], _interrupted_rotation),
    "key adopt": (["key", "adopt", "{out}/newer.key"], lambda data_dir: None),
    "key contest": (["key", "contest"], lambda data_dir: None),
    "agent new": (["agent", "new", "--out", "{out}"], lambda data_dir: None),
    "audit export": (["audit", "export", "--agent", new_did(), "--from", "2026-01-01", "--to", "2026-02-01", "--out",
                      "{out}/export.json"], lambda data_dir: None),
}


@pytest.mark.parametrize("command", _SIGNING)
@pytest.mark.parametrize("name, mode, refusal", [
    ("", 0o775, "{path}: writable by group or others (permissions 0775), so another user could change what the node "
                "trusts; run `chmod go-w {path}`"),
    ("config.toml", 0o666, "{path}: writable by group or others (permissions 0666), so another user could change what "
                           "the node trusts; run `chmod go-w {path}`"),
    ("org.key", 0o640, "{path}: permissions 0640 are too open; run `chmod 600 {path}`"),
], ids=["directory", "config", "key"])
def test_a_command_that_signs_with_the_key_refuses_what_run_refuses_in_its_words(data_dir, tmp_path, capsys, command,
                                                                                   name, mode, refusal):
    """Before, `key rotate --without-catch-up` (or finishing an interrupted rotation), `agent new` and `audit export`
    signed in a data directory `vouchnet run` refuses (others could have swapped the key or changed what it trusts),
    and `key contest` failed on a key others may read with a traceback."""
    argv, prepare = _SIGNING[command]
    prepare(data_dir)
    (out := tmp_path / "out").mkdir()
    create_org_key(out / "newer.key")
    key = (data_dir / "org.key").read_bytes()
    path = data_dir / name if name else data_dir
    os.chmod(path, mode)
    assert cli.main([*(arg.format(out=out) for arg in argv), "--dir", str(data_dir)]) == 2
    assert capsys.readouterr().err == f"vouchnet {' '.join(argv[:2])}: {refusal.format(path=path)}\n"
    assert (data_dir / "org.key").read_bytes() == key and os.listdir(out) == ["newer.key"]


def test_run_refuses_a_data_directory_open_to_others_before_it_logs_that_it_starts(data_dir, capsys):
    """`vouchnet run` logs that it starts before the node's libraries load, and only once node.strict_modes passed
    its data directory: the refusal is all a start refused says."""
    os.chmod(data_dir, 0o775)
    assert cli.main(["run", "--dir", str(data_dir)]) == 2
    assert capsys.readouterr().err == (f"vouchnet run: {data_dir}: writable by group or others (permissions 0775), so "
                                       f"another user could change what the node trusts; run `chmod go-w {data_dir}`\n")


_WRITING = {  # commands that work on the data directory without signing: each writes there
    "agent list": ["agent", "list"],
    "agent revoke": ["agent", "revoke", "alice", "--reason", "left"],
    "log repair": ["log", "repair"],
    "log verify": ["log", "verify"],
    "stores accept-loss": ["stores", "accept-loss", "credentials.db"],
}


@pytest.mark.parametrize("command", _WRITING)
@pytest.mark.parametrize("name, mode", [("", 0o775), ("config.toml", 0o666)], ids=["directory", "config"])
def test_a_command_that_writes_in_the_data_directory_refuses_what_run_refuses_in_its_words(data_dir, capsys, command,
                                                                                         name, mode):
    """Before, `agent list` and `agent revoke` (credentials.db), `log repair` (the records ledger), `stores
    accept-loss` (stores.list) and `log verify` (verified.checkpoint) wrote in a data directory `vouchnet run`
    refuses."""
    path = data_dir / name if name else data_dir
    os.chmod(path, mode)
    before = sorted(os.listdir(data_dir))
    assert cli.main([*_WRITING[command], "--dir", str(data_dir)]) == 2
    assert capsys.readouterr().err == (f"vouchnet {command}: {path}: writable by group or others (permissions "
                                       f"{mode:04o}), so another user could change what the node trusts; run `chmod "
                                       f"go-w {path}`\n")
    assert sorted(os.listdir(data_dir)) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a file away")
@pytest.mark.parametrize("command", _WRITING)
def test_a_command_run_as_root_in_a_users_data_directory_leaves_nothing_the_node_cannot_use(data_dir, capsys,
                                                                                          command):
    """Run as root there, `agent list` made a credentials.db and a stores.list of root's, which the node, run as the
    directory's user, could not write or read. The `chown root` offered is for root to run the node: it said only
    "or `chown root DIR`", which, done to run a command, leaves a directory the node, run as its user, cannot write."""
    os.chown(data_dir, 12345, -1)
    before = sorted(os.listdir(data_dir))
    assert cli.main([*_WRITING[command], "--dir", str(data_dir)]) == 2
    assert capsys.readouterr().err == (f"vouchnet {command}: {data_dir}: owned by uid 12345, not by root (uid 0) "
                                       "vouchnet runs as, so that user could replace it; run vouchnet as uid 12345, "
                                       f"or, if root is to run the node, `chown root {data_dir}`\n")
    assert sorted(os.listdir(data_dir)) == before
