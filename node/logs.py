"""Structured logs: one logfmt line per event (`ts=… level=… logger=… msg="…" key=value…`), to stderr.

Fields come from `extra={"fields": {...}}` on the logging call. Secrets (the API token, keys) are never passed
to a logger anywhere in vouchnet; this module adds no redaction because nothing should need it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


def logfmt_value(value: Any) -> str:
    """`value` as a logfmt value: as it is, or quoted and escaped if it holds a space, quote, = or newline."""
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    """Formats a record as logfmt, with the exception (if any) as an `error` field."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"logger={record.name}",
                 f"msg={logfmt_value(record.getMessage())}"]
        for key, value in getattr(record, "fields", {}).items():
            parts.append(f"{key}={logfmt_value(value)}")
        if record.exc_info:
            parts.append(f"error={logfmt_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure_logging(level: int = logging.INFO) -> None:
    """Send every logger's records, py-libp2p's included, to stderr as logfmt."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
