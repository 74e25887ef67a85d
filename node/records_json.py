"""The JSON form of a record (DESIGN §3, §8): the payload's fields with the wire body, every byte string as hex.

One shape everywhere JSON shows a record: the local API, the client and the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vouching import DigestBody, Record, VouchBody


def record_json(record: Record) -> dict[str, Any]:
    """`{id, kind, iss, seq, prev, ts, body}`: ids hex, prev null for an issuer's first record, body as on the wire
    but for a vouch's weight and a digest's dp.eps, always the float they stand for (a node in another language may
    write 1.0 as the integer 1: README "Nodes in other languages")."""
    body = record.body.to_wire()
    if type(record.body) is VouchBody:
        body["weight"] = record.body.weight
    elif type(record.body) is DigestBody and record.body.dp_epsilon is not None:
        body["dp"] = {"eps": record.body.dp_epsilon}
    return {
        "id": record.id.hex(),
        "kind": record.kind,
        "iss": record.iss,
        "seq": record.seq,
        "prev": None if record.prev is None else record.prev.hex(),
        "ts": record.ts,
        "body": _jsonable(body),
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
