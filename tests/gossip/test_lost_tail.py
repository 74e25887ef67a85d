"""The last record an org issues, when its gossip and the gossip of the checkpoint announcing it are both lost, reaches
a peer within the bound README states ("Repairing what gossip missed"), at the default config, on trio's mock clock
(thread_aware_clock: it stands still while the issuer saves a checkpoint on a worker thread). Two nodes joined by
in-memory pieces: the issuer's Witnessing publishes onto a topic that hands each note to the peer's topic validator
and Witnessing (dropping what the test says), and the peer's SyncService pulls through a stream served by a
SyncServer over the issuer's store. Records themselves are never gossiped here: a record reaches the peer by catch-up
sync only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import trio
from nacl.signing import SigningKey

from gossip.host import Received, peer_id_from_public_key
from gossip.replica import Replica
from gossip.store import RecordStore
from gossip.sync import IssuerIndex, SyncServer
from gossip.sync_messages import CosignRequest, Cosigned
from gossip.sync_service import SyncService
from gossip.verdict import Verdict
from gossip.witnessing import REANNOUNCEMENTS, Witnessing
from ledger import AddCheckpointRequest
from vouching import vouch_body

from ..factories import new_did
from .nodes import NETWORK, ConnectedHost, identities, until
from .test_sync_session import ServedStream

SYNC_INTERVAL = 30.0  # node.config's default sync_interval, as the daemon gives it to both services
CHECKPOINT_INTERVAL = 1.0  # node.config's default checkpoint_interval


class LossyTopic:
    """The checkpoints topic from the issuer to the peer: each note published is judged by the peer's validator and,
    accepted, delivered to its Witnessing; the next `lose` notes are dropped on the way instead."""

    def __init__(self, publisher: str) -> None:
        self.publisher = publisher
        self.lose = 0
        self.lost: list[tuple[float, bytes]] = []  # (when, note) of each note dropped
        self.validator = None
        self.verdicts: list[Verdict] = []  # the peer's, on each note carried
        self.inbox_send, self.inbox = trio.open_memory_channel[Received](0)

    async def carry(self, data: bytes) -> None:
        if self.lose:
            self.lose -= 1
            self.lost.append((trio.current_time(), data))
            return
        self.verdicts.append(self.validator(self.publisher, data))
        if self.verdicts[-1] is Verdict.ACCEPT:  # (anything else is neither delivered nor relayed)
            await self.inbox_send.send(Received(self.publisher, data))


class TopicHost:
    """What a Witnessing asks of a host with no peer to cosign: the topic it publishes to (the issuer's) or reads
    from (the peer's)."""

    def __init__(self, peer_id: str, topic: LossyTopic, *, reader: bool) -> None:
        self.peer_id, self._topic, self._reader = peer_id, topic, reader

    async def subscribe(self, topic: str, validator) -> trio.MemoryReceiveChannel[Received]:
        if not self._reader:
            return trio.open_memory_channel[Received](0)[1]  # no one else publishes
        self._topic.validator = validator
        return self._topic.inbox

    def connected_peers(self) -> list[str]:
        return []

    async def publish(self, topic: str, data: bytes) -> None:
        if not self._reader:
            await self._topic.carry(data)


@dataclass
class Pair:
    issuer: Replica
    issuer_peer: str  # its PeerID
    witnessing: Witnessing  # the issuer's
    peer: Replica
    witness: Witnessing  # the peer's
    sync: SyncService  # the peer's
    topic: LossyTopic


@asynccontextmanager
async def issuer_and_peer(tmp_path) -> AsyncIterator[Pair]:
    """The issuer (witnessing its log) and the peer (witnessing, and syncing from the issuer), both running with the
    daemon's defaults for the intervals."""
    issuer_id, peer_id = identities(tmp_path, 2)
    issuer_peer = peer_id_from_public_key(bytes(SigningKey(issuer_id.seed).verify_key))
    with RecordStore.open(issuer_id.directory) as issued, RecordStore.open(peer_id.directory) as store:
        issuer = Replica(SigningKey(issuer_id.seed), issued, roots=(), max_hops=1, held_limit=10)
        peer = Replica(SigningKey(peer_id.seed), store, roots=(issuer.did,), max_hops=1, held_limit=10)
        topic = LossyTopic(issuer_peer)
        sync_host = ConnectedHost([issuer_peer])

        async def open_stream(peer: str, protocol: str) -> ServedStream:
            return ServedStream(SyncServer(issued, IssuerIndex(issued), sync.limits))

        sync_host.open_stream = open_stream
        sync = SyncService(sync_host, peer, network="test", interval=SYNC_INTERVAL)
        witnessings = [
            Witnessing(TopicHost(issuer_peer, topic, reader=False), issuer, network=NETWORK,
                       state_dir=issuer_id.directory, interval=CHECKPOINT_INTERVAL, reannounce_interval=SYNC_INTERVAL),
            Witnessing(TopicHost("the peer", topic, reader=True), peer, network=NETWORK, state_dir=peer_id.directory,
                       interval=SYNC_INTERVAL, reannounce_interval=SYNC_INTERVAL),  # (its own checkpoints go nowhere)
        ]
        witnessings[1].log_listeners.append(sync.heard_log)
        async with trio.open_nursery() as nursery:
            for witnessing in witnessings:
                await nursery.start(witnessing.run)
            await nursery.start(sync.run)
            yield Pair(issuer, issuer_peer, witnessings[0], peer, witnessings[1], sync, topic)
            nursery.cancel_scope.cancel()


def issue(replica: Replica) -> bytes:
    return replica.issue("vouch", vouch_body(new_did(), 0.5, "operator")).id


async def arrives(replica: Replica, record_id: bytes) -> None:
    """Return once `replica` holds the record (woken by each batch it accepts)."""
    await until(lambda: replica.store.has(record_id), [SimpleNamespace(replica=replica)])


async def test_a_last_record_whose_gossip_and_checkpoint_gossip_were_lost_arrives_within_the_bound(
        tmp_path, thread_aware_clock):
    """Without the issuer gossiping its unchanged checkpoint again, the peer, which had pulled everything and heard
    the issuer's log at that size, thought the issuer settled and pulled from it only after the refresh (20 sync
    intervals), 600-637.5 s later. Now it hears the size within a sync interval, and pulls at its next round."""
    # From the checkpoint's loss: gossiped again (at the first checkpoint interval past a sync interval), then the
    # next round (README's bound is from the loss).
    bound = SYNC_INTERVAL + CHECKPOINT_INTERVAL + 1.25 * SYNC_INTERVAL
    async with issuer_and_peer(tmp_path) as pair:
        first = issue(pair.issuer)
        await arrives(pair.peer, first)  # pulled as the peer started
        await trio.sleep(3 * 1.25 * SYNC_INTERVAL)  # its checkpoint heard, then a full round with the size heard
        pair.topic.lose = 1  # the next checkpoint's gossip (the record's own is never carried here)
        last = issue(pair.issuer)
        with trio.move_on_after(40 * SYNC_INTERVAL):
            await arrives(pair.peer, last)
        ((lost_at, _),) = pair.topic.lost  # the checkpoint announcing it was lost indeed
        assert lost_at < trio.current_time() <= lost_at + bound  # the record came after that, within the bound


async def test_an_issuer_gossips_its_unchanged_checkpoint_again_three_times_which_a_peer_holding_it_ignores(
        tmp_path, thread_aware_clock):
    """What the bound costs: after each new checkpoint, three more a sync interval apart from each node to the peers
    it is connected to, each opened and ignored there (not relayed, not delivered: gossip.forks ignores a checkpoint
    it holds), and none once the network has been idle for three intervals."""
    async with issuer_and_peer(tmp_path) as pair:
        issue(pair.issuer)
        await trio.sleep(10 * SYNC_INTERVAL)
        assert pair.topic.verdicts == [Verdict.ACCEPT] + [Verdict.IGNORE] * REANNOUNCEMENTS
        stats = pair.witnessing.stats
        assert (stats.checkpoints_gossiped, stats.checkpoints_reannounced) == (1, REANNOUNCEMENTS)


async def test_a_record_whose_gossip_and_checkpoint_gossips_were_lost_arrives_at_the_round_after_a_cosign_request(
        tmp_path, thread_aware_clock):
    """A cosign request shows the peer, as its witness, the issuer's log size: without it telling the sync service,
    the peer, every gossip of the issuer's new checkpoint lost, thought the issuer settled and pulled the record only
    after the refresh (20 sync intervals). Now it pulls it at its next round."""
    async with issuer_and_peer(tmp_path) as pair:
        first = issue(pair.issuer)
        await arrives(pair.peer, first)
        await trio.sleep(3 * 1.25 * SYNC_INTERVAL)  # its checkpoint heard, then a full round with the size heard
        delivered = len(pair.topic.verdicts)
        pair.topic.lose = 1 + REANNOUNCEMENTS  # the next checkpoint's gossip and every gossip of it again
        last = issue(pair.issuer)
        while not pair.topic.lost:
            await trio.sleep(CHECKPOINT_INTERVAL)
        [(_, note)] = pair.topic.lost
        request = CosignRequest(AddCheckpointRequest(0, (), note).to_bytes())  # the peer's witness cosigned none yet
        assert isinstance(await pair.witness.cosign(pair.issuer_peer, request), Cosigned)
        asked_at = trio.current_time()
        with trio.move_on_after(40 * SYNC_INTERVAL):
            await arrives(pair.peer, last)
        assert trio.current_time() <= asked_at + 1.25 * SYNC_INTERVAL  # the next round, jittered
        assert len(pair.topic.verdicts) == delivered  # no checkpoint of the issuer's reached the peer meanwhile
