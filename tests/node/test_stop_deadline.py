"""`vouchnet run`'s stop bounded when a disk never finishes an fsync (node.stop_deadline)."""

import faulthandler
import logging
import os
import queue
import signal
import subprocess
import threading
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio
from nacl.signing import SigningKey

from gossip.checkpoints import CHECKPOINT_FILE, WITNESS_FILE
from gossip.own_records import OWN_RECORDS_FILE, OwnRecords
from gossip.store import INDEX_FILE, LEDGER_FILE, RecordReader, RecordStore
from ledger import CosignatureSigner, Ledger, Witness, cosigner_name, tiles
from ledger.files import replace_file
from ledger.writes_under_way import under_way, writing
from node.audit_log import AUDIT_FILE, AuditLog
from node.credential_registry import CREDENTIALS_FILE, CredentialRegistry
from node.daemon import _stop_on_signal
from node.digests import DigestState
from node.idempotency import IDEMPOTENCY_FILE, IdempotencyStore, RecordKey, StoredReply
from node.logs import logfmt_fields
from node.setup import init_data_dir
from node.stop_deadline import LEFT_EXIT, SAY_SECONDS, STOP_CUT_SECONDS, StopDeadline, armed_by_signals
from node.store_manifest import DIGESTS_FILE

from ..factories import Org, new_did
from .in_process import running
from .test_daemon import _children


def test_a_stop_past_its_deadline_names_the_store_whose_write_never_returned(caplog):
    exits: queue.Queue[int] = queue.Queue()
    deadline = StopDeadline(0.01, exit=exits.put)
    with caplog.at_level(logging.ERROR, logger="vouchnet.node"), writing("witness.sqlite"):
        deadline.arm()
        assert exits.get(timeout=30) == LEFT_EXIT == 1
    (said,) = [record for record in caplog.records if "did not end" in record.getMessage()]
    assert said.fields == {"left": "witness.sqlite"}
    assert "a write or close of witness.sqlite had not returned" in said.getMessage()


class _HungLog(logging.Handler):
    """A log whose write never returns until `released` (stderr a full pipe to a writer whose disk hangs)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.released.wait(60)


def test_a_stop_cut_short_ends_though_its_last_line_cannot_be_written():
    """Found by stop 45's review: the line naming what the stop left was written before the exit, so a log that
    never took it (the node's stderr a full pipe to a writer on the disk that hangs) held the exit up for ever, the
    bound undone; the process now ends SAY_SECONDS after the bound whether or not the line is written."""
    exits: queue.Queue[int] = queue.Queue()
    hung = _HungLog()
    logging.getLogger("vouchnet.node").addHandler(hung)
    try:
        StopDeadline(0.01, exit=exits.put).arm()
        assert exits.get(timeout=SAY_SECONDS + 10) == LEFT_EXIT
    finally:
        hung.released.set()
        logging.getLogger("vouchnet.node").removeHandler(hung)


def test_a_second_signal_or_one_after_the_stop_ended_cuts_nothing_short():
    """Armed twice (a second Ctrl-C), one disarm still holds it; armed once the stop ended (a signal as the run's
    handlers are taken back), or its timer firing as the stop ends, it cuts nothing short."""
    exits: queue.Queue[int] = queue.Queue()
    twice, after, late = (StopDeadline(0.05, exit=exits.put), StopDeadline(0.05, exit=exits.put),
                          StopDeadline(60, exit=exits.put))
    twice.arm()
    twice.arm()
    twice.disarm()
    after.disarm()
    after.arm()
    late.arm()
    late.disarm()
    late._expired()  # (its timer firing just as the stop ended, too late for the cancel to stop it)
    with pytest.raises(queue.Empty):
        exits.get(timeout=0.5)  # (ten times the deadline: nothing else to wait on)


def test_a_signal_arms_the_deadline_and_reaches_the_handler_there_was(caplog):
    """The signal arms it from a thread of its own, not from trio's reading of it, which a write held on the node's
    thread would hold up too; trio's handler still gets it."""
    exits: queue.Queue[int] = queue.Queue()
    handled = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
    try:
        deadline = StopDeadline(0.01, exit=exits.put)
        with caplog.at_level(logging.ERROR, logger="vouchnet.node"), armed_by_signals(deadline, [signal.SIGUSR1]):
            signal.raise_signal(signal.SIGUSR1)
            assert exits.get(timeout=30) == LEFT_EXIT
        assert handled == [signal.SIGUSR1]
        (said,) = [record for record in caplog.records if "did not end" in record.getMessage()]
        assert "no store's write or close under way" in said.getMessage()
    finally:
        signal.signal(signal.SIGUSR1, previous)


async def test_a_signal_trio_reads_arms_the_deadline_too():
    """Found by stop 45's review: a signal coming after trio's receiver opened but before the deadline's own handlers
    were registered armed nothing, and a hung write then held the stop up for ever: the node's reading of the
    signal arms it as well."""
    exits: queue.Queue[int] = queue.Queue()
    deadline = StopDeadline(0.01, exit=exits.put)

    async def one_signal():
        yield signal.SIGTERM

    with trio.CancelScope() as scope:
        await _stop_on_signal(one_signal(), scope, [], deadline)
    assert scope.cancel_called
    assert exits.get(timeout=30) == LEFT_EXIT


def test_a_stop_that_ends_in_time_is_not_cut_short():
    """Nor does the signal's handler write to the block's pipe once the block is left (its fd closed, maybe reused)."""
    exits: queue.Queue[int] = queue.Queue()
    deadline = StopDeadline(0.05, exit=exits.put)
    with armed_by_signals(deadline, [signal.SIGUSR1]):
        deadline.arm()
    assert not faulthandler.unregister(signal.SIGUSR1)  # (unregistered as the block was left)
    with pytest.raises(queue.Empty):
        exits.get(timeout=0.5)  # (ten times the deadline: nothing else to wait on)


def test_writes_under_way_are_counted_across_threads():
    began, release = threading.Event(), threading.Event()

    def write() -> None:
        with writing("records.ledger"):
            began.set()
            release.wait(30)

    thread = threading.Thread(target=write)
    thread.start()
    began.wait(30)
    with writing("records.ledger"), writing("audit.ledger"):
        assert under_way() == ["audit.ledger", "records.ledger"]
    assert under_way() == ["records.ledger"]  # the thread's, still under way
    release.set()
    thread.join(30)
    assert under_way() == []


@pytest.mark.parametrize("opened", ["witness", "ledger"])
def test_a_close_waiting_for_a_write_under_way_is_named(tmp_path, opened):
    """A close waits for a write under way (an fsync): named while it waits, as the write is, for a stop cut short
    to say which store it left."""
    if opened == "witness":
        store = Witness(tmp_path / WITNESS_FILE, CosignatureSigner(cosigner_name(new_did()), SigningKey.generate()), {})
    else:
        store = Ledger.open(tmp_path / LEDGER_FILE)
    closed = threading.Event()

    def close() -> None:
        store.close()
        closed.set()

    with store._lock:  # (as a write under way holds it)
        thread = threading.Thread(target=close)
        thread.start()
        deadline = time.monotonic() + 10
        while not under_way() and time.monotonic() < deadline:  # (the close's thread starting: nothing to wait on)
            time.sleep(0.001)
        assert under_way() == [WITNESS_FILE if opened == "witness" else LEDGER_FILE]
        assert not closed.is_set()
    thread.join(30)
    assert closed.is_set() and under_way() == []



class _WatchedConnection:
    """A store's SQLite connection noting the store writes under way (ledger.writes_under_way) as each of its
    statements runs and as a `with` block commits, where a disk that never finishes an fsync holds the write."""

    def __init__(self, db: sqlite3.Connection, seen: set[tuple[str, ...]]) -> None:
        self._db, self._seen = db, seen

    def execute(self, *args: Any) -> sqlite3.Cursor:
        self._seen.add(tuple(under_way()))
        return self._db.execute(*args)

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        self._seen.add(tuple(under_way()))
        return self._db.executemany(*args)

    def __enter__(self) -> sqlite3.Connection:
        return self._db.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        self._seen.add(tuple(under_way()))
        return self._db.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _own_records_writes(data_dir: Path, watch: Callable[[Any], None]) -> None:
    with RecordStore.open(data_dir) as store, closing(OwnRecords.open(data_dir, lambda: 0, store)) as own:
        watch(own)
        own.add([(Org().record(), "12D3KooWPeer")])
        own.adopting(new_did())
        own.acknowledge(1)


def _idempotency_writes(data_dir: Path, watch: Callable[[Any], None]) -> None:
    with closing(IdempotencyStore.open(data_dir, log_size=0)) as store:
        watch(store)
        store.reserve("key", StoredReply(b"f", 200, b"{}"), first=0, count=1, at=0)
        store.reserve_record("vouches", "key", RecordKey(b"f", b"r"), at=0)
        store.reserve_spans([(0, bytes(24))], first=0, at=0)
        store.settle()
        store.expire(1)


def _credentials_writes(data_dir: Path, watch: Callable[[Any], None]) -> None:
    with closing(CredentialRegistry.open(data_dir)) as registry:
        watch(registry)
        registry.allocate(new_did(), name=None, issued_at=0, expires_at=1)
        registry.revoke(0, reason="left", at=1)


def _digests_writes(data_dir: Path, watch: Callable[[Any], None]) -> None:
    with closing(DigestState.open(data_dir)) as state:
        watch(state)
        state.begin(0, 1, 0, 0, 0)
        state.keep_raw(0, {})
        state.finish(0)
        state.abandon(0)


@pytest.mark.parametrize(("writes", "name"), [(_own_records_writes, OWN_RECORDS_FILE),
                                              (_idempotency_writes, IDEMPOTENCY_FILE),
                                              (_credentials_writes, CREDENTIALS_FILE), (_digests_writes, DIGESTS_FILE)])
def test_each_durable_write_of_a_store_is_named_while_it_runs(tmp_path, writes, name):
    """Found by stop 45's review: the writes of own_records.db (a record of the org's key from a peer, listed before
    the ledger takes it, on the node's own thread), idempotency.db, credentials.db and digests.db, each synced to
    disk as it commits, were not named: a stop that a disk held in one was cut short saying that no store's write
    was under way (a task of the node did not end), pointing the operator away from the disk."""
    seen: set[tuple[str, ...]] = set()
    writes(tmp_path, lambda store: setattr(store, "_db", _WatchedConnection(store._db, seen)))
    assert seen == {(name,)}


def test_a_ledger_append_and_a_whole_file_write_are_named_while_they_reach_the_disk(tmp_path, monkeypatch):
    """records.ledger's append (its rows written in its transaction) and checkpoint.note's save (its fsyncs), where
    tests/node/hung_disk.py holds them in a node's process, are named while they run."""
    seen: set[tuple[str, ...]] = set()
    write, fsync = tiles.TileStore.write, os.fsync
    monkeypatch.setattr(tiles.TileStore, "write", lambda self, rows: (seen.add(tuple(under_way())), write(self, rows)))
    monkeypatch.setattr(os, "fsync", lambda fd: (seen.add(tuple(under_way())), fsync(fd)))
    with closing(Ledger.open(tmp_path / LEDGER_FILE)) as ledger:
        seen.clear()  # (its open's)
        ledger.append([b"entry"])
    assert seen == {(LEDGER_FILE,)}
    seen.clear()
    replace_file(tmp_path / CHECKPOINT_FILE, b"note")
    assert seen == {(CHECKPOINT_FILE,)}

@pytest.mark.slow
async def test_each_store_a_node_closes_as_it_stops_is_named_while_it_closes(tmp_path, monkeypatch):
    """The names a stop cut short gives: each store closed at the stop is named while its close runs."""
    named: dict[str, list[str]] = {}
    for kind, name in ((RecordStore, INDEX_FILE), (OwnRecords, OWN_RECORDS_FILE), (DigestState, DIGESTS_FILE),
                       (IdempotencyStore, IDEMPOTENCY_FILE), (CredentialRegistry, CREDENTIALS_FILE),
                       (AuditLog, AUDIT_FILE)):
        def watched(self, close=kind.close, name=name) -> None:
            named[name] = under_way()
            close(self)

        monkeypatch.setattr(kind, "close", watched)
    async with running(tmp_path / "a"):
        pass
    assert named == {name: [name] for name in (INDEX_FILE, OWN_RECORDS_FILE, DIGESTS_FILE, IDEMPOTENCY_FILE,
                                               CREDENTIALS_FILE, AUDIT_FILE)}
    assert under_way() == []


@pytest.mark.slow
@pytest.mark.parametrize(("hang", "store"), [("hang_fsyncs", CHECKPOINT_FILE), ("hang_ledger_appends", LEDGER_FILE)])
def test_sigterm_stops_a_node_whose_disk_never_finishes_a_write_naming_the_store(tmp_path, forked_cli, hang, store):
    """Found by stop 45's review: a write whose fsync never returned held `vouchnet run`'s stop up for ever: on a
    worker thread (checkpoint.note's save), its task waiting for the thread; on the node's own (a vouch's record
    appended to records.ledger), trio's loop, which never read the signal. The stop now ends STOP_CUT_SECONDS after
    the signal, exit status 1, its last line naming the store (its record verifier ended first: left, it found the
    node gone and wrote a traceback after it); a vouch acknowledged before is kept, and one whose write never ended
    was never acknowledged."""
    made = init_data_dir(tmp_path / "a", network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    config = made.data_dir / "config.toml"  # (a record verifier, which the end must not leave to find the node gone)
    config.write_text(config.read_text().replace("verify_processes = 0", "verify_processes = 1"))
    trigger = tmp_path / "disk-hangs"
    log = tmp_path / "run.log"
    process = forked_cli.spawn(["run", "--dir", str(made.data_dir)], log,
                               before=("tests.node.hung_disk", hang, str(trigger), store))
    vouching = None
    agent = new_did()
    vouch = ["vouch", "--dir", str(made.data_dir), agent, "--weight", "0.9", "--basis", "operator"]
    try:
        if process.logged("node running", timeout=120) is None:
            process.kill()
            pytest.fail(f"the node exited with {process.wait()} before it was running")
        trigger.touch()  # from now on the store's next write never ends
        if store == CHECKPOINT_FILE:  # (the vouch grows the log: the next checkpoint is saved)
            vouched = forked_cli.run(vouch)
            assert vouched.returncode == 0, vouched.stderr
        else:  # (its record's append never ends, nor its request)
            vouching = forked_cli.spawn(vouch, tmp_path / "vouch.log")
        hung = trigger.with_name(f"{trigger.name}.hung")
        deadline = time.monotonic() + 30
        while not hung.exists():  # (another process's write: nothing to wait on but the file)
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        workers = _children(process.pid)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_CUT_SECONDS + 10)
        except subprocess.TimeoutExpired:
            pytest.fail("the stop waited for the write that never ends")
        took = time.monotonic() - start
    finally:
        for running_process in (process, vouching):
            if running_process is not None and running_process.poll() is None:
                running_process.kill()
    assert code == 1
    assert took < STOP_CUT_SECONDS + 1  # (the interpreter's own exit is not waited for)
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") for pid in workers):  # (what they wrote as they ended is in the log)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    last = logfmt_fields(log.read_text().splitlines()[-1])
    assert (last["level"], last["left"]) == ("error", store)
    kept = [agent] if store == CHECKPOINT_FILE else []
    with RecordReader.open(made.data_dir) as records:
        assert [record.body.subject for record in records.scan(issuer=made.did, kind="vouch")] == kept
