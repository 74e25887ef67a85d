"""The SDK's logger, `vouchnet.client` (DESIGN §8). A record's fields (`extra={"fields": {...}}`, which the node's
logfmt formatter writes out) are in its message too, as logfmt (`trust decision agent=did:key:… verdict=block
enforced=False reason="…"`): a service logs the SDK with its own format, which knows nothing of them, and the
week-1 log must show who would have been blocked. They stay on the record as `fields` for structured handlers."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from ..logs import logfmt_value


class _FieldsInMessage(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        fields = kwargs.get("extra", {}).get("fields", {})
        return " ".join([str(msg), *(f"{key}={logfmt_value(value)}" for key, value in fields.items())]), kwargs


log = _FieldsInMessage(logging.getLogger("vouchnet.client"))
