"""The records of a node's key that came from peers, listed in its data directory: counted across restarts until
acknowledged (gossip.own_records)."""

import itertools
import logging
import os
import shutil
import signal
import sqlite3
import sys
from contextlib import closing, contextmanager

import pytest

from gossip.own_records import OWN_RECORDS_FILE, OwnRecords
from gossip.replica import Replica
from gossip.store import RecordStore, StoreError
from vouching import Counts, DigestBody, issue_digests, org_body, vouch_body
from vouching.bodies import CATEGORIES, OUTCOMES

from ..factories import Org, new_did
from ..node.kill_points import killed_at
from .own_records_v1 import OwnRecordsV1

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
    """A data directory whose list version 1 wrote (tests/gossip/own_records_v1.py) as its node did, copied as a kill
    leaves it (rows in the -wal file): three records of `key` from peers, the first acknowledged, the last submitted
    through the API (no peer), and a row of one a refused batch left (not stored). Each row accepted a ms later."""
    running = data_dir.parent / "running"
    running.mkdir()
    with RecordStore.open(running) as store:
        replica = Replica(key, store, roots=(), max_hops=2, held_limit=100)
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        records = signed_elsewhere(replica, 4)
        v1 = OwnRecordsV1(running, itertools.count(1_700_000_000_000).__next__)
        for batch, peer, stored in ((records[:2], PEER, True), (records[2:3], None, True), (records[3:], PEER, False)):
            v1.add(batch, peer)
            if stored:
                replica.accept(batch, peer)
        v1.acknowledge(records[0].seq)
    shutil.copytree(running, data_dir)
    v1.db.close()
    assert (data_dir / f"{OWN_RECORDS_FILE}-wal").stat().st_size > 0
    return records[:3]


def _file_state(data_dir):
    """user_version, the tables and every row of the list, read without changing it."""
    with closing(sqlite3.connect(f"{(data_dir / OWN_RECORDS_FILE).as_uri()}?mode=ro", uri=True)) as db:
        return (db.execute("PRAGMA user_version").fetchone(),
                sorted(db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")),
                {name: db.execute(f"SELECT * FROM {name}").fetchall() for (name,) in
                 db.execute("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'own%'")})


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
    version, tables, _ = _file_state(data_dir)
    assert version == (2,) and ("own_records",) in tables and ("own_records_v1",) not in tables
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

    if dies:
        assert killed_at(sys.maxsize, open_failing_at_the_second_row)
    else:
        with pytest.raises(StoreError, match="cannot be read"):
            open_failing_at_the_second_row()
    assert _file_state(data_dir) == before
    with opened(data_dir, key) as replica:
        assert [(r.number, r.id) for r in replica.own_records.listed()] == [(n, r.id) for n, r in enumerate(records, 1)]


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


def test_a_record_at_the_seq_of_one_a_refused_batch_listed_is_listed_too(tmp_path):
    """A batch the store refused leaves its row (its record unstored) until the next open drops it: another record
    of the key at that seq, stored later, has a row of its own, and stays listed across the restart."""
    key = Org().key
    with opened(tmp_path, key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        (refused,) = signed_elsewhere(replica, 1)
        (stored,) = signed_elsewhere(replica, 1)  # the same seq, another record
        append = replica.store.append
        replica.store.append = lambda records: (_ for _ in ()).throw(StoreError("disk full"))
        with pytest.raises(StoreError):
            replica.accept([refused], PEER)
        replica.store.append = append
        replica.accept([stored], PEER)
        assert replica.store.has(stored.id)
        assert stored.id in [r.id for r in replica.own_records.listed()]
    with opened(tmp_path, key) as replica:
        assert [r.id for r in replica.own_records.listed()] == [stored.id] and replica.own_from_peers == 1


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
