"""The pace a peer must keep in a sync session of ours (gossip.peer_pace; trio's mock clock, streams in memory): one
answering each read just inside the sync timeout with a record is ended within a read of the grace, and the peers
asked after it fill the gap; an honest peer, however slow, delivering at the pace or above, never is; heads the node
cannot use (made up, say) keep no pace past a minute, and an honest peer's heads of 10^5 issuers it does not follow
keep theirs over a link of 200 KiB/s, and those of a peer in step with the node, of all it holds, whatever their
number."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gossip.peer_pace import MIN_RATE, UNUSED_HEADS_UNITS, PeerPace
from gossip.replica import Replica
from gossip.store import RecordStore
from gossip.sync import IssuerIndex, SyncLimits, SyncServer
from gossip.sync_messages import (Busy, HeadEntry, HeadsPage, HeadsRequest, RecordsPage, Reply, decode_request,
                                  encode_message)
from gossip.sync_service import SyncService
from vouching import Record

from ..factories import Org
from .nodes import ConnectedHost
from .test_sync_rounds import ScriptedPeerStream
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


def heads_stream(pages: Iterable[tuple[HeadEntry, ...]], delay: float) -> ScriptedPeerStream:
    """A peer's sync stream answering each read `delay` seconds in with the next of `pages` of heads (`more` but for
    the last)."""
    pending = iter(pages)
    upcoming: list[tuple[HeadEntry, ...] | None] = [next(pending, ())]

    async def answer() -> bytes:
        await trio.sleep(delay)
        page, upcoming[0] = upcoming[0], next(pending, None)
        assert page is not None
        return encode_message(HeadsPage(page, more=upcoming[0] is not None))

    return ScriptedPeerStream(answer)


def made_up_heads(per_page: int, width: int, pages: int | None = None) -> Iterator[tuple[HeadEntry, ...]]:
    """Pages of `per_page` heads of made-up issuers `width` characters long, in issuer order (for ever if `pages` is
    None); each page small enough to be decoded on the event loop (a worker thread decoding one would let trio's mock
    clock jump past the bounds)."""
    issuers = (f"did:key:z{n:0{width - 9}d}" for n in itertools.count())
    for _ in itertools.count() if pages is None else range(pages):
        page = tuple(HeadEntry(next(issuers), 1, bytes(32)) for _ in range(per_page))
        assert len(encode_message(HeadsPage(page, more=True))) < 4096
        yield page


async def _heads_round(tmp_path: Path, pages: Iterable[tuple[HeadEntry, ...]], delay: float,
                       held: Sequence[Record] = ()) -> SyncService:
    """A full round with a peer answering each heads request `delay` seconds in with the next of `pages`, the node's
    store holding `held`."""
    with RecordStore.open(tmp_path) as store:
        store.append(held)
        host = ConnectedHost([HOLDER])
        host.open_stream = lambda peer, protocol: _opened(heads_stream(pages, delay))  # type: ignore[attr-defined]
        replica = Replica(SigningKey.generate(), store, roots=(ORG.did,), max_hops=1, held_limit=10)
        service = SyncService(host, replica, network="test", timeout=TIMEOUT)
        await service.sync_with(HOLDER)
        return service


async def _opened(stream: ScriptedPeerStream) -> ScriptedPeerStream:
    return stream


async def test_a_peer_keeping_its_pace_with_heads_of_made_up_issuers_is_ended_once_its_grace_is_spent(
        tmp_path, autojump_clock):
    """Found by stop 44's brief: heads of issuers outside the horizon, which cost nothing to make up, counted as
    delivered, so a peer sending 50 of them a second (a tenth above the pace) held a full round to its 10-minute bound,
    and eight such peers held every session slot. Heads the node cannot use count only by their KiB: three a page
    here, far below the pace."""
    service = await _heads_round(tmp_path, made_up_heads(50, 18), 50 / (1.1 * MIN_RATE))
    assert +service.stats.errors == {"slow": 1}
    assert trio.current_time() < TIMEOUT + 1


async def test_a_peer_keeping_its_pace_with_kib_of_made_up_heads_is_ended_a_minute_in(tmp_path, autojump_clock):
    """Heads of long made-up issuers, 4 KiB a page, a tenth above the pace: their KiB buy UNUSED_HEADS_UNITS at most
    (50 s of pace), and the round is ended within a minute and a page, not at its 10-minute bound."""
    service = await _heads_round(tmp_path, made_up_heads(16, 200), 4 / (1.1 * MIN_RATE))
    assert +service.stats.errors == {"slow": 1}
    assert abs(trio.current_time() - (TIMEOUT + UNUSED_HEADS_UNITS / MIN_RATE)) < 1


async def test_an_honest_peer_s_heads_of_many_issuers_the_node_does_not_follow_keep_their_pace(tmp_path,
                                                                                              autojump_clock):
    """A peer whose horizon holds 10^5 orgs outside the node's (did:key's 56 characters each, some 9 MiB of heads) over
    a link of 200 KiB/s: its round runs to the end."""
    per_page = 40
    page_bytes = len(encode_message(HeadsPage(next(made_up_heads(per_page, 56)), more=True)))
    service = await _heads_round(tmp_path, made_up_heads(per_page, 56, 10**5 // per_page), page_bytes / (200 * 1024))
    assert (service.stats.full_rounds, +service.stats.errors) == (1, {})
    assert trio.current_time() > TIMEOUT + UNUSED_HEADS_UNITS / MIN_RATE / 2


@functools.cache
def one_record_each(count: int) -> tuple[Record, ...]:
    """The first records of `count` orgs, by issuer."""
    return tuple(sorted((Org().record("org") for _ in range(count)), key=lambda record: record.iss))


class PacedStream(ServedStream):
    """A served stream whose peer takes `delay` seconds over each reply frame it sends."""

    def __init__(self, server: SyncServer, delay: float) -> None:
        super().__init__(server)
        self._delay = delay

    async def read_frame(self, max_size: int) -> bytes | None:
        await trio.sleep(self._delay)
        return await super().read_frame(max_size)


async def test_a_node_asking_for_every_issuer_a_peer_names_keeps_the_peer_at_its_pace(tmp_path, autojump_clock):
    """A node holding nothing yet of 4,000 orgs inside its horizon, a peer naming each a head a page (a KiB each
    rounded up, as made-up heads would count) a fifth above the pace, then sending their records ten a page: each head
    the node asks records for counts, and the round runs to its end (heads counted by their KiB alone, the peer would
    be ended as slow a minute in)."""
    records = one_record_each(4000)
    (tmp_path / "served").mkdir()
    (tmp_path / "ours").mkdir()
    limits = SyncLimits(heads_page=1, page_records=10)
    with RecordStore.open(tmp_path / "served") as served, RecordStore.open(tmp_path / "ours") as store:
        served.append(records)
        host = ConnectedHost([HOLDER])
        server = SyncServer(served, IssuerIndex(served), limits)
        paced = PacedStream(server, 1 / (1.2 * MIN_RATE))
        host.open_stream = lambda peer, protocol: _opened(paced)  # type: ignore[attr-defined]
        replica = Replica(SigningKey.generate(), store, roots=tuple(record.iss for record in records), max_hops=1,
                          held_limit=10)
        service = SyncService(host, replica, network="test", limits=limits, timeout=TIMEOUT)
        await service.sync_with(HOLDER)
        assert len(store.heads()) == 4000
    assert (service.stats.full_rounds, +service.stats.errors) == (1, {})
    assert trio.current_time() > TIMEOUT + UNUSED_HEADS_UNITS / MIN_RATE


async def test_a_peer_in_step_with_the_node_keeps_its_pace_by_the_kib_of_heads_of_all_it_holds(tmp_path,
                                                                                                autojump_clock):
    """Found by stop 44's second read: heads of what the node holds counted as made-up ones, their KiB buying 50 s of
    pace at most, so that a periodic round with an honest peer in step with the node, naming every issuer it holds
    (some 9 MiB for 10^5 of them), was ended as slow over any link under 160 KiB/s a session, every round: the
    records it held that gossip lost were never pulled. Heads of issuers the node holds, each named once a session,
    count by their KiB in full; here 4,000 of them, a head a page (a unit: its KiB rounded up), a fifth above the
    pace, for 80 s."""
    held = one_record_each(4000)
    pages = [(HeadEntry(record.iss, record.seq, record.id),) for record in held]
    service = await _heads_round(tmp_path, pages, 1 / (1.2 * MIN_RATE), held)
    assert (service.stats.full_rounds, +service.stats.errors) == (1, {})
    assert trio.current_time() > TIMEOUT + UNUSED_HEADS_UNITS / MIN_RATE


@given(st.lists(st.tuples(st.floats(0, TIMEOUT), st.integers(0, 1000)), max_size=200), st.floats(0, 30))
def test_a_peer_delivering_at_its_pace_read_after_read_is_never_behind(reads, grace):
    """Whatever each read takes, one that delivers the rate's worth of its wait leaves the peer the whole grace."""
    pace = PeerPace(grace=grace)
    for seconds, more in reads:
        pace.took(seconds)
        pace.read(RecordsPage((), more=True), 1024 * max(more, math.ceil(seconds * pace.rate)))
        assert pace.allowance() >= grace - 1e-9


@given(st.floats(0.5, TIMEOUT))
def test_a_peer_delivering_a_record_a_read_falls_behind_within_a_read_of_its_grace(seconds):
    """Reads of one record each, `seconds` apart (just inside the timeout, say), have the peer behind (less left than
    its next read takes) once the grace is spent, however long each takes."""
    pace = PeerPace(grace=TIMEOUT)
    while pace.allowance() >= seconds:
        pace.took(seconds)
        pace.read(RecordsPage((RECORDS[0].raw,), more=True), len(RECORDS[0].raw))
    assert pace.waited <= TIMEOUT + seconds


def test_a_page_counts_its_records_or_the_heads_the_node_uses_or_its_kib_where_more():
    heads = HeadsPage(tuple(HeadEntry(f"did:key:z{i:04}", 1, bytes(32)) for i in range(3)), more=True)
    assert _units_of([(heads, len(encode_message(heads)), 3)]) == 3
    assert _units_of([(heads, len(encode_message(heads)), 0)]) == 1
    assert _units_of([(heads, 10 * 1024, 2)]) == 10
    records = RecordsPage((RECORDS[0].raw,), more=False)
    assert _units_of([(records, 10 * 1024, 0)]) == 10
    assert _units_of([(records, len(RECORDS[0].raw), 0)]) == 1
    assert _units_of([(Busy(1, "spent"), 10 * 1024, 0)]) == 0


def _units_of(reads: Iterable[tuple[Reply, int, int]], unused_heads_units: int = UNUSED_HEADS_UNITS) -> int:
    pace = PeerPace(grace=TIMEOUT, unused_heads_units=unused_heads_units)
    for reply, size, used in reads:
        pace.read(reply, size, used_heads=used)
    return pace.units


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 1 << 20)), max_size=50), st.integers(0, 3000))
def test_heads_the_node_uses_count_in_full_and_the_others_kib_no_more_than_the_bound(pages, bound):
    """However the pages of heads come, each head the node uses counts, and the KiB of the others buy no more than
    `unused_heads_units` in all (nor more than their KiB)."""
    page = HeadsPage((), more=True)
    units = _units_of([(page, size, used) for used, size in pages], bound)
    used = sum(used for used, _ in pages)
    assert used <= units <= used + bound
    assert units <= sum(max(used, math.ceil(size / 1024)) for used, size in pages)


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100), st.integers(0, 100), st.integers(1, 1 << 20)),
                max_size=50), st.integers(0, 3000))
def test_the_kib_of_heads_of_what_the_node_holds_count_in_full_beyond_the_bound(pages, bound):
    """A page's KiB beyond the heads the node uses count in full in the share of the heads of what it holds, whatever
    `unused_heads_units` is left; in all no more than the pages' KiB or used heads."""
    head = HeadEntry(ORG.did, 1, bytes(32))
    reads = [(HeadsPage((head,) * (used + held + others), more=True), size, used, held)
             for used, held, others, size in pages]
    pace = PeerPace(grace=TIMEOUT, unused_heads_units=bound)
    for reply, size, used, held in reads:
        before = pace.units
        pace.read(reply, size, used_heads=used, held_heads=held)
        if len(reply.heads) == used + held and held:
            assert pace.units - before == max(used, math.ceil(size / 1024))
    assert sum(used for used, *_ in pages) <= pace.units <= sum(max(used, math.ceil(size / 1024))
                                                                for used, _, _, size in pages)
    assert pace.unused_units <= bound
