"""The pace a peer must keep in a sync session of ours (gossip.peer_pace; trio's mock clock, streams in memory): one
answering each read just inside the sync timeout with a record is ended within a read of the grace, and the peers
asked after it fill the gap; an honest peer, however slow, delivering at the pace or above, never is."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gossip.peer_pace import MIN_RATE, PeerPace, reply_units
from gossip.replica import Replica
from gossip.store import RecordStore
from gossip.sync import IssuerIndex, SyncLimits, SyncServer
from gossip.sync_messages import (HeadEntry, HeadsPage, HeadsRequest, RecordsPage, decode_request,
                                  encode_message)
from gossip.sync_service import SyncService

from ..factories import Org
from .nodes import ConnectedHost
from .test_sync_session import ServedStream

TIMEOUT = 10.0
JUST_IN_TIME = TIMEOUT - 0.1
REPORTERS = [f"12D3KooWReporter{i}" for i in range(3)]
HOLDER = "12D3KooWHolder"
ORG = Org()
RECORDS = [ORG.record() for _ in range(200)]
PAGES_OF_TEN = SyncLimits(page_records=10)  # (frames small enough to be decoded on the event loop: a worker thread
# decoding one would let trio's mock clock jump past the bounds)


class SlowStream(ServedStream):
    """A served stream whose peer takes `delay` seconds over each page of records it sends, and at once names no heads
    (holding, as far as full rounds see, nothing)."""

    def __init__(self, server: SyncServer, delay: float) -> None:
        super().__init__(server)
        self._delay = delay

    async def write_frame(self, payload: bytes) -> None:
        if isinstance(decode_request(payload), HeadsRequest):
            self._replies.append(encode_message(HeadsPage((), more=False)))
            self._delay = 0.0  # (a full round's stream)
        else:
            await super().write_frame(payload)

    async def read_frame(self, max_size: int) -> bytes | None:
        await trio.sleep(self._delay)
        return await super().read_frame(max_size)


class SlowPeersHost(ConnectedHost):
    """REPORTERS and HOLDER connected, each serving RECORDS: the reporters a record a page, each page just inside the
    sync timeout; the holder ten a page, at once."""

    def __init__(self, served: RecordStore) -> None:
        super().__init__([*REPORTERS, HOLDER])
        index = IssuerIndex(served)
        self._dripping = SyncServer(served, index, SyncLimits(page_records=1))
        self._holding = SyncServer(served, index, PAGES_OF_TEN)
        self.opened: list[tuple[float, str]] = []

    async def open_stream(self, peer: str, protocol: str) -> SlowStream:
        self.opened.append((trio.current_time(), peer))
        if peer == HOLDER:
            return SlowStream(self._holding, 0.0)
        return SlowStream(self._dripping, JUST_IN_TIME)


@contextmanager
def slow_peers(tmp_path: Path) -> Iterator[tuple[SyncService, SlowPeersHost, RecordStore]]:
    """A sync service whose peers SlowPeersHost stands in for, and its empty store."""
    (tmp_path / "served").mkdir()
    (tmp_path / "ours").mkdir()
    with RecordStore.open(tmp_path / "served") as served, RecordStore.open(tmp_path / "ours") as store:
        served.append(RECORDS)
        host = SlowPeersHost(served)
        replica = Replica(SigningKey.generate(), store, roots=(ORG.did,), max_hops=1, held_limit=10)
        yield SyncService(host, replica, network="test", limits=PAGES_OF_TEN, timeout=TIMEOUT,
                          interval=600), host, store  # (no periodic round meanwhile)


async def test_a_gap_whose_reporters_answer_each_read_just_in_time_is_fetched_from_the_next_peer_within_their_grace(
        tmp_path, autojump_clock):
    """Found by stop 44's brief: a peer sending a record a page, each page just inside the sync timeout, held a fetch
    of gaps' session for its whole bound (10 minutes, some 60 records), and the fetch then asked no further peer (it
    had run its minute): the three peers that reported a gap held it half an hour, one after the other, before the
    peer holding it was asked. Each is now ended once it falls behind its pace (the first read's record buys it no
    more than a fiftieth of a second), and the holder is asked in the same fetch."""
    with slow_peers(tmp_path) as (service, host, store):
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await trio.sleep(1)  # (the full rounds as the service starts: no peer names any heads)
            for reporter in REPORTERS:
                service.request_gaps(reporter, {ORG.did: (1, len(RECORDS))})
            reported = trio.current_time()
            await trio.sleep(4 * TIMEOUT)
            head = store.head(ORG.did)
            assert head is not None and head.seq == len(RECORDS), "the gap waited on the slow reporters"
            fetches = [(at - reported, peer) for at, peer in host.opened if at >= reported]
            assert [peer for _, peer in fetches] == [*REPORTERS, HOLDER]
            assert fetches[-1][0] < 3 * (JUST_IN_TIME + 0.5)  # each reporter ended within a read of its grace
            nursery.cancel_scope.cancel()
    assert service.stats.errors["slow"] == 3
    assert service.stats.errors["session"] == 0


@contextmanager
def steady_peer(tmp_path: Path, records: int, delay: float) -> Iterator[tuple[SyncService, RecordStore, int]]:
    """A sync service whose one peer serves `records` records ten a page, each page (and its heads) `delay` seconds
    after it is asked for; its empty store, and the issuer's seq to reach."""
    org = Org()
    (tmp_path / "served").mkdir()
    (tmp_path / "ours").mkdir()
    with RecordStore.open(tmp_path / "served") as served, RecordStore.open(tmp_path / "ours") as store:
        served.append([org.record() for _ in range(records)])
        server = SyncServer(served, IssuerIndex(served), PAGES_OF_TEN)
        host = ConnectedHost([HOLDER])
        host.open_stream = lambda peer, protocol: _ready(ServedStream(server), delay)  # type: ignore[attr-defined]
        replica = Replica(SigningKey.generate(), store, roots=(org.did,), max_hops=1, held_limit=10)
        yield SyncService(host, replica, network="test", limits=PAGES_OF_TEN, timeout=TIMEOUT), store, records


async def _ready(stream: ServedStream, delay: float) -> ServedStream:
    read = stream.read_frame

    async def slowly(max_size: int) -> bytes | None:
        await trio.sleep(delay)
        return await read(max_size)

    stream.read_frame = slowly  # type: ignore[method-assign]
    return stream


async def test_a_peer_slow_but_keeping_its_pace_has_its_round_run_to_the_end(tmp_path, autojump_clock):
    """A full round over a slow link, ten records a page (60 a second, just above the pace), runs to its end however
    long: the pace is an average since the session began, not each page's."""
    with steady_peer(tmp_path, 2000, 10 / (1.2 * MIN_RATE)) as (service, store, last):
        await service.sync_with(HOLDER)
        assert max(store.heads().values()) == last
    assert (service.stats.full_rounds, +service.stats.errors) == (1, {})
    assert trio.current_time() > TIMEOUT  # (the pace, not the grace, let it run)


async def test_a_peer_slower_than_its_pace_has_its_round_ended_and_what_it_delivered_kept(tmp_path, autojump_clock):
    """Ten records a page, 25 a second, falls behind once the grace is spent: the round is ended as slow, not held to
    its 10 minutes, and the records it verified stay."""
    with steady_peer(tmp_path, 2000, 10 / (0.5 * MIN_RATE)) as (service, store, last):
        await service.sync_with(HOLDER)
        fetched = max(store.heads().values())
    assert +service.stats.errors == {"slow": 1} and service.stats.full_rounds == 0
    assert 0 < fetched < last and fetched == service.stats.records_fetched
    assert trio.current_time() < 60


@given(st.lists(st.tuples(st.floats(0, TIMEOUT), st.integers(0, 1000)), max_size=200), st.floats(0, 30))
def test_a_peer_delivering_at_its_pace_read_after_read_is_never_behind(reads, grace):
    """Whatever each read takes, one that delivers the rate's worth of its wait leaves the peer the whole grace."""
    pace = PeerPace(grace=grace)
    for seconds, more in reads:
        pace.took(seconds)
        pace.delivered(max(more, math.ceil(seconds * pace.rate)))
        assert pace.allowance() >= grace - 1e-9


@given(st.floats(0.5, TIMEOUT))
def test_a_peer_delivering_a_record_a_read_falls_behind_within_a_read_of_its_grace(seconds):
    """Reads of one record each, `seconds` apart (just inside the timeout, say), have the peer behind (less left than
    its next read takes) once the grace is spent, however long each takes."""
    pace = PeerPace(grace=TIMEOUT)
    while pace.allowance() >= seconds:
        pace.took(seconds)
        pace.delivered(1)
    assert pace.waited <= TIMEOUT + seconds


def test_a_page_counts_its_heads_or_records_or_its_kib_where_more():
    heads = HeadsPage(tuple(HeadEntry(f"did:key:z{i:04}", 1, bytes(32)) for i in range(3)), more=True)
    assert reply_units(heads, len(encode_message(heads))) == 3
    records = RecordsPage((RECORDS[0].raw,), more=False)
    assert reply_units(records, 10 * 1024) == 10
    assert reply_units(records, len(RECORDS[0].raw)) == 1
