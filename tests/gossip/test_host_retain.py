"""A penalised peer's score survives its reconnection for the retain period (gossip.host quirk 48, GossipSub v1.1
RetainScore), frozen while the peer is away: over real connections on loopback, on the scorer, and the retained
table's bound as a property."""

import math
import os

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from libp2p.peer.id import ID

from gossip.host import Host, HostConfig, PeerEvent, PeerScoring, _RetainedScores, _RetainingScorer, open_host
from gossip.peer_feed import PeerFeed
from tests.gossip.test_host import LOOPBACK, TOPIC, accept_all

GRAYLISTED = PeerScoring(publish_threshold=-30.0, graylist_threshold=-30.0)  # graylisted at the 4th invalid message
LIFTED = 100  # heartbeats of decay (0.99 each) that would take -40 above -30: 29 would


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Trio's clock running at real speed, which a test may jump ahead (the retain period is trio's time)."""
    return trio.testing.MockClock(rate=1.0)


class Judge:
    """A validator rejecting b"bad", which tells when it has rejected so many from a peer."""

    def __init__(self) -> None:
        self._rejected: dict[str, int] = {}
        self._waiting: dict[tuple[str, int], trio.Event] = {}

    def __call__(self, peer: str, data: bytes) -> bool:
        if data != b"bad":
            return True
        self._rejected[peer] = count = self._rejected.get(peer, 0) + 1
        self._waiting.setdefault((peer, count), trio.Event()).set()
        return False

    async def rejected(self, peer: str, count: int) -> None:
        await self._waiting.setdefault((peer, count), trio.Event()).wait()


async def penalise(node: Host, judge: Judge, hostile: Host, bad: int) -> None:
    """Have `hostile` publish `bad` messages that `node`'s validator rejects, and return once it judged them."""
    await hostile.subscribe(TOPIC, accept_all)
    await hostile.connect(node.listen_addrs[0])
    await hostile.wait_for_mesh(TOPIC, node.peer_id)
    for _ in range(bad):
        await hostile.publish(TOPIC, b"bad")
    await judge.rejected(hostile.peer_id, bad)


async def leave(node: Host, hostile: Host, events: PeerFeed) -> None:
    """`hostile` disconnects; returns once `node` handled it (pubsub forgets the peer in a task of its own)."""
    await hostile.disconnect(node.peer_id)
    while await events.receive() != PeerEvent(hostile.peer_id, connected=False):
        pass  # its connection's, and earlier peers'
    await trio.testing.wait_all_tasks_blocked()


async def heard(node: Host, hostile: Host, before: int) -> bool:
    """Waits until `node` either ignored an RPC of `hostile` or read its subscription (its hello on reconnecting, the
    first RPC it sends); returns whether it was read."""
    while node.stats().graylisted_rpcs == before and hostile.peer_id not in subscribers(node):
        await trio.sleep(0.01)  # nothing announces that an RPC was read
    return hostile.peer_id in subscribers(node)


def subscribers(node: Host) -> set[str]:
    return {peer.to_base58() for peer in node._pubsub.peer_topics.get(TOPIC, ())}


async def graylist_and_leave(node: Host, hostile: Host) -> None:
    events = node.peer_events()
    judge = Judge()
    await node.subscribe(TOPIC, judge)
    await penalise(node, judge, hostile, 4)
    assert node.peer_score(hostile.peer_id) < GRAYLISTED.graylist_threshold
    await leave(node, hostile, events)
    assert ID.from_base58(hostile.peer_id) in node._router.scorer.retained


@pytest.mark.slow
async def test_a_graylisted_peer_that_reconnects_within_the_retain_period_is_still_graylisted() -> None:
    """Quirk 48: py-libp2p forgot a peer's score as it disconnected, so a peer graylisted for flooding invalid
    messages was heard again as soon as it reconnected."""
    with trio.fail_after(30):
        async with (open_host(os.urandom(32), LOOPBACK, config=HostConfig(scoring=GRAYLISTED)) as node,
                    open_host(os.urandom(32), LOOPBACK) as hostile):
            await graylist_and_leave(node, hostile)
            before = node.stats().graylisted_rpcs
            await hostile.connect(node.listen_addrs[0])
            assert not await heard(node, hostile, before)
            assert node.peer_score(hostile.peer_id) < GRAYLISTED.graylist_threshold



@pytest.mark.slow
async def test_a_graylisted_peer_away_longer_than_the_decay_would_take_is_still_graylisted_on_return() -> None:
    """Quirk 48: the retained counters decayed on as a connected peer's, so even the worst score rose above the
    graylist threshold long before the retain period was over; now they are frozen until the peer returns."""
    with trio.fail_after(30):
        async with (open_host(os.urandom(32), LOOPBACK, config=HostConfig(scoring=GRAYLISTED)) as node,
                    open_host(os.urandom(32), LOOPBACK) as hostile):
            await graylist_and_leave(node, hostile)
            left_at = node.peer_score(hostile.peer_id)
            for _ in range(LIFTED):
                node._router.scorer.on_heartbeat()
            assert node.peer_score(hostile.peer_id) == left_at
            before = node.stats().graylisted_rpcs
            await hostile.connect(node.listen_addrs[0])
            assert not await heard(node, hostile, before)
            assert node.peer_score(hostile.peer_id) < GRAYLISTED.graylist_threshold

@pytest.mark.slow
async def test_after_the_retain_period_a_reconnecting_peer_starts_afresh(clock: trio.testing.MockClock) -> None:
    with trio.fail_after(GRAYLISTED.retain_score + 30):
        async with (open_host(os.urandom(32), LOOPBACK, config=HostConfig(scoring=GRAYLISTED)) as node,
                    open_host(os.urandom(32), LOOPBACK) as hostile):
            await graylist_and_leave(node, hostile)
            clock.jump(GRAYLISTED.retain_score)
            before = node.stats().graylisted_rpcs
            await hostile.connect(node.listen_addrs[0])
            assert await heard(node, hostile, before)  # (it may be penalised afresh: it sends its recent messages)
            assert ID.from_base58(hostile.peer_id) not in node._router.scorer.retained


@pytest.mark.slow
async def test_the_retained_scores_stay_within_their_cap_under_many_fresh_keys(loopback_clock) -> None:
    """Fresh keys are free: however many penalised peers leave, at most retained_peers scores are kept, the most
    negative; the scorer holds counters for no other peer that left, and none that are 0."""
    scoring = PeerScoring(retained_peers=3)
    with trio.fail_after(120):
        async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(scoring=scoring)) as node:
            events = node.peer_events()
            judge = Judge()
            await node.subscribe(TOPIC, judge)
            scorer = node._router.scorer
            left = []
            for bad in [6] + [1] * 7:  # the first is penalised most, and stays retained
                async with open_host(os.urandom(32), LOOPBACK) as hostile:
                    await penalise(node, judge, hostile, bad)
                    await leave(node, hostile, events)
                left.append(ID.from_base58(hostile.peer_id))
                assert len(scorer.retained) <= scoring.retained_peers
                assert set(scorer.away.invalid_messages) <= {peer for peer in left if peer in scorer.retained}
                assert not set(left) & set(scorer.invalid_messages)  # moved out of the tables the heartbeat decays
                assert not set(left) & (set(scorer.away.behavior_penalty) | set(scorer.away.equivocation_penalties))
            assert left[0] in scorer.retained and len(scorer.retained) == scoring.retained_peers


PEERS = [ID(bytes([i])) for i in range(8)]


@given(st.integers(1, 4), st.lists(st.one_of(
    st.tuples(st.just("leave"), st.sampled_from(PEERS), st.floats(-1000, 10)),
    st.tuples(st.just("return"), st.sampled_from(PEERS)),
    st.tuples(st.just("heartbeat"), st.floats(0, 40))), max_size=40))
def test_the_retained_table_keeps_the_most_negative_scores_within_its_cap(cap: int, steps: list[tuple]) -> None:
    """Only negative scores are kept, at most `cap`; a peer pushed out scored, when it left, no more negative than
    any kept, and left before any kept that scored the same; a period over is forgotten by the next heartbeat, or on
    return."""
    now = 0.0
    table = _RetainedScores(period=60.0, cap=cap, clock=lambda: now)
    kept: dict[ID, tuple[float, float]] = {}  # peer -> score when it left, when it left (in the order they left)
    for step in steps:
        if step[0] == "leave":
            _, peer, score = step
            kept.pop(peer, None)
            gone = table.retain(peer, score)
            if score < 0:
                kept[peer] = (score, now)
            for peer in gone:
                if peer in kept:
                    order = list(kept)
                    assert all(kept[other][0] < kept[peer][0] or kept[other][0] == kept[peer][0]
                               and order.index(other) > order.index(peer) for other in kept if other != peer)
                    del kept[peer]
        elif step[0] == "return":
            peer = step[1]
            assert table.returned(peer) == (peer in kept and now - kept[peer][1] >= 60.0)
            kept.pop(peer, None)
        else:
            now += step[1]
            over = table.heartbeat()
            assert set(over) == {peer for peer, (_, then) in kept.items() if now - then >= 60.0}
            for peer in over:
                del kept[peer]
        assert set(kept) == {peer for peer in PEERS if peer in table} and len(table) <= cap
        assert all(score < 0 for score, _ in kept.values())


def _scorer(connected: set[ID]) -> _RetainingScorer:
    scoring = PeerScoring()
    retained = _RetainedScores(scoring.retain_score, scoring.retained_peers, clock=lambda: 0.0)  # never over
    return _RetainingScorer(scoring._params(), retained, lambda: connected)


def test_a_retained_score_is_frozen_while_the_peer_is_away_and_decays_again_once_it_is_back() -> None:
    """Quirk 48, as go-libp2p and rust-libp2p have it: no heartbeat decays a retained peer's counters."""
    peer = PEERS[0]
    scorer = _scorer({peer})
    for _ in range(3):
        scorer.on_invalid_message(peer, TOPIC)
    left_at = scorer.score(peer, [TOPIC])
    assert left_at < 0
    scorer.remove_peer(peer)
    for _ in range(LIFTED):
        scorer.on_heartbeat()
    assert scorer.score(peer, [TOPIC]) == left_at
    scorer.returned(peer)
    assert scorer.score(peer, [TOPIC]) == left_at
    scorer.on_heartbeat()
    assert left_at < scorer.score(peer, [TOPIC]) < 0


def test_counters_made_after_a_peer_left_are_forgotten_at_the_heartbeat() -> None:
    """An invalid message judged just after its peer left (scoring 0, so not retained) made counters that nothing
    removed, nor the peer's return, as score() does for any peer; the heartbeat forgets the counters of peers neither
    connected nor retained, and keeps the others'."""
    stays, leaves, retained = PEERS[:3]
    scorer = _scorer({stays})
    scorer.on_invalid_message(retained, TOPIC)
    scorer.remove_peer(retained)
    scorer.remove_peer(leaves)
    scorer.on_invalid_message(leaves, TOPIC)
    scorer.on_invalid_message(stays, TOPIC)
    scorer.score(PEERS[3], [TOPIC])
    scorer.on_heartbeat()
    assert set(scorer.invalid_messages) == {stays}
    assert not {leaves, PEERS[3]} & {peer for name in ("time_in_mesh", "behavior_penalty", "equivocation_penalties")
                                     for peer in getattr(scorer, name)}
    assert retained in scorer.retained and scorer.score(retained, [TOPIC]) < 0


def test_peer_scoring_refuses_a_bad_retain_period_or_cap() -> None:
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="retain_score"):
            PeerScoring(retain_score=bad)
    with pytest.raises(ValueError, match="retained_peers"):
        PeerScoring(retained_peers=-1)
