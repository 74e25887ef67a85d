"""The ranges sync is asked to fetch (gossip's gaps, the histories of orgs entering the horizon), one entry per
issuer, served in turn (DESIGN.md §5: a gap → the missing range is fetched by sync).

Any issuer inside the horizon can sign past a seq it never publishes, and have every record after it reported as a gap,
hundreds a second. So an issuer has at most one fetch outstanding and one range waiting: what is reported meanwhile
grows that range instead of queueing again, and issuers are served in the order their ranges came to wait, so that one
issuer's gaps cannot crowd out another's. A fetch that brought nothing of an issuer's range (no peer asked had it)
leaves the issuer's next range waiting a while (`backoff`, doubling up to its most while fetches keep bringing nothing):
the reports go on, and each would otherwise be fetched in vain at once. A fetch no peer answered proves nothing and
changes no backoff: if no peer was there to answer (those asked left first, said to come back later, refused the sync
protocol or were on another network, or none could be asked), the range waits for a peer to ask (`peer_came`: one
connects, say, asked first, or one's wait ends), within the same `limit`; if, so freed, it again found none to answer
(the peer that connected left again, or the one whose wait ended said to come back later again), it waits out the
issuer's backoff first, doubled as for a vain fetch: a peer connecting again and again, or saying Busy for a second each
time, would otherwise have the range fetched at each connection, or each second; if a peer asked stayed, its session
ended by one of ours (given up waiting for the peer's turn, or preempted), the range waits for that peer's turn
(`turn_freed`), within the same `limit`. The rest of a range a peer began to send, then left or said to come back later,
another peer having answered without it, waits likewise for a peer that connects (`peer_came` with one: those there
answered), or, if that peer said to come back later and stays, for its wait to end (`wait_over`: it is asked first).
The rest of a range the peers asked sent part of waits in turn at once, SHORTS_AT_ONCE fetches in a row, then for the
issuer's backoff to end, doubled as for a vain fetch while fetches bring only part: a peer sending one record a fetch
would otherwise have the issuer fetched without pause. A range whose fetch stopped at its time bound waits for the
backoff to end likewise. Either is then asked of the peers its fetches did not ask first: those asked first again
(slow ones, or ones that sent all they hold) would keep those holding it from being asked.
When `limit` issuers wait, a new one takes the place of one not in turn: one that backs off (the longest waiting), else
one kept for a peer or a peer's turn (`_displace`): fresh keys vouched into the horizon cost an org nothing, and their
gaps no peer can fill, or a hostile peer that is the only one there holding its turn, would otherwise keep every other
issuer's out. Failing those, it takes the place of the newest range of the peer whose reports hold the most places, if
that peer holds two more than the one reporting it (`_crowding`): a peer reporting fresh issuers' gaps faster than they
are fetched would otherwise fill the queue with ranges in turn, and keep every other peer's out; each gets an even
share. The peers without a share of their own (`own_share`: those the node does not dial) count as one peer there: peer
ids cost nothing, and a crowd of them holding a place each would keep out every peer holding none; nor do the peers of
one group (`group_of`: the keys one org vouched into the horizon, each a peer the node dials) hold more than one. A
new one that backs off takes no one's place: it would not be in turn either. Sans-I/O: the caller gives the time.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

ORIGINS = 3  # peers kept per issuer that reported its gap (the records' publishers, asked first)
# fetches in a row that brought part of an issuer's range after which the rest waits out the issuer's backoff: before
# them, it is asked again at once (`done`'s `short`)
SHORTS_AT_ONCE = 2
_STRANGERS = ""  # the share the reports of peers without one of their own count in (`own_share`; no peer id is empty)


@dataclass
class _Wanted:
    first: int
    last: int
    origins: list[str] = field(default_factory=list)
    every: bool = False  # ask every connected peer (an org's history), not just a few
    came: bool = False  # kept for a peer, freed as one came (connected, or was there: `peer_came`; `wait_over`)
    shorts: int = 0  # fetches in a row that brought part of the range, the peers asked answering without the rest
    tried: frozenset[str] = frozenset()  # peers asked by the fetches of it before, stopped at their time bound or
    # short: asked last

    @property
    def route(self) -> tuple[tuple[str, ...], bool, frozenset[str]]:
        return tuple(self.origins), self.every, self.tried

    @property
    def by(self) -> str | None:
        """The peer whose report it stands for (the first asked), or None (an org's history, no peer's report)."""
        return self.origins[0] if self.origins else None


@dataclass(frozen=True)
class GapBatch:
    """Issuers' ranges to fetch in one go from the same peers: `origins` first, then others (all if `every`)."""

    gaps: dict[str, tuple[int, int]]
    origins: tuple[str, ...]
    every: bool
    came: frozenset[str] = frozenset()  # issuers whose kept ranges were freed as a peer came (`peer_came`, `wait_over`)
    shorts: Mapping[str, int] = field(default_factory=dict)  # issuers whose last fetches brought part: how many
    # in a row
    tried: frozenset[str] = frozenset()  # peers asked by fetches of these before (overdue, short): asked last


@dataclass(frozen=True)
class Added:
    """What one `add` did with its issuers' ranges."""

    queued: int = 0  # issuers that were not waiting
    merged: int = 0  # issuers already waiting or being fetched: their range grew
    dropped: int = 0  # issuers not waiting when `limit` issuers were (the next periodic round repairs them)
    displaced: int = 0  # issuers whose range made room for one of these: not in turn (backing off, or kept), or of
    # the peer whose reports held the most places (likewise)
    released: int = 0  # of those merged, issuers kept for a peer or a peer's turn: in turn now, one reported them


class GapQueue:
    """Issuers' missing ranges waiting for a fetch: at most `limit` issuers, one range each, served in turn; an
    issuer is in at most one batch at a time."""

    def __init__(self, limit: int, *, backoff: tuple[float, float],
                 own_share: Callable[[str], bool] = lambda peer: True,
                 group_of: Callable[[str], str | None] = lambda peer: None) -> None:
        """`backoff`: (first, most) seconds an issuer waits after a fetch that brought nothing of its range.
        `own_share(peer)`: whether a peer's reports count as a share of their own (`_crowding`: a peer the node dials,
        say); those of the others count as one share together. `group_of(peer)`: the share those of a peer with its own
        count in instead, that of its group (gossip.peers' GroupCap: the keys one org vouched into the horizon), or
        None."""
        self._limit = limit
        self._own_share = own_share
        self._group_of = group_of
        self._backoff_first, self._backoff_most = backoff
        self._wanted: dict[str, _Wanted] = {}  # issuers with a range waiting
        self._ready: deque[str] = deque()  # those of them that may be fetched now, in turn
        self._fetching: set[str] = set()
        self._backing_off: dict[str, tuple[float, float]] = {}  # issuer -> (until, seconds) after a vain fetch
        self._due: list[tuple[float, str]] = []  # heap of (until, issuer) of _backing_off
        self._parked: dict[str, None] = {}  # issuers of _wanted backing off, longest waiting first
        # issuers of _wanted waiting for a peer to ask, longest waiting first -> whether only one that connects will do
        self._peerless: dict[str, bool] = {}
        self._behind: dict[str, str] = {}  # issuers of _wanted waiting for a peer's turn (`turn_freed`) -> that peer
        # issuers of _peerless waiting for a peer to connect, or for the wait to end (`wait_over`) of the peer that
        # began to send their ranges, then said to come back later -> that peer
        self._after_wait: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._wanted)

    def add(self, origin: str | None, gaps: Mapping[str, tuple[int, int]], *, every: bool) -> Added:
        """Queue `gaps` (issuer -> (first, last)), reported by `origin` (asked first) if given; an issuer already
        waiting has its range grown to cover both."""
        queued = merged = dropped = displaced = released = 0
        for iss, (first, last) in gaps.items():
            wanted = self._wanted.get(iss)
            if wanted is None and len(self._wanted) >= self._limit:
                # (backing off, it would not be in turn either)
                if iss in self._backing_off or not self._displace(origin):
                    dropped += 1
                    continue
                displaced += 1
            if wanted is None:
                wanted = self._wanted[iss] = _Wanted(first, last)
                queued += 1
                if iss in self._backing_off:
                    if iss not in self._fetching:
                        self._parked[iss] = None
                elif iss not in self._fetching:
                    self._ready.append(iss)
            else:
                wanted.first, wanted.last = min(wanted.first, first), max(wanted.last, last)
                merged += 1
                if self._release(iss):
                    self._ready.append(iss)
                    released += 1
            wanted.every |= every
            if origin is not None and origin not in wanted.origins and len(wanted.origins) < ORIGINS:
                wanted.origins.append(origin)
        return Added(queued, merged, dropped, displaced, released)

    def _displace(self, by: str | None) -> bool:
        """Forget an issuer's range to make room for one `by` reported: one not in turn, backing off (the longest
        waiting; a peer asked answered without it), else one kept for a peer to come, else one kept for a peer's turn
        (the longest kept of each); else one in turn that crowds `by`'s out (`_crowding`); whether there was one. A
        backoff kept with a range goes with it, as in `done` (nothing would end it), but for one backing off, or one
        being fetched, whose `done` doubles or ends it."""
        if self._parked:
            victim = next(iter(self._parked))
            del self._parked[victim]
        else:
            kept = self._peerless or self._behind
            victim = next(iter(kept)) if kept else self._crowding(by)
            if victim is None:
                return False
            self._release(victim)
            if victim not in self._fetching:  # (its range grown as fetched: the fetch's `done` sees to its backoff)
                self._backing_off.pop(victim, None)
            if victim in self._ready:  # (one crowding: kept ones wait in no turn, nor do ranges grown as fetched)
                self._ready.remove(victim)
        del self._wanted[victim]
        return True

    def _crowding(self, by: str | None) -> str | None:
        """The newest range of the share whose reports hold the most places, if that share holds two more than
        `by`'s (one more, they would only trade places), else None: a peer reporting fresh issuers' gaps by the
        hundred (their keys cost an org nothing) cannot keep another's out of an even share of the queue, wherever
        those fetches are (waiting in turn, or their ranges grown as fetched). A share is a peer's with `own_share`,
        else the one all other peers' reports count in (peer ids cost nothing: a share each, a crowd of them holding a
        place each would keep out every peer holding none), or None's, no peer's: the histories of orgs."""
        shares = {by: self._share(by) for by in {wanted.by for wanted in self._wanted.values()}}
        held = Counter(shares[wanted.by] for wanted in self._wanted.values())
        most = max(held.values())
        if most < held[self._share(by)] + 2:
            return None
        return next(iss for iss in reversed(self._wanted) if held[shares[self._wanted[iss].by]] == most)

    def _share(self, by: str | None) -> str | None:
        """The share the reports of `by` count in (`_crowding`): its group's, if it is in one."""
        if by is None:
            return None
        return self._group_of(by) or by if self._own_share(by) else _STRANGERS

    def take(self, most: int, now: float) -> GapBatch | None:
        """The next issuer in turn, with up to `most` - 1 others after it that are to be asked of the same peers;
        None if none may be fetched now. Each is being fetched until `done`."""
        self._end_backoffs(now)
        if not self._ready:
            return None
        route = self._wanted[self._ready[0]].route
        taken: list[str] = []
        rest: deque[str] = deque()
        for iss in self._ready:
            (taken if len(taken) < most and self._wanted[iss].route == route else rest).append(iss)
        self._ready = rest
        gaps = {}
        came = set()
        shorts = {}
        for iss in taken:
            wanted = self._wanted.pop(iss)
            gaps[iss] = (wanted.first, wanted.last)
            if wanted.came:
                came.add(iss)
            if wanted.shorts:
                shorts[iss] = wanted.shorts
            self._fetching.add(iss)
        origins, every, tried = route
        return GapBatch(gaps, origins, every, came=frozenset(came), shorts=shorts, tried=tried)

    def done(self, batch: GapBatch, vain: Collection[str], now: float, unanswered: Collection[str] = (),
             peerless: Collection[str] = (), behind: str | None = None, begun: Collection[str] = (),
             begun_by_busy: Mapping[str, str] | None = None, short: Collection[str] = (),
             overdue: Collection[str] = (), tried: Collection[str] = ()) -> int:
        """The batch's fetch ended, bringing nothing of the ranges of the issuers in `vain`: those back off, twice as
        long as the last time if that fetch was in vain too; nor all of those in `unanswered` and `peerless`, no peer
        asked having answered: those do not back off, and a backoff they had is neither doubled nor ended (a fetch no
        peer answered proves nothing of the range, and cannot make a vain issuer's fetches come faster). The range of
        one in `peerless` (no peer was there to answer) is kept, waiting for `peer_came`, while fewer than `limit`
        issuers wait; that of one in `unanswered` (a peer asked stayed, its session ended by ours) is not, unless
        `behind` names that peer: then it waits for `turn_freed(behind)`, likewise. The rest of the range of one in
        `begun` (a peer asked began to send it, then left or said to come back later, and another answered without
        it) is kept likewise, for a peer that connects (`peer_came` with a peer: those there answered already), or,
        for one `begun_by_busy` names (the peer that began it, then said to come back later), for that peer's wait to
        end (`wait_over`), its backoff ended (the fetch brought something). A backoff is forgotten with its issuer's
        range, as an ended one is. An issuer whose range grew meanwhile and that does not back off waits again, behind
        the others. One in `peerless` whose kept range was freed as a peer came (`batch.came`) backs off as a vain one
        does, its range kept for its backoff to end. The rest of the range of one in `short` (the fetch brought part
        of it, the peers asked answering without the rest) is kept likewise, in turn at once, its backoff ended, for
        SHORTS_AT_ONCE such fetches in a row; after them, it waits out the issuer's backoff first, doubled as for a vain
        fetch (a peer sending one record a fetch would otherwise have the issuer fetched without pause). The range of
        one in `overdue` (the fetch stopped asking at its time bound, peers left to ask) waits out the issuer's backoff,
        doubled as for a vain fetch, kept, whatever else came of it. The next fetch of a range kept for either asks the
        peers `tried` (those this fetch and the ones before it asked) last. Returns how many ranges that were to be
        kept found no room (`limit` issuers waiting) and were dropped."""
        unkept = 0
        for iss in batch.gaps:
            self._fetching.discard(iss)
            if iss in vain:
                self._back_off(iss, now)
                if iss in self._wanted:
                    self._parked[iss] = None
                continue
            if iss in overdue:
                self._back_off(iss, now)
                if self._keep(iss, batch, None, parked=True):
                    self._wanted[iss].tried = frozenset(tried)
                else:
                    unkept += 1
                continue
            if iss in short:
                shorts = batch.shorts.get(iss, 0) + 1
                waits = shorts > SHORTS_AT_ONCE
                if waits:
                    self._back_off(iss, now)
                if self._keep(iss, batch, None, parked=waits, in_turn=not waits):
                    self._wanted[iss].shorts = shorts
                    self._wanted[iss].tried = frozenset(tried)
                else:
                    unkept += 1
                if waits:
                    continue
            if iss in peerless and iss in batch.came:
                self._back_off(iss, now)
                if not self._keep(iss, batch, None, parked=True):
                    unkept += 1
                continue
            if iss in peerless or iss in begun or iss in unanswered and behind is not None:
                if not self._keep(iss, batch, behind if iss in unanswered else None, connecting=iss in begun):
                    unkept += 1
                elif iss in self._peerless and iss in (begun_by_busy or {}):
                    self._after_wait[iss] = (begun_by_busy or {})[iss]
            if iss not in self._wanted or iss not in unanswered and iss not in peerless:
                self._backing_off.pop(iss, None)
            if iss in self._wanted and iss not in self._peerless and iss not in self._behind:
                self._ready.append(iss)
        return unkept

    def _back_off(self, iss: str, now: float) -> None:
        """`iss` waits `backoff`, twice as long as the last time if it backed off before (up to the most)."""
        _, last = self._backing_off.get(iss, (now, self._backoff_first / 2))
        seconds = min(2 * last, self._backoff_most)
        self._backing_off[iss] = (now + seconds, seconds)
        heapq.heappush(self._due, (now + seconds, iss))

    @property
    def awaiting_peer(self) -> bool:
        """Whether a range waits for any peer there to ask (`peer_came(None)`)."""
        return not all(self._peerless.values())

    def peer_came(self, peer: str | None) -> bool:
        """A peer is there to ask: the issuers waiting for one wait in turn, to be asked of `peer` first if given (a
        peer that connected), else (one is there) of the peers that reported their ranges, but for those waiting for
        a peer to connect; whether any waited."""
        freed = [iss for iss, connecting in self._peerless.items() if peer is not None or not connecting]
        for iss in freed:
            self._release(iss)
            if peer is not None:
                self._wanted[iss].origins = [peer]
            self._wanted[iss].came = True
            self._ready.append(iss)
        return bool(freed)

    @property
    def awaited_waits(self) -> set[str]:
        """The peers that said to come back later for whose waits' ends ranges wait (`wait_over`)."""
        return set(self._after_wait.values())

    def wait_over(self, peer: str) -> bool:
        """`peer`, which began to send ranges, then said to come back later, may be asked again: those ranges wait in
        turn, to be asked of `peer` first; whether any waited."""
        freed = [iss for iss, waited_for in self._after_wait.items() if waited_for == peer]
        for iss in freed:
            self._release(iss)
            self._wanted[iss].origins = [peer]
            self._wanted[iss].came = True
            self._ready.append(iss)
        return bool(freed)

    def _release(self, iss: str) -> bool:
        """`iss`'s range waits for no peer, nor a peer's turn or wait, any more; whether it did."""
        self._after_wait.pop(iss, None)
        return self._peerless.pop(iss, None) is not None or self._behind.pop(iss, None) is not None

    def turn_freed(self, peer: str) -> bool:
        """`peer`'s turn is free (no session with it holds or awaits it): the issuers waiting for it wait in turn, to
        be asked of `peer` first; whether any waited."""
        freed = [iss for iss, waited_for in self._behind.items() if waited_for == peer]
        for iss in freed:
            del self._behind[iss]
            self._ready.append(iss)
        return bool(freed)

    def _keep(self, iss: str, batch: GapBatch, behind: str | None, *, connecting: bool = False,
              parked: bool = False, in_turn: bool = False) -> bool:
        """Keep `iss`'s range of `batch` (no peer answered for it, or the rest of one begun or answered short): grown
        into the one that came meanwhile, if one did, else waiting, room allowing, for a peer (`peer_came`; one that
        connects, if `connecting`), or if `behind` is given for its turn; or, if `parked`, for its backoff to end,
        either way; or, if `in_turn`, for nothing (the caller has it wait in turn); False if there was no room: it is
        dropped (a kept range takes no one's place: it would be the first to give its own)."""
        first, last = batch.gaps[iss]
        wanted = self._wanted.get(iss)
        if wanted is not None:
            wanted.first, wanted.last = min(wanted.first, first), max(wanted.last, last)
            wanted.every |= batch.every
        elif len(self._wanted) < self._limit:
            self._wanted[iss] = _Wanted(first, last, [behind] if behind else list(batch.origins), batch.every)
            if behind is not None:
                self._behind[iss] = behind
            elif not parked and not in_turn:
                self._peerless[iss] = connecting
        else:
            return False
        if parked:
            self._parked[iss] = None
        return True

    def ready_at(self) -> float:
        """When the first issuer backing off may be fetched again (inf if none is)."""
        return self._due[0][0] if self._due else math.inf

    def _end_backoffs(self, now: float) -> None:
        """Issuers whose backoff is over wait in turn if a range of theirs came meanwhile, and keep their backoff
        (a vain fetch doubles it) until a fetch brings something; if none came, their backoff is forgotten."""
        while self._due and self._due[0][0] <= now:
            until, iss = heapq.heappop(self._due)
            entry = self._backing_off.get(iss)
            if entry is None or entry[0] != until:
                continue  # backing off again since, or no more
            if iss in self._wanted:
                self._parked.pop(iss)
                self._ready.append(iss)
            else:
                del self._backing_off[iss]

