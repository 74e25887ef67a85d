"""gossip.gap_queue: issuers' ranges served in turn, one fetch per issuer at a time, ranges merged, bounded, those no
peer was there to answer for kept for a peer to come; and the backoff after a vain fetch (DESIGN.md §5)."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gossip.gap_queue import Added, GapBatch, GapQueue

ISSUERS = [f"did:key:z{i}" for i in range(5)]
LIMIT = 3
BACKOFF = (1.0, 8.0)

reports = st.tuples(st.just("add"), st.sampled_from(ISSUERS), st.integers(1, 50), st.integers(0, 50),
                    st.sampled_from(["12D3KooWA", "12D3KooWB", None]))
# no peer was there to answer; a peer's turn given up; a peer began to send the ranges and left (or said to come back
# later and stays: "begun_busy"), another answering without the rest; a peer answered part of the ranges, none the
# rest ("short"); the fetch stopped at its time bound ("overdue"); a peer answered without the ranges (the clock stays
# at 0: the issuers back off for good)
outcomes = st.sampled_from(["answered", "peerless", "behind", "begun", "begun_busy", "short", "overdue", "vain"])
# a peer connects ("peer"), or is there ("poll"); a peer's turn comes free ("turn"), or its Busy wait ends ("wait")
steps = st.lists(st.one_of(reports, st.tuples(st.just("take"), st.integers(1, 3)),
                           st.tuples(st.just("done"), outcomes),
                           st.sampled_from([("peer",), ("poll",), ("turn",), ("wait",)])),
                 max_size=60)


def _add(iss: str) -> tuple[str, str, int, int, str]:
    return ("add", iss, 1, 0, "12D3KooWA")


@settings(max_examples=300)
@given(steps)
@example([("add", ISSUERS[0], 1, 0, "12D3KooWA"), ("add", ISSUERS[1], 1, 0, "12D3KooWB"), ("take", 1),
          ("add", ISSUERS[0], 2, 0, "12D3KooWA"), ("done", "answered"), ("take", 1)])  # grew while fetched: second
@example([("add", ISSUERS[0], 1, 0, "12D3KooWA"), ("take", 1), ("add", ISSUERS[1], 1, 0, "12D3KooWA"),
          ("add", ISSUERS[2], 1, 0, "12D3KooWA"), ("add", ISSUERS[3], 1, 0, "12D3KooWA"), ("done", "peerless"),
          ("take", 3), ("done", "behind"), ("take", 1), ("peer",), ("take", 3), ("turn",), ("take", 3)])  # kept
@example([*map(_add, ISSUERS[:3]), ("take", 3), ("done", "behind"), _add(ISSUERS[3]), _add(ISSUERS[4]), ("turn",),
          ("take", 3)])  # the ranges kept for a peer's turn fill the queue: new issuers take their places
@example([_add(ISSUERS[0]), ("take", 1), ("done", "vain"), _add(ISSUERS[0]), _add(ISSUERS[1]), ("take", 1),
          ("done", "peerless"), _add(ISSUERS[2]), _add(ISSUERS[3]), _add(ISSUERS[0]), _add(ISSUERS[4]),
          ("take", 3)])  # one backing off makes room first, then one kept; one backing off takes no one's place
@example([*map(_add, ISSUERS[:3]), ("add", ISSUERS[3], 1, 0, "12D3KooWB"), ("add", ISSUERS[4], 1, 0, "12D3KooWB"),
          ("take", 3), ("take", 3)])  # B's first takes the place of A's newest; its second would only trade places
@example([_add(ISSUERS[0]), ("take", 1), _add(ISSUERS[1]), _add(ISSUERS[2]), _add(ISSUERS[0]),
          ("add", ISSUERS[3], 1, 0, None), ("done", "answered"), ("take", 3)])  # a range grown as fetched makes room
@example([_add(ISSUERS[0]), _add(ISSUERS[1]), ("take", 1), ("take", 1), ("done", "begun"), ("done", "peerless"),
          ("poll",), ("take", 3), ("peer",), ("take", 3)])  # the rest of a range begun waits for a peer to connect
@example([_add(ISSUERS[0]), ("take", 1), ("done", "begun_busy"), *map(_add, ISSUERS[1:4]), ("wait",),
          ("take", 3)])  # a range kept for a peer's wait makes room, and that wait's end frees nothing
@example([_add(ISSUERS[0]), _add(ISSUERS[1]), ("take", 1), ("take", 1), ("done", "begun_busy"), ("done", "begun"),
          ("poll",), ("wait",), ("take", 3), ("peer",), ("take", 3)])  # the rest of one begun by a busy peer: its wait
@example([_add(ISSUERS[0]), ("take", 1), ("done", "peerless"), ("peer",), ("take", 1), ("done", "peerless"),
          ("peer",), ("take", 1)])  # a kept range a connecting peer freed, again unanswered, backs off: not freed
@example([_add(ISSUERS[0]), _add(ISSUERS[1]), ("take", 1), ("done", "short"), ("take", 1), ("take", 1),
          ("done", "answered"), ("done", "short"), ("take", 1), ("done", "short"), ("take", 1)])  # then it backs off
@example([_add(ISSUERS[0]), ("take", 1), *map(_add, ISSUERS[1:4]), ("done", "short"), ("take", 3)])  # no room: dropped
@example([_add(ISSUERS[0]), ("take", 1), *map(_add, ISSUERS[1:4]), ("done", "overdue"), ("take", 3)])  # likewise
def test_issuers_are_served_in_turn_one_fetch_each_within_the_bound(script):
    """Fetches that bring something, that no peer was there to answer, that gave up a peer's turn, that a peer began
    to answer and left or said to come back later (another answering without the rest), or in vain: their ranges wait
    for a peer that connects ("peer") or is there ("poll": not for the rest of a range begun), that turn ("turn"), the
    wait's end of the peer that began it and said to come back later ("wait"), a report, or the backoff
    to end (never here: the next tests), within the bound, where a new issuer's range takes the place of one not in
    turn (one backing off, else one kept for a peer, else for a peer's turn), else of the newest of the peer whose
    reports hold the most places if that is two more than its own peer's, unless it backs off itself: one is never
    refused for ranges kept waiting, nor for those of a peer holding more than its share."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    fetching: list[GapBatch] = []
    wanted: dict[str, tuple[int, int]] = {}  # what the queue should hold, merged, in the order each came to be held
    reporters: dict[str, list[str]] = {}  # issuers of `wanted` -> the peers to ask first, the first standing for it
    ready: dict[str, list[str]] = {}  # issuers that may be fetched -> the batches taken since, by their first issuer
    # issuers of `wanted` waiting -> for what: "peer" (to connect or be there), "newcomer" (to connect), "busy" (to
    # connect, or 12D3KooWB's wait to end) or "turn" (of 12D3KooWB's)
    kept: dict[str, str] = {}
    backing_off: set[str] = set()  # issuers whose last fetch was in vain, or found none to answer as a peer came
    # issuers of `wanted` whose kept ranges were freed as a peer came ("peer", "poll", "wait")
    freed_as_a_peer_came: set[str] = set()
    parked: dict[str, None] = {}  # those of them with a range waiting, in the order they came to wait
    shorts: dict[str, int] = {}  # issuers of `wanted` whose last fetches were short: how many in a row
    for step in script:
        if step[0] == "add":
            _, iss, first, span, origin = step
            was = wanted.get(iss)
            added = queue.add(origin, {iss: (first, first + span)}, every=False)
            displaced = 0
            if was is None and len(wanted) == LIMIT:
                waiting = [*parked, *(each for each in kept if kept[each] in ("peer", "newcomer", "busy")),
                           *(each for each in kept if kept[each] == "turn")]
                held = Counter(reporters[each][0] if reporters[each] else None for each in wanted)
                most = max(held.values())
                if not waiting and most >= held[origin] + 2:  # one crowding the newcomer's peer out: its newest
                    waiting = [next(each for each in reversed(wanted)
                                    if held[reporters[each][0] if reporters[each] else None] == most)]
                if iss in backing_off or not waiting:
                    assert added == Added(dropped=1)
                    assert iss in backing_off or max(held.values()) <= held[origin] + 1  # (an even share)
                    continue
                wanted.pop(waiting[0])
                reporters.pop(waiting[0])
                parked.pop(waiting[0], None)
                kept.pop(waiting[0], None)
                ready.pop(waiting[0], None)
                freed_as_a_peer_came.discard(waiting[0])
                shorts.pop(waiting[0], None)
                displaced = 1
            wanted[iss] = (first, first + span) if was is None else (min(was[0], first), max(was[1], first + span))
            if was is None:
                reporters[iss] = []
                freed_as_a_peer_came.discard(iss)
            if origin is not None and origin not in reporters[iss] and len(reporters[iss]) < 3:
                reporters[iss].append(origin)
            assert added == (Added(queued=1, displaced=displaced) if was is None
                             else Added(merged=1, released=int(iss in kept)))
            kept.pop(iss, None)  # (a report: a peer is there to ask)
            if iss in parked or any(iss in batch.gaps for batch in fetching):
                continue
            if iss in backing_off:
                parked[iss] = None
            else:
                ready.setdefault(iss, [])
        elif step[0] == "take":
            batch = queue.take(step[1], 0.0)
            assert (batch is None) == (not ready)
            if batch is None:
                continue
            assert 1 <= len(batch.gaps) <= step[1]
            assert batch.came == freed_as_a_peer_came.intersection(batch.gaps)
            assert batch.shorts == {iss: shorts.pop(iss) for iss in batch.gaps if iss in shorts}
            freed_as_a_peer_came.difference_update(batch.gaps)
            for iss, gap in batch.gaps.items():
                assert wanted.pop(iss) == gap  # every report of it merged into the range taken
                assert batch.origins == tuple(reporters.pop(iss))
                del ready[iss]  # (a KeyError if it was not to be fetched: already being fetched, say)
            for taken in ready.values():
                taken.append(next(iter(batch.gaps)))
            fetching.append(batch)
        elif step[0] in ("peer", "poll", "turn", "wait"):
            awaited_by = {"peer": ("peer", "newcomer", "busy"), "poll": ("peer",), "turn": ("turn",),
                          "wait": ("busy",)}[step[0]]
            freed = [iss for iss, awaited in kept.items() if awaited in awaited_by]
            assert queue.awaited_waits == ({"12D3KooWB"} if "busy" in kept.values() else set())
            came = (queue.turn_freed("12D3KooWB") if step[0] == "turn" else queue.wait_over("12D3KooWB")
                    if step[0] == "wait" else queue.peer_came("12D3KooWC" if step[0] == "peer" else None))
            assert came == bool(freed)
            for iss in freed:
                ready[iss] = []
                del kept[iss]
                if step[0] in ("peer", "wait"):
                    reporters[iss] = ["12D3KooWC" if step[0] == "peer" else "12D3KooWB"]
                if step[0] != "turn":
                    freed_as_a_peer_came.add(iss)
        elif fetching:
            batch, outcome = fetching.pop(0), step[1]
            if outcome == "vain":
                queue.done(batch, list(batch.gaps), 0.0)
                backing_off.update(batch.gaps)
                parked.update(dict.fromkeys(iss for iss in batch.gaps if iss in wanted))
                continue
            if outcome in ("short", "overdue"):  # short: the rest in turn at once, twice in a row; then after a backoff
                unkept = queue.done(batch, [], 0.0, short=list(batch.gaps), overdue=list(batch.gaps)
                                    if outcome == "overdue" else ())
                for iss, (first, last) in batch.gaps.items():
                    count = batch.shorts.get(iss, 0) + 1 if outcome == "short" else 3
                    if count > 2:
                        backing_off.add(iss)
                    if iss not in wanted and len(wanted) == LIMIT:
                        unkept -= 1
                        continue
                    was = wanted.get(iss, (first, last))
                    wanted[iss] = (min(was[0], first), max(was[1], last))
                    reporters.setdefault(iss, list(batch.origins))
                    if outcome == "short":
                        shorts[iss] = count
                    if count > 2:
                        parked[iss] = None
                    else:
                        ready[iss] = []
                assert unkept == 0
                continue
            if outcome == "peerless":
                unkept = queue.done(batch, [], 0.0, peerless=list(batch.gaps))
            elif outcome == "behind":
                unkept = queue.done(batch, [], 0.0, unanswered=list(batch.gaps), behind="12D3KooWB")
            elif outcome in ("begun", "begun_busy"):
                busy = dict.fromkeys(batch.gaps, "12D3KooWB") if outcome == "begun_busy" else None
                unkept = queue.done(batch, [], 0.0, begun=list(batch.gaps), begun_by_busy=busy)
            else:
                unkept = queue.done(batch, [], 0.0)
            for iss, (first, last) in batch.gaps.items():
                if outcome == "peerless" and iss in batch.came:  # backs off, its range kept for that to end
                    backing_off.add(iss)
                    if iss in wanted or len(wanted) < LIMIT:
                        was = wanted.get(iss, (first, last))
                        wanted[iss] = (min(was[0], first), max(was[1], last))
                        reporters.setdefault(iss, list(batch.origins))
                        parked[iss] = None
                    else:
                        unkept -= 1
                    continue
                if iss in wanted:
                    ready[iss] = []
                    if outcome != "answered":
                        was = wanted[iss]
                        wanted[iss] = (min(was[0], first), max(was[1], last))
                elif outcome != "answered" and len(wanted) < LIMIT:
                    wanted[iss] = (first, last)
                    kept[iss] = {"peerless": "peer", "begun": "newcomer", "begun_busy": "busy",
                                 "behind": "turn"}[outcome]
                    reporters[iss] = ["12D3KooWB"] if outcome == "behind" else list(batch.origins)
                elif outcome != "answered":
                    unkept -= 1  # no room to keep it: dropped, and counted
            assert unkept == 0
        assert len(queue) == len(wanted) <= LIMIT and queue.awaiting_peer == ("peer" in kept.values())
        # in turn: while an issuer may be fetched, no other leads two batches (one may ride along with another's,
        # asked of the same peers in the same session: that costs the waiting issuer no turn)
        assert all(len(taken) == len(set(taken)) for taken in ready.values())


def test_a_vain_fetch_backs_off_doubling_to_the_most_and_a_fetch_that_brings_something_ends_it():
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    iss = ISSUERS[0]
    now, waits = 0.0, []
    for _ in range(6):
        queue.add("12D3KooWA", {iss: (1, 5)}, every=False)
        batch = queue.take(1, now)
        assert batch is not None and queue.take(1, now) is None
        queue.done(batch, [iss], now)
        queue.add("12D3KooWA", {iss: (1, 6)}, every=False)  # reported again while it backs off
        assert queue.take(1, now) is None
        waits.append(queue.ready_at() - now)
        now = queue.ready_at()
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    batch = queue.take(1, now)
    assert batch is not None
    queue.done(batch, [], now)  # it brought something
    queue.add("12D3KooWA", {iss: (7, 9)}, every=False)
    assert queue.take(1, now) is not None  # at once


def _taken_after_a_vain_fetch(queue: GapQueue, iss: str) -> GapBatch:
    """`iss`'s range (1, 6), taken as the backoff (a second) after a vain fetch of (1, 5) ends."""
    queue.add("12D3KooWA", {iss: (1, 5)}, every=False)
    batch = queue.take(1, 0.0)
    assert batch is not None
    queue.done(batch, [iss], 0.0)  # in vain: 1 s
    queue.add("12D3KooWA", {iss: (1, 6)}, every=False)
    batch = queue.take(1, 1.0)
    assert batch is not None
    return batch


def test_a_fetch_no_peer_answered_neither_doubles_nor_ends_a_backoff_and_leaves_the_issuer_ready():
    """A peer asked that stayed, its session ended by one of ours (a round a catch-up needs, say), proved nothing of
    the range: the next report is fetched at once, and such fetches cannot make a vain issuer's backoff start again
    from a second."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    iss = ISSUERS[0]
    batch = _taken_after_a_vain_fetch(queue, iss)
    queue.add("12D3KooWA", {iss: (1, 7)}, every=False)  # reported again while fetched
    queue.done(batch, [], 1.0, unanswered=[iss])
    batch = queue.take(1, 1.0)
    assert batch is not None and batch.gaps == {iss: (1, 7)}  # at once
    queue.done(batch, [iss], 1.0)  # in vain again: twice the last
    assert queue.ready_at() == 3.0
    queue.add("12D3KooWA", {iss: (1, 8)}, every=False)
    batch = queue.take(1, 3.0)
    assert batch is not None
    queue.done(batch, [], 3.0, unanswered=[iss])  # and nothing came meanwhile: forgotten, as an ended backoff is
    queue.add("12D3KooWA", {iss: (1, 9)}, every=False)
    batch = queue.take(1, 3.0)
    assert batch is not None  # at once
    queue.done(batch, [iss], 3.0)
    assert queue.ready_at() == 4.0  # a second again


def test_a_range_no_peer_was_there_to_answer_for_waits_for_the_next_peer_then_is_asked_of_it_first():
    """Kept, not dropped: the peers asked left before answering (or none could be asked), and the range would
    otherwise wait for the issuer's next report or a periodic round, though a peer holding it connected. Its backoff
    is neither ended nor doubled."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    iss = ISSUERS[0]
    batch = _taken_after_a_vain_fetch(queue, iss)
    queue.done(batch, [], 1.0, peerless=[iss])
    assert len(queue) == 1 and queue.take(1, 1.0) is None and queue.ready_at() == math.inf  # waits for a peer
    assert queue.peer_came("12D3KooWB")
    batch = queue.take(1, 1.0)
    assert batch == GapBatch({iss: (1, 6)}, ("12D3KooWB",), every=False, came=frozenset({iss}))
    assert not queue.peer_came("12D3KooWC")  # none waits
    queue.done(batch, [iss], 1.0)  # in vain again
    assert queue.ready_at() == 3.0  # twice the last wait, not a second again


def test_the_rest_of_a_range_begun_waits_for_a_peer_that_connects_its_backoff_ended():
    """A peer began to send the range, then left; another answered without the rest: the fetch brought something,
    so a backoff the issuer had ends (its next vain fetch waits a second, not twice its last: no test held that,
    stop 42's read), the rest kept for a peer that connects, asked first."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    iss = ISSUERS[0]
    batch = _taken_after_a_vain_fetch(queue, iss)
    queue.done(batch, [], 1.0, begun=[iss])
    assert queue.take(1, 1.0) is None
    assert queue.peer_came("12D3KooWB")
    batch = queue.take(1, 1.0)
    assert batch == GapBatch({iss: (1, 6)}, ("12D3KooWB",), every=False, came=frozenset({iss}))
    queue.done(batch, [iss], 1.0)  # in vain
    assert queue.ready_at() == 2.0  # a second, as after a fetch that brought something


def test_ranges_kept_for_a_peer_stay_within_the_bound_and_give_their_places_to_new_issuers():
    """Hostile peers that leave before answering cannot grow the queue past `limit`: a range kept for a peer takes
    a place, and one that finds the queue full is dropped (the periodic round repairs it), and counted (stop 40's
    reader: it was dropped unseen); nor keep a new issuer's gap out: it takes the place of the longest kept."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    for iss in ISSUERS[:2]:
        queue.add("12D3KooWA", {iss: (1, 5)}, every=False)
    batch = queue.take(2, 0.0)
    assert batch is not None
    for iss in ISSUERS[2:2 + LIMIT]:
        queue.add("12D3KooWA", {iss: (1, 5)}, every=False)
    assert queue.done(batch, [], 0.0, peerless=list(batch.gaps)) == 2  # dropped, and counted: no room
    assert len(queue) == LIMIT and not queue.peer_came("12D3KooWB")
    batch = queue.take(LIMIT, 0.0)
    assert batch is not None
    assert queue.done(batch, [], 0.0, peerless=list(batch.gaps)) == 0
    assert len(queue) == LIMIT and queue.take(1, 0.0) is None
    assert queue.add("12D3KooWA", {ISSUERS[2]: (1, 6)}, every=False) == Added(merged=1, released=1)  # in turn now
    assert queue.add("12D3KooWA", {ISSUERS[0]: (1, 5)}, every=False) == Added(queued=1, displaced=1)  # ISSUERS[3]'s
    assert queue.take(LIMIT, 0.0) == GapBatch({ISSUERS[2]: (1, 6), ISSUERS[0]: (1, 5)}, ("12D3KooWA",), every=False)
    assert queue.peer_came("12D3KooWB")
    assert queue.take(LIMIT, 0.0) == GapBatch({ISSUERS[4]: (1, 5)}, ("12D3KooWB",), every=False,
                                               came=frozenset({ISSUERS[4]}))


def test_a_new_issuer_takes_the_place_of_a_range_kept_for_a_peer_s_turn_and_its_backoff_goes_with_it():
    """Found by stop 39's review: a hostile peer, the only one there, holding its turn (a session answering just in
    time, up to session_seconds) had the range of each fetch that gave up waiting for that turn kept, up to the
    bound, and every other issuer's gap dropped meanwhile. A backoff kept with a range displaced goes with it: nothing
    would end it, and the issuer's next gap would wait for good."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    first = ISSUERS[0]
    batch = _taken_after_a_vain_fetch(queue, first)  # at 1 s
    queue.done(batch, [], 1.0, unanswered=[first], behind="12D3KooWB")  # kept for B's turn, with its backoff
    for iss in ISSUERS[1:LIMIT]:
        queue.add("12D3KooWB", {iss: (1, 5)}, every=False)
        batch = queue.take(1, 1.0)
        assert batch is not None
        queue.done(batch, [], 1.0, unanswered=[iss], behind="12D3KooWB")
    assert len(queue) == LIMIT and queue.take(1, 1.0) is None
    honest = ISSUERS[LIMIT]
    assert queue.add("12D3KooWA", {honest: (1, 1)}, every=False) == Added(queued=1, displaced=1)
    batch = queue.take(LIMIT, 1.0)
    assert batch == GapBatch({honest: (1, 1)}, ("12D3KooWA",), every=False)  # at once
    queue.done(batch, [], 1.0)
    assert queue.turn_freed("12D3KooWB")
    batch = queue.take(LIMIT, 1.0)
    assert batch is not None and list(batch.gaps) == ISSUERS[1:LIMIT]  # the first one kept made room
    queue.done(batch, [], 1.0)
    assert queue.add("12D3KooWA", {first: (1, 7)}, every=False) == Added(queued=1)
    assert queue.take(1, 1.0) == GapBatch({first: (1, 7)}, ("12D3KooWA",), every=False)  # at once


def test_a_new_issuer_takes_the_place_of_one_backing_off_when_the_queue_is_full():
    """Fresh keys vouched into the horizon cost an org nothing: `limit` of them with gaps no peer has kept every other
    issuer's gaps out, each dropped until a periodic round."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    parked = ISSUERS[:LIMIT]
    for iss in parked:
        queue.add("12D3KooWA", {iss: (1, 5)}, every=False)
        batch = queue.take(1, 0.0)
        assert batch is not None
        queue.done(batch, list(batch.gaps), 0.0)  # in vain
        queue.add("12D3KooWA", {iss: (1, 6)}, every=False)  # reported again: waits while it backs off
    assert len(queue) == LIMIT and queue.take(1, 0.0) is None
    newcomer = ISSUERS[LIMIT]
    assert queue.add("12D3KooWB", {newcomer: (1, 1)}, every=False) == Added(queued=1, displaced=1)
    batch = queue.take(1, 0.0)
    assert batch is not None and list(batch.gaps) == [newcomer]  # at once
    assert queue.add("12D3KooWA", {parked[0]: (1, 7)}, every=False) == Added(queued=1)  # room again
    assert queue.add("12D3KooWA", {ISSUERS[LIMIT + 1]: (1, 1)}, every=False) == Added(queued=1, displaced=1)
    # parked[1], the longest waiting, made room; backing off, it displaces no one (the periodic round repairs it)
    assert queue.add("12D3KooWA", {parked[1]: (1, 7)}, every=False) == Added(dropped=1)
    assert queue.add("12D3KooWA", {parked[2]: (1, 7)}, every=False) == Added(merged=1)
    assert len(queue) == LIMIT


def test_a_range_no_peer_was_there_to_answer_for_grows_the_one_reported_while_it_was_fetched():
    """Kept into the range a report brought meanwhile, not replaced by it: the next fetch asks for both, of every peer
    if either was an org's history (the part only the first asked for would otherwise wait for a periodic round)."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    iss = ISSUERS[0]
    queue.add(None, {iss: (1, 9)}, every=True)  # its org entered the horizon
    batch = queue.take(1, 0.0)
    assert batch is not None
    queue.add("12D3KooWA", {iss: (12, 14)}, every=False)  # gossip's gap, meanwhile
    queue.done(batch, [], 0.0, peerless=[iss])
    assert queue.take(1, 0.0) == GapBatch({iss: (1, 14)}, ("12D3KooWA",), every=True)  # at once: a peer reported it


def test_a_range_whose_fetch_gave_up_a_peer_s_turn_waits_for_that_turn_then_is_asked_of_that_peer_first():
    """Kept, not forgotten: the session in its way was a fetch of other gaps. A peer connecting does not free it
    (the fetch would wait for that turn again), nor another peer's turn; its issuer's next report does, as before."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    iss, held = ISSUERS[:2]
    for each in (iss, held):
        queue.add("12D3KooWA", {each: (1, 5)}, every=False)
        batch = queue.take(1, 0.0)
        assert batch is not None
        queue.done(batch, [], 0.0, unanswered=[each], behind="12D3KooWB")
    assert len(queue) == 2 and queue.take(1, 0.0) is None and not queue.awaiting_peer
    assert not queue.peer_came("12D3KooWC") and not queue.turn_freed("12D3KooWA")
    assert queue.add("12D3KooWA", {held: (1, 6)}, every=False) == Added(merged=1, released=1)
    assert queue.turn_freed("12D3KooWB") and not queue.turn_freed("12D3KooWB")
    assert queue.take(1, 0.0) == GapBatch({held: (1, 6)}, ("12D3KooWB", "12D3KooWA"), every=False)
    assert queue.take(1, 0.0) == GapBatch({iss: (1, 5)}, ("12D3KooWB",), every=False)


def test_a_range_grown_as_fetched_that_makes_room_leaves_the_fetch_s_backoff_to_double():
    """An issuer whose backoff ended is fetched with its backoff kept, for a vain fetch to double; a range of it
    reported meanwhile, taken as the newest of the peer crowding the queue (`_crowding`) to make room, took that
    backoff with it, so the vain fetch waited a second again, not twice its last (stop 42's read): a peer that fills
    the queue had its own issuer's fetches in vain come every second."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    iss = ISSUERS[0]
    batch = _taken_after_a_vain_fetch(queue, iss)  # its backoff of a second over
    for other in ISSUERS[1:3]:
        queue.add("12D3KooWA", {other: (1, 5)}, every=False)
    queue.add("12D3KooWA", {iss: (7, 9)}, every=False)  # reported as it is fetched: A's newest, of three
    assert queue.add("12D3KooWB", {ISSUERS[3]: (1, 5)}, every=False) == Added(queued=1, displaced=1)
    queue.done(batch, [iss], 1.0)  # in vain
    assert queue.ready_at() == 3.0  # twice the last wait


def test_a_peer_reporting_fresh_issuers_gaps_by_the_hundred_cannot_keep_another_peer_s_gaps_out():
    """Found by stop 40's reader: ranges waiting in turn took no one's place, so a peer reporting fresh issuers' gaps
    faster than they were fetched (keys vouched into the horizon cost an org nothing) filled the queue, and every other
    peer's gaps were dropped until a periodic round. A peer holding two places fewer than the one holding the most
    takes the newest of that one's: the two share the queue evenly, and no more."""
    queue = GapQueue(256, backoff=BACKOFF)
    flood = [f"did:key:zFresh{i}" for i in range(1000)]
    assert queue.add("12D3KooWA", dict.fromkeys(flood, (1, 4)), every=False) == Added(queued=256, dropped=744)
    honest = [f"did:key:zHonest{i}" for i in range(200)]
    added = [queue.add("12D3KooWB", {iss: (1, 1)}, every=False) for iss in honest]
    assert added == [Added(queued=1, displaced=1)] * 128 + [Added(dropped=1)] * 72
    assert queue.add("12D3KooWA", {flood[0]: (1, 5)}, every=False) == Added(merged=1)  # its oldest were kept
    assert queue.add("12D3KooWA", {flood[200]: (1, 4)}, every=False) == Added(dropped=1)
    taken = [queue.take(64, 0.0) for _ in range(4)]
    assert [batch.origins for batch in taken if batch] == [("12D3KooWA",)] * 2 + [("12D3KooWB",)] * 2
    assert [iss for batch in taken if batch for iss in batch.gaps] == flood[:128] + honest[:128]


def test_a_kept_range_a_connecting_peer_freed_and_none_answered_for_again_backs_off_doubling():
    """Found by stop 42's brief: a peer connecting, leaving as asked, and connecting again had a kept range fetched
    at each connection. Once a range a connecting peer freed found none to answer again, it waits out the issuer's
    backoff (a connection frees it no more), twice as long each time, up to the most; then it is asked of the peers
    there, and kept for a peer to come again if none is."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    iss = ISSUERS[0]
    queue.add("12D3KooWA", {iss: (1, 5)}, every=False)
    batch = queue.take(1, 0.0)
    assert batch is not None
    queue.done(batch, [], 0.0, peerless=[iss])  # A left as it was asked: kept for a peer to come
    now = 1.0
    for wait in (1.0, 2.0, 4.0, 8.0, 8.0):
        assert queue.peer_came("12D3KooWA")  # it connects again
        batch = queue.take(1, now)
        assert batch is not None and batch.came == {iss}
        assert queue.done(batch, [], now, peerless=[iss]) == 0  # and leaves as asked
        assert not queue.peer_came("12D3KooWA") and queue.take(1, now) is None and queue.ready_at() == now + wait
        now += wait
        batch = queue.take(1, now)  # the backoff over, asked of the peers there: none is
        assert batch == GapBatch({iss: (1, 5)}, ("12D3KooWA",), every=False)
        queue.done(batch, [], now, peerless=[iss])
    assert len(queue) == 1 and queue.awaiting_peer


def test_a_crowd_of_peer_ids_holding_a_place_each_cannot_keep_the_gaps_of_a_peer_the_node_dials_out():
    """Found by stop 42's brief: the even share was a share per peer id, and ids cost nothing: 256 hostile peers (the
    host takes 300 connections), or peers come and gone, each reporting one fresh issuer's gap, held a place each,
    so no peer held two more than a peer the node dials that held none, and every gap it reported was dropped until
    a periodic round. The peers the node does not dial share one share: the peer it dials takes the newest of theirs,
    up to an even share, and a stranger reporting another fresh issuer takes no place back."""
    dialled = "12D3KooWDialled"
    queue = GapQueue(256, backoff=BACKOFF, own_share=lambda peer: peer == dialled)
    for i in range(256):
        assert queue.add(f"12D3KooWHostile{i}", {f"did:key:zFresh{i}": (1, 1)}, every=False) == Added(queued=1)
    honest = [f"did:key:zHonest{i}" for i in range(200)]
    added = [queue.add(dialled, {iss: (1, 1)}, every=False) for iss in honest]
    assert added == [Added(queued=1, displaced=1)] * 128 + [Added(dropped=1)] * 72
    assert queue.add("12D3KooWHostile300", {"did:key:zFresh300": (1, 1)}, every=False) == Added(dropped=1)
    taken = [queue.take(256, 0.0) for _ in range(129)]
    assert [iss for batch in taken if batch for iss in batch.gaps][-128:] == honest[:128]


def test_the_keys_one_org_vouched_in_hold_one_share_together_however_many_they_are():
    """Found by stop 44's brief: an org inside the horizon vouched 50 fresh keys in, each a peer the node dials with a
    share of its own; reporting fresh issuers' gaps, they held 50 shares of the queue, and a peer of another org held
    5 places of 256 at most, its other gaps dropped until a periodic round. The keys of one group (the org that
    vouched them in: gossip.peers) share one share."""
    group = {f"12D3KooWFresh{i}": "did:key:zPartner" for i in range(50)}
    queue = GapQueue(256, backoff=BACKOFF, group_of=group.get)
    for i in range(256):
        assert queue.add(f"12D3KooWFresh{i % 50}", {f"did:key:zFresh{i}": (1, 1)}, every=False) == Added(queued=1)
    honest = [f"did:key:zHonest{i}" for i in range(200)]
    added = [queue.add("12D3KooWHonest", {iss: (1, 1)}, every=False) for iss in honest]
    assert added == [Added(queued=1, displaced=1)] * 128 + [Added(dropped=1)] * 72


def test_a_range_whose_fetch_stopped_at_its_time_bound_waits_out_the_backoff_then_names_the_peers_tried():
    """Kept whatever else came of the fetch (part of it, or nothing from the peers it asked: those it did not ask may
    hold it), fetched again as the issuer's backoff ends, doubling while fetches stop so; the next fetch learns which
    peers to ask last (gossip.sync_service asks them after all others)."""
    queue = GapQueue(LIMIT, backoff=BACKOFF)
    iss = ISSUERS[0]
    queue.add("12D3KooWA", {iss: (1, 5)}, every=False)
    batch = queue.take(1, 0.0)
    assert batch is not None
    assert queue.done(batch, [], 0.0, short=[iss], overdue=[iss], tried=["12D3KooWA", "12D3KooWB"]) == 0
    assert len(queue) == 1 and queue.take(1, 0.0) is None and queue.ready_at() == 1.0
    batch = queue.take(1, 1.0)
    assert batch == GapBatch({iss: (1, 5)}, ("12D3KooWA",), every=False, tried=frozenset({"12D3KooWA", "12D3KooWB"}))
    queue.done(batch, [], 1.0, overdue=[iss], tried=["12D3KooWC"])
    assert queue.take(1, 1.0) is None and queue.ready_at() == 3.0  # twice the last wait
    batch = queue.take(1, 3.0)
    assert batch is not None and batch.tried == {"12D3KooWC"}
    queue.done(batch, [], 3.0)  # it brought the rest
    queue.add("12D3KooWA", {iss: (6, 6)}, every=False)
    assert queue.take(1, 3.0) == GapBatch({iss: (6, 6)}, ("12D3KooWA",), every=False)  # at once, asked in order
