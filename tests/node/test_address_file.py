"""A node whose `[api] bind` has port 0 writes the address it bound to `api.url`, where `vouchnet ... --dir` finds it
(node.address_file, node.commands.common)."""

import stat
from functools import partial

import pytest
import trio

from node import cli
from node.address_file import API_URL_FILE, ApiUrlFileError, published_api_url, read_api_url
from node.logs import logfmt_fields
from node.setup import init_data_dir

from .in_process import LOOPBACK, running


async def _status(capsys, data_dir):
    code = await trio.to_thread.run_sync(partial(cli.main, ["status", "--dir", str(data_dir), "--json"]))
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_cli_reaches_a_node_on_port_0_until_it_stops(tmp_path, capsys):
    async with running(tmp_path) as node:
        written = tmp_path / API_URL_FILE
        assert written.read_text() == f"{node.api_url}\n"
        assert stat.S_IMODE(written.stat().st_mode) == 0o600  # as every file the node writes
        code, out, _ = await _status(capsys, tmp_path)
        assert code == 0 and node.did in out
    assert not written.exists()
    code, _, err = await _status(capsys, tmp_path)
    assert code == 1
    assert f"the node of {tmp_path} is not running" in err and ":0" not in err
    assert err.endswith(f"; start it with `vouchnet run --dir {tmp_path}`\n")  # (it said no more, found by stop 45)


async def test_a_stale_address_file_does_not_pass_another_node_off_as_this_one(tmp_path, capsys):
    """What a killed node leaves: api.url naming a port the OS has since given to another node."""
    init_data_dir(tmp_path / "killed", network="test", listen=LOOPBACK, api="127.0.0.1:0")
    async with running(tmp_path / "other") as other:
        (tmp_path / "killed" / API_URL_FILE).write_text(f"{other.api_url}\n")
        code, _, err = await _status(capsys, tmp_path / "killed")
    assert code == 1
    assert f"the node at {other.api_url} is {other.did}" in err
    assert f"{tmp_path / 'killed' / API_URL_FILE}, left by its node if that was killed" in err


@pytest.mark.slow
def test_the_address_a_killed_node_leaves_is_named_as_unreachable(disk_path, tmp_path, forked_cli, capsys):
    init_data_dir(disk_path, network="test", listen=LOOPBACK, api="127.0.0.1:0")
    process = forked_cli.spawn(["run", "--dir", str(disk_path)], tmp_path / "run.log")
    try:
        running = process.logged("node running", timeout=120)
    finally:
        process.kill()
        process.wait()
    assert running is not None, "the node exited before it was running"
    api = logfmt_fields(running)["api"]
    assert (disk_path / API_URL_FILE).read_text() == f"{api}\n"  # left behind
    assert cli.main(["status", "--dir", str(disk_path)]) == 1
    assert f"cannot reach the node at {api}" in capsys.readouterr().err


def test_a_configured_port_is_used_whatever_the_address_file_says(tmp_path, capsys):
    init_data_dir(tmp_path, network="test", listen=LOOPBACK, api="127.0.0.1:9")
    (tmp_path / API_URL_FILE).write_text("http://127.0.0.1:1\n")
    assert cli.main(["status", "--dir", str(tmp_path)]) == 1
    assert "cannot reach the node at http://127.0.0.1:9" in capsys.readouterr().err


def test_the_file_is_written_whole_and_removed(tmp_path):
    with published_api_url(tmp_path, "http://127.0.0.1:1234"):
        assert read_api_url(tmp_path) == "http://127.0.0.1:1234"
        assert [p.name for p in tmp_path.iterdir()] == [API_URL_FILE]  # no partial file left
    assert read_api_url(tmp_path) is None


@pytest.mark.parametrize("text", ["", "http://a:1 http://b:2", "x" * 2000])
def test_an_address_file_that_is_not_one_url_is_refused_by_name(tmp_path, text):
    (tmp_path / API_URL_FILE).write_text(text)
    with pytest.raises(ApiUrlFileError, match=f"{tmp_path / API_URL_FILE}: not one URL"):
        read_api_url(tmp_path)
