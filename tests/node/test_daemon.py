"""The whole node: started from a data directory, replicating, scoring from another org's digests, and shutting
down cleanly on a signal."""

import functools
import gc
import json
import logging
import os
import random
import resource
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import httpx
import jwt as pyjwt
import pytest
import trio
import trio.testing
from nacl.signing import SigningKey

import gossip.peers
import gossip.replica
import ledger.witness
import node.audit_log
import node.credential_registry
import node.daemon
import node.digests
import node.idempotency
import node.cli
import node.trust
from gossip.replica import Replica
from ledger import Checkpoint, Ed25519Signer, log_origin
from gossip.store import CommittedIndex, RecordStore
from node.address_file import read_api_url
from node.audit_log import AuditLog
from node.config import load_config
from node.credential_status import bit, decode_list, vouch_list_url
from gossip.host import HostError, PeerEvent, open_host, peer_id_from_public_key, peer_org
from gossip.peers import BLOCKED, KnownPeer
from gossip.sync_messages import SYNC_PROTOCOL, HeadsPage, HeadsRequest, decode_reply, encode_message
from node.daemon import Node, StartupError, run_until_signalled, serve_node
from node.events import Event, decode_salted_entry
from node.keys import create_org_key, create_token, load_org_key
from node.logs import logfmt_fields
from node.setup import init_data_dir
from node.store_manifest import list_present

from vouching import did_key, org_body, revoke_body, vouch_body
from vouching.feed import feed_record
from vouching.recompute import Recompute
from vouching.scoring import TrustEngine

from ..factories import Org, new_did
from .forked_cli import ForkedProcess
from .in_process import ran_a_round, records_of, running
from .telemetry_node import Clock, telemetry_node

pytestmark = pytest.mark.slow


async def test_what_start_up_built_is_kept_out_of_the_collector(tmp_path):
    gc.unfreeze()
    try:
        async with running(tmp_path / "a"):
            assert gc.get_freeze_count() > 0  # full collections no longer walk the replayed engine
    finally:
        gc.unfreeze()


async def test_a_run_stopped_while_it_starts_leaves_its_heap_out_of_the_collector(tmp_path, monkeypatch):
    """Start-up's gc.freeze came only once the node was up: a signal before it left the modules, and all the start
    had built, for every full collection of the shutdown and for the interpreter's exit to walk, over and over
    (1.4-1.9 s of the 2 s at load 5). run_until_signalled freezes the heap as it begins and as it ends."""
    made = init_data_dir(tmp_path, network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    before, during = [[]], []  # (lists: objects the collector tracks)

    def signalled(*args, **kwargs):
        during.append(([], any(o is before[0] for o in gc.get_objects())))
        os.kill(os.getpid(), signal.SIGTERM)  # as the p2p port opens
        return open_host(*args, **kwargs)

    monkeypatch.setattr(node.daemon, "open_host", signalled)
    gc.unfreeze()
    try:
        await run_until_signalled(load_config(made.data_dir))
        (made_then, before_seen), = during
        assert not before_seen  # frozen from the start
        assert not any(o is made_then or o is before[0] for o in gc.get_objects())  # and all of it at the end
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])
async def test_an_api_reachable_from_other_machines_is_said_at_start(tmp_path, caplog, bind):
    with caplog.at_level(logging.WARNING, logger="vouchnet.node"):
        async with running(tmp_path / "a", settings={"api_host": bind}):
            pass
    said = [r.getMessage() for r in caplog.records if "reachable from other machines" in r.getMessage()]
    assert len(said) == (bind == "0.0.0.0")


async def test_an_exposed_api_that_takes_traces_without_the_token_says_so_at_start(tmp_path, caplog):
    """The warning said that writes need api.token, while anyone reaching the API could post spans: first-hand
    evidence, denials included, for any agent."""
    with caplog.at_level(logging.WARNING, logger="vouchnet.node"):
        async with running(tmp_path / "a", settings={"api_host": "0.0.0.0", "traces_need_token": False}):
            pass
    (said,) = [r.getMessage() for r in caplog.records if "reachable from other machines" in r.getMessage()]
    assert said.endswith("(writes need api.token, but for POST /v1/traces: [api] traces_need_token = false lets it "
                         "report behaviour for any agent)")


@pytest.mark.parametrize(("listen", "announce"), [("0.0.0.0", ()), ("127.0.0.1", ()),
                                                  ("0.0.0.0", ("/ip4/192.0.2.7/tcp/4001",))])
async def test_a_node_that_announces_no_address_says_so_at_start(tmp_path, caplog, listen, announce):
    """`vouchnet init`'s default listens on 0.0.0.0 and announces nothing: partners would find no address in its
    org record, silently."""
    with caplog.at_level(logging.WARNING, logger="vouchnet.node"):
        async with running(tmp_path / "a", settings={"listen": (f"/ip4/{listen}/tcp/0",), "announce": announce}):
            pass
    said = [r.getMessage() for r in caplog.records if "announces no address" in r.getMessage()]
    assert len(said) == (listen == "0.0.0.0" and not announce)
    assert all("set [p2p] announce" in message for message in said)
    assert all(message.endswith("it dials public ones and those of its bootstrap peers' kinds: [p2p] dial_private)")
               for message in said)


@pytest.mark.parametrize(("announce", "dial_private", "dialled"), [
    ((), "auto", True),  # a testnet's node, on loopback
    (("/ip4/1.2.3.4/tcp/4001",), "auto", False),  # its org record names a public address only
    ((), "never", False),
])
async def test_a_node_dials_the_loopback_addresses_org_records_name_as_dial_private_and_announce_say(
        tmp_path, announce, dial_private, dialled):
    """The node on loopback dials another org's loopback address, unless its org record names only a public address
    or [p2p] dial_private says never."""
    org = Org()
    async with running(tmp_path / "a", settings={"announce": announce, "dial_private": dial_private}) as a:
        a.replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
        a.replica.accept([org.record("org", org_body("o", "test", ["/ip4/127.0.0.1/tcp/9"]))])
        known = a.known_peers(after=None, limit=10)
    peer = peer_id_from_public_key(bytes(org.key.verify_key))
    assert [p.addrs for p in known] == ([(f"/ip4/127.0.0.1/tcp/9/p2p/{peer}",)] if dialled else [])


async def test_a_vouch_made_at_one_node_is_accepted_at_its_peer(tmp_path):
    async with running(tmp_path / "a") as a:
        async with running(tmp_path / "b", bootstrap=(a.host.listen_addrs[0],), roots=(a.did,)) as b:
            agent = new_did()
            async with httpx.AsyncClient(base_url=a.api_url, headers={"Authorization": f"Bearer {a.token}"}) as api:
                with trio.fail_after(15):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(records_of, b, lambda r: r.kind == "vouch")
                        response = await api.post("/v1/vouches", json={"subject": agent, "weight": 0.9,
                                                                       "basis": "operator"})
                        assert response.status_code == 201
            async with httpx.AsyncClient(base_url=b.api_url) as api:
                answer = (await api.get(f"/v1/records?issuer={a.did}&kind=vouch")).json()
                assert [r["body"]["subject"] for r in answer["records"]] == [agent]


async def test_a_node_whose_only_bootstrap_address_is_a_dns_name_connects_and_replicates(tmp_path):
    """config took /dns4 bootstrap addresses and the host refused to dial them: such a node never found a peer."""
    async with running(tmp_path / "a") as a:
        _, port, _, peer_id = a.host.listen_addrs[0].rsplit("/", 3)
        by_name = f"/dns4/localhost/tcp/{port}/p2p/{peer_id}"
        async with running(tmp_path / "b", bootstrap=(by_name,), roots=(a.did,)) as b:
            assert b.config.bootstrap == (by_name,)
            agent = new_did()
            async with httpx.AsyncClient(base_url=a.api_url, headers={"Authorization": f"Bearer {a.token}"}) as api:
                with trio.fail_after(15):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(records_of, b, lambda r: r.kind == "vouch" and r.body.subject == agent)
                        response = await api.post("/v1/vouches", json={"subject": agent, "weight": 0.9,
                                                                       "basis": "operator"})
                        assert response.status_code == 201
            assert a.host.peer_id in b.host.connected_peers()


async def test_a_node_refuses_events_that_name_its_own_org_as_the_agent(tmp_path):
    """`vouchnet status` shows the org's did, which a service took for its agent's: the node stored the events and
    signed digests of its own org as an agent."""
    async with running(tmp_path / "a") as a:
        async with httpx.AsyncClient(base_url=a.api_url, headers={"Authorization": f"Bearer {a.token}"}) as api:
            event = {"agent": a.did, "ts": int(time.time() * 1000), "category": "tool", "name": "search",
                     "outcome": "ok"}
            response = await api.post("/v1/events", json={"events": [event]})
    assert response.status_code == 422
    assert response.json()["rejected"] == [
        {"index": 0, "detail": f"agent: {a.did} is an org (it signed records this node holds), not an agent"}]


async def test_a_digest_issued_at_one_node_changes_the_score_at_another(tmp_path):
    """Issue 4: behaviour reported at A becomes A's signed digest, which moves the agent's score at B."""
    async with running(tmp_path / "a") as a:
        async with running(tmp_path / "b", bootstrap=(a.host.listen_addrs[0],), roots=(a.did,)) as b:
            agent = new_did()
            async with httpx.AsyncClient(base_url=b.api_url) as api_b:
                before = (await api_b.get(f"/v1/agents/{agent}/score")).json()
                now = int(time.time() * 1000)
                events = [{"agent": agent, "ts": now, "category": "tool", "name": "shell", "outcome": "denied",
                           "high_risk": True} for _ in range(20)]
                async with httpx.AsyncClient(base_url=a.api_url,
                                             headers={"Authorization": f"Bearer {a.token}"}) as api_a:
                    with trio.fail_after(20):
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(records_of, b, lambda r: r.kind == "digest" and r.iss == a.did)
                            response = await api_a.post("/v1/events", json={"events": events})
                            assert response.json()["accepted"] == 20
                after = (await api_b.get(f"/v1/agents/{agent}/score")).json()
            assert after["score"] < before["score"]
            assert any(o["org"] == a.did for o in after["explanation"]["orgs"])


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    children = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry))
        except OSError:  # it ended meanwhile
            pass
    return children


def _listening() -> dict[int, int]:
    """inode: port of each IPv4 socket listening on this machine (/proc/net/tcp, where state 0A is LISTEN)."""
    rows = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
    return {int(row[9]): int(row[1].split(":")[1], 16) for row in rows if row[3] == "0A"}


def _stopped_after_sigterm(process: ForkedProcess) -> tuple[float, dict[str, str]]:
    """SIGTERM to a `vouchnet run`: the seconds until its `stopped` line was logged (its shutdown done: every service
    ended, every store closed), and that line's fields. The interpreter's exit comes after, and is none of the
    node's: tearing its modules down took 0.35-0.47 s beside two CPU hogs."""
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    stopped = process.logged("msg=stopped", timeout=10)
    took = time.monotonic() - start
    if stopped is None:
        process.kill()
        pytest.fail(f"the node exited with {process.wait()} and no `stopped` line")
    return took, logfmt_fields(stopped)


@pytest.mark.parametrize("verify_processes", [0, 1])
def test_sigterm_shuts_the_node_down_within_two_seconds(tmp_path, forked_cli, verify_processes):
    """On ports the OS picks, read from the node's log: a port found free and handed to the node was taken by
    another process meanwhile on a busy machine."""
    made = init_data_dir(tmp_path / "a", network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config = made.data_dir / "config.toml"
    config.write_text(config.read_text().replace("verify_processes = 0", f"verify_processes = {verify_processes}"))
    process = forked_cli.spawn(["run", "--dir", str(made.data_dir)], tmp_path / "run.log")
    try:
        up = process.logged("node running", timeout=120)  # the node logs one line when every service is up
        if up is None:
            process.kill()
            pytest.fail(f"the node exited with {process.wait()} before it was running")
        running = logfmt_fields(up)
        ports = {int(running["api"].rsplit(":", 1)[1]), int(running["listen"].split("/")[4])}
        listening = {inode for inode, port in _listening().items() if port in ports}
        assert len(listening) == 2
        # (with workers, multiprocessing's resource tracker is a child too; it ends once the node has)
        workers = [pid for pid in _children(process.pid) if b"spawn_main" in open(f"/proc/{pid}/cmdline", "rb").read()]
        assert len(workers) == verify_processes
        took, stopped = _stopped_after_sigterm(process)
        assert took < 2.0
        assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]  # stopped by the node
        # Its last line says the shutdown completed, and how long it took: an operator's proof nothing was cut short.
        assert 0 <= float(stopped["seconds"]) < 2.0
        assert process.wait(timeout=10) == 0
        assert "msg=stopped" in (tmp_path / "run.log").read_text().splitlines()[-1]
    finally:
        if process.poll() is None:
            process.kill()
    # Nothing is left listening: none of the node's sockets (by inode: another process may take a port once freed).
    assert listening.isdisjoint(_listening())
    assert os.path.exists(made.data_dir / "records.ledger")
    assert not os.path.exists(made.data_dir / "api.url")  # the address it bound, written once it listened
    written = [f for f in made.data_dir.iterdir() if f.name not in ("config.toml", "org.key", "api.token")]  # (init)
    assert {f.name for f in written} >= {"records.ledger", "audit.ledger", "witness.sqlite", "credentials.db"}
    assert [f.name for f in written if f.is_file() and f.stat().st_mode & 0o077] == []  # the org's alone


def test_a_signal_while_the_node_starts_stops_it_within_two_seconds(tmp_path, forked_cli):
    """SIGTERM was read only once every service was up: a node waiting at start for its peers (up to
    startup_sync_seconds), or replaying a large store, ran on until then, and only then stopped."""
    absent = peer_id_from_public_key(bytes(SigningKey.generate().verify_key))
    with socket.create_server(("127.0.0.1", 0)) as peer:  # its bootstrap peer: a port that hangs up on each dial
        made = init_data_dir(tmp_path / "a", network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0",
                             bootstrap=(f"/ip4/127.0.0.1/tcp/{peer.getsockname()[1]}/p2p/{absent}",))
        config = made.data_dir / "config.toml"
        config.write_text(config.read_text().replace("startup_sync_seconds = 10.0", "startup_sync_seconds = 60.0"))
        process = forked_cli.spawn(["run", "--dir", str(made.data_dir)], tmp_path / "run.log")
        try:
            # The node dials its peers only once it waits for its start-up sync; listening comes before opening
            # its stores, which on a loaded machine took seconds, with no signal read meanwhile.
            peer.settimeout(60)
            peer.accept()[0].close()
            took, _ = _stopped_after_sigterm(process)
            assert took < 2.0
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.parametrize("taken", ["api", "p2p"])
def test_a_taken_port_stops_the_node_with_one_clear_line(tmp_path, forked_cli, taken):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        init_data_dir(tmp_path, network="test", api=f"127.0.0.1:{port if taken == 'api' else 0}",
                      listen=(f"/ip4/127.0.0.1/tcp/{port if taken == 'p2p' else 0}",))
        done = forked_cli.run(["run", "--dir", str(tmp_path)])
    where = f"127.0.0.1:{port}" if taken == "api" else f"/ip4/127.0.0.1/tcp/{port}"
    setting = "[api] bind" if taken == "api" else "[p2p] listen"
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"vouchnet run: {taken}: cannot listen on {where}: Address already in " \
                                           f"use: stop what uses it, or change {setting} in {tmp_path / 'config.toml'}"
    assert "Traceback" not in done.stderr


def test_a_taken_api_port_stops_the_node_before_its_catch_up_and_before_it_signs(tmp_path, forked_cli):
    """The API bound last: with its port taken, a node whose peers were down waited its whole catch-up
    (startup_sync_seconds), then signed its org record, and only then stopped."""
    absent = peer_id_from_public_key(bytes(SigningKey.generate().verify_key))
    with socket.create_server(("127.0.0.1", 0)) as busy, socket.create_server(("127.0.0.1", 0)) as peer:
        made = init_data_dir(tmp_path, network="test", listen=("/ip4/127.0.0.1/tcp/0",),
                             api=f"127.0.0.1:{busy.getsockname()[1]}",
                             bootstrap=(f"/ip4/127.0.0.1/tcp/{peer.getsockname()[1]}/p2p/{absent}",))
        config = made.data_dir / "config.toml"
        config.write_text(config.read_text().replace("startup_sync_seconds = 10.0", "startup_sync_seconds = 600.0"))
        done = forked_cli.run(["run", "--dir", str(tmp_path)])
    assert done.returncode == 1  # (within the run's 60 s bound: the catch-up alone would wait 600)
    assert "api: cannot listen on" in done.stderr.splitlines()[-1]
    assert "signing without it" not in done.stderr
    with RecordStore.open(made.data_dir) as store:
        assert store.size == 0


@pytest.mark.parametrize("start", ["done", "stopped"])
async def test_a_client_connecting_during_the_catch_up_is_answered_once_the_node_serves_or_dropped_as_it_stops(
        tmp_path, monkeypatch, start):
    """The API's port is bound before the catch-up sync (its peers down here): a request sent meanwhile waits, and is
    answered once the node serves; a start stopped before it serves (a signal, or a StartupError after the bind)
    closes the port, and the request is reset at once (NodeClient says the node dropped it), not left to its
    client's timeout. With port 0, api.url names the port from the bind: written once the node served, the commands
    said meanwhile that the node was not running."""
    absent = peer_id_from_public_key(bytes(SigningKey.generate().verify_key))
    bound = trio.Event()
    ports: list[int] = []
    caught_up_once_bound: list[bool] = []
    urls_once_bound: list[str | None] = []
    open_tcp_listeners, caught_up = trio.open_tcp_listeners, node.daemon._caught_up

    async def listening(*args, **kwargs):
        listeners = await open_tcp_listeners(*args, **kwargs)
        ports.append(listeners[0].socket.getsockname()[1])
        bound.set()
        return listeners

    async def catching_up(*args, **kwargs):
        caught_up_once_bound.append(bound.is_set())
        urls_once_bound.append(read_api_url(tmp_path))  # where `vouchnet status --dir` finds it meanwhile
        return await caught_up(*args, **kwargs)

    monkeypatch.setattr(trio, "open_tcp_listeners", listening)
    monkeypatch.setattr(node.daemon, "_caught_up", catching_up)
    with socket.create_server(("127.0.0.1", 0)) as peer:
        made = init_data_dir(tmp_path, network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0",
                             bootstrap=(f"/ip4/127.0.0.1/tcp/{peer.getsockname()[1]}/p2p/{absent}",))
        config = replace(load_config(made.data_dir), startup_sync_seconds=1.0 if start == "done" else 600.0)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_node, config)
                await bound.wait()
                with socket.create_connection(("127.0.0.1", ports[0]), timeout=30) as client:
                    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    if start == "stopped":
                        nursery.cancel_scope.cancel()
                        with pytest.raises(ConnectionResetError):
                            await trio.to_thread.run_sync(client.recv, 100)
                    else:
                        assert (await trio.to_thread.run_sync(client.recv, 100)).startswith(b"HTTP/1.1 200 ")
                        nursery.cancel_scope.cancel()
    assert caught_up_once_bound == [True]
    assert urls_once_bound == [f"http://127.0.0.1:{ports[0]}"] and read_api_url(tmp_path) is None
    with socket.create_server(("127.0.0.1", ports[0])):  # (the port closed: free again)
        pass


@pytest.mark.parametrize(("file", "complaint"), [
    ("credentials.db", "credentials: {path}: not a credential registry"),
    ("records.ledger", "records: {path}: not a ledger"),
    ("records.index", "records: {path}: not a record index"),
    ("audit.ledger", "telemetry: {path}: not a ledger"),
    ("digests.db", "telemetry: {path}: not a digest state file"),
    ("idempotency.db", "telemetry: {path}: not an idempotency store"),
    ("witness.sqlite", "witness: {path}: not a witness state file"),
])
def test_a_damaged_data_file_stops_the_node_with_one_clear_line(tmp_path, forked_cli, file, complaint):
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    (tmp_path / file).write_bytes(b"\x00damaged" * 512)
    done = forked_cli.run(["run", "--dir", str(tmp_path)])
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("vouchnet run: " + complaint.format(path=tmp_path / file))
    assert "Traceback" not in done.stderr


_STORES = {"digests.db": node.digests.FORMAT, "idempotency.db": node.idempotency.FORMAT,
           "credentials.db": node.credential_registry.FORMAT, "witness.sqlite": ledger.witness.FORMAT}


@pytest.mark.parametrize("file", _STORES)
def test_a_damaged_store_s_refusal_leads_to_a_start_with_a_new_one(tmp_path, forked_cli, file):
    """Found by stop 45's operator walk: a damaged store was to be moved aside "to start with a new one", and the
    start then refused it missing, as stores.list lists it: the refusal says the start will say how to accept that,
    and it does."""
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    (tmp_path / file).write_bytes(b"\x00damaged" * 512)
    list_present(tmp_path)  # as the node lists a store it made
    done = forked_cli.run(["run", "--dir", str(tmp_path)])
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].endswith(
        "restore this node's own file from a backup, or move it aside to start with a new one (the start then says "
        "what that loses, and how to accept it)")
    (tmp_path / file).rename(tmp_path / f"{file}.damaged")
    done = forked_cli.run(["run", "--dir", str(tmp_path)])
    assert done.returncode == 1
    assert f"run `vouchnet stores accept-loss {file} --dir {tmp_path}`" in done.stderr.splitlines()[-1]


@pytest.mark.parametrize("file", _STORES)
@pytest.mark.parametrize("held", ["a newer format", "another kind"])
def test_a_data_file_of_another_kind_or_a_newer_format_stops_the_node_and_is_left_as_it_was(tmp_path, forked_cli,
                                                                                             file, held):
    """A later vouchnet's file (a downgrade), or one of another kind copied in its place, was taken as it was: tables
    were added to it, and the node ran on what it did not understand. A witness.sqlite was refused only once gossip
    and sync had started, taking peers' records into records.ledger."""
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    fmt = _STORES[file]
    other = next(f for f in _STORES.values() if f is not fmt)  # a file of the kind next in the list
    marks = (fmt.application_id, fmt.version + 1) if held == "a newer format" else (other.application_id, other.version)
    with closing(sqlite3.connect(tmp_path / file)) as db:
        db.execute(f"PRAGMA application_id = {marks[0]}")
        db.execute(f"PRAGMA user_version = {marks[1]}")
        db.execute(f"CREATE TABLE {sorted(other.tables)[0]} (x)")
        db.commit()
    before = (tmp_path / file).read_bytes()
    done = forked_cli.run(["run", "--dir", str(tmp_path)], timeout=30)
    assert done.returncode == 1
    complaint = (f"{fmt.kind} in format version {fmt.version + 1}, newer than this vouchnet reads" if held ==
                 "a newer format" else f"not {fmt.kind}: an SQLite database with application_id {marks[0]:#x}")
    assert f"{tmp_path / file}: {complaint}" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert (tmp_path / file).read_bytes() == before
    # refused before anything else was opened: records and peers' records are taken only by a node that can start
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["api.token", "config.toml", file, "node.lock",
                                                                 "org.key"])


@pytest.mark.parametrize("bad", ["records.ledger", "audit.ledger"])
def test_a_store_from_before_formats_is_not_marked_by_a_start_refused_for_another_file(tmp_path, forked_cli, bad):
    """The marks a start adds to a file from before them wait until every file has been found readable: the stores
    were marked, then the start refused for a damaged ledger (a file changed by a start that did not happen)."""
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    with closing(sqlite3.connect(tmp_path / "digests.db")) as db:
        db.executescript(node.digests._SCHEMA)  # as a node before formats made it
    before = (tmp_path / "digests.db").read_bytes()
    (tmp_path / bad).write_bytes(b"\x00damaged" * 512)
    done = forked_cli.run(["run", "--dir", str(tmp_path)], timeout=30)
    assert done.returncode == 1 and f"{tmp_path / bad}: not a ledger" in done.stderr.splitlines()[-1]
    assert (tmp_path / "digests.db").read_bytes() == before


def test_a_store_from_before_formats_is_not_marked_by_a_start_refused_for_its_saved_checkpoint(tmp_path, forked_cli):
    """The stores were opened (and a store from before formats marked) before the saved checkpoint was read."""
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    with closing(sqlite3.connect(tmp_path / "digests.db")) as db:
        db.executescript(node.digests._SCHEMA)  # as a node before formats made it
    before = (tmp_path / "digests.db").read_bytes()
    (tmp_path / "checkpoint.note").write_bytes(b"damaged\n")
    done = forked_cli.run(["run", "--dir", str(tmp_path)], timeout=30)
    assert done.returncode == 1 and "checkpoint.note: not a checkpoint our key signed" in done.stderr.splitlines()[-1]
    assert (tmp_path / "digests.db").read_bytes() == before


@pytest.mark.parametrize("file", ["node.lock", "records.ledger"])
def test_a_data_file_the_file_system_refuses_stops_the_node_with_one_clear_line(tmp_path, forked_cli, file):
    """As a read-only disk would: the OSError came out of the node's nursery as a traceback."""
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    (tmp_path / file).mkdir()
    done = forked_cli.run(["run", "--dir", str(tmp_path)])
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"vouchnet run: {tmp_path / file}: Is a directory"
    assert "Traceback" not in done.stderr


async def test_damaged_raw_counts_stop_the_node_with_a_start_up_error_naming_them(tmp_path):
    """The node's own DP digests are replayed by their raw counts at start (node.trust.TrustService.replay): a
    damaged row stopped the start with a KeyError out of the trust engine."""
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    clock = Clock()
    with telemetry_node(tmp_path, key=load_org_key(tmp_path / "org.key"), clock=clock, dp_epsilon=1.0) as node:
        node.ingestor.submit_json(json.dumps({"events": [
            {"agent": new_did(), "ts": clock.now, "category": "tool", "name": "n", "outcome": "ok"}]}).encode())
        (digest,) = node.digester.close_due(clock.now + node.epoch_ms)
    with sqlite3.connect(tmp_path / "digests.db") as db:
        db.execute("UPDATE raw_counts SET outcomes = '1,0'")
    with pytest.raises(StartupError, match=f"telemetry: digests.db: the raw counts of {digest.body.agent} .* damaged"):
        await serve_node(load_config(tmp_path))


@pytest.mark.parametrize(("damage", "complaint"), [
    (lambda d: os.chmod(d / "org.key", 0o644), "org.key: permissions 0644 are too open; run `chmod 600 {d}/org.key`"),
    (lambda d: os.unlink(d / "api.token"), "api.token: missing; restore it, or make a new one: `(umask 077 && "
     "python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > {d}/api.token)` (a running node reads it again "
     "when it changes; its clients need the new one)"),
    (lambda d: (os.unlink(d / "org.key"), os.mkdir(d / "org.key", 0o700)),
     "org.key: not a regular file (a directory, a pipe or a device); put the file itself there"),
])
def test_an_unusable_key_or_token_file_stops_the_node_with_one_clear_line(tmp_path, forked_cli, damage, complaint):
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    damage(tmp_path)
    done = forked_cli.run(["run", "--dir", str(tmp_path)])
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == f"vouchnet run: {tmp_path}/" + complaint.format(d=tmp_path)
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name, mode", [("", 0o775), ("config.toml", 0o666)])
def test_a_data_directory_or_config_others_can_write_stops_the_node_with_one_clear_line(tmp_path, forked_cli, name,
                                                                                        mode):
    """As ssh's StrictModes: whoever can write them can change the roots the node trusts, or swap its key."""
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    path = tmp_path / name if name else tmp_path
    os.chmod(path, mode)
    done = forked_cli.run(["run", "--dir", str(tmp_path)])
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (f"vouchnet run: {path}: writable by group or others (permissions "
                                            f"{mode:04o}), so another user could change what the node trusts; run "
                                            f"`chmod go-w {path}`")
    assert "Traceback" not in done.stderr


def test_a_data_directory_others_can_write_is_refused_before_the_node_logs_or_raises_its_open_files_limit(tmp_path):
    """The refusal is the run's one line: before node.commands.node_code, a start under a hard open-files limit below
    the node's need logged the limit's warning first, for a node that was never going to start."""
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    os.chmod(tmp_path, 0o775)
    done = subprocess.run([sys.executable, "-m", "node.cli", "run", "--dir", str(tmp_path)], capture_output=True,
                          text=True, timeout=60,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (512, 1024)))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"vouchnet run: {tmp_path}: writable by group or others (permissions 0775), "
                                        "so another user could change what the node trusts; run "
                                        f"`chmod go-w {tmp_path}`"]


async def test_score_and_orgs_commands_explain_in_words(tmp_path, capsys):
    from functools import partial

    from node import cli

    async with running(tmp_path / "a") as a:
        agent = new_did()
        code = await trio.to_thread.run_sync(partial(cli.main, ["score", agent, "--api", a.api_url]))
        out = capsys.readouterr().out
        assert code == 0 and out.startswith(f"{agent}: ") and "(untrusted)" in out and "No behaviour evidence" in out
        code = await trio.to_thread.run_sync(partial(cli.main, ["orgs", "--explain", "--api", a.api_url]))
        out = capsys.readouterr().out
        assert code == 0 and a.did in out and "this node's own org" in out


@pytest.mark.parametrize("need_token", [False, True])
async def test_otlp_export_needs_the_token_only_when_configured(tmp_path, need_token):
    async with running(tmp_path / "a", settings={"traces_need_token": need_token}) as a:
        async with httpx.AsyncClient(base_url=a.api_url) as api:
            response = await api.post("/v1/traces", content=b"", headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == (401 if need_token else 200)


async def test_a_token_rotated_while_the_node_runs_replaces_the_old_one(tmp_path):
    """The node read api.token only as it started: a token rotated after a leak still wrote until a restart."""
    async with running(tmp_path / "a") as a:
        token_path = tmp_path / "a" / "api.token"
        old = token_path.read_text().strip()
        token_path.unlink()
        new = create_token(token_path)  # as the `(umask 077 && ...) > api.token` that load_token's error gives
        vouch = {"subject": new_did(), "weight": 0.5, "basis": "operator"}
        async with httpx.AsyncClient(base_url=a.api_url) as api:
            with_old = await api.post("/v1/vouches", json=vouch, headers={"Authorization": f"Bearer {old}"})
            with_new = await api.post("/v1/vouches", json=vouch, headers={"Authorization": f"Bearer {new}"})
        assert old not in repr(a) and new not in repr(a)
    assert (with_old.status_code, with_new.status_code) == (401, 201)


async def test_a_node_whose_token_file_is_gone_takes_no_write_until_it_is_back(tmp_path):
    async with running(tmp_path / "a") as a:
        token_path = tmp_path / "a" / "api.token"
        token = token_path.read_text().strip()
        vouch = {"subject": new_did(), "weight": 0.5, "basis": "operator"}
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=a.api_url) as api:
            token_path.rename(tmp_path / "moved")
            gone = await api.post("/v1/vouches", json=vouch, headers=headers)
            shown = (await api.get("/v1/node")).json()["takes_writes"], a.metrics.value("api_writes_refused")
            (tmp_path / "moved").rename(token_path)
            back = await api.post("/v1/vouches", json=vouch, headers=headers)
            shown_back = (await api.get("/v1/node")).json()["takes_writes"], a.metrics.value("api_writes_refused")
    assert (gone.status_code, gone.json()["error"], back.status_code) == (503, "no_token", 201)
    assert (shown, shown_back) == ((False, 1), (True, 0))  # for an operator's alert
    assert "api.token" in gone.json()["detail"] and token not in gone.text


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a file away")
def test_a_node_run_as_root_refuses_an_org_key_another_user_owns(tmp_path, forked_cli):
    """That user could put any key there, and the node would sign as it (node.strict_modes); `sudo vouchnet vouch
    --dir` on a service user's directory still works: only `vouchnet run` and the commands that sign check."""
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    key = tmp_path / "org.key"
    os.chown(key, 12345, -1)
    done = forked_cli.run(["run", "--dir", str(tmp_path)])
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (f"vouchnet run: {key}: owned by uid 12345, not by root (uid 0) "
                                            "vouchnet runs as, so that user could replace it; run vouchnet as uid "
                                            f"12345, or, if root is to run the node, `chown root {key}`")


async def test_first_hand_evidence_survives_a_restart(tmp_path):
    """Own observations come back from the audit log (open epoch) and own digests (closed epochs)."""
    agent = new_did()
    now = int(time.time() * 1000)
    events = [{"agent": agent, "ts": now, "category": "tool", "name": "search", "outcome": "ok"} for _ in range(40)]
    async with running(tmp_path / "a") as a:
        async with httpx.AsyncClient(base_url=a.api_url, headers={"Authorization": f"Bearer {a.token}"}) as api:
            cold = (await api.get(f"/v1/agents/{new_did()}/score")).json()["score"]
            assert (await api.post("/v1/events", json={"events": events})).json()["accepted"] == 40
            before = (await api.get(f"/v1/agents/{agent}/score")).json()["score"]
    config = replace(load_config(tmp_path / "a"), checkpoint_interval=0.2, epoch_seconds=1.0)
    async with trio.open_nursery() as nursery:
        again: Node = await nursery.start(serve_node, config)
        async with httpx.AsyncClient(base_url=again.api_url) as api:
            after = (await api.get(f"/v1/agents/{agent}/score")).json()["score"]
        nursery.cancel_scope.cancel()
    assert before > cold and abs(after - before) <= 1


async def test_an_operator_block_cuts_a_peer_off_until_it_is_lifted(tmp_path):
    from functools import partial

    from node.client import NodeClient

    async with running(tmp_path / "a") as a:
        events = a.host.peer_events()
        async with running(tmp_path / "b", bootstrap=(a.host.listen_addrs[0],), roots=(a.did,)) as b:
            with trio.fail_after(15), NodeClient(b.api_url, b.token) as client:
                assert await events.receive() == PeerEvent(b.host.peer_id, connected=True)
                blocked = await trio.to_thread.run_sync(partial(client.block_peers, [a.host.peer_id]))
                assert blocked == [a.host.peer_id]
                assert await events.receive() == PeerEvent(b.host.peer_id, connected=False)
                assert b.host.connected_peers() == []
                await trio.to_thread.run_sync(partial(client.block_peers, []))
                assert await events.receive() == PeerEvent(b.host.peer_id, connected=True)


async def test_a_blocked_peer_shows_blocked_in_get_peers_from_the_moment_it_is_blocked(tmp_path):
    """GET /v1/peers of a real node: it used to show the peer it blocked as an unstable connection ("the connection
    closed after 0.1 s, ...", a failure) until its next dial, seconds later, refused as blocked, and dialled it on."""
    async with running(tmp_path / "a") as a:
        events = a.host.peer_events()
        async with running(tmp_path / "b", bootstrap=(a.host.listen_addrs[0],), roots=(a.did,)) as b:
            async with httpx.AsyncClient(base_url=b.api_url, headers={"Authorization": f"Bearer {b.token}"}) as api:

                async def shown() -> tuple[bool, str | None, int | None]:
                    [peer] = (await api.get("/v1/peers")).json()["known"]
                    return peer["connected"], peer["last_error"], peer["next_dial_at"]

                with trio.fail_after(15):
                    assert await events.receive() == PeerEvent(b.host.peer_id, connected=True)
                    b_events = b.host.peer_events()
                    await api.put("/v1/peers/blocked", json={"peers": [a.host.peer_id]})
                    assert (await shown())[1:] == (BLOCKED, None)
                    assert await b_events.receive() == PeerEvent(a.host.peer_id, connected=False)
                    await trio.testing.wait_all_tasks_blocked()  # (b's peer manager told of it too)
                    assert await shown() == (False, BLOCKED, None)
                    await api.put("/v1/peers/blocked", json={"peers": []})
                    assert (await shown())[1] is None
                    assert await b_events.receive() == PeerEvent(a.host.peer_id, connected=True)
                    assert await shown() == (True, None, None)


def _free_port_outside_the_ephemeral_range() -> int:
    """A port free now that no connection takes meanwhile as its own end: one of the ephemeral range could be (a dial
    to it even, whose source port the kernel picks from that range, connects to itself), and then not listened on."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.Random().sample(range(10_000, low), 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


async def test_a_bootstrap_peer_that_is_down_shows_unreachable_with_its_error_until_it_starts(tmp_path, monkeypatch):
    """GET /v1/peers of a real node: its bootstrap peer down (nothing listens at its port), then up."""
    key = SigningKey.generate()
    peer = peer_id_from_public_key(bytes(key.verify_key))
    port = _free_port_outside_the_ephemeral_range()
    addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"
    async with running(tmp_path / "b", bootstrap=(addr,), settings={"startup_sync_seconds": 0.1}) as b:
        failed = trio.Event()
        connect = b.host.connect

        async def dial(address: str) -> str:
            try:
                return await connect(address)
            except HostError:
                failed.set()  # (the manager records the failure before it next waits)
                raise

        monkeypatch.setattr(b.host, "connect", dial)
        async with httpx.AsyncClient(base_url=b.api_url) as api:
            with trio.fail_after(30):
                [down] = (await api.get("/v1/peers")).json()["known"]
                if down["failures"] == 0:  # not dialled yet
                    await failed.wait()
                    [down] = (await api.get("/v1/peers")).json()["known"]
            assert (down["peer_id"], down["org"], down["source"], down["connected"]) == (
                peer, peer_org(peer), "bootstrap", False)
            assert down["failures"] >= 1 and down["last_error"].startswith(f"dial {addr}: ")
            assert down["next_dial_at"] > 0
            events = b.host.peer_events()
            async with open_host(bytes(key), [f"/ip4/127.0.0.1/tcp/{port}"]):
                with trio.fail_after(90):  # its backoff: a minute at most
                    while (await events.receive()) != PeerEvent(peer, connected=True):
                        pass
                answer = (await api.get("/v1/peers")).json()
    assert [p["peer_id"] for p in answer["peers"]] == [peer]
    [up] = answer["known"]
    assert (up["connected"], up["next_dial_at"]) == (True, None)


class _LeastJitter(random.Random):
    """Jitter at its least, so that a test knows when a failed peer is dialled again (DialSchedule.failed)."""

    def uniform(self, a: float, b: float) -> float:
        return a


async def test_a_start_whose_only_bootstrap_peer_refuses_says_unreachable_naming_the_peer_and_its_error(
        tmp_path, caplog, monkeypatch):
    """Nothing listens at the bootstrap address: before, the start waited the whole of startup_sync_seconds and said
    only "timed_out" (no peer completed a round), as for a peer slow to answer; now "unreachable", and its WARNING
    names the peer and why its last dial failed. It waits out the backoff dials that fall inside startup_sync_seconds
    (the peer may be starting up: the next test), so ends at most then: here the dials ~0.5 s and ~1.5 s after the
    first (the jitter held at its least, so that the last dial inside the 2.5 s is not one still under way as they
    end, which would rightly say "timed_out"); the next would be due at ~3.5 s."""
    monkeypatch.setattr(gossip.peers, "DialSchedule", functools.partial(gossip.peers.DialSchedule, rng=_LeastJitter()))
    peer = peer_id_from_public_key(bytes(SigningKey.generate().verify_key))
    addr = f"/ip4/127.0.0.1/tcp/{_free_port_outside_the_ephemeral_range()}/p2p/{peer}"
    with trio.fail_after(30), caplog.at_level(logging.WARNING, logger="vouchnet.node"):
        async with running(tmp_path / "c", bootstrap=(addr,), settings={"startup_sync_seconds": 2.5}) as c:
            async with httpx.AsyncClient(base_url=c.api_url) as api:
                assert (await api.get("/v1/node")).json()["startup_sync"] == "unreachable"
            assert c.metrics.value("startup_sync_timed_out") == 1  # (an alert on it fires for either)
    [said] = [message for r in caplog.records
              if (message := r.getMessage()).startswith("no peer it dials could be connected")]
    [waited] = re.findall(r"it stopped waiting after ([0-9.]+) s of the 2.5 s it may wait \(\[p2p\] "
                          r"startup_sync_seconds\), as each one's last dial failed", said)
    assert 1.5 <= float(waited) <= 2.6
    assert f"({peer} (bootstrap): dial {addr}: " in said and said.endswith("; signing without it (if this data "
                                                                          "directory was restored from an older copy, "
                                                                          "the org may sign twice at one seq)")


async def test_a_start_whose_only_bootstrap_peer_does_not_speak_the_sync_protocol_says_unreachable_at_once(
        tmp_path, caplog):
    """A host that serves no /vouchnet/sync/1 (a gossip-only node, a js-libp2p one) at the bootstrap address: before,
    the node connected to it, counted it as within reach, waited all of startup_sync_seconds and said `timed_out`;
    now `unreachable` as soon as it refused the protocol, its WARNING naming it, why, and how long the wait took."""
    with trio.fail_after(60), caplog.at_level(logging.WARNING, logger="vouchnet.node"):
        async with open_host(bytes(SigningKey.generate()), ["/ip4/127.0.0.1/tcp/0"]) as bare:
            async with running(tmp_path / "c", bootstrap=(bare.listen_addrs[0],),
                               settings={"startup_sync_seconds": 30.0}) as c:
                assert c.startup_sync == "unreachable"
                assert c.host.connected_peers() == [bare.peer_id]  # (connected all along)
    [said] = [message for r in caplog.records
              if (message := r.getMessage()).startswith("no peer it dials could be connected")]
    [waited] = re.findall(r"it stopped waiting after ([0-9.]+) s of the 30 s it may wait", said)
    assert float(waited) < 30
    assert (f"({bare.peer_id} (bootstrap): connected, but the peer does not speak /vouchnet/sync/1 (it refused the "
            "protocol") in said


def test_an_unreachable_catch_up_names_the_first_peers_and_counts_the_rest():
    """A node may dial many peers (orgs' `org` records): the WARNING stays one readable line."""
    peers = tuple(KnownPeer(f"12D3KooW{i}", "org_record", (), False, 1, f"dial {i}: connection refused", 30.0)
                  for i in range(node.daemon.NAMED_UNREACHABLE + 2))
    why = node.daemon.CatchUp("unreachable", unreachable=peers).why(10)
    assert why.endswith("(12D3KooW0 (org_record): dial 0: connection refused; "
                        + "; ".join(f"12D3KooW{i} (org_record): dial {i}: connection refused" for i in range(1, 5))
                        + "; and 2 more: GET /v1/peers)")


async def test_a_bootstrap_peer_that_starts_while_the_start_up_sync_waits_still_ends_it(tmp_path, caplog):
    """A refused dial is not the end of the wait: the peer is dialled again on its backoff (a second, two, four...)
    while startup_sync_seconds last, and a node started together with its bootstrap peer catches up with it."""
    (tmp_path / "d").mkdir()
    d_key = create_org_key(tmp_path / "d" / "org.key")
    d_listen = f"/ip4/127.0.0.1/tcp/{_free_port_outside_the_ephemeral_range()}"
    down = f"{d_listen}/p2p/{peer_id_from_public_key(bytes(d_key.verify_key))}"
    refused = trio.Event()

    class FirstRefusal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("peer ") and "unreachable" in record.getMessage():
                refused.set()

    handler = FirstRefusal()
    logging.getLogger("gossip.peers").addHandler(handler)
    try:
        with trio.fail_after(60), caplog.at_level(logging.INFO, logger="gossip.peers"):
            made = init_data_dir(tmp_path / "c", network="test", listen=["/ip4/127.0.0.1/tcp/0"], api="127.0.0.1:0",
                                 bootstrap=(down,))
            c_config = replace(load_config(made.data_dir), startup_sync_seconds=30.0)
            async with trio.open_nursery() as nursery:
                started, c = trio.Event(), []
                nursery.start_soon(_serve_into, c_config, c, started)
                await refused.wait()  # (c waits, dialling d on its backoff)
                async with running(tmp_path / "d", listen=(d_listen,)):
                    await started.wait()
                    assert c[0].startup_sync == "done"  # a new org: d's heads name none of its keys
                nursery.cancel_scope.cancel()
    finally:
        logging.getLogger("gossip.peers").removeHandler(handler)


async def test_a_peer_that_opens_a_sync_stream_while_the_node_starts_is_served_once_its_sync_runs(
        tmp_path, monkeypatch):
    """The node listens before its sync service runs (its trust engine replays the store first: seconds for a large
    one), and a peer redialling it opens its sync stream at once: it was refused, and the peer's host remembered the
    refusal for the connection, leaving the node out of the peer's syncs until it closed; now it is answered."""
    replaying, replayed = trio.Event(), trio.Event()
    load_snapshot = node.trust.TrustService.load_snapshot

    async def held(self) -> None:  # (a step between the host listening and the sync service running)
        replaying.set()
        await replayed.wait()
        await load_snapshot(self)

    monkeypatch.setattr(node.trust.TrustService, "load_snapshot", held)
    listen = f"/ip4/127.0.0.1/tcp/{_free_port_outside_the_ephemeral_range()}"
    made = init_data_dir(tmp_path / "c", network="test", listen=[listen], api="127.0.0.1:0")
    c = peer_id_from_public_key(bytes(load_org_key(made.data_dir / "org.key").verify_key))
    with trio.fail_after(60):
        async with open_host(bytes(SigningKey.generate()), ["/ip4/127.0.0.1/tcp/0"]) as peer, \
                trio.open_nursery() as nursery:
            nursery.start_soon(serve_node, load_config(made.data_dir))
            await replaying.wait()
            await peer.connect(f"{listen}/p2p/{c}")
            async with await peer.open_stream(c, SYNC_PROTOCOL) as stream:
                await stream.write_frame(encode_message(HeadsRequest("", 100, "test")))
                replayed.set()
                assert isinstance(decode_reply(await stream.read_frame(max_size=1 << 20)), HeadsPage)
            assert not peer.refused(c, SYNC_PROTOCOL)
            nursery.cancel_scope.cancel()


async def _serve_into(config, nodes: list[Node], started: trio.Event) -> None:
    """serve_node(config) until cancelled, the node appended to `nodes` and `started` set once it started."""
    async with trio.open_nursery() as nursery:
        nodes.append(await nursery.start(serve_node, config))
        started.set()


async def test_how_the_start_up_sync_went_shows_in_get_node_and_a_gauge(tmp_path, caplog, monkeypatch):
    """Before: only a WARNING, once a start, said that a node signed without its catch-up sync. Only a round with a
    peer it dials that holds the org's records ends it, but for a new org: before, a peer whose horizon leaves the org
    out, holding none of its records, ended it with its answer that nothing was newer. A later round ends a timed-out,
    unreachable or unheld one as it would have ended the start's, and turns an unreachable one unheld if it proves
    nothing."""
    async def shown(node: Node) -> tuple[str, float, float]:
        async with httpx.AsyncClient(base_url=node.api_url) as api:
            return ((await api.get("/v1/node")).json()["startup_sync"], node.metrics.value("startup_sync_timed_out"),
                    node.metrics.value("startup_sync_unheld"))

    # c's start says "unreachable" once its dial of d is refused: a redial is due only after its start's wait ends
    # (at least half of min_backoff later), so none is under way as it ends, which would rightly say "timed_out" (a
    # loaded machine's dials, redialled within startup_sync_seconds, were)
    monkeypatch.setattr(gossip.peers, "DialSchedule", functools.partial(gossip.peers.DialSchedule, min_backoff=4.0))
    (tmp_path / "d").mkdir()  # the bootstrap peer of c, down as c starts: its key now, its node later
    d_key = create_org_key(tmp_path / "d" / "org.key")
    d_listen = f"/ip4/127.0.0.1/tcp/{_free_port_outside_the_ephemeral_range()}"
    down = f"{d_listen}/p2p/{peer_id_from_public_key(bytes(d_key.verify_key))}"
    with trio.fail_after(90):
        async with running(tmp_path / "a") as a:
            async with running(tmp_path / "b", bootstrap=(a.host.listen_addrs[0],), roots=(a.did,),
                               settings={"startup_sync_seconds": 3.0, "sync_interval": 0.5}) as b:
                # A new org: nothing to take back, and a's round ends the wait though it holds none of b's records.
                assert (await shown(a), await shown(b)) == (("no_peers", 0, 0), ("done", 0, 0))
                assert b.replica.store.head(b.did) is not None  # (its org record, signed as it started)
                b_config = b.config
            with caplog.at_level(logging.WARNING, logger="vouchnet.node"):
                # b again, holding its records: a completes a round, but b is outside its horizon
                async with trio.open_nursery() as nursery:
                    b = await nursery.start(serve_node, b_config)
                    assert await shown(b) == ("unheld", 0, 1)
                    held_by_a = trio.Event()
                    b.sync.holder_listeners.append(lambda peer: held_by_a.set())
                    a.replica.issue("vouch", vouch_body(b.did, 0.9, "org-peer"))  # a fetches b's history
                    await held_by_a.wait()  # (a round of b's every sync_interval)
                    await trio.testing.wait_all_tasks_blocked(0.01)
                    assert await shown(b) == ("done", 0, 0)
                    nursery.cancel_scope.cancel()
            assert ("1 peer it dials completed a catch-up sync within 3 s ([p2p] startup_sync_seconds) but holds none "
                    "of this org's records") in caplog.text and "add one to [p2p] bootstrap" in caplog.text
            async with trio.open_nursery() as nursery:  # b again: a holds its records now
                assert await shown(await nursery.start(serve_node, b_config)) == ("done", 0, 0)
                nursery.cancel_scope.cancel()
        async with running(tmp_path / "c", bootstrap=(down,),
                           settings={"startup_sync_seconds": 2.0, "sync_interval": 0.5}) as c:
            assert await shown(c) == ("unreachable", 1, 0)  # (its dial refused, redialled 2-4 s later)
            # A stranger's round does not clear it: any node of the network may answer that it holds nothing.
            async with running(tmp_path / "e") as e:
                await c.host.connect(e.host.listen_addrs[0])
                await ran_a_round(c)  # (its bootstrap peer down: the first)
                await trio.testing.wait_all_tasks_blocked(0.01)
                assert await shown(c) == ("unreachable", 1, 0)
            # Its bootstrap peer up later ends the wait as it would have ended the start's: c held none of its records
            # as it started (a new org), so d's round does though d holds none (before: timed_out until a restart).
            d_peer = down.rpartition("/")[2]
            synced_with_d = trio.Event()
            c.sync.same_network_listeners.append(lambda peer: synced_with_d.set() if peer == d_peer else None)
            async with running(tmp_path / "d", listen=(d_listen,)) as d:
                await synced_with_d.wait()  # (c dials d on its own backoff)
                await trio.testing.wait_all_tasks_blocked(0.01)
                assert await shown(c) == ("done", 0, 0)
                c_config, d_config = c.config, d.config
        with caplog.at_level(logging.WARNING, logger="vouchnet.node"):
            async with trio.open_nursery() as nursery:  # c again, holding its records now, d down as it starts
                c = await nursery.start(serve_node, c_config)
                assert await shown(c) == ("unreachable", 1, 0)
                synced_with_d, held_by_d = trio.Event(), trio.Event()
                c.sync.same_network_listeners.append(lambda peer: synced_with_d.set() if peer == d_peer else None)
                c.sync.holder_listeners.append(lambda peer: held_by_d.set() if peer == d_peer else None)
                d = await nursery.start(serve_node, d_config)
                await synced_with_d.wait()
                await trio.testing.wait_all_tasks_blocked(0.01)
                # d holds none of c's records: what the start would have found had d been up (before: as the start
                # left it, and its alert, until a restart)
                assert await shown(c) == ("unheld", 0, 1)
                d.replica.issue("vouch", vouch_body(c.did, 0.9, "org-peer"))  # d fetches c's history
                await held_by_d.wait()  # (a round of c's every sync_interval)
                await trio.testing.wait_all_tasks_blocked(0.01)
                assert await shown(c) == ("done", 0, 0)
                nursery.cancel_scope.cancel()
        assert ("a peer it dials completed a catch-up sync but holds none of this org's records (a node stores only "
                "the records of orgs inside its horizon) or did not serve those it named: startup_sync is unheld"
                ) in caplog.text and caplog.text.count("startup_sync is unheld") == 1


async def test_a_start_whose_peers_all_answered_holding_none_of_its_records_goes_on_as_their_rounds_end(
        tmp_path, caplog):
    """The README's quick start: Bob's node restarted before Alice's org vouches for his. Its one bootstrap peer holds
    none of Bob's records (his org is outside Alice's horizon), and its catch-up round shows it. Before: the start
    waited out all of startup_sync_seconds (10 s by default) at every restart, though no peer was left to answer,
    then said "unheld"; now it says the same as that round ends (the start's bound, 60 s here, is not reached)."""
    with trio.fail_after(30):
        async with running(tmp_path / "alice") as alice:
            async with running(tmp_path / "bob", bootstrap=(alice.host.listen_addrs[0],)) as bob:
                assert bob.startup_sync == "done"  # a new org: nothing to take back
                bob_config = replace(bob.config, startup_sync_seconds=60.0)
            with caplog.at_level(logging.WARNING, logger="vouchnet.node"):
                async with trio.open_nursery() as nursery:  # Bob again, holding his records now
                    bob = await nursery.start(serve_node, bob_config)
                    assert (bob.startup_sync, bob.metrics.value("startup_sync_unheld")) == ("unheld", 1)
                    nursery.cancel_scope.cancel()
    [said] = [r for r in caplog.records if "completed a catch-up sync" in r.getMessage()]
    assert said.getMessage().startswith("1 peer it dials completed a catch-up sync within 60 s ([p2p] "
                                        "startup_sync_seconds) but holds none of this org's records")
    assert said.fields["waited"] < 30  # type: ignore[attr-defined]


async def test_the_client_reports_events_and_reads_the_metrics(tmp_path):
    from functools import partial

    from node.client import NodeClient

    agent = new_did()
    event = {"agent": agent, "ts": int(time.time() * 1000), "category": "tool", "name": "search", "outcome": "ok"}
    async with running(tmp_path / "a") as a:
        with NodeClient(a.api_url, a.token) as client:
            answer = await trio.to_thread.run_sync(partial(client.report_events, [event, {**event, "ts": -1}]))
            assert answer["accepted"] == 1 and answer["rejected"][0]["index"] == 1
            metrics = await trio.to_thread.run_sync(client.metrics)
    assert "vouchnet_events_accepted_total 1" in metrics.splitlines()
    assert "vouchnet_inbound_idle_closed_total 0" in metrics.splitlines()  # peers dialling in idle, disconnected
    assert "vouchnet_api_storage_refusals_total 0" in metrics.splitlines()  # 503 storage answers
    # a number now (the org's record may wait for a peer), not a count since the start
    assert "# TYPE vouchnet_gossip_queued_records gauge" in metrics.splitlines()
    assert re.search(r"^vouchnet_gossip_queued_records \d+$", metrics, re.MULTILINE)
    for abuse in ("inbound_handshakes_aborted", "p2p_hostile_input", "p2p_control_dropped", "p2p_streams_over_budget",
                  "p2p_connections_over_budget", "p2p_graylisted_rpcs",
                  "p2p_stalled_peers_disconnected"):  # peers exhausting or stalling it
        assert f"vouchnet_{abuse}_total 0" in metrics.splitlines()
    for reason in ("keepalive", "write_timeout"):  # peers that stopped answering, disconnected
        assert f'vouchnet_p2p_unresponsive_closed_total{{reason="{reason}"}} 0' in metrics.splitlines()
    for lag in ("p2p_dropped_slow_subscriber", "p2p_validator_errors",
                "p2p_peer_events_dropped"):  # the node itself behind, or failing, taking in what peers send
        assert f"vouchnet_{lag}_total 0" in metrics.splitlines()
    # what became of gossip messages (none from peers: the node is alone), and of its meshes (none)
    for fate in ("p2p_rejected", "p2p_ignored", "p2p_oversized", "p2p_mesh_prunes", "p2p_pending_dropped"):
        assert f"vouchnet_{fate}_total 0" in metrics.splitlines()
    assert "# TYPE vouchnet_p2p_delivered_total counter" in metrics.splitlines()  # its own messages, if it sent any


async def test_a_start_rebuilding_its_open_epochs_can_be_stopped_between_pages(tmp_path, monkeypatch):
    """Telemetry.open rebuilt the digester's open epochs from the audit log in one go, on the trio thread and after
    the p2p port opened: 3-4 s at 83,000 entries not yet digested on a loaded machine, and a signal waited for all
    of it. The rebuild yields between pages of the audit log now; stopped so, it leaves the data directory as it
    was, and the next start counts every entry."""
    made = init_data_dir(tmp_path, network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config = replace(load_config(made.data_dir), epoch_seconds=10.0**7)  # (no epoch ends during the test)
    agents = [new_did() for _ in range(5)]
    with closing(AuditLog.open(made.data_dir)) as audit:
        at = audit.append([Event(agent, 1, "tool", "search", "ok") for agent in agents]).at
    monkeypatch.setattr(node.digests, "_REPLAY_PAGE", 2)
    decoded = []

    def decoding(entry):
        decoded.append(entry)
        scope.cancel()  # as a signal does, while the first page is read
        return decode_salted_entry(entry)

    monkeypatch.setattr(node.audit_log, "decode_salted_entry", decoding)  # AuditLog.decoded: what the rebuild reads by
    with trio.CancelScope() as scope:
        await serve_node(config)
    assert len(decoded) == 2
    monkeypatch.undo()
    async with trio.open_nursery() as nursery:
        digester = (await nursery.start(serve_node, config)).telemetry.digester
        epoch = at - at % round(config.epoch_seconds * 1000)
        assert [agent for agent in agents if digester.counts_entries(epoch, agent)] == agents
        nursery.cancel_scope.cancel()


async def test_a_start_replaying_its_undigested_events_can_be_stopped_between_chunks(tmp_path, monkeypatch):
    """The digester's undigested entries, the trust replay's first-hand events, came as one list, made on the trio
    thread before the replay's first yield (0.3-0.4 s at 20,833 entries, load 7-8). They come one at a time now,
    and a signal in the replay's first chunk of them stops the start before the rest are gone through."""
    made = init_data_dir(tmp_path, network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config = replace(load_config(made.data_dir), epoch_seconds=10.0**7)  # (no epoch ends during the test)
    with closing(AuditLog.open(made.data_dir)) as audit:
        audit.append([Event(new_did(), 1, "tool", "search", "ok") for _ in range(5)])
    monkeypatch.setattr(node.trust, "TURN_S", 0.0)
    gone_through = []
    digest_epoch = node.digests.Digester._digest_epoch

    def counting(digester, aligned):
        gone_through.append(aligned)
        scope.cancel()  # as a signal does, while the first event is gone through
        return digest_epoch(digester, aligned)

    monkeypatch.setattr(node.digests.Digester, "_digest_epoch", counting)
    with trio.CancelScope() as scope:
        await serve_node(config)
    assert len(gone_through) == 1


def _with_vouches(tmp_path, n: int):
    """The config of a data directory made as `vouchnet init` makes it, holding `n` agent vouches of its org."""
    made = init_data_dir(tmp_path, network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config = load_config(made.data_dir)
    with RecordStore.open(made.data_dir) as store:
        replica = Replica(load_org_key(config.key_path), store, roots=config.roots, max_hops=config.max_hops,
                          held_limit=config.limits.held_records)
        for _ in range(n):
            replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
    return config


async def test_a_start_replaying_its_store_can_be_stopped_between_chunks(tmp_path, monkeypatch):
    """The trust replay ran without a checkpoint: a signal (run_until_signalled) waited for all of it, a minute or
    more at 10^6 stored records. It yields after each TURN_S of work now."""
    config = _with_vouches(tmp_path, 5)
    monkeypatch.setattr(node.trust, "TURN_S", 0.0)
    fed = []

    def feeding(engine, record, identity):
        fed.append(record)
        scope.cancel()  # as a signal does, while the first record is fed
        return feed_record(engine, record, identity)

    monkeypatch.setattr(node.trust, "feed_record", feeding)
    with trio.CancelScope() as scope:
        await serve_node(config)
    assert len(fed) == 1


async def test_a_start_captures_its_replayed_engine_for_the_snapshot_off_the_event_loop(tmp_path, monkeypatch):
    """A start that replayed its records captures the engine for engine.snapshot (node.trust.Capture): on the trio
    thread, its walk of every agent and vouch in Python stalled the loop for tens of ms at 10^6 records
    (benchmarks/startup.py). It runs in a worker thread now, and the snapshot written covers the records."""
    config = _with_vouches(tmp_path, 5)
    monkeypatch.setattr(node.trust, "SNAPSHOT_AFTER", 0)
    threads, made = [], node.trust.capture
    monkeypatch.setattr(node.trust, "capture", lambda engine: (threads.append(threading.current_thread()),
                                                               made(engine))[1])
    async with trio.open_nursery() as nursery:
        started: Node = await nursery.start(serve_node, config)
        with trio.fail_after(60):  # a snapshot never written fails the test, not hangs it
            while started.trust._snapshot_covers == 0:  # written off the loop, maybe before the start was done
                await started.trust.snapshot_written.wait()
        nursery.cancel_scope.cancel()
    assert started.trust._snapshot_covers == 5  # the vouches replayed (the org record is published after)
    assert len(threads) == 1 and threads[0] is not threading.main_thread()


async def test_a_start_makes_its_api_app_off_the_event_loop(tmp_path, monkeypatch):
    """Making the API's routes (FastAPI analyses each endpoint and builds its pydantic adapters) held the loop for
    54 ms at every start (benchmarks/startup.py). The app is made in a worker thread now, and serves as before."""
    config = _with_vouches(tmp_path, 1)
    threads, made = [], node.daemon.api_app
    monkeypatch.setattr(node.daemon, "api_app", lambda *a, **k: (threads.append(threading.current_thread()),
                                                                made(*a, **k))[1])
    async with trio.open_nursery() as nursery:
        started: Node = await nursery.start(serve_node, config)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{started.api_url}/v1/orgs/{started.did}")).status_code == 200
        nursery.cancel_scope.cancel()
    assert len(threads) == 1 and threads[0] is not threading.main_thread()


async def test_a_start_taking_in_its_stored_vouches_can_be_stopped_between_chunks(tmp_path, monkeypatch):
    """The replica took in the stored org, vouch, revoke and equivocation records (Replica.__post_init__) without a
    checkpoint: 0.06-1.06 s at 20,000 records on a loaded machine, growing with the network's vouches, and a signal
    waited for all of it. It yields between chunks of TRACK_CHUNK records now (Replica.tracking)."""
    config = _with_vouches(tmp_path, 5)
    monkeypatch.setattr(gossip.replica, "TRACK_CHUNK", 1)
    taken, track = [], Replica._track

    def taking(replica, record):
        taken.append(record)
        scope.cancel()  # as a signal does, while the first record is taken in
        return track(replica, record)

    monkeypatch.setattr(Replica, "_track", taking)
    with trio.CancelScope() as scope:
        await serve_node(config)
    assert len(taken) == 1


async def test_a_start_stopped_in_its_replay_s_recompute_returns_without_waiting_for_it(tmp_path, monkeypatch):
    """The full recompute closing the trust replay ran on the trio thread: a signal waited for it, 0.05-0.17 s at
    20,000 records and 1.4 s or more at 10^6. It runs in a worker thread now; a start stopped meanwhile returns at
    once, and the compute, left to finish alone, is installed nowhere."""
    made = init_data_dir(tmp_path, network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config = load_config(made.data_dir)
    returned, finished, installed = threading.Event(), threading.Event(), []
    compute, install = Recompute.compute, TrustEngine.install

    def stopped_meanwhile(recompute):
        trio.from_thread.run_sync(scope.cancel)  # as a signal does, while the compute runs (in a worker thread)
        returned.wait(10)
        try:
            return compute(recompute)
        finally:
            finished.set()

    monkeypatch.setattr(Recompute, "compute", stopped_meanwhile)
    monkeypatch.setattr(TrustEngine, "install", lambda engine, done: (installed.append(done), install(engine, done))[1])
    with trio.CancelScope() as scope:
        await serve_node(config)
    assert not finished.is_set()
    returned.set()
    await trio.to_thread.run_sync(finished.wait)
    assert installed == []


async def test_a_node_reads_its_org_s_revokes_in_worker_threads_as_it_starts(tmp_path, monkeypatch):
    """The first status list of the org's vouches asked for read every revoke of the org on the event loop (1.3 s
    at 20,000, benchmarks/vouch_status.py); the node reads them as it starts now, in worker threads
    (node.vouch_revocations)."""
    made = init_data_dir(tmp_path, network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config = load_config(made.data_dir)
    with RecordStore.open(made.data_dir) as store:
        replica = Replica(load_org_key(config.key_path), store, roots=config.roots, max_hops=config.max_hops,
                          held_limit=config.limits.held_records)
        vouches = [replica.issue("vouch", vouch_body(new_did(), 0.5, "operator")) for _ in range(3)]
        replica.issue("revoke", revoke_body(vouches[1].id, "left the org"))
    threads = []
    monkeypatch.setattr(CommittedIndex, "revoked_by", lambda *args, real=CommittedIndex.revoked_by: (
        threads.append(threading.current_thread()), real(*args))[1])
    async with trio.open_nursery() as nursery:
        node: Node = await nursery.start(serve_node, config)
        async with httpx.AsyncClient(base_url=node.api_url) as api:
            response = await api.get(vouch_list_url("", node.did, 0))
        nursery.cancel_scope.cancel()
    bits = decode_list(pyjwt.decode(response.text, options={"verify_signature": False})["credentialSubject"][
        "encodedList"])
    assert [seq for seq in range(8) if bit(bits, seq)] == [vouches[1].seq]
    assert threads and threading.main_thread() not in threads


@pytest.mark.parametrize(("level", "index", "complaint"), [
    (0, 4, "records.ledger: corrupt: entry 4 does not match its stored leaf hash"),
    (2, 0, "checkpoint.note: the checkpoint of size 5 we signed has another root than the records ledger at that "
           "size: a hash it stores or an entry changed on disk, and signing on would fork our log (witnesses refuse "
           "to cosign a fork, and flag two roots of one size as equivocation)"),
], ids=["the last leaf's, which opening checks", "over entries 0-3, from which the root is computed"])
async def test_a_wrong_stored_hash_of_the_root_stops_the_node_naming_log_repair_which_mends_it(
        tmp_path, caplog, capsys, level, index, complaint):
    """The stored hashes a start reads: the last leaf's, which the ledger checks as it opens, and those the root is
    computed from, which must give the root of the node's saved checkpoint: the node ignored it and signed checkpoints
    of another root, forking its log (at the same size, its peers flag that as equivocation). Either way it refuses to
    start, naming log repair; repaired, it starts with the checkpoint it saved."""
    init_data_dir(tmp_path, network="test", api="127.0.0.1:0", listen=("/ip4/127.0.0.1/tcp/0",))
    key = load_org_key(tmp_path / "org.key")
    origin = log_origin("test", did_key(bytes(key.verify_key)), "records")
    with RecordStore.open(tmp_path) as store:
        store.ledger.append([Org().record().raw for _ in range(5)])
        root = store.ledger.root()
    (tmp_path / "checkpoint.note").write_bytes(Checkpoint(origin, 5, root).sign([Ed25519Signer(origin, key)]))
    with sqlite3.connect(tmp_path / "records.ledger") as db:  # one bit of the hash of node (level, index) flipped
        (hashes,) = db.execute("SELECT hashes FROM tiles WHERE id = ?", (level << 40,)).fetchone()
        flipped = hashes[: index * 32] + bytes([hashes[index * 32] ^ 1]) + hashes[index * 32 + 1 :]
        db.execute("UPDATE tiles SET hashes = ? WHERE id = ?", (flipped, level << 40))
    db.close()
    config = load_config(tmp_path)
    with trio.fail_after(30), pytest.raises(StartupError, match=re.escape(
            f"{complaint}: run `vouchnet log repair --dir {tmp_path}`, which rebuilds the stored hashes")):
        await serve_node(config)  # (started, it would run until cancelled)
    assert await trio.to_thread.run_sync(node.cli.main, ["log", "repair", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"1 stored hash was wrong: level {level} index {index} ")
    async with trio.open_nursery() as nursery:
        started: Node = await nursery.start(serve_node, config)
        assert started.replica.store.ledger.root(5) == root  # (it logged its own org record since)
        nursery.cancel_scope.cancel()
    assert "ignoring our saved checkpoint" not in caplog.text
