"""Gauges of the states in which a node runs on but does less than it should, for an operator's alert rules
(DESIGN §8 metrics), each read at scrape time; GET /v1/node says the same in its fields."""

from __future__ import annotations

from gossip.replica import Replica

from .metrics import Registry


def own_org_flagged(replica: Replica) -> bool:
    """Whether this org (every key of it, once one is) is flagged as an equivocator: its peers then trust none of it."""
    return replica.did in replica.flagged


def add_health_gauges(metrics: Registry, *, replica: Replica) -> None:
    """The node's health gauges, registered in `metrics`."""
    metrics.collect("own_org_flagged", "1 once this org is flagged as an equivocator (two records of one key at one "
                    "seq, or two roots of its log at one size): peers stop trusting it; GET /v1/node's "
                    "own_org_flagged", lambda: int(own_org_flagged(replica)))
