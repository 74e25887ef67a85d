"""The gossip service (DESIGN.md §5): records in batches over the network's records topic, each message passed
through the gate before it is accepted or relayed, delivered into the replica; our own new records published.

Topic `/vouchnet/<network>/records/1`; message format in gossip.batch; validation in gossip.gate.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

import trio

from ledger import LedgerError
from vouching import Record
from vouching.cbor import encode

from .acceptor import Outcome
from .batch import batches, item_size
from .gate import PUBLISH_BURST_SECONDS, GateStats, GossipLimits, RecordGate
from .host import Host, InvalidPeerId, Received, peer_org
from .ratelimit import TokenBuckets
from .replica import Replica
from .stats import counted
from .store import StoreError
from .verdict import Verdict

logger = logging.getLogger(__name__)

Gaps = dict[str, tuple[int, int]]  # issuer -> (first, last) missing seq, as in acceptor.Outcome


def records_topic(network: str) -> str:
    return f"/vouchnet/{network}/records/1"


def _org_of(peer_id: str) -> str | None:
    """The org did of a peer: its PeerID embeds the org's key (DESIGN.md §2)."""
    try:
        return peer_org(peer_id)
    except InvalidPeerId:
        return None


@dataclass(frozen=True)
class GossipStats:
    """Counters since the service was made: the gate's, then delivery's (in records) and publishing's."""

    gate: GateStats
    records_accepted: int = counted("Gossiped records stored")
    records_duplicate: int = counted("Gossiped records already stored")
    records_outside_horizon: int = counted("Gossiped records of orgs outside this node's horizon, not stored")
    records_unlinked: int = counted("Gossiped records of a new key whose rotation has not arrived yet; sync fetches "
                                    "them once it does")
    records_held: int = counted("Gossiped records held, waiting for a missing predecessor")
    records_dropped: int = counted("Gossiped records dropped for want of room in the held buffer (their issuer's "
                                   "share of it); sync fetches them")
    records_rejected: int = counted("Gossiped valid records that break their issuer's chain")
    records_unstored: int = counted("Gossiped records the store could not write (a full disk); gossip or sync "
                                    "brings them again")
    gaps_reported: int = counted("Issuers whose missing range of records gossip handed to sync")
    published_messages: int = counted("Records-topic messages this node published")
    published_records: int = counted("This org's records published, in those messages")
    queued_records: int = counted("This org's records accepted and waiting to be published")


class GossipService:
    """Gossips the replica's records: validates and delivers what peers publish, publishes what we issue."""

    def __init__(
        self,
        host: Host,
        replica: Replica,
        *,
        network: str,
        limits: GossipLimits,
        clock: Callable[[], float] = trio.current_time,
        linger: float = 0.1,
        on_gaps: Callable[[str, Gaps], None] | None = None,
        cache_records: int = 16384,
    ) -> None:
        """`linger`: seconds a record of ours may wait for others to share its message (unless one fills up);
        each message costs every node a few ms of CPU in py-libp2p 0.8, so fewer, fuller messages carry more
        (benchmarks/gossip_service.py).
        `on_gaps(peer_id, gaps)`: called (it must not block) when delivered records wait for missing ones; the
        peer is the message's origin, which holds them but may not be connected (the sync service picks whom
        to ask). `cache_records`: verified records kept between validation and delivery.
        """
        self.topic = records_topic(network)
        self._host = host
        self._replica = replica
        self._clock = clock
        self._linger = linger
        self._on_gaps = on_gaps
        self._batch_bytes = limits.gossip_batch_bytes
        self._gate = RecordGate(limits, own_peer=host.peer_id, known=replica.store.holds, org_of=_org_of,
                                cache_records=cache_records)
        # Our own records leave no faster than peers let an org's records in (see gate.RECEIVE_BURST_SECONDS).
        self._pace = TokenBuckets[str](limits.org_records_per_second,
                                       max(1.0, limits.org_records_per_second * PUBLISH_BURST_SECONDS))
        self._queue: deque[tuple[float, bytes]] = deque()  # (queued at, record), never dropped
        self._queued_bytes = 0
        self._queue_changed = trio.Event()
        self._counts: Counter[str] = Counter()

    def stats(self) -> GossipStats:
        c = self._counts
        return GossipStats(
            gate=self._gate.stats(),
            records_accepted=c["accepted"],
            records_duplicate=c["duplicate"],
            records_outside_horizon=c["outside_horizon"],
            records_unlinked=c["unlinked"],
            records_held=c["held"],
            records_dropped=c["dropped"],
            records_rejected=c["rejected"],
            records_unstored=c["unstored"],
            gaps_reported=c["gaps"],
            published_messages=c["published_messages"],
            published_records=c["published_records"],
            queued_records=len(self._queue),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe and gossip until cancelled. Our records accepted from now on are published."""
        inbox = await self._host.subscribe(self.topic, self._validate)
        self._replica.listeners.append(self._on_accepted)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver, inbox)
                nursery.start_soon(self._publish)
                task_status.started()
        finally:
            self._replica.listeners.remove(self._on_accepted)

    def _validate(self, peer: str, data: bytes) -> Verdict:
        return self._gate.check(peer, data, self._clock())

    async def _deliver(self, inbox: trio.MemoryReceiveChannel[Received]) -> None:
        async for origin, data in inbox:
            if origin == self._host.peer_id:
                continue  # our own publish, already in the replica
            records = self._gate.records(data)
            if not records:
                continue
            try:
                outcome = self._replica.accept(records, origin)
            except (LedgerError, StoreError) as error:  # our disk, not the peer: the node runs on
                self._counts["unstored"] += len(records)
                logger.error("gossiped records not stored (%s); gossip or sync brings them again", error)
                continue
            self._count(origin, outcome)

    def _count(self, origin: str, outcome: Outcome) -> None:
        c = self._counts
        c["accepted"] += len(outcome.accepted)
        c["duplicate"] += outcome.duplicates
        c["outside_horizon"] += outcome.outside_horizon
        c["unlinked"] += outcome.unlinked
        c["held"] += outcome.held
        c["dropped"] += outcome.dropped
        c["rejected"] += len(outcome.rejected)
        for record, reason in outcome.rejected:
            logger.info("record %s of %s seq %d from gossip rejected: %s", record.id.hex(), record.iss, record.seq,
                        reason)
        if outcome.gaps and self._on_gaps is not None:
            c["gaps"] += len(outcome.gaps)
            self._on_gaps(origin, dict(outcome.gaps))

    def publish_stored(self, raws: list[bytes]) -> None:
        """Queue records already stored for publishing, whoever signed them: what `vouchnet key rotate` signed while
        the node was stopped (the old key's rotation and the new key's first record), which no peer holds yet and
        which `_on_accepted` never saw. Peers relay them as any message; those already holding them count
        duplicates."""
        now = self._clock()
        for raw in raws:
            self._queue.append((now, raw))
            self._queued_bytes += item_size(raw)
        if raws:
            self._queue_changed.set()

    def _on_accepted(self, records: list[Record]) -> None:
        """Replica listener: queue our own records for publishing (they are never dropped)."""
        now, queued = self._clock(), len(self._queue)
        for record in records:
            if record.iss == self._replica.did:
                self._queue.append((now, record.raw))
                self._queued_bytes += item_size(record.raw)
        if len(self._queue) > queued:  # peers' records need no publisher
            self._queue_changed.set()

    async def _publish(self) -> None:
        """Publish the queue one message at a time: when a message is full or its oldest record has lingered,
        and once the pace allows as many records as it carries.
        """
        did = self._replica.did
        most_per_message = math.floor(self._pace.burst)
        while True:
            while not self._queue:
                await self._wait_for_queue()
            with trio.move_on_after(max(0.0, self._queue[0][0] + self._linger - self._clock())):
                while self._queued_bytes < self._batch_bytes:
                    await self._wait_for_queue()
            batch = next(batches(islice((raw for _, raw in self._queue), most_per_message), self._batch_bytes))
            if (wait := self._pace.wait_time(did, len(batch), self._clock())) > 0:
                await trio.sleep(wait)
                continue  # more records may have come and fit
            self._pace.try_take(did, self._clock(), len(batch))
            for _ in batch:
                _, raw = self._queue.popleft()
                self._queued_bytes -= item_size(raw)
            message = encode(batch)  # batches() sized it to one message
            await self._host.publish(self.topic, message)
            self._counts["published_messages"] += 1
            self._counts["published_records"] += len(batch)

    async def _wait_for_queue(self) -> None:
        await self._queue_changed.wait()
        self._queue_changed = trio.Event()
