"""Structured logs: one logfmt line per event (`ts=… level=… logger=… msg="…" key=value…`), to stderr.

Fields come from `extra={"fields": {...}}` on the logging call. Secrets (the API token, keys) are never passed
to a logger anywhere in vouchnet; this module adds no redaction because nothing should need it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any


def logfmt_value(value: Any) -> str:
    """`value` as a logfmt value: as it is, or quoted and escaped if it holds a space, quote, = or newline."""
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ ]*)(?: |$)')
_ESCAPED = re.compile(r"\\(.)")


def logfmt_fields(line: str) -> dict[str, str]:
    """The fields of a line LogfmtFormatter wrote, their values as logged (e.g. where a node listens, from its "node
    running" line: it may listen on ports the OS picked)."""
    return {key: _ESCAPED.sub(_unescaped, value[1:-1]) if value.startswith('"') else value
            for key, value in _FIELD.findall(line.rstrip("\n"))}


def _unescaped(escape: re.Match[str]) -> str:
    return "\n" if escape[1] == "n" else escape[1]


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
