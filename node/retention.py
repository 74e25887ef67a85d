"""Retention (DESIGN §4): raw events older than `retention_days` are pruned from the audit log to their leaf
hashes, so roots and proofs stay valid; expired idempotency keys are forgotten.

Pruning goes back to an epoch boundary, whole epochs at a time (those digested before `epoch_seconds` changed
too), and never past the first event not yet digested, nor of an epoch whose digests a stop cut short: an exported
epoch is either all there or refused as pruned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from .audit_log import AuditLog, wall_clock_ms
from .digests import Digester
from .idempotency import WINDOW_MS, IdempotencyStore
from .metrics import Registry

DAY_MS = 24 * 3600 * 1000
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
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if not retention_days > 0:
            raise ValueError(f"retention_days: must be positive, got {retention_days!r}")
        self.audit, self.idempotency, self.digester = audit, idempotency, digester
        self.retention_ms = int(retention_days * DAY_MS)
        self.interval = interval
        self._clock = clock
        metrics.collect("audit_pruned_entries", "Audit-log entries pruned to their hashes",
                        lambda: self.audit.ledger.pruned)

    def prune(self) -> int:
        """Prune the audit log of what has expired by now; its new pruned count."""
        now = self._clock()
        cutoff = now - self.retention_ms
        cutoff -= cutoff % self.digester.epoch_ms
        before = min(self.audit.first_at_or_after(cutoff), self.digester.needed_from)
        if (holding := self.digester.state.holding(before)) is not None:  # the cutoff, aligned to the epoch length
            before = holding[0]  # configured now, fell inside an epoch digested when it was longer
        if before > self.audit.ledger.pruned:
            self.audit.ledger.prune(before)
            log.info("audit log pruned", extra={"fields": {"before": before, "cutoff_ms": cutoff}})
        return self.audit.ledger.pruned

    def expire(self) -> None:
        """Forget the idempotency keys and span ids that have expired by now."""
        self.idempotency.expire(self._clock() - WINDOW_MS)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Prune and expire now, then every `interval` seconds; expiry on a worker thread (an hour's span ids are
        millions of rows, about a microsecond each: benchmarks/otlp_ingest.py)."""
        while True:
            self.prune()
            await trio.to_thread.run_sync(self.expire)
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(self.interval)
