"""Retention (DESIGN §4): raw events older than `retention_days` are pruned from the audit log to their leaf
hashes, so roots and proofs stay valid; expired idempotency keys are forgotten.

Pruning goes back to an epoch boundary, whole epochs at a time (those digested before `epoch_seconds` changed
too), and never past the first event not yet digested, nor of an epoch whose digests a stop cut short: an exported
epoch is either all there or refused as pruned.

Pruning cannot be undone, so it does not follow a wall clock that stepped ahead at once (a bad NTP step, a VM
resumed with a wrong time): a clock more than `CLOCK_STEP_MS` ahead of what the node has seen of time (the audit
log's latest acceptance time, and the clock's last reading taken plus the monotonic time since) is taken only once
it has stayed ahead for `CLOCK_HOLD_SECONDS` of monotonic time, so an operator has a day to put it right. A new node,
its log empty, takes its clock at once; a node started after more than a day stopped prunes a day late; a clock that
ran ahead while events were accepted is not caught (their acceptance times ran ahead with it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from .audit_log import AuditLog, wall_clock_ms
from .digests import Digester
from .idempotency import WINDOW_MS, IdempotencyStore
from .metrics import Registry

DAY_MS = 24 * 3600 * 1000
CLOCK_STEP_MS = DAY_MS  # how far ahead of the time the node has seen its clock may be taken at once
CLOCK_HOLD_SECONDS = 24 * 3600.0  # how long a clock further ahead must stay so before it is taken
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
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retention_days > 0:
            raise ValueError(f"retention_days: must be positive, got {retention_days!r}")
        self.audit, self.idempotency, self.digester = audit, idempotency, digester
        self.retention_ms = int(retention_days * DAY_MS)
        self.interval = interval
        self._clock, self._monotonic = clock, monotonic
        self._seen: tuple[int, float] | None = None  # the last clock reading taken, and the monotonic time then
        self._ahead_since: float | None = None  # monotonic time the clock was first seen too far ahead
        metrics.collect("audit_pruned_entries", "Audit-log entries pruned to their hashes",
                        lambda: self.audit.ledger.pruned)
        metrics.collect("retention_clock_held", "1 while retention holds its prunes as the clock stepped over a day "
                        "ahead of the time the node has seen (taken once it has stayed so a day)",
                        lambda: int(self._ahead_since is not None))

    def _now(self) -> int | None:
        """The clock, or None while it is held as a step ahead of the time the node has seen (module docstring)."""
        wall, mono = self._clock(), self._monotonic()
        seen = self.audit.latest
        if self._seen is not None:
            seen = max(seen, self._seen[0] + int((mono - self._seen[1]) * 1000))
        if seen and wall > seen + CLOCK_STEP_MS:  # an empty log, first read: nothing to tell a step by
            if self._ahead_since is None:
                self._ahead_since = mono
                log.warning("clock over a day ahead of the time the node has seen: retention holds its prunes "
                            "for a day in case it is a wrong step (after a long stop, nothing to do)",
                            extra={"fields": {"ahead_ms": wall - seen, "hold_seconds": CLOCK_HOLD_SECONDS}})
            if mono - self._ahead_since < CLOCK_HOLD_SECONDS:
                return None
            log.info("clock stayed ahead for the hold: retention takes it", extra={"fields": {"ahead_ms": wall - seen}})
        self._seen, self._ahead_since = (wall, mono), None
        return wall

    def prune(self) -> int:
        """Prune the audit log of what has expired by now; its new pruned count."""
        if (now := self._now()) is None:
            return self.audit.ledger.pruned
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
        """Forget the idempotency keys and span ids that have expired by now (not while the clock is held)."""
        if (now := self._now()) is not None:
            self.idempotency.expire(now - WINDOW_MS)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Prune and expire now, then every `interval` seconds; expiry on a worker thread (an hour's span ids are
        millions of rows, about a microsecond each: benchmarks/otlp_ingest.py)."""
        while True:
            self.prune()
            await trio.to_thread.run_sync(self.expire)
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(self.interval)
