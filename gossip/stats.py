"""Fields of the services' stats dataclasses that carry the HELP text of the metric node.metrics renders each as
(DESIGN §8 metrics), so that `GET /metrics` says what each counts and a new field cannot go out without saying so."""

from __future__ import annotations

from collections import Counter
from dataclasses import field
from typing import Any

HELP = "help"  # the metadata key node.metrics.Registry.add_stats reads


def counted(help: str, default: float = 0) -> Any:
    """A number the service counts (or, listed in add_stats' `gauges`, sets), explained by `help`."""
    return field(default=default, metadata={HELP: help})


def by_reason(help: str, reasons: tuple[str, ...] = ()) -> Any:
    """Counts by a label value (a reason, a status), explained by `help`; `reasons` start at 0 so that they show."""
    return field(default_factory=lambda: Counter(dict.fromkeys(reasons, 0)), metadata={HELP: help})
