"""A gossip validator's verdict on one message: GossipSub v1.1's ACCEPT, IGNORE and REJECT (DESIGN.md §5)."""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    """ACCEPT delivers and relays. IGNORE drops without relaying and without penalising the forwarder, and leaves the
    message unseen, so the same message from another peer is judged again. REJECT drops an invalid message and
    lowers the forwarder's score."""

    ACCEPT = "accept"
    IGNORE = "ignore"
    REJECT = "reject"
