"""The record store: durable, indexed, and level with its ledger after a crash between the two writes."""

import random
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossip import store as store_module
from gossip.store import (
    _SUBJECT_KINDS,
    INDEX_FILE,
    LEDGER_FILE,
    RecordReader,
    RecordStore,
    StoreError,
    _index_subject,
    subject_of,
)
from ledger import tree_hash
from vouching import OrgBody, Record, digest_body, org_body, verify_record, vouch_body

from ..factories import Org, new_did
from ..vouching.record_strategies import record_args

_ORGS = [Org() for _ in range(3)]
_SUBJECTS = [new_did() for _ in range(3)]


def test_append_then_find_by_id_issuer_position_and_subject(tmp_path):
    alice, bob = Org(), Org()
    a1, a2 = alice.record(), alice.vouch(bob.did)
    b1 = bob.record("org")
    with RecordStore.open(tmp_path) as store:
        assert store.append([a1, b1]) == 0
        assert store.append([a2]) == 2
        assert store.size == 3
        assert store.get(a2.id) == a2.raw and store.index_of(a2.id) == 2
        assert store.at(alice.did, 1) == a1.raw
        assert store.heads() == {alice.did: 2, bob.did: 1}
        assert store.issuer_range(alice.did, 2, 10) == [a2.raw]
        assert store.query(subject=bob.did) == [(2, a2.raw)]
        assert store.query(kind="org") == [(1, b1.raw)]
        assert store.query(issuer=alice.did, after=0) == [(2, a2.raw)]
        assert store.ledger.root() == tree_hash([a1.raw, b1.raw, a2.raw])


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory):
    """A store of 3 orgs' records, interleaved in batches of 1 to 20, a few kinds and subjects among them; and the
    records in ledger order."""
    rng = random.Random(7)
    records = []
    with RecordStore.open(tmp_path_factory.mktemp("mixed")) as store:
        for _ in range(12):
            org = rng.choice(_ORGS)
            batch = [org.record("org") if rng.random() < 0.2 else
                     org.record("vouch", vouch_body(rng.choice(_SUBJECTS), 0.5, "operator"))
                     for _ in range(rng.randint(1, 20))]
            store.append(batch)
            records += batch
        yield store, records


@pytest.fixture(scope="module")
def long_chain() -> tuple[str, list[Record], str, Record]:
    """3,001 vouches of one org (each for a fresh agent) and another org's first record, signed once for the tests
    that need an issuer with thousands of records (signing them took most of each test's seconds); read only."""
    alice, bob = Org(), Org()
    return alice.did, [alice.record() for _ in range(3001)], bob.did, bob.record("org")


@given(issuer=st.sampled_from([None, *(o.did for o in _ORGS)]), kind=st.sampled_from([None, "org", "vouch"]),
       subject=st.sampled_from([None, *_SUBJECTS]), after=st.integers(-1, 250), limit=st.integers(1, 300))
def test_a_query_is_the_matching_records_in_ledger_order(mixed_store, issuer, kind, subject, after, limit):
    store, records = mixed_store
    assert store.query(issuer=issuer, kind=kind, subject=subject, after=after, limit=limit) == [
        (i, r.raw) for i, r in enumerate(records) if i > after and issuer in (None, r.iss) and kind in (None, r.kind)
        and subject in (None, subject_of(r))][:limit]


@given(org=st.sampled_from(_ORGS), first_seq=st.integers(1, 120), limit=st.integers(1, 130))
def test_an_issuer_range_is_its_records_in_seq_order(mixed_store, org, first_seq, limit):
    store, records = mixed_store
    assert store.issuer_range(org.did, first_seq, limit) == [r.raw for r in records if r.iss == org.did and
                                                             r.seq >= first_seq][:limit]


def test_a_scan_reads_the_ledger_a_run_of_entries_at_a_time(tmp_path, monkeypatch, long_chain):
    alice, vouches, _, bob_first = long_chain
    with RecordStore.open(tmp_path) as store:
        store.append(vouches[:1500])
        store.append([bob_first])
        store.append(vouches[1500:1510])
        expected = [store.ledger.entry(i) for i in range(store.size)]
        reads = []
        for name in ("entry", "entries"):
            read = getattr(store.ledger, name)
            monkeypatch.setattr(store.ledger, name, lambda *a, read=read: reads.append(a) or read(*a))
        assert [r.raw for r in store.scan()] == expected
        assert reads == [(0, 1000), (1000, 1511)]  # a page of the index at a time
        reads.clear()
        assert [r.raw for r in store.scan(issuer=alice)] == expected[:1500] + expected[1501:]
        assert reads == [(0, 1000), (1000, 1500), (1501, 1511)]  # and a run of its entries in one read


def test_opening_finds_the_heads_without_reading_every_record(tmp_path, long_chain):
    alice, vouches, bob, bob_first = long_chain
    with RecordStore.open(tmp_path) as store:
        store.append(vouches[:3000] + [bob_first] + vouches[3000:])
    with RecordStore.open(tmp_path) as store:
        steps = []
        store._db.set_progress_handler(lambda: steps.append(1), 10)  # called every 10 SQLite VM instructions
        assert store._load_heads() == {alice: store.head(alice), bob: store.head(bob)}
        assert store.heads() == {alice: 3001, bob: 1}
        assert len(steps) < 50  # a few rows an issuer; reading every index row took thousands of steps


def test_holds_answers_as_has_and_looks_up_only_records_at_or_below_their_issuers_head(tmp_path, monkeypatch):
    alice, bob = Org(), Org()
    stored = [alice.record() for _ in range(3)]
    fork = alice.fork(2, stored[0].id)  # alice's seq 2 again, not stored
    ahead = [alice.record() for _ in range(2)]  # seq 4 and 5, past the head
    with RecordStore.open(tmp_path) as store:
        store.append(stored)
        looked_up = []
        has = store.has
        monkeypatch.setattr(store, "has", lambda record_id: looked_up.append(record_id) or has(record_id))
        for record in [*stored, fork, *ahead, bob.record()]:
            assert store.holds(record) == has(record.id)
        assert looked_up == [r.id for r in [*stored, fork]]


def test_append_refuses_a_record_that_does_not_follow_its_head(tmp_path):
    alice = Org()
    a1, _, a3 = alice.record(), alice.record(), alice.record()
    with RecordStore.open(tmp_path) as store:
        store.append([a1])
        with pytest.raises(ValueError, match="does not follow"):
            store.append([a3])
        assert store.size == 1


def test_the_latest_org_record_of_a_key_is_its_last_by_seq_and_none_without_one(tmp_path):
    alice, bob, quiet = Org(), Org(), Org()
    renamed = org_body("alice-2", "test", ["/ip4/10.0.0.2/tcp/4001"])
    with RecordStore.open(tmp_path) as store:
        store.append([alice.record("org", org_body("alice", "test", ["/ip4/10.0.0.1/tcp/4001"])), alice.record(),
                      quiet.record()])
        store.append([alice.record("org", renamed), alice.record(), bob.record("org", org_body("bob", "other"))])
        for rotation in (True, False):
            assert store.latest_org(alice.did, rotation=rotation) == OrgBody("alice-2", "test",
                                                                             ("/ip4/10.0.0.2/tcp/4001",), None)
            assert store.latest_org(bob.did, rotation=rotation) == OrgBody("bob", "other", (), None)
            assert store.latest_org(quiet.did, rotation=rotation) is None  # records, but no org record
            assert store.latest_org(new_did(), rotation=rotation) is None  # no record at all


def test_the_latest_org_record_of_a_rotated_key_is_its_rotation_or_if_asked_the_one_before(tmp_path, monkeypatch):
    """A key's rotation record is its last (vouching.succession); the peer manager asks for the last that is not one
    (PeerManager._elsewhere), and reads two records for it, not the key's every org record."""
    alice, only_rotates = Org(), Org()
    with RecordStore.open(tmp_path) as store:
        store.append([alice.record("org", org_body("alice", "test", [f"/ip4/10.0.0.{n}/tcp/1"])) for n in range(5)])
        successor, rotation, first = alice.rotate()
        _, lone_rotation, lone_first = only_rotates.rotate()
        store.append([rotation, first, lone_rotation, lone_first])
        reads = []
        for name in ("entry", "entries"):
            read = getattr(store.ledger, name)
            monkeypatch.setattr(store.ledger, name, lambda *a, read=read: reads.append(a) or read(*a))
        assert store.latest_org(alice.did) == rotation.body and rotation.body.next == successor.did
        assert store.latest_org(alice.did, rotation=False) == OrgBody("alice", "test", ("/ip4/10.0.0.4/tcp/1",), None)
        assert len(reads) == 3
        assert store.latest_org(successor.did) == store.latest_org(successor.did, rotation=False) == first.body
        assert store.latest_org(only_rotates.did) == lone_rotation.body
        assert store.latest_org(only_rotates.did, rotation=False) is None


@pytest.mark.parametrize("rotation", [True, False])
def test_the_latest_org_record_is_the_last_a_scan_of_the_key_s_org_records_finds(mixed_store, rotation):
    store, records = mixed_store
    for org in _ORGS:
        orgs = [r.body for r in records if r.iss == org.did and r.kind == "org"]
        assert orgs and store.latest_org(org.did, rotation=rotation) == orgs[-1]


def test_revocations_and_equivocations_are_indexed(tmp_path):
    alice = Org()
    vouch = alice.vouch(Org().did)
    revoke = alice.revoke(vouch)
    with RecordStore.open(tmp_path) as store:
        store.append([vouch, revoke])
        assert store.revoked(vouch.id)
        assert store.kind_and_issuer(revoke.id) == ("revoke", alice.did)
        assert store.flagged() == set()


def test_the_committed_index_reads_the_revokes_committed_when_it_opened_a_page_at_a_time(tmp_path):
    """What a worker thread reads while the store goes on (node.vouch_revocations): the rows of the entries before
    its `end`; the store's appends since, committed or not, are past it."""
    alice, bob = Org(), Org()
    vouches = [alice.vouch(new_did()) for _ in range(3)]
    theirs = bob.vouch(new_did())
    revokes = [alice.revoke(vouch) for vouch in vouches]
    with RecordStore.open(tmp_path) as store:
        store.append([*vouches, theirs, *revokes[:2]])
    with RecordStore.open(tmp_path) as store:
        store.append([revokes[2], bob.revoke(theirs)])  # not committed yet (the index commits every few thousand)
        committed = store.committed()
        try:
            assert committed.end == 6
            assert committed.revoked_by(alice.did, -1, 1) == [(4, alice.did, 1)]
            assert committed.revoked_by(alice.did, 4, 5) == [(5, alice.did, 2)]
            assert committed.revoked_by(alice.did, 5, 5) == committed.revoked_by(bob.did, -1, 5) == []
        finally:
            committed.close()
        assert store.revoked_by(alice.did, 5) == [(6, alice.did, 3)]
        assert store.revoked_by(bob.did) == [(7, bob.did, 1)]


def test_reopen_keeps_everything(tmp_path):
    alice = Org()
    records = [alice.record() for _ in range(5)]
    with RecordStore.open(tmp_path) as store:
        store.append(records)
    with RecordStore.open(tmp_path) as store:
        assert store.size == 5
        assert store.head(alice.did).id == records[-1].id


def test_an_index_that_lost_its_tail_is_replayed_from_the_ledger(tmp_path):
    alice = Org()
    records = [alice.record() for _ in range(5)]
    with RecordStore.open(tmp_path) as store:
        store.append(records)
    db = sqlite3.connect(tmp_path / INDEX_FILE)
    db.execute("DELETE FROM records WHERE idx >= 2")  # as if the process died between ledger and index
    db.commit()
    db.close()
    with RecordStore.open(tmp_path) as store:
        assert store.heads() == {alice.did: 5}
        assert [raw for _, raw in store.query()] == [r.raw for r in records]


def test_a_foreign_index_file_is_refused_and_once_removed_rebuilt_from_the_ledger(tmp_path):
    alice = Org()
    records = [alice.record() for _ in range(3)]
    with RecordStore.open(tmp_path) as store:
        store.append(records)
    for path in tmp_path.glob(INDEX_FILE + "*"):
        path.unlink()
    (tmp_path / INDEX_FILE).write_bytes(b"not a database at all" * 10)
    with pytest.raises(StoreError, match="not a record index.*remove it .* rebuilt from the records ledger"):
        RecordStore.open(tmp_path)
    (tmp_path / INDEX_FILE).unlink()  # what the message says to do
    with RecordStore.open(tmp_path) as store:
        assert store.heads() == {alice.did: 3}
        assert [raw for _, raw in store.query()] == [r.raw for r in records]


def test_an_index_of_another_node_s_ledger_is_refused_naming_both_files(tmp_path):
    """Another node's records.ledger beside this one's index, as long or longer, was taken: the index answered with
    this node's records for the other's entries, or, where an entry it lacked clashed with a row it held, the start
    failed saying the index could not be written (a full disk?)."""
    alice, bob = Org(), Org()
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    with RecordStore.open(tmp_path / "a") as store:
        store.append([alice.record() for _ in range(3)])
    with RecordStore.open(tmp_path / "b") as store:
        store.append([bob.record() for _ in range(4)])
    (tmp_path / "a" / LEDGER_FILE).write_bytes((tmp_path / "b" / LEDGER_FILE).read_bytes())
    with pytest.raises(StoreError, match=re.escape(
            f"{INDEX_FILE}: its record 2 is not the one {LEDGER_FILE} holds there: the index and the ledger are of "
            "different data directories")):
        RecordStore.open(tmp_path / "a")


def test_an_sqlite_file_of_another_kind_in_the_index_s_place_is_refused_and_left_as_it_was(tmp_path):
    """One without marks (application_id and user_version 0) was taken for a new index: marked as one and given its
    tables."""
    db = sqlite3.connect(tmp_path / INDEX_FILE)
    db.execute("CREATE TABLE epochs (start INTEGER)")
    db.commit()
    db.close()
    before = (tmp_path / INDEX_FILE).read_bytes()
    with pytest.raises(StoreError, match=re.escape(f"{tmp_path / INDEX_FILE}: not a record index: an SQLite database "
                                                   "holding tables epochs: another file copied in its place? remove it "
                                                   "(and its -wal and -shm files) and it is rebuilt")):
        RecordStore.open(tmp_path)
    assert (tmp_path / INDEX_FILE).read_bytes() == before


def test_a_new_index_whose_marking_is_cut_short_is_made_anew_at_the_next_open(tmp_path, monkeypatch):
    """Before: its application_id and version were set one commit each, so a node killed between them left an index
    no start accepted ("not a version-N record index (application_id 0x..., version 0)") until removed by hand."""
    connect = store_module._connect

    def cut_short(path, **options):
        db = connect(path, **options)
        db.set_authorizer(lambda action, name, value, *_: sqlite3.SQLITE_DENY
                          if action == sqlite3.SQLITE_PRAGMA and name == "user_version" and value
                          else sqlite3.SQLITE_OK)
        return db

    with monkeypatch.context() as patched:
        patched.setattr(store_module, "_connect", cut_short)
        with pytest.raises(StoreError, match="not authorized"):
            RecordStore.open(tmp_path)
    alice = Org()
    with RecordStore.open(tmp_path) as store:
        store.append([alice.record()])
    with RecordStore.open(tmp_path) as store:
        assert store.heads() == {alice.did: 1}


def test_records_appended_by_a_process_that_dies_are_all_indexed_on_reopen(tmp_path):
    """The index commits every few thousand rows: whatever a killed node had not committed is replayed."""
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from gossip.store import RecordStore\n"
        "from tests.factories import Org\n"
        "alice = Org()\n"
        "store = RecordStore.open(Path(sys.argv[1]))\n"
        "for _ in range(30):\n"
        "    store.append([alice.record() for _ in range(10)])\n"
        "print(alice.did, alice.prev.hex(), flush=True)\n"
        "os._exit(0)  # no close: as if killed\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    did, last = done.stdout.split()
    with RecordStore.open(tmp_path) as store:
        assert store.size == 300
        assert store.head(did).id.hex() == last
        assert [idx for idx, _ in store.query(issuer=did, limit=1000)] == list(range(300))


def test_a_page_by_issuer_or_issuer_and_kind_reads_about_that_page_not_the_issuers_records(tmp_path, long_chain):
    """GET /v1/records?issuer= needs no token: a page of an issuer's records sorted all of them (a node's own
    digests grow by one per agent per epoch), and ?issuer=&kind= of a kind the issuer has none of read every record
    of that kind. Counted in SQLite's virtual machine steps, per thousand."""
    busy, vouches, quiet, quiet_first = long_chain
    with RecordStore.open(tmp_path) as store:
        for start in range(0, 3000, 500):
            store.append(vouches[start:start + 500])
        store.append([quiet_first])
        steps = []
        store._db.set_progress_handler(lambda: steps.append(1), 1000)
        for issuer, kind, found in ((busy, None, 10), (busy, "vouch", 10), (quiet, "vouch", 0)):
            steps.clear()
            assert len(store.query(issuer=issuer, kind=kind, after=100, limit=10)) == found
            assert len(steps) <= 2, (issuer, kind)  # 26 (busy, all kinds) and 14 (quiet) before


def test_a_page_of_a_subject_by_issuer_or_kind_reads_about_that_page_not_the_subjects_records(tmp_path):
    """GET /v1/records?subject=&kind= (and &issuer=) needs no token: it read every record of the subject (an agent's
    digests grow by one per org per epoch) or of the issuer or kind, whichever index SQLite took. Steps per thousand.
    A page of one issuer's records of a subject, of all kinds, still reads the subject's records of each kind by
    every issuer (here `busy`'s 3,000 digests for `other`'s one vouch): an index for it cost every append 30 us."""
    agent, busy, other = new_did(), Org(), Org()
    with RecordStore.open(tmp_path) as store:
        for _ in range(6):
            store.append([_digest(busy, agent) for _ in range(500)])
            store.append([other.record("vouch") for _ in range(500)])
        store.append([other.vouch(agent)])
        steps = []
        store._db.set_progress_handler(lambda: steps.append(1), 1000)
        for issuer, kind, found in ((None, "vouch", 1), (other.did, "vouch", 1),
                                    (busy.did, "vouch", 0), (busy.did, None, 10), (None, "digest", 10),
                                    (None, None, 10)):
            steps.clear()
            assert len(store.query(subject=agent, issuer=issuer, kind=kind, after=100, limit=10)) == found
            assert len(steps) <= 2, (issuer, kind)  # 14 or 15 for each of the first two before


@given(record_args())
def test_every_kind_a_record_is_indexed_by_subject_under_is_one_query_reads_a_page_of(args):
    record = verify_record(args.sign())
    assert _index_subject(record) is None or record.kind in _SUBJECT_KINDS


def _digest(org: Org, agent: str) -> Record:
    return org.record("digest", digest_body(
        agent, epoch=org.ts - 3_600_000, length=3_600_000, outcomes={"ok": 1, "error": 0, "denied": 0, "timeout": 0},
        categories={"tool": 1, "mcp": 0, "a2a": 0, "auth": 0, "resource": 0, "other": 0},
        high_risk={"ok": 0, "error": 0, "denied": 0, "timeout": 0}, evidence_root=b"\0" * 32,
    ))


def test_a_reader_finds_an_issuer_s_records_beside_the_store_committed_or_not(tmp_path):
    """`vouchnet audit export` reads beside the running node, whose index rows since its last commit only it sees:
    those records are read from the ledger past the committed rows."""
    alice, bob = Org(), Org()
    committed = [alice.record("org"), bob.record("org"), alice.record(), alice.record("org")]
    with RecordStore.open(tmp_path) as store:
        store.append(committed)
    store = RecordStore.open(tmp_path)
    store.append([alice.record("org"), bob.record("org")])  # not committed yet (the index commits every few thousand)
    with RecordReader.open(tmp_path) as reader:
        found = [r.raw for r in store.scan(issuer=alice.did, kind="org")]
        assert [r.raw for r in reader.scan(issuer=alice.did, kind="org")] == found and len(found) == 3
        store.append([alice.record("org")])
        store.close()  # its rows committed, past the ledger as the reader opened it: not read
        assert [r.raw for r in reader.scan(issuer=alice.did, kind="org")] == found


def test_a_reader_writes_nothing_and_reads_the_ledger_whole_without_an_index(tmp_path):
    alice = Org()
    records = [alice.record("org") for _ in range(3)]
    with RecordStore.open(tmp_path) as store:
        store.append(records)
    ledger = (tmp_path / LEDGER_FILE).read_bytes()
    with RecordReader.open(tmp_path) as reader:
        assert [r.raw for r in reader.scan(issuer=alice.did, kind="org")] == [r.raw for r in records]
    assert (tmp_path / LEDGER_FILE).read_bytes() == ledger
    for path in tmp_path.glob(INDEX_FILE + "*"):
        path.unlink()
    with RecordReader.open(tmp_path) as reader:
        assert [r.raw for r in reader.scan(issuer=alice.did, kind="org")] == [r.raw for r in records]
    assert not (tmp_path / INDEX_FILE).exists()


def test_a_reader_refuses_an_index_of_another_ledger_or_of_another_kind(tmp_path):
    alice, bob = Org(), Org()
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    with RecordStore.open(tmp_path / "a") as store:
        store.append([alice.record("org") for _ in range(3)])
    with RecordStore.open(tmp_path / "b") as store:
        store.append([bob.record("org") for _ in range(3)])
    (tmp_path / "a" / LEDGER_FILE).write_bytes((tmp_path / "b" / LEDGER_FILE).read_bytes())
    with RecordReader.open(tmp_path / "a") as reader, pytest.raises(StoreError, match=re.escape(
            f"{INDEX_FILE}: its record 0 is not the one {LEDGER_FILE} holds there: the index and the ledger are of "
            "different data directories")):
        list(reader.scan(issuer=alice.did, kind="org"))
    (tmp_path / "a" / INDEX_FILE).write_bytes(b"not a database at all" * 10)
    with pytest.raises(StoreError, match="not a record index"):
        RecordReader.open(tmp_path / "a")
