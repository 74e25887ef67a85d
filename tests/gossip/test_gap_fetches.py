"""Gap fetches under a hostile issuer (trio's mock clock, sessions counted, not run): an issuer inside the horizon
that signs past a seq it never publishes has every record after it reported as a gap, hundreds a second; an honest
issuer's gap reported beside them is still fetched at once (gossip.gap_queue, DESIGN.md §5)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
from nacl.signing import SigningKey

from gossip.replica import Replica
from gossip.store import RecordStore
from gossip.sync_service import SyncService

from ..factories import Org
from .nodes import ConnectedHost

PEERS = [f"12D3KooWPeer{i}" for i in range(3)]
TIMEOUT, INTERVAL = 10.0, 30.0
HOSTILES, HONEST = [Org() for _ in range(4)], Org()
HOSTILE = HOSTILES[0]
HONEST_FIRST = HONEST.record()  # what the honest issuer's gap lacks


class Sessions:
    """Stands in for SyncService._session: counts the gap sessions of each issuer; the hostile issuer's peers hold
    each one for `hostile_seconds` and have nothing, the honest issuer's first record is fetched at once."""

    def __init__(self, replica: Replica, hostile_seconds: float) -> None:
        self.replica, self.hostile_seconds = replica, hostile_seconds
        self.started: list[tuple[float, str]] = []  # (when, issuer) of each gap session
        self.hostile_open = self.most_hostile_open = 0

    async def __call__(self, peer: str, gaps: dict[str, tuple[int, int]] | None, *, cut: object) -> int:
        if gaps is None:  # a full round: nothing to fetch here
            return 0
        for iss in gaps:
            self.started.append((trio.current_time(), iss))
        if HONEST.did in gaps:
            return len(self.replica.accept([HONEST_FIRST]).accepted)
        self.hostile_open += 1
        self.most_hostile_open = max(self.most_hostile_open, self.hostile_open)
        try:
            await trio.sleep(self.hostile_seconds)
        finally:
            self.hostile_open -= 1
        return 0


async def _flood(service: SyncService, hostiles: list[Org]) -> None:
    """500 records/s of each of `hostiles` past a seq never published, each held and its gap reported (from its
    publisher's peer)."""
    seq = 10
    while True:
        for _ in range(50):
            seq += 1
            for hostile in hostiles:
                service.request_gaps(PEERS[0], {hostile.did: (5, seq - 1)})
        await trio.sleep(0.1)


@dataclass
class Flooded:
    store: RecordStore
    service: SyncService
    sessions: Sessions
    reported: float  # when the honest issuer's gap was

    def started(self, iss: str) -> list[float]:
        """When each gap session of `iss` started."""
        return [at for at, of in self.sessions.started if of == iss]


@asynccontextmanager
async def flooded(tmp_path: Path, *, hostile_seconds: float, for_seconds: float, hostiles: int = 1,
                  gap_queue: int = 256) -> AsyncIterator[Flooded]:
    """A node whose sessions `Sessions` stands in for, with `hostiles` hostile issuers' gaps reported for
    `for_seconds` (and on) before the honest issuer's one gap is."""
    roots = (*(hostile.did for hostile in HOSTILES), HONEST.did)
    with RecordStore.open(tmp_path) as store:
        replica = Replica(SigningKey.generate(), store, roots=roots, max_hops=1, held_limit=10)
        service = SyncService(ConnectedHost(PEERS), replica, network="test", timeout=TIMEOUT, interval=INTERVAL,
                              gap_queue=gap_queue)
        sessions = Sessions(replica, hostile_seconds)
        service._session = sessions
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            nursery.start_soon(_flood, service, HOSTILES[:hostiles])
            await trio.sleep(for_seconds)
            service.request_gaps(PEERS[1], {HONEST.did: (1, 1)})
            yield Flooded(store, service, sessions, trio.current_time())
            nursery.cancel_scope.cancel()


async def test_a_hostile_issuer_s_endless_gaps_leave_an_honest_issuer_s_gap_fetched_at_once(tmp_path, autojump_clock):
    """Found by review: every report queued a fetch of up to 3 sessions, so the flood kept the 8 session slots and
    the 256-entry queue full, and the honest gap was dropped."""
    async with flooded(tmp_path, hostile_seconds=TIMEOUT, for_seconds=60) as node:  # slow peers, just within time
        with trio.move_on_after(600):
            while node.store.head(HONEST.did) is None:
                await trio.sleep(1)
    assert node.store.head(HONEST.did) is not None, "the honest gap was never fetched"
    assert node.started(HONEST.did) == [node.reported]  # at once, from its origin; before another hostile session
    assert node.sessions.most_hostile_open == 1  # one fetch of the issuer at a time, its peers asked in turn
    assert len(node.started(HOSTILE.did)) <= 60 / TIMEOUT + 1  # one after the other for the first minute, and one
    assert node.service.stats.gap_requests_dropped == 0
    assert node.service.stats.gap_issuers_merged >= 500 * 60 - 100  # the flood's reports grew the one waiting range


async def test_a_gap_no_peer_has_is_fetched_again_after_a_backoff_not_at_every_report(tmp_path, autojump_clock):
    """Without a backoff, each of the flood's reports after a vain fetch started the next one: ten fetches a second
    (3,000 in five minutes), 3 sessions each."""
    async with flooded(tmp_path, hostile_seconds=0.0, for_seconds=200) as node:  # peers that have nothing, and say so
        await trio.sleep(100)
    # fetched at 0, 1, 3, 7, 15 and 31 s, then every 30 s (the interval, when a periodic round comes anyway) to 271
    assert len(node.started(HOSTILE.did)) == len(PEERS) * (6 + 8)
    assert node.service.stats.gap_issuers_vain == 6 + 8
    assert node.started(HONEST.did) == [node.reported]  # the hostile issuer's backoff is none of its


async def test_when_hostile_issuers_fill_the_gap_queue_an_honest_gap_takes_the_place_of_one_backing_off(
        tmp_path, autojump_clock):
    """Fresh keys vouched into the horizon cost an org nothing: as many of them as the queue holds, each with gaps no
    peer has, kept every honest gap out until a periodic round."""
    async with flooded(tmp_path, hostile_seconds=0.0, for_seconds=5, hostiles=4, gap_queue=4) as node:
        await trio.sleep(1)
    assert node.started(HONEST.did) == [node.reported]
    assert node.service.stats.gap_issuers_displaced == 1


async def test_gap_fetches_do_not_queue_behind_a_peer_slow_to_answer(tmp_path, autojump_clock):
    """Found by the sync hunt: sessions with one peer take turns, so every gap fetch from a peer that answers just in
    time (each of its reports a new issuer's gap: fresh keys cost nothing) waited for the one before, one worker after
    the other, until none was left to fetch an honest gap from another peer: it waited half an hour (three of the
    slow peer's sessions). A fetch now waits `timeout` at most for its turn with a peer."""
    slow, fresh = PEERS[0], [Org() for _ in range(10)]
    started: list[tuple[float, str]] = []
    honest_fetched: list[float] = []
    with RecordStore.open(tmp_path) as store:
        replica = Replica(SigningKey.generate(), store, roots=(*(org.did for org in fresh), HONEST.did),
                          max_hops=1, held_limit=10)
        service = SyncService(ConnectedHost(PEERS), replica, network="test", timeout=TIMEOUT, interval=INTERVAL)

        async def session(peer: str, gaps: dict[str, tuple[int, int]] | None, *, cut: object) -> int:
            if gaps is None:
                return 0
            started.append((trio.current_time(), peer))
            if peer == slow:
                await trio.sleep(service.session_seconds)  # a read just before each timeout, to the session's end
            if HONEST.did not in gaps:
                return 0
            honest_fetched.append(trio.current_time())
            return len(replica.accept([HONEST_FIRST]).accepted)

        service._session = session
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            for org in fresh:
                service.request_gaps(slow, {org.did: (1, 5)})
                await trio.sleep(0.1)
            service.request_gaps(PEERS[1], {HONEST.did: (1, 1)})
            reported = trio.current_time()
            await trio.sleep(2 * TIMEOUT)
            assert store.head(HONEST.did) is not None, "the honest gap waited behind the slow peer"
            # when the first fetch waiting for its turn gave up
            assert reported < honest_fetched[0] <= reported + TIMEOUT
            assert sum(peer == slow for _, peer in started) == 1  # its one session still running
            assert service.stats.errors["turn"] >= 7
            nursery.cancel_scope.cancel()


async def test_a_peer_reporting_fresh_issuers_gaps_faster_than_they_are_fetched_leaves_room_for_an_honest_gap(
        tmp_path, autojump_clock):
    """Found by stop 40's reader: a peer answering just in time, reporting new issuers' gaps (their keys vouched into
    the horizon cost an org nothing) faster than the fetches waiting for its turn end, kept the queue full of ranges
    waiting in turn, which took no one's place: a gap an honest peer reported was dropped, to wait for a periodic
    round. It takes the place of the flooding peer's newest."""
    slow = PEERS[0]
    honest_fetched: list[float] = []
    with RecordStore.open(tmp_path) as store:
        replica = Replica(SigningKey.generate(), store, roots=(HONEST.did,), max_hops=1, held_limit=10)
        service = SyncService(ConnectedHost(PEERS), replica, network="test", timeout=TIMEOUT, interval=INTERVAL,
                              gap_queue=16)

        async def session(peer: str, gaps: dict[str, tuple[int, int]] | None, *, cut: object) -> int:
            if gaps is not None and HONEST.did in gaps:
                honest_fetched.append(trio.current_time())
                return len(replica.accept([HONEST_FIRST]).accepted)
            if gaps is not None and peer == slow:
                await trio.sleep(service.session_seconds)  # a read just before each timeout, to the session's end
            return 0  # (the other peers have none of the fresh issuers' records)

        async def flood() -> None:
            for fresh in range(10_000):
                service.request_gaps(slow, {f"did:key:zFresh{fresh}": (1, 4)})
                await trio.sleep(0.01)

        service._session = session
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            nursery.start_soon(flood)
            await trio.sleep(5)
            assert len(service._gaps) == 16 and service.stats.gap_requests_dropped > 0  # full of the flood's
            service.request_gaps(PEERS[1], {HONEST.did: (1, 1)})
            reported = trio.current_time()
            await trio.sleep(2 * TIMEOUT)
            assert store.head(HONEST.did) is not None, "the honest gap was dropped"
            assert len(honest_fetched) == 1 and honest_fetched[0] <= reported + TIMEOUT  # as a fetch gave up a turn
            assert service.stats.gap_issuers_displaced == 1
            nursery.cancel_scope.cancel()
