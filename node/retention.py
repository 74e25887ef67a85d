"""Retention (DESIGN §4): raw events older than `retention_days` are pruned from the audit log to their leaf
hashes, so roots and proofs stay valid; expired idempotency keys are forgotten.

Pruning goes back to an epoch boundary, whole epochs at a time (those digested before `epoch_seconds` changed
too), and never past the first event not yet digested, nor of an epoch whose digests a stop cut short: an exported
epoch is either all there or refused as pruned. Nor past a damaged entry (node.audit_log.DamagedEntry) where the
expired entries end, whose time cannot be read: each prune logs and counts it, and prunes up to its epoch (damaged
entries between expired ones are pruned with them).

Pruning cannot be undone: it follows the node's time (node.node_time), the audit log's acceptance time, which
does not follow a wall clock that stepped over a day ahead (a bad NTP step, a VM resumed with a wrong time) until it
has stayed so for a day: meanwhile only what has expired by the time the node has seen is pruned. Nor does it follow
the node's time where the clock is behind it (put back below the log's latest time, where the node's time stays). A
node started after more than a day stopped prunes up to a day late.
"""

from __future__ import annotations

import logging

import trio

from ledger import LedgerError

from .audit_log import AuditLog, DamagedEntry
from .digests import Digester
from .idempotency import WINDOW_MS, IdempotencyStore
from .metrics import Registry
from .node_time import DAY_MS

log = logging.getLogger(__name__)


class RetentionService:
    """Prunes on start and then every `interval` seconds."""

    def __init__(
        self,
        audit: AuditLog,
        idempotency: IdempotencyStore,
        digester: Digester,
        metrics: Registry,
        *,
        retention_days: float,
        interval: float = 3600.0,
    ) -> None:
        if not retention_days > 0:
            raise ValueError(f"retention_days: must be positive, got {retention_days!r}")
        self.audit, self.idempotency, self.digester = audit, idempotency, digester
        self.retention_ms = int(retention_days * DAY_MS)
        self.interval = interval
        metrics.collect("audit_pruned_entries", "Audit-log entries pruned to their hashes",
                        lambda: self.audit.ledger.pruned)
        self.prune_failures = metrics.counter(
            "retention_prune_failures_total", "Prunes of the audit log that failed (a disk that refuses, say), each "
            "try: the log stays unpruned until one succeeds (tried again each hour)")

    def prune(self) -> int:
        """Prune the audit log of what has expired by now; its new pruned count."""
        cutoff = self.expiry_time() - self.retention_ms
        cutoff -= cutoff % self.digester.epoch_ms
        met: dict[int, DamagedEntry] = {}
        first, last = self.audit.boundary(cutoff, lambda error: met.update({error.index: error}))
        if first < last and first <= self.digester.needed_from:  # the search ended on damage: the prune stops at it
            self._damaged(met[first])
        before = min(first, self.digester.needed_from)
        if (holding := self.digester.state.holding(before)) is not None:  # the cutoff, aligned to the epoch length
            before = holding[0]  # configured now, fell inside an epoch digested when it was longer
        if before > self.audit.ledger.pruned:
            self.audit.ledger.prune(before)
            log.info("audit log pruned", extra={"fields": {"before": before, "cutoff_ms": cutoff}})
        return self.audit.ledger.pruned

    def _damaged(self, error: DamagedEntry) -> None:
        """The damaged entry the search for what has expired (AuditLog.boundary) ended on, the prune stopping at it:
        its time cannot be read, so neither it nor any entry after it is pruned while it stays so; logged at ERROR
        and counted (vouchnet_audit_damaged_reads_total). Damaged entries the search read between expired ones, pruned
        past, or among those not expired, are not: the prune does not stop at them."""
        self.digester.damaged_reads.inc()
        log.error("audit log pruned no further than a damaged entry: %s", error)

    def expiry_time(self) -> int:
        """What the audit log is pruned, and idempotency keys and span ids expire, by (on the trio thread: the audit
        log is not thread-safe): the node's time, or the clock where it is behind, put back below the audit log's
        latest time, which the node's time stays at. Neither can be undone, so neither runs ahead of the clock: keys
        are dated, and a retried batch's events checked, by it (node.ingest); expired by the node's time ahead of it,
        they would be forgotten while their batch could still be accepted again."""
        return min(self.audit.clock(), self.audit.now())

    def expire(self, now: int) -> None:
        """Forget the idempotency keys and span ids that have expired by `now` (`expiry_time`)."""
        self.idempotency.expire(now - WINDOW_MS)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Prune and expire now, then every `interval` seconds; expiry on a worker thread (an hour's span ids are
        millions of rows, about a microsecond each: benchmarks/otlp_ingest.py). A prune that fails (a disk that
        refuses) is logged, counted (vouchnet_retention_prune_failures_total) and tried again at the next: the node
        takes events on. (A damaged entry only stops the prune at it: `_damaged`.)"""
        while True:
            try:
                self.prune()
            except LedgerError as error:  # a disk that refuses, say: the node runs on
                log.error("audit log not pruned (%s); tried again in %s s", error, round(self.interval))
                self.prune_failures.inc()
            await trio.to_thread.run_sync(self.expire, self.expiry_time())
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(self.interval)
