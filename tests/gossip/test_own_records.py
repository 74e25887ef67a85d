"""The records of a node's key that came from peers, listed in its data directory: counted across restarts until
acknowledged (gossip.own_records)."""

import logging
import sqlite3
from contextlib import closing, contextmanager

import pytest

from gossip.own_records import OWN_RECORDS_FILE, OwnRecords
from gossip.replica import Replica
from gossip.store import RecordStore, StoreError
from vouching import Counts, DigestBody, issue_digests, vouch_body
from vouching.bodies import CATEGORIES, OUTCOMES

from ..factories import Org, new_did

PEER = "12D3KooWPeer"


@contextmanager
def opened(data_dir, key, now_ms=lambda: 1_700_000_000_000):
    """A replica over the records and the list in `data_dir`, as the node opens them."""
    with RecordStore.open(data_dir) as store, closing(OwnRecords.open(data_dir, now_ms, stored=store.has)) as own:
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
        assert [(r.seq, r.id, r.accepted_ms, r.peer, r.acknowledged) for r in listed] == [
            (r.seq, r.id, 1_700_000_000_000, PEER, False) for r in records]
        with caplog.at_level(logging.WARNING, logger="gossip.own_records"):
            assert replica.own_records.acknowledge(records[-1].seq) == 2
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


def test_acknowledging_through_a_seq_leaves_later_records_counted(tmp_path):
    with opened(tmp_path, Org().key) as replica:
        replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        first, second = signed_elsewhere(replica, 2)
        replica.accept([first, second], PEER)
        assert replica.own_records.acknowledge(first.seq) == 1
        assert replica.own_records.acknowledge(first.seq) == 0  # again: nothing new
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


def test_a_held_record_of_the_key_released_by_one_the_node_signs_is_listed(tmp_path):
    """A record of the key held for a missing predecessor goes into the store with the batch that brings the
    predecessor, even one the node signs itself (the same bytes: digests of an epoch are signed deterministically)."""
    with opened(tmp_path, Org().key) as replica:
        head = replica.issue("vouch", vouch_body(new_did(), 0.9, "operator"))
        bodies, ts = [_digest(new_did())], 1_700_000_000_000
        (same,) = issue_digests(replica.key, bodies, seq=head.seq + 1, prev=head.id, ts=ts)
        after = Org(key=replica.key, seq=same.seq, prev=same.id).record()
        assert replica.accept([after], PEER).held == 1
        replica.issue_digests(bodies, ts=ts)
        assert replica.store.has(after.id)
        assert [(r.id, r.peer) for r in replica.own_records.listed()] == [(after.id, None)]
        assert replica.own_from_peers == 1


def _digest(agent):
    return DigestBody(agent, 1_699_992_000_000, 3_600_000, Counts(tuple(zip(OUTCOMES, (2, 1, 0, 0)))),
                      Counts(tuple(zip(CATEGORIES, (0, 0, 0, 3, 0, 0)))), Counts(tuple(zip(OUTCOMES, (0, 1, 0, 0)))),
                      3, bytes(32), None)
