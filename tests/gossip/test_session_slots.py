"""Sync session slots under peers that stall, keeping their pace (with made-up issuers, counted here as the records of
an org signing in a loop would be, nodes.HeadsKeepingPace) (trio's mock clock): the start's
catch-up (node.daemon) still ends on its round with the one honest peer holding the org's records, well before
startup_sync_seconds, whether the stallers dialled in, hold the node's inbound streams, or are peers the node dials
(then after one turn, or as soon as their heads name none of the org's keys; twice as many as slots, after two turns),
or a fetch of gaps from the holder waits for a slot or its turn, or holds the holder's turn (and its slot then goes to
the round, which ends no other session for one), even if the catch-up came to need the round only as it waited for that
turn, or held it (then ending the session holding its slot longest), or the holder's stream is slow to close; the
sessions open at once stay bounded; the late catch-up ends no session, nor a round waiting as the catch-up ends; one
whose peers answered holding none of the org's records, then could not be connected, says unheld; a needed session that
stops waiting frees its place, one whose turn is up ends another, and one waiting ends a holder as soon as it is no
longer needed, and one whose peer leaves stops waiting (for a slot, or its peer's turn), ending none (one whose peer is
back as sync hears it left waits on), and runs again as soon as its peer is back, unless a round with it proved the
org's records in already (the rest of which makes way for another peer's the node dials); a holder the node comes to
dial during its round (begun as an earlier catch-up waited, or not) is not counted as one that proved nothing; and,
however sessions come and go (hypothesis), none waits forever, no needed one past a holder's turn, and needed ones end
one session each at most besides those in their way (gossip.session_slots)."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip import sync_service
from gossip.host import HostError, PeerEvent
from gossip.peer_pace import MIN_RATE
from gossip.peers import KnownPeer
from gossip.replica import Replica
from gossip.session_slots import Place, SessionSlots, Slot
from gossip.store import RecordStore
from gossip.sync import IssuerIndex, SyncLimits, SyncServer
from gossip.sync_messages import HeadEntry, HeadsPage, HeadsRequest, RecordsPage, encode_message
from gossip.sync_service import SyncService
from ledger import MAX_COSIGNATURES
from node.daemon import SETTLE_SECONDS, CatchUp, _catch_up_late, _caught_up, _dialled_rounds

from ..factories import Org
from .nodes import ConnectedHost, HeadsKeepingPace, IdleGossip
from .test_sync_session import ServedStream

TIMEOUT, STARTUP_SYNC_SECONDS, SLOTS = 10.0, 10.0, 8
STALLERS = [f"12D3KooWStaller{i}" for i in range(SLOTS)]
HOLDER = "12D3KooWHolder"
_FRESH = itertools.count()
# a staller's heads page (small enough to be decoded on the event loop: a worker thread decoding it would let trio's
# mock clock jump past the bounds), and how long it takes over each: a tenth above its pace
STALLING_HEADS = 50
STALLING_SECONDS = STALLING_HEADS / (1.1 * MIN_RATE)
OTHER = Org()  # an org inside the node's horizon
OTHERS_RECORDS = [OTHER.record() for _ in range(20)]


@pytest.fixture(autouse=True)
def _stallers_keep_their_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_service, "PeerPace", HeadsKeepingPace)


@asynccontextmanager
async def held(slots: SessionSlots, needed: Callable[[], bool]) -> AsyncIterator[Slot]:
    """A slot of `slots`, held in the block, as a session takes one (SyncService._turn_and_slot)."""
    await trio.lowlevel.checkpoint()
    with slots.queued(needed) as place:
        yield await slots.taken(place)


class StallingStream:
    """A hostile peer's sync stream: each heads request answered with as many made-up issuers as keep its pace
    (HeadsKeepingPace: STALLING_HEADS every STALLING_SECONDS), for as long as the session's bound allows (10 minutes);
    or, `naming_other`, heads naming only OTHER `heads_after` seconds in, then each page of its records just inside the
    timeout, one record a page (behind its pace within a read of its grace)."""

    def __init__(self, *, naming_other: bool, heads_after: float = 0.0) -> None:
        self._naming_other, self._heads_after = naming_other, heads_after
        self._heads_sent = False
        self._records = iter(OTHERS_RECORDS)

    async def __aenter__(self) -> StallingStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def write_frame(self, payload: bytes) -> None:
        pass

    async def read_frame(self, max_size: int) -> bytes:
        if self._naming_other and not self._heads_sent:
            self._heads_sent = True
            await trio.sleep(self._heads_after)
            last = OTHERS_RECORDS[-1]
            return encode_message(HeadsPage((HeadEntry(OTHER.did, last.seq, last.id),), more=False))
        if self._naming_other:
            await trio.sleep(0.9 * TIMEOUT)
            return encode_message(RecordsPage((next(self._records).raw,), more=True))
        await trio.sleep(STALLING_SECONDS)
        return encode_message(HeadsPage(tuple(HeadEntry(f"did:key:z{next(_FRESH):09d}", 1, bytes(32))
                                              for _ in range(STALLING_HEADS)), more=True))


class Network(ConnectedHost):
    """The host's view: the stallers connected when sync starts, the holder once the peer manager has dialled it (a
    stream opens to a connected peer only); the most sync streams open at once."""

    def __init__(self, holder: SyncServer, *, stallers: list[str], stallers_name_other: bool) -> None:
        super().__init__(list(stallers))
        self.holder, self.stallers_name_other = holder, stallers_name_other
        self.open_now = self.most_open = 0
        self.holder_close_seconds = 0.0  # how long closing a stream to the holder takes
        self.holder_reset_seconds = 0.0  # how long resetting one takes (Counted)
        self.stallers_heads_after = 0.0  # when stallers naming OTHER answer our heads request
        self.slow_holder_streams = 0  # the first streams to the holder opened, whose answers are read just in time
        self.first_holder_streams: list[Callable[[SyncServer], ServedStream]] = []  # make the first opened to it
        self.serve: Callable[[InboundStaller], Awaitable[None]] | None = None

    def set_stream_handler(self, protocol: str, handler: Callable[[InboundStaller], Awaitable[None]]) -> None:
        self.serve = handler

    async def open_stream(self, peer: str, protocol: str) -> Counted:
        if peer not in self._peers:
            raise HostError(f"open {protocol} stream to {peer}: not connected")
        if peer == HOLDER and self.first_holder_streams:
            return Counted(self, self.first_holder_streams.pop(0)(self.holder), self.holder_close_seconds,
                           self.holder_reset_seconds)
        if peer == HOLDER:
            slow, self.slow_holder_streams = self.slow_holder_streams > 0, max(0, self.slow_holder_streams - 1)
            return Counted(self, (SlowServedStream if slow else ServedStream)(self.holder), self.holder_close_seconds,
                           self.holder_reset_seconds)
        return Counted(self, StallingStream(naming_other=self.stallers_name_other,
                                            heads_after=self.stallers_heads_after))

    async def disconnect(self, peer_id: str) -> None:  # (a staller asked for records answers heads: an offence)
        if peer_id in self._peers:
            self._peers.remove(peer_id)

    async def connect_holder(self) -> None:
        self._peers.append(HOLDER)
        await self._events_send.send(PeerEvent(HOLDER, connected=True))

    async def disconnect_holder(self) -> None:
        await self.leave(HOLDER)

    async def leave(self, peer: str) -> None:
        """The peer's connection closed: it is connected no more, and sync hears of it."""
        self._peers.remove(peer)
        await self._events_send.send(PeerEvent(peer, connected=False))


class SlowServedStream(ServedStream):
    """The holder's stream over a slow link: each answer read just inside the timeout."""

    async def read_frame(self, max_size: int) -> bytes | None:
        await trio.sleep(0.9 * TIMEOUT)
        return await super().read_frame(max_size)


class PastTheOrgsRecordsStream(ServedStream):
    """The holder's stream, its first two answers (the heads, then a page of the org's records) read at once; past
    them, over a connection that drops (`drops`: the next read fails), or a slow link (each read just inside the
    timeout): the rest of the round to come."""

    def __init__(self, server: SyncServer, *, drops: bool) -> None:
        super().__init__(server)
        self._drops, self._answers = drops, 2

    async def read_frame(self, max_size: int) -> bytes | None:
        if not self._answers and self._drops:
            raise HostError("the connection closed")
        if not self._answers:
            await trio.sleep(0.9 * TIMEOUT)
        self._answers = max(0, self._answers - 1)
        return await super().read_frame(max_size)


class InboundStaller:
    """A hostile peer's inbound sync stream: a heads request sent just inside the timeout, each answer read just
    inside it."""

    def __init__(self, peer: str) -> None:
        self.remote_peer = peer

    async def read_frame(self, max_size: int) -> bytes:
        await trio.sleep(0.9 * TIMEOUT)
        return encode_message(HeadsRequest("", 1000, "test"))

    async def write_frame(self, payload: bytes) -> None:
        await trio.sleep(0.9 * TIMEOUT)

    async def close(self) -> None:
        pass

    async def reset(self) -> None:
        pass


@dataclass
class Counted:
    """A stream counted among those open while its `async with` runs; closing it takes `close_seconds`, and resetting
    it (left by an error, or by cancellation) `reset_seconds`, shielded, as gossip.host's reset is (quirk 61): the peer
    not reading holds the RST's write, up to the host's close_timeout."""

    network: Network
    stream: ServedStream | StallingStream
    close_seconds: float = 0.0
    reset_seconds: float = 0.0

    async def __aenter__(self) -> ServedStream | StallingStream:
        self.network.open_now += 1
        self.network.most_open = max(self.network.most_open, self.network.open_now)
        return self.stream

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is not None and self.reset_seconds:
                with trio.CancelScope(shield=True):
                    await trio.sleep(self.reset_seconds)
            else:
                await trio.sleep(self.close_seconds)
        finally:  # (cancelled: a stream left by cancellation is reset, gossip.host's quirk 61)
            self.network.open_now -= 1


class PeerManager:
    """Keeps `kept` connected (the bootstrap peers: the holder, and stallers if their addresses were taken over); its
    dial of the holder takes a second, the stallers having dialled in already; `stallers_leave_after` seconds in (if
    given), it keeps the stallers no more (their orgs' latest `org` records name another network, say), and tells
    its `keeps_listeners` so; `unreachable_after` seconds in (if given), none it keeps can be connected in time."""

    def __init__(self, network: Network, kept: set[str], inbound_stallers: int,
                 before_holder_round: Callable[[], None] | None, stallers_leave_after: float | None = None,
                 unreachable_after: float | None = None) -> None:
        self.network, self.kept, self.inbound_stallers, self.has_peers = network, kept, inbound_stallers, True
        self.before_holder_round, self.stallers_leave_after = before_holder_round, stallers_leave_after
        self.unreachable_after = unreachable_after
        self.keeps_listeners: list[Callable[[], None]] = []

    def keeps(self, peer_id: str) -> bool:
        return peer_id in self.kept

    def out_of_reach_now(self, until: float, *, answered: Callable[[], Iterable[str]] | None = None) -> None:
        return None  # (every peer it keeps connects, or is being dialled, unless `unreachable_after` said otherwise)

    async def out_of_reach(self, until: float, *,
                           answered: Callable[[], Iterable[str]] | None = None) -> list[KnownPeer]:
        # (the holder is among those it keeps, or `unreachable_after` is given: the catch-up's answers end no wait)
        if self.unreachable_after is None:
            await trio.sleep_forever()
        await trio.sleep(self.unreachable_after)
        return [KnownPeer(peer, "bootstrap", (), False, 1, "connection refused", TIMEOUT) for peer in sorted(self.kept)]

    async def _stallers_leave(self) -> None:
        assert self.stallers_leave_after is not None
        await trio.sleep(self.stallers_leave_after)
        self.kept = {HOLDER} & self.kept
        for listener in self.keeps_listeners:
            listener()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        assert self.network.serve is not None
        async with trio.open_nursery() as nursery:
            if self.stallers_leave_after is not None:
                nursery.start_soon(self._stallers_leave)
            for i in range(self.inbound_stallers):  # (dialled in already)
                nursery.start_soon(self.network.serve, InboundStaller(f"12D3KooWInbound{i}"))
            await trio.sleep(1)
            if self.before_holder_round is not None:  # (connected, its peer event not yet read by sync)
                self.network._peers.append(HOLDER)
                self.before_holder_round()
                await trio.testing.wait_all_tasks_blocked()
                self.network._peers.remove(HOLDER)
            await self.network.connect_holder()


@dataclass
class Started:
    caught_up: CatchUp
    ended: float  # when the catch-up did
    sync: SyncService
    network: Network
    head: int  # the org's, after the catch-up
    late_state: str = ""  # the node's startup_sync at the end (restored_node_start's `late`)


async def restored_node_start(tmp_path: Path, *, kept: set[str], startup_sync_seconds: float,
                              stallers: list[str] = STALLERS, stallers_name_other: bool = False,
                              inbound_stallers: int = 0,
                              before_holder_round: Callable[[SyncService], None] | None = None,
                              late: bool = False, holder_close_seconds: float = 0.0,
                              stallers_heads_after: float = 0.0, slow_holder_streams: int = 0,
                              stallers_leave_after: float | None = None,
                              unreachable_after: float | None = None) -> Started:
    """A node restored from an older copy (it holds the org's first record of three; the holder holds all) starts
    with `stallers` connected (StallingStream) and `inbound_stallers` streams open to it (InboundStaller), and runs
    on for a while after its catch-up; `before_holder_round(sync)` is called once the holder is connected, before
    sync hears of it; `late`, a catch-up that signs unchecked goes on as serve_node's does (_catch_up_late), and
    `late_state` is the node's startup_sync after the while; closing a stream to the holder takes
    `holder_close_seconds`; stallers naming OTHER answer our heads request `stallers_heads_after` seconds in; the first
    `slow_holder_streams` streams opened to the holder are slow (SlowServedStream); the node dials the stallers no
    more `stallers_leave_after` seconds in, and can connect none it dials `unreachable_after` seconds in
    (PeerManager)."""
    ours = Org()
    records = [ours.record("org"), ours.record(), ours.record()]
    (tmp_path / "holder").mkdir()
    (tmp_path / "node").mkdir()
    with RecordStore.open(tmp_path / "holder") as held, RecordStore.open(tmp_path / "node") as store:
        held.append(records)
        store.append(records[:1])
        network = Network(SyncServer(held, IssuerIndex(held), SyncLimits()), stallers=stallers,
                          stallers_name_other=stallers_name_other)
        network.holder_close_seconds = holder_close_seconds
        network.stallers_heads_after = stallers_heads_after
        network.slow_holder_streams = slow_holder_streams
        replica = Replica(ours.key, store, roots=(OTHER.did,), max_hops=1, held_limit=10)
        sync = SyncService(network, replica, network="test", timeout=TIMEOUT,  # type: ignore[arg-type]
                           max_sessions=SLOTS)
        node = SimpleNamespace(
            did=ours.did, host=network, replica=replica, sync=sync, gossip=IdleGossip(),
            peer_manager=PeerManager(network, kept, inbound_stallers,
                                     before_holder_round and (lambda: before_holder_round(sync)), stallers_leave_after,
                                     unreachable_after),
            config=SimpleNamespace(startup_sync_seconds=startup_sync_seconds, data_dir=tmp_path / "node"))
        async with trio.open_nursery() as nursery:
            caught_up = await _caught_up(node, nursery, signs_timed_out=False)  # type: ignore[arg-type]
            started = Started(caught_up, trio.current_time(), sync, network, store.head(ours.did).seq)
            node.startup_sync = caught_up.state
            if late and caught_up.signs_unchecked:
                nursery.start_soon(_catch_up_late, node, caught_up.new_org)
            await trio.sleep(SLOTS * TIMEOUT)  # the stallers and periodic rounds go on
            started.late_state = node.startup_sync
            nursery.cancel_scope.cancel()
        return started



async def test_stallers_that_dialled_in_do_not_delay_the_catch_up_round_with_the_holder(tmp_path, autojump_clock):
    """Found by stop 32: eight peers answering just inside the timeout held every session slot for 10 minutes, and the
    catch-up round with the one peer holding the org's records waited behind them: the node timed out and would sign
    at seq 2, which the org had used."""
    start = await restored_node_start(tmp_path, kept={HOLDER}, startup_sync_seconds=STARTUP_SYNC_SECONDS)
    assert (start.caught_up.state, start.head) == ("done", 3)
    assert start.ended < 2  # the holder dialled at 1 s, its round at once
    assert start.sync.stats.errors["preempted"] == 1  # one staller's session ended for it, and no other session
    assert start.network.most_open <= SLOTS  # the sessions open at once stay bounded


async def test_stallers_the_node_dials_delay_the_catch_up_round_with_the_holder_by_one_turn_at_most(
        tmp_path, autojump_clock):
    """Bootstrap addresses taken over (or fresh keys an org inside the horizon gave `org` records): their rounds are
    ones the catch-up needs as much as the holder's, so the holder's waits until the oldest has had a turn of the
    sync timeout, not for its whole session. (Once the holder's round proved the records in, the catch-up waits up to
    SETTLE_SECONDS more for the other rounds under way with peers it dials, these stallers': node.daemon.)"""
    start = await restored_node_start(tmp_path, kept={HOLDER, *STALLERS}, startup_sync_seconds=3 * TIMEOUT)
    assert (start.caught_up.state, start.head) == ("done", 3)
    assert start.ended <= TIMEOUT + SETTLE_SECONDS + 1
    assert start.network.most_open <= SLOTS


async def test_more_stallers_the_node_dials_than_slots_delay_the_catch_up_round_with_the_holder_by_turns_alone(
        tmp_path, autojump_clock):
    """Found by rva37: twice as many stallers the node dials as slots, the holder's round waiting behind eight of them,
    which take the slots as the first turns end (10 s): the holder's round waited for one of their whole sessions (10
    minutes), or until a periodic round asked for a slot (22.5 to 37.5 s), and the node timed out. Every slot held
    was ended as it looked, so it had no turn to wait for, and nothing woke it as those slots were handed on. It ends
    one as their turns are up (20 s)."""
    stallers = [f"12D3KooWStaller{i}" for i in range(2 * SLOTS)]
    start = await restored_node_start(tmp_path, kept={HOLDER, *stallers}, startup_sync_seconds=3 * TIMEOUT,
                                      stallers=stallers)
    assert (start.caught_up.state, start.head) == ("done", 3)
    assert start.ended <= 2 * TIMEOUT + SETTLE_SECONDS + 1


async def test_stallers_the_node_dials_whose_heads_named_none_of_the_org_s_keys_do_not_delay_it(
        tmp_path, autojump_clock):
    """Their heads, read, showed they hold none of the org's records: the rest of their rounds is nothing the
    catch-up needs, and the holder's round ends one of them at once, not after a turn."""
    start = await restored_node_start(tmp_path, kept={HOLDER, *STALLERS}, startup_sync_seconds=STARTUP_SYNC_SECONDS,
                                      stallers_name_other=True)
    assert (start.caught_up.state, start.head) == ("done", 3)
    assert start.ended < 2


async def test_a_catch_up_whose_peers_answered_holding_none_of_the_org_s_records_then_were_out_of_reach_is_unheld(
        tmp_path, autojump_clock):
    """The peers the node dials answered that they hold none of the org's records, then none could be connected in
    time (they left, say, their dials refused since): the start says "unheld", as their answers showed, with the hint
    to bootstrap a node whose org vouches for this one, not "unreachable", as if none had ever been reached."""
    start = await restored_node_start(tmp_path, kept=set(STALLERS), startup_sync_seconds=3 * TIMEOUT,
                                      stallers_name_other=True, unreachable_after=2)
    assert (start.caught_up.state, start.caught_up.unproven, start.caught_up.unreachable) == ("unheld", SLOTS, ())
    assert start.ended == 2


async def test_peers_stalling_on_their_own_sync_streams_to_the_node_do_not_delay_the_catch_up(
        tmp_path, autojump_clock):
    """Inbound streams hold none of the session slots, and a request holds one of `max_inbound` only while it is
    answered, not while its peer is slow to send or read: stalling peers holding every inbound stream the node
    allows, each stream's answers read just in time, leave the catch-up round with the holder as quick as without."""
    streams = 16 + MAX_COSIGNATURES  # SyncService's max_inbound_streams
    start = await restored_node_start(tmp_path, kept={HOLDER}, startup_sync_seconds=STARTUP_SYNC_SECONDS,
                                      stallers=[], inbound_stallers=streams + 1)
    assert (start.caught_up.state, start.head) == ("done", 3)
    assert start.ended < 2
    assert start.sync.stats.served_errors["busy"] == 1  # (every stream taken, the last staller was refused)


async def test_a_gap_fetch_from_the_holder_waiting_for_a_slot_does_not_hold_back_the_catch_up_round_with_it(
        tmp_path, autojump_clock):
    """Found by stop 33's review: gossip from the holder, connected a moment before sync heard of it, reported gaps;
    their fetch took the holder's turn, then waited for a slot (a session the catch-up does not need, behind the
    stallers' 10-minute sessions), and the catch-up round with the holder waited for that turn, not for a slot, so
    ended no staller's session: the node timed out. A fetch of gaps takes its slot before the peer's turn."""
    start = await restored_node_start(
        tmp_path, kept={HOLDER}, startup_sync_seconds=STARTUP_SYNC_SECONDS,
        before_holder_round=lambda sync: sync.request_gaps(HOLDER, {OTHER.did: (1, 5)}))
    assert (start.caught_up.state, start.head) == ("done", 3)
    assert start.ended < 2
    assert start.network.most_open <= SLOTS


async def test_a_gap_fetch_holding_the_holder_s_turn_is_ended_for_the_catch_up_round_with_it(tmp_path, autojump_clock):
    """Gossip from the holder, connected a moment before sync heard of it, reported gaps, and their fetch took the
    holder's turn before the catch-up round with it could; over a slow link (each answer read just inside the timeout)
    it held the turn past startup_sync_seconds, the round waiting for it, and the node timed out. A round a catch-up
    needs ends the fetches of gaps with its peer holding its turn or waiting for it."""
    start = await restored_node_start(
        tmp_path, kept={HOLDER}, startup_sync_seconds=STARTUP_SYNC_SECONDS, stallers=[], slow_holder_streams=1,
        before_holder_round=lambda sync: sync.request_gaps(HOLDER, {OTHER.did: (1, 5)}))
    assert (start.caught_up.state, start.head) == ("done", 3)
    assert start.ended < 2
    assert start.sync.stats.errors["preempted"] == 1


async def test_the_late_catch_up_s_rounds_end_no_other_session(tmp_path, autojump_clock):
    """A start that timed out signs, and its catch-up goes on (_catch_up_late), perhaps for the node's whole life: its
    rounds take slots first come, first served, ending no other session (a gap fetch, a round with a peer that
    dialled in) for one; here the holder's waits behind the stallers' sessions."""
    start = await restored_node_start(tmp_path, kept={HOLDER}, startup_sync_seconds=0.5, late=True)
    assert start.caught_up.state == "timed_out"  # (the holder is dialled at 1 s)
    assert start.sync.stats.errors["preempted"] == 0
    assert start.late_state == "timed_out"  # the stallers' sessions outlast the while


async def test_stallers_the_node_dials_are_ended_as_soon_as_their_heads_name_none_of_the_org_s_keys(
        tmp_path, autojump_clock):
    """Known and left by stop 33: the stallers, peers the node dials, held every slot, and the holder's round waited;
    their heads, read 3 s in, showed they hold none of the org's records, but the round waiting noticed only when the
    oldest staller's turn was up (10 s). It ends one at once (SyncService.needs_changed)."""
    start = await restored_node_start(tmp_path, kept={HOLDER, *STALLERS}, startup_sync_seconds=3 * TIMEOUT,
                                      stallers_name_other=True, stallers_heads_after=3)
    assert (start.caught_up.state, start.head) == ("done", 3)
    assert start.ended < 4
    assert start.sync.stats.errors["preempted"] == 1


async def test_stallers_the_node_no_longer_dials_are_ended_at_once_for_the_round_with_the_holder(
        tmp_path, autojump_clock):
    """Known and left by stop 34: the stallers, peers the node dialled, held every slot, and the holder's round waited;
    3 s in, the node dialled them no more, but the round waiting noticed only when the oldest staller's turn was up
    (10 s). It ends one at once (PeerManager.keeps_listeners, SyncService.needs_changed)."""
    start = await restored_node_start(tmp_path, kept={HOLDER, *STALLERS}, startup_sync_seconds=3 * TIMEOUT,
                                      stallers_leave_after=3)
    assert (start.caught_up.state, start.head) == ("done", 3)
    assert start.ended < 4
    assert start.sync.stats.errors["preempted"] == 1


async def test_the_catch_up_waits_no_more_for_the_rounds_of_peers_the_node_no_longer_dials(tmp_path, autojump_clock):
    """The holder's round proved the org's records in 1 s in, and the catch-up waited for the rounds under way with
    the two stallers, peers it dialled, to answer (up to SETTLE_SECONDS); 2 s in, the node dialled them no more, but
    the wait went on to its end. It ends then."""
    start = await restored_node_start(tmp_path, kept={HOLDER, *STALLERS[:2]}, startup_sync_seconds=3 * TIMEOUT,
                                      stallers=STALLERS[:2], stallers_leave_after=2)
    assert (start.caught_up.state, start.head) == ("done", 3)
    assert start.ended < 3


async def _a_round_waiting_behind_another(*, holder_after: bool, waiter_after: bool) -> tuple[str, float]:
    """A needed round holds the only slot for 2 turns, and another needed one asks for it 1 s later; 3 s in, they are
    needed or not as `holder_after` and `waiter_after` say, and the slots are told (needs_changed). How the holder's
    session ended, and when the other got the slot."""
    slots = SessionSlots(1, least_turn=TIMEOUT)
    needed = {"holder": True, "waiter": True}
    holder_end: list[str] = []
    got: list[float] = []

    async def holder() -> None:
        async with held(slots, lambda: needed["holder"]) as slot:
            with slot.scope:
                await trio.sleep(2 * TIMEOUT)
            holder_end.append("ended" if slot.ended else "done")

    async def waiter() -> None:
        async with held(slots, lambda: needed["waiter"]):
            got.append(trio.current_time())

    with trio.fail_after(10 * TIMEOUT):  # (a slot never handed: no deadline left for the mock clock to jump to)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder)
            await trio.sleep(1)
            nursery.start_soon(waiter)
            await trio.sleep(2)
            needed.update(holder=holder_after, waiter=waiter_after)
            slots.needs_changed()
    return holder_end[0], got[0]


async def test_a_needed_session_waiting_ends_a_holder_as_soon_as_it_is_no_longer_needed(autojump_clock):
    """A holder's peer turned out to hold none of the org's records 3 s in: the round waiting ends it then, not when
    its turn is up (10 s)."""
    assert await _a_round_waiting_behind_another(holder_after=False, waiter_after=True) == ("ended", 3)


async def test_a_round_waiting_that_is_no_longer_needed_ends_no_session(autojump_clock):
    """The catch-up ended 3 s in while a round it needed waited: the holder is no longer needed, nor the round
    waiting, which ends nothing (neither at once nor at the holder's turn) and takes the slot as the holder is done."""
    assert await _a_round_waiting_behind_another(holder_after=False, waiter_after=False) == ("done", 2 * TIMEOUT)


async def test_a_round_the_catch_up_needed_waiting_as_it_ends_ends_no_session(tmp_path, autojump_clock):
    """The catch-up ended 2 s in while the holder's round, which it needed, waited for the only slot behind a
    staller's, a peer it dials, within that one's turn: no longer needed, the holder's round ends nothing at the
    staller's turn (10 s), and waits as any other would (node.daemon tells SyncService.needs_changed)."""
    staller = STALLERS[0]
    with RecordStore.open(tmp_path) as store:
        network = Network(SyncServer(store, IssuerIndex(store), SyncLimits()), stallers=[staller],
                          stallers_name_other=False)
        replica = Replica(Org().key, store, roots=(OTHER.did,), max_hops=1, held_limit=10)
        sync = SyncService(network, replica, network="test", timeout=TIMEOUT,  # type: ignore[arg-type]
                           max_sessions=1)
        node = SimpleNamespace(sync=sync, replica=replica, peer_manager=SimpleNamespace(
            keeps={staller, HOLDER}.__contains__, keeps_listeners=[]))
        async with trio.open_nursery() as nursery:
            with _dialled_rounds(node, new_org=False):  # type: ignore[arg-type]
                await nursery.start(sync.run)  # the staller's round
                await trio.testing.wait_all_tasks_blocked()
                network._peers.append(HOLDER)
                nursery.start_soon(sync.sync_with, HOLDER)
                await trio.sleep(2)
            await trio.sleep(1.5 * TIMEOUT)
            assert sync.stats.errors["preempted"] == 0
            assert sync.round_running(staller) and sync.round_running(HOLDER)  # (the holder's still waiting)
            nursery.cancel_scope.cancel()


async def test_a_peer_whose_round_proved_the_org_s_records_in_has_no_round_each_time_it_connects_again(
        tmp_path, autojump_clock):
    """Noticed by sync36: a peer the node dials stayed one whose round the catch-up needs until the catch-up ended,
    even once its round had proved the org's records in; that round failing as the connection dropped, the peer had a
    round at once each time it connected again (a round the catch-up needs, ending other sessions for a slot). Its
    round having answered, it is needed no more: connected again within the sync interval, it has none."""
    with _a_node_lacking_its_org_s_record(tmp_path, stallers=[], max_sessions=1, other_s_record=True) as started:
        sync, network, store, ours = started
        network.first_holder_streams.append(functools.partial(PastTheOrgsRecordsStream, drops=True))
        node = SimpleNamespace(sync=sync, replica=sync.replica, peer_manager=SimpleNamespace(
            keeps={HOLDER}.__contains__, keeps_listeners=[]))
        rounds_over: list[str] = []
        sync.round_over_listeners.append(rounds_over.append)
        async with trio.open_nursery() as nursery:
            with _dialled_rounds(node, new_org=False) as rounds:  # type: ignore[arg-type]
                await nursery.start(sync.run)
                await network.connect_holder()
                await trio.testing.wait_all_tasks_blocked()
                assert rounds.proved.is_set() and store.head(ours.did) is not None
                assert rounds_over == [HOLDER] and sync.stats.errors["stream"] == 1  # (dropped after the proof)
                await network.disconnect_holder()
                await network.connect_holder()
                await trio.testing.wait_all_tasks_blocked()
                assert rounds_over == [HOLDER]
                assert trio.current_time() < sync.interval * 0.75  # (before any periodic round)
            nursery.cancel_scope.cancel()


async def test_the_rest_of_a_round_that_proved_the_org_s_records_in_makes_way_for_another_peer_it_dials(
        tmp_path, autojump_clock):
    """Once the holder's round has proved the org's records in, the catch-up waits up to SETTLE_SECONDS for the
    rounds of the other peers it dials, a holder naming a newer head among them, say; one waiting for the only slot
    waited behind the rest of the holder's round, counted needed still, for its turn (10 s), past the settling. It
    ends the rest of that round at once."""
    staller = STALLERS[0]
    with _a_node_lacking_its_org_s_record(tmp_path, stallers=[], max_sessions=1, other_s_record=True) as started:
        sync, network, store, ours = started
        network.first_holder_streams.append(functools.partial(PastTheOrgsRecordsStream, drops=False))
        node = SimpleNamespace(sync=sync, replica=sync.replica, peer_manager=SimpleNamespace(
            keeps={HOLDER, staller}.__contains__, keeps_listeners=[]))
        rounds_over: list[str] = []
        sync.round_over_listeners.append(rounds_over.append)
        async with trio.open_nursery() as nursery:
            with _dialled_rounds(node, new_org=False) as rounds:  # type: ignore[arg-type]
                await nursery.start(sync.run)
                await network.connect_holder()  # its round: the slot, the org's record in at once, the rest slow
                await trio.testing.wait_all_tasks_blocked()
                assert rounds.proved.is_set() and rounds_over == []
                network._peers.append(staller)
                nursery.start_soon(sync.sync_with, staller)
                await trio.sleep(1)
                assert rounds_over == [HOLDER] and sync.stats.errors["preempted"] == 1
                assert sync.round_running(staller) and network.open_now == 1  # the staller's round has the slot
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("begun_as_the_start_s_waited", [False, True])
async def test_a_holder_the_node_comes_to_dial_during_its_round_does_not_turn_the_late_catch_up_unheld(
        begun_as_the_start_s_waited, tmp_path, autojump_clock):
    """Asked by stop 38: a round that ran to the end counted its peer, one the node dials, among those that proved
    nothing (`unproven`), though it had brought the org's records in. A holder that dialled in, whose round brought them
    in, and which the node came to dial before that round ended (its org's `org` record, brought in by the round,
    names it: peer exchange), turned a timed-out start's catch-up "unheld", logged as a peer holding none of the org's
    records, where it waits on for a round with a peer it dials to prove them in. Found by stop 39's review: so did
    one whose round brought them in while the start's catch-up waited, and that the node came to dial only after that
    catch-up timed out (the round's rest still coming: a node far behind), the late catch-up not having heard it."""
    with _a_node_lacking_its_org_s_record(tmp_path, stallers=[], max_sessions=1, other_s_record=True) as started:
        sync, network, store, ours = started
        network.first_holder_streams.append(functools.partial(PastTheOrgsRecordsStream, drops=False))
        kept: set[str] = set()
        node = SimpleNamespace(sync=sync, replica=sync.replica, host=network, startup_sync="timed_out",
                               peer_manager=SimpleNamespace(keeps=kept.__contains__, keeps_listeners=[]))
        over = _holder_s_round_over(sync)
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            if not begun_as_the_start_s_waited:
                nursery.start_soon(_catch_up_late, node, False)
            with _dialled_rounds(node, new_org=False) if begun_as_the_start_s_waited else nullcontext():  # type: ignore
                await network.connect_holder()  # its round: the org's record in at once, the rest slow
                await trio.testing.wait_all_tasks_blocked()
                assert store.head(ours.did) is not None and sync.round_running(HOLDER)
            if begun_as_the_start_s_waited:  # the start's catch-up timed out: no peer it dials had answered
                nursery.start_soon(_catch_up_late, node, False)
                await trio.testing.wait_all_tasks_blocked()
            kept.add(HOLDER)
            for listener in node.peer_manager.keeps_listeners:
                listener()
            with trio.fail_after(10 * TIMEOUT):
                await over.wait()
            assert sync.stats.full_rounds == 1
            assert node.startup_sync == "timed_out"
            nursery.cancel_scope.cancel()


def test_a_holder_s_earlier_round_does_not_keep_a_later_one_that_proved_nothing_from_counting_unproven():
    """A peer that held the org's records in one round (it dialled in, not dialled then) and that the node came to
    dial, whose next round ran to its end without proving them in (a head it named and did not serve), counts among
    those that proved nothing: only the round under way that held them keeps its peer out (SyncService's listeners,
    told in a round's order: its holder listeners mid-round, then same-network ones as it ran to its end, then
    round-over ones however it ended; round_held_own meanwhile)."""
    kept: set[str] = set()
    holding: set[str] = set()
    sync = SimpleNamespace(same_network_listeners=[], round_over_listeners=[], holder_listeners=[],
                           unheld_listeners=[], catch_up_peers=[], needs_changed=lambda: None,
                           round_held_own=holding.__contains__)
    node = SimpleNamespace(sync=sync, replica=SimpleNamespace(taken_back=None),
                           peer_manager=SimpleNamespace(keeps=kept.__contains__, keeps_listeners=[]))

    def a_round(*, holds: bool) -> None:
        if holds:
            holding.add(HOLDER)
        for listener in [*(sync.holder_listeners if holds else ()), *sync.same_network_listeners]:
            listener(HOLDER)
        holding.discard(HOLDER)
        for listener in sync.round_over_listeners:
            listener(HOLDER)

    with _dialled_rounds(node, new_org=False) as rounds:  # type: ignore[arg-type]
        a_round(holds=True)
        kept.add(HOLDER)
        a_round(holds=False)
        assert rounds.unproven == {HOLDER} and not rounds.proved.is_set()


async def test_a_needed_session_that_stops_waiting_leaves_the_slot_to_the_next_one_waiting(autojump_clock):
    """A catch-up that ends (or a node that stops) while its round waits for a slot held by another needed session,
    within its turn: nothing is ended for it, and the slot goes on to the session waiting after it."""
    slots = SessionSlots(1, least_turn=TIMEOUT)
    order: list[str] = []

    async def session(name: str, needed: bool, seconds: float) -> None:
        async with held(slots, lambda: needed) as slot:
            order.append(name)
            with slot.scope:
                await trio.sleep(seconds)
            order.append(f"{name} {'ended' if slot.ended else 'done'}")

    with trio.fail_after(10 * TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session, "first round", True, 2 * TIMEOUT)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(session, "gap fetch", False, 1)
            with trio.move_on_after(TIMEOUT / 2):
                await session("second round", True, 1)
    assert order == ["first round", "first round done", "gap fetch", "gap fetch done"]


@contextmanager
def _a_node_lacking_its_org_s_record(
        tmp_path: Path, *, stallers: list[str], max_sessions: int, other_s_record: bool = False,
) -> Iterator[tuple[SyncService, Network, RecordStore, Org]]:
    """A node's sync (not yet running), `stallers` connected; the holder, once connected, holds its org's `org`
    record, which the node lacks, and, if `other_s_record`, OTHER's first (a round's rest, once the org's is in: one
    record, its page decoded on the event loop, not a worker thread); and the node's store."""
    ours = Org()
    (tmp_path / "holder").mkdir()
    (tmp_path / "node").mkdir()
    with RecordStore.open(tmp_path / "holder") as held, RecordStore.open(tmp_path / "node") as store:
        held.append([ours.record("org"), *(OTHERS_RECORDS[:1] if other_s_record else ())])
        network = Network(SyncServer(held, IssuerIndex(held), SyncLimits()), stallers=stallers,
                          stallers_name_other=False)
        replica = Replica(ours.key, store, roots=(OTHER.did,), max_hops=1, held_limit=10)
        yield SyncService(network, replica, network="test", timeout=TIMEOUT,  # type: ignore[arg-type]
                          max_sessions=max_sessions), network, store, ours


async def test_a_gap_fetch_ended_while_it_waits_for_its_peer_s_turn_gives_its_slot_up_at_once(tmp_path, autojump_clock):
    """A fetch of gaps holds its slot while it waits (the sync timeout at most) for its peer's turn, here behind a
    staller's round, one the catch-up needs (a peer it dials): ended for the holder's round, it stops waiting then,
    not at the timeout, which would hold the catch-up back as long."""
    staller = STALLERS[0]
    with _a_node_lacking_its_org_s_record(tmp_path, stallers=[staller], max_sessions=2) as (sync, network, store, ours):
        sync.catch_up_peers.append(lambda peer: peer in (staller, HOLDER))
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)  # the staller's round: one slot, and the staller's turn
            await trio.testing.wait_all_tasks_blocked()
            sync.request_gaps(staller, {OTHER.did: (1, 5)})  # the other slot, waiting for the staller's turn
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(1)
            network._peers.append(HOLDER)
            with trio.fail_after(10 * TIMEOUT):  # (the mock clock's periodic rounds would jump on forever)
                await sync.sync_with(HOLDER)
            assert trio.current_time() < 2
            assert store.head(ours.did) is not None
            assert sync.stats.errors["preempted"] == 1
            nursery.cancel_scope.cancel()


def _holder_s_round_over(sync: SyncService) -> trio.Event:
    """Set as the next full round with the holder is over."""
    over = trio.Event()
    sync.round_over_listeners.append(lambda peer: peer == HOLDER and over.set())
    return over


async def _the_holder_s_round_behind_a_gap_fetch_holding_its_turn(tmp_path: Path, *, needed_later: bool) -> None:
    """A fetch of gaps holds the only slot and the holder's turn over a slow link, and a round with a peer that dialled
    in waits for the slot; then the holder's round, one the catch-up needs as it starts, or (`needed_later`) comes to
    need 1 s in, as the node comes to dial the holder (peer exchange), waits for the holder's turn. It ends the fetch
    within a second of being needed and takes the slot the fetch frees, ahead of the other round, which it does not
    end, and which takes the slot next."""
    staller = STALLERS[0]
    with _a_node_lacking_its_org_s_record(tmp_path, stallers=[], max_sessions=1) as (sync, network, store, ours):
        network.slow_holder_streams = 1
        dialled = set() if needed_later else {HOLDER}
        sync.catch_up_peers.append(dialled.__contains__)
        over = _holder_s_round_over(sync)
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            network._peers.append(HOLDER)
            sync.request_gaps(HOLDER, {OTHER.did: (1, 5)})  # the slot, and the holder's turn over a slow link
            await trio.testing.wait_all_tasks_blocked()
            network._peers.append(staller)
            nursery.start_soon(sync.sync_with, staller)  # waits for the slot
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(sync.sync_with, HOLDER)
            if needed_later:  # (it waits for the holder's turn)
                await trio.sleep(1)
                dialled.add(HOLDER)
                sync.needs_changed()  # (PeerManager.keeps_listeners: node.daemon)
            needed = trio.current_time()
            with trio.fail_after(10 * TIMEOUT):  # (the mock clock's periodic rounds would jump on forever)
                await over.wait()
            assert trio.current_time() < needed + 1
            assert store.head(ours.did) is not None
            assert sync.stats.errors["preempted"] == 1  # the gap fetch
            await trio.testing.wait_all_tasks_blocked()
            assert sync.round_running(staller) and network.open_now == 1  # the staller's round has the slot now
            nursery.cancel_scope.cancel()


async def test_a_round_that_ends_a_gap_fetch_holding_its_peer_s_turn_takes_the_slot_it_frees(tmp_path, autojump_clock):
    """Found by stop 35: the holder's round, one the catch-up needs, ended the fetch of gaps holding the holder's turn
    and the only slot, but that slot went to a round waiting for it (with a peer that dialled in), and the holder's
    round, still with no slot, ended that one too: two sessions preempted where one would do. The slot a session ended
    for a needed round frees goes to that round; the other waits on, not ended."""
    await _the_holder_s_round_behind_a_gap_fetch_holding_its_turn(tmp_path, needed_later=False)


async def test_a_round_the_catch_up_comes_to_need_ends_the_gap_fetch_holding_its_peer_s_turn(tmp_path, autojump_clock):
    """Noticed by sync36: the holder's round, one no catch-up needed as it started, waited for the holder's turn, which
    a fetch of gaps held over a slow link (up to a session's bound, 10 minutes); the node came to dial the holder (peer
    exchange), and the catch-up needed that round, but it went on waiting for the fetch. It ends the fetch then, and
    takes the slot the fetch frees, as one needed from the start does (one session preempted, not two)."""
    await _the_holder_s_round_behind_a_gap_fetch_holding_its_turn(tmp_path, needed_later=True)


async def test_a_round_the_catch_up_comes_to_need_as_it_holds_its_peer_s_turn_takes_a_slot_at_once(
        tmp_path, autojump_clock):
    """Asked by stop 37: the holder's round, one no catch-up needed as it started, took the holder's turn as a fetch of
    gaps over a slow link gave it up, and waited for one of the two slots, held by a round with a peer that dialled in
    and by a second fetch of gaps waiting for that turn (up to the sync timeout); the node came to dial the holder.
    The round, needed then, names no session in its way, but a session no catch-up needs holds a slot: it ends the
    one holding its slot longest (the second fetch, here) and takes that slot at once, not as the fetch gives up."""
    staller = STALLERS[0]
    with _a_node_lacking_its_org_s_record(tmp_path, stallers=[], max_sessions=2, other_s_record=True) as started:
        sync, network, store, ours = started
        network.slow_holder_streams = 1
        dialled: set[str] = set()
        sync.catch_up_peers.append(dialled.__contains__)
        over = _holder_s_round_over(sync)
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            network._peers.append(HOLDER)
            sync.request_gaps(HOLDER, {OTHER.did: (1, 5)})  # a slot, and the holder's turn over a slow link (9 s)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(sync.sync_with, HOLDER)  # waits for the turn
            await trio.sleep(5)
            sync.request_gaps(HOLDER, {ours.did: (1, 1)})  # the other slot, waiting for the turn until 15 s
            await trio.testing.wait_all_tasks_blocked()
            network._peers.append(staller)
            nursery.start_soon(sync.sync_with, staller)  # waits for a slot, and takes the first fetch's at 9 s
            await trio.sleep(5)  # the holder's round holds the turn, and waits for a slot
            assert sync.round_running(staller) and network.open_now == 1 and not over.is_set()
            dialled.add(HOLDER)
            sync.needs_changed()  # (PeerManager.keeps_listeners: node.daemon)
            needed = trio.current_time()
            with trio.fail_after(10 * TIMEOUT):
                await over.wait()
            assert trio.current_time() < needed + 1
            assert store.head(ours.did) is not None
            assert sync.stats.errors["preempted"] == 1 and sync.stats.errors["turn"] == 0  # the second fetch
            assert sync.round_running(staller)
            nursery.cancel_scope.cancel()


async def test_a_needed_session_takes_the_slot_of_the_session_it_ends_in_its_way_ahead_of_those_waiting(
        autojump_clock):
    """The slots' side of the round above: a needed session naming a session in its way to end (a fetch of gaps
    holding its peer's turn) takes the slot that one frees, ahead of a session waiting before it, which it leaves
    waiting, not ended, and which takes the slot next."""
    slots = SessionSlots(1, least_turn=TIMEOUT)
    order: list[str] = []
    holding: dict[str, Slot] = {}

    async def session(name: str, seconds: float) -> None:
        async with held(slots, lambda: False) as slot:
            order.append(name)
            holding[name] = slot
            with slot.scope:
                await trio.sleep(seconds)
            order.append(f"{name} {'ended' if slot.ended else 'done'}")

    with trio.fail_after(10 * TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session, "gap fetch", 2 * TIMEOUT)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(session, "other round", 1)
            await trio.testing.wait_all_tasks_blocked()
            with slots.queued(lambda: True, ending=[holding["gap fetch"]]) as place:
                slot = await slots.taken(place)
                order.append("needed round")
                assert not slot.ended
    assert order == ["gap fetch", "gap fetch ended", "needed round", "other round", "other round done"]


@pytest.mark.parametrize("needed", [True, False])
async def test_a_round_waiting_for_its_peer_s_turn_stops_as_its_peer_leaves(tmp_path, autojump_clock, needed):
    """Asked by stop 38: the holder's round waited for the holder's turn, held by a fetch of gaps over a slow link (one
    the catch-up needs ended it, and the fetch's stream then took the sync timeout to reset, shielded: gossip.host
    quirk 61), and went on waiting after the holder disconnected; given the turn, and the slot the fetch freed, it
    failed to open its stream: a slot taken for nothing, and the catch-up's next round with the holder, connected
    again, behind it. It stops waiting as its peer leaves (counted as a stream that would not open), taking no slot."""
    with _a_node_lacking_its_org_s_record(tmp_path, stallers=[], max_sessions=1) as (sync, network, store, ours):
        network.slow_holder_streams, network.holder_reset_seconds = 1, TIMEOUT
        sync.catch_up_peers.append(lambda peer: needed and peer == HOLDER)
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            network._peers.append(HOLDER)
            sync.request_gaps(HOLDER, {OTHER.did: (1, 5)})  # the slot, and the holder's turn over a slow link
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(sync.sync_with, HOLDER)  # (needed, it ends the fetch) waits for the turn
            await trio.sleep(1)
            assert sync.round_running(HOLDER) and network.open_now == 1  # (the fetch's stream, slow or resetting)
            await network.disconnect_holder()
            await trio.testing.wait_all_tasks_blocked()
            assert trio.current_time() < 2
            assert not sync.round_running(HOLDER) and sync.stats.errors["stream"] == 1
            nursery.cancel_scope.cancel()


async def test_a_round_waiting_for_a_slot_stops_as_its_peer_leaves_and_runs_again_once_it_is_back(
        tmp_path, autojump_clock):
    """Noticed by sync36: the holder's round, one the catch-up needs, waited for the only slot behind a staller's (a
    peer the node dials) within its turn; the holder disconnected meanwhile, yet the round waited on, and, handed the
    slot (as the staller's turn was up, ending it, or its session reached its bound), failed to open its stream: a slot
    taken for nothing, and a session preempted for it. It stops waiting as its peer leaves (counted as a stream that
    would not open), ending no session and taking no slot; connected again within the sync interval of that round's
    start, the holder has a round at once (noticed by syncb36: none began, and the catch-up waited for a periodic round
    to pick the holder, or timed out), which ends the staller's session."""
    async with _the_holder_away_as_its_round_waits_for_the_slot(tmp_path) as (sync, network, store, ours):
        await trio.testing.wait_all_tasks_blocked()
        assert not sync.round_running(HOLDER) and sync.stats.errors["stream"] == 1
        await trio.sleep(1.5 * TIMEOUT)
        assert sync.stats.errors["preempted"] == 0 and sync.round_running(STALLERS[0])
        assert trio.current_time() < sync.interval * 0.75  # (before any periodic round)
        await _the_holder_s_round_comes_at_once_as_it_is_back(sync, network, store, ours)
        assert sync.stats.errors["preempted"] == 1  # the staller's


async def test_a_round_waiting_for_a_slot_whose_peer_came_back_before_sync_heard_it_leave_waits_on(
        tmp_path, autojump_clock):
    """The holder leaves and connects again before sync reads that it left (its events read late, or told as changes
    by a feed that fell behind: gossip.peer_feed): its round, waiting for the only slot behind a staller's, waits on,
    its peer being there, and takes the slot as the staller's turn is up, where failing it (a stream that would not
    open) would leave the catch-up to the next round, the one its coming starts, if that comes after it failed."""
    async with _the_holder_away_as_its_round_waits_for_the_slot(tmp_path, back_before_heard=True) as (
            sync, network, store, ours):
        with trio.fail_after(2 * TIMEOUT):
            await _holder_s_round_over(sync).wait()
        assert store.head(ours.did) is not None
        assert (sync.stats.errors["stream"], sync.stats.errors["preempted"]) == (0, 1)  # (the staller's)


@asynccontextmanager
async def _the_holder_away_as_its_round_waits_for_the_slot(
        tmp_path: Path, *, back_before_heard: bool = False,
) -> AsyncIterator[tuple[SyncService, Network, RecordStore, Org]]:
    """The holder's round, one the catch-up needs, waits for the only slot behind a staller's (a peer the node dials);
    the holder disconnects 1 s later (`back_before_heard`: and connects again as sync reads that it left). Sync runs
    while in the block."""
    staller = STALLERS[0]
    with _a_node_lacking_its_org_s_record(tmp_path, stallers=[staller], max_sessions=1) as (sync, network, store, ours):
        sync.catch_up_peers.append(lambda peer: peer in (staller, HOLDER))
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)  # the staller's round: the slot
            await trio.testing.wait_all_tasks_blocked()
            await network.connect_holder()  # its round waits for the slot
            await trio.sleep(1)
            if back_before_heard:
                for connected in (False, True):
                    await network._events_send.send(PeerEvent(HOLDER, connected=connected))
            else:
                await network.disconnect_holder()
            yield sync, network, store, ours
            nursery.cancel_scope.cancel()


async def _the_holder_s_round_comes_at_once_as_it_is_back(sync: SyncService, network: Network, store: RecordStore,
                                                          ours: Org) -> None:
    """The holder connects again, and a round with it brings in the org's record within a second."""
    over = _holder_s_round_over(sync)
    back = trio.current_time()
    await network.connect_holder()
    with trio.fail_after(10 * TIMEOUT):
        await over.wait()
    assert trio.current_time() < back + 1
    assert store.head(ours.did) is not None


async def test_the_holder_s_round_proves_the_records_in_before_its_stream_is_closed(tmp_path, autojump_clock):
    """Closing a stream waits on the connection (a FIN queued behind a full send buffer), and a round ended for a
    needed one is cancelled while it closes: the holder's round told the catch-up it held the org's records only once
    its stream was closed, and the node timed out with the records in."""
    start = await restored_node_start(tmp_path, kept={HOLDER}, startup_sync_seconds=STARTUP_SYNC_SECONDS,
                                      stallers=[], holder_close_seconds=2 * TIMEOUT)
    assert (start.caught_up.state, start.head) == ("done", 3)
    assert start.ended < 2


class StepLimit(trio.abc.Instrument):
    """Cancels `scope` after `steps` task steps: a loop that never blocks would otherwise hang a test on the mock
    clock, which moves only once every task waits."""

    def __init__(self, scope: trio.CancelScope, steps: int) -> None:
        self.scope, self.steps = scope, steps

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps -= 1
        if self.steps < 0:
            self.scope.cancel()


async def test_a_needed_session_ends_another_when_its_turn_is_up_whatever_the_clock_s_rounding(autojump_clock):
    """Taken at 0.7 s with a turn of 0.1 s, a needed session's turn is up at 0.7 + 0.1 = 0.7999999999999999, when
    now - 0.7 is still below 0.1: the one waiting woke, found nothing to end and woke again at once, in a loop that
    never blocked (a core spun; on the mock clock, time stood still)."""
    slots = SessionSlots(1, least_turn=0.1)
    ended: list[bool] = []

    async def first_round() -> None:
        async with held(slots, lambda: True) as slot:
            with slot.scope:
                await trio.sleep(10)
            ended.append(slot.ended)

    with trio.CancelScope() as limit:
        instrument = StepLimit(limit, 1000)
        trio.lowlevel.add_instrument(instrument)
        try:
            with trio.fail_after(10 * TIMEOUT):
                async with trio.open_nursery() as nursery:
                    await trio.sleep(0.7)
                    nursery.start_soon(first_round)
                    await trio.testing.wait_all_tasks_blocked()
                    async with held(slots, lambda: True):
                        assert trio.current_time() < 0.8
        finally:
            trio.lowlevel.remove_instrument(instrument)
    assert not limit.cancelled_caught
    assert ended == [True]


@dataclass(frozen=True)
class Asking:
    """A session of the property test below: it asks `at` seconds in, for one of two peers, needed or not (a gap
    fetch, then, which a needed one with its peer names in its way as it asks; or, `needed_after` given, a round that
    comes to be needed that many seconds after it asked, as the node comes to dial its peer), gives up waiting after
    `patience` seconds if given, and holds its slot `seconds` unless ended."""

    at: int
    peer: int
    needed: bool
    seconds: int
    patience: int | None
    needed_after: int | None


ASKINGS = st.lists(st.builds(Asking, st.integers(0, 10), st.integers(0, 1), st.booleans(), st.integers(1, 30),
                             st.none() | st.integers(1, 20), st.none() | st.integers(0, 15)), max_size=10)


class NeededWaitingIdle(trio.abc.Instrument):
    """Notes, each time every task waits (none runnable), the slots held by sessions a needed one `waiting` may end:
    not needed, or past their turn (TIMEOUT). An ended session gives its slot back at once in the test below, so none
    is then coming to the needed ones."""

    def __init__(self) -> None:
        self.waiting: set[Place] = set()  # needed sessions waiting for a slot
        self.holding: set[Slot] = set()
        self.overdue: list[tuple[float, float, bool]] = []  # (when, held since, needed)

    def before_io_wait(self, timeout: float) -> None:
        if self.waiting and not trio.lowlevel.current_statistics().tasks_runnable:
            now = trio.current_time()
            self.overdue += [(now, slot.since, slot.needed()) for slot in self.holding
                             if not slot.ended and (not slot.needed() or slot.since + TIMEOUT < now)]


@given(st.integers(1, 3), ASKINGS)
@settings(max_examples=300)
def test_needed_sessions_end_one_session_each_at_most_besides_those_in_their_way(
        total: int, askings: list[Asking]) -> None:
    """However sessions come, wait, give up, come to be needed and end: never more than `total` hold slots; every one
    that does not give up gets one (none waits forever, none deadlocks); whenever every task waits, no needed one waits
    for a slot while a session it may end holds one (not needed, or past its turn): it waits no longer than a turn; and
    the sessions ended for the slot they hold, not named in a needed one's way, are no more than the needed ones that
    waited for a slot and named none (as they asked, or as they came to be needed while waiting: a needed one naming a
    session in its way takes the slot that one frees, or one a needed one ahead of it would have taken)."""
    slots = SessionSlots(total, least_turn=TIMEOUT)
    fetches: dict[int, set[Slot]] = {peer: set() for peer in range(2)}
    named: set[Slot] = set()  # ended by being named in a needed one's way
    needed = [asking.needed for asking in askings]
    waiting: dict[int, Place] = {}  # the places of those asking, by index, until handed a slot or given up
    counts = {"holding": 0, "most": 0, "ended": 0, "needed waiting, naming none": 0, "gave up": 0, "done": 0}
    idle = NeededWaitingIdle()

    async def comes_to_be_needed(index: int, after: int) -> None:
        await trio.sleep(askings[index].at + after)
        if not needed[index]:
            needed[index] = True
            if index in waiting and waiting[index].handed is None:
                counts["needed waiting, naming none"] += 1
                idle.waiting.add(waiting[index])
            slots.needs_changed()

    async def session(index: int, asking: Asking) -> None:
        await trio.sleep(asking.at)
        in_its_way = list(fetches[asking.peer]) if needed[index] else []  # (ended already or not, as SyncService's)
        ends = [slot for slot in in_its_way if not slot.ended]
        named.update(ends)
        with slots.queued(lambda: needed[index], ending=in_its_way) as place:
            if needed[index] and not ends and place.handed is None:
                counts["needed waiting, naming none"] += 1
            if needed[index]:
                idle.waiting.add(place)
            waiting[index] = place
            try:
                with trio.move_on_after(math.inf if asking.patience is None else asking.patience):
                    await slots.taken(place)
            finally:
                del waiting[index]
                idle.waiting.discard(place)
            slot = place.handed  # (handed as its patience ran out, it holds the slot)
            if slot is None:
                counts["gave up"] += 1
                return
            idle.holding.add(slot)
            counts["holding"] += 1
            counts["most"] = max(counts["most"], counts["holding"])
            if not asking.needed and asking.needed_after is None:
                fetches[asking.peer].add(slot)
            with slot.scope:
                await trio.sleep(asking.seconds)
            idle.holding.discard(slot)
            fetches[asking.peer].discard(slot)
            counts["holding"] -= 1
            counts["ended"] += slot.ended and slot not in named
            counts["done"] += 1

    async def main() -> None:
        with trio.fail_after(10_000):
            async with trio.open_nursery() as nursery:
                for index, asking in enumerate(askings):
                    nursery.start_soon(session, index, asking)
                    if asking.needed_after is not None:
                        nursery.start_soon(comes_to_be_needed, index, asking.needed_after)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0), instruments=[idle])
    assert not idle.overdue
    assert counts["most"] <= total
    assert counts["done"] + counts["gave up"] == len(askings)
    assert counts["ended"] <= counts["needed waiting, naming none"]


LEAVER = "12D3KooWLeaver"


async def _the_leaver_leaves_as_a_gap_fetch_from_it_waits(sync: SyncService, network: Network, nursery: trio.Nursery,
                                                          ours: Org, *, behind: str) -> None:
    """With the leaver and the holder connected, a round with `behind` (a staller: the leaver, or another) holds a
    slot and its peer's turn, and a fetch of the org's record, asked of the leaver, then the holder, waits behind it
    (for that turn, holding a slot of its own, or for the only slot); the leaver leaves 1 s later."""
    network._peers += [LEAVER, HOLDER, *{behind} - {LEAVER}]  # (no round with them but the one started here)
    nursery.start_soon(sync.sync_with, behind)
    await trio.testing.wait_all_tasks_blocked()
    sync.request_gaps(LEAVER, {ours.did: (1, 1)})
    await trio.testing.wait_all_tasks_blocked()
    await trio.sleep(1)
    await network.leave(LEAVER)
    await trio.testing.wait_all_tasks_blocked()


async def test_a_gap_fetch_waiting_for_its_peer_s_turn_asks_its_next_peer_as_soon_as_its_peer_leaves(
        tmp_path, autojump_clock):
    """Asked by stop 38: a fetch of gaps from the peer that reported them waited for that peer's turn, held by a round
    with it stalling (a peer that dialled in), and held its slot meanwhile; that peer disconnected, yet the fetch
    waited on until it gave up waiting (the sync timeout), then asked its next peer (the holder). It stops waiting as
    its peer leaves (counted as a stream that would not open), and asks the holder then."""
    with _a_node_lacking_its_org_s_record(tmp_path, stallers=[], max_sessions=2) as (sync, network, store, ours):
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            await _the_leaver_leaves_as_a_gap_fetch_from_it_waits(sync, network, nursery, ours, behind=LEAVER)
            assert trio.current_time() < 2
            assert store.head(ours.did) is not None
            assert (sync.stats.errors["stream"], sync.stats.errors["turn"]) == (1, 0)
            nursery.cancel_scope.cancel()


async def test_a_gap_fetch_waiting_for_a_slot_asks_its_next_peer_as_soon_as_its_peer_leaves(tmp_path, autojump_clock):
    """Noticed by sync37: a fetch of gaps from the peer that reported them waited for the only slot, held by a round
    with a staller (a peer that dialled in); that peer disconnected meanwhile, yet the fetch waited on until the
    staller's session reached its bound, then, handed the slot, failed to open its stream, and asked its next peer
    (the holder) only then, behind a round that had asked for a slot since: the gaps came a session (up to 10 minutes)
    later. It stops waiting as its peer leaves (counted as a stream that would not open), and asks the holder then,
    whose session comes as the staller's ends."""
    staller, dialled_in = STALLERS[0], STALLERS[1]
    with _a_node_lacking_its_org_s_record(tmp_path, stallers=[], max_sessions=1) as (sync, network, store, ours):
        sync.session_seconds = 1.5 * TIMEOUT
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            await _the_leaver_leaves_as_a_gap_fetch_from_it_waits(sync, network, nursery, ours, behind=staller)
            assert sync.stats.errors["stream"] == 1  # the fetch from the leaver
            network._peers.append(dialled_in)
            nursery.start_soon(sync.sync_with, dialled_in)  # asks for the slot after the leaver left
            await trio.sleep(sync.session_seconds)
            assert sync.stats.errors["session"] == 1  # the staller's
            assert store.head(ours.did) is not None and sync.round_running(dialled_in)
            assert sync.stats.errors["stream"] == 1
            nursery.cancel_scope.cancel()
