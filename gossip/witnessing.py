"""Witnessing (DESIGN.md §4–5), the trio shell: when the records ledger changed, sign a C2SP checkpoint of it, have
a bounded set of connected peers cosign it over `/vouchnet/sync/1` (gossip.cosigning), keep, persist and publish
the cosigned note; cosign peers' checkpoints with a ledger.Witness, a peer's log after a key rotation (DESIGN §2)
continuing its earlier keys'; turn two roots at one size of a log into `equivocation`.

Each checkpoint is cosigned by at most `witnesses` peers, the trust roots first (their cosignatures are the ones this
org relies on), then one peer of each independence group of the orgs this node gives an independent witness's weight,
then the rest of those, then the others (`witness_order`), in an order unique to this node: so the network's
cosigning work grows with its size times `witnesses`, not with its size squared, and spreads evenly over the nodes.
Fork detection does not depend on the bound: every node compares every gossiped checkpoint with those of its org
taken in within a window (gossip.forks; further apart, a fork is left to the witnesses). A node signs a checkpoint
every `interval` (when its ledger changed) but gossips one at most every `gossip_interval`, and less often in a
network of more orgs (gossip.checkpoints.CheckpointPace): each gossiped checkpoint reaches and costs every node, so
their rate sets the network's per-node overhead; witnesses check every checkpoint they cosign. A node that gossiped
none for `reannounce_interval` (the sync interval) gossips its latest again, unchanged, up to REANNOUNCEMENTS times
after each new one, as an RFC 6962 log with no new entries signs its same tree again within each maximum merge delay
(§3.5): a peer that missed it (a dropped RPC, a brief disconnection) learns its log's size within that interval, and
its sync service pulls the records it lacks at its next round, where it would otherwise have waited for the refresh
(gossip.sync_service, 20 intervals). A peer that holds it ignores it and relays nothing (gossip.forks), as one
outside whose horizon our org is does if it relayed it last (`_admit`), so each reaches the peers we are connected to
(the mesh, the others by IHAVE and IWANT) and goes no further; and a network idle for REANNOUNCEMENTS intervals sends
none (a message costs milliseconds of CPU in py-libp2p: gossiped every interval for ever, each node among 20, all
connected, received 145 a minute at a 10 s sync interval and used 8.2-10.0 ms of CPU a second idle against 2.7,
benchmarks/node_cpu.py).

A node asks each peer, the peers connected at start before it signs its first checkpoint and any other as it
connects, for the newest checkpoint of its log it holds (`held_checkpoint` answers them). A node whose data
directory was restored from an older copy holds a ledger that grew again in another order: if it does not extend
that checkpoint, any checkpoint it signed would contradict one it published, evidence that flags its org
everywhere, so it signs and publishes none (`log_state`).

Whom a checkpoint waits for (`_waiting`): the answers due when its wait began, from the peers that stay
connected, each asked up to _ATTEMPTS times for `timeout` each. A peer that connects meanwhile is asked at once and
its answer is acted on as it comes, but it holds back the next checkpoint, not this one; no peer is asked to
cosign before it answered. So a wait ends within _ATTEMPTS x (`timeout` + `interval`): peers connecting under ever
new keys, slow or many, delay checkpoints and stop none (before, no checkpoint was signed while any answer was
due). What this gives up: a peer that holds a checkpoint of ours, connects during a wait and answers after the
peers awaited may get the checkpoint that wait held back by gossip before its answer stops us; so a restored
ledger whose peers holding its published checkpoint all do that signs and gossips one contradicting it. That was
possible before for every such peer not connected as we sign (gossip reaches it through others), and a node
starting with no peer connected signed one at once; a cosign request, the witness's own evidence against us,
still goes to no peer before it answered.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import sqlite3
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ledger import (
    MAX_COSIGNATURES,
    MAX_NOTE_SIZE,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    Ed25519Signer,
    Ed25519Verifier,
    Equivocation,
    NoteError,
    Signature,
    Witness,
    WitnessStoreError,
    cosigner_name,
    format_note,
    log_origin,
    note_signature,
    open_checkpoint,
    parse_log_origin,
    peek_origin,
)
from ledger.files import replace_file
from ledger.names import PREFIX
from vouching import EquivocationBody, InvalidRecord, did_key, equivocation_body, public_key_from_did

from .checkpoints import (
    CHECKPOINT_FILE,
    NETWORK_CHECKPOINTS_PER_S,
    PEER_CHECKPOINTS_PER_S,
    RECORDS_LOG,
    WITNESS_FILE,
    CheckpointPace,
    CheckpointValidator,
    OrgCheckpoint,
    checkpoints_topic,
    cosigner_verifiers,
)
from .cosigning import CosignClient, Witnessed, answer
from .forks import CHECKPOINT_BURST, FORK_WINDOW, ForkDetector
from .frames import FrameError
from .host import Host, HostError, InvalidPeerId, Received, Stream, peer_id_from_public_key, peer_org, peer_public_key
from .ratelimit import TokenBuckets
from .replica import Replica
from .stats import by_reason, counted
from .sync import Send
from .sync_messages import (
    SYNC_ERROR_REASONS,
    SYNC_PROTOCOL,
    CheckpointRequest,
    CosignRequest,
    Cosigned,
    ErrorReply,
    HeldCheckpoint,
    OtherNetwork,
    OtherNetworkPeer,
    Refused,
    RemoteProtocolError,
    Reply,
    SyncError,
    decode_reply,
    encode_message,
)
from .validation import check_checkpoint_evidence
from .verdict import Verdict

logger = logging.getLogger(__name__)

# The longest reply a witness can send: what it holds of our log is one note; a cosignature line or a refusal is
# far shorter. A longer frame is refused unread (the reply is decoded on the loop: 1 MiB of dense CBOR took ~1 s).
_MAX_REPLY = MAX_NOTE_SIZE + 1024
_NOT_RUNNING = Refused(503, "this node's witness is not running")
_CANNOT_STORE = Refused(503, "this node's witness cannot store its state now; ask again later")
REANNOUNCEMENTS = 3  # times an unchanged checkpoint is gossiped again, each `reannounce_interval` after the last
_ATTEMPTS = 3  # requests for one checkpoint (or for what a peer holds of our log) that may go unanswered before
# a peer is left alone until the next


@dataclass
class WitnessStats:
    """Counters since the service started (node/metrics renders them)."""

    checkpoints_signed: int = counted("Checkpoints of this node's records ledger signed")
    checkpoints_gossiped: int = counted("Cosigned checkpoints of this node's log gossiped to every node")
    checkpoints_reannounced: int = counted("This node's latest checkpoint gossiped again, unchanged, a sync interval "
                                           "after the last time, up to 3 times after each new one: peers that "
                                           "missed it learn its size; those that hold it ignore it and relay nothing")
    cosign_requests: int = counted("Cosignatures of this node's checkpoints asked of peers")
    streams_opened: int = counted("Streams opened to witnesses, for those requests and for asking what peers hold of "
                                  "this node's log (each kept for the next request to the same witness)")
    cosignatures: int = counted("Cosignatures of this node's checkpoints collected from peers")
    declined: Counter[int] = by_reason("Peers' refusals to cosign this node's checkpoints, by tlog-witness status")
    errors: Counter[str] = by_reason("Failed requests to witnesses, and evidence of a fork that failed its check, "
                                     "by reason", (*SYNC_ERROR_REASONS, "timeout", "held_checkpoint", "persist",
                                                   "evidence"))
    cosigned_for_peers: int = counted("Peers' checkpoints this node cosigned")
    refused_peers: Counter[int] = by_reason("Peers' cosign requests this node refused, by tlog-witness status")
    checkpoints_received: int = counted("Gossiped checkpoints of other orgs' logs received")
    checkpoints_rejected: dict[str, int] = by_reason("Gossiped checkpoints the checkpoints topic rejected (the peer "
                                                     "penalised), by reason")
    checkpoints_ignored: dict[str, int] = by_reason("Gossiped checkpoints the checkpoints topic ignored (not relayed, "
                                                    "no penalty), by reason")
    forks: int = counted("Forks seen: two roots at one size of some org's log")
    equivocations_issued: int = counted("Equivocation records this node signed as evidence of a fork")
    publish_errors: int = counted("Gossip publications of this node's checkpoint that failed")
    gossip_period_seconds: float = counted("Seconds from this node's last gossiped checkpoint to its next (it "
                                           "stretches to a second per org heard from)", 0.0)
    log_diverged: int = counted("1 once this node's ledger was found not to extend a checkpoint it published: it "
                                "signs no checkpoint again (GET /v1/node's log)")
    log_behind: int = counted("1 while this node's ledger is smaller than the newest checkpoint of its log its peers "
                              "hold (a restore from an older copy): it signs no checkpoint until it has grown to that "
                              "size (GET /v1/node's log)")
    published_cosignatures: int = counted("Cosignatures on this node's latest published checkpoint, whoever cosigned "
                                          "(vouchnet_witness_published_independent_groups counts the witnesses it "
                                          "counts on)")


@dataclass
class _Latest:
    """Our newest checkpoint, its log signature and the cosignatures collected for it (by cosigner name). Its notes
    are formatted once: `log_note`, sent to every witness asked, and `note`, again only when a cosignature joined
    (before, once a request and once an interval)."""

    checkpoint: Checkpoint
    log_signature: Signature
    cosignatures: dict[str, Signature] = field(default_factory=dict)
    _note: tuple[tuple[Signature, ...], bytes] | None = field(default=None, init=False, repr=False, compare=False)

    def note(self) -> bytes:
        signatures = (self.log_signature, *self.cosignatures.values())
        if self._note is None or self._note[0] != signatures:
            self._note = signatures, format_note(self.checkpoint.to_text(), signatures)
        return self._note[1]

    @functools.cached_property
    def log_note(self) -> bytes:
        return format_note(self.checkpoint.to_text(), [self.log_signature])


class SavedCheckpointUnusable(Exception):
    """Our saved checkpoint is damaged, or of another org's or network's log: the node would sign as another log's."""


class SavedCheckpointMismatch(Exception):
    """Our saved checkpoint, signed over our records ledger, has another root than the ledger now has at its size."""


class Witnessing:
    """Checkpoints of this node's records log, cosigned by its peers; and this node's witness for theirs.

    `cosign` answers peers' cosign requests: give it to the SyncService (which serves the protocol).
    `state_dir` holds the witness's state (WITNESS_FILE) and our latest published checkpoint (CHECKPOINT_FILE),
    both kept across restarts; SavedCheckpointMismatch if that checkpoint's root is not the ledger's at its size.
    """

    def __init__(
        self,
        host: Host,
        replica: Replica,
        *,
        network: str,
        state_dir: Path,
        interval: float = 1.0,
        gossip_interval: float = 10.0,
        reannounce_interval: float = 30.0,
        witnesses: int = 8,
        timeout: float = 10.0,
        max_concurrent: int = 8,
        fork_window: float = FORK_WINDOW,
        peer_checkpoints_per_second: float = PEER_CHECKPOINTS_PER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (interval > 0 and gossip_interval > 0 and reannounce_interval > 0 and timeout > 0 and fork_window > 0
                and max_concurrent >= 1 and peer_checkpoints_per_second > 0):
            raise ValueError("Witnessing: intervals, timeout, fork window and peer rate must be positive, "
                             "max_concurrent at least 1")
        if not 1 <= witnesses <= MAX_COSIGNATURES:
            raise ValueError(f"Witnessing: witnesses must be 1-{MAX_COSIGNATURES}, got {witnesses}")
        self.host = host
        self.replica = replica
        self.network = network
        self.origin = log_origin(network, replica.did, RECORDS_LOG)
        self.interval = interval
        self.pace = CheckpointPace(gossip_interval)
        self.reannounce_interval = reannounce_interval
        self.witnesses = witnesses
        self.timeout = timeout
        self.stats = WitnessStats(gossip_period_seconds=self.pace.minimum)
        self.listeners: list[Callable[[bytes], None]] = []  # called with each new cosigned note we hold
        # called with (org, size) for each gossiped checkpoint of the records log of an org inside the horizon, and
        # for each checkpoint of one cosigned at its request (SyncService.heard_log: a peer whose log did not grow
        # since we pulled it all is not pulled again; one that asked us to cosign a larger size is, at the next round)
        self.log_listeners: list[Callable[[str, int], None]] = []
        # called with (peer, its network) for each peer that answered our checkpoint request from another network
        # (SyncService.heard_other_network counts and logs it); the peer is disconnected and not asked to cosign
        self.network_listeners: list[Callable[[str, str], None]] = []
        # the independence group of an org this node gives an independent witness's weight, else None (node.daemon
        # sets TrustService.witness_group, the bar `vouchnet log verify` judges by); none is known without it
        self.witness_group: Callable[[str], str | None] = lambda org: None
        self._signer = Ed25519Signer(self.origin, replica.key)
        self._cosigner = CosignatureSigner(cosigner_name(replica.did), replica.key, clock=clock)
        self._witness_path = state_dir / WITNESS_FILE
        self._checkpoint_path = state_dir / CHECKPOINT_FILE
        self._witness: Witness | None = None
        self._logs: dict[str, Ed25519Verifier] = {}  # the witness's: filled with each requesting peer's log key
        # The witness's `continues`: a requesting peer's log -> its log under its org's earlier keys, newest first;
        # set on the node's thread for the requests being answered (counted), so the witness's worker thread never
        # reads the Succession; kept no longer, or an org's chain of n keys would leave n^2 / 2 origins here.
        self._earlier: dict[str, tuple[str, ...]] = {}
        self._answering: Counter[str] = Counter()
        self._limiter = trio.CapacityLimiter(max_concurrent)
        self._latest = self._restore()
        self._asked: set[str] = set(self._latest_cosigners())
        self._in_flight: set[str] = set()
        self._failures: Counter[str] = Counter()  # requests to a peer that got no answer, for the latest checkpoint
        self._cosigned_size: dict[str, int] = {}  # peer -> size it last cosigned for us, as far as we know
        # The note last published (saved first) and its checkpoint, whose size is the log's public size
        self._published: tuple[bytes, Checkpoint] | None = (
            None if self._latest is None else (self._latest.note(), self._latest.checkpoint))
        self._gossiped: bytes | None = None
        self._gossip_due = -math.inf
        self._gossiped_at = -math.inf  # when we last gossiped a checkpoint, again or not
        self._reannounced = 0  # times we gossiped it again
        self._unsaved = 0  # tries in a row that failed to save our checkpoint: the first is logged, and the save ending
        # them (`_publish`: on a full disk one failed each interval, twice where no witness was asked)
        self._forks = ForkDetector(window=fork_window)
        # Outsiders' checkpoints are relayed at the pace the detector lets an org's in, and not remembered but for
        # the last relayed of each origin, whose repeats (its node gossiping it again) go no further (_admit)
        self._outsiders = TokenBuckets[str](NETWORK_CHECKPOINTS_PER_S, CHECKPOINT_BURST)
        self._outsiders_relayed: OrderedDict[str, tuple[int, bytes]] = OrderedDict()  # origin -> (size, root)
        self._validator = CheckpointValidator(network, admit=self._admit, own_peer=host.peer_id,
                                              peer_rate=peer_checkpoints_per_second, clock=trio.current_time)
        self.stats.checkpoints_rejected = self._validator.rejected  # (counted there)
        self.stats.checkpoints_ignored = self._validator.ignored
        self._roots = frozenset(replica.roots)
        self._streams: dict[str, Stream] = {}  # witness peer -> the stream of our last exchange, kept for the next
        self.checked = trio.Event()  # set once the peers connected at start told us what they hold of our log
        self._queried: set[str] = set()  # peers asked, this run, for the newest checkpoint of our log they hold
        self._querying: set[str] = set()  # those not done answering (not asked to cosign meanwhile)
        # connected peers that answered from another network: not asked to cosign until they leave, or a sync round
        # shows them on ours (`same_network`)
        self._apart: set[str] = set()
        self._awaited: set[str] | None = None  # those of them the next checkpoint waits for (`_waiting`)
        self._query_failures: Counter[str] = Counter()  # queries that got no answer, by peer
        self._elsewhere: Checkpoint | None = None  # the newest checkpoint of our log a peer showed us (we signed it)
        self._compared = True  # whether our ledger was compared with _elsewhere since it last changed
        self._state = "ok"  # log_state's

    def checkpoint_note(self) -> bytes | None:
        """Our latest checkpoint with the cosignatures collected for it, as last persisted and published
        (for `GET /v1/log/checkpoint`): one is published once the witnesses asked for it have answered or failed."""
        return None if self._published is None else self._published[0]

    def independent_cosigners(self) -> int:
        """How many independence groups of witnesses at this node's bar (`witness_group`) cosigned our latest
        published checkpoint (`independent_witnesses`), what the README's alert on witnessing counts: any peer
        connected may be asked to cosign, one under a key made up for the purpose, or given a sliver of reputation,
        among them."""
        if self._published is None:
            return 0
        replica = self.replica
        return independent_witnesses(cosigner_verifiers(self._published[0]), self.witness_group, replica.flagged,
                                     replica.succession.keys(replica.did))

    def published_checkpoint(self) -> Checkpoint | None:
        """The checkpoint of `checkpoint_note()`, held as it was signed: its size is the log's public size
        (node.api.log), read on every request to the log API without parsing the note."""
        return None if self._published is None else self._published[1]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Checkpoint, ask for cosignatures, publish, witness and watch checkpoints until cancelled."""
        validator = self._validator
        inbox = await self.host.subscribe(checkpoints_topic(self.network), validator)
        self._witness = Witness(self._witness_path, self._cosigner, self._logs, lambda o: self._earlier.get(o, ()))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch, inbox, validator, self._witness)
                nursery.start_soon(self._checkpoint_loop, nursery)
                task_status.started()
        finally:
            witness, self._witness = self._witness, None
            streams, self._streams = list(self._streams.values()), {}
            with trio.CancelScope(shield=True):
                # Closing waits for a cosign write under way (an fsync): on a worker thread, not the node's
                await trio.to_thread.run_sync(witness.close)
                for stream in streams:
                    await stream.reset()

    def log_state(self) -> dict[str, Any]:
        """How our records ledger stands to the newest checkpoint of our log that a peer holds (`published`, None if
        none told us), for GET /v1/node: "ok" (it extends it); "behind" (it is smaller: no checkpoint is signed
        until it has grown to that size, then compared); "diverged" (its root at that size, `ledger_root`,
        differs: a restore from an older copy; no checkpoint is signed again)."""
        published, ledger = self._elsewhere, self.replica.store.ledger
        return {
            "state": self._state,
            "published": None if published is None else {"size": published.size, "root": published.root.hex()},
            "ledger_root": None if published is None or ledger.size < published.size
            else ledger.root(published.size).hex(),
        }

    async def held_checkpoint(self, peer_id: str) -> Reply:
        """Answer a peer asking for the newest checkpoint of its own records log that this node holds: the one its
        witness last cosigned, or a larger one seen gossiped (the SyncService calls this). From the witness's memory:
        the peer, which signs no checkpoint until answered, does not wait for a write the witness is making."""
        witness = self._witness
        if witness is None:
            return self._refuse(_NOT_RUNNING)
        try:
            origin = log_origin(self.network, peer_org(peer_id), RECORDS_LOG)
        except InvalidPeerId as e:
            return self._refuse(Refused(403, str(e)[:200]))
        cosigned = witness.cosigned(origin)
        held = [] if cosigned is None else [(cosigned[0].size, cosigned[1])]
        if (seen := self._forks.newest(origin)) is not None:
            held.append(seen)
        return HeldCheckpoint(max(held)[1] if held else None)

    async def cosign(self, peer_id: str, request: CosignRequest) -> Reply:
        """Answer a peer's request to cosign its records log's checkpoint (the SyncService calls this). The witness
        checks and stores on a worker thread: the fsync that must come before a cosignature does not stop the node.
        Once cosigned, the log's size is told to `log_listeners` as a gossiped checkpoint's is: the request shows
        its log grew even when the checkpoint's gossip was lost."""
        witness = self._witness
        if witness is None:
            return self._refuse(_NOT_RUNNING)
        try:
            key = peer_public_key(peer_id)
        except InvalidPeerId as e:
            return self._refuse(Refused(403, str(e)[:200]))
        org = did_key(key)
        if org not in self.replica.horizon:
            # What a witness keeps grows with the logs it follows: only those of orgs it replicates, so that a
            # stranger making keys by the thousand cannot fill its state (nor its memory).
            return self._refuse(Refused(404, "origin: this witness follows the logs of the orgs inside its "
                                             "replication horizon only"))
        if self.replica.succession.unlinked(org):
            # It says it replaces a key whose rotation naming it is not here yet: once that arrives, its log must
            # go on from the old key's; cosigned now, it would start afresh.
            return self._refuse(Refused(404, "origin: this key names a key it replaces, whose rotation record "
                                             "this witness has not seen yet; ask again later"))
        if self.replica.succession.retired(org):
            # Its node signs nothing more (DESIGN §2), and its successor's log, once shown to continue it, is never
            # compared with it again: witnessed on, it could carry another history after the rotation.
            return self._refuse(Refused(404, "origin: this key was retired by its rotation record; this witness "
                                             "follows its successor's log"))
        origin = log_origin(self.network, org, RECORDS_LOG)
        self._logs.setdefault(origin, Ed25519Verifier(origin, key))
        self._earlier[origin] = self._earlier_logs(org)  # a rotation may have linked its key since its last request
        self._answering[origin] += 1
        try:
            reply, evidence, size = await trio.to_thread.run_sync(_answer_sized, witness, request, origin)
        except WitnessStoreError:  # closed while the request waited for a thread: the node is stopping
            return self._refuse(_NOT_RUNNING)
        except sqlite3.OperationalError as error:  # a full disk, say: the peer asks again later
            logger.error("cannot store what this witness cosigns (%s); declined %s's request", error, origin)
            return self._refuse(_CANNOT_STORE)
        finally:  # (the thread has returned: run_sync waits for it even when cancelled)
            self._answering[origin] -= 1
            if not self._answering[origin]:
                del self._answering[origin], self._earlier[origin]
        if isinstance(reply, Refused):
            self._refuse(reply)
        else:
            self.stats.cosigned_for_peers += 1
        if size is not None:
            for listener in self.log_listeners:
                listener(org, size)
        if evidence is not None:
            self._fork(org, evidence)
        return reply

    def _refuse(self, reply: Refused) -> Refused:
        self.stats.refused_peers[reply.status] += 1
        return reply

    def _earlier_logs(self, key: str) -> tuple[str, ...]:
        """The origins of the records log of `key`'s org under the keys before `key`, newest first."""
        return tuple(log_origin(self.network, k, RECORDS_LOG) for k in self.replica.succession.earlier(key))

    # --- our checkpoints ------------------------------------------------------------------------------------

    async def _checkpoint_loop(self, nursery: trio.Nursery) -> None:
        """Each interval, once the round of cosign requests for our latest checkpoint has settled (none in flight, so
        a round lasts one exchange per witness asked: `timeout` a frame), publish it with the cosignatures it got,
        then sign the next if the ledger grew and ask its witnesses (DESIGN §4). Before, the next was signed and
        published at once every interval: under a steady load no published checkpoint carried a cosignature."""
        async with trio.open_nursery() as asking:  # the first checkpoint waits for the peers connected at start
            self._query_new_peers(asking)
        self.checked.set()
        while True:
            connected = set(self.host.connected_peers())
            for peer in [p for p in self._streams if p not in connected]:  # (a stream in use is not kept here)
                nursery.start_soon(self._streams.pop(peer).reset)  # its connection is gone
            self._forget_departed(connected)
            self._query_new_peers(nursery)
            if not self._in_flight and not self._withholding():  # (asks in flight: their answers join our latest)
                await self._publish()  # our latest, with the cosignatures its round got, before the next is signed
                # (a peer that joined may hold a larger checkpoint; one may have shown us ours while it was saved)
                if not self._waiting() and not self._withholding():
                    self._checkpoint()
                    for peer in self._to_ask():
                        self._in_flight.add(peer)
                        nursery.start_soon(self._ask, peer, self._latest)
                    if not self._in_flight and not self._unsaved:  # no witness asked: nothing to wait for (a
                        await self._publish()  # save that failed above is tried next round: one try a round)
            await trio.sleep(self.interval)

    def _waiting(self) -> bool:
        """Whether to sign and send no checkpoint this round: an answer about our log is due from a peer asked before
        this wait began (its tries included); a peer asked later holds back the next wait (module docstring)."""
        if self._awaited is None:
            self._awaited = set(self._querying)
        self._awaited &= self._querying
        if self._awaited:
            return True
        self._awaited = None
        return False

    def _forget_departed(self, connected: set[str]) -> None:
        """Forget what we asked peers that left, and what they cosigned: a peer with a fresh key per connection must
        not grow our memory. One that comes back is asked again, its answer awaited by the next wait only (else,
        leaving and coming back under one key, it would be awaited for ever: `_waiting`), and to cosign from the
        size its witness names (one Conflict)."""
        self._queried &= connected
        self._apart &= connected
        if self._awaited is not None:
            self._awaited &= connected
        self._asked &= connected
        self._cosigned_size = {peer: size for peer, size in self._cosigned_size.items() if peer in connected}
        for peer in [p for p in self._query_failures if p not in connected]:
            del self._query_failures[peer]

    def same_network(self, peer: str) -> None:
        """For the sync service (its `same_network_listeners`): `peer` is on our network. One that answered from
        another is asked again what it holds of our log, then to cosign: its node re-made on ours may be connected
        again before a round of ours saw it leave (or the disconnection never landed), and was kept apart for as
        long as it stayed."""
        if peer in self._apart:
            self._apart.discard(peer)
            self._queried.discard(peer)

    def _query_new_peers(self, nursery: trio.Nursery) -> None:
        """Ask each connected peer not asked yet this run, all at once: a silent one costs `timeout`, not more. One
        whose question from before it left is still open is asked once that is done (two at once, the first to end
        would mark it done answering while the other is due)."""
        for peer in self.host.connected_peers():
            if peer not in self._queried and peer not in self._querying and not self.host.refused(peer, SYNC_PROTOCOL):
                self._queried.add(peer)
                self._querying.add(peer)
                nursery.start_soon(self._query, peer)

    async def _query(self, peer: str) -> None:
        """Ask `peer` for the newest checkpoint of our log it holds; keep the stream for cosigning. A peer that does
        not answer, or does not know the request (an older node), tells us nothing; one of another network is told to
        `network_listeners` and disconnected."""
        stream = None
        try:
            with trio.fail_after(self.timeout):
                stream = self._streams.pop(peer, None)
                if stream is None:
                    stream = await self.host.open_stream(peer, SYNC_PROTOCOL)
                    self.stats.streams_opened += 1
                await stream.write_frame(encode_message(CheckpointRequest(self.network)))
                payload = await stream.read_frame(_MAX_REPLY)
            if payload is None:
                raise SyncError("stream", "the peer closed the stream before answering")
            reply = decode_reply(payload)
            if isinstance(reply, OtherNetwork):
                raise OtherNetworkPeer(reply.network)
            if isinstance(reply, ErrorReply):  # an older node refuses the request as unknown, and closes the stream
                raise RemoteProtocolError("refused", f"the peer refused our request: {reply.reason}")
        except BaseException as error:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.reset()
            if isinstance(error, OtherNetworkPeer):
                self._apart.add(peer)
                for listener in self.network_listeners:
                    listener(peer, error.network)
                with trio.move_on_after(self.timeout):
                    await self.host.disconnect(peer)
                return
            if isinstance(error, RemoteProtocolError):
                logger.debug("asking %s for our log's checkpoint: %s", peer, error)
                return
            if isinstance(error, (SyncError, HostError, FrameError, trio.TooSlowError)):
                # A busy or slow peer is asked again next interval (and not to cosign meanwhile), a few times at most
                self._query_failures[peer] += 1
                if self._query_failures[peer] < _ATTEMPTS:
                    self._queried.discard(peer)
                logger.debug("asking %s for our log's checkpoint: %r", peer, error)
                return
            raise
        finally:
            self._querying.discard(peer)
        self._streams[peer] = stream
        if isinstance(reply, HeldCheckpoint) and reply.note is not None:
            self._learned(peer, reply.note)

    def _learned(self, peer: str, note: bytes) -> None:
        """A peer holds this checkpoint note of our log: keep it if it is ours and the largest seen."""
        try:
            checkpoint, _ = open_checkpoint(note, [self._signer.verifier()])
            if checkpoint.origin != self.origin:
                raise NoteError(f"origin {checkpoint.origin:.200}: not our log {self.origin}")
        except NoteError as error:
            self.stats.errors["held_checkpoint"] += 1
            logger.info("%s answered with a checkpoint of our log that we did not sign: %s", peer, error)
            return
        if self._elsewhere is None or checkpoint.size > self._elsewhere.size:
            self._elsewhere, self._compared = checkpoint, False
            self._withholding()  # compared now: log_state tells at once

    def _withholding(self) -> bool:
        """Whether to sign and publish no checkpoint now: our ledger is smaller than the newest checkpoint of our log
        that a peer holds, or its root at that size differs (then never again: DESIGN §4, two roots at one size are
        evidence against the org, and every later checkpoint would contradict that one)."""
        if self._state == "diverged":
            return True
        published = self._elsewhere
        if self._compared or published is None:
            return False
        ledger = self.replica.store.ledger
        if ledger.size < published.size:
            if self._state != "behind":
                logger.warning("this node's records ledger (%d entries) is smaller than its log's checkpoint of size "
                               "%d that its peers hold: its data directory was restored from an older copy; it signs "
                               "no checkpoint until its ledger has grown to that size", ledger.size, published.size)
            self._state, self.stats.log_behind = "behind", 1
            return True
        self._compared, self.stats.log_behind = True, 0
        if ledger.root(published.size) == published.root:
            self._state = "ok"
            return False
        self._state, self.stats.log_diverged = "diverged", 1
        logger.critical(
            "this node's records ledger diverged from the log it published: its peers hold its checkpoint of size %d "
            "(root %s), and its ledger has another root at that size. Its data directory was restored from a copy "
            "taken before that checkpoint, and the records came back in another order. It goes on replicating, "
            "signing records and witnessing peers, but signs, publishes and asks cosignatures for no checkpoint of "
            "its records log any more: each would contradict the published one and get the org flagged as an "
            "equivocator everywhere. To resume, stop the node and restore a copy of its data directory taken after "
            "that checkpoint, if there is one; otherwise the org's records log stays unwitnessed",
            published.size, published.root.hex())
        return True

    def _checkpoint(self) -> None:
        """Sign a new checkpoint if the ledger grew since the last one."""
        ledger = self.replica.store.ledger
        size = ledger.size
        if size == 0 or (self._latest is not None and self._latest.checkpoint.size == size):
            return
        checkpoint = Checkpoint(self.origin, size, ledger.root(size))
        self._latest = _Latest(checkpoint, note_signature(checkpoint.to_text(), self._signer))
        self._asked = set()
        self._failures.clear()
        self.stats.checkpoints_signed += 1

    def _to_ask(self) -> list[str]:
        """The peers to ask now for the latest checkpoint: of the first in witness_order of the connected peers not
        yet asked (those that answered or gave up are not asked again), not flagged as equivocators (whose word
        is worth nothing), not known to lack the protocol nor to be on another network, until `witnesses` have
        cosigned it or are being asked, those done answering what they hold of our log. One still answering keeps its
        place and is asked once it has: a fork sent for cosigning is the witness's evidence against us."""
        if self._latest is None:
            return []
        wanted = self.witnesses - len(self._latest.cosignatures) - len(self._in_flight)
        if wanted <= 0:
            return []
        orgs = {}
        for peer in self.host.connected_peers():
            if (peer in self._asked or peer in self._in_flight or peer in self._apart
                    or self.host.refused(peer, SYNC_PROTOCOL)):
                continue
            try:
                org = peer_org(peer)
            except InvalidPeerId:
                continue  # not keyed by an Ed25519 org key: it cannot cosign
            if org not in self.replica.flagged:
                orgs[peer] = org
        order = witness_order(self.replica.did, self._roots, orgs, self.replica.succession.identity,
                              self.replica.horizon.group, self.witness_group)[:wanted]
        return [peer for peer in order if peer in self._queried and peer not in self._querying]

    async def _ask(self, peer: str, latest: _Latest | None) -> None:
        """Ask one peer to cosign `latest`; a peer that answered is not asked again for it. `latest` stays our latest
        until this returns: none is signed while a request is in flight (`_checkpoint_loop`)."""
        try:
            if latest is None:
                return
            async with self._limiter:
                outcome = await self._exchange(peer, latest)
        except RemoteProtocolError as error:
            self.stats.errors[error.reason] += 1
            logger.info("cosigning by %s: %s", peer, error)
            self._asked.add(peer)
        except (SyncError, HostError, FrameError, trio.TooSlowError) as error:
            self._failed(peer, error)
        else:
            self._asked.add(peer)
            if isinstance(outcome, Witnessed):
                self.stats.cosignatures += 1
                self._cosigned_size[peer] = latest.checkpoint.size
                if len(latest.cosignatures) < MAX_COSIGNATURES:
                    latest.cosignatures[outcome.signature.name] = outcome.signature
            else:
                self.stats.declined[outcome.status] += 1
                if outcome.size is not None:
                    self._cosigned_size[peer] = outcome.size
                logger.info("%s declined to cosign our checkpoint (%d): %s", peer, outcome.status, outcome.reason)
        finally:
            self._in_flight.discard(peer)

    def _failed(self, peer: str, error: Exception) -> None:
        """A request that got no answer is tried again next interval, a few times per checkpoint."""
        if isinstance(error, SyncError):
            reason = error.reason
        else:
            reason = "timeout" if isinstance(error, trio.TooSlowError) else "stream"
        self.stats.errors[reason] += 1
        logger.debug("cosigning by %s failed (%s): %s", peer, reason, error)
        self._failures[peer] += 1
        if self._failures[peer] >= _ATTEMPTS:
            self._asked.add(peer)

    async def _exchange(self, peer: str, latest: _Latest) -> Witnessed | Refused:
        """One cosigning exchange with a witness, on the stream kept open from the last one if there is one (a new
        py-libp2p stream costs several times the exchange itself), else on a new one, which is then kept."""
        org = peer_org(peer)
        witness = CosignatureVerifier(cosigner_name(org), peer_public_key(peer))
        old_size = min(self._cosigned_size.get(peer, 0), latest.checkpoint.size)
        self.stats.cosign_requests += 1
        kept = self._streams.pop(peer, None)
        if kept is not None:
            try:
                return await self._converse(kept, latest, old_size, witness, peer)
            except (SyncError, HostError, FrameError):
                pass  # the witness closed it meanwhile (an idle stream is closed after its timeout): a new one
        stream = await self.host.open_stream(peer, SYNC_PROTOCOL)
        self.stats.streams_opened += 1
        return await self._converse(stream, latest, old_size, witness, peer)

    async def _converse(self, stream: Stream, latest: _Latest, old_size: int, witness: CosignatureVerifier,
                        peer: str) -> Witnessed | Refused:
        """Run a CosignClient over `stream`; keep the stream for the next exchange if it went well, else reset it."""
        client = CosignClient(latest.log_note, latest.checkpoint, old_size,
                              self.replica.store.ledger.consistency_proof, witness)
        event: Send | Witnessed | Refused = client.start()
        try:
            while isinstance(event, Send):
                with trio.fail_after(self.timeout):
                    await stream.write_frame(event.payload)
                    payload = await stream.read_frame(_MAX_REPLY)
                if payload is None:
                    raise SyncError("stream", "the peer closed the stream before answering")
                event = client.receive(payload)
        except BaseException:
            with trio.CancelScope(shield=True):  # also when cancelled: the stream must not outlive this
                await stream.reset()
            raise
        self._streams[peer] = stream
        return event

    async def _publish(self) -> None:
        """Persist our latest checkpoint and tell the listeners, if it changed; gossip it, if it changed since we last
        did and the pace's period has passed, or again, unchanged, if we gossiped none for `reannounce_interval` and
        did so fewer than REANNOUNCEMENTS times since it changed (module docstring). Called with no cosign request in
        flight (`_checkpoint_loop`).

        Every checkpoint is on disk before it is published, one no witness cosigned too: the log's public size, the
        published checkpoint's (node.api.log), then never goes back across a restart or a crash, as RFC 9162 clients
        expect (before, a node whose last one had no cosignature came back serving an earlier one, or none). It costs
        an fsync a round only where no witness cosigns (a node alone); where one does, it was written anyway. A save
        that fails (a full disk) is tried again the next round, each try counted; a spell of them is logged once, as
        it begins (ERROR) and as a save ends it (INFO): before, each try was, twice a second for as long as it
        lasted."""
        if self._latest is None:
            return
        note, checkpoint = self._latest.note(), self._latest.checkpoint
        if self._published is None or note != self._published[0]:
            try:
                await trio.to_thread.run_sync(self._persist, note)  # an fsync: not on the thread running the node
            except OSError as error:
                self.stats.errors["persist"] += 1  # tried again next interval
                if not self._unsaved:
                    logger.error("saving our checkpoint to %s: %s; tried again each interval, unsaid until it is saved "
                                 "(vouchnet_witness_errors_total{reason=\"persist\"} counts the tries)",
                                 self._checkpoint_path, error)
                self._unsaved += 1
                return
            if self._unsaved:
                logger.info("saved our checkpoint to %s again, after %d failed tries", self._checkpoint_path,
                            self._unsaved)
                self._unsaved = 0
            self._published = note, checkpoint
            self.stats.published_cosignatures = len(self._latest.cosignatures)
            for listener in self.listeners:
                listener(note)
        now = trio.current_time()
        again = note == self._gossiped
        if again and (self._reannounced >= REANNOUNCEMENTS or now < self._gossiped_at + self.reannounce_interval):
            return
        if not again:
            if now < self._gossip_due:
                return
            self.stats.gossip_period_seconds = self.pace.period(now)
            self._gossiped, self._gossip_due = note, now + self.stats.gossip_period_seconds
        self._gossiped_at, self._reannounced = now, self._reannounced + 1 if again else 0
        try:
            await self.host.publish(checkpoints_topic(self.network), note)
        except HostError as error:
            self.stats.publish_errors += 1
            logger.warning("publishing our checkpoint: %s", error)
        else:
            if again:
                self.stats.checkpoints_reannounced += 1
            else:
                self.stats.checkpoints_gossiped += 1

    def _persist(self, note: bytes) -> None:
        replace_file(self._checkpoint_path, note)  # whole, and on disk with its name (ledger.files)

    def _restore(self) -> _Latest | None:
        """Our persisted checkpoint, if it still describes our ledger; its cosignature lines are re-verified. One of
        our log under an earlier key (DESIGN §2) is set aside: a key whose rotation records, as held, lead to ours.
        The rotations suffice, not the links: after `vouchnet key adopt` (node.taken_back_rotation) the node holds
        its old key's rotation, and its new key's first record, naming the old, comes back from peers once it runs."""
        try:
            note = self._checkpoint_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            origin = peek_origin(note)
            network, org, log = parse_log_origin(origin)
            succession = self.replica.succession
            if (network, log) == (self.network, RECORDS_LOG) and succession.rotates_to(org, self.replica.did):
                logger.info("%s: our saved checkpoint is of an earlier key's log: starting this key's",
                            self._checkpoint_path)
                return None
            if origin != self.origin:
                raise SavedCheckpointUnusable(f"{self._checkpoint_path}: {self._whose(network, org, log)}")
            verifiers = [self._signer.verifier(), *cosigner_verifiers(note).values()]
            checkpoint, signatures = open_checkpoint(note, verifiers)
        except NoteError as e:
            raise SavedCheckpointUnusable(
                f"{self._checkpoint_path}: not a checkpoint our key signed ({e}): damaged, or another file copied in "
                "its place? restore it from a backup of this data directory, or move it aside to start without it "
                "(the node saves its next cosigned checkpoint there)") from None
        ledger = self.replica.store.ledger
        if checkpoint.size > ledger.size:
            logger.warning("%s: ignoring our saved checkpoint: checkpoint of size %d does not match the records "
                           "ledger", self._checkpoint_path, checkpoint.size)
            return None
        if ledger.root(checkpoint.size) != checkpoint.root:
            raise SavedCheckpointMismatch(
                f"{self._checkpoint_path}: the checkpoint of size {checkpoint.size} we signed has another root than "
                "the records ledger at that size: a hash it stores or an entry changed on disk, and signing on would "
                "fork our log (witnesses refuse to cosign a fork, and flag two roots of one size as equivocation)")
        log_signature, *cosignatures = sorted(signatures, key=lambda s: s.name != self.origin)  # the log's first
        return _Latest(checkpoint, log_signature, {s.name: s for s in cosignatures})

    def _whose(self, network: str, org: str, log: str) -> str:
        """What a saved checkpoint of another log than ours is, and what to do about it."""
        if org != self.replica.did:
            return (f"a checkpoint of {org}'s log, but the node's key is {self.replica.did}'s: is the key, or this "
                    "file, another node's? put this node's own key and checkpoint back")
        if network != self.network:
            return (f"a checkpoint of our log on network {network!r}, but the node is set to join {self.network!r}: "
                    f"is the config another node's? set the network back to {network!r}")
        return f"a checkpoint of our log {log!r}, not of our records log: another file copied in its place? move it " \
               "aside"

    def _latest_cosigners(self) -> list[str]:
        if self._latest is None:
            return []
        return [peer_id_from_public_key(public_key_from_did(name.removeprefix(f"{PREFIX}/")))
                for name in self._latest.cosignatures]

    # --- others' checkpoints --------------------------------------------------------------------------------

    async def _watch(self, inbox: trio.MemoryReceiveChannel[Received], validator: CheckpointValidator,
                     witness: Witness) -> None:
        async for received in inbox:
            if received.origin == self.host.peer_id:
                continue  # our own, delivered back to us by pubsub: nothing to watch, and not heard from a peer
            self.stats.checkpoints_received += 1
            try:
                seen = validator.opened(received.data)
            except NoteError:
                continue  # the topic validator passed it: only a bug could bring us here
            if not self._follows(seen.org):
                continue
            self.pace.heard(seen.org, trio.current_time())
            for listener in self.log_listeners:
                listener(seen.org, seen.checkpoint.size)
            if seen.org in self.replica.flagged:
                continue  # evidence against it is in already (as that of this checkpoint may be, by _admit)
            # (from the witness's memory: a gossiped checkpoint costs no read of its file, ~1/s per peer)
            cosigned = witness.cosigned(seen.checkpoint.origin)
            if cosigned is not None and _contradicts(cosigned[0], seen.checkpoint):
                self._fork(seen.org, Equivocation(seen.checkpoint.origin, cosigned[1], seen.note))

    def _follows(self, org: str) -> bool:
        """Whether checkpoints of `org` are watched: an outsider's fork is not acted on (_fork), and fresh keys would
        fill _forks."""
        return org != self.replica.did and org in self.replica.horizon

    def _admit(self, seen: OrgCheckpoint) -> Verdict:
        """The checkpoints topic's verdict on a valid checkpoint (CheckpointValidator): compared with those of its
        origin remembered, and remembered if new within the origin's pace (gossip.forks); a second root at a size
        remembered becomes evidence at once. An outsider's, as the records topic does with an outsider's records
        (DESIGN §5: a peer that relays it may follow its org), is relayed within its origin's pace and the same
        burst, else ignored, and not remembered (nor compared: a fork of an org outside the horizon is not acted
        on) but for the last relayed of each origin: a repeat of it, its node gossiping it again (module docstring),
        is ignored, as a follower ignores one it holds. Our own are accepted."""
        now = trio.current_time()
        if not self._follows(seen.org):
            if seen.org == self.replica.did:
                return Verdict.ACCEPT
            origin, held = seen.checkpoint.origin, (seen.checkpoint.size, seen.checkpoint.root)
            if self._outsiders_relayed.get(origin) == held or not self._outsiders.try_take(origin, now):
                return Verdict.IGNORE
            self._outsiders_relayed[origin] = held
            self._outsiders_relayed.move_to_end(origin)
            if len(self._outsiders_relayed) > self._outsiders.max_keys:
                self._outsiders_relayed.popitem(last=False)
            return Verdict.ACCEPT
        observed = self._forks.observe(seen, now)
        if observed.earlier is not None:
            self._fork(seen.org, Equivocation(seen.checkpoint.origin, observed.earlier, seen.note))
        return observed.verdict

    def _fork(self, offender: str, evidence: Equivocation) -> None:
        """Two log-signed checkpoints of one size and different roots: sign the evidence, once per offender."""
        self.stats.forks += 1
        logger.warning("%s: two checkpoints of one size with different roots", evidence.origin)
        if offender == self.replica.did or offender in self.replica.flagged or offender not in self.replica.horizon:
            return
        body = equivocation_body("checkpoint", offender, evidence.cosigned, evidence.submitted)
        try:
            check_checkpoint_evidence(EquivocationBody(**body))  # what every peer will check
            self.replica.issue("equivocation", body)
        except InvalidRecord as error:
            self.stats.errors["evidence"] += 1
            logger.warning("evidence against %s not usable: %s", offender, error)
        else:
            self.stats.equivocations_issued += 1


def _answer_sized(
    witness: Witness, request: CosignRequest, origin: str
) -> tuple[Reply, Equivocation | None, int | None]:
    """gossip.cosigning.answer, and the size of `origin`'s log the witness holds cosigned once it cosigned (else None),
    read on the same worker thread: the witness may be closed once the thread returns."""
    reply, evidence = answer(witness, request, origin=origin)
    cosigned = witness.cosigned_checkpoint(origin) if isinstance(reply, Cosigned) else None
    return reply, evidence, None if cosigned is None else cosigned.size


def _contradicts(cosigned: Checkpoint, seen: Checkpoint) -> bool:
    """Whether a checkpoint our witness cosigned has another root at the size of one seen gossiped."""
    return cosigned.size == seen.size and cosigned.root != seen.root


def witness_order(
    own: str, roots: Collection[str], peers: dict[str, str], identity: Callable[[str], str],
    group_of: Callable[[str], str | None] = lambda org: org,
    witness_group: Callable[[str], str | None] = lambda org: None,
) -> list[str]:
    """`peers` (peer id -> org did) in the order org `own` asks them to cosign: its trust roots first (any key of
    a root's org, by `identity`: vouching.succession), then the first of each independence group of the orgs it gives
    an independent witness's weight (`witness_group`, None below that bar: node.trust), then the rest of those, then
    the first of each other independence group of its horizon (`group_of`, None outside it: vouching.horizon), then
    the rest of the horizon, then the peers outside it, each by SHA-256 of the two orgs' dids, an order that differs
    from node to node, so that with a bounded witness set every node is asked by about as many others. Keys one org
    vouched into being, orgs given a sliver of reputation, or keys made up outside the horizon, take no witness's
    place that a peer at the bar could take (their cosignatures count for nothing: `independent_witnesses`)."""
    root_orgs = {identity(root) for root in roots}
    by_hash = sorted(peers, key=lambda peer: hashlib.sha256(f"{own} {peers[peer]}".encode()).digest())
    groups = {peer: _ranked_group(peers[peer], group_of, witness_group) for peer in by_hash}
    firsts = {group: peer for peer, group in reversed(groups.items())}  # each group's first peer by hash

    def rank(peer: str) -> int:
        if identity(peers[peer]) in root_orgs:
            return 0
        group = groups[peer]
        if group is None:
            return 5
        at_bar, first = group[0], firsts[group] == peer
        return (1 if first else 2) if at_bar else (3 if first else 4)

    return sorted(by_hash, key=rank)  # (stable: by hash within each rank)


def _ranked_group(org: str, group_of: Callable[[str], str | None],
                  witness_group: Callable[[str], str | None]) -> tuple[bool, str] | None:
    """`witness_order`'s group of `org`: (True, its witness group) at the bar, else (False, its horizon group), or
    None outside the horizon."""
    witness = witness_group(org)
    if witness is not None:
        return True, witness
    group = group_of(org)
    return None if group is None else (False, group)


def independent_witnesses(cosigners: Iterable[str], witness_group: Callable[[str], str | None],
                          flagged: Collection[str], own_keys: Collection[str]) -> int:
    """How many independence groups (DESIGN §6) of orgs this node gives an independent witness's weight
    (`witness_group`: their standing reaches the bar `vouchnet log verify` judges by, node.trust) the orgs of
    `cosigners` found, leaving out the others, `flagged` equivocators, and the group of our own org (any of
    `own_keys`, its earlier keys too): the keys any org vouched into being are in its group, and an org given a
    sliver of reputation, or none (outside the horizon), witnesses nothing we count on."""
    groups = {witness_group(did) for did in cosigners if did not in flagged and did not in own_keys}
    return len(groups - {None, *(witness_group(key) for key in own_keys)})
