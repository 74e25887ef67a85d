"""Gauges of the states in which a node runs on but does less than it should, for an operator's alert rules
(DESIGN §8 metrics), each read at scrape time; GET /v1/node's own_org_flagged and takes_writes say the first two."""

from __future__ import annotations

import shutil
from pathlib import Path

from gossip.replica import Replica

from .keys import TokenFile
from .metrics import Registry


def own_org_flagged(replica: Replica) -> bool:
    """Whether this org (every key of it, once one is) is flagged as an equivocator: its peers then trust none of it."""
    return replica.did in replica.flagged


def add_health_gauges(metrics: Registry, *, replica: Replica, token_file: TokenFile, data_dir: Path) -> None:
    """The node's health gauges, registered in `metrics`."""
    metrics.collect("own_org_flagged", "1 once this org is flagged as an equivocator (two records of one key at one "
                    "seq, or two roots of its log at one size): peers stop trusting it; GET /v1/node's "
                    "own_org_flagged", lambda: int(own_org_flagged(replica)))
    metrics.collect("api_writes_refused", "1 while api.token cannot be read as a token: the API refuses every write "
                    "(503 no_token); GET /v1/node's takes_writes", lambda: int(token_file.current() is None))
    metrics.collect("data_dir_free_bytes", "Bytes of the data directory's file system free to the node: at none, "
                    "writes fail (503 storage, records unstored, digests and checkpoints not saved)",
                    lambda: shutil.disk_usage(data_dir).free)
