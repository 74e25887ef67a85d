"""The trio shell of catch-up sync (gossip.sync over `/vouchnet/sync/2` streams, or `/1` with a peer that knows no
`/2`, gossip.sync_messages): serves peers' requests, and
pulls from every peer when it connects (unless a round with it started less than `interval` ago and no catch-up
needs one), from a few peers picked at random every `interval` seconds (anti-entropy) among those whose records log
may hold what we lack, for gaps gossip reports, and for the whole history of orgs that enter the horizon. Every read
and write is time-bounded; sessions are bounded in number.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import trio

from ledger import MAX_COSIGNATURES, LedgerError
from vouching import InvalidRecord, Record

from .frames import FrameError
from .gap_queue import GapBatch, GapQueue
from .host import Host, HostError, InvalidPeerId, ProtocolNotSupported, Stream, peer_org
from .peer_feed import PeerFeed
from .peer_pace import PeerPace
from .replica import Replica
from .serving_budget import ServingBudget, ServingRates, most_page_cost, page_cost
from .session_slots import Place, SessionSlots, Slot
from .stats import by_reason, counted
from .store import StoreError
from .sync import (
    Deliver,
    Event,
    Finished,
    IssuerIndex,
    ReadNext,
    Send,
    SyncClient,
    SyncLimits,
    SyncServer,
    check_page,
    missing_ranges,
)
from .sync_marks import HeadMarks
from .sync_messages import (
    MAX_REQUEST_FRAME,
    MAX_SEQ,
    SYNC_ERROR_REASONS,
    SYNC_PROTOCOL,
    SYNC_PROTOCOL_2,
    SYNC_PROTOCOLS,
    Busy,
    CheckpointRequest,
    CosignRequest,
    HeadsRequest,
    OtherNetwork,
    OtherNetworkPeer,
    PeerBusy,
    RemoteProtocolError,
    RecordsRequest,
    Reply,
    Request,
    SyncError,
    decode_reply,
    decode_request,
    encode_message,
)
from .validation import Checking, ProcessChecker, ThreadedChecker

logger = logging.getLogger(__name__)

# Frames longer than this are decoded on a worker thread. Dense CBOR (a frame of empty or nested arrays) takes about
# 1 ms per KB to decode and check (cbor2, then the profile walk), a few ms here; a request can be up to
# MAX_REQUEST_FRAME (about 260 KiB) and a reply up to SyncLimits.max_frame (a MiB). cbor2 holds the GIL inside its C
# code, so the loop still waits for that part (a third of the time, measured).
DECODE_ON_LOOP_BYTES = 4096
_M = TypeVar("_M")
_K = TypeVar("_K")
_W = TypeVar("_W")
_A = TypeVar("_A")

Gaps = Mapping[str, tuple[int, int]]  # issuer -> (first, last) missing seq
CosignHandler = Callable[[str, CosignRequest], Awaitable[Reply]]  # (requesting peer, request) -> reply
CheckpointHandler = Callable[[str], Awaitable[Reply]]  # requesting peer -> the newest checkpoint held of its log
_GAP_PEERS = 3  # peers asked in turn for a gap reported by gossip, until it is filled
_GAP_BACKOFF = 1.0  # seconds an issuer's gaps first wait after a fetch of them that brought nothing
# seconds after which a fetch of gaps asks no further peer (the session under way runs on, within session_seconds
# and its peer's pace, gossip.peer_pace):
# slow peers, or many failing one after another, each within the sync timeout, would otherwise hold it for long
_GAP_FETCH_SECONDS = 60.0
# Why a fetch of gaps' session failed with its peer given no say: ended for a round a catch-up needs, or given up
# waiting for the peer's turn (a "stream" failure is the peer's answer if it is still there: it reset the stream)
_ENDED_BY_US = ("preempted", "turn")
# Why a fetch of gaps' session failed with its peer saying nothing of the ranges asked (SyncService._fetch): it told
# us to come back later (Busy), or it is on another network, holding none of this network's records
_NO_ANSWER = ("throttled", "network")
_RANDOM = random.SystemRandom()  # which peers a round pulls from: not for a peer to predict
_APART_KEPT = 1024  # peers of other networks remembered (each logged once): one making keys by the thousand is bounded


class PageLimits(Protocol):
    """The node's limits sync takes its page size from (node.config.Limits provides it)."""

    @property
    def sync_page_records(self) -> int: ...


@dataclass
class SyncStats:
    """Counters since the service started (node/metrics renders them)."""

    rounds: int = counted("Catch-up sync sessions this node opened that ran to the end")
    full_rounds: int = counted("Of sync_rounds_total, full rounds (a peer's heads, then all this node lacks of what "
                               "they name); the others fetched gaps")
    changed_rounds: int = counted("Of sync_full_rounds_total, rounds that read only the peer's heads changed since its "
                                  "answer to our last round in step with it (/vouchnet/sync/2 marks)")
    rounds_failed: int = counted("Catch-up sync sessions this node opened that failed (sync_errors_total says why)")
    records_fetched: int = counted("Records catch-up sync fetched and stored")
    records_served: int = counted("Records served to peers' catch-up sync")
    served_busy: int = counted("Answers to peers cut short by a Busy reply: the peer's serving budget, or the "
                               "node's, was spent")
    streams_served: int = counted("Catch-up sync streams peers opened to this node")
    gap_requests: int = counted("Requests to fetch issuers' missing records: from gossip, and for orgs that entered "
                                "the horizon")
    gap_issuers_merged: int = counted("Issuers of a gap request already waiting or being fetched: their range grew")
    gap_requests_dropped: int = counted("Issuers of a gap request dropped while the queue was full; a periodic round "
                                        "repairs")
    gap_issuers_displaced: int = counted("Issuers whose waiting range made room for another issuer's: backing off, "
                                         "kept for a peer to come or a peer's turn, or else the newest of the peer "
                                         "whose reports held the most places, two more than the reporter's (the "
                                         "peers the node does not dial counting as one)")
    gap_issuers_unkept: int = counted("Issuers whose range a gap fetch was to keep (no peer answered: for a peer to "
                                      "come, or a peer's turn; or the rest of one a peer began to send, then left, or "
                                      "that the peers asked sent part of; or all of it, the fetch stopped at its "
                                      "minute), dropped while the queue was full; the issuer's next report or a "
                                      "periodic round repairs")
    gap_fetches: int = counted("Batches of issuers' missing ranges fetched (from a few peers each, or every peer for "
                               "histories)")
    gap_fetches_overdue: int = counted("Gap fetches that asked no further peer once they had run 60 s: what they "
                                       "lacked waits out its issuer's backoff, and is then asked of the peers they "
                                       "did not ask first")
    gap_issuers_vain: int = counted("Issuers of a gap fetch none of whose range came though a peer asked answered "
                                    "(without it, or failing): they back off; not those of a fetch no peer "
                                    "answered (those asked left first, told it to come back later, refused the "
                                    "sync protocol or were on another network, none could be asked, or their sessions "
                                    "were preempted or gave up their turn), nor of one stopped at its minute")
    peers_disconnected: int = counted("Peers disconnected for breaking the sync protocol")
    peers_other_network: int = counted("Peers found on another network (a heads or checkpoint request, or the answer "
                                       "to ours, named it), each disconnected, counted and logged once")
    # (the reasons: SyncError.reason, plus busy, timeout and storage)
    errors: Counter[str] = by_reason("Catch-up sync failures, by reason, of two kinds: this node's own sessions and "
                                     "requests that failed (sync_rounds_failed_total counts its failed sessions) and "
                                     "peers' sync streams and requests it refused or cut short "
                                     "(sync_served_errors_total, by the same reasons). Reasons: a protocol error's; "
                                     "timeout; stream; busy; storage; "
                                     "throttled (a peer told us to come back later); turn (a gap fetch gave up "
                                     "waiting for a session with the peer to end); session (one of its sessions "
                                     "outlasted its time bound, 10 minutes, and was ended); slow (one of its sessions "
                                     "was ended as its peer delivered fewer than 50 records, heads or KiB a second "
                                     "of the time waited on it, after the first 10 s); preempted (one of its "
                                     "sessions was ended for a round a catch-up needs: no session slot was free, "
                                     "or it was a fetch of gaps holding or awaiting that round's peer's turn); "
                                     "network (a peer of another network asked, or answered)",
                                     (*SYNC_ERROR_REASONS, "busy", "timeout", "storage"))
    served_errors: Counter[str] = by_reason("Of sync_errors_total, peers' sync streams and requests this node refused "
                                            "or cut short, by reason: busy (no stream or request slot free), timeout, "
                                            "limit (a frame too large), stream, network (a request naming another "
                                            "network), or the protocol error of a malformed request: a peer's "
                                            "mistake or abuse, not a failure of this node's sync",
                                            (*SYNC_ERROR_REASONS, "busy", "timeout"))


@dataclass(frozen=True)
class _GapFetchEnd:
    """What a fetch of gaps (SyncService._fetch) left missing, for gap_queue's `done`: the issuers whose ranges are
    not all here, by what became of the peers asked, and the peer whose session ours ended, if any stays."""

    vain: list[str] = field(default_factory=list)  # nothing of theirs came, though a peer asked answered
    unanswered: list[str] = field(default_factory=list)  # a peer asked stays, its session ended by ours
    peerless: list[str] = field(default_factory=list)  # no peer asked stays to be asked
    begun: list[str] = field(default_factory=list)  # a peer asked began to send them, then left or said Busy; another
    # answered without the rest (with vain)
    begun_by_busy: dict[str, str] = field(default_factory=dict)  # of begun, those the last to begin them said Busy: by
    # that peer, to be asked again as its wait ends
    short: list[str] = field(default_factory=list)  # part of theirs came, the peers asked answering without the rest
    # (not in an org's history, whose range runs to MAX_SEQ): the rest is asked again
    overdue: list[str] = field(default_factory=list)  # all of the above, if the fetch stopped at its time bound
    # (_GAP_FETCH_SECONDS) with peers left to ask
    tried: list[str] = field(default_factory=list)  # with overdue or short, the peers it and the fetches before it
    # (stopped so, or short) asked that stay: the next fetch asks them last
    behind: str | None = None  # of the peers that stay, the first whose session ours ended (with unanswered)


@dataclass
class _Verified:
    """The records a session (SyncService._session) verified, in the order of their chains, and has not yet offered
    to the replica."""

    records: list[Record] = field(default_factory=list)
    size: int = 0  # their bytes

    def add(self, records: list[Record]) -> None:
        self.records += records
        self.size += sum(len(record.raw) for record in records)

    def take(self) -> list[Record]:
        """The records, none left: an offer that failed (our disk) is not made again as the session ends."""
        records, self.records, self.size = self.records, [], 0
        return records


class SyncService:
    """Catch-up sync for one node: one instance per host, sharing the node's Replica.

    `limits`: SyncLimits, or the node's limits (their `sync_page_records`, with SyncLimits' other defaults).
    `cosigner` (Witnessing.cosign) answers peers' cosign requests on the same protocol; it may also be set
    later (`sync.cosigner = witnessing.cosign`); without one, cosign requests are refused with 404. `checkpoints`
    (Witnessing.held_checkpoint) answers a peer asking for the newest checkpoint held of its own log, likewise.
    `run` registers the protocol's handler with the host, so it runs once per host. Every `interval` seconds
    (jittered) a round pulls from `round_peers` connected peers picked at random among those not settled: a peer is
    settled while the size of its records log heard (`heard_log`: gossiped, or in a cosign request) is the one heard
    when the last full round with it started, a round that ran to the end, less than `refresh_rounds` intervals
    ago. Its ledger holds every record it stores, so what it holds has not changed since we pulled it all; a peer
    whose log was never heard of (outside our horizon, say) is never settled.
    `verify_threads` > 0 splits each page's signature checks over that many worker threads (PyNaCl releases
    the GIL inside libsodium), and offers the records of earlier pages to the replica while they run; 0 checks
    them on the event loop. `verify_processes` > 0 checks the signatures in that many worker processes instead,
    free of the GIL (the event loop still decodes each page; gossip.validation.ProcessChecker). `accept_records`,
    `accept_bytes`: fetched records are offered to the replica in batches of about this many, or this many bytes of
    records (a page more at most), and as a session ends, however it ends, so that one durable commit covers several
    pages while a session holds no more than that in memory (records are up to 64 KiB, and decoded take up to three
    times their size). `max_sessions` bounds the sessions this node opens at once (gossip.session_slots: a full
    round that a catch-up waiting needs, `catch_up_peers`, goes first, ending a session it does not need if no slot
    is free; one that a catch-up holding nothing back needs, `patient_catch_up_peers`, waits its turn).
    `max_inbound` bounds the requests answered at once, `max_inbound_streams` the inbound streams open, idle ones
    included: a witness's client keeps its stream between checkpoints, and a stream idle for `timeout` after
    answering is closed. `max_peer_streams` bounds the inbound streams of any one peer (an honest
    one has a sync session and a kept cosigning stream at most), so that no peer can hold them all. An inbound
    request frame longer than any request (sync_messages.MAX_REQUEST_FRAME) is refused unread, and frames (requests
    and replies) longer than DECODE_ON_LOOP_BYTES are decoded on a worker thread. `serving` sets the budgets of pages
    served to each peer and to all peers together (gossip.serving_budget): past them a peer's heads and records
    requests are answered Busy, with when to come back (cosign and checkpoint requests never are). A peer that
    answers us so is asked nothing until then, and it is no offence; a full round with it that a catch-up needs is
    had as that wait ends.
    `network` (the node's, `vouchnet init --network`) is stated in our heads requests (Witnessing states it in its
    checkpoint requests); a peer of another network holds none of our records and cannot cosign for us: a request
    naming another is answered OtherNetwork, ending the stream, and a round with a peer so answering fails (its
    `same_network_listeners` are not told) and disconnects it; either is counted, logged once per peer, and told to
    `network_listeners` (the peer manager dials such a peer ever less often, 30 s to an hour apart); a round
    that runs to the end shows the peer on ours, which `same_network_listeners` are told (a peer found apart, its
    node since re-made on our network). `holder_listeners` are told, once a round, as soon as its peer's heads named
    one of our org's keys (the node's and its earlier ones) and we hold each named up to the seq it named: the peer
    holds the org's records, so it replicates the org, and we hold what the org signed as it knows it (a peer whose
    horizon leaves the org out holds none, and its answer proves nothing of it). A round asks for the org's records
    before any other issuer's (gossip.sync.SyncClient), so they are told mid-round, the rest of it still to come.
    `unheld_listeners` are told instead, as soon as the heads are read, if they named none of our org's keys.
    Rounds in step with a peer on `/vouchnet/sync/2` read only the heads changed since its last answer (`_session`,
    gossip.sync_marks), every head at least every `mark_rounds` intervals; every peer's next round reads every head
    after orgs enter the horizon (their histories' fetch may fall short) or the queue of gaps drops a range.
    """

    def __init__(
        self,
        host: Host,
        replica: Replica,
        *,
        network: str,
        limits: SyncLimits | PageLimits = SyncLimits(),
        interval: float = 30.0,
        round_peers: int = 3,
        timeout: float = 10.0,
        max_sessions: int = 8,
        max_inbound: int = 16,
        max_inbound_streams: int = 16 + MAX_COSIGNATURES,
        max_peer_streams: int = 4,
        gap_queue: int = 256,
        cosigner: CosignHandler | None = None,
        checkpoints: CheckpointHandler | None = None,
        verify_threads: int = 0,
        verify_processes: int = 0,
        accept_records: int = 2000,
        accept_bytes: int = 4 << 20,
        session_seconds: float = 600.0,
        refresh_rounds: int = 20,
        mark_rounds: int = 120,
        serving: ServingRates = ServingRates(),
        on_offence: Callable[[str, str], None] | None = None,
    ) -> None:
        if not (interval > 0 and round_peers >= 1 and timeout > 0 and max_sessions >= 1 and max_inbound >= 1
                and gap_queue >= 1 and max_inbound_streams >= max_inbound and max_peer_streams >= 1
                and verify_threads >= 0 and verify_processes >= 0 and not (verify_threads and verify_processes)
                and accept_records >= 1 and accept_bytes >= 1 and session_seconds > 0 and refresh_rounds >= 1
                and mark_rounds >= 1):
            raise ValueError("SyncService: interval, timeout and session_seconds must be positive; round peers, "
                             "sessions, inbound, queue, peer streams, accept_records, accept_bytes, "
                             "refresh_rounds and mark_rounds at least 1, "
                             "inbound streams at least inbound; verify_threads or verify_processes (not both) at "
                             "least 0")
        self.host = host
        self.replica = replica
        self.network = network
        self.limits = limits if isinstance(limits, SyncLimits) else SyncLimits(page_records=limits.sync_page_records)
        self.interval = interval
        self.round_peers = round_peers
        self.timeout = timeout
        self.session_seconds = session_seconds  # the longest one outbound session may last
        self.stats = SyncStats()
        self.cosigner = cosigner
        self.checkpoints = checkpoints
        self._verify_threads = verify_threads
        self._verify_processes = verify_processes
        self._checker: ThreadedChecker | ProcessChecker | None = None  # while running, if either
        self._accept_records = accept_records
        self._accept_bytes = accept_bytes
        self._on_offence = on_offence
        self._slots = SessionSlots(max_sessions, least_turn=timeout)
        self._inbound = trio.CapacityLimiter(max_inbound)  # requests being answered
        self._streams = trio.CapacityLimiter(max_inbound_streams)  # inbound streams open, idle ones included
        self._max_peer_streams = max_peer_streams
        self._peer_streams: Counter[str] = Counter()  # inbound streams open, by peer
        self._budget = ServingBudget(serving, most_page_cost(self.limits))
        self._throttled: dict[str, float] = {}  # peers that told us to come back later (Busy): until when
        # An issuer backs off from a second up to a periodic round's interval, after which the rounds repair it.
        self._gaps = GapQueue(gap_queue, backoff=(min(_GAP_BACKOFF, interval), interval), own_share=self._own_share,
                              group_of=self._group_of)
        self._gaps_changed = trio.Event()
        self._peer_locks: dict[str, trio.Lock] = {}
        self._gap_fetches: dict[str, set[Slot]] = {}  # peer -> the slots of the fetches of gaps with it
        # peer -> the wait for its turn of the full round with it no catch-up needed as it started; needs_changed
        # cancels it once one does
        self._rounds_awaiting_turn: dict[str, trio.CancelScope] = {}
        # peer -> the waits for a session slot or the peer's turn of the sessions with it (its full round, fetches of
        # gaps); cancelled as the peer disconnects
        self._awaiting_slot_or_turn: dict[str, set[trio.CancelScope]] = {}
        self._rounds_running: set[str] = set()
        # peer -> the wait of the round a catch-up awaits with it for that round to be due (`_catch_up_round`)
        self._catch_up_rounds_due: dict[str, trio.CancelScope] = {}
        # peers whose round's wait ended as they left while a catch-up awaits them still: had as they come back
        self._due_on_return: set[str] = set()
        # peer -> when the last full round a patient catch-up alone asked for started, within `interval`
        self._patient_rounds: dict[str, float] = {}
        # the peers a catch-up waits on (`_awaited`) as `needs_changed` last asked, those that disconnected since too
        self._awaited_before: set[str] = set()
        self._holding: set[str] = set()  # peers whose full round under way told `holder_listeners` (round_held_own)
        self._rounds_started: dict[str, float] = {}  # when the last full round with a peer started, within `interval`
        self._refresh = refresh_rounds * interval
        self._mark_refresh = mark_rounds * interval
        self._logs: dict[str, int] = {}  # org -> the largest size of its records log heard (heard_log; horizon orgs)
        # peer -> (its log's size heard as the last full round with it started, when), for rounds that ran to the end,
        # while connected and within `_refresh`
        self._pulled: dict[str, tuple[int, float]] = {}
        self._index: IssuerIndex | None = None  # while running
        self._head_marks: HeadMarks | None = None  # while running: what our heads answers on `/2` are marked by
        # peer -> the mark of its last heads answer with which a round of ours ran to the end in step (`_session`), and
        # when the last round with it that read all its heads started; for connected peers, within `_mark_refresh`
        self._peer_marks: dict[str, tuple[bytes, float]] = {}
        # how many times every peer's mark was forgotten (`_forget_marks`): a round under way then keeps none
        self._marks_forgotten = 0
        self._changed_only_rounds: set[str] = set()  # peers whose round under way read only the heads changed
        self._apart: OrderedDict[str, str] = OrderedDict()  # peer -> the other network it named, latest last
        self.network_listeners: list[Callable[[str, str], None]] = []  # told (peer, network) each time one is heard
        # told each peer a full round with ran to the end: it answered our heads request, which names our network, so
        # it is on ours (a peer heard on another before, its node re-made on ours, is no longer kept apart)
        self.same_network_listeners: list[Callable[[str], None]] = []
        # told each peer a full round with is over, however it ended (after `same_network_listeners` if they were)
        self.round_over_listeners: list[Callable[[str], None]] = []
        # told each peer a full round with holds our org's records, as soon as we hold them too (class docstring)
        self.holder_listeners: list[Callable[[str], None]] = []
        # told, once a round, as soon as its peer's heads, all read, named none of our org's keys (it holds none of
        # the org's records: a new org's catch-up has its answer without the rest of the round)
        self.unheld_listeners: list[Callable[[str], None]] = []
        # asked, while a catch-up waits (node.daemon), whether it needs a full round with a peer: such a round takes
        # a session slot ahead of sessions it does not need, ending one if none is free (gossip.session_slots); the
        # catch-up calls `needs_changed` when an answer may have changed
        self.catch_up_peers: list[Callable[[str], bool]] = []
        # asked likewise by a catch-up that holds nothing back (node.daemon's late one): its rounds take their slots
        # first come, first served, but are had as a peer's Busy wait ends, and as a peer comes to be needed, an
        # interval apart at least with each peer (`_catch_up_round_due`)
        self.patient_catch_up_peers: list[Callable[[str], bool]] = []
        # whether the node dials a peer (PeerManager.keeps, set by node.daemon): the gap reports of those it does not
        # count as one share of the gap queue together (gossip.gap_queue), and a fetch of gaps asks those it dials
        # before the others (`_asking_order`); None: every peer's are a share of their own, asked in the host's order.
        # A peer it dials is a bootstrap peer or an org of the horizon at its own peer id alone (an `org` record's
        # addresses naming another peer id are passed over, gossip.peers), so an org holds one share; the orgs it
        # vouches into the horizon hold one together (`peer_group`)
        self.dialled: Callable[[str], bool] | None = None
        # the group a peer it dials counts in (PeerManager.group_of, set by node.daemon: the keys one org vouched into
        # the horizon), whose gap reports count as one share of the gap queue together, and of which a fetch of gaps
        # asks peers of groups it has not asked yet first (`_asking_order`); None: each its own
        self.peer_group: Callable[[str], str | None] | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve and pull until cancelled."""
        for protocol in SYNC_PROTOCOLS:
            self.host.set_stream_handler(protocol, functools.partial(self._serve, protocol))
        events = self.host.peer_events()
        self.replica.listeners.append(self._on_accepted)
        # Read the store with the listener in place: gossip may have accepted issuers since we were made.
        self._head_marks = HeadMarks()
        self._index = IssuerIndex(self.replica.store)
        self.replica.horizon_listeners.append(self._on_entered)
        if self._verify_threads:
            self._checker = ThreadedChecker(self._verify_threads)
        elif self._verify_processes:
            self._checker = ProcessChecker(self._verify_processes)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._follow_peers, events)
                nursery.start_soon(self._every_interval)
                for _ in range(self._slots.total):
                    nursery.start_soon(self._fetch_reported_gaps)
                for peer in self.host.connected_peers():
                    nursery.start_soon(self.sync_with, peer)
                task_status.started()
        finally:
            self._nursery = None
            self._index = None
            self._head_marks = None
            self.replica.listeners.remove(self._on_accepted)
            self.replica.horizon_listeners.remove(self._on_entered)
            if self._checker is not None:
                self._checker.close()
                self._checker = None

    async def sync_with(self, peer_id: str) -> None:
        """A full round with one peer (heads, then what we lack); returns at once if one is already running, or if the
        peer told us to come back later and it is not yet time. A round a catch-up needs that the peer so answered, or
        that returned so, is had again as that wait ends (`_catch_up_round`)."""
        if peer_id in self._rounds_running:
            return
        if self._throttled.get(peer_id, -math.inf) > trio.current_time():
            self._catch_up_round(peer_id)
            return
        self._rounds_running.add(peer_id)
        started, heard = trio.current_time(), self._heard(peer_id)
        self._rounds_started[peer_id] = started
        changed_only = False
        try:
            if isinstance(await self._pull(peer_id, None), int):
                self.stats.full_rounds += 1
                self.stats.changed_rounds += peer_id in self._changed_only_rounds
                self._apart.pop(peer_id, None)  # (logged again if it goes back to another network)
                # A round that read only the heads changed, naming none of the org's keys, tells no catch-up that began
                # while it ran whether the peer holds the org's records: it has a round reading every head instead.
                changed_only = (peer_id in self._changed_only_rounds and peer_id not in self._holding
                                and self._awaited(peer_id))
                for listener in () if changed_only else self.same_network_listeners:
                    listener(peer_id)
                if heard is not None:
                    self._pulled[peer_id] = (heard, started)
        finally:
            self._rounds_running.discard(peer_id)
            self._changed_only_rounds.discard(peer_id)
            self._holding.discard(peer_id)
            # (throttled: by this round, or a fetch of gaps)
            if changed_only or self._throttled.get(peer_id, -math.inf) > trio.current_time():
                self._catch_up_round(peer_id)
            for over in self.round_over_listeners:
                over(peer_id)

    def _catch_up_round(self, peer_id: str) -> None:
        """Have a full round with `peer_id` as soon as it is due (`_catch_up_round_due`: a Busy wait, say), if a
        catch-up (`_awaited`) needs one: nothing else would start it but the peer's next connection or a periodic
        round, and the catch-up would wait for one, or time out. One such round waits per peer."""
        if self._nursery is not None and peer_id not in self._catch_up_rounds_due and self._awaited(peer_id):
            waiting = self._catch_up_rounds_due[peer_id] = trio.CancelScope()
            self._nursery.start_soon(self._round_when_due, peer_id, waiting)

    async def _round_when_due(self, peer_id: str, waiting: trio.CancelScope) -> None:
        """Wait until a catch-up's round with `peer_id` is due, then have it, if a catch-up needs one still
        (`_awaited`: the peer stays connected, and has yet to answer one) and none is running. The wait (up to an hour,
        the longest a Busy answer may ask) ends as soon as no catch-up awaits the peer (`_round_newly_needed`: it left,
        or the catch-up ended), not to hold a task per peer for nothing."""
        try:
            with waiting:
                while (until := self._catch_up_round_due(peer_id)) > trio.current_time():
                    await trio.sleep_until(until)
        finally:
            if self._catch_up_rounds_due.get(peer_id) is waiting:
                del self._catch_up_rounds_due[peer_id]
        if waiting.cancelled_caught or not self._awaited(peer_id) or peer_id in self._rounds_running:
            return  # (a round running is had, or asks again if Busy)
        if not self._needed(peer_id):
            now = trio.current_time()
            self._patient_rounds = {peer: at for peer, at in self._patient_rounds.items() if at > now - self.interval}
            self._patient_rounds[peer_id] = now
        await self.sync_with(peer_id)

    def _catch_up_round_due(self, peer_id: str) -> float:
        """When a catch-up's round with `peer_id` may be had: once the peer's Busy wait (lengthened by any later Busy
        answer) is over, and, for a patient catch-up's (`patient_catch_up_peers`), `interval` after the last round
        such a catch-up alone asked for started: it may wait the node's whole life, and a peer saying Busy for a
        second each time, or an org whose `org` records come and go among those the node dials, would otherwise have
        a round each time (each may first have the node read up to a million heads)."""
        until = self._throttled.get(peer_id, -math.inf)
        if self._needed(peer_id):
            return until
        return max(until, self._patient_rounds.get(peer_id, -math.inf) + self.interval)

    def round_running(self, peer_id: str) -> bool:
        """Whether a full round with the peer (`sync_with`) is under way."""
        return peer_id in self._rounds_running

    def round_held_own(self, peer_id: str) -> bool:
        """Whether the full round under way with the peer told `holder_listeners` of it (the peer holds our org's
        records, and we hold them too), for `same_network_listeners` to ask as it ends: they may have begun to
        listen, or to care for the peer, only after that."""
        return peer_id in self._holding

    async def fetch_gaps(self, peer_id: str, gaps: Gaps) -> None:
        """Fetch the ranges we still lack now: from `peer_id` if it is connected (it published the records that
        wait for them), then, while some are missing, from other connected peers (a few at most)."""
        await self._fetch(GapBatch(dict(gaps), (peer_id,), every=False))

    async def _fetch(self, batch: GapBatch) -> _GapFetchEnd:
        """Fetch what we still lack of `batch`'s ranges from its origins that are connected, then, while some are
        missing, from other connected peers, those that connect while it runs too (a peer's records may have come back
        with it) after those connected as it started, each peer once: up to _GAP_PEERS peers in all, or if `batch.every`
        as many as were connected as it started and _GAP_PEERS more (a newcomer's own round on connecting asks it for
        them too, unless it had one less than `interval` ago); but for `batch.every`, a peer that reported the gaps or
        was connected as it started whose session failed as it stays (it reset its stream, answered garbage or nothing
        in time), or gave up waiting for its turn (another session with it answered just in time), takes none of those
        asks: hostile reporters, asked first, would otherwise take them all, and no peer holding the gaps would be
        asked; and if the asks all went to peers that reported the gaps, one answering without them, one more is asked:
        a peer the node dials that reported none (`_past_reporters`); never a peer that refused the sync protocol, nor
        any after our disk failed (`storage`); nor any once it has run _GAP_FETCH_SECONDS (the session under way runs
        on, within session_seconds and its peer's pace: a slow honest peer's answer is not cut), the peers
        `batch.tried` names asked after all others (`_next_gap_peer`). The issuers whose ranges are not all here, and
        a peer or None (_GapFetchEnd): overdue, all of them, if it stopped so with a peer left to ask, with the peers
        tried (those it asked, and `batch.tried`, that stay: gap_queue keeps the ranges for the issuer's backoff to
        end); else vain, those of which nothing came, if a peer asked answered (without them, or failing while it
        stays connected, but for refusing the protocol: a gossip-only node serves no one), and not on another network
        (it holds none of ours: `_NO_ANSWER`), and begun, those of which a
        peer that then left or told us to come back later sent some (it may hold the rest, which gap_queue keeps for a
        peer to connect: those there answered without it, or told us to come back later; or, begun_by_busy, for the wait
        of the last of them to have told us so to end: `_fetch_reported_gaps` then asks it), and short, the others of
        which some came (gap_queue asks the rest again at once, SHORTS_AT_ONCE fetches in a row, then as the issuer's
        backoff ends, of the peers not tried first: an honest peer may have been behind, a hostile one sending a record
        a fetch gains no more; not in a history, whose range runs to MAX_SEQ, nor after our disk failed), with the
        peers tried as for overdue; else all of them (a peer
        that began to send a range may hold the rest), peerless if no peer asked stays to be asked and serves sync (each
        left before it answered, told us to come back later, refused the protocol or was found on another network, or
        none could be asked: gap_queue keeps their ranges for a peer to come, `_fetch_reported_gaps` asking one as its
        wait ends), else unanswered (a peer asked stays, its session ended by ours: `_ENDED_BY_US`); gap_queue backs off
        none but the vain (and the short past SHORTS_AT_ONCE). The peer: the first of those that stay: gap_queue keeps
        the unanswered ranges for its turn
        (`_turn` frees them), as the session in its way (a fetch of other gaps, or a round, which may fail), or that
        ended ours (a round a catch-up needs, with that peer or for the slot, which may fail too), may not fetch
        them."""
        store = self.replica.store
        heads = {iss: store.head(iss) for iss in batch.gaps}
        present = self._syncing_peers()
        most = len(present) + _GAP_PEERS if batch.every else _GAP_PEERS
        asked: set[str] = set()
        # a failed session of one of these spares its ask (not a newcomer's, nor in a history fetch: it asks them all)
        known = set() if batch.every else {*batch.origins, *present}
        spared = 0  # asks of peers in `known` whose sessions failed as they stayed, broke the protocol, or gave up
        # waiting for the peer's turn
        answered = False  # by a peer asked: its session ran to its end, or failed as it stays (not for us, nor Busy,
        # nor refusing the sync protocol), and not on another network
        ended: list[str] = []  # peers asked whose sessions ours ended (`_ENDED_BY_US`), in the order asked
        begun: set[str] = set()  # issuers of which a peer asked that left or told us to come back later sent some
        begun_by_busy: dict[str, str] = {}  # of those, the ones the last to begin said Busy: by that peer
        disk_failed = overdue = False
        deadline = trio.current_time() + _GAP_FETCH_SECONDS
        self.stats.gap_fetches += 1
        while peer := (self._next_gap_peer(batch, asked, present) if len(asked) - spared < most
                       else self._past_reporters(batch, asked, answered, present)):
            missing = missing_ranges(store, batch.gaps)
            if not missing:
                return _GapFetchEnd()
            if overdue := trio.current_time() >= deadline:
                break
            asked.add(peer)
            before = {iss: store.head(iss) for iss in missing}
            pulled = await self._pull(peer, missing)
            if pulled in _ENDED_BY_US:
                ended.append(peer)
                if pulled == "turn" and peer in known:
                    spared += 1
            elif pulled not in _NO_ANSWER and (pulled != "stream" or peer in self.host.staying_peers()
                                               and not self.host.refused(peer, SYNC_PROTOCOL)):
                answered = True  # (our disk failing, "storage", too: the issuer backs off, sparing the disk a refetch)
                if pulled == "storage":
                    disk_failed = True
                    break  # nor is the next peer asked: its records would fail our disk the same way
                if isinstance(pulled, str) and peer in known:
                    spared += 1
            else:
                began = [iss for iss in missing if store.head(iss) != before[iss]]
                begun.update(began)
                for iss in began:
                    if pulled == "throttled":
                        begun_by_busy[iss] = peer
                    else:
                        begun_by_busy.pop(iss, None)
        lacking = list(missing_ranges(store, batch.gaps))
        tried = sorted(set(self.host.staying_peers()).intersection({*batch.tried, *asked}))
        if overdue:
            self.stats.gap_fetches_overdue += 1
            return _GapFetchEnd(overdue=lacking, tried=tried)
        if answered:
            idle = [iss for iss in lacking if store.head(iss) == heads[iss]]
            self.stats.gap_issuers_vain += len(idle)
            kept = [iss for iss in lacking if iss in begun]
            short = [] if batch.every or disk_failed else [iss for iss in lacking if iss not in begun
                                                            and store.head(iss) != heads[iss]]
            return _GapFetchEnd(vain=idle, begun=kept, begun_by_busy={iss: begun_by_busy[iss] for iss in kept
                                                                      if iss in begun_by_busy}, short=short,
                                tried=tried if short else [])
        staying = self.host.staying_peers()
        stayed = [peer for peer in ended if peer in staying]
        if stayed:
            # (preempted too, not forgotten: the round that ended ours may fail, or fetch from another peer, and the
            # range would wait for the issuer's next report or a periodic round; if it brought the range, the next
            # fetch asks no one)
            return _GapFetchEnd(unanswered=lacking, behind=stayed[0])
        return _GapFetchEnd(peerless=lacking)

    def _next_gap_peer(self, batch: GapBatch, asked: set[str], present: list[str]) -> str | None:
        """The next peer to ask for `batch`'s ranges, of those connected and not asked yet: an origin, else the first
        of the others in asking order (`_asking_order`); the peers asked by the fetches of the ranges before, stopped at
        their time bound or short (`batch.tried`), after all others, so that those peers asked first again (slow ones,
        or ones that sent what they hold) cannot keep the others from being asked; None if none is left."""
        candidates = [peer for peer in self._syncing_peers() if peer not in asked]
        for pool in ([peer for peer in candidates if peer not in batch.tried], candidates):
            waiting = set(pool)
            if peer := next((peer for peer in batch.origins if peer in waiting),
                            next(iter(self._asking_order(pool, present, asked)), None)):
                return peer
        return None

    def _past_reporters(self, batch: GapBatch, asked: set[str], answered: bool, present: list[str]) -> str | None:
        """The one more peer a fetch of gaps whose asks all went to the peers that reported them, one answering without
        them, asks (`_fetch`): a peer the node dials (`dialled`; any, if unset) that reported none, not asked, those
        connected as the fetch started first; else None. Answering without a range costs a liar nothing (an honest
        relayer may truly lack it), and hostile reporters, asked first, would otherwise have its issuer back off and
        be asked first again, so that the gap waited for a periodic round."""
        if batch.every or not answered or not asked <= set(batch.origins):
            return None
        left = [peer for peer in self._syncing_peers() if peer not in batch.origins and self._own_share(peer)]
        return next(iter(self._asking_order(left, present, asked)), None)

    def _asking_order(self, peers: list[str], present: list[str], asked: set[str]) -> list[str]:
        """`peers` in the order a fetch of gaps asks them: those connected as it started (`present`) first (newcomers,
        whose ids cost nothing, would otherwise take the turns of peers an org's history is asked of); in each part
        those the node dials (`dialled`) first (strangers with ids made to come first, answering without the records,
        would otherwise take the asks left after the origins', _GAP_PEERS, and no peer the node dials would be asked),
        and of those, the ones of a group (`peer_group`) no peer in `asked` is of first (the keys one org vouched in
        would otherwise take them all: the peers it dials of one group are up to a quarter of them); each part in the
        host's order, by peer id."""
        there = set(present)
        groups = {group for peer in asked if (group := self._group_of(peer)) is not None}
        return sorted(peers, key=lambda peer: (peer not in there, not self._own_share(peer),
                                               self._group_of(peer) in groups))

    def heard_log(self, org: str, size: int) -> None:
        """For Witnessing (its `log_listeners`): a checkpoint of `org`'s records log, of `size` entries, arrived by
        gossip, or its node asked ours to cosign one. The largest size is kept: a replayed older checkpoint cannot
        make a peer look settled."""
        if size > self._logs.get(org, -1):
            self._logs[org] = size

    def request_gaps(self, peer_id: str, gaps: Gaps) -> None:
        """For the gossip service (its `on_gaps`): queue the ranges, to be fetched from `peer_id` first; never
        blocks. An issuer already waiting has its range grown instead (gossip.gap_queue)."""
        self._queue_gaps(peer_id, gaps, every=False)

    def _queue_gaps(self, peer_id: str | None, gaps: Gaps, *, every: bool) -> None:
        self.stats.gap_requests += 1
        added = self._gaps.add(peer_id, gaps, every=every)
        self.stats.gap_issuers_merged += added.merged
        self.stats.gap_requests_dropped += added.dropped
        if added.dropped:
            self._forget_marks()  # the next rounds, reading every head, repair what was dropped
        self.stats.gap_issuers_displaced += added.displaced
        if added.queued or added.released:
            self._wake_gap_workers()

    # --- pulling --------------------------------------------------------------------------------------------

    async def _pull(self, peer_id: str, gaps: dict[str, tuple[int, int]] | None) -> int | str:
        """One session with `peer_id`, for `gaps` or (None) for everything we lack; the records it accepted if it ran to
        the end, else why it failed (the reason sync_errors_total counts it under: "stream" if the peer left, say).
        Sessions with a peer take turns; a fetch of gaps waits `timeout` at most for its turn (a gap worker waiting
        on a peer that answers just in time would wait for the whole of its session). A full round a catch-up needs
        (`catch_up_peers`) takes a session slot ahead of others, ending one if none is free (gossip.session_slots), and
        ends the fetches of gaps with its peer (`_turn_and_slot`)."""
        try:
            async with self._turn_and_slot(peer_id, gaps) as slot:
                # A peer keeping its pace (gossip.peer_pace) with records of its own org, signed in a loop, would
                # otherwise hold the slot for as long as it signs; what a session verified is stored as it ends
                # (`_session`), and the next goes on from there.
                with trio.move_on_after(self.session_seconds) as deadline:
                    fetched = await self._session(peer_id, gaps,
                                                  cut=lambda: deadline.cancel_called or slot.scope.cancel_called)
                if deadline.cancelled_caught:
                    raise SyncError("session", f"the session outlasted {self.session_seconds:g} s; ended")
        except RemoteProtocolError as error:
            await self._offence(peer_id, error)
            return error.reason
        except PeerBusy as busy:
            self._throttled[peer_id] = trio.current_time() + busy.retry_after
            return self._failed(peer_id, busy.reason, busy)
        except OtherNetworkPeer as apart:
            self.stats.rounds_failed += 1
            await self.other_network(peer_id, apart.network)
            return "network"
        except SyncError as error:
            return self._failed(peer_id, error.reason, error)
        except trio.TooSlowError:
            return self._failed(peer_id, "timeout", f"no answer within {self.timeout} s")
        except FrameError as error:
            await self._offence(peer_id, RemoteProtocolError("limit", f"frame: {error}"))
            return "limit"
        except HostError as error:
            return self._failed(peer_id, "stream", error)
        except (LedgerError, StoreError) as error:  # our disk (full, say), not the peer: a later round fetches them
            return self._failed(peer_id, "storage", error)
        self.stats.rounds += 1
        if fetched:
            logger.debug("fetched %d records from %s", fetched, peer_id)
        return fetched

    def needs_changed(self) -> None:
        """What `_needed` or `_awaited` answer may have changed: a catch-up (node.daemon) added or removed its
        `catch_up_peers` or `patient_catch_up_peers` as it began or ended,
        or a peer's round proved the org's records in or showed the peer holds none, or a peer came or went among those
        the node dials; or a peer connected or disconnected (`_follow_peers`). A full round waiting for its turn that is
        needed now stops waiting, to end the fetches of gaps in its way (`_round_slot`); rounds waiting for a session
        slot are asked again, and a needed one ends at once a session no longer needed (gossip.session_slots). A peer
        awaited now and not as last asked has a full round (`_round_newly_needed`)."""
        for peer_id, waiting in self._rounds_awaiting_turn.items():
            if self._needed(peer_id):
                waiting.cancel()
        self._slots.needs_changed()
        self._round_newly_needed()

    def _round_newly_needed(self) -> None:
        """A full round with each connected peer a catch-up awaits (`_awaited`) that it did not as `needs_changed`
        last asked: one connected already as the node came to dial it (its org's `org` record came in: peer exchange),
        or as a catch-up began, would otherwise have none but at its next connection or a periodic round, and the
        catch-up would wait for one, or time out. A peer awaited that disconnects stays remembered while awaited: one
        connecting again has a round from `_follow_peers` if a catch-up that goes first needs it, or if its last
        started `interval` ago or more, else none (a peer reconnecting again and again would have a round at each
        connection, for the whole life of a late catch-up); one that just connected may have its round from both:
        whichever starts second returns at once (`sync_with`). A round waiting to be due (`_round_when_due`) with a
        peer no longer awaited, as it left or the catch-up ended, waits no more; if the peer left, still awaited, the
        round waits again as it comes back."""
        awaits = [*self.catch_up_peers, *self.patient_catch_up_peers]
        connected = set(self.host.connected_peers()) if awaits else set()  # (asking the host once)
        awaited = {peer for peer in connected | self._awaited_before if any(wants(peer) for wants in awaits)}
        for peer_id in [peer for peer in self._catch_up_rounds_due if peer not in awaited or peer not in connected]:
            self._catch_up_rounds_due.pop(peer_id).cancel()
            if peer_id in awaited:  # (it left)
                self._due_on_return.add(peer_id)
        self._due_on_return &= awaited
        for peer_id in (awaited & connected) - self._awaited_before | self._due_on_return & connected:
            self._due_on_return.discard(peer_id)
            self._catch_up_round(peer_id)
        self._awaited_before = awaited

    def _needed(self, peer_id: str) -> bool:
        """Whether a catch-up waiting needs a full round with `peer_id` (`catch_up_peers`), a connected peer: a round
        with one that disconnected would end a session for its slot, then fail to open its stream."""
        return any(needs(peer_id) for needs in self.catch_up_peers) and peer_id in self.host.connected_peers()

    def _awaited(self, peer_id: str) -> bool:
        """Whether a catch-up waiting needs a full round with `peer_id`, a connected peer, whether its rounds go first
        (`_needed`) or not (`patient_catch_up_peers`)."""
        return self._needed(peer_id) or (any(wants(peer_id) for wants in self.patient_catch_up_peers)
                                         and peer_id in self.host.connected_peers())

    @asynccontextmanager
    async def _turn_and_slot(self, peer_id: str, gaps: dict[str, tuple[int, int]] | None) -> AsyncIterator[Slot]:
        """The peer's turn and a session slot, the block run inside the slot's scope (`_pull`); SyncError "preempted" if
        the slot was ended for a needed session (gossip.session_slots) before the block ran to its end. A full round
        takes them as `_round_slot` says. A fetch of gaps takes its slot first: holding the peer's turn while it waited
        for one (a session no catch-up needs, queued behind sessions up to 10 minutes long) would hold back every round
        with that peer, and a round the catch-up needs ends only the fetches of gaps with its peer (`_round_slot`), not
        the sessions they wait behind. Ended while it waits for its turn, it waits no more. Either waits for its slot
        and its turn only while the peer stays connected (`_taken_while_connected`, `_turn`): a fetch of gaps whose peer
        left asks its next peer at once (`_fetch`)."""
        if gaps is None:
            async with self._round_slot(peer_id) as slot:
                with slot.scope:
                    yield slot
        else:
            with self._slots.queued(_never) as place:
                slot = await self._taken_while_connected(peer_id, place)
                with slot.scope, _kept(self._gap_fetches, peer_id, slot):
                    async with self._turn(peer_id, trio.move_on_after(self.timeout)) as turn:
                        if not turn:
                            raise SyncError("turn", f"another session with the peer ran on for {self.timeout:g} "
                                                    "s; not waiting for it")
                        yield slot
        if slot.scope.cancelled_caught:  # (ended after its last step, it ran to its end: not preempted)
            raise SyncError("preempted", "ended for a round a catch-up needs (a session slot, or its peer's turn)")

    @asynccontextmanager
    async def _round_slot(self, peer_id: str) -> AsyncIterator[Slot]:
        """A full round's turn with `peer_id` and its session slot, held in the block. One no catch-up needs as it
        starts takes its turn first: it then waits for a slot as needed or not as it is then, and no fetch of gaps with
        the peer runs meanwhile. Needed while it waits, it names no session in its way: the fetches of gaps waiting for
        its turn hold slots no catch-up needs, so it ends one such session at once (the one holding its slot longest, a
        fetch of those or not), as any needed session does, and takes that slot. One a catch-up needs as it starts, or
        comes to need while it waits for its turn (its peer became one the node dials, peer exchange, or connected
        again: `needs_changed`), takes its place among those waiting for a slot, ends there the fetches of gaps with its
        peer that hold its turn or wait for it (one may have taken the turn as the peer connected, and hold it up to a
        session's bound), then waits for the turn: a slot such a fetch frees comes to it, not to a session waiting,
        which it would then end too for want of a slot (stop 35: two sessions preempted where one would do); the turn
        is held meanwhile only by fetches ending, and no later fetch waits for it ahead of the round."""
        needed = functools.partial(self._needed, peer_id)
        async with AsyncExitStack() as stack:
            turn = False
            if not needed():
                waiting = self._rounds_awaiting_turn[peer_id] = trio.CancelScope()  # (one full round with a peer)
                try:
                    turn = await stack.enter_async_context(self._turn(peer_id, waiting))
                finally:
                    del self._rounds_awaiting_turn[peer_id]
            in_its_way = () if turn else self._gap_fetches.get(peer_id, ())
            place = stack.enter_context(self._slots.queued(needed, ending=in_its_way))
            if not turn:
                await stack.enter_async_context(self._turn(peer_id, trio.CancelScope()))
            yield await self._taken_while_connected(peer_id, place)

    async def _taken_while_connected(self, peer_id: str, place: Place) -> Slot:
        """The slot of `place`, a session's with `peer_id` (a full round, or a fetch of gaps), waited for while the peer
        stays connected; SyncError "stream" (as its stream would not open) once the peer has disconnected: given the
        slot, the session would only fail to open its stream, where a session waiting after it could have used the slot
        (one a needed round ended a session for, it may be), and a fetch of gaps would ask its next peer only then
        (`_while_connected`). A slot handed at once is taken: opening the stream says whether the peer is there."""
        if place.handed is not None:
            return place.handed
        return await self._while_connected(peer_id, functools.partial(self._slots.taken, place), "a session slot")

    async def _while_connected(self, peer_id: str, wait: Callable[[], Awaitable[_W]], awaited: str) -> _W:
        """What `wait()` returns, waited for while `peer_id` stays connected; SyncError "stream" once it has
        disconnected (a session with it waiting for `awaited`). The wait stops as the peer disconnects
        (`_follow_peers`); for a peer connected again before the session saw it leave, it goes on."""
        while peer_id in self.host.connected_peers():
            left = trio.CancelScope()
            with left, _kept(self._awaiting_slot_or_turn, peer_id, left):
                return await wait()
        raise SyncError("stream", f"the peer disconnected while the session waited for {awaited}")

    @asynccontextmanager
    async def _turn(self, peer_id: str, waiting: trio.CancelScope) -> AsyncIterator[bool]:
        """The peer's lock (its turn), held in the block (True), unless `waiting` was cancelled before it came (False:
        not held). Waited for while the peer stays connected (`_while_connected`): SyncError "stream" once it has
        disconnected, as for a slot (`_taken_while_connected`): the session holding the turn may be slow to end (a
        stream reset as it ends waits up to the host's close_timeout on a peer not reading: gossip.host quirk 61), and
        the turn, once it came, would only have the session fail to open its stream. A free turn is taken; one left
        free wakes the gap workers for the ranges kept for it (`_fetch`, gap_queue's `turn_freed`)."""
        lock = self._peer_locks.setdefault(peer_id, trio.Lock())
        try:
            with waiting:
                if lock.locked():
                    await self._while_connected(peer_id, lock.acquire, "its peer's turn")
                else:
                    await lock.acquire()
            if waiting.cancelled_caught:  # (a lock handed over is held: the wait is cancelled only while not)
                yield False
            else:
                try:
                    yield True
                finally:
                    lock.release()
        finally:
            if not lock.locked() and self._peer_locks.get(peer_id) is lock:  # nobody holds it or was handed it:
                del self._peer_locks[peer_id]  # forget it, or peers leaving mid-session (fresh ids are free) pile up
                if self._gaps.turn_freed(peer_id):
                    self._wake_gap_workers()

    async def _session(self, peer_id: str, gaps: dict[str, tuple[int, int]] | None, *, cut: Callable[[], bool]) -> int:
        """One client session, to its end; the records it accepted. `holder_listeners` are told as soon as the client
        holds the org's records (SyncClient.holds_own), `unheld_listeners` as soon as it read heads naming none of
        them (SyncClient.names_own); neither in a fetch of gaps, which asks no heads. Each write to the peer and read
        of its answers waits `timeout` at most, and no longer than the peer's pace leaves it (`_paced`). However it ends
        (`cut()` at its time bound or for a needed session, its peer leaving, failing, falling behind its pace or
        saying Busy), the records it verified are
        offered to the replica as it ends, before its stream closes: one batch at most (`accept_records`,
        `accept_bytes`, and a page), which the next session would otherwise fetch and verify again; none of a page not
        yet verified. But not as the node stops (cancelled, not `cut()`): the start's take-back of the org's own
        records has ended by then (node.daemon._take_back_own_records), and a record of a key `vouchnet key adopt`
        made the org's, stored then, was said at CRITICAL as a thief's; the next start fetches them again.
        The stream is `/2`, or `/1` with a peer that refuses it (`_open_sync_stream`). On `/2` a full round asks for the
        heads changed since the mark of the peer's last answer with which a round of ours ended in step
        (SyncClient.in_step_mark), unless a catch-up awaits the peer (one learns only from every head whether the
        peer holds the org's records) or the last round reading every head started `mark_rounds` intervals ago or
        more: a peer answering falsely that nothing changed keeps nothing from us for longer. A round that fails, ends
        out of step, or during which every mark was forgotten (`_forget_marks`) leaves no mark: the next reads every
        head."""
        started, forgotten = trio.current_time(), self._marks_forgotten
        kept = self._peer_marks.pop(peer_id, None) if gaps is None else None  # (kept again if this round ends in step)
        since = (kept[0] if kept is not None and kept[1] > started - self._mark_refresh and not self._awaited(peer_id)
                 else None)
        client, event = self._client(gaps, since, SYNC_PROTOCOL_2)
        if isinstance(event, Finished):
            return 0
        fetched = 0
        pending = _Verified()
        pace = PeerPace(grace=self.timeout)
        told = False  # the holder or unheld listeners
        protocol, opening = await self._open_sync_stream(peer_id)
        if protocol != SYNC_PROTOCOL_2:  # (a node from before `/2`)
            client, event = self._client(gaps, None, protocol)
        async with opening as stream:
            try:
                while not isinstance(event, Finished):
                    told = told or self._told_holders(client, peer_id)  # (before each step: what came may be stored)
                    if isinstance(event, (Send, ReadNext)):
                        if isinstance(event, Send):
                            await self._paced(pace, stream.write_frame, event.payload)
                        payload = await self._read(stream, pace)
                        reply = await _decoded(functools.partial(decode_reply, protocol=protocol), payload)
                        used, held = client.heads_used, client.heads_held
                        event = client.receive_reply(reply)
                        if client.changed_only:
                            self._changed_only_rounds.add(peer_id)
                        pace.read(reply, len(payload), used_heads=client.heads_used - used,
                                  held_heads=client.heads_held - held)
                    else:
                        assert isinstance(event, Deliver)
                        checking = self._checker.submit(event.records) if self._checker else None
                        # (offered while this page is checked on worker threads)
                        if len(pending.records) >= self._accept_records or pending.size >= self._accept_bytes:
                            fetched += self._accept(pending.take(), peer_id)
                        offered, event = client.deliver(await self._verify(event.records, checking))
                        pending.add(offered)
                    if isinstance(event, (Send, Finished)):  # the client's next request reads the store (an answer
                        # ends with a page of records, or an empty one after them)
                        fetched += self._accept(pending.take(), peer_id)
            except trio.Cancelled:
                if not cut():
                    pending.take()
                raise
            finally:  # cut (its time bound, a preemption, the peer failing or saying Busy): what was verified stays
                fetched += self._accept(pending.take(), peer_id)
            if not told:  # (before the stream's close, which may wait on the connection, or be cancelled)
                self._told_holders(client, peer_id)
        if (mark := client.in_step_mark()) is not None and self._marks_forgotten == forgotten:
            self._peer_marks[peer_id] = (mark, kept[1] if client.changed_only and kept is not None else started)
        return fetched

    def _forget_marks(self) -> None:
        """Have every peer's next round read every head, rounds under way as it is called too (`_session` keeps no
        mark of them): heads they read may have been left then that are wanted now (orgs entering the horizon, gaps
        dropped)."""
        self._peer_marks.clear()
        self._marks_forgotten += 1

    def _client(self, gaps: dict[str, tuple[int, int]] | None, since: bytes | None,
                protocol: str) -> tuple[SyncClient, Event]:
        """A client for a session (`_session`) on `protocol`, and its first step."""
        own = {self.replica.did, *self.replica.succession.earlier(self.replica.did)}
        client = SyncClient(self.replica.store, self.replica.horizon, self.limits, gaps=gaps, network=self.network,
                            own=own, since=since, protocol=protocol)
        return client, client.start()

    async def _open_sync_stream(self, peer_id: str) -> tuple[str, Stream]:
        """A sync stream to `peer_id` and its protocol: `/2`, or `/1` if the peer refuses `/2` (a node from before it;
        gossip.host remembers the refusal while the peer stays connected, so it is asked once a connection)."""
        try:
            return SYNC_PROTOCOL_2, await self.host.open_stream(peer_id, SYNC_PROTOCOL_2)
        except ProtocolNotSupported:
            return SYNC_PROTOCOL, await self.host.open_stream(peer_id, SYNC_PROTOCOL)

    def _told_holders(self, client: SyncClient, peer_id: str) -> bool:
        """Tell `holder_listeners` of `peer_id` if `client` holds the org's records as the peer named them, or
        `unheld_listeners` if the peer's heads, all read, named none of them; whether it told either."""
        named = client.names_own()
        if named is None or named and not client.holds_own():
            return False
        if named:
            self._holding.add(peer_id)
        for listener in self.holder_listeners if named else self.unheld_listeners:
            listener(peer_id)
        return True

    def _accept(self, records: list[Record], peer_id: str) -> int:
        """Offer `records`, fetched from `peer_id`, to the replica; how many it accepted."""
        if not records:
            return 0
        accepted = len(self.replica.accept(records, peer_id).accepted)
        self.stats.records_fetched += accepted
        return accepted

    async def _read(self, stream: Stream, pace: PeerPace) -> bytes:
        payload = await self._paced(pace, stream.read_frame, self.limits.max_frame)
        if payload is None:
            raise SyncError("stream", "the peer closed the stream before answering")
        return payload

    async def _paced(self, pace: PeerPace, wait: Callable[[_A], Awaitable[_W]], argument: _A) -> _W:
        """`wait(argument)`, a write of a request to a session's peer or a read of its reply, within the sync timeout
        (trio.TooSlowError) and within what the peer's pace leaves it (SyncError "slow": gossip.peer_pace)."""
        allowed, started = pace.allowance(), trio.current_time()
        try:
            with trio.fail_after(min(self.timeout, allowed)):
                done = await wait(argument)
        except trio.TooSlowError:
            if allowed >= self.timeout:
                raise
            raise SyncError("slow", f"the peer delivered {pace.units} units in the "
                                    f"{pace.waited + trio.current_time() - started:.0f} s waited on it, fewer than "
                                    f"{pace.rate:g} a second after the first {pace.grace:g} s; ended") from None
        pace.took(trio.current_time() - started)
        return done

    async def _verify(self, raws: tuple[bytes, ...], checking: Checking | None) -> list[Record]:
        """The page's records, checked on the event loop, or by the workers `checking` them."""
        if checking is None:
            return check_page(raws)
        try:
            return await trio.to_thread.run_sync(checking.result)
        except InvalidRecord as e:
            raise RemoteProtocolError("invalid_record", str(e)) from None

    async def _offence(self, peer_id: str, error: RemoteProtocolError) -> None:
        self.stats.rounds_failed += 1
        self.stats.errors[error.reason] += 1
        if error.reason == "refused":
            logger.info("sync with %s: %s", peer_id, error)
            return
        logger.warning("sync with %s: protocol offence (%s): %s; disconnecting it", peer_id, error.reason, error)
        self.stats.peers_disconnected += 1
        if self._on_offence is not None:
            self._on_offence(peer_id, error.reason)
        with trio.move_on_after(self.timeout):
            await self.host.disconnect(peer_id)

    async def other_network(self, peer_id: str, network: str) -> None:
        """`peer_id` answered that it is on `network`, not ours: `heard_other_network`, and disconnect it: its
        connection slot is freed (the peer manager, one of `network_listeners`, dials it again 30 s to an hour
        later)."""
        self.heard_other_network(peer_id, network)
        with trio.move_on_after(self.timeout):
            await self.host.disconnect(peer_id)

    def heard_other_network(self, peer_id: str, network: str) -> None:
        """`peer_id` named `network`, not ours: count it, log it once per peer (not per network: a hostile peer naming
        two in turn would spend the call site's log limit, which another peer's warning needs), and tell
        `network_listeners`."""
        self.stats.errors["network"] += 1
        if peer_id not in self._apart:
            self.stats.peers_other_network += 1
            logger.warning("peer %s is on network %r, this node on %r: it holds none of this network's records, "
                           "and is disconnected, not synced with nor asked to cosign (check [p2p] bootstrap, or that "
                           "node's network)", peer_id, network, self.network)
        self._apart[peer_id] = network
        self._apart.move_to_end(peer_id)
        if len(self._apart) > _APART_KEPT:
            self._apart.popitem(last=False)
        for listener in self.network_listeners:
            listener(peer_id, network)

    def _failed(self, peer_id: str, reason: str, error: object) -> str:
        """Count and log a session of ours that failed; its `reason`."""
        self.stats.rounds_failed += 1
        self.stats.errors[reason] += 1
        logger.info("sync with %s failed (%s): %s", peer_id, reason, error)
        return reason

    def _refused(self, reason: str) -> None:
        """A peer's sync stream or request refused or cut short: in sync_errors_total, and apart in
        sync_served_errors_total, so that an alert on this node's failures need not fire on peers' mistakes."""
        self.stats.errors[reason] += 1
        self.stats.served_errors[reason] += 1

    # --- triggers -------------------------------------------------------------------------------------------

    async def _follow_peers(self, events: PeerFeed) -> None:
        """A full round with each peer that connects, unless one with it started less than `interval` ago: a peer
        reconnecting again and again would otherwise have a round at each connection (the periodic rounds still
        come to it in turn). A peer a catch-up waiting needs (`_needed`) has one as it connects all the same, unless
        one with it is running: its last may have failed as it left, and the catch-up would wait for a periodic round
        to pick it, or time out. Each peer that connects or disconnects is told to `needs_changed`, and the sessions
        with a peer that disconnects (its round, fetches of gaps) stop waiting for a session slot or the peer's turn
        (`_taken_while_connected`, `_turn`): they end no session for one, and take none they could not use. The
        ranges of gaps kept for a peer to come (their fetch found none there to answer: gap_queue) are fetched as the
        next one connects, asked first."""
        async for event in events:
            self.needs_changed()
            if not event.connected:
                for waiting in self._awaiting_slot_or_turn.get(event.peer_id, ()):
                    waiting.cancel()
                continue
            if self._gaps.peer_came(event.peer_id):
                self._wake_gap_workers()
            now = trio.current_time()
            self._rounds_started = {peer: at for peer, at in self._rounds_started.items() if at > now - self.interval}
            if event.peer_id not in self._rounds_started or self._needed(event.peer_id):  # (none if running)
                assert self._nursery is not None
                self._nursery.start_soon(self.sync_with, event.peer_id)

    async def _every_interval(self) -> None:
        """Anti-entropy rounds: pull from `round_peers` connected peers picked at random among those not settled
        (class docstring), every `interval` give or take a quarter (nodes started together would otherwise all pull
        at one moment). A record that gossip missed reaches every node within a few rounds, at a cost per node that
        does not grow with its peers: every peer holding it is unsettled once a checkpoint of its log covering it
        has arrived, or `refresh_rounds` intervals after our last full round with it, and the rounds pick among
        them. A node gossips its latest checkpoint again each interval while it has none newer, 3 times at most
        (gossip.witnessing, the daemon giving it this interval), so a checkpoint lost as well arrives again within
        an interval and the record comes in the round after: within 2.25 intervals and a checkpoint interval of the
        checkpoint's loss, where the refresh took up to 21.25 intervals (tests/gossip/test_lost_tail.py). An idle
        network's nodes pull from no one but every `refresh_rounds` intervals (issue 7: a round's new stream and
        heads exchange were about a quarter of an idle node's CPU)."""
        assert self._nursery is not None
        while True:
            await trio.sleep(self.interval * _RANDOM.uniform(0.75, 1.25))
            peers = self._syncing_peers()
            oldest = trio.current_time() - self._refresh
            connected = set(peers)  # (one told to come back later is forgotten too: then pulled from as any other)
            self._pulled = {peer: (size, at) for peer, (size, at) in self._pulled.items()
                            if peer in connected and at > oldest}
            self._peer_marks = {peer: (mark, at) for peer, (mark, at) in self._peer_marks.items()
                                if peer in connected and at > trio.current_time() - self._mark_refresh}
            due = [peer for peer in peers if not self._settled(peer)]
            for peer in _RANDOM.sample(due, min(self.round_peers, len(due))):
                self._nursery.start_soon(self.sync_with, peer)

    def _settled(self, peer: str) -> bool:
        """Whether the size heard of `peer`'s log is the one heard when our last full round with it started."""
        pulled = self._pulled.get(peer)
        return pulled is not None and pulled[0] == self._heard(peer)

    def _heard(self, peer: str) -> int | None:
        """The largest size of `peer`'s records log heard (heard_log), if any (a peer keyed by an org key only)."""
        try:
            return self._logs.get(peer_org(peer))
        except InvalidPeerId:
            return None

    def _syncing_peers(self) -> list[str]:
        """The connected peers, less those that said they do not serve sync (a peer that speaks only GossipSub), those
        that told us to come back later, until then, and those that hung up, listed still as their connections close
        (Host.staying_peers: a stream to one would reset at once)."""
        now = trio.current_time()
        self._throttled = {peer: until for peer, until in self._throttled.items() if until > now}
        return [peer for peer in self.host.staying_peers() if not self.host.refused(peer, SYNC_PROTOCOL)
                and peer not in self._throttled]

    async def _fetch_reported_gaps(self) -> None:
        """One of the workers fetching queued ranges, a batch at a time, in turn by issuer (gossip.gap_queue)."""
        while True:
            syncing = self._syncing_peers()
            if self._gaps.awaiting_peer and syncing:  # (one not asked, come back, or its wait over)
                self._gaps.peer_came(None)
            for peer in self._gaps.awaited_waits.intersection(syncing):  # (its wait over)
                self._gaps.wait_over(peer)
            batch = self._gaps.take(self.limits.max_ranges, trio.current_time())
            if batch is None:
                with trio.move_on_at(min(self._gaps.ready_at(), self._throttle_ends())):  # a backoff, or a wait ends
                    await self._gaps_changed.wait()
                continue
            end = _GapFetchEnd()
            try:
                end = await self._fetch(batch)
            finally:
                unkept = self._gaps.done(batch, end.vain, trio.current_time(), end.unanswered, end.peerless,
                                         end.behind, begun=end.begun, begun_by_busy=end.begun_by_busy,
                                         short=end.short, overdue=end.overdue, tried=end.tried)
                self.stats.gap_issuers_unkept += unkept
                if unkept:
                    self._forget_marks()  # the next rounds, reading every head, repair what was dropped
                if end.behind is not None and end.behind not in self._peer_locks:  # its turn came free meanwhile
                    self._gaps.turn_freed(end.behind)
                self._wake_gap_workers()  # for issuers whose range grew while they were fetched, or kept for a peer

    def _group_of(self, peer: str) -> str | None:
        """The group whose share of the gap queue `peer`'s reports count in (`peer_group`), if any."""
        return None if self.peer_group is None else self.peer_group(peer)

    def _own_share(self, peer: str) -> bool:
        """Whether `peer`'s gap reports count as a share of the gap queue of their own (`dialled`)."""
        return self.dialled is None or self.dialled(peer)

    def _throttle_ends(self) -> float:
        """When the first connected peer that told us to come back later may be asked again, of any if a range of gaps
        waits for a peer there, else of those for whose waits ranges wait (gap_queue: a worker then asks it); inf if
        none."""
        awaited = self._gaps.awaited_waits
        anyone = self._gaps.awaiting_peer
        return min((self._throttled[peer] for peer in self.host.connected_peers()
                    if peer in self._throttled and (anyone or peer in awaited)), default=math.inf)

    def _wake_gap_workers(self) -> None:
        self._gaps_changed.set()
        self._gaps_changed = trio.Event()

    def _on_accepted(self, records: list[Record]) -> None:
        """Replica listener: keep the issuer index current."""
        assert self._index is not None and self._head_marks is not None
        self._index.add(records)
        self._head_marks.add(records)

    def _on_entered(self, orgs: set[str]) -> None:
        """Replica horizon listener: fetch the histories of orgs that came inside the horizon (again, after a
        revocation had taken them out: what they issued meanwhile was not stored)."""
        # Each peer may hold a different part: ask every one.
        self._queue_gaps(None, {org: (1, MAX_SEQ) for org in orgs}, every=True)
        self._forget_marks()  # (rounds left their heads, outside the horizon then; should that fetch lose a range)

    # --- serving --------------------------------------------------------------------------------------------

    async def _serve(self, protocol: str, stream: Stream) -> None:
        if self._nursery is None:
            await stream.reset()  # the service is not running (the host keeps the handler it was given)
            return
        peer = stream.remote_peer
        if self._peer_streams[peer] >= self._max_peer_streams:
            self._refused("busy")
            await stream.reset()
            return
        try:
            self._streams.acquire_nowait()
        except trio.WouldBlock:
            self._refused("busy")
            await stream.reset()
            return
        self._peer_streams[peer] += 1
        try:
            self.stats.streams_served += 1
            await self._answer(stream, protocol)
        finally:
            self._streams.release()
            self._peer_streams[peer] -= 1
            if not self._peer_streams[peer]:
                del self._peer_streams[peer]

    async def _answer(self, stream: Stream, protocol: str) -> None:
        peer = stream.remote_peer
        assert self._index is not None  # _serve answers only while running
        server = SyncServer(self.replica.store, self._index, self.limits,
                            self._head_marks if protocol == SYNC_PROTOCOL_2 else None)
        answered = False
        try:
            while True:
                try:
                    with trio.fail_after(self.timeout):
                        payload = await stream.read_frame(MAX_REQUEST_FRAME)
                except trio.TooSlowError:
                    if not answered:
                        raise
                    await stream.close()  # idle after answering (a witness keeps its stream between checkpoints)
                    return
                if payload is None:
                    return
                if not await self._reply(stream, server, payload, protocol):
                    return
                answered = True
        except trio.TooSlowError:
            self._refused("timeout")
            await stream.reset()
        except FrameError as error:
            self._refused("limit")
            logger.info("sync stream from %s: %s", peer, error)
            await stream.reset()
        except HostError as error:
            self._refused("stream")
            logger.debug("sync stream from %s: %s", peer, error)

    async def _reply(self, stream: Stream, server: SyncServer, payload: bytes, protocol: str) -> bool:
        """Answer one request; False if the stream is done: no slot was free (reset), or the request was malformed
        (refused), or its answer was cut short (Busy). It holds one of the `max_inbound` slots while it is decoded and
        its answer made, not while the answer waits for the peer to read it: a peer slow to read holds its stream,
        not a slot of the requests being answered."""
        try:
            self._inbound.acquire_nowait()
        except trio.WouldBlock:
            self._refused("busy")
            await stream.reset()
            return False
        request: Request | None = None
        apart: str | None = None
        try:
            request = await _decoded(functools.partial(decode_request, protocol=protocol), payload)
            if isinstance(request, (HeadsRequest, CheckpointRequest)) and request.network not in (None, self.network):
                apart, reply = request.network, encode_message(OtherNetwork(self.network))
            elif isinstance(request, CosignRequest) and self.cosigner is not None:
                reply = encode_message(await self.cosigner(stream.remote_peer, request))
            elif isinstance(request, CheckpointRequest) and self.checkpoints is not None:
                reply = encode_message(await self.checkpoints(stream.remote_peer))
            elif isinstance(request, (HeadsRequest, RecordsRequest)):
                reply = None  # pages of it are made as they are written, within the serving budgets
            else:
                reply = next(server.answer(request))  # refused: not served here (a witness's client knows no Busy)
        except RemoteProtocolError as error:
            self._refused(error.reason)
            logger.info("sync request from %s refused (%s): %s", stream.remote_peer, error.reason, error)
            reply = server.refusal(error)
        finally:
            self._inbound.release()
        if reply is not None:
            await self._write(stream, reply)
            if apart is not None:  # (the asker disconnects, having read why: a disconnection now could cut it off)
                self.stats.served_errors["network"] += 1  # (heard_other_network counts it in errors)
                self.heard_other_network(stream.remote_peer, apart)
            return request is not None and apart is None
        assert request is not None
        return await self._serve_pages(stream, server, server.answer(request))

    async def _serve_pages(self, stream: Stream, server: SyncServer, pages: Iterator[bytes]) -> bool:
        """Write the answer's pages, produced as written (a large answer is read from the store page by page), while
        the peer's serving budget and the node's last; when either is spent, a Busy reply instead of the next page,
        and False: the stream is done (gossip.serving_budget)."""
        peer = stream.remote_peer
        while not (retry := self._budget.retry_after(peer, trio.current_time())):
            records, units = server.records_served, server.units
            page = next(pages)
            self._budget.charge(peer, page_cost(server.units - units, len(page)), trio.current_time())
            self.stats.records_served += server.records_served - records
            await self._write(stream, page)
            if not server.continues:
                return True
        self.stats.served_busy += 1
        logger.info("sync: %s has had its share of serving for now; told to come back in %d s", peer, retry)
        await self._write(stream, encode_message(Busy(retry, "serving budget spent")))
        return False

    async def _write(self, stream: Stream, frame: bytes) -> None:
        with trio.fail_after(self.timeout):
            await stream.write_frame(frame)


def _never() -> bool:
    return False


@contextmanager
def _kept(by_peer: dict[str, set[_K]], peer_id: str, item: _K) -> Iterator[None]:
    """`item` among `by_peer[peer_id]` while in the block; a peer's set is dropped once empty (peers leaving, their
    fresh ids free to make, would otherwise pile up)."""
    kept = by_peer.setdefault(peer_id, set())
    kept.add(item)
    try:
        yield
    finally:
        kept.discard(item)
        if not kept and by_peer.get(peer_id) is kept:
            del by_peer[peer_id]


async def _decoded(decode: Callable[[bytes], _M], payload: bytes) -> _M:
    """decode(payload), off the event loop for a frame long enough to hold it up (see DECODE_ON_LOOP_BYTES)."""
    if len(payload) <= DECODE_ON_LOOP_BYTES:
        return decode(payload)
    return await trio.to_thread.run_sync(decode, payload)
