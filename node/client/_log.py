"""The SDK's logger, `vouchnet.client` (DESIGN §8). A record's fields (`extra={"fields": {...}}`, which the node's
logfmt formatter writes out) are in its message too, as logfmt (`trust decision agent=did:key:… verdict=block
enforced=False reason="…"`): a service logs the SDK with its own format, which knows nothing of them, and the
week-1 log must show who would have been blocked. They stay on the record as `fields` for structured handlers.

A caller triggers a line for each of its requests (a `trust decision` for each call blocked or audited, an `a2a
incoming` for each A2A task A2ATrust.verify_incoming is asked about, an `mcp bearer token refused` for each MCP
request whose credential does not verify), so the logger has the node's per-call-site limit (vouching.log_limit) as
a filter of its own, LIMIT: at most 20 lines of one logging call in each 10 s, the rest counted in `suppressed=N` on
that call's next line. A library must not let a hostile caller flood its host's log, and the limit keeps each line
written whole and at its level (the week-1 log still names who would have been blocked, less often under a flood);
it is on this logger only, never on the root logger or the service's handlers, so nothing else the service logs is
touched. A service that wants every line removes it: `logging.getLogger("vouchnet.client").removeFilter(LIMIT)`.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from vouching.log_limit import RateLimit
from ..logs import logfmt_value
from ._fork import in_forked_children


class _FieldsInMessage(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        fields = kwargs.get("extra", {}).get("fields", {})
        return " ".join([str(msg), *(f"{key}={logfmt_value(value)}" for key, value in fields.items())]), kwargs


class _LimitSaidInMessage(RateLimit):
    """RateLimit whose `suppressed` count is in the message too, as the SDK's other fields are."""

    def carry(self, record: logging.LogRecord, suppressed: int) -> None:
        super().carry(record, suppressed)
        record.msg = f"{record.msg} suppressed={suppressed}"


LIMIT = _LimitSaidInMessage()
logging.getLogger("vouchnet.client").addFilter(LIMIT)
in_forked_children(LIMIT.forked)  # a thread inside the filter as a pre-fork server forks held its lock (_fork)
log = _FieldsInMessage(logging.getLogger("vouchnet.client"))
