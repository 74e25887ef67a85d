"""The JSON form of a record (DESIGN §3, §8): the payload's fields with the wire body, every byte string as hex.

One shape everywhere JSON shows a record: the local API, the client and the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vouching import Record


def record_json(record: Record) -> dict[str, Any]:
    """`{id, kind, iss, seq, prev, ts, body}`: ids hex, prev null for an issuer's first record, body as on the wire."""
    return {
        "id": record.id.hex(),
        "kind": record.kind,
        "iss": record.iss,
        "seq": record.seq,
        "prev": None if record.prev is None else record.prev.hex(),
        "ts": record.ts,
        "body": _jsonable(record.body.to_wire()),
    }


def _jsonable(value: Any) -> Any:
    """A wire value (CBOR's bytes, maps, lists, text, numbers) as JSON values, bytes hex-encoded."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value
