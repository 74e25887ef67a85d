"""Gap fetches under a hostile issuer (trio's mock clock, sessions counted, not run): an issuer inside the horizon
that signs past a seq it never publishes has every record after it reported as a gap, hundreds a second; an honest
issuer's gap reported beside them is still fetched at once (gossip.gap_queue, DESIGN.md §5)."""

from __future__ import annotations

import trio
from nacl.signing import SigningKey

from gossip.replica import Replica
from gossip.store import RecordStore
from gossip.sync_service import SyncService

from ..factories import Org
from .nodes import ConnectedHost

PEERS = [f"12D3KooWPeer{i}" for i in range(3)]
TIMEOUT = 10.0


class Sessions:
    """Stands in for SyncService._session: counts the gap sessions of each issuer; the hostile issuer's peers hold
    each one for `hostile_seconds` and have nothing, the honest issuer's first record is fetched at once."""

    def __init__(self, replica: Replica, hostile: Org, honest: Org, hostile_seconds: float) -> None:
        self.replica, self.hostile, self.honest_first = replica, hostile, honest.record()
        self.hostile_seconds = hostile_seconds
        self.started: list[tuple[float, str]] = []  # (when, issuer) of each gap session
        self.hostile_open = self.most_hostile_open = 0

    async def __call__(self, peer: str, gaps: dict[str, tuple[int, int]] | None) -> int:
        if gaps is None:  # a full round: nothing to fetch here
            return 0
        for iss in gaps:
            self.started.append((trio.current_time(), iss))
        if self.honest_first.iss in gaps:
            return len(self.replica.accept([self.honest_first]).accepted)
        self.hostile_open += 1
        self.most_hostile_open = max(self.most_hostile_open, self.hostile_open)
        try:
            await trio.sleep(self.hostile_seconds)
        finally:
            self.hostile_open -= 1
        return 0


async def _flood(service: SyncService, hostile: Org) -> None:
    """500 records/s past a seq never published, each held and its gap reported (from its publisher's peer)."""
    seq = 10
    while True:
        for _ in range(50):
            seq += 1
            service.request_gaps(PEERS[0], {hostile.did: (5, seq - 1)})
        await trio.sleep(0.1)


async def test_a_hostile_issuer_s_endless_gaps_leave_an_honest_issuer_s_gap_fetched_at_once(tmp_path, autojump_clock):
    """Found by review: every report queued a fetch of up to 3 sessions, so the flood kept the 8 session slots and
    the 256-entry queue full, and the honest gap was dropped."""
    hostile, honest = Org(), Org()
    with RecordStore.open(tmp_path) as store:
        replica = Replica(SigningKey.generate(), store, roots=(hostile.did, honest.did), max_hops=1, held_limit=10)
        service = SyncService(ConnectedHost(PEERS), replica, timeout=TIMEOUT)
        sessions = Sessions(replica, hostile, honest, hostile_seconds=TIMEOUT)  # a slow peer, just within time
        service._session = sessions
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            nursery.start_soon(_flood, service, hostile)
            await trio.sleep(60)
            reported = trio.current_time()
            service.request_gaps(PEERS[1], {honest.did: (1, 1)})
            with trio.move_on_after(600):
                while store.head(honest.did) is None:
                    await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert store.head(honest.did) is not None, "the honest gap was never fetched"
    [honest_at] = [at for at, iss in sessions.started if iss == honest.did]  # one session: its origin had it
    assert honest_at == reported  # before another hostile session: a worker was free
    assert sessions.most_hostile_open == 1  # one fetch of the issuer at a time, its peers asked in turn
    hostile_sessions = sum(1 for _, iss in sessions.started if iss == hostile.did)
    assert hostile_sessions <= 60 / TIMEOUT + 1  # one after the other for the first minute: 6, and one more
    assert service.stats.gap_requests_dropped == 0
    assert service.stats.gap_issuers_merged >= 500 * 60 - 100  # the flood's reports grew the one waiting range
