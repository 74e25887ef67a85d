"""Gap fetches as peers come and go (trio's mock clock, sessions stood in for): a fetch asks a peer that connects
while it runs, each peer once and a few in all (newcomers after the peers connected as it started, a group's peers
after those of groups it has not asked); an issuer
whose peers asked all left before answering, said to come back later, refused the sync protocol or were on another
network (or that no peer could be asked for) does not back off, and its range is fetched from the next peer to
connect, or at once from a peer still there that the fetch did not ask or that came back, or that had said to come back
later and may be asked again; one whose fetch was ended for a round a catch-up needs, or gave up its peer's turn, does
not back off either (its range fetched as that turn comes free), while one whose peers answered without its records
still does (gossip.gap_queue, DESIGN.md §5)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from nacl.signing import SigningKey

from gossip.host import HostError, ProtocolNotSupported
from gossip.replica import Replica
from gossip.store import RecordStore, StoreError
from gossip.sync_messages import SYNC_PROTOCOL, OtherNetworkPeer, PeerBusy, RemoteProtocolError
from gossip.sync_service import SyncService

from ..factories import Org
from .nodes import ConnectedHost

A, B = "12D3KooWPeerA", "12D3KooWPeerB"
NEWCOMERS = [f"12D3KooWNewcomer{i}" for i in range(3)]
INTERVAL = 30.0  # no periodic round before 22.5 s
ORG = Org()
MISSING = ORG.record()  # what the org's gap lacks
AFTER = ORG.record()  # the record after it
LATER = [ORG.record() for _ in range(6)]  # the records after that
GAP = {ORG.did: (1, 1)}

HOLDING = 10.5  # seconds a fetch of another issuer's gaps holds A's turn: past the sync timeout
GapSession = Callable[[str], Awaitable[int]]  # peer -> the records the session accepted


@dataclass
class Gaps:
    """A node whose sessions the test stands in for: full rounds bring nothing; a fetch of gaps runs `session`."""

    host: ConnectedHost
    service: SyncService
    store: RecordStore
    asked: list[tuple[float, str]] = field(default_factory=list)  # (when, peer) of each session of a gap fetch

    def fill(self) -> int:
        """A session with a peer holding the missing record."""
        return len(self.service.replica.accept([MISSING]).accepted)

    async def leave(self, peer: str) -> int:
        """A session whose peer leaves during it: its stream is reset."""
        await self.host.disconnect(peer)
        raise HostError(f"{peer}: stream reset")


class StandInHost(ConnectedHost):
    """The stand-in host, as gossip.host's Host: its peers listed in peer id order (a newcomer may come before the
    peers connected as a fetch started), and one that hung up (`closing`) listed until its connection has closed
    (`disconnect`), though it stays connected no more (quirk 62); one that refused a sync stream (`refusing`) is
    passed over until it disconnects."""

    def __init__(self, peers: list[str]) -> None:
        self.refusing: set[str] = set()
        super().__init__(peers, refusing=self.refusing)
        self.closing: set[str] = set()

    def connected_peers(self) -> list[str]:
        return sorted(super().connected_peers())

    def staying_peers(self) -> list[str]:
        return [peer for peer in self.connected_peers() if peer not in self.closing]

    async def disconnect(self, peer: str) -> None:
        self.closing.discard(peer)
        self.refusing.discard(peer)
        await super().disconnect(peer)


@asynccontextmanager
async def gaps(tmp_path: Path, peers: list[str], session: Callable[[Gaps, str], Awaitable[int]], *,
               gap_queue: int = 256, max_sessions: int = 8) -> AsyncIterator[Gaps]:
    with RecordStore.open(tmp_path) as store:
        replica = Replica(SigningKey.generate(), store, roots=(ORG.did,), max_hops=1, held_limit=10)
        host = StandInHost(list(peers))
        service = SyncService(host, replica, network="test", interval=INTERVAL, gap_queue=gap_queue,
                              max_sessions=max_sessions)
        node = Gaps(host, service, store)

        async def stand_in(peer: str, fetching: dict[str, tuple[int, int]] | None, *, cut: object) -> int:
            if fetching is None:
                return 0  # a full round (on connecting, at the start): the peers held nothing of the org's yet
            node.asked.append((trio.current_time(), peer))
            if peer in host.closing:  # (its stream reset as it opens: the connection is shutting down)
                raise HostError(f"{peer}: stream reset")
            return await session(node, peer)

        node.service._session = stand_in
        async with trio.open_nursery() as nursery:
            await nursery.start(node.service.run)
            yield node
            nursery.cancel_scope.cancel()


async def _behind_another_fetch(node: Gaps, nursery: trio.Nursery) -> None:
    """A fetch of another issuer's gaps takes A's turn (its session lasting HOLDING, if the test's does), then A
    reports GAP: its fetch waits for A's turn, and gives it up `timeout` later."""
    nursery.start_soon(node.service.fetch_gaps, A, {Org().did: (1, 1)})
    await trio.testing.wait_all_tasks_blocked()
    node.service.request_gaps(A, GAP)


async def _ended_by_a_needed_round(node: Gaps, round_peer: str = A) -> None:
    """A reports GAP at 1 s, and its fetch (the test's session with A lasting) is ended at 1.5 s by a round a catch-up
    needs (sync_errors_total{reason="preempted"}), with A, or with `round_peer` for the slot (all taken)."""
    await trio.sleep(1)
    node.service.request_gaps(A, GAP)
    await trio.sleep(0.5)
    node.service.catch_up_peers.append(lambda peer: True)
    await node.service.sync_with(round_peer)
    node.service.catch_up_peers.clear()


async def test_a_peer_that_connects_while_a_gap_fetch_runs_fills_the_gap_its_peer_left(tmp_path, autojump_clock):
    """Found by review: a fetch asked only the peers connected as it started, so the issuer counted as vain and the
    gap waited for a periodic round (or another report, after a backoff), though a peer holding it had come back."""
    async def session(node: Gaps, peer: str) -> int:
        if peer == B:
            return node.fill()
        await trio.sleep(1)
        await node.host.connect(B)  # back within the interval: no round on connecting
        await trio.sleep(1)
        return await node.leave(A)

    async with gaps(tmp_path, [A, B], session) as node:
        await node.host.disconnect(B)  # meanwhile the org's record reaches it
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(10)
        assert node.store.has(MISSING.id)
        assert node.asked == [(1, A), (3, B)]  # as A left, not at a periodic round
        assert node.service.stats.gap_issuers_vain == 0


async def test_an_issuer_whose_peers_all_left_before_answering_does_not_back_off(tmp_path, autojump_clock):
    """Found by review: the peers asked leaving counted as their having nothing: the issuer's next gap, reported as
    its peer came back with the record, waited a second (longer after each such fetch, up to the interval)."""
    async def session(node: Gaps, peer: str) -> int:
        if node.asked[1:]:
            return node.fill()
        await trio.sleep(1)
        return await node.leave(A)

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(1.5)
        await node.host.connect(A)
        node.service.request_gaps(A, GAP)  # (gossip delivered a later record of the org)
        await trio.sleep(10)
        assert node.asked == [(1, A), (2.5, A)]  # at once
        assert node.store.has(MISSING.id)
        assert node.service.stats.gap_issuers_vain == 0


async def test_an_issuer_whose_peer_hung_up_mid_session_listed_still_does_not_back_off(tmp_path, autojump_clock):
    """Found by stop 39's review: the host lists a peer whose host stopped until its connection has closed, after the
    session's stream was reset (quirk 62), so the fetch took the peer for one that reset its stream and stayed: the
    issuer backed off, and its gap reported again as the peer came back waited."""
    async def session(node: Gaps, peer: str) -> int:
        if node.asked[1:]:
            return node.fill()
        await trio.sleep(1)
        node.host.closing.add(peer)  # its host stopped: the connection shutting down, listed still
        raise HostError(f"{peer}: stream reset")

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(1.25)
        await node.host.disconnect(A)  # (its connection closed, 0.25 s after the session failed)
        await node.host.connect(A)
        node.service.request_gaps(A, GAP)
        await trio.sleep(10)
        assert node.asked == [(1, A), (2.25, A)]  # at once
        assert node.store.has(MISSING.id)
        assert node.service.stats.gap_issuers_vain == 0


async def test_a_gap_fetch_does_not_spend_its_asks_on_a_peer_that_hung_up_listed_still(tmp_path, autojump_clock):
    """Found by stop 39's review: the gap's origin, its node restarting, hung up as it reported the gap, but the host
    lists it until its connection has closed (quirk 62): the fetch asked it first, its stream reset at once, and it
    took one of the three asks, so the peer holding the gap was not asked."""
    c, d = "12D3KooWPeerC", "12D3KooWPeerD"

    async def session(node: Gaps, peer: str) -> int:
        return node.fill() if peer == d else 0  # B and C have none of it

    async with gaps(tmp_path, [A, B, c, d], session) as node:
        await trio.sleep(1)
        node.host.closing.add(A)
        node.service.request_gaps(A, GAP)
        await trio.sleep(1)
        assert [peer for _, peer in node.asked] == [B, c, d]
        assert node.store.has(MISSING.id)


async def test_an_issuer_whose_gap_a_newcomer_answered_without_still_backs_off(tmp_path, autojump_clock):
    """A peer asked that answers without the records, come while the fetch ran or not, is a vain answer: the
    issuer's next gap waits (hostile peers, or an issuer signing past a seq it never publishes, cannot make the node
    fetch at every report)."""
    async def session(node: Gaps, peer: str) -> int:
        if peer == B:
            return 0  # it has none of them
        await trio.sleep(0.5)
        await node.host.connect(B)
        await trio.sleep(0.5)
        return await node.leave(A)

    async with gaps(tmp_path, [A, B], session) as node:
        await node.host.disconnect(B)
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(1.5)
        node.service.request_gaps(A, GAP)  # reported again, A gone: from B, once the backoff ends
        await trio.sleep(1)
        assert node.asked == [(1, A), (2, B), (3, B)]  # B asked as A left; a second wait after that vain answer
        assert node.service.stats.gap_issuers_vain == 2


async def test_peers_that_come_and_go_during_a_gap_fetch_are_asked_three_in_all_none_twice(tmp_path, autojump_clock):
    """Peer ids cost nothing: a fetch asks at most three peers, those connecting while it runs among them, and never
    one it asked already, its origin come back included. None of them answered: the range is fetched again at once,
    the origin and a newcomer being there (it was dropped, to wait for the issuer's next report or a periodic round)."""
    async def session(node: Gaps, peer: str) -> int:
        await trio.sleep(1)
        if len(node.asked) > len(NEWCOMERS):  # the next fetch: its peer stays, holding the record
            return node.fill()
        newcomer = NEWCOMERS[len(node.asked) - 1]
        await node.host.connect(newcomer)
        if newcomer == NEWCOMERS[1]:
            await node.host.connect(A)  # the origin, asked first, back
        return await node.leave(peer)

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(10)
        assert [peer for _, peer in node.asked[:3]] == [A, *NEWCOMERS[:2]]
        assert node.asked[3:] == [(4, A)]  # as the third left, the origin first
        assert node.store.has(MISSING.id)
        assert node.service.stats.gap_issuers_vain == 0  # none of the first three answered


async def _held_by_b_a_leaving(node: Gaps, peer: str) -> int:
    """A session in which B holds the missing record, and A leaves a second in, before answering."""
    if peer == B:
        return node.fill()
    await trio.sleep(1)
    return await node.leave(A)


async def _refusing_sync(node: Gaps, peer: str) -> int:
    """A gossip-only node's answer: it refuses /vouchnet/sync/1."""
    node.host.refusing.add(peer)  # (as Host.open_stream remembers it, for the connection)
    raise ProtocolNotSupported(f"open {SYNC_PROTOCOL} stream to {peer}: the peer does not serve it")


async def _on_another_network(node: Gaps, peer: str) -> int:
    """The answer of a peer of another network (SyncService.other_network then disconnects it)."""
    raise OtherNetworkPeer("another")


@pytest.mark.parametrize("serves_none", [_refusing_sync, _on_another_network])
async def test_a_kept_gap_asked_of_a_peer_serving_none_of_the_network_s_records_waits_on_for_one_that_serves_it(
        serves_none, tmp_path, autojump_clock):
    """Found by stop 40's second read for a peer that refuses /vouchnet/sync/1 (a gossip-only node), and by stop 41's
    for a peer of another network (a bootstrap address naming a node of another network, dialled again every 30 s to
    an hour): connecting while a gap was kept for a peer to come, it was asked for it, and its refusal, or its answer
    naming another network, counted as an answer without the records: the range was dropped and the issuer backed
    off, so the gap waited for the issuer's next report or a periodic round (up to sync_interval), though a peer
    holding it connected next."""
    serving_none = "12D3KooWServingNone"

    async def session(node: Gaps, peer: str) -> int:
        if peer == serving_none:
            return await serves_none(node, peer)
        return await _held_by_b_a_leaving(node, peer)

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(2)  # A left before answering: kept for a peer to come
        await node.host.connect(serving_none)
        await trio.sleep(1)
        await node.host.connect(B)
        connected = trio.current_time()
        await trio.sleep(1)
        assert node.asked == [(1, A), (3, serving_none), (connected, B)]  # B at once
        assert node.store.has(MISSING.id)
        assert node.service.stats.gap_issuers_vain == 0


@pytest.mark.parametrize("asked", [True, False], ids=["peer asked left", "origin gone before"])
async def test_a_gap_no_peer_was_there_to_answer_for_is_fetched_from_the_next_peer_to_connect(asked, tmp_path,
                                                                                              autojump_clock):
    """Found by stop 38's review: the range was dropped (with a backoff besides, if no peer could be asked), to wait
    for the issuer's next report or a periodic round (up to sync_interval), though a peer holding it connected."""
    async with gaps(tmp_path, [A], _held_by_b_a_leaving) as node:
        await trio.sleep(1)
        if not asked:
            await node.host.disconnect(A)  # between its report and the fetch
        node.service.request_gaps(A, GAP)
        await trio.sleep(5)  # no peer meanwhile
        assert not node.store.has(MISSING.id)
        await node.host.connect(B)
        connected = trio.current_time()
        await trio.sleep(1)
        assert node.store.has(MISSING.id)
        assert node.asked[-1] == (connected, B)  # at once
        assert node.service.stats.gap_issuers_vain == 0


async def _reset_staying(node: Gaps, peer: str) -> int:
    """A session whose stream the peer resets, staying connected."""
    raise HostError(f"{peer}: stream reset")


async def _answered_then_left(node: Gaps, peer: str) -> int:
    """A session that ran to its end without the records, its peer leaving right after."""
    await node.host.disconnect(peer)
    return 0


@pytest.mark.parametrize("session", [_reset_staying, _answered_then_left])
async def test_an_issuer_whose_peer_failed_staying_or_answered_then_left_still_backs_off(session, tmp_path,
                                                                                         autojump_clock):
    """Only a peer that left before it answered proves nothing: one that resets its stream and stays, or answers
    without the records and then leaves, is a vain answer, and the issuer's next gap waits (a hostile peer could
    otherwise have the node fetch at every report)."""
    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(0.5)
        await node.host.connect(A)  # (back, if it left: within the interval, no round on connecting)
        node.service.request_gaps(A, GAP)
        await trio.sleep(5)
        assert node.asked == [(1, A), (2, A)]  # the second once the backoff (1 s) ended
        assert node.service.stats.gap_issuers_vain == 2


async def _garbage(node: Gaps, peer: str) -> int:
    """A session whose peer answers what the protocol forbids (SyncService._offence then disconnects it)."""
    raise RemoteProtocolError("malformed", "a reply that is no sync message")


async def _no_answer_in_time(node: Gaps, peer: str) -> int:
    """A session whose peer, staying, does not answer within the sync timeout."""
    raise trio.TooSlowError


HOSTILE = [f"12D3KooWHostile{i}" for i in range(3)]


@pytest.mark.parametrize("failing", [_reset_staying, _garbage, _no_answer_in_time])
async def test_a_gap_its_reporters_fail_to_answer_is_asked_of_the_next_peer_in_the_same_fetch(failing, tmp_path,
                                                                                             autojump_clock):
    """Found by stop 42's hostile read: the three peers that reported a gap, asked first, each reset its stream
    staying connected (or answered garbage, or nothing in time), and each took one of the fetch's three asks: the
    peer holding the gap was never asked, the issuer backed off, and the next fetch asked the same three first, so the
    gap waited for a periodic round. A session that fails is no answer: the next peer is asked in its place."""
    holder = "12D3KooWPeerD"

    async def session(node: Gaps, peer: str) -> int:
        return node.fill() if peer == holder else await failing(node, peer)

    async with gaps(tmp_path, [*HOSTILE, holder], session) as node:
        await trio.sleep(1)
        for reporter in HOSTILE:
            node.service.request_gaps(reporter, GAP)
        await trio.sleep(1)
        assert [peer for _, peer in node.asked] == [*HOSTILE, holder]
        assert node.store.has(MISSING.id)
        assert node.service.stats.gap_issuers_vain == 0


async def test_newcomers_failing_to_answer_a_gap_fetch_are_asked_three_at_most(tmp_path, autojump_clock):
    """A failed session spares its ask only for a peer that reported the gap or was there as the fetch started: peer
    ids cost nothing, and fresh ones connecting as each is asked, resetting its stream, would keep a fetch going."""
    async def session(node: Gaps, peer: str) -> int:
        await node.host.connect(f"12D3KooWNewcomer{len(node.asked)}")
        return await _reset_staying(node, peer)

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(0.5)
        assert [peer for _, peer in node.asked] == [A, *(f"12D3KooWNewcomer{i}" for i in range(1, 4))]
        assert node.service.stats.gap_issuers_vain == 1


async def test_a_gap_fetch_asks_the_peers_the_node_dials_before_strangers_whose_ids_come_first(tmp_path,
                                                                                               autojump_clock):
    """Found by stop 42's hostile read: after the peers that reported a gap, a fetch asked the others in the host's
    order, by peer id; ids cost nothing, so two strangers with ids made to come first, answering every fetch without
    the records, took the asks left after the reporter's, every gap backed off, and no peer the node dials was asked
    (a periodic round repaired it, up to sync_interval later). Those it dials are asked first."""
    strangers = ["12D3KooWAAStranger0", "12D3KooWAAStranger1"]
    holder = "12D3KooWPeerD"

    async def session(node: Gaps, peer: str) -> int:
        return node.fill() if peer == holder else 0

    async with gaps(tmp_path, [A, *strangers, holder], session) as node:
        node.service.dialled = {A, holder}.__contains__
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(1)
        assert [peer for _, peer in node.asked] == [A, holder]
        assert node.store.has(MISSING.id) and node.service.stats.gap_issuers_vain == 0


async def test_a_gap_its_reporters_answer_without_is_asked_of_a_peer_the_node_dials_in_the_same_fetch(tmp_path,
                                                                                                     autojump_clock):
    """Found by stop 42's hostile read: the three peers that reported a gap, asked first, each answered without the
    record (costing a liar nothing; an honest relayer may truly lack it) and took the fetch's three asks: the issuer
    backed off and the next fetch asked the same three first, so a gap whose only holder is a peer the node dials
    waited for a periodic round. Such a fetch asks one more peer, one it dials (not a stranger whose id comes first)
    that did not report the gap: one only, the next one it dials left unasked if that one lacks the gap too."""
    stranger, holder, lacking = "12D3KooWAAStranger", "12D3KooWPeerD", "12D3KooWPeerE"

    async def session(node: Gaps, peer: str) -> int:
        return node.fill() if peer == holder else 0

    async with gaps(tmp_path, [*HOSTILE, stranger, holder, lacking], session) as node:
        node.service.dialled = {*HOSTILE, holder, lacking}.__contains__
        assert await _asked_once_reported(node, HOSTILE) == [*HOSTILE, holder]
        assert node.store.has(MISSING.id) and node.service.stats.gap_issuers_vain == 0


async def _asked_once_reported(node: Gaps, reporters: list[str]) -> list[str]:
    """The peers asked in the second after `reporters` each reported GAP (a second in)."""
    await trio.sleep(1)
    for reporter in reporters:
        node.service.request_gaps(reporter, GAP)
    await trio.sleep(1)
    return [peer for _, peer in node.asked]


ONE_ORG_S_KEYS = [f"12D3KooWGroupKey{i}" for i in range(3)]  # listening keys one org vouched into the horizon


async def test_a_gap_fetch_asks_peers_of_another_group_before_more_of_one_org_s_keys(tmp_path, autojump_clock):
    """Found by stop 44's brief: after a gap's reporter, a fetch asked the peers the node dials in the host's order,
    and the fresh keys one org vouched into the horizon (a quarter of the peers it dials, up to 12) count as dialled:
    ids made to come first, answering without the records, took the asks left (_GAP_PEERS), the issuer backed off,
    and the peer of another org holding the gap waited for a periodic round. A fetch asks a peer of a group it has not
    asked yet (PeerManager.group_of) first: one of those keys, then the holder."""
    holder = "12D3KooWPeerZ"

    async def session(node: Gaps, peer: str) -> int:
        return node.fill() if peer == holder else 0

    async with gaps(tmp_path, [A, *ONE_ORG_S_KEYS, holder], session) as node:
        node.service.dialled = {A, *ONE_ORG_S_KEYS, holder}.__contains__
        node.service.peer_group = {**dict.fromkeys(ONE_ORG_S_KEYS, "did:key:zOneOrg"), holder: holder}.get
        assert await _asked_once_reported(node, [A]) == [A, ONE_ORG_S_KEYS[0], holder]
        assert node.store.has(MISSING.id) and node.service.stats.gap_issuers_vain == 0


async def test_a_gap_one_org_s_keys_reported_and_answered_without_is_asked_of_a_peer_of_another_group(tmp_path,
                                                                                                     autojump_clock):
    """The one more peer a fetch asks past its reporters answering without the gap (`_past_reporters`) is one of a
    group none of them is of: reporters that are one org's keys would otherwise have the fetch ask another of its keys,
    the issuer backing off with the holder unasked."""
    reporters, another_key, holder = ONE_ORG_S_KEYS, "12D3KooWGroupKeyX", "12D3KooWPeerZ"

    async def session(node: Gaps, peer: str) -> int:
        return node.fill() if peer == holder else 0

    async with gaps(tmp_path, [*reporters, another_key, holder], session) as node:
        node.service.dialled = {*reporters, another_key, holder}.__contains__
        node.service.peer_group = {**dict.fromkeys([*reporters, another_key], "did:key:zOneOrg"), holder: holder}.get
        assert await _asked_once_reported(node, reporters) == [*reporters, holder]
        assert node.store.has(MISSING.id) and node.service.stats.gap_issuers_vain == 0


@pytest.mark.parametrize(("others", "one_more"), [(["12D3KooWPeerD", "12D3KooWPeerE"], ["12D3KooWPeerD"]),
                                                  (["12D3KooWAAStranger"], [])])
async def test_a_gap_its_reporters_and_the_one_more_peer_answer_without_asks_no_other_and_backs_off(
        others, one_more, tmp_path, autojump_clock):
    """The one more peer a fetch asks past its reporters answering without the gap is one only, and one the node
    dials: peers it dials answering without it, as honest relayers lacking it do, are not all asked at each fetch, nor
    is a stranger (whose id costs nothing) asked in their place; the issuer backs off."""
    async def session(node: Gaps, peer: str) -> int:
        return 0

    async with gaps(tmp_path, [*HOSTILE, *others], session) as node:
        node.service.dialled = {*HOSTILE, *one_more, "12D3KooWPeerE"}.__contains__
        await trio.sleep(1)
        for reporter in HOSTILE:
            node.service.request_gaps(reporter, GAP)
        await trio.sleep(0.5)
        assert [peer for _, peer in node.asked] == [*HOSTILE, *one_more]
        assert node.service.stats.gap_issuers_vain == 1


async def test_a_gap_fetch_our_disk_failed_to_store_asks_no_other_peer_and_its_issuer_backs_off(tmp_path,
                                                                                                 autojump_clock):
    """Our disk failing (full, say): the fetch asked the next peers all the same (every one connected, for an org's
    history), each sending records the disk then failed to store. It stops, and the issuer backs off as for a peer
    that answered without the records: a failing disk is not asked to store a refetch at once."""
    async def session(node: Gaps, peer: str) -> int:
        raise StoreError("records.db: cannot be written (disk full)")

    async with gaps(tmp_path, [A, B], session) as node:
        await trio.sleep(1)
        node.service._on_entered({ORG.did})  # its history, to be asked of every peer
        await trio.sleep(0.5)
        node.service.request_gaps(A, GAP)  # (gossip delivered a later record of the org)
        await trio.sleep(5)
        assert node.asked == [(1, A), (2, A)]  # the second once the backoff (1 s) ended
        assert node.service.stats.errors["storage"] == 2 and node.service.stats.gap_issuers_vain == 2


async def test_a_history_fetch_asks_every_peer_connected_as_it_starts_and_three_more_at_most(tmp_path, autojump_clock):
    """An org's history (its org come inside the horizon) is asked of every peer, each holding a part, those that
    connect while the fetch runs too; but peer ids cost nothing, so newcomers are asked three at most, and after the
    peers connected as it started. Found by stop 39's review: newcomers whose ids came first in the host's order
    were asked first, and took the turns of peers connected as the fetch started, which were never asked."""
    newcomers = [f"12D3KooWNewcomer{i}" for i in range(5)]

    async def session(node: Gaps, peer: str) -> int:
        await trio.sleep(1)
        if len(node.asked) > len(newcomers):  # the next fetch (none of the first's peers answered): none holds it
            return 0
        await node.host.connect(newcomers[len(node.asked) - 1])
        return await node.leave(peer)

    async with gaps(tmp_path, [A, B], session) as node:
        await trio.sleep(1)
        node.service._on_entered({ORG.did})
        await trio.sleep(20)
        assert [peer for _, peer in node.asked[:5]] == [A, B, *newcomers[:3]]  # (each newcomer's id before theirs)
        assert node.asked[5:] == [(6, newcomers[3]), (7, newcomers[4])]  # the two not asked, at once


async def test_a_history_fetch_whose_peers_fail_staying_still_asks_three_newcomers_at_most(tmp_path, autojump_clock):
    """A history fetch asks every peer there as it starts whatever it answers: a failed session among them (a stream
    reset, the peer staying) spares no ask for a fourth newcomer, whose id costs nothing (stop 42's own change, as
    first made, let each such failure have one more newcomer asked)."""
    newcomers = [f"12D3KooWNewcomer{i}" for i in range(5)]

    async def session(node: Gaps, peer: str) -> int:
        if len(node.asked) <= len(newcomers):
            await node.host.connect(newcomers[len(node.asked) - 1])
        return await _reset_staying(node, peer)

    async with gaps(tmp_path, [A, B], session) as node:
        await trio.sleep(1)
        node.service._on_entered({ORG.did})
        await trio.sleep(0.5)
        assert [peer for _, peer in node.asked] == [A, B, *newcomers[:3]]


@pytest.mark.parametrize("round_peer", [A, B], ids=["a round with its peer", "another peer's round, for the slot"])
async def test_a_gap_whose_fetch_was_ended_for_a_needed_round_is_fetched_as_it_ends_and_does_not_back_off(
        round_peer, tmp_path, autojump_clock):
    """Found by stop 38's review: a fetch ended for a round a catch-up needs (sync_errors_total{reason="preempted"})
    counted as its peer's answer without the records, and the issuer's next gap waited a second (longer after each
    such fetch, up to the interval), though the peer was never given its say. Stop 40's reader: its range was then
    forgotten, to wait for the issuer's next report or a periodic round (up to sync_interval), though that round may
    bring nothing of it (it fails, or is with another peer, for the slot); it is kept for the peer's turn, as for a
    fetch that gave the turn up, and fetched as the round ends."""
    async def session(node: Gaps, peer: str) -> int:
        if peer == B:  # asked next, once its round is over: it leaves before answering
            return await node.leave(B)
        if node.asked[1:]:
            return node.fill()
        await trio.sleep(INTERVAL)  # until ended
        return 0

    async with gaps(tmp_path, sorted({A, round_peer}), session, max_sessions=1) as node:
        await _ended_by_a_needed_round(node, round_peer)  # (a round that brings nothing of it)
        await trio.sleep(5)
        assert node.service.stats.errors["preempted"] == 1
        assert node.asked == [(1, A), *((1.5, peer) for peer in {round_peer} - {A}), (1.5, A)]  # with no report
        assert node.store.has(MISSING.id)
        assert node.service.stats.gap_issuers_vain == 0


async def test_a_gap_whose_fetch_was_ended_for_a_needed_round_as_its_peer_hung_up_waits_for_the_next_peer(
        tmp_path, autojump_clock):
    """A fetch ended for a round a catch-up needs (preempted), its peer hanging up meanwhile, listed still as its
    connection closes (quirk 62), had no peer to answer: its range is kept, and fetched from the next peer to connect,
    at once; had the peer stayed, the range would wait for its turn (the round's end). Nothing
    failed with the peers that stay read from the host's list, which names one that hung up, and the range lost."""
    async def session(node: Gaps, peer: str) -> int:
        if peer != A:
            return node.fill()
        try:
            await trio.sleep(INTERVAL)  # until ended
        except trio.Cancelled:
            node.host.closing.add(A)  # its host stopped as the round ended the fetch: listed still
            raise
        return 0

    async with gaps(tmp_path, [A], session) as node:
        await _ended_by_a_needed_round(node)
        await trio.sleep(1)
        assert node.service.stats.errors["preempted"] == 1 and not node.store.has(MISSING.id)
        await node.host.connect(NEWCOMERS[0])
        connected = trio.current_time()
        await trio.sleep(1)
        assert node.asked == [(1, A), (connected, NEWCOMERS[0])]  # at once, with no report
        assert node.store.has(MISSING.id)
        assert node.service.stats.gap_issuers_vain == 0


async def test_an_issuer_whose_gap_fetch_gave_up_its_peer_s_turn_does_not_back_off(tmp_path, autojump_clock):
    """Found by stop 38's review: a fetch that gave up waiting for its peer's turn (sync_errors_total{reason="turn"},
    another session of ours with the peer running on) counted as the peer's answer without the records: the
    issuer's next gap waited a second (longer after each such fetch, up to the interval) on top of that turn."""
    async def session(node: Gaps, peer: str) -> int:
        if node.asked[1:]:
            return node.fill()
        await trio.sleep(HOLDING)  # another issuer's fetch, holding the peer's turn
        return 0

    async with gaps(tmp_path, [A], session) as node, trio.open_nursery() as nursery:
        await trio.sleep(1)
        await _behind_another_fetch(node, nursery)  # GAP's fetch gives up A's turn at 11 s
        await trio.sleep(node.service.timeout + 0.2)
        assert node.service.stats.errors["turn"] == 1
        node.service.request_gaps(A, GAP)
        await trio.sleep(5)
        assert node.asked == [(1, A), (1 + HOLDING, A)]  # as the turn came, not once a backoff ended (at 12 s)
        assert node.service.stats.gap_issuers_vain == 1  # the other issuer's: its peer answered without it


async def test_a_gap_whose_reporters_turns_are_held_by_slow_sessions_is_asked_of_the_next_peer_in_the_same_fetch(
        tmp_path, autojump_clock):
    """Found by stop 42's hostile read: the three peers that reported a gap each had a session of ours answered just
    in time (up to the 10 minutes a session may last), holding its turn; the fetch gave up waiting for each turn, each
    taking one of its three asks, so the peer holding the gap was not asked, and the range waited for the first one's
    turn, up to 10 minutes. A turn given up is no answer: the next peer is asked in its place."""
    holder = "12D3KooWPeerD"
    dripping = 600.0  # a session answered just in time, to its bound

    async def session(node: Gaps, peer: str) -> int:
        if peer == holder:
            return node.fill()
        await trio.sleep(dripping)
        return 0

    async with gaps(tmp_path, [*HOSTILE, holder], session) as node, trio.open_nursery() as nursery:
        await trio.sleep(1)
        for reporter in HOSTILE:
            nursery.start_soon(node.service.fetch_gaps, reporter, {Org().did: (1, 1)})
        await trio.testing.wait_all_tasks_blocked()
        for reporter in HOSTILE:
            node.service.request_gaps(reporter, GAP)
        await trio.sleep(3 * node.service.timeout + 1)
        assert node.asked[3:] == [(1 + 3 * node.service.timeout, holder)]
        assert node.store.has(MISSING.id) and node.service.stats.errors["turn"] == 3
        nursery.cancel_scope.cancel()


async def test_gaps_kept_for_the_turn_of_a_hostile_only_peer_do_not_keep_an_honest_gap_out(tmp_path, autojump_clock):
    """Found by stop 39's review: the only peer connected, holding its turn (a session answering just in time, up to
    session_seconds), had the ranges of the fetches that gave up waiting for that turn kept for it, and its reports
    of fresh issuers' gaps (their keys cost nothing) filled the queue so: a gap an honest peer then reported was
    dropped, to wait for a periodic round (up to sync_interval). It takes the place of one of those kept."""
    fresh = {Org().did: (1, 5) for _ in range(3)}

    async def session(node: Gaps, peer: str) -> int:
        if peer == B:
            return node.fill()
        await trio.sleep(node.service.session_seconds)  # a fetch of another issuer's gaps, holding A's turn
        return 0

    async with gaps(tmp_path, [A], session, gap_queue=len(fresh)) as node, trio.open_nursery() as nursery:
        await trio.sleep(1)
        nursery.start_soon(node.service.fetch_gaps, A, {Org().did: (1, 1)})
        await trio.testing.wait_all_tasks_blocked()
        node.service.request_gaps(A, fresh)  # their fetch gives up A's turn at 11 s: kept for it, the queue full
        await trio.sleep(node.service.timeout + 1)
        assert node.service.stats.errors["turn"] == 1
        await node.host.connect(B)
        node.service.request_gaps(B, GAP)
        reported = trio.current_time()
        await trio.sleep(1)
        assert node.asked == [(1, A), (reported, B)]  # at once
        assert node.store.has(MISSING.id)
        assert node.service.stats.gap_issuers_displaced == 1 and node.service.stats.gap_requests_dropped == 0
        nursery.cancel_scope.cancel()


async def test_a_gap_whose_peer_s_turn_was_given_up_is_kept_if_that_peer_then_left(tmp_path, autojump_clock):
    """A fetch that gave up its peer's turn, then found no one else there, had no peer to answer once that one left
    too: its range is kept and fetched from the next peer to connect, as if the peer had left before answering
    (while the peer whose turn it gave up stays, the range waits for that turn instead)."""
    async def session(node: Gaps, peer: str) -> int:
        if peer == A:  # another issuer's fetch, holding A's turn
            await trio.sleep(HOLDING)
            return 0
        if peer == B:  # asked once A's turn was given up: A leaves, and B before answering
            await node.host.disconnect(A)
            return await node.leave(B)
        return node.fill()

    async with gaps(tmp_path, [A, B], session) as node, trio.open_nursery() as nursery:
        await trio.sleep(1)
        await _behind_another_fetch(node, nursery)  # GAP's fetch gives up A's turn at 11 s, asks B
        await trio.sleep(node.service.timeout + 1)
        assert node.service.stats.errors["turn"] == 1 and not node.host.connected_peers()
        await node.host.connect(NEWCOMERS[0])
        connected = trio.current_time()
        await trio.sleep(1)
        assert node.asked[-1] == (connected, NEWCOMERS[0])  # at once
        assert node.store.has(MISSING.id)
        assert node.service.stats.gap_issuers_vain == 1  # the other issuer's: A's session ran to its end without it


async def test_a_gap_kept_while_its_only_peer_said_to_come_back_later_is_fetched_as_that_wait_ends(tmp_path,
                                                                                                  autojump_clock):
    """Found by stop 39's review: a gap reported while the only peer connected had told the node to come back later
    (a Busy answer: asked nothing until then) was kept for a peer to connect, and waited for a new connection, the
    issuer's next report or a periodic round (up to sync_interval), though that peer could be asked once its wait
    ended."""
    other = Org()
    come_back = 5  # seconds A's Busy answer asks the node to wait

    async def session(node: Gaps, peer: str) -> int:
        if len(node.asked) == 1:  # the other issuer's fetch: A's serving budget for the node is spent
            raise PeerBusy(come_back, "serving budget spent")
        return node.fill()

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, {other.did: (1, 1)})
        await trio.sleep(0.5)
        node.service.request_gaps(A, GAP)  # no peer to ask: kept
        await trio.sleep(1)
        assert node.asked == [(1, A)] and not node.store.has(MISSING.id)
        await trio.sleep(come_back)
        assert node.asked == [(1, A), (1 + come_back, A)]  # as A's wait ended
        assert node.store.has(MISSING.id)


@pytest.mark.parametrize("newcomer", [False, True], ids=["as its wait ends", "a peer connecting meanwhile"])
async def test_a_gap_whose_peer_said_to_come_back_later_is_kept_and_its_issuer_does_not_back_off(newcomer, tmp_path,
                                                                                                  autojump_clock):
    """Found by stop 39's review: a Busy answer to a gap fetch (come back later: asked nothing until then) counted as
    the peer's answer without the records: the issuer backed off and its range was forgotten, to wait for its next
    report or a periodic round (up to sync_interval), though the peer said nothing of the range. It is kept, and
    fetched as the peer's wait ends, or at once from a peer that connects meanwhile."""
    come_back = 5  # seconds A's Busy answer asks the node to wait

    async def session(node: Gaps, peer: str) -> int:
        if node.asked[1:]:
            return node.fill()
        raise PeerBusy(come_back, "serving budget spent")

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(1)
        assert node.asked == [(1, A)] and not node.store.has(MISSING.id)
        if newcomer:
            await node.host.connect(B)
        await trio.sleep(come_back)
        assert node.asked == [(1, A), (2, B) if newcomer else (1 + come_back, A)]  # with no report meanwhile
        assert node.store.has(MISSING.id)
        assert node.service.stats.errors["throttled"] == 1 and node.service.stats.gap_issuers_vain == 0


@pytest.mark.parametrize("origin", [A, "12D3KooWGossipOnly"], ids=["the busy peer reported it", "the other did"])
async def test_a_gap_whose_peers_said_to_come_back_later_or_refused_sync_is_kept_and_fetched_as_the_wait_ends(
        origin, tmp_path, autojump_clock):
    """Stop 40's merge review: the two rules of a fetch no peer answered, together. One peer asked says to come back
    later (Busy), the other refuses /vouchnet/sync/1 (a gossip-only node): neither said anything of the range, so it
    is kept and its issuer does not back off; it is fetched from the busy peer as its wait ends, with no report
    meanwhile, and the gossip-only node is not asked again."""
    gossip_only, come_back = "12D3KooWGossipOnly", 5

    async def session(node: Gaps, peer: str) -> int:
        if peer == gossip_only:
            node.host.refusing.add(peer)  # (as Host.open_stream remembers it, for the connection)
            raise ProtocolNotSupported(f"open {SYNC_PROTOCOL} stream to {peer}: the peer does not serve it")
        if len(node.asked) <= 2:
            raise PeerBusy(come_back, "serving budget spent")
        return node.fill()

    async with gaps(tmp_path, [A, gossip_only], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(origin, GAP)
        await trio.sleep(1)
        assert set(node.asked) == {(1, A), (1, gossip_only)} and not node.store.has(MISSING.id)
        await trio.sleep(come_back)
        assert node.asked[2:] == [(1 + come_back, A)]  # as A's wait ended
        assert node.store.has(MISSING.id)
        assert node.service.stats.errors["throttled"] == 1 and node.service.stats.gap_issuers_vain == 0


async def test_the_rest_of_a_range_a_peer_began_to_send_before_saying_to_come_back_later_is_kept(tmp_path,
                                                                                                 autojump_clock):
    """A peer says to come back later mid-answer, its serving budget for the node spent (an org's history, say): the
    rest of the range is kept and fetched as its wait ends; it was forgotten, as records had come, to wait for the
    issuer's next report or a periodic round (up to sync_interval)."""
    come_back = 5

    async def session(node: Gaps, peer: str) -> int:
        if node.asked[1:]:
            return len(node.service.replica.accept([AFTER]).accepted)
        node.fill()
        raise PeerBusy(come_back, "serving budget spent")

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, {ORG.did: (1, 2)})
        await trio.sleep(come_back + 1)
        assert node.asked == [(1, A), (1 + come_back, A)]  # with no report meanwhile
        assert node.store.has(AFTER.id)
        assert node.service.stats.gap_issuers_vain == 0


@pytest.mark.parametrize("others", [[], [B]], ids=["its only peer", "the turn free as B was asked"])
async def test_a_gap_whose_fetch_gave_up_the_turn_of_another_fetch_of_gaps_is_fetched_as_that_one_ends(
        others, tmp_path, autojump_clock):
    """Found by stop 39's review: a fetch that gave up its peer's turn, held by a fetch of another issuer's gaps
    (which does not fetch this range), and had no other peer answer, forgot the range: it waited for the issuer's next
    report or a periodic round (up to sync_interval). It is kept, and fetched as that turn comes free, the peer first
    (at once if it came free while the fetch asked another peer, one that left before answering)."""
    async def session(node: Gaps, peer: str) -> int:
        if peer == B:
            await trio.sleep(1)
            await node.host.disconnect(B)  # (the other fetch, come to wait for B's turn, stops waiting)
            await trio.sleep(0.5)
            raise HostError(f"{B}: stream reset")
        if node.asked[1:]:
            return node.fill()
        await trio.sleep(HOLDING)  # another issuer's fetch, holding A's turn
        return 0

    async with gaps(tmp_path, [A, *others], session) as node, trio.open_nursery() as nursery:
        await trio.sleep(1)
        await _behind_another_fetch(node, nursery)  # GAP's fetch gives up A's turn at 11 s
        await trio.sleep(node.service.timeout + 5)
        assert node.service.stats.errors["turn"] == 1
        fetched = (1 + HOLDING, A) if not others else (12.5, A)  # with no report meanwhile
        assert node.asked == [(1, A), *((11, peer) for peer in others), fetched]
        assert node.store.has(MISSING.id)


async def test_a_gap_whose_fetch_gave_up_the_turn_of_a_round_that_then_failed_is_fetched_as_it_ends(tmp_path,
                                                                                                    autojump_clock):
    """A round with the peer holding its turn would fetch the range, if it ran to its end: it may not (its stream
    reset here), so the range is kept for that turn all the same."""
    async def session(node: Gaps, peer: str) -> int:
        return node.fill()

    async with gaps(tmp_path, [A], session) as node, trio.open_nursery() as nursery:
        gap_session = node.service._session

        async def failing_round(peer: str, fetching: dict[str, tuple[int, int]] | None, *, cut) -> int:
            if fetching is not None:
                return await gap_session(peer, fetching, cut=cut)
            await trio.sleep(HOLDING)
            raise HostError(f"{peer}: stream reset")

        await trio.sleep(1)  # (the round at the start is over)
        node.service._session = failing_round
        nursery.start_soon(node.service.sync_with, A)
        await trio.testing.wait_all_tasks_blocked()
        node.service.request_gaps(A, GAP)  # waits for A's turn, and gives it up at 11 s
        await trio.sleep(node.service.timeout + 5)
        assert node.service.stats.errors["turn"] == 1 and node.service.stats.errors["stream"] == 1
        assert node.asked == [(1 + HOLDING, A)]  # as the round ended, with no report meanwhile
        assert node.store.has(MISSING.id)


async def test_a_gap_no_peer_answered_for_that_finds_the_queue_full_is_dropped_and_counted(tmp_path, autojump_clock):
    """Found by stop 40's reader: a range to keep for a peer to come that found the queue full was dropped with no
    metric or log; vouchnet_sync_gap_issuers_unkept_total counts it (the issuer's next report or a periodic round
    repairs it)."""
    vain, first, second = (Org() for _ in range(3))

    async def session(node: Gaps, peer: str) -> int:
        if len(node.asked) == 1:
            return 0  # A has none of `vain`'s: it backs off
        node.service.request_gaps(A, {vain.did: (1, 2)})  # waits while it backs off: one place
        node.service.request_gaps(A, {first.did: (1, 2)})  # grown while fetched: the other place
        await trio.sleep(0.5)
        return await node.leave(A)

    async with gaps(tmp_path, [A], session, gap_queue=2) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, {vain.did: (1, 1)})
        await trio.testing.wait_all_tasks_blocked()
        node.service.request_gaps(A, {first.did: (1, 1), second.did: (1, 1)})  # one fetch of both
        await trio.sleep(0.75)
        assert [peer for _, peer in node.asked] == [A, A]
        assert node.service.stats.gap_issuers_unkept == 1  # `second`, no place left to keep it in
        assert node.service.stats.gap_issuers_vain == 1 and node.service.stats.gap_requests_dropped == 0


@pytest.mark.parametrize("comes", [NEWCOMERS[0], A], ids=["a newcomer", "that peer back within the interval"])
async def test_the_rest_of_a_range_a_peer_began_to_send_then_left_is_fetched_from_the_next_peer_to_connect(
        comes, tmp_path, autojump_clock):
    """Found by stop 40's reader: a peer that left mid-answer, having sent part of the range, while another asked
    answered without the rest: the range counted as fetched, records having come, and the rest waited for the
    issuer's next report or a periodic round (up to sync_interval; a round on connecting only if none with that peer
    started in the last interval). It is kept for the next peer to connect, asked first; the peer that answered is
    not asked again meanwhile (it holds none of it), and the issuer does not back off."""
    async def session(node: Gaps, peer: str) -> int:
        if peer == B:
            return 0  # it has none of the rest
        if len(node.asked) == 1:
            node.fill()
            return await node.leave(A)  # mid-answer
        return len(node.service.replica.accept([AFTER]).accepted)

    async with gaps(tmp_path, [A, B], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, {ORG.did: (1, 2)})
        await trio.sleep(5)
        assert node.asked == [(1, A), (1, B)] and node.store.has(MISSING.id) and not node.store.has(AFTER.id)
        await node.host.connect(comes)
        connected = trio.current_time()
        await trio.sleep(1)
        assert node.asked[2:] == [(connected, comes)]  # at once, with no report
        assert node.store.has(AFTER.id)
        assert node.service.stats.gap_issuers_vain == 0


async def test_the_rest_of_a_range_a_staying_peer_began_then_said_to_come_back_later_is_asked_as_its_wait_ends(
        tmp_path, autojump_clock):
    """Found by stop 42's brief: A says to come back later mid-answer and stays, B answers without the rest: the rest
    was kept for a peer to connect only (B, there, answered), so it waited for a new connection, the issuer's next
    report or a periodic round, though A could be asked again as its wait ended. It is asked of A then, not of B."""
    come_back = 5

    async def session(node: Gaps, peer: str) -> int:
        if peer == B:
            return 0  # it has none of the rest
        if len(node.asked) == 1:
            node.fill()
            raise PeerBusy(come_back, "serving budget spent")
        return len(node.service.replica.accept([AFTER]).accepted)

    async with gaps(tmp_path, [A, B], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, {ORG.did: (1, 2)})
        await trio.sleep(come_back + 1)
        assert node.asked == [(1, A), (1, B), (1 + come_back, A)]  # with no report meanwhile
        assert node.store.has(AFTER.id)
        assert node.service.stats.gap_issuers_vain == 0


async def test_a_peer_reconnecting_again_and_again_has_a_kept_gap_fetched_once_a_backoff_not_at_each_connection(
        tmp_path, autojump_clock):
    """Found by stop 42's brief: each peer that connects frees the ranges kept for a peer to come, so A, leaving as
    it is asked and connecting again every 0.1 s, had the gap fetched at each connection (200 fetches in 20 s,
    bounded only by how fast it reconnects). A range a connecting peer freed whose fetch again found no peer to answer
    waits out the issuer's backoff (1 s, doubling up to sync_interval) before the next; an honest peer that connects
    then still has it fetched, within that backoff."""
    async def session(node: Gaps, peer: str) -> int:
        return node.fill() if peer == B else await node.leave(peer)

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(0.5)
        assert node.asked == [(1, A)]  # A left as it was asked: the gap is kept for a peer to come
        for _ in range(200):
            if A not in node.host.connected_peers():
                await node.host.connect(A)
            await trio.sleep(0.1)
        fetches = [when for when, _ in node.asked]
        assert len(fetches) <= 12  # (a fetch at a connection, and one as each backoff ends: 1, 2, 4, 8 s...)
        assert node.service.stats.gap_issuers_vain == 0
        await node.host.connect(B)
        await trio.sleep(INTERVAL)
        assert node.store.has(MISSING.id) and node.asked[-1][1] == B


async def test_a_crowd_of_peers_the_node_does_not_dial_cannot_keep_a_gap_a_peer_it_dials_reported_out(
        tmp_path, autojump_clock):
    """Found by stop 42's brief: with the only session slot held by a slow fetch of gaps, hostile peers each
    reporting one fresh issuer's gap filled the queue a place each, and the gap A reported (a peer the node dials)
    was dropped until a periodic round, none of theirs holding two places more than A's none. Theirs count as one
    share: A's gap takes the place of the newest, and is fetched as the slot comes free."""
    crowd = [f"12D3KooWHostile{i}" for i in range(4)]

    async def session(node: Gaps, peer: str) -> int:
        if peer == B:
            await trio.sleep(HOLDING)  # another issuer's fetch, holding the slot
            return 0
        return node.fill() if peer == A else 0

    async with gaps(tmp_path, [A, B], session, gap_queue=len(crowd), max_sessions=1) as node:
        node.service.dialled = {A, B}.__contains__
        await trio.sleep(1)
        node.service.request_gaps(B, {Org().did: (1, 1)})
        await trio.testing.wait_all_tasks_blocked()
        for peer in crowd:
            node.service.request_gaps(peer, {Org().did: (1, 1)})
        node.service.request_gaps(A, GAP)
        assert node.service.stats.gap_requests_dropped == 0 and node.service.stats.gap_issuers_displaced == 1
        await trio.sleep(HOLDING + 1)
        assert node.store.has(MISSING.id) and (1 + HOLDING, A) in node.asked


async def test_a_gap_whose_only_peer_always_says_to_come_back_later_is_asked_once_a_backoff_not_each_second(
        tmp_path, autojump_clock):
    """Found by stop 42's hostile read: a gap kept while the only peer there had said to come back later was asked of
    it as each of its waits ended, so a peer answering Busy, 1 s, each time had the gap asked for each second, for as
    long as it stayed. A range freed as a peer's wait ended, whose fetch again found none to answer, waits out the
    issuer's backoff too (1 s, doubling up to sync_interval), as one a connecting peer freed."""
    async def session(node: Gaps, peer: str) -> int:
        raise PeerBusy(1, "serving budget spent")

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, GAP)
        await trio.sleep(60)
        assert len(node.asked) <= 14  # (60 without)
        assert node.service.stats.gap_issuers_vain == 0


async def test_the_rest_of_a_range_its_only_peer_answered_short_is_asked_again_at_once(tmp_path, autojump_clock):
    """Found by stop 43's brief: a peer that answered part of the range (it was behind on the issuer as it relayed the
    record after the gap, say) and no other peer left to ask: the range counted as fetched, records having come, and
    the rest waited for the issuer's next report or a periodic round (up to sync_interval). It is asked again at
    once, and the issuer does not back off."""
    async def session(node: Gaps, peer: str) -> int:
        return node.fill() if len(node.asked) == 1 else len(node.service.replica.accept([AFTER]).accepted)

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, {ORG.did: (1, 2)})
        await trio.sleep(5)
        assert node.asked == [(1, A), (1, A)]  # with no report meanwhile
        assert node.store.has(AFTER.id)
        assert node.service.stats.gap_issuers_vain == 0


async def test_a_peer_sending_one_record_a_fetch_has_the_rest_asked_at_once_twice_then_after_the_backoff(
        tmp_path, autojump_clock):
    """A hostile peer answering each fetch with the next record alone cannot have the issuer fetched without pause:
    after two fetches in a row asked again at once (gap_queue.SHORTS_AT_ONCE), the rest waits out the issuer's
    backoff, 1 s, doubling while fetches bring part of it, up to sync_interval; what it sends is kept."""
    chain = [MISSING, AFTER, *LATER]

    async def session(node: Gaps, peer: str) -> int:
        return len(node.service.replica.accept([chain[len(node.asked) - 1]]).accepted)

    async with gaps(tmp_path, [A], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, {ORG.did: (1, len(chain))})
        await trio.sleep(20)  # (no periodic round before 22.5 s)
        assert node.asked == [(when, A) for when in (1, 1, 1, 2, 4, 8, 16)]
        assert node.store.head(ORG.did).seq == 7
        assert node.service.stats.gap_issuers_vain == 0


HOLDER = "12D3KooWPeerD"  # the one peer holding the gap of fetches whose other peers are slow (after them by id)


def slow_peers(count: int) -> list[str]:
    """`count` peers, before HOLDER in the host's order, that answer nothing within the sync timeout."""
    return [f"12D3KooWHostile{i:02}" for i in range(count)]


async def slow_but_the_holder(node: Gaps, peer: str) -> int:
    """A session with HOLDER, which fills the gap, or with a slow peer, which answers nothing within the timeout."""
    if peer == HOLDER:
        return node.fill()
    await trio.sleep(node.service.timeout)
    raise trio.TooSlowError


async def test_a_gap_fetch_asks_no_peer_after_a_minute_and_is_asked_again_of_the_peers_it_did_not_ask_first(
        tmp_path, autojump_clock):
    """Found by stop 43's brief: a fetch had no overall bound, so peers each failing just as the sync timeout ran out
    (those there as it started spare their asks) held it, its worker and its issuer's range for as long as they were
    many: with one session slot, another issuer's gap waited two minutes here. The fetch asks no peer once it has run
    60 s: the other gap is fetched then, and the first issuer's, once its backoff (a second) is over, is asked of the
    peers that fetch did not ask first, not of the slow ones again."""
    slow, holder = slow_peers(12), HOLDER

    async with gaps(tmp_path, [*slow, holder], slow_but_the_holder, max_sessions=1) as node:
        await trio.sleep(1)
        node.service.request_gaps(slow[0], {Org().did: (1, 1)})
        await trio.sleep(1)
        node.service.request_gaps(holder, GAP)
        await trio.sleep(70)
        assert node.asked[:7] == [*((1 + 10 * i, peer) for i, peer in enumerate(slow[:6])), (61, holder)]
        assert node.store.has(MISSING.id)
        assert node.asked[7] == (62, slow[6])  # as its backoff ended, one it did not ask first
        assert node.service.stats.gap_fetches_overdue == 1


async def test_the_rest_of_a_range_answered_short_is_asked_again_of_the_peers_that_fetch_did_not_ask_first(
        tmp_path, autojump_clock):
    """The fetch's three asks went to A, which sent part of the range, and to B and C, which had none of it: asked of
    them first again, the rest would find none of it, and its issuer would back off; D, which the fetch did not ask,
    holds it."""
    c, d = "12D3KooWPeerC", "12D3KooWPeerD"

    async def session(node: Gaps, peer: str) -> int:
        if peer == d:
            return len(node.service.replica.accept([AFTER]).accepted)
        return node.fill() if peer == A else 0

    async with gaps(tmp_path, [A, B, c, d], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, {ORG.did: (1, 2)})
        await trio.sleep(5)
        assert node.asked == [(1, A), (1, B), (1, c), (1, d)]
        assert node.store.has(AFTER.id)
        assert node.service.stats.gap_issuers_vain == 0


async def test_a_history_fetch_that_brought_part_of_the_org_s_records_is_not_asked_again_at_once(tmp_path,
                                                                                                 autojump_clock):
    """An org's history runs to MAX_SEQ, so no fetch of it brings all of its range: one that brought what the peers
    held is not the rest of a range sent short (gap_queue's `short`), asked again at once and then as its backoff
    ends, for as long as the org stays inside the horizon."""
    async def session(node: Gaps, peer: str) -> int:
        return node.fill() if peer == A else 0

    async with gaps(tmp_path, [A, B], session) as node:
        await trio.sleep(1)
        node.service._on_entered({ORG.did})
        await trio.sleep(20)
        assert node.asked == [(1, A), (1, B)]
        assert node.store.has(MISSING.id)


async def test_the_rest_of_a_range_our_disk_failed_to_store_part_of_is_not_asked_again_at_once(tmp_path,
                                                                                               autojump_clock):
    """Our disk failing (full, say) as the fetch stored part of the range: the rest is not sent short by the peers
    (gap_queue's `short`, asked again at once), and a failing disk is not asked to store a refetch at once."""
    async def session(node: Gaps, peer: str) -> int:
        node.fill()
        raise StoreError("records.db: cannot be written (disk full)")

    async with gaps(tmp_path, [A, B], session) as node:
        await trio.sleep(1)
        node.service.request_gaps(A, {ORG.did: (1, 2)})
        await trio.sleep(5)
        assert node.asked == [(1, A)]
        assert node.service.stats.errors["storage"] == 1


async def test_fetches_stopped_at_their_minute_one_after_another_ask_the_peers_none_of_them_asked_first(
        tmp_path, autojump_clock):
    """The peers a range's fetches stopped at their minute asked are asked after the others by the next fetch, those
    of every such fetch before it: three of them, each asking six slow peers, leave the one holding the range to the
    fourth; were the last one's alone asked last, the fourth would ask the first's slow peers again, and the fifth the
    fourth's, and the holder would never be asked."""
    slow, holder = slow_peers(18), HOLDER

    async with gaps(tmp_path, [*slow, holder], slow_but_the_holder) as node:
        await trio.sleep(1)
        node.service.request_gaps(slow[0], GAP)
        await trio.sleep(200)
        assert [peer for _, peer in node.asked] == [*slow, holder]
        assert node.asked[-1] == (188, holder)  # (backoffs of 1, 2 and 4 s after the fetches stopped at 61, 122, 184)
        assert node.service.stats.gap_fetches_overdue == 3
        assert node.store.has(MISSING.id)


async def test_the_peers_a_range_s_fetches_asked_are_remembered_while_they_stay_connected(tmp_path, autojump_clock):
    """The peers asked by fetches of a range sent short, remembered to be asked last, are those still connected: a
    range sent short by peer after peer, each leaving once it answered (ids cost nothing), would otherwise have its
    next fetches carry every id that ever answered it."""
    chain = [MISSING, AFTER, *LATER]
    remembered: list[set[str]] = []  # of each fetch: the peers it was to ask last that were not connected

    async def session(node: Gaps, peer: str) -> int:
        accepted = len(node.service.replica.accept([chain[len(node.asked) - 1]]).accepted)
        await node.host.connect(f"12D3KooWNewcomer{len(node.asked)}")
        await node.host.disconnect(peer)
        return accepted

    async with gaps(tmp_path, [A], session) as node:
        take = node.service._gaps.take

        def taking(most: int, now: float):  # type: ignore[no-untyped-def]
            batch = take(most, now)
            if batch is not None:
                remembered.append(set(batch.tried) - set(node.host.connected_peers()))
            return batch

        node.service._gaps.take = taking
        await trio.sleep(1)
        node.service.request_gaps(A, {ORG.did: (1, len(chain))})
        await trio.sleep(20)
        assert len(remembered) >= 3  # (each peer asked sent one record of the range)
        assert remembered == [set()] * len(remembered)
