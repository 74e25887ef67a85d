"""The slots of a node's outbound sync sessions (gossip.sync_service): at most `total` sessions at once, which bounds
what they hold in memory and the streams they keep open; handed out first come, first served, except to a session
that a catch-up holding signing back needs (the start's, key rotate's: node.daemon), which never waits behind one
it does not need.

Why: a peer answering each read just inside the sync timeout holds its slot up to a session's bound (10 minutes),
and peers that dial in cost an attacker nothing. Eight of them held every slot, and the start's catch-up round with
the one peer holding the org's records waited behind them: the node signed `timed_out`, perhaps at a used seq.

The rule: a needed session that finds no slot free ends one holding a slot and takes that slot, ahead of every session
waiting that is not needed. It ends the one that has held its slot longest among those not needed (a round with a peer
that dialled in, a gap fetch), else, if every slot is held by a needed one, the one that has held its slot longest among
those that have held it `least_turn` or longer (the daemon gives the sync timeout: at least one answer's time for each).
A needed session may also name, as it asks, sessions in its way to end (SyncService: the fetches of gaps with its peer,
which hold that peer's turn or wait for it). It takes its place among those waiting before they are ended, and they
count among the sessions ended for the needed ones waiting: the first slot they free goes to it, or to a needed one that
asked before it, whose slot to come then goes to it; no needed one ends a session for a slot one of them frees (else
that slot would go to a session waiting, and the needed one, still without one, would end a second). An ended session
fails (SyncService counts it "preempted"); the records it had verified are stored as it ends, before its slot is
handed on (one batch at most: SyncService's accept_records or accept_bytes, and a page: a durable commit, some 0.15 s
for 2,499 records, less than fetching and verifying them again, some 0.6 s at benchmarks/sync.py's 4,000 records a
second, and no longer than any batch a session stores holds the event loop), and a later round or fetch goes on from
there. Whether a session is needed is asked when it asks for a slot, of the holders each time a
needed one waiting looks for one to end (it looks again as a holder's `least_turn` passes), and of every one waiting
whenever the caller says it may have changed (`needs_changed`: node.daemon does as a catch-up ends, as a peer's round
proves the org's records in or shows it holds none, and as a peer comes or goes among those the node dials;
SyncService as a peer connects or disconnects, a round with a peer not connected being needed by none), which has the
needed ones waiting look at once: a holder no longer needed is ended then, not a turn later, and one waiting no
longer needed goes back among the others, in the order they asked, and ends nothing.

Weighed and not taken: one slot kept for needed rounds (one hostile peer the node dials, a bootstrap address taken
over or a fresh key that an org inside the horizon vouched for and gave an `org` record, holds it for 10 minutes); a
slot for each peer the node dials (up to [limits] max_peers sessions' memory, 50 x ~13 MiB).

Limits: when as many needed sessions stall as there are slots (that many of the peers the node dials are hostile),
needed ones take turns of `least_turn` at least, in the order they asked: one waits a turn for each `total` waiting
ahead of it, and one whose own part (the heads, then the org's records) takes longer than its turn may be ended
before it is done while another waits; its peer's next round (its next connection, or a periodic round) tries again.
Inbound sessions share none of these slots: a peer's requests hold one of SyncService's `max_inbound` only while
each is decoded and answered, never while the peer is slow to send or read, so stallers there cannot delay a round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import trio


@dataclass(eq=False)
class Slot:
    """One slot held: its session runs inside `scope`, which SessionSlots cancels (and sets `ended`) to end it for a
    needed session."""

    needed: Callable[[], bool]
    since: float
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    ended: bool = False


@dataclass(eq=False)
class Place:
    """A session's place among those asking for a slot (SessionSlots.queued): waiting, or handed its slot."""

    needed: Callable[[], bool]
    first: bool  # needed, as last asked: it goes ahead of those not, and ends a session if none is free
    handed: Slot | None = None
    woken: trio.Event = field(default_factory=trio.Event)  # handed a slot, or `needs_changed`


class SessionSlots:
    """At most `total` outbound sessions at once, needed ones first (module docstring)."""

    def __init__(self, total: int, *, least_turn: float) -> None:
        if total < 1 or least_turn < 0:
            raise ValueError("SessionSlots: at least one slot, and a turn of 0 s or more")
        self.total = total
        self._least_turn = least_turn
        self._held: list[Slot] = []  # in the order taken, oldest first
        self._waiting: list[Place] = []  # in the order they asked
        self._ending = 0  # slots ended for a needed session waiting, not yet given back

    def needs_changed(self) -> None:
        """Which sessions are needed may have changed (a catch-up began or ended, one of its peers turned out to
        hold none of the org's records, or a peer came or went among those the node dials): ask those waiting again,
        and wake the needed ones to end at once a holder no longer needed, not when a holder's `least_turn` is up."""
        for place in self._waiting:
            place.first = place.needed()
            if place.first:
                place.woken.set()

    @contextmanager
    def queued(self, needed: Callable[[], bool], *, ending: Iterable[Slot] = ()) -> Iterator[Place]:
        """A place among the sessions asking for a slot, taken at once (with a free slot, if one is), then `ending`'s
        sessions ended for it, a needed one (module docstring); `taken` waits for its slot. Whatever it was handed is
        given back as the block ends (SyncService._turn_and_slot waits for its peer's turn in the block)."""
        place = Place(needed, needed())
        if len(self._held) < self.total:  # (a slot is free only while nobody waits: _give_back hands it on)
            place.handed = self._held_by(needed)
        else:
            self._waiting.append(place)
        for slot in ending:
            self._end(slot)
        try:
            yield place
        finally:
            if place.handed is not None:
                self._give_back(place.handed)
            else:
                self._waiting.remove(place)

    async def taken(self, place: Place) -> Slot:
        """`place`'s slot, once handed; a needed one ends sessions for it meanwhile (module docstring)."""
        while place.handed is None:
            with trio.move_on_at(self._end_for_needed() if place.first else math.inf):
                await place.woken.wait()
            place.woken = trio.Event()
        return place.handed

    def _held_by(self, needed: Callable[[], bool]) -> Slot:
        slot = Slot(needed, trio.current_time())
        self._held.append(slot)
        return slot

    def _end_for_needed(self) -> float:
        """End sessions for the needed ones waiting, as many as can be ended now (module docstring); when to look
        again (the next time a holder will have had `least_turn`), or never if each waiting has one coming, or if
        every slot held was ended (_give_back wakes them as one comes back, handed on)."""
        now = trio.current_time()
        needed_waiting = sum(place.first for place in self._waiting)
        while self._ending < needed_waiting:
            running = [slot for slot in self._held if not slot.ended]
            victim = next((slot for slot in running if not slot.needed()), None)
            if victim is None:
                # (as the wake below reckons it: now - since can fall short of the turn at since + least_turn)
                victim = next((slot for slot in running if slot.since + self._least_turn <= now), None)
            if victim is None:
                return min((slot.since + self._least_turn for slot in running), default=math.inf)
            self._end(victim)
        return math.inf

    def _end(self, slot: Slot) -> None:
        """End `slot`'s session for the needed ones waiting (once: it may be both in a needed one's way and the
        oldest); its slot comes back through _give_back."""
        if not slot.ended:
            slot.ended = True
            slot.scope.cancel()
            self._ending += 1

    def _give_back(self, slot: Slot) -> None:
        """Free `slot`, or hand it to the first needed session waiting, else the first other one. A slot that was
        ended wakes the needed ones still waiting: with every slot held ended, they had no holder's turn to wait for,
        and would otherwise wait for the next holder's whole session, not its turn."""
        self._held.remove(slot)
        if slot.ended:
            self._ending -= 1
        place = next((place for place in self._waiting if place.first), None)
        if place is None and self._waiting:
            place = self._waiting[0]
        if place is not None:
            self._waiting.remove(place)
            place.handed = self._held_by(place.needed)
            place.woken.set()
        if slot.ended:
            for waiting in self._waiting:
                if waiting.first:
                    waiting.woken.set()
