"""The JSON form of a record: every kind, byte strings as hex, nothing JSON cannot carry exactly."""

import json
from collections.abc import Mapping

from hypothesis import given

from node.records_json import record_json
from vouching import digest_body, verify_record, vouch_body
from vouching.bodies import CATEGORIES, OUTCOMES
from vouching.cbor import encode

from ..factories import Org, new_did
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
    assert _same(shown["body"], _numbers_as_floats(args.kind, args.body))


def _numbers_as_floats(kind, body):
    """body with a vouch's weight and a digest's dp.eps as floats, as the JSON form shows them whatever the wire."""
    if kind == "vouch":
        return {**body, "weight": float(body["weight"])}
    if kind == "digest" and "dp" in body:
        return {**body, "dp": {"eps": float(body["dp"]["eps"])}}
    return body


def test_a_weight_and_an_eps_written_as_integers_show_as_the_floats_they_stand_for():
    """A node in another language writes 1.0 as the integer 1 (JavaScript's CBOR does): its records show as ours do,
    so a script reading the JSON meets one type whoever signed."""
    org, agent = Org(), new_did()
    digest = digest_body(agent, epoch=0, length=1, outcomes=dict.fromkeys(OUTCOMES, 0),
                         categories=dict.fromkeys(CATEGORIES, 0), high_risk=dict.fromkeys(OUTCOMES, 0),
                         evidence_root=bytes(32), dp_epsilon=2.0)
    for kind, body, integer in [("vouch", vouch_body(agent, 1.0, "operator"), {"weight": 1}),
                                ("digest", digest, {"dp": {"eps": 2}})]:
        as_float, as_integer = org.record(kind, body), org.record(kind, body | integer)
        assert encode(as_integer.body.to_wire()) == encode(body | integer)  # the wire holds the integer
        assert json.dumps(record_json(as_integer)["body"]) == json.dumps(record_json(as_float)["body"])
