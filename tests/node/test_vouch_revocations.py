"""The revoked vouches of this org's keys (node.vouch_revocations): read once as the node starts, in worker threads
on the index as committed then, while the event loop goes on; asks wait for that read and then read only the
revokes accepted since."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gossip.replica import Replica
from gossip.store import CommittedIndex, RecordStore, StoreError
from node import vouch_revocations
from node.vouch_revocations import VouchRevocations
from vouching import Record, revoke_body, vouch_body

from ..factories import Org, new_did


@contextmanager
def opened(directory: Path, key: SigningKey) -> Iterator[Replica]:
    """The org's replica over the store in `directory`, opened as a node opens it as it starts."""
    with RecordStore.open(directory) as store:
        yield Replica(key, store, roots=(), max_hops=2, held_limit=100)


def issue_vouches(replica: Replica, count: int) -> list[Record]:
    return [replica.issue("vouch", vouch_body(new_did(), 0.5, "operator")) for _ in range(count)]


def revoke(replica: Replica, vouch: Record) -> Record:
    return replica.issue("revoke", revoke_body(vouch.id, "left the org"))


class Gate:
    """CommittedIndex.revoked_by, held at its first call until `release`: the threads it ran in, and an event the
    loop waits on (in a thread) for the read to have begun."""

    def __init__(self, monkeypatch) -> None:
        self.threads: list[threading.Thread] = []
        self.reading, self.released = threading.Event(), threading.Event()
        real = CommittedIndex.revoked_by

        def revoked_by(index: CommittedIndex, *args: int | str) -> list[tuple[int, str, int]]:
            self.threads.append(threading.current_thread())
            self.reading.set()
            assert self.released.wait(10), "the event loop did not go on while the revokes were read"
            return real(index, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(CommittedIndex, "revoked_by", revoked_by)

    async def read_begun(self) -> None:
        await trio.to_thread.run_sync(self.reading.wait)

    def release(self) -> None:
        self.released.set()


async def test_the_start_up_read_runs_in_worker_threads_and_the_first_ask_reads_only_what_came_since(
        tmp_path, monkeypatch):
    """The first ask waits for the read and then reads one revoke, the one accepted during it: before, it read
    every revoke, on the loop (1.3 s at 20,000 revokes, benchmarks/vouch_status.py)."""
    key = SigningKey.generate()
    with opened(tmp_path, key) as replica:
        vouches = issue_vouches(replica, 6)
        for vouch in vouches[:3]:
            revoke(replica, vouch)
    monkeypatch.setattr(vouch_revocations, "PAGE", 2)
    gate = Gate(monkeypatch)
    with opened(tmp_path, key) as replica:
        revocations, asked, read = VouchRevocations(replica.store), [], []
        monkeypatch.setattr(replica.store, "revoked_by", lambda *args, real=replica.store.revoked_by: (
            read.append(real(*args)), read[-1])[1])

        async def ask() -> None:
            asked.append(await revocations.revoked(replica.did, [replica.did]))

        async with trio.open_nursery() as nursery:
            await nursery.start(revocations.run, [replica.did])
            await gate.read_begun()
            revoke(replica, vouches[4])
            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            assert asked == []  # the ask waits for the read
            gate.release()
    assert asked == [{vouches[0].seq, vouches[1].seq, vouches[2].seq, vouches[4].seq}]
    assert [[seq for _, _, seq in revokes] for revokes in read] == [[vouches[4].seq]]
    assert len(gate.threads) == 3 and threading.main_thread() not in gate.threads  # pages of 2, 1 and none


async def test_a_cancelled_start_up_read_stops_after_its_page_and_asks_read_the_rest(tmp_path, monkeypatch):
    """A signal while the node starts cancels the read: it stops once the page a thread reads is read (PAGE
    revokes), and the asks read what it did not."""
    key = SigningKey.generate()
    with opened(tmp_path, key) as replica:
        vouches = issue_vouches(replica, 5)
        for vouch in vouches:
            revoke(replica, vouch)
    monkeypatch.setattr(vouch_revocations, "PAGE", 2)
    gate = Gate(monkeypatch)
    with opened(tmp_path, key) as replica:
        revocations = VouchRevocations(replica.store)
        async with trio.open_nursery() as nursery:
            await nursery.start(revocations.run, [replica.did])
            await gate.read_begun()
            nursery.cancel_scope.cancel()
            gate.release()
        assert len(gate.threads) == 1
        assert await revocations.revoked(replica.did, [replica.did]) == {vouch.seq for vouch in vouches}


async def test_a_start_up_read_the_store_refuses_is_logged_and_the_asks_read_the_revokes(
        tmp_path, monkeypatch, caplog):
    key = SigningKey.generate()
    with opened(tmp_path, key) as replica:
        vouch = issue_vouches(replica, 1)[0]
        revoke(replica, vouch)

    def refused(*args: object) -> None:
        raise StoreError("records.index: cannot be read (disk I/O error)")

    monkeypatch.setattr(CommittedIndex, "revoked_by", refused)
    with opened(tmp_path, key) as replica, caplog.at_level(logging.WARNING):
        revocations = VouchRevocations(replica.store)
        async with trio.open_nursery() as nursery:
            await nursery.start(revocations.run, [replica.did])
        assert await revocations.revoked(replica.did, [replica.did]) == {vouch.seq}
    assert [r.getMessage() for r in caplog.records] == [
        "cannot read the org's revokes at start-up (records.index: cannot be read (disk I/O error)); the first "
        "status list of its vouches asked for reads them"]


@settings(max_examples=25)
@given(old_count=st.integers(0, 4), new_count=st.integers(0, 4), page=st.integers(1, 3), data=st.data())
async def test_after_a_start_up_read_each_key_s_revoked_vouches_are_those_an_ask_alone_reads(
        old_count, new_count, page, data):
    """Whatever the org's revokes (a key's own, the new key's of the old key's vouches, vouching.succession;
    accepted before the start or while its read runs) and the page size, an ask after the start-up read answers
    as one that read every revoke itself, and as the revokes say."""
    old = Org()
    vouches = [old.vouch(new_did(), 0.5, "operator") for _ in range(old_count)]
    by_old = [old.revoke(v) for v in vouches if data.draw(st.booleans(), "revoked by the old key")]
    revoked = {r.body.record for r in by_old}
    new, rotation, first = old.rotate()
    with tempfile.TemporaryDirectory() as directory, pytest.MonkeyPatch.context() as monkeypatch:
        with opened(Path(directory), new.key) as replica:
            replica.accept([first])
            replica.accept([*vouches, *by_old, rotation])
            vouches += issue_vouches(replica, new_count)
            when = {v.id: data.draw(st.sampled_from(["before the start", "during the read", "never"]), "revoked")
                    for v in vouches if v.id not in revoked}
            for vouch in vouches:
                if when.get(vouch.id) == "before the start":
                    revoke(replica, vouch)
        monkeypatch.setattr(vouch_revocations, "PAGE", page)
        gate = Gate(monkeypatch)
        with opened(Path(directory), new.key) as replica:
            loaded = VouchRevocations(replica.store)
            async with trio.open_nursery() as nursery:
                await nursery.start(loaded.run, [new.did, old.did])
                await gate.read_begun()
                for vouch in vouches:
                    if when.get(vouch.id) == "during the read":
                        revoke(replica, vouch)
                gate.release()
            alone = VouchRevocations(replica.store)
            for did in (old.did, new.did):
                later = replica.succession.later(did)
                expected = {v.seq for v in vouches if v.iss == did and v.id in revoked | {
                    vouch for vouch, moment in when.items() if moment != "never"}}
                assert await loaded.revoked(did, later) == await alone.revoked(did, later) == expected
