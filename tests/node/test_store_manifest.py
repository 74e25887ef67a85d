"""A data directory lists the stores it created (node.store_manifest): a start, or `vouchnet agent`, refuses one
listed but missing or empty, changing nothing, until it is restored or `vouchnet stores accept-loss` names it."""

import itertools
import json
import os
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import trio

from gossip.store import LEDGER_FILE
from node.audit_log import AUDIT_FILE
from node.config import load_config
from node.data_formats import STORES as STORES_CHECKED
from node.daemon import StartupError, serve_node
from node.setup import init_data_dir
from node.store_manifest import MANIFEST_FILE, STORES, StoreLost, check_listed, listed

from ..factories import new_did
from .in_process import LOOPBACK, running

pytestmark = pytest.mark.slow


async def _ran(data_dir: Path) -> None:
    """`data_dir` as a node that has run leaves it."""
    async with running(data_dir):
        pass


async def _starts(data_dir: Path) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_node, load_config(data_dir))
        nursery.cancel_scope.cancel()


def _lose(data_dir: Path, name: str, how: str) -> None:
    for left in (f"{name}-wal", f"{name}-shm"):
        (data_dir / left).unlink(missing_ok=True)
    if how == "missing":
        (data_dir / name).unlink()
    else:
        (data_dir / name).write_bytes(b"")


def _files(data_dir: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in data_dir.iterdir() if p.is_file()}


@pytest.mark.parametrize("how", ["missing", "empty"])
@pytest.mark.parametrize("store", STORES)
async def test_a_store_the_directory_made_and_lost_stops_the_start_and_nothing_changes(tmp_path, store, how):
    """An empty or missing store was made anew: credentials.db's loss made revoked credentials valid again (the
    status lists forgot them), idempotency.db's counted a retried batch twice, the others lost their state."""
    await _ran(tmp_path)
    assert set(listed(tmp_path)) == set(STORES) == {*(n for n, _, _ in STORES_CHECKED), LEDGER_FILE, AUDIT_FILE}
    _lose(tmp_path, store, how)
    before = _files(tmp_path)
    with trio.fail_after(30), pytest.raises(StartupError) as refused:  # (a start not refused runs on)
        await serve_node(load_config(tmp_path))
    assert str(refused.value) == (
        f"{STORES[store][0]}: {tmp_path / store}: {how}, though this data directory created it (stores.list): "
        f"restore it from a backup of this node's data directory; or, to start with a new one and lose what it held "
        f"({STORES[store][1]}), run `vouchnet stores accept-loss {store} --dir {tmp_path}`")
    assert _files(tmp_path) == before


async def test_a_loss_accepted_is_made_anew_by_the_next_start(tmp_path, local_cli):
    await _ran(tmp_path)
    _lose(tmp_path, "credentials.db", "missing")
    accepted = local_cli.run(["stores", "accept-loss", "credentials.db", "--dir", str(tmp_path)])
    assert accepted.returncode == 0, accepted.stderr
    assert "credentials.db" not in listed(tmp_path)
    await _starts(tmp_path)
    assert set(listed(tmp_path)) == set(STORES)


@pytest.mark.parametrize(("file", "complaint", "status"), [
    ("digests.db", "is there and not empty: nothing was lost", 1),
    # (a name that is no store is a bad argument, exit 2: found by stop 45's operator walk, it exited 1 as a failure)
    ("records.index", "records.index: not a store {tmp_path}/stores.list lists ({listed}): give the file name the "
                      "start's refusal named", 2),  # (it said "a start makes it if it is missing", of a typo too)
    ("credentials.db.bak", "credentials.db.bak: not a store {tmp_path}/stores.list lists ({listed}): give the file "
                           "name the start's refusal named", 2),
])
async def test_accept_loss_refuses_a_store_that_was_not_lost(tmp_path, local_cli, file, complaint, status):
    await _ran(tmp_path)
    before = (tmp_path / MANIFEST_FILE).read_bytes()
    refused = local_cli.run(["stores", "accept-loss", file, "--dir", str(tmp_path)])
    complaint = complaint.format(tmp_path=tmp_path, listed=", ".join(listed(tmp_path)))
    assert refused.returncode == status and complaint in refused.stderr.splitlines()[-1]
    assert (tmp_path / MANIFEST_FILE).read_bytes() == before


def test_accept_loss_is_refused_while_the_node_runs(tmp_path, local_cli):
    from node.data_lock import locked_data_dir

    init_data_dir(tmp_path, network="test", listen=LOOPBACK, api="127.0.0.1:0")
    with locked_data_dir(tmp_path):
        refused = local_cli.run(["stores", "accept-loss", "digests.db", "--dir", str(tmp_path)])
    assert refused.returncode == 1 and "in use by another process" in refused.stderr


async def test_a_directory_from_before_the_list_or_a_store_added_later_starts_and_lists_what_it_made(tmp_path):
    """A directory of a vouchnet before stores.list, or one whose list lacks a store a later version adds, starts:
    the missing store is made, as at a first start, and listed."""
    await _ran(tmp_path)
    (tmp_path / MANIFEST_FILE).unlink()
    _lose(tmp_path, "digests.db", "missing")
    await _starts(tmp_path)
    assert set(listed(tmp_path)) == set(STORES)
    (tmp_path / MANIFEST_FILE).write_text("".join(f"{n}\n" for n in STORES if n != "witness.sqlite"))
    _lose(tmp_path, "witness.sqlite", "missing")
    await _starts(tmp_path)
    assert set(listed(tmp_path)) == set(STORES)


async def test_names_this_version_does_not_know_are_kept_and_checked(tmp_path):
    """A list a later vouchnet wrote names its own stores: a downgrade keeps them listed, and refuses one lost."""
    await _ran(tmp_path)
    with open(tmp_path / MANIFEST_FILE, "a") as manifest:
        manifest.write("later.db\n")
    (tmp_path / "later.db").write_bytes(b"held")
    await _starts(tmp_path)
    assert "later.db" in listed(tmp_path)
    (tmp_path / "later.db").unlink()
    with trio.fail_after(30), pytest.raises(StartupError, match=f"^data: {tmp_path / 'later.db'}: missing"):
        await serve_node(load_config(tmp_path))


def test_a_list_that_is_not_one_is_refused(tmp_path):
    (tmp_path / MANIFEST_FILE).write_text("../org.key\n")
    with pytest.raises(StoreLost, match="not a list of stores: '../org.key' is not a file name"):
        check_listed(tmp_path)


@pytest.mark.parametrize("store", STORES)
def test_a_lost_store_whose_wal_is_left_is_to_be_restored_without_it(tmp_path, store):
    """A store lost by a node killed leaves its -wal beside it, which SQLite applies to the file restored there."""
    (tmp_path / MANIFEST_FILE).write_text(f"{store}\n")
    (tmp_path / f"{store}-wal").write_bytes(b"\0" * 32)
    with pytest.raises(StoreLost) as refused:
        check_listed(tmp_path)
    assert (f"restore it from a backup of this node's data directory (first delete {store}-wal and {store}-shm, the "
            "lost one's, which SQLite would apply to the file restored); or, ") in str(refused.value)
    (tmp_path / f"{store}-wal").unlink()
    with pytest.raises(StoreLost) as refused:
        check_listed(tmp_path)
    assert "restore it from a backup of this node's data directory; or, " in str(refused.value)


def test_agent_commands_refuse_a_credential_registry_made_and_lost(tmp_path, local_cli):
    """`vouchnet agent new` made a new registry, whose first credential took the status list entry of the lost
    one's first, revoked or not."""
    init_data_dir(tmp_path, network="test", listen=LOOPBACK, api="127.0.0.1:0")
    assert local_cli.run(["agent", "list", "--dir", str(tmp_path)]).returncode == 0
    _lose(tmp_path, "credentials.db", "missing")
    refused = local_cli.run(["agent", "list", "--dir", str(tmp_path)])
    assert refused.returncode == 1
    assert f"credentials: {tmp_path / 'credentials.db'}: missing" in refused.stderr.splitlines()[-1]
    assert not (tmp_path / "credentials.db").exists()


def test_a_command_killed_between_making_a_store_and_listing_it_leaves_a_directory_that_starts(tmp_path, local_cli):
    """The store is listed once made, so a kill before then leaves it unlisted, and at no point a list naming a
    store that is not there, or a list cut short."""
    for point in itertools.count(1):
        data_dir = tmp_path / f"killed-at-{point}"
        init_data_dir(data_dir, network="test", listen=LOOPBACK, api="127.0.0.1:0")
        killed = local_cli.run(["agent", "list", "--dir", str(data_dir)], kill_at=point)
        if killed.returncode == 0:
            break
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        check_listed(data_dir)
        assert listed(data_dir) in ([], ["credentials.db"])
        again = local_cli.run(["agent", "list", "--dir", str(data_dir)])
        assert again.returncode == 0, f"killed at point {point}, then: {again.stderr}"
        assert listed(data_dir) == ["credentials.db"]
    assert point > 3  # the list's writes were points
    assert not [p for p in os.listdir(data_dir) if p.endswith(".partial")]


async def test_a_first_start_keeps_its_hold_on_its_stores_so_events_it_took_are_in_the_file(tmp_path, local_cli):
    """A first start, listing its stores, read each through a descriptor it closed, which dropped the node's SQLite
    locks on all of them: `vouchnet audit export` beside it, closing audit.ledger, then took it for unused and
    deleted the WAL the node went on committing to, so the events it took after were in no file (not exported, and
    lost at a kill -9: 34 batches of 50 in a walk-through)."""
    agent, out = new_did(), tmp_path / "export.json"
    export = ["audit", "export", "--agent", agent, "--from", "2026-01-01", "--to", "2100-01-01",
              "--out", str(out), "--dir", str(tmp_path / "node")]
    async with running(tmp_path / "node") as node, httpx.AsyncClient(
        base_url=node.api_url, headers={"Authorization": f"Bearer {node.token}"}, timeout=30
    ) as api:
        assert (await trio.to_thread.run_sync(local_cli.run, export)).returncode == 0
        event = {"agent": agent, "ts": int(time.time() * 1000), "category": "tool", "name": "x", "outcome": "ok"}
        assert (await api.post("/v1/events", json={"events": [event]})).json()["accepted"] == 1
        exported = await trio.to_thread.run_sync(local_cli.run, export)
        assert exported.returncode == 0, exported.stderr
        assert [entry["event"]["name"] for entry in json.loads(out.read_text())["entries"]] == ["x"]


@pytest.mark.parametrize(("command", "store"), [
    (["key", "rotate"], "records.ledger"),
    (["audit", "export", "--agent", "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "--from",
      "2026-01-01", "--to", "2026-02-01", "--out", "{out}"], "audit.ledger"),
])
async def test_commands_that_would_make_a_lost_store_anew_refuse_it(tmp_path, local_cli, command, store):
    """`key rotate` (and `agent new`, `audit export`, asking whether the key was retired) opened records.ledger, and
    `audit export` audit.ledger, making a new one: after them the node started on it, as the list was satisfied."""
    data_dir = tmp_path / "node"
    await _ran(data_dir)
    _lose(data_dir, store, "missing")
    done = local_cli.run([a.format(out=tmp_path / "out.json") for a in command] + ["--dir", str(data_dir)])
    assert done.returncode == 1
    assert f"{data_dir / store}: missing, though this data directory created it" in done.stderr.splitlines()[-1]
    assert not (data_dir / store).exists()


@pytest.mark.parametrize("made", ["no bytes", "a page without marks or tables"])
def test_a_listed_store_is_empty_with_no_bytes_or_no_marks_and_tables(tmp_path, made):
    """What opening a missing store makes before it is claimed, or a new database set to WAL in its place."""
    (tmp_path / MANIFEST_FILE).write_text("digests.db\n")
    with closing(sqlite3.connect(tmp_path / "digests.db")) as db:
        if made != "no bytes":
            db.execute("PRAGMA journal_mode = WAL")
    assert (tmp_path / "digests.db").stat().st_size == (0 if made == "no bytes" else 4096)
    with pytest.raises(StoreLost, match=f"^telemetry: {tmp_path / 'digests.db'}: empty"):
        check_listed(tmp_path)
