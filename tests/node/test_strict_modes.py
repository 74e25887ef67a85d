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
