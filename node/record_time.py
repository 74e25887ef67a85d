"""A record's time (its `ts`, or a time its body names: ms since the Unix epoch, DESIGN §3) as the CLI and the node's
messages print it."""

from __future__ import annotations

from datetime import UTC, datetime


def record_time(ms: int) -> str:
    """`ms` after the Unix epoch as an ISO 8601 UTC time to the second ("2026-11-29T13:17:45Z"); one datetime cannot
    hold (a valid record may name a time past year 9999) as that many ms after the epoch."""
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return f"{ms} ms after the epoch"
