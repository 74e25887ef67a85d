"""The node commands of `vouchnet`, run through main() against the API served on 127.0.0.1 as the node serves it."""

import argparse
import errno
import importlib
import importlib.metadata
import io
import itertools
import json
import logging
import math
import os
import resource
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

import gossip.own_records
import gossip.store
from gossip.host import peer_id_from_public_key, peer_org
from gossip.peers import APART_FIRST, BLOCKED
from gossip.replica import Replica
from ledger import Checkpoint, Ed25519Signer, ProofError, format_note, log_origin, note_signature, verify_inclusion
from node import cli
from node.api import create_app
from node.api.http_server import serve
from node.api.scores import scores_router
from node.audit_log import AuditLog
from node.cli_commands import Command
from node.client import NodeApiError, NodeClient
from node.commands import common
from node.commands.log_verify import verify_log
from node.commands.records import describe
from node.commands.vouches import parse_expires
from node.config import render_template
from node.data_lock import locked_data_dir
from node.keys import create_token
from node.metrics import Registry
from node.setup import init_data_dir
from node.stream import Broadcaster
from node.trust import TrustService
from vouching import did_key, digest_body, org_body, revoke_body, verify_record, vouch_body
from vouching.bodies import CATEGORIES, OUTCOMES
from vouching.counts import counted
from vouching.params import HOUR_MS
from vouching.policy import Policy
from vouching.schema import MAX_UINT

from ..factories import Org, new_did
from ..fsyncs import recorded_fsyncs
from .fake_node import fake_node
from .telemetry_node import Clock
from .test_readme import documented_paths


@pytest.fixture
def data_dir(tmp_path, node, url):
    """The served node's data directory (its ledger there) as `vouchnet init` leaves it: its config, pointing at the
    node, and its token."""
    return _data_dir(tmp_path / "node", node, url)


def _data_dir(directory: Path, node, url: str) -> Path:
    """`directory`, the node's, as `vouchnet init` leaves it for the node served at `url`."""
    api = url.removeprefix("http://")
    text = render_template(network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api=api, bootstrap=(), roots=())
    (directory / "config.toml").write_text(text)
    node.token = create_token(directory / "api.token")
    return directory


@pytest.fixture
def run(capsys):
    """Run `vouchnet ARGS...` off the trio thread that serves the API; (exit code, stdout, stderr)."""

    async def run(*argv):
        code = await trio.to_thread.run_sync(partial(cli.main, [str(a) for a in argv]))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def vouch(node, subject=None):
    return node.replica.issue("vouch", vouch_body(subject or new_did(), 0.5, "operator"))


# --- finding the node -----------------------------------------------------------------------------------


async def test_status_finds_the_node_through_its_data_directory(run, node, data_dir, monkeypatch):
    vouch(node)
    monkeypatch.setattr(node, "info", lambda: {"ledger": {"size": 1, "root": "ab12"},
                                               "log": {"state": "ok", "published": None}})
    code, out, _ = await run("status", "--dir", data_dir)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["did:", node.did]
    assert lines[1].split() == ["network:", "testnet"]
    assert "records: 1" in " ".join(out.split())
    assert "ledger: size=1 root=ab12" in " ".join(out.split())  # a mapping as key=value, not a Python repr
    assert "log: state=ok published=-" in " ".join(out.split())  # nothing known shown as "-", not as None


async def test_status_shows_a_mapping_inside_a_mapping_in_parentheses(run, node, url, monkeypatch):
    """`log`'s published checkpoint read `published=size=9  root=cd34  ledger_root=cd34`: its root as a sibling of
    ledger_root."""
    monkeypatch.setattr(node, "info", lambda: {"log": {"state": "ok", "published": {"size": 9, "root": "cd34"},
                                                       "ledger_root": "cd34"}})
    code, out, _ = await run("status", "--api", url)
    assert code == 0
    assert "log: state=ok published=(size=9 root=cd34) ledger_root=cd34" in " ".join(out.split())


async def test_the_data_directory_defaults_to_vouchnet_dir(run, node, data_dir, monkeypatch):
    monkeypatch.setenv("VOUCHNET_DIR", str(data_dir))
    code, out, _ = await run("status", "--json")
    assert (code, json.loads(out)["did"]) == (0, node.did)


async def test_status_finds_the_node_by_its_address(run, node, url):
    code, out, _ = await run("status", "--api", url, "--json")
    assert code == 0
    info = json.loads(out)
    assert (info["did"], info["peer_id"], info["records"]) == (node.did, "12D3KooWFake", 0)


async def test_a_directory_without_a_configuration_is_a_usage_error(run, tmp_path):
    code, _, err = await run("status", "--dir", tmp_path)
    assert code == 2
    assert "no configuration here; create one with `vouchnet init" in err


async def test_a_testnet_s_directory_given_as_a_node_s_names_its_nodes_data_directories(run, tmp_path):
    """Before: `score DID --dir TESTNET` said `no configuration here; create one with vouchnet init --dir TESTNET`,
    which makes a new org inside the testnet's directory."""
    for name in ("n01", "n00"):
        (tmp_path / "nodes" / name).mkdir(parents=True)
        (tmp_path / "nodes" / name / "config.toml").write_text("format = 1\n")
    code, _, err = await run("status", "--dir", tmp_path)
    assert code == 2
    assert err == (f"vouchnet status: {tmp_path}: no configuration here, but nodes' data directories below it (n00, "
                   f"n01, in {tmp_path}/nodes): give --dir one of them ({tmp_path}/nodes/n00)\n")


async def test_a_data_directory_that_does_not_exist_is_named_as_such(run, tmp_path):
    """A mistyped --dir: said to be missing, not a node to create (init there would make a new org key)."""
    code, _, err = await run("status", "--dir", tmp_path / "alcie")
    assert code == 2
    assert err == (f"vouchnet status: {tmp_path}/alcie: no such directory: give --dir (or $VOUCHNET_DIR) the node's "
                   "data directory, where `vouchnet init` wrote config.toml (`vouchnet init --dir "
                   f"{tmp_path}/alcie` creates a new node)\n")


async def test_a_mistyped_vouchnet_dir_is_named_with_the_variable(run, tmp_path, monkeypatch):
    """With no --dir, $VOUCHNET_DIR names the directory: told only to give --dir, its user looked for a typo in a
    command that had none."""
    monkeypatch.setenv("VOUCHNET_DIR", str(tmp_path / "alcie"))
    code, _, err = await run("status")
    assert code == 2
    assert err.startswith(f"vouchnet status: {tmp_path}/alcie: no such directory: give --dir (or $VOUCHNET_DIR) ")


async def test_a_data_directory_given_as_its_config_file_names_the_directory(run, tmp_path):
    node = init_data_dir(tmp_path / "alice", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    code, _, err = await run("status", "--dir", node.data_dir / "config.toml")
    assert code == 2
    assert err == (f"vouchnet status: {node.data_dir}/config.toml: a file, not a directory: give --dir (or "
                   f"$VOUCHNET_DIR) the node's data directory, the one that holds config.toml ({node.data_dir})\n")


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["status", "--dir", "{file}/node"], "vouchnet status: {file}/node/config.toml: Not a directory"),
        (["init", "--dir", "{file}/node"], "vouchnet init: {file} (in the path of {file}/node) is a file, not a "
         "directory; --dir names the node's data directory, made if missing"),
        (["vouch", new_did(), "--weight", "1", "--basis", "operator", "--api", "http://127.0.0.1:9",
          "--token-file", "{dir}"], "vouchnet vouch: {dir}: not a regular file (a directory, a pipe or a device); put "
         "the file itself there"),
        (["audit", "export", "--dir", "{node}", "--agent", new_did(), "--from", "2026-01-01", "--to", "2026-01-02",
          "--out", "{dir}/missing/export.json"],
         "vouchnet audit export: {dir}/missing/export.json: No such file or directory"),
    ],
    ids=["status --dir FILE/node", "init --dir FILE/node", "--token-file DIR", "audit export --out MISSING/F"],
)
def test_a_path_the_file_system_refuses_is_one_line_naming_it(tmp_path, capsys, argv, complaint):
    """Not a traceback: the command, the path and why, and exit status 2 (the operator's to fix)."""
    (tmp_path / "file").write_text("")
    node = init_data_dir(tmp_path / "node", network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    AuditLog.open(node.data_dir).close()  # as a node's start makes it: `audit export` reads it
    paths = {"{file}": str(tmp_path / "file"), "{dir}": str(tmp_path), "{node}": str(node.data_dir)}

    def fill(text: str) -> str:
        for name, path in paths.items():
            text = text.replace(name, path)
        return text

    assert cli.main([fill(a) for a in argv]) == 2
    assert capsys.readouterr().err == fill(complaint) + "\n"


async def test_a_node_that_is_not_running_is_a_node_error_with_a_hint(run):
    code, _, err = await run("status", "--api", "http://127.0.0.1:9")
    assert code == 1
    assert "cannot reach the node at http://127.0.0.1:9: is `vouchnet run` running?" in err


async def test_a_node_that_does_not_answer_in_time_is_said_with_a_starting_node_s_wait(run, monkeypatch):
    """A node starting holds its API's connections unanswered until its catch-up sync has ended, which may outlast the
    client's 10 s: the command says so, where it said only that the node did not answer."""
    import node.commands.common

    monkeypatch.setattr(node.commands.common, "NodeClient", partial(node.commands.common.NodeClient, timeout=0.2))
    async with trio.open_nursery() as nursery:
        silent = partial(trio.serve_tcp, lambda stream: trio.sleep_forever(), 0, host="127.0.0.1")  # (never answers)
        listeners = await nursery.start(silent)
        port = listeners[0].socket.getsockname()[1]
        code, _, err = await run("status", "--api", f"http://127.0.0.1:{port}")
        nursery.cancel_scope.cancel()
    assert code == 1
    assert f"the node at http://127.0.0.1:{port} did not answer within 0.2 s" in err
    assert "a node starting answers once its catch-up sync with its peers has ended, up to [p2p] startup_sync_seconds" \
        in err
    assert "a node running (its log said `node running`) that does not answer is stopped (SIGSTOP, a debugger) or " \
           "overloaded" in err  # the client cannot tell the two apart


async def test_a_server_stopped_with_sigstop_is_said_as_one_of_the_two_causes_of_no_answer_not_as_starting(
        run, monkeypatch):
    """A server that answered, then stopped with SIGSTOP, holds the connections its kernel accepts unanswered, as a
    node starting does: the command names both causes. Before: only that a start answers once its catch-up sync has
    ended, for a node that had started long before and would never answer."""
    import node.commands.common

    monkeypatch.setattr(node.commands.common, "NodeClient", partial(node.commands.common.NodeClient, timeout=0.2))
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(server.stdout.readline().split(" port ")[1].split()[0])  # "Serving HTTP on 127.0.0.1 port N ..."
        code, _, err = await run("status", "--api", f"http://127.0.0.1:{port}")
        assert code == 1 and "did not answer" not in err  # it answers (404) while it runs
        server.send_signal(signal.SIGSTOP)
        code, _, err = await run("status", "--api", f"http://127.0.0.1:{port}")
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()
    assert code == 1
    assert f"the node at http://127.0.0.1:{port} did not answer within 0.2 s" in err
    assert "that does not answer is stopped (SIGSTOP, a debugger) or overloaded" in err


async def test_an_address_no_connection_is_made_to_in_time_is_said_as_such_without_a_starting_node_s_wait(
        run, monkeypatch):
    """A node starting has bound its API's port, so a connection to it is made at once: one not made in time (a host
    name not resolved, an address a firewall drops) is no node starting. Before: said as a node that did not answer,
    then told to wait for its catch-up sync and try again, which would time out the same."""
    import socket
    import threading

    import node.commands.common

    resolve, released = socket.getaddrinfo, threading.Event()

    def stuck(host, *args, **kwargs):
        if host != "stuck.invalid":
            return resolve(host, *args, **kwargs)
        released.wait(10)  # (the resolver's retries, until the test is over)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", stuck)
    monkeypatch.setattr(node.commands.common, "NodeClient", partial(node.commands.common.NodeClient, timeout=0.2))
    try:
        code, _, err = await run("status", "--api", "http://stuck.invalid:8700")
    finally:
        released.set()
    assert code == 1
    assert "cannot reach the node at http://stuck.invalid:8700: no connection made within 0.2 s" in err
    assert "catch-up sync" not in err


def write_org_key(data_dir, key):
    (data_dir / "org.key").write_bytes(bytes(key))
    os.chmod(data_dir / "org.key", 0o600)


async def test_a_data_directory_is_answered_only_by_its_own_org_s_node(run, node, data_dir):
    write_org_key(data_dir, node.replica.key)
    code, out, _ = await run("status", "--dir", data_dir, "--json")
    assert (code, json.loads(out)["did"]) == (0, node.did)


async def test_another_node_on_the_data_directory_s_api_address_is_refused(run, node, data_dir):
    """This directory's node is stopped, and another node was configured with the same API address."""
    other = SigningKey.generate()
    write_org_key(data_dir, other)
    for argv in (["status"], ["records"], ["vouch", new_did(), "--weight", "0.5", "--basis", "operator"]):
        code, out, err = await run(*argv, "--dir", data_dir)
        assert (code, out) == (1, "")
        assert f"is {node.did}, not {did_key(bytes(other.verify_key))}, the org of {data_dir}: another node" in err
    assert node.replica.store.size == 0


def test_an_error_names_the_whole_command(tmp_path, capsys):
    assert cli.main(["key", "rotate", "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"vouchnet key rotate: {tmp_path}/config.toml: no configuration here")


async def test_a_token_file_that_does_not_exist_is_named(run, url, tmp_path):
    argv = ["vouch", new_did(), "--weight", "0.5", "--basis", "operator", "--api", url]
    code, _, err = await run(*argv, "--token-file", tmp_path / "nothing.token")
    assert code == 2
    assert err.strip() == f"vouchnet vouch: --token-file {tmp_path / 'nothing.token'}: no such file"


@pytest.mark.parametrize("api", ["http://[::1", "ftp://127.0.0.1:8700", "http://", "", "127.0.0.1:99999"])
def test_an_api_address_that_is_no_url_is_a_usage_error(capsys, api):
    """Not httpx's traceback (InvalidURL) or a vain attempt at some other address."""
    assert cli.main(["status", "--api", api]) == 2
    assert f"argument --api: expected the node's API address, e.g. http://127.0.0.1:8700, got {api!r}" in \
        capsys.readouterr().err


@pytest.mark.parametrize(("api", "host"), [("http://127.1:8700", "127.1"), ("127.1:8700", "127.1"),
                                           ("http://1.2.3.4.5:8700", "1.2.3.4.5"), ("http://0:8700", "0")])
def test_an_api_address_whose_host_is_no_ip_address_though_it_looks_like_one_is_a_usage_error(capsys, api, host):
    """As `init --api` (node.config.host_fault): the resolver reads `127.1` as 127.0.0.1 and `0` as 0.0.0.0, and
    `1.2.3.4.5` as a name it fails to find, which the command called in vain."""
    assert cli.main(["status", "--api", api]) == 2
    assert f"argument --api: {host!r} is not an IP address: an IPv4 address is four decimal numbers 0-255 between " \
        f"dots, without leading zeros, such as 127.0.0.1, in {api!r}" in capsys.readouterr().err


@pytest.mark.parametrize("api", ["http://127.0.0.1:8700/v1", "127.0.0.1:8700/v1/node", "http://127.0.0.1:8700/?a=1",
                                 "https://proxy/vouchnet/v1/", "http://127.0.0.1:8700/healthz",
                                 "http://127.0.0.1:8700/#status"])
def test_an_api_address_naming_an_endpoint_is_a_usage_error_saying_it_takes_none(capsys, api):
    """The commands add each endpoint's path to it: the node answered /v1/v1/node 'no such endpoint'."""
    assert cli.main(["status", "--api", api]) == 2
    assert f"argument --api: expected the node's API address, not one of its endpoints, e.g. http://127.0.0.1:8700 " \
        f"(each command adds the endpoint's path; a proxy's path prefix may stay), got {api!r}" in \
        capsys.readouterr().err


@pytest.mark.parametrize("api", ["https://proxy.example/vouchnet", "https://gw.example/api/v1/vouchnet",
                                 "https://gw.example/metrics/vouchnet/"])
def test_an_api_address_behind_a_proxy_s_path_prefix_is_taken(api):
    """A node's API served by a proxy under a prefix: the client joins each endpoint's path to it. A prefix holding
    one of the API's first segments (an API gateway's /api/v1/...) was refused as naming an endpoint, so no command
    could reach a node served under it."""
    assert common.api_url(api) == api


def test_an_api_address_naming_any_endpoint_is_refused_behind_a_proxy_s_prefix_or_not():
    """Every path the node serves (README's API table, which test_readme holds to them) names an endpoint."""
    for path in [*documented_paths(), "/openapi.json"]:
        for base in ("http://127.0.0.1:8700", "https://proxy.example/vouchnet"):
            with pytest.raises(argparse.ArgumentTypeError, match="not one of its endpoints"):
                common.api_url(base + path.replace("{}", "x"))


async def test_an_api_address_may_end_in_a_slash(run, url):
    code, out, _ = await run("status", "--api", f"{url}/")
    assert code == 0 and out


@pytest.mark.parametrize("count", ["0", "-1", "2.5", "\u00b2", "\u00b9\u00b2"])
def test_a_count_that_is_no_positive_integer_is_refused_naming_it(capsys, count):
    """A superscript digit, which str.isdigit takes and int() refuses, was "invalid positive_int value", naming a
    function of ours rather than what the option expects."""
    assert cli.main(["records", "--limit", count, "--api", "http://127.0.0.1:9"]) == 2
    assert f"argument --limit: expected a positive integer, got {count!r}" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["records", "--limit"], ["own-records", "acknowledge", "--through"]])
@pytest.mark.parametrize("count", [str(2**63), "9" * 5000])
def test_a_count_beyond_what_a_node_takes_is_refused_naming_the_bound(capsys, argv, count):
    """Before: `records --limit 10**20` ended in islice's traceback, `acknowledge --through 2**63` in the node's 422,
    and 5,000 digits in "invalid positive_int value"."""
    assert cli.main([*argv, count, "--api", "http://127.0.0.1:9"]) == 2
    assert f"argument {argv[-1]}: expected a positive integer up to {2**63 - 1}, got {count!r}" in \
        capsys.readouterr().err


async def test_dir_and_api_exclude_each_other(run, data_dir, url):
    code, _, err = await run("status", "--dir", data_dir, "--api", url)
    assert code == 2 and "not allowed with" in err


# --- peers ----------------------------------------------------------------------------------------------


def _peer(seed: int) -> tuple[str, str]:
    """A PeerID and an address dialling it."""
    peer = peer_id_from_public_key(bytes([seed]) * 32)
    return peer, f"/ip4/10.0.0.{seed}/tcp/4001/p2p/{peer}"


async def test_peers_lists_the_connected_then_the_unreachable_with_their_error_and_next_dial(run, node, url):
    (up, up_addr), (inbound, _), (down, down_addr) = _peer(1), _peer(2), _peer(3)
    node.schedule.add(up, [up_addr])
    node.schedule.announce(down, [down_addr])
    for _ in range(6):
        node.schedule.failed(down, trio.current_time(), f"dial {down_addr}: connection refused")
    delay = node.schedule.failed(down, trio.current_time(), f"dial {down_addr}: no connection within 10 s")  # 30-60 s
    node.peer_list += [{"peer_id": up, "org": peer_org(up), "score": 0.0, "serves_sync": True},
                       {"peer_id": inbound, "org": peer_org(inbound), "score": -10.5, "serves_sync": False}]
    code, out, _ = await run("peers", "--api", url)
    lines = [line.split() for line in out.splitlines()]
    assert (code, lines[:4]) == (0, [
        ["2", "connected"], ["PEER", "ID", "SOURCE", "SCORE", "SYNC"],
        [up, "bootstrap", "0.0", "yes"], [inbound, "inbound", "-10.5", "no"]])
    assert lines[4:6] == [["1", "not", "connected,", "dialled", "again", "with", "growing", "backoff"],
                          ["PEER", "ID", "SOURCE", "FAILURES", "NEXT", "DIAL", "LAST", "ERROR"]]
    assert lines[6][:4] == [down, "org_record", "7", "in"] and 1 <= int(lines[6][4]) <= math.ceil(delay)
    assert lines[6][5:] == ["s", "dial", down_addr + ":", "no", "connection", "within", "10", "s"]
    assert len(lines) == 7


async def test_peers_counts_the_blocked_ones_among_the_unreachable_as_not_dialled(run, node, url):
    """A blocked peer (PUT /v1/peers/blocked) has no next dial: the header says how many are so, and only then."""
    (down, down_addr), (blocked, blocked_addr) = _peer(5), _peer(6)
    node.schedule.add(down, [down_addr])
    for _ in range(7):  # next dialled in 30-60 s: after one failure, in 0.5-1 s, which a loaded machine's run outlasted
        node.schedule.failed(down, trio.current_time(), f"dial {down_addr}: connection refused")
    node.schedule.add(blocked, [blocked_addr])
    node.schedule.block([blocked])
    code, out, _ = await run("peers", "--api", url)
    lines = out.splitlines()
    assert (code, lines[:2]) == (0, [
        "no peers connected",
        "2 not connected, dialled again with growing backoff (1 blocked on this host: not dialled until unblocked)"])
    assert lines[3].split()[:4] == [down, "bootstrap", "7", "in"]
    assert lines[4].split()[:4] == [blocked, "bootstrap", "0", "-"] and lines[4].endswith(BLOCKED)
    node.schedule.block([blocked, down])
    code, out, _ = await run("peers", "--api", url)
    assert out.splitlines()[1] == "2 not connected, blocked on this host: not dialled until unblocked"


async def test_peers_lists_the_peers_found_on_another_network_apart_with_it(run, node, url):
    """A mistyped bootstrap address: before, listed as unreachable, its error a connection that did not last."""
    (down, down_addr), (apart, apart_addr) = _peer(7), _peer(8)
    node.schedule.add(down, [down_addr])
    node.schedule.failed(down, trio.current_time(), f"dial {down_addr}: connection refused")
    node.schedule.add(apart, [apart_addr])
    node.schedule.connected(apart, trio.current_time())
    found = trio.current_time()
    node.schedule.other_network(apart, "othernet", found)
    node.schedule.disconnected(apart, trio.current_time())
    code, out, _ = await run("peers", "--api", url)
    took = trio.current_time() - found  # (more than a second on a loaded machine)
    lines = [line.split() for line in out.splitlines()]
    assert (code, lines[0], lines[1][:3], lines[3][:3]) == (0, ["no", "peers", "connected"], ["1", "not", "connected,"],
                                                            [down, "bootstrap", "1"])
    assert out.splitlines()[4] == ("1 on another network, holding none of this network's records and dialled again "
                                   "ever less often, 30 s to an hour apart (a [p2p] bootstrap address mistyped, or "
                                   "that node's network)")
    assert lines[5] == ["PEER", "ID", "SOURCE", "NETWORK", "NEXT", "DIAL", "ADDRESSES"]
    assert lines[6][:4] == [apart, "bootstrap", "othernet", "in"] and lines[6][5:] == ["s", apart_addr]
    assert APART_FIRST / 2 - took <= int(lines[6][4]) <= APART_FIRST and len(lines) == 7


async def test_peers_lists_a_blocked_peer_found_on_another_network_among_the_blocked_not_as_dialled(run, node, url):
    """An operator blocks a peer found on another network (a mistyped bootstrap address) to stop its dials: it is
    not dialled, so it shows as blocked. Before: listed under "dialled again ever less often, 30 s to an hour apart",
    with no next dial and nothing saying it was blocked."""
    apart, apart_addr = _peer(9)
    node.schedule.add(apart, [apart_addr])
    node.schedule.connected(apart, trio.current_time())
    node.schedule.other_network(apart, "othernet", trio.current_time())
    node.schedule.disconnected(apart, trio.current_time())
    node.schedule.block([apart])
    code, out, _ = await run("peers", "--api", url)
    lines = out.splitlines()
    assert (code, lines[:2]) == (0, ["no peers connected",
                                     "1 not connected, blocked on this host: not dialled until unblocked"])
    assert lines[3].split()[:4] == [apart, "bootstrap", "1", "-"] and lines[3].endswith(BLOCKED)
    assert len(lines) == 4 and "another network" not in out


async def test_peers_prints_a_hostile_peers_dial_error_as_one_escaped_line(run, node, url):
    peer, addr = _peer(4)
    node.schedule.add(peer, [addr])
    node.schedule.failed(peer, trio.current_time(), "refused\x1b[2J\x1b]0;owned\x07\r\n2 connected\u202e")
    code, out, _ = await run("peers", "--api", url)
    assert code == 0 and all(line.isprintable() for line in out.splitlines()) and out.count("\n") == 4
    assert out.splitlines()[-1].endswith("refused\\x1b[2J\\x1b]0;owned\\x07\\r\\n2 connected\\u202e")


async def test_peers_lists_every_page_of_known_peers(run, node, url):
    """The node answers 100 known peers a page: the command lists them all."""
    peers = sorted(_peer(seed)[0] for seed in range(1, 151))
    for peer in peers:
        node.schedule.add(peer, [f"/ip4/10.0.0.1/tcp/4001/p2p/{peer}"])
    code, out, _ = await run("peers", "--api", url)
    assert code == 0 and [line.split()[0] for line in out.splitlines()[3:]] == peers


async def test_peers_as_json_are_one_list_connected_first(run, node, url):
    (up, up_addr), (down, down_addr) = _peer(6), _peer(5)
    node.schedule.add(up, [up_addr])
    node.schedule.add(down, [down_addr])
    node.peer_list.append({"peer_id": up, "org": peer_org(up), "score": 0.0, "serves_sync": True})
    code, out, _ = await run("peers", "--api", url, "--json")
    assert code == 0
    assert [(p["peer_id"], p["connected"], p["source"], p.get("score")) for p in json.loads(out)] == [
        (up, True, "bootstrap", 0.0), (down, False, "bootstrap", None)]


async def test_peers_says_when_the_node_has_none_to_dial(run, url):
    code, out, _ = await run("peers", "--api", url)
    assert (code, out.startswith("no peers: none connected and none to dial")) == (0, True)


# --- vouch and revoke -----------------------------------------------------------------------------------


async def test_vouch_signs_a_vouch_as_the_org(run, node, data_dir):
    subject = new_did()
    code, out, _ = await run(
        "vouch", subject, "--weight", "0.8", "--basis", "audit", "--scope", "tool:a", "--scope", "tool:b",
        "--expires", "2030-01-01", "--dir", data_dir,
    )
    assert code == 0
    record_id = out.split()[-1]
    assert out == f"vouched for {subject}: record {record_id}\n"
    body = verify_record(node.replica.store.get(bytes.fromhex(record_id))).body
    assert (body.subject, body.weight, body.basis, body.scope) == (subject, 0.8, "audit", ("tool:a", "tool:b"))
    assert body.expires == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)


async def test_a_vouch_given_no_expiry_never_lapses_as_its_help_says(run, node, data_dir):
    """--help said how to give a vouch's lapse, not what a vouch given none does (an operator could not tell whether
    it lapsed by some default)."""
    code, out, _ = await run("vouch", new_did(), "--weight", "1", "--basis", "operator", "--dir", data_dir, "--json")
    assert (code, "expires" in json.loads(out)["body"]) == (0, False)
    code, out, _ = await run("vouch", "--help")
    assert code == 0 and ("default: never (it counts until revoked, or replaced by this org's next vouch for the "
                          "subject on the same basis)") in " ".join(out.split())


async def test_vouch_prints_the_record_as_json_on_request(run, node, data_dir):
    code, out, _ = await run("vouch", new_did(), "--weight", "1", "--basis", "operator", "--dir", data_dir, "--json")
    record = json.loads(out)
    assert (code, record["kind"], record["iss"], record["body"]["weight"]) == (0, "vouch", node.did, 1.0)


async def test_a_vouch_the_node_refuses_exits_1_with_its_reason(run, node, data_dir):
    argv = ["vouch", node.did, "--weight", "0.5", "--basis", "operator", "--dir", data_dir]
    code, _, err = await run(*argv)
    assert code == 1
    assert "body.subject: must not be the issuer" in err
    assert node.replica.store.size == 0


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["did:key:zNotAKey", "--weight", "0.5", "--basis", "operator"], "argument DID: not an Ed25519 did:key"),
        (["eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln", "--weight", "0.5", "--basis", "operator"],
         "argument DID: a credential (a JWT), not a did: give its subject, credentialSubject.id"),
        (["alice", "--weight", "0.5", "--basis", "operator"],
         "argument DID: expected a did (did:key:z6Mk...), got 'alice' (`vouchnet agent list` lists the dids of this "
         "org's agents by name)"),
        (["--weight", "0.5", "--basis", "operator"], "the following arguments are required: DID"),
        (["{did}", "--weight", "much", "--basis", "operator"], "argument --weight: a weight in (0, 1], got 'much'"),
        (["{did}", "--weight", "1.5", "--basis", "operator"], "argument --weight: a weight in (0, 1], got '1.5'"),
        (["{did}", "--weight", "nan", "--basis", "operator"], "argument --weight: a weight in (0, 1], got 'nan'"),
        (["{did}", "--weight", "inf", "--basis", "operator"], "argument --weight: a weight in (0, 1], got 'inf'"),
        (["{did}", "--weight", "0.5", "--basis", "hearsay"], "argument --basis: invalid choice"),
        (["{did}", "--weight", "0.5", "--basis", "operator", "--expires", "soon"], "expected a date (2026-12-31)"),
        (["{did}", "--weight", "0.5", "--basis", "operator", "--expires", "2020-01-01"],
         "argument --expires: '2020-01-01' is past: a vouch must lapse later than now"),
    ],
)
async def test_bad_vouch_arguments_are_usage_errors(run, node, data_dir, args, complaint):
    argv = [a.replace("{did}", new_did()) for a in args]
    code, _, err = await run("vouch", *argv, "--dir", data_dir)
    assert code == 2
    assert complaint in err
    assert node.replica.store.size == 0


@pytest.mark.parametrize("argv", [["orgs", "acme"], ["records", "--issuer", "acme"], ["log", "verify", "--did", "acme"],
                                  ["init", "--root", "acme"], ["audit", "verify", "x.json", "--org", "acme"]],
                         ids=" ".join)
def test_an_org_s_did_mistyped_is_told_where_org_dids_are_shown(argv, tmp_path, capsys):
    """An org's name where its did is wanted was told that `vouchnet agent list` lists the dids of this org's agents,
    which holds no org's."""
    assert cli.main([*argv, "--dir", str(tmp_path / "node")]) == 2
    assert capsys.readouterr().err.endswith(
        "expected a did (did:key:z6Mk...), got 'acme' (an org's did is what `vouchnet status` shows on its node, and "
        "`vouchnet orgs` lists those this node knows)\n")
    assert not (tmp_path / "node").exists()


async def test_a_write_by_address_needs_a_token_file(run, node, url, data_dir):
    argv = ["vouch", new_did(), "--weight", "0.5", "--basis", "operator", "--api", url]
    code, _, err = await run(*argv)
    assert code == 2
    assert "this command writes, so it needs the node's token: add --token-file FILE" in err
    code, _, _ = await run(*argv, "--token-file", data_dir / "api.token")
    assert (code, node.replica.store.size) == (0, 1)


async def test_a_token_file_others_can_read_is_refused(run, url, data_dir):
    os.chmod(data_dir / "api.token", 0o644)
    code, _, err = await run("vouch", new_did(), "--weight", "0.5", "--basis", "operator", "--dir", data_dir)
    assert code == 2
    assert "too open" in err


async def test_a_wrong_token_is_a_node_error(run, node, url, tmp_path):
    wrong = tmp_path / "wrong.token"
    create_token(wrong)
    argv = ["vouch", new_did(), "--weight", "0.5", "--basis", "operator", "--api", url, "--token-file", wrong]
    code, _, err = await run(*argv)
    assert code == 1
    assert err == (f"vouchnet vouch: Authorization: the bearer token is not this node's (401 unauthorized)\n  {wrong} "
                   "holds another token than the node's: give --token-file the api.token in the node's data directory "
                   "(or --dir that directory, on the node's machine)\n")


async def test_a_data_directory_s_token_the_node_answering_refuses_says_why_that_may_be(run, node, data_dir):
    """Said only that the token was not the node's, which an operator who gave --dir, not a token, could not act on."""
    node.token = "t" * 43  # another node of the org, say, its data directory a copy of this one's
    code, _, err = await run("vouch", new_did(), "--weight", "0.5", "--basis", "operator", "--dir", data_dir)
    assert code == 1
    assert err.endswith(f"(401 unauthorized)\n  {data_dir / 'api.token'} holds another token than the node answering "
                        "takes: it was replaced just then (run the command again), or another node of this org, with a "
                        "data directory of its own, answers at its address\n")


def test_expiry_is_a_date_a_time_or_a_duration():
    assert parse_expires("2030-01-01") == 1893456000000
    assert parse_expires("2030-01-01T12:00:00Z") == 1893456000000 + 12 * 3_600_000
    assert parse_expires("2030-01-01T12:00:00+02:00") == 1893456000000 + 10 * 3_600_000
    before = int(time.time() * 1000)
    in_30_days = parse_expires("30d")
    after = int(time.time() * 1000)
    assert before + 30 * 86_400_000 <= in_30_days <= after + 30 * 86_400_000
    assert parse_expires("2w") - parse_expires("14d") in range(-1000, 1000)


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--expires", "0d", "argument --expires: a duration is 1 to 999999 of its unit (90m, 12h, 30d, 2w), got '0d'"),
    ("--expires", "9999999d", "argument --expires: a duration is 1 to 999999 of its unit"),
    ("--scope", "", "argument --scope: a tool's name, printable text of 1 to 128 characters, got ''"),
    ("--scope", "a\nb", "argument --scope: a tool's name, printable text of 1 to 128 characters, got 'a\\nb'"),
    ("--idempotency-key", "\x1b[2J", "argument --idempotency-key: must be 1 to 255 printable ASCII characters, got "
                                     "'\\x1b[2J'"),
    ("--idempotency-key", "k" * 256, "argument --idempotency-key: must be 1 to 255 printable ASCII characters"),
], ids=["expires-0d", "expires-too-long", "scope-empty", "scope-newline", "key-escape", "key-too-long"])
def test_a_vouch_s_options_the_node_would_refuse_are_usage_errors_said_before_it_is_asked(tmp_path, capsys, option,
                                                                                           value, says):
    """Found by stop 45's operator walk: `--expires 0d` was refused as "expected a date ... or a duration (30d, 12h),
    got '0d'", which it is; an empty --scope or an Idempotency-Key the node refuses went to the node, its 422 or 400
    exiting 1, as if the node had failed. Each is now a usage error (exit 2) naming the option, the node not asked (no
    node runs at --dir)."""
    argv = ["vouch", new_did(), "--weight", "0.5", "--basis", "audit", option, value, "--dir", str(tmp_path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"vouchnet vouch: error: {says}" in err
    if option == "--idempotency-key":
        assert cli.main(["revoke", "a" * 64, "--reason", "r", option, value, "--dir", str(tmp_path)]) == 2
        assert f"vouchnet revoke: error: {says}" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "what"), [
    (["vouch", "{target}", "--weight", "0.5", "--basis", "operator"], "vouch"),
    (["revoke", "{target}", "--reason", "retired"], "revocation"),
])
async def test_a_write_run_again_with_its_idempotency_key_is_signed_once_and_says_so(run, node, data_dir, command,
                                                                                      what):
    """The run again printed its result as if the node had signed a second record."""
    target = new_did() if what == "vouch" else vouch(node).id.hex()
    argv = [a.format(target=target) for a in command]
    argv += ["--dir", data_dir, "--idempotency-key", "k"]
    (code, out, err), again = [await run(*argv) for _ in range(2)]
    assert (code, err) == (0, "")
    assert again == (0, out, f"nothing signed now: the node had signed this {what} already, for an earlier run "
                             "with --idempotency-key k; its record follows\n")
    assert len(node.replica.store.query(issuer=node.did, kind=command[0], after=-1)) == 1


@pytest.mark.parametrize(("command", "what"), [
    (["vouch", "{did}", "--weight", "0.5", "--basis", "operator"], "vouch"),
    (["revoke", "ab" * 32, "--reason", "retired"], "revocation"),
])
async def test_a_write_without_an_answer_names_the_key_to_run_it_again_with(run, data_dir, command, what):
    argv = [a.replace("{did}", new_did()) for a in command]
    code, _, err = await run(*argv, "--api", "http://127.0.0.1:9", "--token-file", data_dir / "api.token")
    key = err.rsplit("--idempotency-key ", 1)[-1].split()[0]
    assert code == 1 and len(key) == 32
    assert f"it may have signed the {what}: run the command again with --idempotency-key {key} " in err
    code, _, err = await run(*argv, "--api", "http://127.0.0.1:9", "--token-file", data_dir / "api.token",
                             "--idempotency-key", "mine")
    assert "--idempotency-key mine " in err


async def test_revoke_withdraws_a_vouch(run, node, data_dir):
    vouched = vouch(node)
    code, out, _ = await run("revoke", vouched.id.hex(), "--reason", "retired", "--dir", data_dir)
    assert code == 0
    assert out.startswith(f"revoked {vouched.id.hex()}: record ")
    assert node.replica.store.revoked(vouched.id)
    code, _, err = await run("revoke", vouched.id.hex(), "--reason", "again", "--dir", data_dir)
    assert code == 1
    assert "body.record: this vouch is already revoked" in err
    code, _, err = await run("revoke", vouched.id.hex()[:-2], "--reason", "retired", "--dir", data_dir)
    assert code == 2  # the command line's to fix, said before the node is asked (it was the node's 422, status 1)
    assert f"argument RECORD_ID: expected a vouch's record id, 64 hex digits, got '{vouched.id.hex()[:-2]}'" in err


async def test_revoke_given_the_short_id_a_score_shows_says_where_the_whole_id_is(run, node, data_dir):
    """`vouchnet score` names a vouch by its first 12 digits, and revoke, given those, only said it wanted 64."""
    vouched = vouch(node)
    code, _, err = await run("revoke", vouched.id.hex()[:12], "--reason", "retired", "--dir", data_dir)
    assert code == 2
    assert err.rstrip().endswith(f"got '{vouched.id.hex()[:12]}': a vouch is named by its whole id, which `vouchnet "
                                 "records --kind vouch --issuer DID` lists (DID: your org's, as `vouchnet status` "
                                 "shows it)")
    code, _, err = await run("revoke", "not-an-id", "--reason", "retired", "--dir", data_dir)
    assert err.rstrip().endswith("got 'not-an-id'")


# --- own-records ----------------------------------------------------------------------------------------


async def test_own_records_lists_and_acknowledges_the_org_s_records_from_peers(run, node, data_dir, caplog):
    head = vouch(node)
    elsewhere = Org(key=node.replica.key, seq=head.seq, prev=head.id)
    first, second = elsewhere.record(), elsewhere.record()
    node.replica.accept([first, second], "12D3KooWPeer")
    code, out, err = await run("own-records", "list", "--dir", data_dir)
    assert code == 0 and err.endswith("2 records of the org's key from peers, 2 unacknowledged; 0 conflicting "
                                      "with the one the node held at its seq (the key signed twice at one seq)\n")
    header, *rows = out.splitlines()
    assert header.split() == ["NUMBER", "KEY", "SEQ", "ID", "ACCEPTED", "PEER", "ACKNOWLEDGED", "CONFLICTS_WITH",
                              "BYTES", "CONFLICTS_WITH_BYTES"]
    assert [row.split()[:4] + row.split()[5:] for row in rows] == [
        [str(n), r.iss, str(r.seq), r.id.hex(), "12D3KooWPeer", "no", "-", "-", "-"]
        for n, r in enumerate((first, second), 1)]
    code, out, err = await run("own-records", "acknowledge", "--through", 1, "--dir", data_dir)
    assert (code, out, err) == (0, "acknowledged 1 record listed through number 1; 1 unacknowledged\n", "")
    with caplog.at_level(logging.WARNING, logger="gossip.own_records"):
        code, out, err = await run("own-records", "acknowledge", "--through", 2, "--dir", data_dir)
    assert (code, out, err) == (0, "acknowledged 1 record listed through number 2; 0 unacknowledged\n", "")
    assert "acknowledged 1 record(s)" in caplog.text
    assert node.replica.own_from_peers == 0


async def test_own_records_evidence_writes_both_signatures_of_the_seq_and_never_over_a_file(run, node, data_dir,
                                                                                            tmp_path):
    """The two records proving the key signed twice, as COSE files an operator takes to forensics: before, only curl
    of two token-less API paths gave them."""
    head = vouch(node)
    theirs = Org(key=node.replica.key).fork(head.seq, None if head.seq == 1 else head.prev)
    node.replica.accept([theirs], "12D3KooWThief")
    out = tmp_path / "incident"
    out.mkdir()
    code, printed, _ = await run("own-records", "evidence", 1, "--out", out, "--dir", data_dir)
    assert code == 0
    assert (out / "own-record-1.cose").read_bytes() == theirs.raw
    assert (out / "own-record-1-conflicts-with.cose").read_bytes() == node.replica.store.get(head.id)
    assert printed.splitlines() == [f"{out / 'own-record-1.cose'}: record {theirs.id.hex()}, key {theirs.iss} at seq "
                                    f"{head.seq}", f"{out / 'own-record-1-conflicts-with.cose'}: record "
                                    f"{head.id.hex()}, key {theirs.iss} at seq {head.seq}"]
    (out / "own-record-1.cose").write_bytes(b"the operator's own notes")
    code, _, err = await run("own-records", "evidence", 1, "--out", out, "--dir", data_dir)
    assert code == 1 and "own-record-1.cose" in err and "exists" in err
    assert (out / "own-record-1.cose").read_bytes() == b"the operator's own notes"


async def test_own_records_evidence_a_disk_takes_part_of_leaves_no_file_and_is_written_when_run_again(run, node,
                                                                                                   data_dir, tmp_path):
    """A disk that takes part of a file (full, or past a file size limit: RLIMIT_FSIZE here) leaves none. Before, the
    part of the record it took, which would pass for the evidence and was refused as existing when run again."""
    head = vouch(node)
    theirs = Org(key=node.replica.key).fork(head.seq, None if head.seq == 1 else head.prev)
    node.replica.accept([theirs], "12D3KooWThief")
    out = tmp_path / "incident"
    out.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(theirs.raw) // 2, hard))
    try:
        code, _, err = await run("own-records", "evidence", 1, "--out", out, "--dir", data_dir)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert list(out.iterdir()) == []
    assert code != 0 and f"{out / 'own-record-1.cose'}" in err and "File too large" in err
    code, _, _ = await run("own-records", "evidence", 1, "--out", out, "--dir", data_dir)
    assert code == 0 and (out / "own-record-1.cose").read_bytes() == theirs.raw


async def test_own_records_evidence_says_which_bytes_the_node_dropped(run, node, data_dir, tmp_path, monkeypatch):
    """An acknowledged conflict's bytes dropped to make room for a later one's: said, the other record written, exit
    1; and a row that conflicts with none is no evidence."""
    monkeypatch.setattr(gossip.own_records, "MAX_CONFLICTS", 1)
    for _ in range(2):
        head = vouch(node)
        node.replica.accept([Org(key=node.replica.key).fork(head.seq, None if head.seq == 1 else head.prev)],
                            "12D3KooWThief")
        node.replica.own_records.acknowledge(1)
    code, out, _ = await run("own-records", "list", "--dir", data_dir)
    assert [row.split()[-2:] for row in out.splitlines()[1:]] == [["dropped", "kept"], ["kept", "kept"]]
    code, _, err = await run("own-records", "evidence", 1, "--out", tmp_path, "--dir", data_dir)
    assert code == 1 and "not written, the node keeps its bytes no longer" in err and "bytes_dropped" in err
    assert not (tmp_path / "own-record-1.cose").exists() and (tmp_path / "own-record-1-conflicts-with.cose").exists()
    elsewhere = Org(key=node.replica.key, seq=head.seq + 1, prev=head.id)
    node.replica.accept([elsewhere.record()], "12D3KooWPeer")
    code, _, err = await run("own-records", "evidence", 3, "--out", tmp_path, "--dir", data_dir)
    assert code == 1 and "no listed record numbered 3 that conflicts" in err


async def test_own_records_list_shows_the_list_while_the_node_cannot_read_its_ledger_s_index(run, node, data_dir,
                                                                                             monkeypatch):
    """A stolen key's evidence is listed while the ledger's index fails (an I/O error): ? where the node cannot say
    which bytes it serves, and why, on stderr. Before: the node's 503, and no list."""
    head = vouch(node)
    node.replica.accept([Org(key=node.replica.key).fork(head.seq, None if head.seq == 1 else head.prev)],
                        "12D3KooWThief")

    def unreadable(**_):
        raise gossip.store.StoreError("records.index: cannot be read (disk I/O error)")

    monkeypatch.setattr(node.replica.store, "_level", unreadable)
    code, out, err = await run("own-records", "list", "--dir", data_dir)
    assert code == 0 and [row.split()[-2:] for row in out.splitlines()[1:]] == [["kept", "?"]]
    assert err.endswith("the node cannot read its ledger's index now (records.index: cannot be read (disk I/O error)):"
                        " whether each record is stored, and the bytes it would serve from its ledger (?), are not "
                        "known; the list itself is whole\n")
    code, out, err = await run("own-records", "list", "--json", "--dir", data_dir)
    assert code == 0 and [r["stored"] for r in json.loads(out)] == [None] and "cannot read its ledger's index" in err


async def test_own_records_evidence_says_the_node_never_kept_the_bytes_of_a_record_it_held_only(run, node, data_dir,
                                                                                              tmp_path):
    """A row listed before own_records.db format 5, of a conflict with a record the node held only: its bytes were
    never kept, which the command says, where it said that the node kept them no longer."""
    ours = vouch(node)
    held = Org(key=node.replica.key).fork(ours.seq + 2, bytes(32))
    theirs = Org(key=node.replica.key).fork(held.seq, bytes(32))
    node.replica.own_records.add_conflicts([(theirs, held.id, None, "12D3KooWThief")])
    code, _, err = await run("own-records", "evidence", 1, "--out", tmp_path, "--dir", data_dir)
    assert code == 1 and f"{held.id.hex()}: not written, the node never kept its bytes" in err
    assert "bytes_not_kept" in err and "keeps its bytes no longer" not in err
    assert (tmp_path / "own-record-1.cose").read_bytes() == theirs.raw


async def test_own_records_lists_a_record_conflicting_with_one_the_node_holds_and_acknowledges_it(run, node, data_dir):
    head = vouch(node)
    theirs = Org(key=node.replica.key).fork(head.seq, None if head.seq == 1 else head.prev)
    node.replica.accept([theirs], "12D3KooWThief")
    code, out, err = await run("own-records", "list", "--dir", data_dir)
    assert code == 0 and err.endswith("1 record of the org's key from peers, 1 unacknowledged; 1 conflicting "
                                      "with the one the node held at its seq (the key signed twice at one seq)\n")
    (row,) = out.splitlines()[1:]
    assert row.split()[:4] + row.split()[5:] == ["1", theirs.iss, str(head.seq), theirs.id.hex(), "12D3KooWThief", "no",
                                                 head.id.hex(), "kept", "kept"]
    code, out, _ = await run("own-records", "list", "--json", "--dir", data_dir)
    assert [(r["stored"], r["conflicts_with"], r["bytes"], r["conflicts_with_bytes"]) for r in json.loads(out)] == [
        (False, head.id.hex(), "kept", "kept")]
    code, out, err = await run("own-records", "acknowledge", "--through", 1, "--dir", data_dir)
    assert (code, out, err) == (0, "acknowledged 1 record listed through number 1; 0 unacknowledged\n", "")
    assert node.replica.own_from_peers == 0 and node.replica.own_records.unacknowledged_conflicts == 0


async def test_own_records_acknowledge_names_the_number_the_operator_saw(run, node, data_dir):
    """A record listed after the operator looked (a thief's, say) is not acknowledged with those looked at: the
    number comes from `list`, and `acknowledge` has no default that would take in whatever came since."""
    head = vouch(node)
    elsewhere = Org(key=node.replica.key, seq=head.seq, prev=head.id)
    node.replica.accept([elsewhere.record()], "12D3KooWPeer")
    code, out, _ = await run("own-records", "list", "--dir", data_dir)
    assert code == 0 and out.splitlines()[1].split()[0] == "1"
    node.replica.accept([elsewhere.record()], "12D3KooWThief")
    code, _, err = await run("own-records", "acknowledge", "--dir", data_dir)
    assert code == 2 and "--through" in err
    for number in ("0", "-1"):  # (numbers start at 1: refused as a usage error, not by the node)
        code, _, err = await run("own-records", "acknowledge", "--through", number, "--dir", data_dir)
        assert code == 2 and f"--through: expected a positive integer, got '{number}'" in err
    assert node.replica.own_from_peers == 2


# --- records --------------------------------------------------------------------------------------------


async def test_records_lists_one_a_line_with_filters(run, node, url):
    agent = new_did()
    first, second = vouch(node, agent), vouch(node)
    code, out, _ = await run("records", "--api", url)
    assert code == 0
    assert out.splitlines() == [
        f"#0 vouch {first.id.hex()} by {node.did} seq 1: {agent} weight 0.5 basis operator",
        f"#1 vouch {second.id.hex()} by {node.did} seq 2: {second.body.subject} weight 0.5 basis operator",
    ]
    code, out, _ = await run("records", "--api", url, "--subject", agent)
    assert len(out.splitlines()) == 1
    code, out, _ = await run("records", "--api", url, "--kind", "revoke")
    assert (code, out) == (0, "")


async def test_records_refuses_a_subject_no_record_can_have(run, node, url):
    """A did with a typo, or a record id cut short, would list nothing, as if the node held nothing about it."""
    revoked = vouch(node).id.hex()
    node.replica.issue("revoke", revoke_body(bytes.fromhex(revoked), "retired"))
    for given in (revoked, revoked.upper()):  # the id as `vouchnet revoke` takes it, in either case
        code, out, _ = await run("records", "--api", url, "--subject", given)
        assert (code, len(out.splitlines())) == (0, 1)
    for subject in (revoked[:12], "z6Mk"):
        code, _, err = await run("records", "--api", url, "--subject", subject)
        assert code == 2
        assert f"argument --subject: expected a did:key, or a vouch's record id (64 hex digits), got '{subject}'" in err


async def test_records_says_what_is_wrong_with_a_subject_did_as_score_does(run, node, url):
    did = new_did()
    for subject in (did[:-1], did.replace("did:key:", "did:web:"), "eyJhbGciOiJFZERTQSJ9.e30.c2ln"):
        _, _, score_err = await run("score", "--api", url, subject)
        code, _, err = await run("records", "--api", url, "--subject", subject)
        assert code == 2
        said = score_err.splitlines()[-1].split("argument DID: ")[1]
        assert err.splitlines()[-1] == f"vouchnet records: error: argument --subject: {said}"


async def test_records_as_json_lines_and_limited(run, node, url):
    made = [vouch(node).id.hex() for _ in range(4)]
    code, out, _ = await run("records", "--api", url, "--json", "--limit", "3")
    assert [json.loads(line)["id"] for line in out.splitlines()] == made[:3]


async def test_records_describe_every_kind(run, node, url):
    partner = Org()
    body = vouch_body(partner.did, 1.0, "org-peer", scope=["tool:x"], expires=4102444800000)
    ours = node.replica.issue("vouch", body)
    node.replica.accept([partner.record("org")])
    node.replica.accept([partner.fork(1, None)])  # an equivocation: this node signs the evidence
    node.replica.issue("revoke", revoke_body(ours.id, "caught"))
    code, out, _ = await run("records", "--api", url)
    lines = out.splitlines()
    assert lines[0].endswith(f"{partner.did} weight 1.0 basis org-peer scope tool:x expires 2100-01-01T00:00:00Z")
    assert lines[1].endswith(": org on test")
    assert lines[2].endswith(f": {partner.did} signed two records that contradict each other")
    assert lines[3].endswith(f": revokes {ours.id.hex()}: caught")


async def test_records_show_a_digest_s_epoch_and_its_length(run, node, url):
    """A digest covers [epoch, epoch + len): its line says how long that was, to the millisecond a float
    [telemetry] epoch_seconds makes. Before: only when the epoch began, so an hour's digest and a minute's looked
    alike."""
    agent = new_did()
    for length in (3_600_000, 1_500):
        node.replica.issue("digest", digest_body(
            agent, epoch=1_767_225_600_000, length=length, outcomes={**dict.fromkeys(OUTCOMES, 0), "ok": 3},
            categories={**dict.fromkeys(CATEGORIES, 0), "tool": 3}, high_risk=dict.fromkeys(OUTCOMES, 0),
            evidence_root=bytes(32)))
    code, out, _ = await run("records", "--api", url, "--kind", "digest")
    assert code == 0
    hour, moment = out.splitlines()
    assert hour.endswith(f": {agent} from 2026-01-01T00:00:00Z for 3600 s: 3 events (3 ok)")
    assert moment.endswith(f": {agent} from 2026-01-01T00:00:00Z for 1.5 s: 3 events (3 ok)")


async def test_records_show_what_a_digest_s_events_came_to(run, node, url):
    """An engineer of a peer org watching an agent's digests arrive sees the violations they report. Before: only how
    many events there were, `7 events` whether all went well or one was a denied transfer."""
    agent, zero = new_did(), dict.fromkeys(OUTCOMES, 0)
    for dp_epsilon in (None, 0.5):
        node.replica.issue("digest", digest_body(
            agent, epoch=1_767_225_600_000, length=30_000, outcomes={**zero, "ok": 6, "denied": 1},
            categories={**dict.fromkeys(CATEGORIES, 0), "tool": 7}, high_risk={**zero, "denied": 1},
            evidence_root=bytes(32), dp_epsilon=dp_epsilon))
    code, out, _ = await run("records", "--api", url, "--kind", "digest")
    assert code == 0
    exact, noisy = out.splitlines()
    assert exact.endswith(": 7 events (6 ok, 1 denied; high-risk: 1 denied)")
    assert noisy.endswith(": 7 events (6 ok, 1 denied; high-risk: 1 denied), counts with DP noise of epsilon 0.5")


@given(st.integers(1, MAX_UINT))
def test_a_digest_s_epoch_length_is_shown_exactly_in_seconds(length):
    body = {"agent": "did:key:z6Mk", "epoch": 0, "len": length, "events": 0, "outcomes": dict.fromkeys(OUTCOMES, 0),
            "high_risk": dict.fromkeys(OUTCOMES, 0)}
    line = describe({"index": 0, "kind": "digest", "id": "00", "iss": "did:key:z6Mk", "seq": 1, "body": body})
    shown = line.split(" for ")[1].split(" s: ")[0]
    assert Decimal(shown) * 1000 == length
    assert "." not in shown or not shown.endswith(("0", "."))  # no trailing zeros: 1.5 s, not 1.500 s


async def test_records_name_a_key_rotation_in_its_org_records(run, node, url):
    """An org's two records of a rotation, the old key's naming the new and the new key's first naming the old, read
    as its other org records do without it: the line says which key replaced which."""
    partner = Org()
    node.replica.issue("vouch", vouch_body(partner.did, 1.0, "org-peer"))
    node.replica.accept([partner.record("org")])
    successor, rotation, first = partner.rotate()
    node.replica.accept([rotation, first])
    code, out, _ = await run("records", "--api", url, "--kind", "org")
    assert code == 0
    told, replaced = out.splitlines()[-2:]
    assert told.endswith(f"org {rotation.id.hex()} by {partner.did} seq 2: org on test; rotates this key to "
                         f"{successor.did}")
    assert replaced.endswith(f"org {first.id.hex()} by {successor.did} seq 1: org on test; the key that replaces "
                             f"{partner.did}")


# --- the log --------------------------------------------------------------------------------------------


async def test_log_checkpoint_prints_the_signed_note(run, node, url):
    code, _, err = await run("log", "checkpoint", "--api", url)
    assert code == 1 and "has not signed a checkpoint" in err
    vouch(node)
    note = node.sign_checkpoint(cosigners=(SigningKey.generate(),))
    code, out, _ = await run("log", "checkpoint", "--api", url)
    assert (code, out.encode()) == (0, note)


async def test_log_checkpoint_prints_the_note_s_bytes_whatever_the_terminal_s_encoding(node, url, monkeypatch):
    """The note is signed bytes, its signature lines start with an em dash: written through a latin-1 or ASCII
    stdout (LC_ALL=C, PYTHONIOENCODING) it must come out as they are, not fail on the dash or be re-encoded."""
    vouch(node)
    note = node.sign_checkpoint(cosigners=(SigningKey.generate(),))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stdout)
    code = await trio.to_thread.run_sync(cli.main, ["log", "checkpoint", "--api", url])
    assert (code, stdout.buffer.getvalue()) == (0, note)


async def test_log_verify_checks_the_ledger_its_checkpoint_and_cosignatures(run, node, data_dir):
    for _ in range(3):
        vouch(node)
    witness = SigningKey.generate()
    node.sign_checkpoint(cosigners=(witness,))
    code, out, err = await run("log", "verify", "--dir", data_dir, "--witness", did_key(bytes(witness.verify_key)))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"ok: 3 records verify and hash to the root of the checkpoint signed by {node.did}"
    assert lines[1] == "the 4 hashes of their tree that records.ledger stores (proofs are built from them) match them"
    assert lines[2:4] == ["cosigned by 1 known witness of 1 independence group (the --witness orgs, each its own "
                          "group)",
                          f"  {did_key(bytes(witness.verify_key))}"]
    assert "now holds this one" in lines[4]
    assert "checked 3/3 entries" in err
    assert (data_dir / "verified.checkpoint").read_bytes() == node.note


async def test_log_verify_checks_consistency_with_the_checkpoint_verified_before(run, node, data_dir):
    vouch(node)
    node.sign_checkpoint()
    assert (await run("log", "verify", "--dir", data_dir))[0] == 0
    for _ in range(4):
        vouch(node)
    node.sign_checkpoint()
    code, out, _ = await run("log", "verify", "--dir", data_dir, "--json")
    assert code == 0
    verified = json.loads(out)
    assert (verified["size"], verified["consistent_from"], verified["did"]) == (5, 1, node.did)
    assert verified["stored_hashes"] == 5 + 2 + 1


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a file away")
async def test_log_verify_run_as_root_keeps_no_checkpoint_in_a_users_data_directory(run, node, data_dir, tmp_path):
    """`sudo vouchnet log verify --dir` on a service user's directory left there a verified.checkpoint of root's
    (mode 0600), which the next run as that user could not read: refused as `vouchnet run` refuses it, before
    anything is fetched, also given as --cache. A cache elsewhere writes nothing there, so it verifies."""
    vouch(node)
    node.sign_checkpoint()
    os.chown(data_dir, 12345, -1)
    refusal = (f"vouchnet log verify: {data_dir}: owned by uid 12345, not by root (uid 0) vouchnet runs as, so that "
               f"user could replace it; run vouchnet as uid 12345, or, if root is to run the node, `chown root "
               f"{data_dir}`\n")
    for cache in ([], ["--cache", data_dir / "mine.checkpoint"], ["--cache", data_dir / ".." / "node" / "x"]):
        assert await run("log", "verify", "--dir", data_dir, *cache) == (2, "", refusal)
    assert not {"verified.checkpoint", "mine.checkpoint", "x"} & set(os.listdir(data_dir))
    code, out, err = await run("log", "verify", "--dir", data_dir, "--cache", tmp_path / "seen.checkpoint", "--json")
    assert code == 0, err
    assert json.loads(out)["stored_hashes"] == 1
    assert (tmp_path / "seen.checkpoint").read_bytes() == node.note


async def test_log_verify_pages_through_a_long_log(run, node, url, monkeypatch):
    monkeypatch.setattr("node.api.log.MAX_ENTRIES", 2)
    for _ in range(5):
        vouch(node)
    node.sign_checkpoint()
    code, _, err = await run("log", "verify", "--api", url)
    assert code == 0
    assert err.splitlines() == ["checked 2/5 entries", "checked 4/5 entries", "checked 5/5 entries"]


async def test_log_verify_accepts_a_true_log_as_it_grows(run, node, url, tmp_path):
    cache = tmp_path / "seen.checkpoint"
    for size in range(13):  # every tree shape up to 12 leaves, each consistent with the one before
        node.sign_checkpoint()
        code, out, err = await run("log", "verify", "--api", url, "--cache", cache, "--json")
        assert code == 0, err
        assert (json.loads(out)["size"], json.loads(out)["consistent_from"]) == (size, size - 1 if size else None)
        vouch(node)


async def test_log_verify_syncs_its_cache_before_it_replaces_the_one_before(run, node, url, tmp_path, monkeypatch):
    """Before: written and renamed unsynced, the checkpoint verified could be lost, or the cache left empty, by a
    power cut, and the next run refused the cache (or forgot what it had verified)."""
    cache = tmp_path.resolve() / "seen.checkpoint"
    synced = recorded_fsyncs(monkeypatch)
    node.sign_checkpoint()
    assert (await run("log", "verify", "--api", url, "--cache", cache))[0] == 0
    assert [path for path in synced if path.startswith(str(tmp_path.resolve()))] == [
        str(tmp_path.resolve() / ".seen.checkpoint.partial"), str(tmp_path.resolve())]


async def test_log_verify_says_the_log_verified_when_its_cache_cannot_be_kept(run, node, url, tmp_path, monkeypatch):
    """Before: on a full disk it said only `verified.checkpoint: No space left on device` and exited 2, as for a
    usage error, the verdict on a sound log lost."""
    cache = tmp_path / "seen.checkpoint"

    def no_space(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("node.commands.log_verify.replace_file", no_space)
    vouch(node)
    node.sign_checkpoint()
    code, out, err = await run("log", "verify", "--api", url, "--cache", cache)
    assert (code, out) == (1, "")
    assert (f"the log verifies: 1 record hashes to the root of the checkpoint signed by {node.replica.did}; but "
            f"keeping it failed ({cache}: No space left on device), so the next run checks consistency with the "
            "checkpoint kept before") in err
    assert not cache.exists()


async def test_log_verify_says_what_to_do_with_a_cache_it_cannot_read_or_keep(run, node, url, tmp_path):
    """Found by stop 45's operator walk: a --cache in a directory that does not exist was told to free space, and a
    --cache that is a directory was refused as `tmp: Is a directory`, not naming the option."""
    vouch(node)
    node.sign_checkpoint()
    code, out, err = await run("log", "verify", "--api", url, "--cache", tmp_path / "no-such-dir" / "seen.checkpoint")
    assert (code, out) == (1, "")
    assert "\nvouchnet log verify: the log verifies: 1 record hashes to the root" in err
    assert err.endswith("checkpoint kept before, if any: give --cache a FILE in a directory that exists and that you "
                        "may write\n")
    code, out, err = await run("log", "verify", "--api", url, "--cache", tmp_path)
    assert (code, out, err) == (2, "", f"vouchnet log verify: --cache {tmp_path}: Is a directory\n")


def _signed(node, size, root, key=None):
    text = Checkpoint(node.origin, size, root).to_text()
    return format_note(text, [note_signature(text, Ed25519Signer(node.origin, key or node.replica.key))])


async def test_log_verify_counts_one_record_as_one(run, node, url):
    vouch(node)
    node.sign_checkpoint()
    code, out, err = await run("log", "verify", "--api", url)
    assert code == 0, err
    assert out.splitlines()[:3] == [f"ok: 1 record verifies and hashes to the root of the checkpoint signed by "
                                    f"{node.did}", "the hashes the node stores (and builds its proofs from) were not "
                                    "checked: give --dir, the node's data directory, to check them",
                                    "cosigned by 0 known witnesses of 0 independence groups (none, with --api alone: "
                                    "give --known-by DIR, your node's, or --witness DID)"]


# --- log verify: whose cosignatures count --------------------------------------------------------------------------

ONE_NOT_COUNTED = "not counted: 1 cosignature by keys not known as witnesses (anyone can make a key and cosign)"


@pytest.fixture
def trust(node):
    metrics = Registry()
    return TrustService(node.replica, roots=(), policy=Policy(min_score=0), broadcaster=Broadcaster(metrics),
                        metrics=metrics, recompute_interval=60, epoch_ms=HOUR_MS, clock=Clock(int(time.time() * 1000)))


@pytest.fixture
async def scored_url(node, trust):
    """The node's API with its scores, as the daemon serves it: `GET /v1/orgs/{did}` says whom it gives reputation."""
    async with _served(create_app(node, routers=[scores_router(trust, node.replica.key)])) as url:
        yield url


@asynccontextmanager
async def _served(app) -> AsyncIterator[str]:
    """The base URL of `app` served on a free port of 127.0.0.1 while the block runs."""
    async with trio.open_nursery() as nursery:
        (url,) = await nursery.start(partial(serve, app, "127.0.0.1", 0, refused=lambda status, code: None,
                                             dropped=lambda reason: None))
        yield url
        nursery.cancel_scope.cancel()


@pytest.fixture
def scored_data_dir(tmp_path, node, scored_url):
    return _data_dir(tmp_path / "node", node, scored_url)


def _did_of(key: SigningKey) -> str:
    return did_key(bytes(key.verify_key))


def _cosigned_by_a_peer_and_a_made_up_key(node, trust) -> tuple[SigningKey, SigningKey]:
    """The node's checkpoint cosigned by an org it vouches for as a peer, and by a key no one knows of (as a hostile
    node would cosign its own checkpoint with keys it made up)."""
    peer, made_up = SigningKey.generate(), SigningKey.generate()
    trust.on_records([node.replica.issue("vouch", vouch_body(_did_of(peer), 0.9, "org-peer"))])
    node.sign_checkpoint(cosigners=(peer, made_up))
    return peer, made_up


async def test_a_made_up_key_s_cosignature_is_no_known_witness_s(run, node, trust, scored_data_dir):
    """Found by stop 45's README walk: `log verify` said "cosigned by 2 witnesses" of a checkpoint that a key made up
    for the purpose cosigned; only the org the node weighs as a witness counts, and the made-up key is named apart."""
    peer, made_up = _cosigned_by_a_peer_and_a_made_up_key(node, trust)
    code, out, err = await run("log", "verify", "--dir", scored_data_dir)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[2:6] == ["cosigned by 1 known witness of 1 independence group (orgs this node gives a witness's "
                          "weight, outside the log's org's group)", f"  {_did_of(peer)}", ONE_NOT_COUNTED,
                          f"  {_did_of(made_up)}"]
    code, out, err = await run("log", "verify", "--dir", scored_data_dir, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert (answer["witnesses"], answer["unknown_cosigners"]) == ([_did_of(peer)], [_did_of(made_up)])


async def test_an_org_vouched_for_at_a_low_weight_is_no_known_witness(run, node, trust, scored_data_dir, tmp_path):
    """Found by stop 45's witness review: an org the node gives a sliver of reputation (vouched for at weight 0.05 by
    an org two vouches from its own) counted as a known witness, a whole independence group of them, so
    --min-witnesses 2 passed with one witness of weight; only an org whose standing reaches the weight the scoring's
    independent witnesses need counts, as the org the node vouches for at 0.9 does."""
    peer, light = SigningKey.generate(), SigningKey.generate()
    (tmp_path / "voucher").mkdir()
    (tmp_path / "relay").mkdir()
    with fake_node(tmp_path / "voucher") as voucher, fake_node(tmp_path / "relay") as relay:
        trust.on_records([node.replica.issue("vouch", vouch_body(_did_of(peer), 0.9, "org-peer")),
                          node.replica.issue("vouch", vouch_body(voucher.did, 0.9, "org-peer")),
                          voucher.replica.issue("vouch", vouch_body(relay.did, 0.9, "org-peer")),
                          relay.replica.issue("vouch", vouch_body(_did_of(light), 0.05, "org-peer"))])
    weighed = trust.org(_did_of(light))
    assert weighed["reputation"] > 0 and weighed["group"] == voucher.did
    assert weighed["voucher_weight"] < weighed["witness_min_weight"] == 0.3
    node.sign_checkpoint(cosigners=(peer, light))
    code, out, err = await run("log", "verify", "--dir", scored_data_dir, "--json", "--min-witnesses", 2)
    assert code == 1
    answer = json.loads(out)
    assert (answer["witness_groups"], answer["unknown_cosigners"]) == ({_did_of(peer): [_did_of(peer)]},
                                                                       [_did_of(light)])
    assert err.endswith("known witnesses of 1 independence group cosigned its checkpoint, fewer than "
                        "--min-witnesses 2\n"), err


async def test_a_judge_that_says_nothing_of_the_witness_bar_knows_no_witness(run, node, trust, scored_data_dir,
                                                                             monkeypatch):
    """A judging node older than `witness_min_weight` in its answer on an org (GET /v1/orgs/{did}) gives no bar to
    weigh a cosigner by: none counts, and log verify says so rather than fail."""
    peer, made_up = _cosigned_by_a_peer_and_a_made_up_key(node, trust)
    answer_of = trust.org
    monkeypatch.setattr(trust, "org", lambda did: {key: value for key, value in answer_of(did).items()
                                                   if key != "witness_min_weight"})
    code, out, err = await run("log", "verify", "--dir", scored_data_dir, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert (answer["witnesses"], answer["unknown_cosigners"]) == ([], [_did_of(peer), _did_of(made_up)])


async def test_over_the_api_only_the_witnesses_named_count(run, node, trust, scored_url):
    """Against another node (--api) its own view of whom it knows is a hostile node's word: no cosignature counts
    unless the checker names its witness, and --min-witnesses fails a checkpoint short of them (exit 1)."""
    peer, made_up = _cosigned_by_a_peer_and_a_made_up_key(node, trust)
    code, out, err = await run("log", "verify", "--api", scored_url, "--min-witnesses", 1)
    assert code == 1
    assert out.splitlines()[2:7] == [
        "cosigned by 0 known witnesses of 0 independence groups (none, with --api alone: give --known-by DIR, your "
        "node's, or --witness DID)",
        "not counted: 2 cosignatures by keys not known as witnesses (anyone can make a key and cosign)",
        f"  {_did_of(peer)}", f"  {_did_of(made_up)}", "no earlier checkpoint to check consistency with (give --cache "
        "FILE to keep one)"]
    assert err.endswith("vouchnet log verify: the log verifies, but known witnesses of 0 independence groups "
                        "cosigned its checkpoint, fewer than --min-witnesses 1\n"), err
    code, out, err = await run("log", "verify", "--api", scored_url, "--witness", _did_of(peer), "--min-witnesses", 1)
    assert code == 0, err
    assert out.splitlines()[2:6] == ["cosigned by 1 known witness of 1 independence group (the --witness orgs, each "
                                     "its own group)", f"  {_did_of(peer)}", ONE_NOT_COUNTED, f"  {_did_of(made_up)}"]
    code, _, err = await run("log", "verify", "--api", scored_url, "--witness", _did_of(peer), "--min-witnesses", 2)
    assert code == 1 and "known witnesses of 1 independence group cosigned its checkpoint, fewer than " \
        "--min-witnesses 2" in err


async def test_the_node_known_by_judges_whom_it_knows_as_witnesses_of_another_org_s_log(run, node, trust,
                                                                                     scored_data_dir, tmp_path):
    """--known-by DIR: the checker's own node, not the node checked, says which cosigners are witnesses, its own org
    among them; only a key it knows nothing of is not counted."""
    peer, made_up = SigningKey.generate(), SigningKey.generate()
    trust.on_records([node.replica.issue("vouch", vouch_body(_did_of(peer), 0.9, "org-peer"))])
    (tmp_path / "other").mkdir()
    with fake_node(tmp_path / "other") as other:
        vouch(other)
        other.sign_checkpoint(cosigners=(node.replica.key, peer, made_up))
        async with _served(create_app(other)) as other_url:
            code, out, err = await run("log", "verify", "--api", other_url, "--known-by", scored_data_dir)
    assert code == 0, err
    assert out.splitlines()[2:7] == [f"cosigned by 2 known witnesses of 2 independence groups (orgs the node of "
                                     f"{scored_data_dir} gives a witness's weight, outside the log's org's group)",
                                     f"  {node.did}",
                                     f"  {_did_of(peer)}", ONE_NOT_COUNTED, f"  {_did_of(made_up)}"]


async def test_orgs_a_log_s_org_vouched_into_being_are_no_witnesses_of_its_log(run, node, trust, scored_data_dir,
                                                                                tmp_path):
    """An org inside the judge's horizon that vouches for keys it made up gives them reputation there; cosigning its
    own checkpoint with them, they are in its independence group, so not counted, where an org of its own group is."""
    peer, made_up = SigningKey.generate(), SigningKey.generate()
    (tmp_path / "hostile").mkdir()
    with fake_node(tmp_path / "hostile") as hostile:
        minted = hostile.replica.issue("vouch", vouch_body(_did_of(made_up), 1.0, "org-peer"))
        trust.on_records([node.replica.issue("vouch", vouch_body(hostile.did, 0.9, "org-peer")),
                          node.replica.issue("vouch", vouch_body(_did_of(peer), 0.9, "org-peer")), minted])
        assert trust.org(_did_of(made_up))["reputation"] > 0  # (as much as the orgs any org vouches for get)
        hostile.sign_checkpoint(cosigners=(peer, made_up))
        async with _served(create_app(hostile)) as hostile_url:
            code, out, err = await run("log", "verify", "--api", hostile_url, "--known-by", scored_data_dir, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert (answer["witnesses"], answer["unknown_cosigners"]) == ([_did_of(peer)], [_did_of(made_up)])


async def test_a_known_by_directory_without_a_node_is_refused_before_the_log_is_fetched(run, node, url, tmp_path):
    vouch(node)
    node.sign_checkpoint()
    code, out, err = await run("log", "verify", "--api", url, "--known-by", tmp_path / "nowhere")
    assert (code, out) == (2, "")
    assert err.startswith(f"vouchnet log verify: --known-by: {tmp_path / 'nowhere'}: no such directory"), err
    assert "checked" not in err  # no entry fetched


async def test_neither_an_org_flagged_for_equivocation_nor_the_node_s_own_is_a_known_witness(run, node, trust,
                                                                                              scored_data_dir):
    """An org the node holds proof of equivocating cosigns as no witness, its word on a log being worth nothing, and
    nor does the node's own org, whose reputation is full: a log's own key witnesses nothing of it."""
    peer = SigningKey.generate()
    trust.on_records([node.replica.issue("vouch", vouch_body(_did_of(peer), 0.9, "org-peer"))])
    trust.engine.flag_equivocator(_did_of(peer))  # (as an equivocation record about it does: vouching.feed)
    node.sign_checkpoint(cosigners=(peer, node.replica.key))
    code, out, err = await run("log", "verify", "--dir", scored_data_dir, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert (answer["witnesses"], answer["unknown_cosigners"]) == ([], [_did_of(peer), node.did])


async def test_witnesses_one_org_vouched_into_being_count_once(run, node, trust, scored_data_dir, tmp_path):
    """Found by stop 45's witness review: an org inside the judge's horizon colluding with a log's org could vouch
    org-peer for keys it made up, each then a known witness of that log's split view, so --min-witnesses 3 passed on
    one org's word; they are one independence group, which counts once."""
    minted = (SigningKey.generate(), SigningKey.generate())
    (tmp_path / "colluder").mkdir()
    (tmp_path / "log").mkdir()
    with fake_node(tmp_path / "colluder") as colluder, fake_node(tmp_path / "log") as log:
        trust.on_records([node.replica.issue("vouch", vouch_body(colluder.did, 0.9, "org-peer")),
                          *(colluder.replica.issue("vouch", vouch_body(_did_of(key), 1.0, "org-peer"))
                            for key in minted)])
        vouch(log)
        log.sign_checkpoint(cosigners=(colluder.replica.key, *minted))
        async with _served(create_app(log)) as log_url:
            code, out, err = await run("log", "verify", "--api", log_url, "--known-by", scored_data_dir,
                                       "--min-witnesses", 2)
            assert code == 1
            assert out.splitlines()[2:6] == [
                f"cosigned by 3 known witnesses of 1 independence group (orgs the node of {scored_data_dir} gives a "
                "witness's weight, outside the log's org's group)", f"  {colluder.did}",
                *(f"  {_did_of(key)} (in the group of {colluder.did})" for key in minted)]
            assert err.endswith("the log verifies, but known witnesses of 1 independence group cosigned its "
                                "checkpoint, fewer than --min-witnesses 2\n"), err
            code, out, err = await run("log", "verify", "--api", log_url, "--known-by", scored_data_dir, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["witness_groups"] == {colluder.did: [colluder.did, *map(_did_of, minted)]}


async def test_the_log_s_org_s_earlier_key_is_no_witness_of_its_log(run, node, trust, scored_url, scored_data_dir):
    """Found by stop 45's witness review: after a key rotation the org's earlier key could cosign its checkpoint and
    count as a witness, named with --witness, or given reputation by a judge that knows the org by it and has not
    yet heard of its new key; the rotation in its ledger makes it the log's own key, which witnesses nothing of it."""
    vouch(node)
    old = node.replica.key
    _rotate(node)  # (`trust`, the judge, holds the node's first key as its own org, and heard of no rotation)
    node.sign_checkpoint(cosigners=(old,))
    for judged_by in (("--known-by", scored_data_dir), ("--witness", _did_of(old))):
        code, out, err = await run("log", "verify", "--api", scored_url, *judged_by, "--json")
        assert code == 0, err
        answer = json.loads(out)
        assert (answer["witnesses"], answer["unknown_cosigners"]) == ([], [_did_of(old)]), judged_by


@given(st.integers(0, 10**6), st.sampled_from([("node", "nodes"), ("witness", "witnesses"), ("entry", "entries")]))
def test_a_count_names_one_thing_in_the_singular_and_any_other_number_in_the_plural(n, nouns):
    singular, plural = nouns
    assert counted(n, singular, plural) == f"{n} {singular if n == 1 else plural}"
    assert counted(n, "node") == counted(n, "node", "nodes")


async def test_log_verify_fails_when_the_entries_miss_the_root(run, node, url):
    vouch(node)
    node.note = _signed(node, 1, bytes(32))
    code, _, err = await run("log", "verify", "--api", url)
    assert code == 1
    assert "the hash of the 1 entry is not the checkpoint's root" in err


async def test_log_verify_fails_on_a_checkpoint_the_org_did_not_sign(run, node, url):
    vouch(node)
    node.note = _signed(node, 1, node.replica.store.ledger.root(), key=SigningKey.generate())
    code, _, err = await run("log", "verify", "--api", url)
    assert code == 1
    assert "the node's checkpoint" in err


async def test_log_verify_checks_the_key_of_a_pinned_did(run, node, url):
    vouch(node)
    node.sign_checkpoint()
    code, _, err = await run("log", "verify", "--api", url, "--did", new_did())
    assert code == 1
    assert "the node's checkpoint" in err


async def test_log_verify_fails_on_an_entry_that_is_not_a_record(run, node, url):
    vouch(node)
    node.replica.store.ledger.append([b"not a record"])
    node.sign_checkpoint()
    code, _, err = await run("log", "verify", "--api", url)
    assert code == 1
    assert "entry 1: " in err


async def test_log_verify_fails_on_a_record_out_of_its_chain(run, node, url):
    other = Org()
    other.record()
    node.replica.store.ledger.append([other.record().raw])  # seq 2 with no seq 1 before it
    node.sign_checkpoint()
    code, _, err = await run("log", "verify", "--api", url)
    assert code == 1
    assert "entry 0: seq: must be 1 for an issuer's first record, not 2" in err


async def test_log_verify_fails_when_the_log_shrank(run, node, url, tmp_path):
    for _ in range(2):
        vouch(node)
    cache = tmp_path / "seen.checkpoint"
    cache.write_bytes(_signed(node, 3, bytes(32)))
    node.sign_checkpoint()
    code, _, err = await run("log", "verify", "--api", url, "--cache", cache)
    assert code == 1
    assert "the log shrank" in err


async def test_log_verify_fails_when_the_log_forked_from_what_was_seen(run, node, url, tmp_path):
    for _ in range(3):
        vouch(node)
    cache = tmp_path / "seen.checkpoint"
    cache.write_bytes(_signed(node, 2, bytes(32)))  # what the node showed before, now rewritten
    node.sign_checkpoint()
    code, _, err = await run("log", "verify", "--api", url, "--cache", cache)
    assert code == 1
    assert f"not consistent with the checkpoint of size 2 in {cache}" in err
    assert cache.read_bytes() == _signed(node, 2, bytes(32))


async def test_log_verify_refuses_a_cache_of_another_log(run, node, url, tmp_path):
    vouch(node)
    cache = tmp_path / "seen.checkpoint"
    cache.write_bytes(_signed(node, 1, node.replica.store.ledger.root(), key=SigningKey.generate()))
    node.sign_checkpoint()
    code, _, err = await run("log", "verify", "--api", url, "--cache", cache)
    assert code == 1
    assert "remove it if the node's key or network changed" in err


def _rotate(node):
    """What `vouchnet key rotate` does to the node's ledger: the old key names the new, the new its prior."""
    old, new = node.replica, Replica(SigningKey.generate(), node.replica.store, roots=(), max_hops=2, held_limit=100)
    old.issue("org", org_body("org", node.network, (), next=new.did))
    new.issue("org", org_body("org", node.network, (), prior=old.did))
    node.replica = new


async def test_log_verify_follows_the_node_across_a_key_rotation(run, node, url, tmp_path):
    cache = tmp_path / "seen.checkpoint"
    vouch(node)
    node.sign_checkpoint()
    assert (await run("log", "verify", "--api", url, "--cache", cache))[0] == 0
    _rotate(node)
    node.sign_checkpoint()
    code, out, _ = await run("log", "verify", "--api", url, "--cache", cache)
    assert code == 0
    assert f"ok: 3 records verify and hash to the root of the checkpoint signed by {node.did}" in out
    assert "consistent with the checkpoint of size 1 verified before" in out


async def test_log_verify_refuses_a_cache_of_another_org_s_log(run, node, url, tmp_path):
    other = SigningKey.generate()
    other_did = did_key(bytes(other.verify_key))
    vouch(node)
    cache = tmp_path / "seen.checkpoint"
    origin = log_origin(node.network, other_did, "records")
    text = Checkpoint(origin, 1, node.replica.store.ledger.root()).to_text()
    cache.write_bytes(format_note(text, [note_signature(text, Ed25519Signer(origin, other))]))
    node.sign_checkpoint()
    code, _, err = await run("log", "verify", "--api", url, "--cache", cache)
    assert code == 1
    assert f"holds a checkpoint of {other_did}'s log, and the ledger holds no key rotation from that key" in err


async def test_log_verify_before_the_first_checkpoint_is_a_node_error(run, url):
    code, _, err = await run("log", "verify", "--api", url)
    assert code == 1
    assert "has not signed a checkpoint" in err


@pytest.mark.parametrize(("info", "problem"), [
    ({}, "did is missing"), ([], "the answer is not an object"),
    ({"did": 5, "network": "testnet"}, "did is not a string"),
    ({"did": new_did(), "network": None}, "network is not a string"),
])
def test_log_verify_names_a_node_that_does_not_say_which_log_it_keeps(info, problem):
    """GET /v1/node answering without a did and network (a broken or hostile node): a failure naming it, not a
    KeyError or TypeError traceback."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=info))
    with NodeClient("http://node", transport=transport) as client, pytest.raises(NodeApiError) as failed:
        verify_log(client)
    assert (failed.value.code, failed.value.detail) == ("bad_answer", f"/v1/node: {problem}")


# --- log verify against a corrupted ledger file ----------------------------------------------------------


def _ledger_rows(node):
    """A second connection to the node's ledger file, as a disk fault or a careless hand would change it."""
    return sqlite3.connect(node.replica.store.ledger._path, isolation_level=None)


def _stored_entries(db):
    """The one row of entries the tests' single batch wrote: (first, [entry bytes])."""
    first, ends, data = db.execute("SELECT first, ends, data FROM entries").fetchone()
    offsets = (0, *struct.unpack(f"<{len(ends) // 4}I", ends))
    return first, [data[a:b] for a, b in zip(offsets, offsets[1:])]


def _store_entries(db, first, entries):
    ends = struct.pack(f"<{len(entries)}I", *itertools.accumulate(map(len, entries)))
    db.execute("UPDATE entries SET ends = ?, data = ? WHERE first = ?", (ends, b"".join(entries), first))


def _three_orgs_logged(node):
    """A checkpointed log of 4 records from 3 issuers, appended in one batch (one row of entries)."""
    a, b = Org(), Org()
    node.replica.store.ledger.append([a.record().raw, b.record().raw, a.record().raw, Org().record().raw])
    node.sign_checkpoint()


@pytest.mark.parametrize("byte", [0, 40, -1])
async def test_log_verify_names_an_entry_with_a_flipped_bit(run, node, url, byte):
    _three_orgs_logged(node)
    with _ledger_rows(node) as db:
        first, entries = _stored_entries(db)
        entry = bytearray(entries[1])
        entry[byte] ^= 0x10
        _store_entries(db, first, [entries[0], bytes(entry), *entries[2:]])
    code, _, err = await run("log", "verify", "--api", url)
    assert code == 1
    assert "entry 1: " in err


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ((1, 0, 2, 3), "the hash of the 4 entries is not the checkpoint's root"),  # chains whole: the root tells
        ((2, 1, 0, 3), "entry 0: seq: must be 1 for an issuer's first record, not 2"),
    ],
)
async def test_log_verify_catches_entries_swapped(run, node, url, order, message):
    _three_orgs_logged(node)
    with _ledger_rows(node) as db:
        first, entries = _stored_entries(db)
        _store_entries(db, first, [entries[i] for i in order])
    code, _, err = await run("log", "verify", "--api", url)
    assert code == 1
    assert message in err


def _flip_stored_hash(node, level, index):
    """Invert a bit of the hash the node's ledger stores for node (level, index) of its tree, as a disk fault would,
    and drop the node's memory of it, as a restart would."""
    tile_id, offset = level << 40 | index // 16, index % 16 * 32
    with _ledger_rows(node) as db:
        (hashes,) = db.execute("SELECT hashes FROM tiles WHERE id = ?", (tile_id,)).fetchone()
        flipped = hashes[:offset] + bytes([hashes[offset] ^ 1]) + hashes[offset + 1 :]
        db.execute("UPDATE tiles SET hashes = ? WHERE id = ?", (flipped, tile_id))
    node.replica.store.ledger._tiles._cache.clear()


async def test_log_verify_catches_a_flipped_bit_in_a_stored_hash(run, node, data_dir):
    """Leaf 0's stored hash corrupted in a log of 4: the entries, the root (from the top hash) and the checkpoint
    are intact, but the node's inclusion proof of entry 1 no longer verifies."""
    _three_orgs_logged(node)
    _flip_stored_hash(node, 0, 0)
    ledger = node.replica.store.ledger
    with pytest.raises(ProofError):  # what a client checking entry 1 against the checkpoint then finds
        verify_inclusion(ledger.entry(1), 1, 4, ledger.inclusion_proof(1, 4), ledger.root(4))
    code, out, err = await run("log", "verify", "--dir", data_dir)
    assert (code, out) == (1, "")
    assert (f"{data_dir / 'records.ledger'}: 1 stored hash of the tree of its 4 entries differs from what the entries "
            "hash to: level 0 index 0 (the hash of entry 0). The entries and the checkpoint are sound, but the node's "
            f"proofs through it fail for its clients. Stop the node and run `vouchnet log repair --dir {data_dir}`, "
            "which rebuilds the stored hashes from the entries; should it find the entries damaged, restore the data "
            "directory from a copy") in err
    assert not (data_dir / "verified.checkpoint").exists()


async def test_log_verify_catches_a_flipped_bit_in_an_upper_stored_hash(run, node, data_dir):
    """The hash over entries 16-31 (level 4: the parent of a full tile of leaf hashes) corrupted in a log of 40: the
    one hash named, though the leaves below it are sound."""
    node.replica.store.ledger.append([Org().record().raw for _ in range(40)])
    node.sign_checkpoint()
    _flip_stored_hash(node, 4, 1)
    ledger = node.replica.store.ledger
    with pytest.raises(ProofError):
        verify_inclusion(ledger.entry(3), 3, 40, ledger.inclusion_proof(3, 40), ledger.root(40))
    code, _, err = await run("log", "verify", "--dir", data_dir)
    assert code == 1
    assert ("1 stored hash of the tree of its 40 entries differs from what the entries hash to: level 4 index 1 (over"
            " entries 16 to 31). ") in err


async def test_log_verify_names_the_first_ten_wrong_hashes_and_counts_the_rest(run, node, data_dir):
    node.replica.store.ledger.append([Org().record().raw for _ in range(20)])
    node.sign_checkpoint()
    for index in range(12):
        _flip_stored_hash(node, 0, index)
    code, _, err = await run("log", "verify", "--dir", data_dir)
    assert code == 1
    assert "12 stored hashes of the tree of its 20 entries differ from what the entries hash to: level 0 index 0" in err
    assert "level 0 index 9 (the hash of entry 9) and 2 more. " in err and "proofs through them fail" in err


async def test_log_verify_names_a_stored_tile_it_cannot_read(run, node, data_dir):
    node.replica.store.ledger.append([Org().record().raw for _ in range(40)])
    node.sign_checkpoint()
    with _ledger_rows(node) as db:  # the first tile of leaf hashes cut short (the last ones, opening checks)
        db.execute("UPDATE tiles SET hashes = substr(hashes, 1, 31) WHERE id = 0")
    code, _, err = await run("log", "verify", "--dir", data_dir)
    assert code == 1
    assert f"{data_dir / 'records.ledger'}: corrupt: hash level 0 tile 0 is not 16 or more 32-byte hashes" in err


async def test_log_verify_finds_a_sound_ledger_sound_while_the_node_appends(run, node, data_dir, monkeypatch):
    """Each page served, the node appends a record: its ledger file grows past the checkpoint, rewriting the partial
    tile of each level, while log verify reads the hashes of the checkpoint's tree from it."""
    monkeypatch.setattr("node.api.log.MAX_ENTRIES", 3)
    ledger = node.replica.store.ledger
    ledger.append([Org().record().raw for _ in range(20)])
    node.sign_checkpoint()
    served = ledger.entries

    def served_then_appended(start, end):
        page = served(start, end)
        ledger.append([Org().record().raw])
        return page

    monkeypatch.setattr(ledger, "entries", served_then_appended)
    code, out, err = await run("log", "verify", "--dir", data_dir, "--json")
    assert code == 0, err
    assert (json.loads(out)["size"], json.loads(out)["stored_hashes"]) == (20, 20 + 10 + 5 + 2 + 1)
    assert ledger.size == 20 + 7


async def test_log_verify_over_the_api_alone_says_it_did_not_check_the_stored_hashes(run, node, url):
    _three_orgs_logged(node)
    _flip_stored_hash(node, 0, 0)
    code, out, _ = await run("log", "verify", "--api", url, "--json")
    assert (code, json.loads(out)["stored_hashes"]) == (0, None)
    code, out, _ = await run("log", "verify", "--api", url)
    assert code == 0
    assert "the hashes the node stores (and builds its proofs from) were not checked: give --dir" in out


async def test_log_verify_in_a_directory_without_the_node_s_ledger_says_so(run, node, url, tmp_path):
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    api = url.removeprefix("http://")
    text = render_template(network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api=api, bootstrap=(), roots=())
    (directory / "config.toml").write_text(text)
    vouch(node)
    node.sign_checkpoint()
    code, _, err = await run("log", "verify", "--dir", directory)
    assert code == 1
    assert (f"{directory / 'records.ledger'}: no such file, so the hashes the node stores cannot be checked: is "
            f"{directory} the node's data directory? (--api URL checks the entries alone)") in err
    assert list(directory.iterdir()) == [directory / "config.toml"]


async def test_log_verify_says_the_node_refused_entries_its_checkpoint_covers(run, node, url, monkeypatch):
    """The node serves entries up to its latest checkpoint only: one that went back between verify's requests (its
    data directory restored from an older copy: a restart keeps every checkpoint published) refuses the entries of
    the checkpoint verify fetched first."""
    _three_orgs_logged(node)
    cosigned = node.note
    for _ in range(2):
        vouch(node)
    notes = iter([node.sign_checkpoint()])
    monkeypatch.setattr(node, "checkpoint", lambda: next(notes, cosigned))
    code, _, err = await run("log", "verify", "--api", url)
    assert code == 1
    assert ("the node's checkpoint is of 6 entries, but the node refuses to serve them all (query.end: must be at "
            "most the latest checkpoint's size, 4): it serves an earlier checkpoint now (its data directory was "
            "restored from an older copy); run log verify again") in err


async def test_log_verify_names_a_ledger_file_the_node_cannot_read(run, node, url):
    _three_orgs_logged(node)
    with _ledger_rows(node) as db:
        db.execute("DROP TABLE entries")  # what SQLite reports of a file cut short: rows it cannot find
    code, _, err = await run("log", "verify", "--api", url)
    assert code == 1
    assert "records.ledger: entries: no such table: entries" in err and "(503 storage)" in err


# --- log repair ------------------------------------------------------------------------------------------------


def _published(node, data_dir):
    """The node's checkpoint as the Witnessing service keeps it, in the data directory."""
    (data_dir / "checkpoint.note").write_bytes(node.note)


def _proofs_verify(node):
    ledger = node.replica.store.ledger
    ledger._tiles._cache.clear()  # the node's memory of the tiles: a restart reads them anew
    size, root = ledger.size, ledger.root()
    for i in range(size):
        verify_inclusion(ledger.entry(i), i, size, ledger.inclusion_proof(i, size), root)


def _file_bytes(data_dir):
    """The ledger's data: its file and write-ahead log (not the -shm index of the log, which any reader rewrites)."""
    return {path.name: path.read_bytes() for path in sorted(data_dir.glob("records.ledger*"))
            if not path.name.endswith("-shm")}


async def test_log_repair_rebuilds_a_flipped_leaf_hash_and_log_verify_then_passes(run, node, data_dir):
    _three_orgs_logged(node)
    _published(node, data_dir)
    _flip_stored_hash(node, 0, 0)
    code, out, err = await run("log", "repair", "--dir", data_dir)
    assert code == 0, err
    assert out.splitlines() == [
        "1 stored hash was wrong: level 0 index 0 (the hash of entry 0)",
        "replaced with the hashes of the entries, the 4 entries of the node's checkpoint hashing to its root; start "
        "the node and run `vouchnet log verify` to check its proofs"]
    assert "checked 4/4 entries" in err
    _proofs_verify(node)
    code, out, err = await run("log", "verify", "--dir", data_dir)
    assert code == 0, err


async def test_log_repair_rebuilds_upper_hashes_past_the_checkpoint_and_names_each(run, node, data_dir):
    """Hashes over entries 16-31 and 0-7 (levels 4 and 3) and leaf 3's wrong in a log of 40, 5 of them after the
    checkpoint (valid records: no signed root covers them)."""
    ledger = node.replica.store.ledger
    ledger.append([Org().record().raw for _ in range(35)])
    node.sign_checkpoint()
    _published(node, data_dir)
    ledger.append([Org().record().raw for _ in range(5)])
    for level, index in [(4, 1), (0, 3), (3, 0)]:
        _flip_stored_hash(node, level, index)
    code, out, err = await run("log", "repair", "--dir", data_dir)
    assert code == 0, err
    assert out.splitlines()[0] == ("3 stored hashes were wrong: level 0 index 3 (the hash of entry 3), level 3 index 0 "
                                   "(over entries 0 to 7), level 4 index 1 (over entries 16 to 31)")
    _proofs_verify(node)
    node.sign_checkpoint()
    code, _, err = await run("log", "verify", "--dir", data_dir)
    assert code == 0, err


async def test_log_repair_of_a_sound_ledger_changes_no_byte(run, node, data_dir):
    node.replica.store.ledger.append([Org().record().raw for _ in range(40)])
    node.sign_checkpoint()
    _published(node, data_dir)
    before = _file_bytes(data_dir)
    code, out, err = await run("log", "repair", "--dir", data_dir)
    assert (code, out) == (0, "nothing to repair: the 78 hashes records.ledger stores match its entries, the 40 "
                              "entries of the node's checkpoint hashing to its root\n"), err
    assert _file_bytes(data_dir) == before


async def test_log_repair_is_refused_while_the_node_holds_its_directory(run, node, data_dir):
    _three_orgs_logged(node)
    _published(node, data_dir)
    _flip_stored_hash(node, 0, 1)
    before = _file_bytes(data_dir)
    with locked_data_dir(data_dir):
        code, out, err = await run("log", "repair", "--dir", data_dir)
    assert (code, out) == (1, "")
    pid = f", pid {os.getpid()}" if os.path.exists("/proc/locks") else ""
    assert err == (f"vouchnet log repair: {data_dir}: in use by another process{pid} (is its node running? stop it "
                   "first)\n")
    assert _file_bytes(data_dir) == before


async def test_log_repair_refuses_damaged_entries_and_changes_nothing(run, node, data_dir):
    _three_orgs_logged(node)
    _published(node, data_dir)
    _flip_stored_hash(node, 1, 1)
    with _ledger_rows(node) as db:
        first, entries = _stored_entries(db)
        entries[2] = entries[2][:-1] + bytes([entries[2][-1] ^ 1])
        _store_entries(db, first, entries)
    before = _file_bytes(data_dir)
    code, out, err = await run("log", "repair", "--dir", data_dir)
    assert (code, out) == (1, "")
    assert (f"{data_dir / 'records.ledger'}: the first 4 entries do not hash to the signed root: an entry is damaged "
            "(stored hashes differ from those of entries 2); nothing was repaired: restore the data directory from a "
            "copy") in err
    assert _file_bytes(data_dir) == before


async def test_log_repair_refuses_an_entry_past_the_checkpoint_that_is_not_a_record(run, node, data_dir):
    _three_orgs_logged(node)
    _published(node, data_dir)
    node.replica.store.ledger.append([Org().record().raw, b"not a record"])
    _flip_stored_hash(node, 0, 0)
    before = _file_bytes(data_dir)
    code, _, err = await run("log", "repair", "--dir", data_dir)
    assert code == 1
    assert "vouchnet log repair: entry 5 (after the saved checkpoint): " in err
    assert "an entry is damaged; nothing was repaired: restore the data directory from a copy" in err
    assert _file_bytes(data_dir) == before


async def test_log_repair_of_a_node_that_saved_no_checkpoint_checks_every_entry_as_a_signed_record(run, node,
                                                                                                     data_dir):
    """A node that never published a checkpoint was refused a repair for want of a root to check its entries
    against; its entries' signatures serve."""
    _three_orgs_logged(node)
    _flip_stored_hash(node, 0, 0)
    assert not (data_dir / "checkpoint.note").exists()
    code, out, err = await run("log", "repair", "--dir", data_dir)
    assert code == 0, err
    assert out.splitlines()[1] == ("replaced with the hashes of the entries, each a validly signed record (the node "
                                   "saved no checkpoint to check them against); start the node and run "
                                   "`vouchnet log verify` to check its proofs")
    _proofs_verify(node)
    node.replica.store.ledger.append([b"not a record"])
    _flip_stored_hash(node, 0, 0)
    code, _, err = await run("log", "repair", "--dir", data_dir)
    assert code == 1 and "entry 4 (after the saved checkpoint): " in err


@pytest.mark.parametrize(("damage", "complaint"), [
    (lambda d: (d / "checkpoint.note").write_bytes((d / "checkpoint.note").read_bytes().replace(b"\n4\n", b"\n3\n")),
     "does not verify: the checkpoint the entries are checked against is unreadable, so nothing was repaired"),
    (lambda d: (d / "records.ledger").rename(d / "elsewhere"), "records.ledger: no such file: is "),
], ids=["checkpoint altered", "no ledger"])
async def test_log_repair_without_a_sound_checkpoint_or_ledger_changes_nothing(run, node, data_dir, damage, complaint):
    _three_orgs_logged(node)
    _published(node, data_dir)
    damage(data_dir)
    before = _file_bytes(data_dir)
    code, _, err = await run("log", "repair", "--dir", data_dir)
    assert code == 1
    assert complaint in err
    assert _file_bytes(data_dir) == before  # (no ledger created where there was none)


# --- the parser -----------------------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand of `parser`, as the words that name it (`key`, `key rotate`, ...)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(*words, name), *_commands(sub, (*words, name))]
    return found


@pytest.mark.parametrize("command", _commands(cli.build_parser()), ids=" ".join)
def test_every_command_explains_itself_with_examples(capsys, command):
    assert cli.main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:\n  vouchnet " + " ".join(command) in out


def _groups(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    """`vouchnet` itself (no words) and every command of it made of subcommands (`log`, `key`, ...)."""
    commands = _commands(parser)
    return [(), *(c for c in commands if any(len(w) > len(c) and w[:len(c)] == c for w in commands))]


@pytest.mark.parametrize("group", _groups(cli.build_parser()), ids=lambda words: " ".join(("vouchnet", *words)))
def test_vouchnet_or_a_command_group_given_no_command_prints_its_help_as_a_usage_error(capsys, group):
    """As argparse exits for a missing subcommand, and click for a group given none (its help too). Before, `vouchnet`
    alone printed its help and exited 0, and a group alone (`vouchnet log`) exited 2 with one line naming its
    subcommands and no help."""
    assert cli.main([*group, "--help"]) == 0
    shown = capsys.readouterr().out
    assert cli.main(list(group)) == 2
    assert capsys.readouterr() == ("", shown)


def test_agent_new_vouch_says_the_weights_it_takes_as_vouch_does(capsys, tmp_path):
    """Its --help gave no bound, and 1.5 was refused only as it ran."""
    assert cli.main(["agent", "new", "--help"]) == 0
    assert "--vouch W vouch for the agent with this weight, 0 < W <= 1 (basis operator)" in " ".join(
        capsys.readouterr().out.split())
    assert cli.main(["agent", "new", "--vouch", "1.5", "--dir", str(tmp_path)]) == 2
    assert "argument --vouch: a weight in (0, 1], got '1.5'" in capsys.readouterr().err


def test_a_module_with_register_adds_a_command(monkeypatch, capsys):
    class Hello:
        @staticmethod
        def register(subparsers):
            subparsers.add_parser("hello").set_defaults(func=lambda args: print("hi") or 0)

    monkeypatch.setitem(sys.modules, "hello_command", Hello)
    monkeypatch.setattr(cli, "COMMANDS", {**cli.COMMANDS, "hello": Command("hello_command", "say hi")})
    assert cli.main(["hello"]) == 0
    assert capsys.readouterr().out == "hi\n"


def test_each_module_adds_the_commands_the_dispatch_table_gives_it():
    """cli.COMMANDS names the module of each command, so that a command imports its own module only."""
    for module in dict.fromkeys(command.module for command in cli.COMMANDS.values()):
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(subparsers)
        assert list(subparsers.choices) == [name for name, its in cli.COMMANDS.items() if its.module == module], module
    assert [words for words in _commands(cli.build_parser()) if len(words) == 1] == [(name,) for name in cli.COMMANDS]


def test_vouchnet_s_own_help_and_refusal_are_those_of_the_parser_of_every_command(capsys):
    """`vouchnet --help`, or no command, or a mistyped one, list the commands from cli.COMMANDS without importing
    their modules (tests/test_cli.py): they print what the parser of every command prints."""
    every = cli.build_parser()
    assert cli.main(["--help"]) == 0
    assert capsys.readouterr().out == every.format_help()
    assert cli.main([]) == 2
    assert capsys.readouterr().err == every.format_help()
    assert cli.main(["no-such-command"]) == 2
    assert capsys.readouterr().err == _refusal(every, ["no-such-command"], capsys)


@pytest.mark.parametrize("argv", [["-x", "status"], ["-x", "vouch"], ["--dir", ".", "status"]], ids=" ".join)
def test_a_command_after_words_vouchnet_does_not_take_is_refused_as_the_parser_of_every_command_refuses_it(
        capsys, argv):
    """Parsed first without the commands' modules, as `vouchnet --help` is, then by the command's own parser: the
    refusal is the command's, with its usage."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == _refusal(cli.build_parser(), argv, capsys)
    assert err.startswith(f"usage: vouchnet {argv[-1]} " if argv[0] == "-x" else "usage: vouchnet [-h]")


def _refusal(parser: argparse.ArgumentParser, argv: list[str], capsys) -> str:
    """What `parser` writes to stderr refusing `argv` (`vouchnet`'s rule: words a command does not take are refused by
    that command's parser)."""
    with pytest.raises(SystemExit):
        args, unrecognized = parser.parse_known_args(argv)
        cli._command_parser(parser, argv).error(f"unrecognized arguments: {' '.join(unrecognized)}")
    return capsys.readouterr().err


@pytest.mark.parametrize("command", _commands(cli.build_parser()), ids=" ".join)
def test_a_command_s_help_is_the_same_from_its_module_alone(command):
    """The parser of one command, which is all `vouchnet COMMAND` builds, explains it as the parser of all does."""
    def help_of(parser):
        for word in command:
            parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
        return parser.format_help()

    assert help_of(cli.build_parser(command[0])) == help_of(cli.build_parser())


@pytest.mark.parametrize(
    ("argv", "usage"),
    [(["peers", "did:key:z6Mk"], "vouchnet peers"), (["log", "verify", "--dir", "d", "extra"], "vouchnet log verify"),
     (["testnet", "status", "n01"], "vouchnet testnet status")],
    ids=["peers DID", "log verify extra", "testnet status NODE"],
)
def test_an_argument_a_command_does_not_take_is_refused_with_that_command_s_usage(capsys, argv, usage):
    """Not `vouchnet`'s usage, which says nothing of what the command takes."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {usage} [-h]")
    assert err.endswith(f"\n{usage}: error: unrecognized arguments: {argv[-1]}\n")


def test_the_version_is_the_installed_one(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr() == (f"vouchnet {importlib.metadata.version('vouchnet')}\n", "")


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    """`vouchnet agent list | head -1`: the pipe closes, the command exits 141 as SIGPIPE would, no traceback."""
    made = init_data_dir(tmp_path, network="testnet", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command prints
    with os.fdopen(write, "wb") as stdout:
        done = subprocess.run([sys.executable, "-m", "node.cli", "agent", "list", "--dir", str(made.data_dir)],
                              stdout=stdout, stderr=subprocess.PIPE, timeout=60, text=True)
    assert (done.returncode, done.stderr) == (141, "")


# The console script `vouchnet` as pip writes it, with a Ctrl-C arriving as the named module starts to load.
_INTERRUPTED_WHILE_LOADING = """
import sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == sys.argv[1]:
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupt())
from node.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("module", ["node.commands.common", "node.commands.local"],
                         ids=["the modules every command needs", "the command's own module"])
def test_a_ctrl_c_while_the_command_loads_ends_it_quietly(tmp_path, module):
    """Ctrl-C just after Enter (`vouchnet init` loads for a fifth of a second): exit 130, no traceback."""
    done = subprocess.run([sys.executable, "-c", _INTERRUPTED_WHILE_LOADING, module, "init", "--dir", str(tmp_path)],
                          capture_output=True, timeout=60, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "")
    assert not (tmp_path / "config.toml").exists()


# --- a broken or hostile node ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "answer"), [
    (["status"], []),
    (["peers"], {"peers": "all"}),
    (["peers"], {"peers": [], "known": [{"peer_id": "p"}], "next": None}),
    (["records"], {"records": [{"index": 0, "id": "ab", "kind": "org", "iss": "x", "seq": 1, "body": {}}],
                   "next": None}),
    (["orgs"], {"orgs": [{"org": new_did()}], "next": None}),
    (["orgs", new_did()], {"org": new_did()}),
    (["score", new_did()], {"agent": "x", "score": 1, "tier": "unknown", "confidence": None}),
])
def test_a_malformed_answer_fails_the_command_in_one_line(argv, answer, monkeypatch, capsys):
    """Not a KeyError or TypeError traceback from the fields the command reads: exit 1 naming the field."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    monkeypatch.setattr(common, "NodeClient", partial(NodeClient, transport=transport))
    assert cli.main([*argv, "--api", "http://node"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"vouchnet {argv[0]}: /v1/"), err
    assert err.endswith(" (200 bad_answer)\n"), err


# --- what a command loads --------------------------------------------------------------------------------------------

# What a command that asks the node's API, or reads its data directory, has no use for: py-libp2p, the daemon and its
# API server, the scoring engine (numpy, scipy), the testnet, a witness (which `import ledger` loaded with every name
# of the package), an event loop (trio and anyio, which httpcore loaded). A health check runs `vouchnet status` every
# few seconds.
_NOT_FOR_CLIENTS = ("libp2p", "fastapi", "hypercorn", "starlette", "numpy", "scipy", "testnet", "node.daemon",
                    "node.api", "node.trust", "gossip.host", "vouching.scoring", "node.client.policy", "ledger.witness",
                    "trio", "anyio")
_LOADED = ("import sys; from node import cli; code = cli.main(sys.argv[1:]); "
           f"print(code, sorted(m for m in sys.modules if m.startswith({_NOT_FOR_CLIENTS!r})))")


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["status"], ["peers"], ["records"], ["log", "verify"],
    ["vouch", "{agent}", "--weight", "0.5", "--basis", "audit"], ["agent", "new", "--out", "{out}"],
    ["status", "--help"],
], ids=" ".join)
async def test_a_client_command_loads_neither_the_node_nor_py_libp2p(node, data_dir, tmp_path, argv):
    """Run in a process of its own, as an operator runs it (a test's process has loaded everything). The test's node
    serves no scores (`score`, `orgs`: node.commands.scores imports what node.commands.status does)."""
    write_org_key(data_dir, node.replica.key)
    node.sign_checkpoint()  # for log verify
    filled = [a.format(agent=new_did(), out=tmp_path / "agents") for a in argv]
    done = await trio.to_thread.run_sync(partial(
        subprocess.run, [sys.executable, "-c", _LOADED, *filled, "--dir", str(data_dir)], capture_output=True,
        text=True, timeout=120))
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr


# The command's client then imports httpcore; which of trio and anyio are loaded then, and trio can be imported after.
_HTTPCORE = ("import sys; from node.commands.common import import_httpcore_without_event_loops as imported; "
             "imported(); import httpcore; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'trio', 'anyio'})); import trio")


@pytest.mark.slow
@pytest.mark.parametrize("httpcore, loaded", [
    (None, "[]"),  # the installed one
    ("import trio", "['trio']"),  # one that cannot do without trio
], ids=["installed", "needing trio"])
def test_httpcore_is_imported_for_a_command_without_an_event_loop(tmp_path, httpcore, loaded):
    """In a process of its own, as a `vouchnet` command runs."""
    if httpcore is not None:
        (tmp_path / "httpcore").mkdir()
        (tmp_path / "httpcore" / "__init__.py").write_text(httpcore)
    done = subprocess.run([sys.executable, "-c", _HTTPCORE], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])})
    assert done.stdout.strip() == loaded, done.stderr


def test_httpcore_is_not_imported_without_an_event_loop_where_one_runs():
    """A process that imported trio (this one, as a node's) imports httpcore with it, as it is, when it needs it."""
    assert "trio" in sys.modules
    common.import_httpcore_without_event_loops()
    import httpcore._synchronization

    assert httpcore._synchronization.trio is trio


# Which of the node's slow imports `vouchnet run` has loaded as it logs its first line, where it then stops (exit 130,
# as at a Ctrl-C).
_SLOW_IMPORTS = ("libp2p", "fastapi", "starlette", "numpy", "scipy", "node.daemon", "node.api", "gossip.host",
                 "vouching.scoring")
_FIRST_LINE = ("import sys, node.logs; from node import cli\n"
               "def first(formatter, record):\n"
               f"    loaded = {{p for p in {_SLOW_IMPORTS!r} for m in sys.modules\n"
               "              if m == p or m.startswith(p + '.')}\n"
               "    print(record.getMessage(), getattr(record, 'fields', {}).get('dir'), sorted(loaded))\n"
               "    raise KeyboardInterrupt\n"
               "node.logs.LogfmtFormatter.format = first\n"
               "sys.exit(cli.main(sys.argv[1:]))")


@pytest.mark.slow
def test_run_says_that_it_starts_before_it_loads_the_node(tmp_path):
    """py-libp2p, FastAPI and the scoring engine took `vouchnet run` 3 s to load on an idle machine and 10-20 s on a
    loaded one, before it logged anything: an operator took it for hung. Its first line comes before them, naming the
    data directory (in a process of its own, as an operator runs it)."""
    made = init_data_dir(tmp_path / "n", network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    done = subprocess.run([sys.executable, "-c", _FIRST_LINE, "run", "--dir", str(made.data_dir)],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (130, f"starting: loading the node's libraries {made.data_dir} []\n"), \
        done.stderr
