"""The pace a peer must keep in a sync session of ours (`/vouchnet/sync/1`, DESIGN.md §5): after a grace, the time
spent waiting on it (writing our requests, reading its replies) is bought by what it delivers, MIN_RATE units a
second, a unit as gossip.serving_budget counts them (a head or record, or a KiB of the page where that is more). A peer
answering each read just inside the sync timeout with a record would otherwise hold a session for its whole bound.
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


def reply_units(reply: Reply, size: int) -> int:
    """The units a reply of `size` bytes delivered: its heads or records, or its KiB where more; none for any other
    (a Busy or refusal ends the session anyway)."""
    if isinstance(reply, HeadsPage):
        return page_cost(len(reply.heads), size)
    if isinstance(reply, RecordsPage):
        return page_cost(len(reply.records), size)
    return 0


@dataclass
class PeerPace:
    """One session's account of its peer: the seconds waited on it and the units it delivered."""

    grace: float  # seconds the peer may take before anything it delivered counts
    rate: float = MIN_RATE
    waited: float = 0.0
    units: int = 0

    def __post_init__(self) -> None:
        if not (self.grace >= 0 and self.rate > 0):
            raise ValueError("PeerPace: grace must be at least 0, rate positive")

    def allowance(self) -> float:
        """The seconds the peer may still take before it falls behind its pace (0 once it has)."""
        return max(0.0, self.grace + self.units / self.rate - self.waited)

    def took(self, seconds: float) -> None:
        """The session waited `seconds` on the peer (a write, or a read)."""
        self.waited += seconds

    def delivered(self, units: int) -> None:
        """The peer delivered `units` (`reply_units` of a reply read)."""
        self.units += units
