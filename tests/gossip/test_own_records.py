"""The records of a node's key that came from peers, listed in its data directory: counted across restarts until
acknowledged (gossip.own_records)."""

import itertools
import logging
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
from contextlib import closing, contextmanager
from pathlib import Path

from unittest.mock import ANY

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gossip.own_records import OWN_RECORDS_FILE, OwnRecords, OwnRecordsError
from gossip.replica import Replica
from gossip.store import RecordStore, StoreError
from vouching import Counts, DigestBody, issue_digests, org_body, record_id, vouch_body
from vouching.bodies import CATEGORIES, OUTCOMES

from ..factories import Org, new_did
from ..node.kill_points import killed_at
from .failing_reads import FailingReads, sqlite_error
from .own_records_old import OwnRecordsV1, OwnRecordsV2, OwnRecordsV3, OwnRecordsV4

PEER = "12D3KooWPeer"
OTHER_PEER = "12D3KooWOther"


@contextmanager
def opened(data_dir, key, now_ms=lambda: 1_700_000_000_000):
    """A replica over the records and the list in `data_dir`, as the node opens them."""
    with RecordStore.open(data_dir) as store, closing(OwnRecords.open(data_dir, now_ms, store)) as own:
        yield Replica(key, store, roots=(), max_hops=2, held_limit=100, own_records=own)


def signed_elsewhere(replica, n):
    """`n` records of `replica`'s key that it did not sign, following its head."""
    head = replica.store.head(replica.did)
    elsewhere = Org(key=replica.key, seq=head.seq, prev=head.id)
    return [elsewhere.record() for _ in range(n)]


def test_records_of_the_key_from_peers_stay_counted_across_a_restart_until_acknowledged(tmp_path, caplog):
    key = Org().key
    with opened(tmp_path, key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        records = signed_elsewhere(replica, 2)
        replica.accept(records, PEER)
        assert replica.own_from_peers == 2
    with opened(tmp_path, key) as replica:
        assert replica.own_from_peers == 2
        listed = replica.own_records.listed()
        assert [(r.number, r.id, r.iss, r.seq, r.accepted_ms, r.peer, r.acknowledged) for r in listed] == [
            (n, r.id, r.iss, r.seq, 1_700_000_000_000, PEER, False) for n, r in enumerate(records, 1)]
        with caplog.at_level(logging.WARNING, logger="gossip.own_records"):
            assert replica.own_records.acknowledge(listed[-1].number) == 2
        assert replica.own_from_peers == 0
        assert "acknowledged 2 record(s)" in caplog.text
    with opened(tmp_path, key) as replica:
        assert replica.own_from_peers == 0
        assert all(r.acknowledged for r in replica.own_records.listed())
        replica.accept(signed_elsewhere(replica, 1))  # a later one, through the API: no peer
        assert replica.own_from_peers == 1
        assert replica.own_records.listed()[-1].peer is None
    with opened(tmp_path, key) as replica:
        assert replica.own_from_peers == 1


def test_acknowledging_through_a_number_leaves_records_listed_later_counted(tmp_path):
    with opened(tmp_path, Org().key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        replica.accept(signed_elsewhere(replica, 2), PEER)
        first, _ = replica.own_records.listed()
        assert replica.own_records.acknowledge(first.number) == 1
        assert replica.own_records.acknowledge(first.number) == 0  # again: nothing new
        assert replica.own_from_peers == 1


def test_records_the_node_signs_are_not_listed(tmp_path):
    with opened(tmp_path, Org().key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        replica.accept([Org().record()], PEER)  # another org's
        assert replica.own_records.listed() == [] and replica.own_from_peers == 0


def test_a_record_is_listed_before_the_store_takes_it(tmp_path):
    """A crash between the two cannot store a record of the key unlisted: the list is written first. A row of a
    record the store then lacks (the crash came before its append) is dropped at the next open."""
    key = Org().key
    with opened(tmp_path, key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        (record,) = signed_elsewhere(replica, 1)
        seen = []
        replica.store.append = lambda records: seen.append(replica.own_records.listed())  # the crash: never stored
        replica.accept([record], PEER)
        assert [r.id for r in seen[0]] == [record.id]
    with opened(tmp_path, key) as replica:
        assert replica.own_records.listed() == [] and replica.own_from_peers == 0
        replica.accept([record], PEER)  # listed again under a new number, which no earlier acknowledgement covers
        assert [r.number for r in replica.own_records.listed()] == [2]
        assert replica.own_records.acknowledge(1) == 0 and replica.own_from_peers == 1


def test_a_list_that_cannot_be_written_refuses_the_batch(tmp_path):
    key = Org().key
    with opened(tmp_path, key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        (record,) = signed_elsewhere(replica, 1)
        replica.own_records._db.close()
        with pytest.raises(StoreError, match=OWN_RECORDS_FILE):
            replica.accept([record], PEER)
        assert not replica.store.has(record.id)


def test_a_data_directory_from_before_the_list_starts_with_none(tmp_path):
    key = Org().key
    with RecordStore.open(tmp_path) as store:
        replica = Replica(key, store, roots=(), max_hops=2, held_limit=100)  # in memory: nothing in the directory
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        replica.accept(signed_elsewhere(replica, 1), PEER)
    assert not (tmp_path / OWN_RECORDS_FILE).exists()
    with opened(tmp_path, key) as replica:
        assert replica.own_from_peers == 0 and replica.own_records.listed() == []
    with closing(sqlite3.connect(tmp_path / OWN_RECORDS_FILE)) as db:
        assert db.execute("SELECT COUNT(*) FROM own_records").fetchone() == (0,)


def _listed_by_version_1(data_dir, key):
    """A data directory whose list version 1 wrote (tests/gossip/own_records_old.py) as its node did, copied as a kill
    leaves it (rows in the -wal file): three records of `key` from peers, the first acknowledged, the last submitted
    through the API (no peer), and a row of one a refused batch left (not stored). Each row accepted a ms later."""
    def write(replica, records, running):
        v1 = OwnRecordsV1(running, itertools.count(1_700_000_000_000).__next__)
        for batch, peer, stored in ((records[:2], PEER, True), (records[2:3], None, True), (records[3:], PEER, False)):
            v1.add(batch, peer)
            if stored:
                replica.accept(batch, peer)
        v1.acknowledge(records[0].seq)
        return v1.db

    return _listed_by_an_earlier_version(data_dir, key, 4, write)[:3]


def _listed_by_an_earlier_version(data_dir, key, count, write):
    """`count` records of `key` signed elsewhere, and a data directory whose list an earlier version's code wrote with
    them (`write(replica, records, directory)`, returning its connection, still open), copied as a kill leaves it
    (rows in the -wal file); the records."""
    running = data_dir.parent / "running"
    running.mkdir()
    with RecordStore.open(running) as store:
        replica = Replica(key, store, roots=(), max_hops=2, held_limit=100)
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        records = signed_elsewhere(replica, count)
        db = write(replica, records, running)
    shutil.copytree(running, data_dir)
    db.close()
    assert (data_dir / f"{OWN_RECORDS_FILE}-wal").stat().st_size > 0
    return records


def _file_state(data_dir):
    """user_version, the tables and every row of the list, read without changing it."""
    with closing(sqlite3.connect(f"{(data_dir / OWN_RECORDS_FILE).as_uri()}?mode=ro", uri=True)) as db:
        return (db.execute("PRAGMA user_version").fetchone(),
                sorted(db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")),
                {name: db.execute(f"SELECT * FROM {name}").fetchall() for (name,) in
                 db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")})


def _shape(data_dir):
    """Each table of the list with its columns (name, type, not null, default, primary key) and indexes."""
    with closing(sqlite3.connect(f"{(data_dir / OWN_RECORDS_FILE).as_uri()}?mode=ro", uri=True)) as db:
        return {name: (db.execute(f"PRAGMA table_info({name})").fetchall(),
                       sorted(db.execute(f"SELECT [unique], origin FROM pragma_index_list('{name}')")))
                for (name,) in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}


def _made_new(directory):
    """The shape of a list this version makes in a new data directory."""
    directory.mkdir()
    with opened(directory, Org().key):
        pass
    return _shape(directory)


def test_a_list_version_1_wrote_is_upgraded_in_place_keeping_what_was_acknowledged(tmp_path):
    """Version 1 keyed rows by seq alone: its rows are numbered in seq order, each with its record's key, and a row
    of a record the ledger lacks is dropped; before, the node refused to start on such a file."""
    key = Org().key
    data_dir = tmp_path / "node"
    records = _listed_by_version_1(data_dir, key)
    with opened(data_dir, key) as replica:
        assert [(r.number, r.id, r.iss, r.seq, r.accepted_ms, r.peer, r.acknowledged)
                for r in replica.own_records.listed()] == [
            (1, records[0].id, replica.did, records[0].seq, 1_700_000_000_000, PEER, True),
            (2, records[1].id, replica.did, records[1].seq, 1_700_000_000_001, PEER, False),
            (3, records[2].id, replica.did, records[2].seq, 1_700_000_000_002, None, False)]
        assert replica.own_from_peers == 2
        replica.accept(signed_elsewhere(replica, 1), PEER)
        assert [r.number for r in replica.own_records.listed()] == [1, 2, 3, 4]
    assert _file_state(data_dir)[0] == (5,) and _shape(data_dir) == _made_new(tmp_path / "new")
    with opened(data_dir, key) as replica:
        assert [r.number for r in replica.own_records.listed()] == [1, 2, 3, 4] and replica.own_from_peers == 3


@pytest.mark.parametrize("dies", [True, False], ids=["killed", "raising"])
def test_an_upgrade_stopped_part_way_leaves_the_list_as_version_1_wrote_it(tmp_path, dies):
    """Killed, or the records index failing to answer, at the upgrade's second row: the file keeps version 1's table
    and rows, and the next open upgrades it whole."""
    key = Org().key
    data_dir = tmp_path / "node"
    records = _listed_by_version_1(data_dir, key)
    before = _file_state(data_dir)

    def open_failing_at_the_second_row():
        with RecordStore.open(data_dir) as store:
            rows, kind_and_issuer = iter(range(2)), store.kind_and_issuer
            store.kind_and_issuer = lambda rid: kind_and_issuer(rid) if next(rows, None) == 0 else _fail(dies)
            OwnRecords.open(data_dir, lambda: 0, store)

    _stopped_part_way(dies, open_failing_at_the_second_row, "cannot be read")
    assert _file_state(data_dir) == before
    with opened(data_dir, key) as replica:
        assert [(r.number, r.id) for r in replica.own_records.listed()] == [(n, r.id) for n, r in enumerate(records, 1)]


def _stopped_part_way(dies, open_list, refusal):
    """Run `open_list`, which stops part way: in a forked child that SIGKILLs itself there if `dies`, else raising
    StoreError matching `refusal`."""
    if dies:
        assert killed_at(sys.maxsize, open_list)
    else:
        with pytest.raises(StoreError, match=refusal):
            open_list()


def _fail(dies):
    if dies:
        os.kill(os.getpid(), signal.SIGKILL)
    raise StoreError("records.index: cannot be read (disk I/O error)")


def test_a_held_record_of_the_key_released_by_one_the_node_signs_is_listed_with_the_peer_it_came_from(tmp_path):
    """A record of the key held for a missing predecessor goes into the store with the batch that brings the
    predecessor, even one the node signs itself (the same bytes: digests of an epoch are signed deterministically),
    and is listed with the peer that sent it."""
    with opened(tmp_path, Org().key) as replica:
        head = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        bodies, ts = [_digest(new_did())], 1_700_000_000_000
        (same,) = issue_digests(replica.key, bodies, seq=head.seq + 1, prev=head.id, ts=ts)
        after = Org(key=replica.key, seq=same.seq, prev=same.id).record()
        assert replica.accept([after], PEER).held == 1
        replica.issue_digests(bodies, ts=ts)
        assert replica.store.has(after.id)
        assert [(r.id, r.peer) for r in replica.own_records.listed()] == [(after.id, PEER)]
        assert replica.own_from_peers == 1


def test_a_held_record_of_the_key_is_listed_with_the_peer_it_came_from_not_the_one_that_released_it(tmp_path):
    """Held from one peer (gossip, say), released by the predecessor another peer sent (sync): each record is listed
    with the peer that sent it."""
    with opened(tmp_path, Org().key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        first, second = signed_elsewhere(replica, 2)
        assert replica.accept([second], PEER).held == 1
        assert replica.accept([second], OTHER_PEER).duplicates == 1  # the same, held already: still PEER's
        assert replica.accept([first], OTHER_PEER).accepted == [first, second]
        assert [(r.id, r.peer) for r in replica.own_records.listed()] == [(first.id, OTHER_PEER), (second.id, PEER)]


def _digest(agent):
    return DigestBody(agent, 1_699_992_000_000, 3_600_000, Counts(tuple(zip(OUTCOMES, (2, 1, 0, 0)))),
                      Counts(tuple(zip(CATEGORIES, (0, 0, 0, 3, 0, 0)))), Counts(tuple(zip(OUTCOMES, (0, 1, 0, 0)))),
                      3, bytes(32), None)


def _refuse(replica, record):
    """Send `record` from PEER in a batch the store refuses (a full disk): listed first, it leaves its row."""
    append = replica.store.append
    replica.store.append = lambda records: (_ for _ in ()).throw(StoreError("disk full"))
    with pytest.raises(StoreError):
        replica.accept([record], PEER)
    replica.store.append = append


def test_a_record_at_the_seq_of_one_a_refused_batch_listed_is_listed_too(tmp_path):
    """A batch the store refused leaves its row (its record unstored) until the next open drops it: another record
    of the key at that seq, stored later, has a row of its own, and stays listed across the restart."""
    key = Org().key
    with opened(tmp_path, key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        (refused,) = signed_elsewhere(replica, 1)
        (stored,) = signed_elsewhere(replica, 1)  # the same seq, another record
        _refuse(replica, refused)
        replica.accept([stored], PEER)
        assert replica.store.has(stored.id)
        assert stored.id in [r.id for r in replica.own_records.listed()]
    with opened(tmp_path, key) as replica:
        assert [r.id for r in replica.own_records.listed()] == [stored.id] and replica.own_from_peers == 1


def test_a_record_a_refused_batch_listed_that_comes_back_conflicting_is_listed_as_a_conflict(tmp_path, caplog):
    """The row a refused batch left (its record unstored, dropped at the next open) is no listing of that record once
    another takes its seq: when it comes back it conflicts with that one, proof that the key signed twice, and is
    listed as such with its bytes, said at CRITICAL and kept across a restart. Before: it was taken as listed
    already, said nothing, and its row was dropped at the next open, the count going down."""
    key = Org().key
    with opened(tmp_path, key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        (refused,) = signed_elsewhere(replica, 1)
        _refuse(replica, refused)
        seen = replica.own_records.listed()[-1].number  # the operator looked then
        ours = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))  # at the refused record's seq
        assert ours.seq == refused.seq
        with caplog.at_level(logging.CRITICAL, logger="gossip.replica"):
            replica.accept([refused], OTHER_PEER)
        assert [r.getMessage() for r in caplog.records if refused.id.hex() in r.getMessage()]
        assert replica.own_records.acknowledge(seen) == 0  # listed anew, after what the operator saw
        assert _rows(replica) == [(refused.id, ours.seq, OTHER_PEER, ours.id, refused.raw, False)]
        assert replica.own_from_peers == 1 and replica.own_records.unacknowledged_conflicts == 1
    with opened(tmp_path, key) as replica:
        assert _rows(replica) == [(refused.id, ours.seq, OTHER_PEER, ours.id, refused.raw, False)]
        assert replica.own_from_peers == 1 and replica.own_records.unacknowledged_conflicts == 1


@pytest.mark.parametrize("seen", [False, True], ids=["unacknowledged", "acknowledged"])
def test_a_record_a_refused_batch_listed_that_comes_back_conflicting_with_no_room_is_counted_not_listed(
        tmp_path, monkeypatch, caplog, seen):
    """The list full of unacknowledged conflicts, the record whose row a refused batch left comes back conflicting with
    the one the node signed at its seq since: counted in conflicts_unlisted and said at CRITICAL, and its row goes at
    once, whether the operator acknowledged it or not, so that it is listed or counted, not both, and
    own_records_from_peers counts it no more. Before: its row stayed listed, unacknowledged still, until the next start
    dropped it: the operator was alerted of it twice, and the counts disagreed with the list until a restart."""
    monkeypatch.setattr("gossip.own_records.MAX_CONFLICTS", 1)
    key = Org().key
    with opened(tmp_path, key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        (refused,) = signed_elsewhere(replica, 1)
        _refuse(replica, refused)
        if seen:
            replica.own_records.acknowledge(1)
        ours, (first,) = _forked(replica, 1)  # at the refused record's seq, and a conflict taking the only room
        replica.accept([first], PEER)
        assert ours.seq == refused.seq and replica.own_from_peers == 2 - seen
        with caplog.at_level(logging.CRITICAL, logger="gossip.replica"):
            replica.accept([refused], OTHER_PEER)
        assert "1 more record(s)" in caplog.text and replica.own_records.unlisted_conflicts == 1
        assert _rows(replica) == [(first.id, ours.seq, PEER, ours.id, first.raw, False)]
        assert replica.own_from_peers == 1 and replica.own_records.unacknowledged_conflicts == 1
        replica.accept([refused], PEER)  # again: counted already
        assert replica.own_records.unlisted_conflicts == 1 and len(replica.own_records.listed()) == 1
    with opened(tmp_path, key) as replica:
        assert _rows(replica) == [(first.id, ours.seq, PEER, ours.id, first.raw, False)]
        assert replica.own_from_peers == 1 and replica.own_records.unlisted_conflicts == 1


def test_records_of_a_new_key_are_listed_apart_from_the_earlier_key_s_and_acknowledged_only_once_seen(tmp_path):
    """After a rotation the new key's records start again at seq 1: one at a seq listed for the earlier key is
    listed, and an acknowledgement through the number the operator saw before it leaves it counted."""
    old, new = Org().key, Org().key
    with opened(tmp_path, old) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        before = signed_elsewhere(replica, 2)
        replica.accept(before, PEER)
        seen = replica.own_records.listed()[-1].number
        replica.issue("org", org_body("org", "test", [], next=Org(key=new).did))
    with RecordStore.open(tmp_path) as store:
        Replica(new, store, roots=(), max_hops=2, held_limit=100).issue("org", org_body("org", "test", [],
                                                                                        prior=Org(key=old).did))
    with opened(tmp_path, new) as replica:
        after = signed_elsewhere(replica, 2)
        replica.accept(after, PEER)
        assert [(r.iss, r.seq, r.id) for r in replica.own_records.listed()] == [
            (r.iss, r.seq, r.id) for r in before + after]
        assert {r.seq for r in after} <= {r.seq for r in before}
        assert replica.own_from_peers == 4
        assert replica.own_records.acknowledge(seen) == 2
        assert replica.own_from_peers == 2
        assert [r.acknowledged for r in replica.own_records.listed()] == [True, True, False, False]


def _conflicting(replica, seq, key=None):
    """A record of `replica`'s key (or `key`) at `seq` that it did not sign, following the one it holds before it."""
    iss = Org(key=key or replica.key)
    before = replica.store.at(iss.did, seq - 1) if seq > 1 else None
    return iss.fork(seq, None if before is None else record_id(before))


def _forked(replica, n):
    """A record `replica` signs, and `n` records of its key at that seq that it did not sign."""
    ours = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
    return ours, [_conflicting(replica, ours.seq) for _ in range(n)]


def _rows(replica):
    """The listed rows, each with its conflicting record's bytes (None for one the ledger stores)."""
    return [(r.id, r.seq, r.peer, r.conflicts_with, replica.own_records.cose(r.number), r.acknowledged)
            for r in replica.own_records.listed()]


def test_a_record_of_the_key_conflicting_with_one_the_node_holds_is_said_listed_with_its_bytes_and_kept(tmp_path,
                                                                                                    caplog):
    """Proof that the key signed twice at one seq: not stored, no evidence signed against the node's own org, but
    said at CRITICAL (once), listed with its bytes and the id of the one it conflicts with, counted across a restart
    (which keeps the row though the ledger lacks its record) until acknowledged."""
    key = Org().key
    with opened(tmp_path, key) as replica:
        ours = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        theirs = _conflicting(replica, ours.seq)
        with caplog.at_level(logging.CRITICAL, logger="gossip.replica"):
            assert replica.accept([theirs], PEER).equivocations == [(ours.raw, theirs)]
            replica.accept([theirs], OTHER_PEER)  # again, from another peer: listed once, said once
        assert not replica.store.has(theirs.id) and replica.store.size == 1  # and no equivocation record signed
        assert _rows(replica) == [(theirs.id, ours.seq, PEER, ours.id, theirs.raw, False)]
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(said) == 1 and theirs.id.hex() in said[0] and ours.id.hex() in said[0]
        assert "vouchnet key rotate" in said[0] and PEER in said[0]
        assert replica.own_from_peers == 1 and replica.own_records.unacknowledged_conflicts == 1
    with opened(tmp_path, key) as replica:
        assert _rows(replica) == [(theirs.id, ours.seq, PEER, ours.id, theirs.raw, False)]
        assert replica.own_from_peers == 1 and replica.own_records.unacknowledged_conflicts == 1
        (row,) = replica.own_records.listed()
        assert replica.own_records.cose(row.number) == theirs.raw and replica.own_records.cose(row.number + 1) is None
        assert row.to_json(stored=False)["conflicts_with"] == ours.id.hex()
        assert replica.own_records.acknowledge(row.number) == 1
        assert replica.own_from_peers == 0 and replica.own_records.unacknowledged_conflicts == 0
        replica.accept([theirs], PEER)  # acknowledged, and seen again: not listed again, not counted
        assert replica.own_from_peers == 0 and len(replica.own_records.listed()) == 1
    with opened(tmp_path, key) as replica:
        assert replica.own_from_peers == 0 and [r.acknowledged for r in replica.own_records.listed()] == [True]


def test_a_conflicting_record_the_list_cannot_take_is_said_with_the_error_and_the_outcome_stands(tmp_path, caplog,
                                                                                                   monkeypatch):
    """own_records.db failing as a conflict came (a full disk): the error reached gossip's "not stored; gossip or sync
    brings them again", though the batch was stored and the record, never stored, comes again from no one; nothing
    said the key had signed twice. Now the batch's outcome stands and the conflict is said at CRITICAL, with the
    error, each time it comes."""
    key = Org().key
    with opened(tmp_path, key) as replica:
        ours = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        theirs = _conflicting(replica, ours.seq)

        def full(conflicts):
            raise OwnRecordsError(f"{OWN_RECORDS_FILE}: cannot be written (database or disk is full)")

        monkeypatch.setattr(replica.own_records, "add_conflicts", full)
        with caplog.at_level(logging.CRITICAL, logger="gossip.replica"):
            assert replica.accept([theirs], PEER).equivocations == [(ours.raw, theirs)]
            assert replica.accept([theirs], OTHER_PEER).equivocations == [(ours.raw, theirs)]
        assert not replica.store.has(theirs.id) and replica.store.size == 1
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(said) == 2 and all(theirs.id.hex() in line and ours.id.hex() in line for line in said)
        assert PEER in said[0] and OTHER_PEER in said[1]
        assert said[0].endswith(f"NOT listed, nor counted: {OWN_RECORDS_FILE}: cannot be written (database or disk "
                                "is full); this line is all this node keeps of it")
        assert _rows(replica) == []


def test_a_record_of_the_key_conflicting_with_one_held_for_a_missing_predecessor_is_listed(tmp_path):
    with opened(tmp_path, Org().key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        first, held = signed_elsewhere(replica, 2)
        other = Org(key=replica.key).fork(held.seq, first.id)
        assert replica.accept([held], PEER).held == 1
        assert replica.accept([other], OTHER_PEER).equivocations == [(held.raw, other)]
        assert _rows(replica) == [(other.id, held.seq, OTHER_PEER, held.id, other.raw, False)]
        assert replica.own_records.conflicts_with_cose(1) == held.raw  # the ledger has none of a held record's
        replica.accept([first], PEER)  # releases the held one: both stored and listed, the other kept
        assert [(r.id, r.conflicts_with) for r in replica.own_records.listed()] == [
            (other.id, held.id), (first.id, None), (held.id, None)]
        assert replica.own_from_peers == 3


def test_the_bytes_of_a_held_record_one_of_the_key_conflicts_with_are_kept_once_it_is_dropped(tmp_path):
    """The held record is refused when its predecessor comes (it does not follow it), and the ledger never holds it:
    its bytes stay with the conflicting record's, across a restart, so that both signatures of the key at that seq
    can be shown. Before: they were kept nowhere. One conflicting with a stored record keeps none (the ledger has
    them)."""
    key = Org().key
    with opened(tmp_path, key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        (first,) = signed_elsewhere(replica, 1)
        held = Org(key=key).fork(first.seq + 1, bytes(32))  # follows no record: held, then refused by `first`
        theirs = Org(key=key).fork(first.seq + 1, first.id)
        assert replica.accept([held], PEER).held == 1
        replica.accept([theirs], OTHER_PEER)
        assert replica.accept([first], PEER).rejected == [(held, ANY)] and replica.held_count == 0
        stored = _conflicting(replica, first.seq)
        replica.accept([stored], OTHER_PEER)
    with opened(tmp_path, key) as replica:
        assert not replica.store.has(held.id)
        assert [(r.id, r.conflicts_with) for r in replica.own_records.listed()] == [
            (theirs.id, held.id), (first.id, None), (stored.id, first.id)]
        assert replica.own_records.cose(1) == theirs.raw and replica.own_records.conflicts_with_cose(1) == held.raw
        assert replica.own_records.cose(3) == stored.raw and replica.own_records.conflicts_with_cose(3) is None


def _held_and_a_record_conflicting(replica):
    """A record of `replica`'s key following its head, `first`, not yet sent, one at the seq after it sent and held
    (following no record, refused once `first` comes), and one following `first` at that seq, not yet sent: it
    conflicts with the held one. Returns the three."""
    (first,) = signed_elsewhere(replica, 1)
    held = Org(key=replica.key).fork(first.seq + 1, bytes(32))
    assert replica.accept([held], PEER).held == 1
    return first, held, Org(key=replica.key).fork(first.seq + 1, first.id)


@pytest.mark.parametrize("unlisted", ["no room", "row dropped"])
def test_a_conflicting_record_counted_not_listed_then_stored_is_listed_as_stored_and_raises_no_alert_again(
        tmp_path, monkeypatch, unlisted):
    """One conflicting with a record the node held only, counted in conflicts_unlisted (the list had no room for it,
    or dropped its acknowledged row to make room), then stored when it comes again once the held one was dropped: it
    is listed, as a record of the ledger, acknowledged, across a restart, its conflict counted still, once. Before: it
    was listed as a new unacknowledged record of the key from peers, the alert raised again for what was counted."""
    monkeypatch.setattr("gossip.own_records.MAX_CONFLICTS", 1)
    monkeypatch.setattr("gossip.own_records.MAX_CONFLICT_ROWS", 2)
    key = Org().key
    with opened(tmp_path, key) as replica:
        ours, forks = _forked(replica, 3)
        first, held, theirs = _held_and_a_record_conflicting(replica)
        replica.accept(forks[:1], PEER)
        if unlisted == "row dropped":
            replica.own_records.acknowledge(1)
            replica.accept([theirs], OTHER_PEER)  # listed, takes the bytes of the first
            replica.own_records.acknowledge(2)
            replica.accept(forks[1:2], PEER)  # drops the bytes of `theirs`, then the row of the first
            replica.own_records.acknowledge(3)
            replica.accept(forks[2:], PEER)  # drops the row of `theirs`
            assert theirs.id not in [r.id for r in replica.own_records.listed()]
        else:
            replica.accept([theirs], OTHER_PEER)  # no room: the first is not acknowledged
            replica.own_records.acknowledge(1)
        counted = replica.own_records.unlisted_conflicts
        assert replica.accept([first], PEER).rejected == [(held, ANY)]
        unacknowledged = replica.own_from_peers
        assert replica.accept([theirs], OTHER_PEER).accepted == [theirs]
        assert replica.own_from_peers == unacknowledged and replica.own_records.unlisted_conflicts == counted
    with opened(tmp_path, key) as replica:
        (row,) = [r for r in replica.own_records.listed() if r.id == theirs.id]
        assert (row.seq, row.peer, row.acknowledged, row.conflicts_with) == (theirs.seq, OTHER_PEER, True, None)
        assert replica.own_from_peers == unacknowledged and replica.own_records.unlisted_conflicts == counted
        assert replica.store.has(theirs.id) and replica.own_records.cose(row.number) is None


def test_a_counted_conflict_whose_stored_batch_was_refused_coming_back_conflicting_again_is_counted_not_listed(
        tmp_path, monkeypatch):
    """One counted in conflicts_unlisted (no room), then accepted once the held record it conflicted with was dropped,
    in a batch the store refused (its row left, unstored), comes back conflicting with another record of the key
    stored at its seq since: counted still, once, and its row goes at once: listed or counted, not both. Before: it
    was skipped as counted already, its row left listed as a record of the ledger it is not, until the next start."""
    monkeypatch.setattr("gossip.own_records.MAX_CONFLICTS", 1)
    key = Org().key
    with opened(tmp_path, key) as replica:
        _, forks = _forked(replica, 1)
        first, _, theirs = _held_and_a_record_conflicting(replica)
        replica.accept(forks, PEER)  # the one room taken, unacknowledged
        replica.accept([theirs], OTHER_PEER)  # conflicts with the held one: no room, counted
        counted = replica.own_records.unlisted_conflicts
        replica.accept([first], PEER)  # drops the held one
        _refuse(replica, theirs)
        stored_since = Org(key=key).fork(first.seq + 1, first.id)
        assert replica.accept([stored_since], PEER).accepted == [stored_since]
        replica.accept([theirs], OTHER_PEER)
        assert theirs.id not in [r.id for r in replica.own_records.listed()]
        assert replica.own_records.unlisted_conflicts == counted
    with opened(tmp_path, key) as replica:
        assert theirs.id not in [r.id for r in replica.own_records.listed()]
        assert replica.own_records.unlisted_conflicts == counted


def test_a_record_of_an_earlier_key_of_the_org_conflicting_with_one_the_node_holds_is_listed(tmp_path):
    old, new = Org().key, Org().key
    with opened(tmp_path, old) as replica:
        ours = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        replica.issue("org", org_body("org", "test", [], next=Org(key=new).did))
    with RecordStore.open(tmp_path) as store:
        Replica(new, store, roots=(), max_hops=2, held_limit=100).issue("org", org_body("org", "test", [],
                                                                                        prior=Org(key=old).did))
    with opened(tmp_path, new) as replica:
        theirs = _conflicting(replica, ours.seq, key=old)
        replica.accept([theirs], PEER)
        assert _rows(replica) == [(theirs.id, ours.seq, PEER, ours.id, theirs.raw, False)]
        assert replica.own_records.listed()[0].iss == Org(key=old).did and replica.own_from_peers == 1


def test_a_rotation_of_the_key_at_a_seq_the_node_holds_is_listed_and_not_contested_in_vain(tmp_path, caplog):
    with opened(tmp_path, Org().key) as replica:
        ours = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        rotation = Org(key=replica.key).sign("org", org_body("org", "test", [], next=Org().did), seq=ours.seq,
                                             prev=None)
        with caplog.at_level(logging.CRITICAL, logger="gossip.replica"):
            replica.accept([rotation], PEER)
        assert _rows(replica) == [(rotation.id, ours.seq, PEER, ours.id, rotation.raw, False)]
        assert replica.store.size == 1 and "Contesting" not in caplog.text and rotation.id.hex() in caplog.text


def test_conflicting_records_past_the_bound_are_counted_once_each_across_restarts_and_said_but_not_listed(
        tmp_path, caplog, monkeypatch):
    """Counted in the file: a restart keeps the count, and one counted already, sent again (after the restart too), is
    not counted again. Before, the count was kept in memory: 0 after a restart, and one resent counted again."""
    monkeypatch.setattr("gossip.own_records.MAX_CONFLICTS", 2)
    key = Org().key
    with opened(tmp_path, key) as replica:
        _, forks = _forked(replica, 5)
        with caplog.at_level(logging.CRITICAL, logger="gossip.replica"):
            replica.accept(forks[:3], PEER)
            replica.accept(forks[:1] + forks[2:4], PEER)  # listed, counted, and one more past the bound
        assert [r.id for r in replica.own_records.listed()] == [f.id for f in forks[:2]]
        assert replica.own_from_peers == 2 and replica.own_records.unlisted_conflicts == 2
        assert sum("not listed" in r.getMessage() for r in caplog.records) == 2
    with opened(tmp_path, key) as replica:
        assert replica.own_records.conflicts_kept == 2 and replica.own_records.unlisted_conflicts == 2
        replica.accept(forks[2:], OTHER_PEER)
        assert len(replica.own_records.listed()) == 2 and replica.own_records.unlisted_conflicts == 3
    with opened(tmp_path, key) as replica:
        assert replica.own_records.unlisted_conflicts == 3 and replica.own_from_peers == 2


def test_acknowledged_conflicts_make_room_for_later_ones_dropping_their_bytes_then_their_rows_oldest_first(
        tmp_path, monkeypatch):
    """A later compromise, once the operator acknowledged the first, is listed with its bytes: those of the oldest
    acknowledged conflicting record are dropped to make room, and past MAX_CONFLICT_ROWS its row, counted as not
    listed then; never an unacknowledged one's. Each conflicting record is listed or counted, not both, across
    restarts, and the file stays bounded however often the operator acknowledges. Before: the list, full of
    acknowledged rows, listed no later conflict, and kept none of its bytes."""
    monkeypatch.setattr("gossip.own_records.MAX_CONFLICTS", 2)
    monkeypatch.setattr("gossip.own_records.MAX_CONFLICT_ROWS", 3)
    key = Org().key
    with opened(tmp_path, key) as replica:
        ours, forks = _forked(replica, 6)
        replica.accept(forks[:3], PEER)  # the third finds no room: counted
        assert replica.own_records.acknowledge(2) == 2
        replica.accept(forks[3:4], PEER)
        assert _kept(replica) == [(1, None), (2, forks[1].raw), (3, forks[3].raw)]
    with opened(tmp_path, key) as replica:
        assert _kept(replica) == [(1, None), (2, forks[1].raw), (3, forks[3].raw)]
        assert (replica.own_records.unlisted_conflicts, replica.own_records.unacknowledged_conflicts) == (1, 1)
        replica.accept(forks[:4], OTHER_PEER)  # listed or counted already: nothing changes
        replica.accept(forks[4:5], PEER)  # the first row goes (counted), the second's bytes
        assert _kept(replica) == [(2, None), (3, forks[3].raw), (4, forks[4].raw)]
        assert replica.own_records.unlisted_conflicts == 2
        replica.accept(forks[:1] + forks[5:], PEER)  # the first, counted; no room: only unacknowledged rows keep bytes
        assert _kept(replica) == [(2, None), (3, forks[3].raw), (4, forks[4].raw)]
        assert replica.own_records.unlisted_conflicts == 3 and replica.own_from_peers == 2
        for _ in range(5):  # an incident after each acknowledgement
            replica.own_records.acknowledge(replica.own_records.listed()[-1].number)
            replica.accept([_conflicting(replica, ours.seq)], PEER)
            assert len(_kept(replica)) == 3 and [cose for _, cose in _kept(replica)].count(None) == 1
        assert replica.own_records.unlisted_conflicts == 8 and replica.own_from_peers == 1
    with opened(tmp_path, key) as replica, closing(sqlite3.connect(tmp_path / OWN_RECORDS_FILE)) as db:
        assert db.execute("SELECT COUNT(*) FROM own_records").fetchone() == (3,)
        assert db.execute("SELECT COUNT(*) FROM conflicting_bytes").fetchone() == (2,)
        assert (replica.own_records.conflicts_kept, replica.own_records.conflict_rows) == (2, 3)


_THIEF = Org()
_FORKS = [_THIEF.fork(2, bytes(32)) for _ in range(12)]  # one key's records at one seq: each conflicts with the rest


_CONFLICT = st.tuples(st.just("conflict"), st.integers(0, len(_FORKS) - 1))


def _stepped(own, action, fork, directory, store):
    """The list `own` after a step of the property tests below: fork `fork` sent ("conflict"; an odd one conflicting
    with a record the node only held, whose bytes it keeps too, an even one with a record stored), the last row
    acknowledged, or the node restarted (the list opened again: the one returned); any other action, nothing."""
    if action == "conflict":
        held = bytes([fork]) * 8 if fork % 2 else None
        own.add_conflicts([(_FORKS[fork], bytes(32), held, PEER)])
    elif action == "acknowledge" and (rows := own.listed()):
        own.acknowledge(rows[-1].number)
    elif action == "restart":
        own.close()
        return OwnRecords.open(Path(directory), lambda: 0, store)
    return own


@settings(max_examples=150)
@given(steps=st.lists(st.one_of(_CONFLICT, _CONFLICT, st.just(("acknowledge", 0)), st.just(("restart", 0))),
                      max_size=40))
def test_the_list_of_conflicts_stays_bounded_and_keeps_every_unacknowledged_one_s_bytes(steps):
    """Whatever conflicting records come, again or not, however often the operator acknowledges and the node
    restarts: the rows keeping bytes and the rows stay within their bounds; a row not acknowledged keeps its bytes and
    its place; bytes and rows go oldest first; each record is listed or counted, not both; and which rows keep bytes,
    their own and the held record's they conflict with, is told as reading them does (`keeping_bytes`)."""
    with tempfile.TemporaryDirectory() as directory, RecordStore.open(Path(directory)) as store, \
            pytest.MonkeyPatch.context() as patched:
        patched.setattr("gossip.own_records.MAX_CONFLICTS", 2)
        patched.setattr("gossip.own_records.MAX_CONFLICT_ROWS", 4)
        own = OwnRecords.open(Path(directory), lambda: 0, store)
        sent: set[bytes] = set()
        unseen: dict[int, bytes] = {}  # the unacknowledged rows, each with its record's bytes
        gone = 0  # the highest number of a row that left the list
        try:
            for action, fork in steps:
                if action == "conflict":
                    sent.add(_FORKS[fork].id)
                own = _stepped(own, action, fork, directory, store)
                rows = own.listed()
                kept = {r.number: own.cose(r.number) for r in rows if own.cose(r.number) is not None}
                assert len(kept) == own.conflicts_kept <= 2 and len(rows) == own.conflict_rows <= 4
                keeping = {n: own.conflicts_with_cose(n) is not None for n in kept}
                assert own.keeping_bytes(after=0, through=2**63 - 1) == keeping
                assert own.keeping_bytes(after=min(kept, default=0), through=max(kept, default=0) - 1) == {
                    n: held for n, held in keeping.items() if min(kept) < n < max(kept)}
                assert all(kept.get(n) == cose for n, cose in unseen.items())  # kept, and listed
                unseen = {r.number: kept[r.number] for r in rows if not r.acknowledged}
                assert own.unacknowledged_conflicts == own.unacknowledged == len(unseen)
                assert all(r.acknowledged for r in rows if r.number not in kept)
                assert max((r.number for r in rows if r.number not in kept), default=0) < min(kept, default=2**63)
                gone = max([gone, *(n for n in range(1, max(kept, default=0)) if own.row(n) is None)])
                assert gone < min((r.number for r in rows), default=2**63)
                assert not _counted(directory) & {r.id for r in rows}
                assert len(rows) + own.unlisted_conflicts == len(sent)
        finally:
            own.close()


_LISTED = st.tuples(st.sampled_from(["stored", "refused"]), st.integers(0, len(_FORKS) - 1))


@settings(max_examples=150)
@given(steps=st.lists(st.one_of(_CONFLICT, _CONFLICT, _LISTED, st.just(("acknowledge", 0)), st.just(("restart", 0))),
                      max_size=40))
@example(steps=[("conflict", 1), ("refused", 3), ("conflict", 3)])  # a refused batch's row, then no room for it
def test_records_listed_as_stored_and_as_conflicting_keep_the_counts_and_a_counted_one_raises_no_alert(steps):
    """Records of the key listed as the ledger takes them (`add`), or as it refuses their batch (a full disk: the row
    stays, until the next open drops it), among conflicting ones, acknowledgements and restarts: after each step the
    counts the alerts read match the rows; a record listed already keeps its row; one counted as a conflict not listed
    is listed acknowledged, another not; each conflicting record is listed as such or counted, not both, and listed
    otherwise only once counted, as the record the ledger took since (a refused batch's row gives way to the conflict,
    listed or counted). A record the store holds does not come as a conflict: it is a duplicate."""
    with tempfile.TemporaryDirectory() as directory, RecordStore.open(Path(directory)) as store, \
            pytest.MonkeyPatch.context() as patched:
        patched.setattr("gossip.own_records.MAX_CONFLICTS", 1)
        patched.setattr("gossip.own_records.MAX_CONFLICT_ROWS", 2)
        stored: set[bytes] = set()  # the records the store took
        patched.setattr(store, "has", stored.__contains__)
        own = OwnRecords.open(Path(directory), lambda: 0, store)
        sent: set[bytes] = set()  # the conflicting records, each listed as such or counted
        listed_once_counted: set[bytes] = set()  # the records `add` listed anew while counted (acknowledged)
        try:
            for action, fork in steps:
                rid = _FORKS[fork].id
                if action in ("stored", "refused"):
                    before = {r.id: r for r in own.listed()}.get(rid)
                    counted = rid in _counted(directory)
                    own.add([(_FORKS[fork], PEER)])
                    row = {r.id: r for r in own.listed()}[rid]
                    assert row == before if before else row.acknowledged == counted
                    if action == "stored":
                        stored.add(rid)
                    if counted and not before:
                        listed_once_counted.add(rid)
                elif action != "conflict" or rid not in stored:
                    sent |= {rid} if action == "conflict" else set()
                    own = _stepped(own, action, fork, directory, store)
                rows, counted_ids = own.listed(), _counted(directory)
                conflicting = {r.id for r in rows if r.conflicts_with is not None}
                assert own.unacknowledged == sum(not r.acknowledged for r in rows)
                assert own.unacknowledged_conflicts == sum(not r.acknowledged for r in rows if r.id in conflicting)
                assert own.conflict_rows == len(conflicting) and own.unlisted_conflicts == len(counted_ids)
                assert own.conflicts_kept == sum(own.cose(r.number) is not None for r in rows)
                assert not counted_ids & conflicting and counted_ids | conflicting == sent
                assert counted_ids & {r.id for r in rows} <= listed_once_counted
                assert action != "restart" or {r.id for r in rows} - conflicting <= stored
        finally:
            own.close()


def _counted(directory):
    """The ids of the conflicting records counted, not listed, that the list in `directory` keeps."""
    with closing(sqlite3.connect(Path(directory) / OWN_RECORDS_FILE)) as db:
        return {bytes(rid) for (rid,) in db.execute("SELECT id FROM unlisted_conflicts")}


def _kept(replica):
    """Each listed row's number, with its record's bytes if kept."""
    return [(r.number, replica.own_records.cose(r.number)) for r in replica.own_records.listed()]


def test_the_ids_of_conflicting_records_counted_past_the_bound_are_kept_to_a_bound_too(tmp_path, monkeypatch):
    """A thief can sign millions: the file keeps the ids of the last MAX_UNLISTED_SEEN counted only (and memory none),
    and one that comes again after more than that many others is counted again."""
    monkeypatch.setattr("gossip.own_records.MAX_CONFLICTS", 1)
    monkeypatch.setattr("gossip.own_records.MAX_UNLISTED_SEEN", 3)
    key = Org().key
    with opened(tmp_path, key) as replica:
        _, forks = _forked(replica, 6)
        for fork in forks:
            replica.accept([fork], PEER)
        replica.accept(forks[3:], PEER)  # the last three counted: not counted again
        assert replica.own_records.unlisted_conflicts == 5
    with closing(sqlite3.connect(tmp_path / OWN_RECORDS_FILE)) as db:
        assert db.execute("SELECT id FROM unlisted_conflicts ORDER BY counted").fetchall() == [
            (f.id,) for f in forks[3:]]
    with opened(tmp_path, key) as replica:
        replica.accept(forks[1:2], PEER)  # counted before the last three: counted again
        assert replica.own_records.unlisted_conflicts == 6


def _listed_by_version_2(data_dir, key):
    """A data directory whose list version 2 wrote (tests/gossip/own_records_old.py) as its node did, copied as a kill
    leaves it (rows in the -wal file): two records of `key` from peers, the first acknowledged, and the record the
    node holds at the seq of the second, conflicting with the second (stored first)."""
    def write(replica, records, running):
        v2 = OwnRecordsV2(running, itertools.count(1_700_000_000_000).__next__)
        v2.add([(r, PEER) for r in records])
        replica.accept(records, PEER)
        v2.acknowledge(1)
        return v2.db

    return _listed_by_an_earlier_version(data_dir, key, 2, write)


def test_a_list_version_2_wrote_is_upgraded_in_place_to_take_conflicting_records(tmp_path):
    key = Org().key
    data_dir = tmp_path / "node"
    records = _listed_by_version_2(data_dir, key)
    with opened(data_dir, key) as replica:
        assert _rows(replica) == [(records[0].id, records[0].seq, PEER, None, None, True),
                                  (records[1].id, records[1].seq, PEER, None, None, False)]
        assert replica.own_from_peers == 1
        theirs = _conflicting(replica, records[1].seq)
        replica.accept([theirs], OTHER_PEER)
        assert _rows(replica)[2:] == [(theirs.id, theirs.seq, OTHER_PEER, records[1].id, theirs.raw, False)]
    assert _file_state(data_dir)[0] == (5,) and _shape(data_dir) == _made_new(tmp_path / "new")
    with opened(data_dir, key) as replica:
        assert [r.number for r in replica.own_records.listed()] == [1, 2, 3] and replica.own_from_peers == 2


def _stopping_at(dies, stops):
    """sqlite3.connect, but a connection to the list refuses (or, if `dies`, SIGKILLs its process at) the first
    statement for whose authorization `stops(action, its first argument)` is true."""
    connect = sqlite3.connect

    def connecting(path, *args, **kwargs):
        db = connect(path, *args, **kwargs)
        if str(path).endswith(OWN_RECORDS_FILE):
            def authorize(action, argument, *_):
                if stops(action, argument):
                    if dies:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return sqlite3.SQLITE_DENY
                return sqlite3.SQLITE_OK
            db.set_authorizer(authorize)
        return db
    return connecting


def _open_stopping_at(monkeypatch, data_dir, dies, stop):
    """A function opening the list in `data_dir`, stopped (`_stopping_at`) as its upgrade makes the (action, table)
    `stop`."""
    def open_stopping():
        with monkeypatch.context() as patched, RecordStore.open(data_dir) as store:
            patched.setattr(sqlite3, "connect", _stopping_at(dies, lambda action, table: (action, table) == stop))
            OwnRecords.open(data_dir, lambda: 0, store)
    return open_stopping


@pytest.mark.parametrize("dies", [True, False], ids=["killed", "raising"])
def test_an_upgrade_from_version_2_stopped_part_way_leaves_the_list_as_version_2_wrote_it(tmp_path, monkeypatch, dies):
    key = Org().key
    data_dir = tmp_path / "node"
    records = _listed_by_version_2(data_dir, key)
    before = _file_state(data_dir)

    _stopped_part_way(dies, _open_stopping_at(monkeypatch, data_dir, dies, (  # its last table, the new column made
        sqlite3.SQLITE_CREATE_TABLE, "conflicting_bytes")), "cannot be opened")
    assert _file_state(data_dir) == before
    with opened(data_dir, key) as replica:
        assert [(r.id, r.acknowledged) for r in replica.own_records.listed()] == [(records[0].id, True),
                                                                                   (records[1].id, False)]
        assert _file_state(data_dir)[0] == (5,)


def _listed_by_version_3(data_dir, key):
    """A data directory whose list version 3 wrote (tests/gossip/own_records_old.py) as its node did, copied as a kill
    leaves it (rows in the -wal file): two records of `key` from peers, the first acknowledged, a record conflicting
    with the second, from another peer, and, numbered last, a row its open dropped (a batch the store refused); the
    three records listed."""
    conflicting = []

    def write(replica, records, running):
        v3 = OwnRecordsV3(running, itertools.count(1_700_000_000_000).__next__)
        v3.add([(r, PEER) for r in records[:2]])
        replica.accept(records[:2], PEER)
        conflicting.append(Org(key=key).fork(records[1].seq, records[0].id))
        v3.add_conflicts([(conflicting[0], records[1].id, OTHER_PEER)])
        v3.acknowledge(1)
        v3.add([(records[2], PEER)])
        v3.db.execute("DELETE FROM own_records WHERE id = ?", (records[2].id,))  # as its open dropped it
        return v3.db

    return [*_listed_by_an_earlier_version(data_dir, key, 3, write)[:2], *conflicting]


def test_a_list_version_3_wrote_is_upgraded_in_place_to_name_an_adopted_key_and_keep_bytes_apart(tmp_path):
    """The conflicting record's bytes move to their own table, where a page of the list does not read them, and
    the numbers go on after the last version 3 gave, the row its open dropped included: none is used again."""
    key = Org().key
    data_dir = tmp_path / "node"
    first, second, theirs = _listed_by_version_3(data_dir, key)
    rows = [(first.id, first.seq, PEER, None, None, True), (second.id, second.seq, PEER, None, None, False),
            (theirs.id, theirs.seq, OTHER_PEER, second.id, theirs.raw, False)]
    with opened(data_dir, key) as replica:
        assert _rows(replica) == rows and replica.own_records.adopted is None
        assert replica.own_from_peers == 2 and replica.own_records.unacknowledged_conflicts == 1
        replica.own_records.adopting(replica.did)
    assert _file_state(data_dir)[0] == (5,) and _shape(data_dir) == _made_new(tmp_path / "new")
    with opened(data_dir, key) as replica:
        assert _rows(replica) == rows and replica.own_records.adopted == replica.did
        replica.accept(signed_elsewhere(replica, 1), PEER)
        assert [r.number for r in replica.own_records.listed()] == [1, 2, 3, 5]


@pytest.mark.parametrize("stop", [(sqlite3.SQLITE_INSERT, "conflicting_bytes"),
                                  (sqlite3.SQLITE_DROP_TABLE, "own_records_v3"),
                                  (sqlite3.SQLITE_CREATE_TABLE, "own_records_state")],
                         ids=["moving bytes", "dropping the old table", "adding tables"])
@pytest.mark.parametrize("dies", [True, False], ids=["killed", "raising"])
def test_an_upgrade_from_version_3_stopped_part_way_leaves_the_list_as_version_3_wrote_it(tmp_path, monkeypatch, dies,
                                                                                          stop):
    key = Org().key
    data_dir = tmp_path / "node"
    records = _listed_by_version_3(data_dir, key)
    before = _file_state(data_dir)

    _stopped_part_way(dies, _open_stopping_at(monkeypatch, data_dir, dies, stop), "cannot be opened")
    assert _file_state(data_dir) == before and before[0] == (3,)
    with opened(data_dir, key) as replica:
        assert [(r.number, r.id) for r in replica.own_records.listed()] == [(n, r.id) for n, r in enumerate(records, 1)]
        assert replica.own_records.cose(3) == records[2].raw
        assert _file_state(data_dir)[0] == (5,)


def _listed_by_version_4(data_dir, key):
    """A data directory whose list version 4 wrote (tests/gossip/own_records_old.py) as its node did, copied as a kill
    leaves it (rows in the -wal file): two records of `key` from peers, the first acknowledged; a record conflicting
    with the second, and one conflicting with a record the node held only, each from another peer, with their bytes
    (none of the held one's); one more conflicting, past the list's bound (2 here), counted; an adopted key. The
    records listed, the held one, and the adopted key."""
    made = []

    def write(replica, records, running):
        v4 = OwnRecordsV4(running, itertools.count(1_700_000_000_000).__next__, max_conflicts=2)
        v4.add([(r, PEER) for r in records])
        replica.accept(records, PEER)
        held = Org(key=key).fork(records[1].seq + 2, bytes(32))
        made.extend([Org(key=key).fork(records[1].seq, records[0].id), Org(key=key).fork(held.seq, bytes(32)), held])
        v4.add_conflicts([(made[0], records[1].id, OTHER_PEER), (made[1], held.id, OTHER_PEER),
                          (Org(key=key).fork(records[1].seq, records[0].id), records[1].id, OTHER_PEER)])
        v4.acknowledge(1)
        made.append(Org().did)
        v4.adopting(made[-1])
        return v4.db

    records = _listed_by_an_earlier_version(data_dir, key, 2, write)
    return [*records, *made[:2]], made[2], made[3]


def test_a_list_version_4_wrote_is_upgraded_in_place_to_keep_the_bytes_of_held_records_conflicted_with(tmp_path):
    """Its rows, bytes, count of those not listed and adopted key kept; a row listed then has none of the held
    record's bytes (version 4 kept none), one listed since keeps them."""
    key = Org().key
    data_dir = tmp_path / "node"
    (first, second, theirs, other), held, adopted = _listed_by_version_4(data_dir, key)
    rows = [(first.id, first.seq, PEER, None, None, True), (second.id, second.seq, PEER, None, None, False),
            (theirs.id, theirs.seq, OTHER_PEER, second.id, theirs.raw, False),
            (other.id, other.seq, OTHER_PEER, held.id, other.raw, False)]
    with opened(data_dir, key) as replica:
        assert _rows(replica) == rows and replica.own_records.adopted == adopted
        assert replica.own_records.unlisted_conflicts == 1 and replica.own_records.conflicts_with_cose(4) is None
        assert replica.own_from_peers == 3 and replica.own_records.unacknowledged_conflicts == 2
        later = Org(key=key).fork(held.seq + 2, bytes(32))
        replica.accept([later], PEER)
        replica.accept([conflicting := Org(key=key).fork(later.seq, held.id)], PEER)
    assert _file_state(data_dir)[0] == (5,) and _shape(data_dir) == _made_new(tmp_path / "new")
    with opened(data_dir, key) as replica:
        assert _rows(replica) == [*rows, (conflicting.id, later.seq, PEER, later.id, conflicting.raw, False)]
        assert replica.own_records.conflicts_with_cose(5) == later.raw and replica.own_records.conflict_rows == 3


@pytest.mark.parametrize("stop", [(sqlite3.SQLITE_ALTER_TABLE, "main"),
                                  (sqlite3.SQLITE_CREATE_INDEX, "own_records_conflicting")],
                         ids=["adding the column", "adding the index"])
@pytest.mark.parametrize("dies", [True, False], ids=["killed", "raising"])
def test_an_upgrade_from_version_4_stopped_part_way_leaves_the_list_as_version_4_wrote_it(tmp_path, monkeypatch, dies,
                                                                                          stop):
    key = Org().key
    data_dir = tmp_path / "node"
    records, _, adopted = _listed_by_version_4(data_dir, key)
    before = _file_state(data_dir)

    _stopped_part_way(dies, _open_stopping_at(monkeypatch, data_dir, dies, stop), "cannot be opened")
    assert _file_state(data_dir) == before and before[0] == (4,)
    with opened(data_dir, key) as replica:
        assert [(r.number, r.id) for r in replica.own_records.listed()] == [(n, r.id) for n, r in enumerate(records, 1)]
        assert replica.own_records.cose(4) == records[3].raw and replica.own_records.adopted == adopted
        assert _file_state(data_dir)[0] == (5,)


def test_an_adopted_key_s_records_are_expected_at_the_start_after_one_stopped_before_its_catch_up_ended(tmp_path,
                                                                                                       caplog):
    """`vouchnet key adopt` names the successor in the list (`adopting`): a start that took back part of what it signed
    in the newer copy and stopped before its catch-up sync ended (signing nothing) takes back the rest at the next
    start as expected too, at INFO, listing nothing. A record conflicting with one the node holds, in that window, is
    still said at CRITICAL and listed; once a catch-up ends (`adoption_caught_up`), the key's records from peers are
    reported as any, at later starts too."""
    old, new = Org(), Org()
    with opened(tmp_path, old.key) as replica:
        replica.issue("org", org_body("me", "test", next=new.did))
        replica.own_records.adopting(new.did)
    newer = [new.record("org", org_body("me", "test", prior=old.did)), *(new.record() for _ in range(3))]
    with caplog.at_level(logging.INFO, logger="gossip.replica"):
        with opened(tmp_path, new.key) as replica:
            replica.defer_signing()  # as the node starts (node.daemon._take_back_own_records)
            assert replica.accept(newer[:2], PEER).accepted == newer[:2]
        with opened(tmp_path, new.key) as replica:  # the first start stopped before its catch-up ended
            replica.defer_signing()
            assert replica.accept(newer[2:], PEER).accepted == newer[2:]
            said = [(r.levelno, r.getMessage()) for r in caplog.records]
            assert [level for level, _ in said] == [logging.INFO, logging.INFO]
            assert "before `vouchnet key adopt`" in said[1][1] and "seq 3 to 4" in said[1][1]
            assert replica.own_records.listed() == [] and replica.own_from_peers == 0
            theirs = _conflicting(replica, 3, key=new.key)
            caplog.clear()
            assert replica.accept([theirs], OTHER_PEER).equivocations == [(newer[2].raw, theirs)]
            assert _rows(replica) == [(theirs.id, 3, OTHER_PEER, newer[2].id, theirs.raw, False)]
            assert [r.levelno for r in caplog.records] == [logging.CRITICAL] and replica.own_from_peers == 1
            replica.own_records.adoption_caught_up()
            replica.resume_signing()
    caplog.clear()
    with opened(tmp_path, new.key) as replica:
        assert replica.own_records.adopted is None
        replica.defer_signing()
        later = signed_elsewhere(replica, 1)
        with caplog.at_level(logging.CRITICAL, logger="gossip.replica"):
            assert replica.accept(later, PEER).accepted == later
        assert "came from peers" in caplog.text and [r.id for r in replica.own_records.listed()][1:] == [later[0].id]


def test_an_adopted_key_s_records_are_no_longer_expected_once_the_node_signed_one_though_it_stopped_at_once(
        tmp_path, caplog):
    """The adopted key is no longer named, durably, before the store takes the first record the node signs with it
    (evidence found in the catch-up, signed as it ends, say): stopped before the catch-up's end had said so, the
    next start reports a thief's record following it at CRITICAL and lists it. Before: that start took it at INFO
    as the newer copy's coming back, unlisted, though what the node signed ended any such."""
    old, new = Org(), Org()
    with opened(tmp_path, old.key) as replica:
        replica.issue("org", org_body("me", "test", next=new.did))
        replica.own_records.adopting(new.did)
    newer = [new.record("org", org_body("me", "test", prior=old.did)), new.record()]
    with opened(tmp_path, new.key) as replica:
        replica.defer_signing()
        assert replica.accept(newer, PEER).accepted == newer
        replica.resume_signing()
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))  # then killed, before adoption_caught_up
    with opened(tmp_path, new.key) as replica:
        assert replica.own_records.adopted is None
        replica.defer_signing()
        later = signed_elsewhere(replica, 1)
        with caplog.at_level(logging.INFO, logger="gossip.replica"):
            assert replica.accept(later, PEER).accepted == later
        assert [r.levelno for r in caplog.records] == [logging.CRITICAL]
        assert [r.id for r in replica.own_records.listed()] == [later[0].id] and replica.own_from_peers == 1


@pytest.mark.parametrize(("error", "refusal"), [
    (sqlite_error("disk I/O error", sqlite3.SQLITE_IOERR_READ),
     r"^own_records.db: cannot be read, as its storage failed \(disk I/O error: .*\): the file itself is not found "
     r"corrupt; free space or fix the disk, then try again$"),
    (sqlite_error("database disk image is malformed", sqlite3.SQLITE_CORRUPT),
     r"^own_records.db: cannot be read \(database disk image is malformed\)$"),
], ids=["failing disk", "damaged file"])
def test_a_read_of_the_list_tells_its_disk_failing_from_the_file_damaged(tmp_path, error, refusal):
    """A failing disk said `own_records.db: cannot be read (disk I/O error)`, as a damaged file does, where every
    other store says its disk failed and that the file is not found corrupt (ledger.disk_failure)."""
    with opened(tmp_path, Org().key) as replica:
        own = replica.own_records
        own._db = FailingReads(own._db, error)
        with pytest.raises(OwnRecordsError, match=refusal):
            own.listed()
