"""The JSON form of a record: every kind, byte strings as hex, nothing JSON cannot carry exactly."""

import json
from collections.abc import Mapping

from hypothesis import given

from node.records_json import record_json
from vouching import verify_record

from ..vouching.record_strategies import record_args


def _same(shown, wire):
    """Whether a JSON value shows a wire value: bytes as lowercase hex, maps and lists item by item."""
    if isinstance(wire, bytes):
        return shown == wire.hex()
    if isinstance(wire, Mapping):
        return isinstance(shown, dict) and shown.keys() == wire.keys() and all(_same(shown[k], wire[k]) for k in wire)
    if isinstance(wire, (list, tuple)):
        return isinstance(shown, list) and len(shown) == len(wire) and all(map(_same, shown, wire))
    return type(shown) is type(wire) and shown == wire


@given(record_args())
def test_every_kind_of_record_has_an_exact_json_form(args):
    record = verify_record(args.sign())
    shown = record_json(record)
    assert json.loads(json.dumps(shown, allow_nan=False)) == shown
    assert shown["id"] == record.id.hex()
    assert (shown["kind"], shown["iss"], shown["seq"], shown["ts"]) == (args.kind, args.iss, args.seq, args.ts)
    assert shown["prev"] == (None if args.prev is None else args.prev.hex())
    assert _same(shown["body"], args.body)
