"""Log lines: what LogfmtFormatter writes, logfmt_fields reads back, how many a flood writes (node.logs)."""

import logging
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiaddr import Multiaddr

from node import cli, daemon
from node.logs import MAX_ERROR, MAX_VALUE, LogfmtFormatter, configure_logging, logfmt_fields
from node.setup import init_data_dir
from vouching.log_limit import BURST

_KEYS = st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True).filter(lambda key: key not in ("ts", "level", "msg"))


@given(st.text(max_size=MAX_VALUE), st.dictionaries(_KEYS, st.text(max_size=MAX_VALUE) | st.integers()))
def test_the_fields_of_a_formatted_line_read_back_as_they_were_logged_from_one_printable_line(message, fields):
    """A peer's words reach the log (a dial error quotes what the host there said): escape sequences or bidi
    overrides in them must not reach the operator's terminal, nor a newline forge a line."""
    record = logging.LogRecord("vouchnet.test", logging.INFO, __file__, 1, message, None, None)
    record.fields = fields
    line = LogfmtFormatter().format(record)
    assert line.isprintable()
    read = logfmt_fields(line + "\n")
    assert read.pop("ts") and read.pop("level") == "info" and read.pop("logger") == "vouchnet.test"
    assert read == {"msg": message, **{key: str(value) for key, value in fields.items()}}


def test_a_hostile_dial_error_is_logged_escaped():
    record = logging.LogRecord("gossip.peers", logging.DEBUG, __file__, 1, "dial %s failed: %s",
                               ("/ip4/10.0.0.1/tcp/1/p2p/x", "\x1b[2J\u202egnp.exe\r\nlevel=error"), None)
    line = LogfmtFormatter().format(record)
    assert line.endswith(r'msg="dial /ip4/10.0.0.1/tcp/1/p2p/x failed: \x1b[2J\u202egnp.exe\r\nlevel=error"')


def test_a_peer_s_megabyte_in_a_line_is_cut_to_its_first_and_last_characters():
    """py-libp2p names a topic a peer asked to join in its warning, and a topic is up to an RPC's size: each such
    line was 60 KB for 60,000 characters of topic."""
    topic = "head" + "t" * 60_000 + "tail"
    record = logging.LogRecord("libp2p.pubsub", logging.WARNING, __file__, 1, "ignoring subscribe to %s", (topic,),
                               None)
    record.fields = {"topic": topic}
    fields = logfmt_fields(LogfmtFormatter().format(record))
    for value in (fields["msg"], fields["topic"]):
        assert len(value) < MAX_VALUE + 40 and "head" in value and value.endswith("tail")
    assert fields["topic"].startswith("headttt") and "t…(57960 characters cut)…t" in fields["topic"]


def test_a_traceback_past_max_error_keeps_its_start_and_its_exception():
    try:
        raise ValueError("x" * 100_000 + " the end")
    except ValueError:
        record = logging.LogRecord("gossip.host", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    error = logfmt_fields(LogfmtFormatter().format(record))["error"]
    assert error.startswith("Traceback") and error.endswith(" the end") and len(error) < MAX_ERROR + 40


def test_where_a_node_listens_reads_from_its_running_line():
    line = ('ts=2026-11-27T14:00:00.000Z level=info logger=node.daemon msg="node running" did=did:key:z6Mk '
            'listen=/ip4/127.0.0.1/tcp/40211/p2p/12D3KooW api=http://127.0.0.1:40213 network=test records=1')
    fields = logfmt_fields(line)
    assert (fields["listen"], fields["api"]) == ("/ip4/127.0.0.1/tcp/40211/p2p/12D3KooW", "http://127.0.0.1:40213")


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_node_log_writes_a_peer_triggered_flood_as_a_burst(root_logging, capsys):
    """What configure_logging sets up (a node's `vouchnet run`): 10,000 refused requests of a peer, one line each,
    write BURST lines."""
    configure_logging()
    log = logging.getLogger("gossip.sync_service")
    for _ in range(10_000):
        log.info("sync request from %s refused (%s): %s", "12D3KooWpeer", "malformed", "not CBOR")
    log.warning("another line")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == BURST + 1
    assert logfmt_fields(lines[-1])["msg"] == "another line"


@pytest.mark.parametrize(("level", "libraries_shown"), [("debug", False), ("debug:all", True)])
def test_run_at_debug_prints_vouchnet_s_debug_lines_and_the_libraries_only_at_debug_all(tmp_path, monkeypatch, capsys,
                                                                                         level, libraries_shown):
    """Before: `vouchnet run --log-level debug` printed py-multiaddr's lines for each address it parsed, 66 of the 70
    lines of a node's start, around the node's own."""
    made = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")

    async def node(config, *, stop_deadline):  # what the node does as it starts, in short: parse an address, say so
        address = Multiaddr("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
        logging.getLogger("gossip.peers").debug("dialling %s", address)  # (at DEBUG)

    monkeypatch.setattr(daemon, "run_until_signalled", node)
    assert cli.main(["run", "--dir", str(made.data_dir), "--log-level", level]) == 0
    loggers = [logfmt_fields(line)["logger"] for line in capsys.readouterr().err.splitlines()]
    assert "gossip.peers" in loggers
    assert any(name.startswith("multiaddr") for name in loggers) == libraries_shown
