"""Editing a node's config.toml as an operator would: one line changed, comments kept, the result must load."""

import itertools
import os
import stat

import pytest

from node.config import ConfigError, load_config
from node.setup import init_data_dir
from testnet.config_edit import edit_config, set_values

from ..node.kill_points import killed_at


@pytest.fixture
def data_dir(tmp_path):
    return init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",),
                         api="127.0.0.1:0").data_dir


def test_values_replace_their_lines_in_the_right_section_and_the_comments_stay(data_dir):
    before = (data_dir / "config.toml").read_text()
    changed = edit_config(data_dir, {("telemetry", "epoch_seconds"): 2.0, ("trust", "roots"): [],
                                     ("p2p", "sync_interval"): 3, ("witness", "checkpoint_interval"): 0.5})
    after = (data_dir / "config.toml").read_text()
    assert changed
    assert [line for line in before.splitlines() if line.startswith("#")] == \
        [line for line in after.splitlines() if line.startswith("#")]
    config = load_config(data_dir)
    assert (config.epoch_seconds, config.sync_interval, config.checkpoint_interval) == (2.0, 3.0, 0.5)
    assert not edit_config(data_dir, {("telemetry", "epoch_seconds"): 2.0})  # already so: nothing written


def test_a_key_only_in_a_comment_is_added_and_a_missing_section_appended():
    text = "[telemetry]\n# dp_epsilon = 1.0\nepoch_seconds = 5.0\n"
    edited = set_values(text, {("telemetry", "dp_epsilon"): 2.0, ("limits", "max_peers"): 8})
    assert edited == ("[telemetry]\ndp_epsilon = 2.0\n# dp_epsilon = 1.0\nepoch_seconds = 5.0\n\n"
                      "[limits]\nmax_peers = 8\n")


def test_an_edit_that_would_not_load_is_undone(data_dir):
    before = (data_dir / "config.toml").read_text()
    with pytest.raises(ConfigError, match="telemetry.epoch_seconds: must be at least 1"):
        edit_config(data_dir, {("telemetry", "epoch_seconds"): 0.5})
    assert (data_dir / "config.toml").read_text() == before



def test_an_edit_killed_at_any_moment_leaves_a_config_that_loads_as_before_or_as_edited(data_dir):
    """Before: config.toml was rewritten in place (and again to undo an edit that would not load): killed midway, it
    left a config the node refused to start with."""
    path = data_dir / "config.toml"
    os.chmod(path, 0o640)
    before = path.read_text()
    edited = set_values(before, {("telemetry", "epoch_seconds"): 2.0})
    for point in itertools.count(1):
        path.write_text(before)
        if not killed_at(point, lambda: edit_config(data_dir, {("telemetry", "epoch_seconds"): 2.0})):
            break
        assert path.read_text() in (before, edited), point
        load_config(data_dir)
    assert path.read_text() == edited and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in data_dir.iterdir()) == ["api.token", "config.toml", "org.key"]
