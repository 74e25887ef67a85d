"""OTLP spans rejected, said in the node's log: at most one line per reason (InvalidEvent.reason) per
LOG_INTERVAL_S, its `spans` field counting the rejections of that reason since its last line (this one's included).

An exporter is told of rejected spans in its answer's partial_success, but the stock exporters mostly drop it unread
(the Python SDK's does), so an operator whose exporter sets a wrong attribute would see nothing but a metric. Each
line gives the rule broken (InvalidEvent's message: it names the span's field, and quotes of what the exporter sent
a time at most, or the one character of a malformed did:key that is not base58), never a span's name or an
attribute's text: those are the exporter's words, and may hold what must not be logged.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .otlp import RejectedSpan

LOG_INTERVAL_S = 60.0

log = logging.getLogger(__name__)


@dataclass
class SpanRejectionLog:
    """Says rejected spans (`note`), a line per reason at most every `interval` seconds of `monotonic`; on the node's
    trio thread only."""

    monotonic: Callable[[], float] = time.monotonic
    interval: float = LOG_INTERVAL_S
    _said_at: dict[str, float] = field(default_factory=dict)  # per reason, when its last line was written
    _unsaid: Counter[str] = field(default_factory=Counter)  # per reason, the rejections since its last line

    def note(self, rejected: Sequence[RejectedSpan]) -> None:
        """Count a request's rejected spans, and write a line for each reason whose interval has passed."""
        first: dict[str, str] = {}
        for span in rejected:
            self._unsaid[span.reason] += 1
            first.setdefault(span.reason, span.rule)
        now = self.monotonic()
        for reason, rule in first.items():
            said_at = self._said_at.get(reason)
            if said_at is not None and now - said_at < self.interval:
                continue
            self._said_at[reason] = now
            log.warning("OTLP spans rejected, not stored: %s", rule,
                        extra={"fields": {"reason": reason, "spans": self._unsaid.pop(reason)}})
