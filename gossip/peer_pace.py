"""The pace a peer must keep in a sync session of ours (`/vouchnet/sync/1`, DESIGN.md §5): after a grace, the time
spent waiting on it (writing our requests, reading its replies) is bought by what it delivers, MIN_RATE units a
second, a unit a record or head, or a KiB of the page where that is more (gossip.serving_budget.page_cost). A peer
answering each read just inside the sync timeout with a record would otherwise hold a session for its whole bound.
Heads the node does not act on count only by their KiB: those of issuers it holds records of, up to the seq named (a
peer in step with it), in full, as a session names each issuer once at most, so that what they buy is bounded by what
the node holds; the others (of issuers it holds nothing of: outside its horizon, or made up) buy UNUSED_HEADS_UNITS at
most a session, as heads of made-up issuers cost a peer nothing to send, and would otherwise keep its pace for the
session's whole bound.
Pure: the caller passes the seconds waited and the pages read.
"""

from __future__ import annotations

from dataclasses import dataclass

from .serving_budget import page_cost
from .sync_messages import HeadsPage, RecordsPage, Reply

# Units a second of waiting a peer must deliver: 80 times below the catch-up rate measured (4,000 records/s and more,
# of which the peer's share of the time is the smaller part), and half what a full page (a MiB) within the sync
# timeout (10 s) is already; a catch-up of 10^5 records within a session's 10 minutes keeps 167 a second.
MIN_RATE = 50.0
# Units the KiB of heads of issuers the node holds nothing of buy in a session at most: 50 s of pace, so that a peer
# sending made-up heads is ended a minute in (with the grace); an honest peer's heads of 10^5 issuers the node does not
# follow (some 9 MiB) keep their pace over any link of 160 KiB/s and more, and those of issuers it holds, in step with
# it, over any link of 50 KiB/s and more, however many.
UNUSED_HEADS_UNITS = 2_500


@dataclass
class PeerPace:
    """One session's account of its peer: the seconds waited on it and the units it delivered."""

    grace: float  # seconds the peer may take before anything it delivered counts
    rate: float = MIN_RATE
    unused_heads_units: int = UNUSED_HEADS_UNITS  # the most units heads of issuers the node holds nothing of buy
    waited: float = 0.0
    units: int = 0
    unused_units: int = 0  # of `units`, those bought by heads of issuers the node holds nothing of

    def __post_init__(self) -> None:
        if not (self.grace >= 0 and self.rate > 0 and self.unused_heads_units >= 0):
            raise ValueError("PeerPace: grace and unused_heads_units must be at least 0, rate positive")

    def allowance(self) -> float:
        """The seconds the peer may still take before it falls behind its pace (0 once it has)."""
        return max(0.0, self.grace + self.units / self.rate - self.waited)

    def took(self, seconds: float) -> None:
        """The session waited `seconds` on the peer (a write, or a read)."""
        self.waited += seconds

    def read(self, reply: Reply, size: int, *, used_heads: int = 0, held_heads: int = 0) -> None:
        """The peer delivered `reply`, of `size` bytes: a page of records counts its records, or its KiB where more; a
        page of heads, the `used_heads` of them the node uses (SyncClient.heads_used), and its KiB beyond them, the
        share of the `held_heads` the node holds records of (SyncClient.heads_held) in full, that of the others while
        `unused_heads_units` last; any other reply nothing (a Busy or refusal ends the session anyway)."""
        if isinstance(reply, RecordsPage):
            self.units += page_cost(len(reply.records), size)
        elif isinstance(reply, HeadsPage):
            beyond = page_cost(used_heads, size) - used_heads
            others = max(0, len(reply.heads) - used_heads - held_heads)
            held = -(-beyond * held_heads // (held_heads + others)) if held_heads else 0
            unused = min(beyond - held, self.unused_heads_units - self.unused_units)
            self.unused_units += unused
            self.units += used_heads + held + unused
