"""Structured logs: one logfmt line per event (`ts=… level=… logger=… msg="…" key=value…`), to stderr.

Fields come from `extra={"fields": {...}}` on the logging call. Each call site writes at most vouching.log_limit.BURST
lines a window, whatever a peer sends (a `suppressed` field counts the rest). Secrets (the API token, keys) are never
passed to a logger anywhere in vouchnet; this module adds no redaction because nothing should need it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

from vouching.log_limit import RateLimit
from vouching.schema import escaped


def logfmt_value(value: Any) -> str:
    """`value` as a logfmt value: as it is, or quoted if it holds a space, quote, = or backslash or a character that
    is not printable, which is escaped (\\n, \\x1b, \\u202e...): a peer's words in a log line, such as a dial
    error, must not move an operator's terminal (escape sequences) or reorder what it shows (bidi overrides)."""
    text = str(value)
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return '"' + escaped(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ ]*)(?: |$)')
_ESCAPED = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|.)")
_NAMED = {"n": "\n", "t": "\t", "r": "\r"}


def logfmt_fields(line: str) -> dict[str, str]:
    """The fields of a line LogfmtFormatter wrote, their values as logged (e.g. where a node listens, from its "node
    running" line: it may listen on ports the OS picked)."""
    return {key: _ESCAPED.sub(_unescaped, value[1:-1]) if value.startswith('"') else value
            for key, value in _FIELD.findall(line.rstrip("\n"))}


def _unescaped(escape: re.Match[str]) -> str:
    code = escape[1]
    if len(code) > 1:
        return chr(int(code[1:], 16))
    return _NAMED.get(code, code)


MAX_VALUE = 2048  # characters of a message or field a line holds, before escaping
MAX_ERROR = 16384  # characters of a traceback a line holds


def cut(text: str, limit: int) -> str:
    """`text`, or its first and last `limit` // 2 characters around a note of how many were cut: a peer's words
    in a message (a topic name py-libp2p logs is up to an RPC's size) must not make each line a megabyte."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}…({len(text) - 2 * half} characters cut)…{text[-half:]}"


class LogfmtFormatter(logging.Formatter):
    """Formats a record as logfmt, with the exception (if any) as an `error` field; each value cut to MAX_VALUE
    characters, the exception to MAX_ERROR."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"logger={record.name}",
                 f"msg={logfmt_value(cut(record.getMessage(), MAX_VALUE))}"]
        for key, value in getattr(record, "fields", {}).items():
            parts.append(f"{key}={logfmt_value(cut(str(value), MAX_VALUE))}")
        if record.exc_info:
            parts.append(f"error={logfmt_value(cut(self.formatException(record.exc_info), MAX_ERROR))}")
        return " ".join(parts)


# The loggers of vouchnet's own packages (by module, `__name__`; pyproject.toml's, which tests/test_packages.py checks
# this names) and its named ones (`vouchnet.node`)
OWN_LOGGERS = ("node", "gossip", "ledger", "vouching", "testnet", "vouchnet")


def configure_logging(level: int = logging.INFO, *, libraries_debug: bool = False) -> None:
    """Send every logger's records, py-libp2p's included, to stderr as logfmt, rate-limited per call site: those of
    `level` and above, but, at DEBUG, the libraries' (every logger but OWN_LOGGERS) from INFO only, unless
    `libraries_debug` (`vouchnet run --log-level debug:all`): py-multiaddr logs each address it parses at DEBUG, 66
    of the 70 lines a node's start wrote at `--log-level debug`. py-libp2p's stay at WARNING (HostConfig's
    libp2p_log_level)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    handler.addFilter(RateLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if libraries_debug else max(level, logging.INFO))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
