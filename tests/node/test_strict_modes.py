"""A data directory or config.toml others may write is refused as the node starts (node.strict_modes), as ssh's
StrictModes refuses; by the mode bits, since the tests run as root, for whom access(2) allows everything."""

import os

import pytest

from node.setup import init_data_dir
from node.strict_modes import TooOpen, check_strict_modes


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
    assert str(refused.value) == (f"{path}: owned by uid 12345, not by root (uid 0) the node runs as, so that user "
                                  f"could replace it; run the node as uid 12345, or `chown root {path}`")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a file away")
def test_a_node_takes_what_its_user_or_root_owns(data_dir, monkeypatch):
    """A service user's node reads a config.toml and key that root installed (root may change anything anyway)."""
    os.chown(data_dir, 12345, -1)
    monkeypatch.setattr(os, "geteuid", lambda: 12345)
    check_strict_modes(data_dir)
