"""How much catch-up sync serves (DESIGN.md §5): every page of heads or records a peer asks for is read from our
disk and encoded by us, so each peer has a budget of them, and so do all peers together (peer ids are free, so a
peer's budget alone bounds nothing). Budgets are token buckets of units: a record served or a range read from the
store (gossip.sync.SyncServer.units), or a KiB of the page if that is more (records are up to 64 KiB). Heads, read
from memory, cost their KiB alone (some 11 heads): a periodic round names every issuer the node holds, so at a unit a
head a round of 10^5 orgs cost 10^5 units, and the three rounds an interval (30 s) that peers in step with a node
have with it came to twice the node's rate, most of them answered Busy once its burst was spent; it costs some 9,200
now, and a round in step over `/vouchnet/sync/2`, reading only the heads changed since (gossip.sync_marks), one.
A KiB of heads takes more CPU to serve than a record does (some 25 us, against 1.3 to 4.3 us a record or a KiB of
records), so all peers together may take an eighth of a core in heads, where those rounds need a fiftieth.
A bucket's burst covers an empty node's catch-up of 10^5 records at full speed; its rate, what periodic rounds need
five times over at 10^5 orgs. Pure: the caller passes the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .ratelimit import TokenBuckets
from .sync import SyncLimits
from .sync_messages import MAX_RANGES, MAX_RETRY

UNIT_BYTES = 1024  # a page costs a unit per KiB if it has fewer records (or heads) than KiB
_REFILL_PAGES = 10  # a refused peer is told to come back when this many pages are in its budget again
_NODE = "all peers"


@dataclass(frozen=True)
class ServingRates:
    """Units (records served, or KiB of pages where more) per second and at most at once, for each peer
    and for all peers together."""

    peer_rate: float = 1_000.0
    peer_burst: float = 250_000.0
    node_rate: float = 5_000.0
    node_burst: float = 1_000_000.0
    max_peers: int = 10_000  # peers whose spent budget is remembered (one that is forgotten starts again full)

    def __post_init__(self) -> None:
        if not (self.peer_rate > 0 and self.node_rate > 0 and 0 < self.peer_burst <= self.node_burst
                and self.max_peers >= 1):
            raise ValueError("ServingRates: rates must be positive, peer_burst positive and at most node_burst, "
                             "max_peers at least 1")


def page_cost(units: int, size: int) -> int:
    """What a page of `size` bytes costs that took `units` (SyncServer.units) to make."""
    return max(units, math.ceil(size / UNIT_BYTES))


def most_page_cost(limits: SyncLimits) -> int:
    """The most a page can cost under `limits`: a full page of records, and a read of each range beside, or the KiB of
    the largest frame (a full page of heads among them)."""
    return page_cost(2 * limits.page_records + MAX_RANGES, limits.max_frame)


class ServingBudget:
    """The serving budgets of every peer and of the node; `page` is the most units one page can cost under our
    limits, which a peer's budget and the node's must hold before the next page is read for it."""

    def __init__(self, rates: ServingRates, page: int) -> None:
        if not 1 <= page <= rates.peer_burst:
            raise ValueError(f"ServingBudget: a page's cost ({page} units) must be from 1 to the peer burst")
        self.page = page
        self._peers: TokenBuckets[str] = TokenBuckets(rates.peer_rate, rates.peer_burst, max_keys=rates.max_peers)
        self._node: TokenBuckets[str] = TokenBuckets(rates.node_rate, rates.node_burst, max_keys=1)
        self._refill = min(rates.peer_burst, _REFILL_PAGES * page)

    def retry_after(self, peer: str, now: float) -> int:
        """0 if a page may be read for `peer` now; else the whole seconds to tell it to wait (1 to MAX_RETRY)."""
        if self._peers.tokens(peer, now) >= self.page and self._node.tokens(_NODE, now) >= self.page:
            return 0
        wait = max(self._peers.wait_time(peer, self._refill, now), self._node.wait_time(_NODE, self._refill, now))
        return min(MAX_RETRY, max(1, math.ceil(wait)))

    def charge(self, peer: str, cost: int, now: float) -> None:
        """Take a page's `cost` from `peer`'s budget and the node's (what they hold, if less: a page is at most
        `page`, which `retry_after` found they held)."""
        self._peers.try_take(peer, now, min(cost, self._peers.tokens(peer, now)))
        self._node.try_take(_NODE, now, min(cost, self._node.tokens(_NODE, now)))
