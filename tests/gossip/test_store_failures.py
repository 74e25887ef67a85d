"""The record store when its files cannot be written (a full disk): a batch is stored whole or not at all, reads
never answer as if a stored record were missing, and the store takes records again once the files can be written,
without a restart (gossip/store.py)."""

import logging
import resource
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import gossip.store
from gossip.store import LEDGER_FILE, Head, RecordReader, RecordStore, StoreError
from ledger import Ledger, LedgerError
from vouching import Record

from ..factories import Org
from .failing_reads import FailingReads, sqlite_error

_FULL = "database or disk is full"


class Faults:
    """Writes that fail as on a full disk while `on` names them: temporary triggers on the store's own connections,
    on the index's rows and the ledger's size. "ABORT": an index row's statement fails; "ROLLBACK": SQLite rolls
    the whole index transaction back on its own, as it may on SQLITE_FULL; "ledger": the ledger's append fails."""

    def __init__(self, store: RecordStore) -> None:
        self.on: str | None = None
        store._db.create_function("index_full", 1, lambda how: self.on == how)
        for how in ("ABORT", "ROLLBACK"):
            store._db.execute(f"CREATE TEMP TRIGGER index_{how} BEFORE INSERT ON main.records WHEN index_full('{how}') "
                              f"BEGIN SELECT RAISE({how}, '{_FULL}'); END")
        store.ledger._db.create_function("ledger_full", 0, lambda: self.on == "ledger")
        store.ledger._db.execute("CREATE TEMP TRIGGER ledger_full BEFORE UPDATE ON main.meta WHEN ledger_full() "
                                 f"BEGIN SELECT RAISE(ABORT, '{_FULL}'); END")


@contextmanager
def files_cannot_grow(limit: int) -> Iterator[None]:
    """Files this process writes stop at `limit` bytes (EFBIG, as on a full disk; SIGXFSZ ignored), as
    tests/node/crash_node.py does to a node."""
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def assert_stored_exactly(store: RecordStore, records: list[Record]) -> None:
    """The ledger holds `records`, in order; the index names each at its place and nothing else; the heads are the
    ledger's."""
    assert store.ledger.entries(0, store.size) == [r.raw for r in records]
    assert store.query(limit=len(records) + 1) == [(i, r.raw) for i, r in enumerate(records)]
    assert store._db.execute("SELECT idx, id FROM records ORDER BY idx").fetchall() == [
        (i, r.id) for i, r in enumerate(records)]
    last = {r.iss: r for r in records}
    assert {iss: store.head(iss) for iss in store.heads()} == {iss: Head(r.seq, r.id) for iss, r in last.items()}


@pytest.mark.parametrize(("fault", "error"), [("ABORT", StoreError), ("ROLLBACK", StoreError), ("ledger", LedgerError)])
def test_a_batch_that_cannot_be_written_is_not_stored_and_the_next_is(tmp_path, fault, error):
    """Before: a batch whose index rows failed stayed in the ledger though it was refused (a retry stored it twice),
    and the store refused every record until the node restarted. A rollback of the whole index transaction takes
    the uncommitted rows of the batches before with it: they are replayed from the ledger. The index rows are
    written before the ledger: if the ledger fails, they are deleted."""
    alice = Org()
    records = [alice.record() for _ in range(4)]
    with RecordStore.open(tmp_path) as store:
        faults = Faults(store)
        store.append(records[:2])  # not committed yet (_INDEX_COMMIT_ROWS)
        faults.on = fault
        with pytest.raises(error, match=_FULL):
            store.append(records[2:3])
        assert store.size == 2 and store.heads() == {alice.did: 2}
        faults.on = None
        assert_stored_exactly(store, records[:2])
        store.append(records[2:])
        assert_stored_exactly(store, records)
    with RecordStore.open(tmp_path) as store:
        assert_stored_exactly(store, records)


def test_while_the_lost_index_rows_cannot_be_replayed_appends_are_refused_and_reads_fail(tmp_path):
    """Before: the index answered as if the records a rollback took from it were not stored: the acceptor would
    have taken one again, or flagged its issuer for a record contradicting its own."""
    alice = Org()
    records = [alice.record() for _ in range(3)]
    revoke = alice.revoke(records[0])
    with RecordStore.open(tmp_path) as store:
        faults = Faults(store)
        store.append(records[:2])
        faults.on = "ROLLBACK"
        with pytest.raises(StoreError):
            store.append(records[2:])
        reads = {
            "has": lambda: store.has(records[0].id), "holds": lambda: store.holds(records[0]),
            "get": lambda: store.get(records[0].id), "index_of": lambda: store.index_of(records[0].id),
            "kind_and_issuer": lambda: store.kind_and_issuer(records[0].id), "at": lambda: store.at(alice.did, 1),
            "id_at": lambda: store.id_at(alice.did, 1), "issuer_range": lambda: store.issuer_range(alice.did, 1, 5),
            "query": lambda: store.query(issuer=alice.did), "revoked": lambda: store.revoked(records[0].id),
            "flagged": store.flagged, "append": lambda: store.append([records[2]]),
        }
        for read in reads.values():
            with pytest.raises(StoreError, match=r"^records.index: cannot be written \(database or disk is full\); no "
                                                 "record of a refused batch is stored, and records are taken again"):
                read()
        assert store.size == 2 and store.heads() == {alice.did: 2}
        faults.on = None
        assert store.has(records[0].id) and store.holds(records[0]) and store.get(records[0].id) == records[0].raw
        assert store.id_at(alice.did, 2) == records[1].id
        store.append(records[2:] + [revoke])
        assert store.revoked(records[0].id)
        assert_stored_exactly(store, [*records, revoke])


def test_a_read_the_disk_fails_raises_a_store_error_which_the_services_catch(tmp_path):
    """It raised sqlite3.OperationalError, which gossip and sync do not catch as a storage failure
    (they catch StoreError and LedgerError): one I/O error on a read could stop the service, and so the node."""
    alice = Org()
    records = [alice.record() for _ in range(2)]
    with RecordStore.open(tmp_path) as store:
        store.append(records[:1])
        index, store._db = store._db, FailingReads(store._db)
        for read in (lambda: store.has(records[0].id), lambda: store.query(issuer=alice.did),
                     lambda: store.revoked_by(alice.did), store.flagged):
            with pytest.raises(StoreError, match=r"^records.index: cannot be read \(disk I/O error\)$"):
                read()
        store._db = index
        store.append(records[1:])
        assert_stored_exactly(store, records)


_READ_FAILURES = {  # SQLite's error -> what the read is refused with
    "failing disk": (sqlite_error("disk I/O error", sqlite3.SQLITE_IOERR_READ),
                     "records.index: cannot be read, as its storage failed (disk I/O error: a full disk, or one "
                     "failing or read-only): the file itself is not found corrupt; free space or fix the disk, then "
                     "try again"),
    "damaged file": (sqlite_error("database disk image is malformed", sqlite3.SQLITE_CORRUPT),
                     "records.index: cannot be read (database disk image is malformed)"),
}


@pytest.mark.parametrize("failure", _READ_FAILURES)
def test_each_read_of_the_index_tells_its_disk_failing_from_the_file_damaged(tmp_path, failure):
    """The store's reads, those of the index as last committed (a worker thread's) and those beside a running node
    (`audit export`, `audit check`, `key rotate`): a disk failing said `records.index: cannot be read (disk I/O
    error)`, as a damaged file does, where the opens of every store say the disk failed and that the file is not found
    corrupt (ledger.disk_failure)."""
    error, refusal = _READ_FAILURES[failure]
    alice = Org()
    records = [alice.record() for _ in range(2)]
    with RecordStore.open(tmp_path) as store:
        store.append(records)
    with RecordStore.open(tmp_path) as store:
        committed = store.committed()
        reader = RecordReader.open(tmp_path)
        store._db, committed._db, reader._db = (FailingReads(db, error)
                                                for db in (store._db, committed._db, reader._db))
        for read in (lambda: store.has(records[0].id), lambda: store.query(issuer=alice.did), store.flagged,
                     lambda: committed.revoked_by(alice.did, -1, 10),
                     lambda: list(committed.ids_of("vouch", before=2)),
                     lambda: list(reader.scan(issuer=alice.did, kind="vouch"))):
            with pytest.raises(StoreError) as refused:
                read()
            assert str(refused.value) == refusal
        committed.close()
        reader.close()


def _empty_ledger_wal(store: RecordStore) -> None:
    """Empty the ledger's WAL, so that its next appends write a few pages from offset 0 of it: under a low file size
    limit the ledger can be written and a commit of thousands of index rows cannot."""
    store.ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_an_index_commit_that_fails_refuses_the_batch_appended_after_it_and_no_other(tmp_path):
    """Before: the index was committed after the ledger append that filled the transaction, so the batch whose
    append failed to commit it was already in the ledger, answered refused."""
    alice = Org()
    records = [alice.record() for _ in range(gossip.store._INDEX_COMMIT_ROWS + 3)]
    stored = records[:gossip.store._INDEX_COMMIT_ROWS - 1]
    with RecordStore.open(tmp_path) as store:
        store.append(stored)
        _empty_ledger_wal(store)
        with files_cannot_grow(64 << 10):
            for record in records[len(stored):]:
                try:
                    store.append([record])
                except StoreError as error:
                    assert "cannot be written" in str(error)
                    break
                stored.append(record)
            else:
                pytest.fail("every append was taken")
            assert_stored_exactly(store, stored)
        store.append(records[len(stored):])
        assert_stored_exactly(store, records)
    with RecordStore.open(tmp_path) as store:
        assert_stored_exactly(store, records)


def test_closing_a_store_whose_index_cannot_be_committed_warns_and_loses_nothing(tmp_path, caplog):
    """Before: close raised the commit's error out of the node's shutdown."""
    alice = Org()
    records = [alice.record() for _ in range(gossip.store._INDEX_COMMIT_ROWS - 1)]
    store = RecordStore.open(tmp_path)
    store.append(records)
    _empty_ledger_wal(store)
    with files_cannot_grow(64 << 10), caplog.at_level(logging.WARNING, "gossip.store"):
        store.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"records.index: cannot be written (disk I/O error); no record of a refused batch is stored, and records "
        f"are taken again once the index can be written (a full disk: once it has room); the next start replays it "
        f"from {LEDGER_FILE}"]
    with RecordStore.open(tmp_path) as store:
        assert_stored_exactly(store, records)


def test_an_index_whose_disk_fails_as_it_opens_is_not_called_another_file(tmp_path):
    """A full disk, on which SQLite cannot size the index's -shm file (ledger.disk_failure), the records ledger's in
    place (a node killed, say, left it). Before: `records.index: not a record index: disk I/O error; remove it (and
    its -wal and -shm files) and it is rebuilt from the records ledger`, blaming a sound file."""
    alice = Org()
    records = [alice.record() for _ in range(3)]
    with RecordStore.open(tmp_path) as store:
        store.append(records)
    before = (tmp_path / gossip.store.INDEX_FILE).read_bytes()
    with Ledger.open(tmp_path / LEDGER_FILE), files_cannot_grow(4096), pytest.raises(StoreError) as refused:
        RecordStore.open(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path / gossip.store.INDEX_FILE}: cannot be opened, as its storage "
                                         "failed (disk I/O error: a full disk")
    assert "not a record index" not in str(refused.value) and "remove it" not in str(refused.value)
    assert (tmp_path / gossip.store.INDEX_FILE).read_bytes() == before
    with RecordStore.open(tmp_path) as store:  # sound: with room again it opens
        assert_stored_exactly(store, records)


def test_an_index_rebuilt_on_a_full_disk_is_refused_as_the_disk_s_failure(tmp_path):
    """The index removed, as the operator is told to when it is damaged, and its rebuild's first writes, past its
    marks (its WAL, its tables), refused by a full disk: the message must not send them to remove it again."""
    alice = Org()
    records = [alice.record() for _ in range(3)]
    with RecordStore.open(tmp_path) as store:
        store.append(records)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / (gossip.store.INDEX_FILE + suffix)).unlink(missing_ok=True)
    with Ledger.open(tmp_path / LEDGER_FILE), files_cannot_grow(4096), pytest.raises(StoreError) as refused:
        RecordStore.open(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path / gossip.store.INDEX_FILE}: cannot be opened, as its storage "
                                         "failed (disk I/O error: a full disk")
    with RecordStore.open(tmp_path) as store:  # with room again it is rebuilt
        assert_stored_exactly(store, records)


# --- the property -------------------------------------------------------------------------------------------

_ORGS = 3
_steps = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(0, _ORGS - 1), st.integers(1, 4)),
    st.tuples(st.just("fault"), st.sampled_from([None, "ABORT", "ROLLBACK", "ledger"])),
    st.tuples(st.just("read")),
    st.tuples(st.just("reopen")),
), max_size=30)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_steps)
@example(steps=[("append", 0, 2), ("fault", "ledger"), ("append", 1, 2), ("fault", None), ("append", 1, 1)])
@example(steps=[("append", 0, 2), ("fault", "ROLLBACK"), ("append", 1, 1), ("read",), ("fault", None), ("read",),
                ("append", 1, 1), ("reopen",)])
def test_appends_interleaved_with_failed_writes_store_each_batch_answered_once_and_no_refused_one(
        tmp_path_factory, monkeypatch, steps):
    """After each step and each reopen: the ledger holds exactly the batches answered, in order, the index names
    each at its place (some may be missing, until a read or append replays them; never another), and the heads are
    the ledger's. A read answers every stored record or raises StoreError. A refused batch is retried, as a client
    does, until it is taken. The index is committed every 8 rows, so that commits fall among the failures."""
    monkeypatch.setattr(gossip.store, "_INDEX_COMMIT_ROWS", 8)
    directory = tmp_path_factory.mktemp("store")
    orgs = [Org() for _ in range(_ORGS)]
    refused: dict[int, list[Record]] = {}  # org -> its batch last refused, retried next
    stored: list[Record] = []
    store = RecordStore.open(directory)
    faults = Faults(store)
    try:
        for step in steps:
            if step[0] == "append":
                _, org, size = step
                batch = refused.pop(org, None) or [orgs[org].record() for _ in range(size)]
                try:
                    store.append(batch)
                except (StoreError, LedgerError):
                    assert faults.on
                    refused[org] = batch
                else:
                    stored += batch
            elif step[0] == "fault":
                faults.on = step[1]
            elif step[0] == "read":
                behind = store._db.execute("SELECT COUNT(*) FROM records").fetchone()[0] < len(stored)
                try:
                    assert store.query(limit=len(stored) + 1) == [(i, r.raw) for i, r in enumerate(stored)]
                except StoreError:
                    assert behind and faults.on in ("ABORT", "ROLLBACK")
            else:
                store.close()
                store = RecordStore.open(directory)
                faults = Faults(store)
            _check(store, stored)
    finally:
        store.close()
    with RecordStore.open(directory) as store:
        assert_stored_exactly(store, stored)


def _check(store: RecordStore, stored: list[Record]) -> None:
    assert store.ledger.entries(0, store.size) == [r.raw for r in stored]
    assert store.heads() == {r.iss: r.seq for r in stored}
    indexed = store._db.execute("SELECT idx, id FROM records ORDER BY idx").fetchall()
    assert indexed == [(i, r.id) for i, r in enumerate(stored)][:len(indexed)]
