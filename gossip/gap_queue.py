"""The ranges sync is asked to fetch (gossip's gaps, the histories of orgs entering the horizon), one entry per
issuer, served in turn (DESIGN.md §5: a gap → the missing range is fetched by sync).

Any issuer inside the horizon can sign past a seq it never publishes, and have every record after it reported as
a gap, hundreds a second. So an issuer has at most one fetch outstanding and one range waiting: what is reported
meanwhile grows that range instead of queueing again, and issuers are served in the order their ranges came to
wait, so that one issuer's gaps cannot crowd out another's. Sans-I/O: the caller gives the time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

ORIGINS = 3  # peers kept per issuer that reported its gap (the records' publishers, asked first)


@dataclass
class _Wanted:
    first: int
    last: int
    origins: list[str] = field(default_factory=list)
    every: bool = False  # ask every connected peer (an org's history), not just a few

    @property
    def route(self) -> tuple[tuple[str, ...], bool]:
        return tuple(self.origins), self.every


@dataclass(frozen=True)
class GapBatch:
    """Issuers' ranges to fetch in one go from the same peers: `origins` first, then others (all if `every`)."""

    gaps: dict[str, tuple[int, int]]
    origins: tuple[str, ...]
    every: bool


@dataclass(frozen=True)
class Added:
    """What one `add` did with its issuers' ranges."""

    queued: int = 0  # issuers that were not waiting
    merged: int = 0  # issuers already waiting or being fetched: their range grew
    dropped: int = 0  # issuers not waiting when `limit` issuers were (the next periodic round repairs them)


class GapQueue:
    """Issuers' missing ranges waiting for a fetch: at most `limit` issuers, one range each, served in turn; an
    issuer is in at most one batch at a time."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._wanted: dict[str, _Wanted] = {}  # issuers with a range waiting
        self._ready: deque[str] = deque()  # those of them that may be fetched now, in turn
        self._fetching: set[str] = set()

    def __len__(self) -> int:
        return len(self._wanted)

    def add(self, origin: str | None, gaps: Mapping[str, tuple[int, int]], *, every: bool) -> Added:
        """Queue `gaps` (issuer -> (first, last)), reported by `origin` (asked first) if given; an issuer already
        waiting has its range grown to cover both."""
        queued = merged = dropped = 0
        for iss, (first, last) in gaps.items():
            wanted = self._wanted.get(iss)
            if wanted is None and len(self._wanted) >= self._limit:
                dropped += 1
                continue
            if wanted is None:
                wanted = self._wanted[iss] = _Wanted(first, last)
                queued += 1
                if iss not in self._fetching:
                    self._ready.append(iss)
            else:
                wanted.first, wanted.last = min(wanted.first, first), max(wanted.last, last)
                merged += 1
            wanted.every |= every
            if origin is not None and origin not in wanted.origins and len(wanted.origins) < ORIGINS:
                wanted.origins.append(origin)
        return Added(queued, merged, dropped)

    def take(self, most: int) -> GapBatch | None:
        """The next issuer in turn, with up to `most` - 1 others after it that are to be asked of the same peers;
        None if none may be fetched now. Each is being fetched until `done`."""
        if not self._ready:
            return None
        route = self._wanted[self._ready[0]].route
        taken: list[str] = []
        rest: deque[str] = deque()
        for iss in self._ready:
            (taken if len(taken) < most and self._wanted[iss].route == route else rest).append(iss)
        self._ready = rest
        gaps = {}
        for iss in taken:
            wanted = self._wanted.pop(iss)
            gaps[iss] = (wanted.first, wanted.last)
            self._fetching.add(iss)
        return GapBatch(gaps, *route)

    def done(self, batch: GapBatch) -> None:
        """The batch's fetch ended: an issuer whose range grew meanwhile waits again, behind the others."""
        for iss in batch.gaps:
            self._fetching.discard(iss)
            if iss in self._wanted:
                self._ready.append(iss)

