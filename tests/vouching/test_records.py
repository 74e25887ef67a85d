"""Signed records: round trips for every kind, and every kind of bad input rejected with the field and the rule."""

import hashlib
import re
import time
from dataclasses import replace
from typing import Any
from unittest import mock

import cbor2
import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vouching import (
    MAX_RECORD_SIZE,
    Counts,
    DigestBody,
    InvalidRecord,
    OrgBody,
    RevokeBody,
    VouchBody,
    did_key,
    digest_body,
    equivocation_body,
    failed_signatures,
    issue_digests,
    issue_record,
    load_record,
    load_stored,
    org_body,
    record_id,
    revoke_body,
    sign_record,
    verify_record,
    verify_record_deferred,
    vouch_body,
)
from vouching.cbor import encode
from vouching.cose import sign1

from .record_strategies import RecordArgs, record_args

KEY = nacl.signing.SigningKey(bytes(range(32)))
ISS = did_key(bytes(KEY.verify_key))
OTHER_KEY = nacl.signing.SigningKey(bytes(range(1, 33)))


def _did_of(i: int) -> str:
    return did_key(nacl.signing.SigningKey(bytes([i + 1]) * 32).verify_key.encode())
AGENT = did_key(bytes(nacl.signing.SigningKey(bytes(range(2, 34))).verify_key))
TS = 1_764_000_000_000
HOUR = 3_600_000
PREV = hashlib.sha256(b"previous").digest()

BODIES: dict[str, dict[str, Any]] = {
    "org": org_body("Acme Agents", "main", ["/ip4/127.0.0.1/tcp/4001"], next=AGENT),
    "vouch": vouch_body(AGENT, 0.8, "operator", scope=["tool:search"], expires=TS + HOUR),
    "revoke": revoke_body(PREV, "key compromised"),
    "digest": digest_body(
        AGENT,
        epoch=TS - HOUR,
        length=HOUR,
        outcomes={"ok": 7, "error": 1, "denied": 1, "timeout": 1},
        categories={"tool": 4, "mcp": 2, "a2a": 1, "auth": 1, "resource": 1, "other": 1},
        high_risk={"ok": 1, "error": 0, "denied": 1, "timeout": 0},
        evidence_root=bytes(32),
        dp_epsilon=1.0,
    ),
    "equivocation": equivocation_body("checkpoint", AGENT, b"checkpoint b", b"checkpoint a"),
}


def _payload(kind: str = "vouch", body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The payload of a valid record of kind with seq 2."""
    body = BODIES[kind] if body is None else body
    return {"v": 1, "kind": kind, "iss": ISS, "seq": 2, "prev": PREV, "ts": TS, "body": body}


DELETE = object()


def _changed(mapping: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    result = dict(mapping)
    for key, value in changes.items():
        if value is DELETE:
            del result[key]
        else:
            result[key] = value
    return result


def _sign_payload(payload: Any, key: nacl.signing.SigningKey = KEY) -> bytes:
    """A record signed correctly over any payload, so that what is tested is the payload's validation."""
    return sign1(key, encode(payload), protected={1: -8}, unprotected={})


def _sign_payload_bytes(payload: bytes) -> bytes:
    return sign1(KEY, payload, protected={1: -8}, unprotected={})


# ---------------------------------------------------------------------------------------------- valid records


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_sign_and_verify_each_kind(kind: str) -> None:
    data = sign_record(KEY, kind, BODIES[kind], seq=2, prev=PREV, ts=TS)
    record = verify_record(data)
    assert (record.kind, record.iss, record.seq, record.prev, record.ts) == (kind, ISS, 2, PREV, TS)
    assert record.raw == data
    assert record.id == record_id(data) == hashlib.sha256(data).digest()
    assert record.body.to_wire() == BODIES[kind]


def test_typed_bodies() -> None:
    org = verify_record(sign_record(KEY, "org", BODIES["org"], seq=1, prev=None, ts=TS)).body
    assert org == OrgBody("Acme Agents", "main", ("/ip4/127.0.0.1/tcp/4001",), AGENT)
    vouch = verify_record(sign_record(KEY, "vouch", BODIES["vouch"], seq=1, prev=None, ts=TS)).body
    assert vouch == VouchBody(AGENT, 0.8, "operator", ("tool:search",), TS + HOUR)
    revoke = verify_record(sign_record(KEY, "revoke", BODIES["revoke"], seq=1, prev=None, ts=TS)).body
    assert revoke == RevokeBody(PREV, "key compromised")
    digest = verify_record(sign_record(KEY, "digest", BODIES["digest"], seq=1, prev=None, ts=TS)).body
    assert isinstance(digest, DigestBody)
    assert (digest.agent, digest.epoch, digest.length) == (AGENT, TS - HOUR, HOUR)
    assert (digest.events, digest.evidence_root, digest.dp_epsilon) == (10, bytes(32), 1.0)
    assert dict(digest.outcomes) == {"ok": 7, "error": 1, "denied": 1, "timeout": 1}
    assert list(digest.categories) == ["a2a", "mcp", "auth", "tool", "other", "resource"]  # wire order
    assert digest.high_risk["denied"] == 1
    with pytest.raises(KeyError):
        digest.outcomes["other"]


def test_only_a_keys_first_record_names_the_key_it_replaces() -> None:
    body = org_body("Acme Agents", "main", prior=AGENT)
    first = verify_record(sign_record(KEY, "org", body, seq=1, prev=None, ts=TS))
    assert first.body == OrgBody("Acme Agents", "main", (), None, AGENT)
    assert first.body.to_wire() == body
    later = {"v": 1, "kind": "org", "iss": ISS, "seq": 2, "prev": PREV, "ts": TS, "body": body}
    with pytest.raises(InvalidRecord, match=r"body.prior: only a key's first record \(seq 1\) may name"):
        verify_record(_sign_payload(later))
    with pytest.raises(InvalidRecord, match=r"body.prior: only a key's first record"):
        sign_record(KEY, "org", body, seq=2, prev=PREV, ts=TS)


def test_counts_are_hashable_values() -> None:
    counts = Counts((("ok", 1), ("error", 2)))
    assert hash(counts) == hash(Counts((("ok", 1), ("error", 2))))
    assert len(counts) == 2 and counts.get("error") == 2


def test_first_record_has_no_prev() -> None:
    record = verify_record(sign_record(KEY, "org", BODIES["org"], seq=1, prev=None, ts=TS))
    assert (record.seq, record.prev) == (1, None)


def test_ts_defaults_to_now_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    record = verify_record(sign_record(KEY, "revoke", BODIES["revoke"], seq=1, prev=None))
    assert before <= record.ts <= time.time_ns() // 1_000_000


def test_int_weight_is_sent_as_float() -> None:
    """This node signs floats: vouch_body turns the int 1 into 1.0 (CBOR f9 3c00) on the wire."""
    body = vouch_body(AGENT, 1, "audit")
    raw = sign_record(KEY, "vouch", body, seq=1, prev=None, ts=TS)
    assert b"\x66weight\xf9\x3c\x00" in raw
    record = verify_record(raw)
    assert type(record.body.weight) is float and not record.body.integer_weight


def test_a_vouch_of_the_integer_weight_1_is_the_float_1_vouch() -> None:
    """JavaScript's CBOR (cborg) writes a weight of 1.0 as the integer 1 (66 77 65 69 67 68 74 01): accepted, as the
    number 1.0, and given back on the wire as the integer it was (re-encoding gives the same bytes)."""
    as_int = {**vouch_body(AGENT, 1.0, "operator"), "weight": 1}
    raw = _sign_payload(_payload("vouch", as_int))
    assert bytes.fromhex("6677656967687401") in raw
    record = verify_record(raw)
    assert type(record.body.weight) is float and record.body.weight == 1.0 and record.body.integer_weight
    as_float = verify_record(sign_record(KEY, "vouch", vouch_body(AGENT, 1.0, "operator"), seq=2, prev=PREV, ts=TS))
    assert record.body == replace(as_float.body, integer_weight=True)
    assert type(record.body.to_wire()["weight"]) is int
    assert sign_record(KEY, "vouch", record.body.to_wire(), seq=2, prev=PREV, ts=TS) == raw
    assert load_stored(raw) == load_record(raw) == record


@pytest.mark.parametrize("eps", [1, 2, 9007199254740991])
def test_a_digest_of_an_integer_eps_is_the_float_eps_digest(eps: int) -> None:
    """A whole-number dp.eps written as an integer (as JavaScript's CBOR writes it) is accepted as its float, and
    given back as the integer it was, by to_wire and by the digest encoder (issue_digests)."""
    body = {**BODIES["digest"], "dp": {"eps": eps}}
    raw = _sign_payload(_payload("digest", body))
    record = verify_record(raw)
    assert type(record.body.dp_epsilon) is float and record.body.dp_epsilon == eps and record.body.integer_eps
    assert type(record.body.to_wire()["dp"]["eps"]) is int
    assert sign_record(KEY, "digest", record.body.to_wire(), seq=2, prev=PREV, ts=TS) == raw
    assert issue_digests(KEY, [record.body], seq=2, prev=PREV, ts=TS)[0].raw == raw
    stored = load_stored(raw)
    assert stored == load_record(raw) == record and repr(stored) == repr(record)


def test_protected_and_unprotected_headers_are_exact() -> None:
    data = sign_record(KEY, "revoke", BODIES["revoke"], seq=1, prev=None, ts=TS)
    assert data.startswith(bytes.fromhex("d28443a10127a0"))


@given(record_args())
def test_verify_inverts_sign(args: RecordArgs) -> None:
    data = args.sign()
    record = verify_record(data)
    assert (record.kind, record.iss, record.seq, record.prev, record.ts) == (
        args.kind,
        args.iss,
        args.seq,
        args.prev,
        args.ts,
    )
    assert record.body.to_wire() == args.body
    # encode(decode(b)) == b: signing what was decoded gives back the same bytes (Ed25519 is deterministic).
    body = record.body.to_wire()
    assert sign_record(args.key, record.kind, body, seq=record.seq, prev=record.prev, ts=record.ts) == data


# ---------------------------------------------------------------------------------------------- hostile bytes


@given(record_args(), st.data())
def test_any_flipped_bit_is_rejected(args: RecordArgs, data: st.DataObject) -> None:
    record = args.sign()
    bit = data.draw(st.integers(0, len(record) * 8 - 1))
    flipped = bytearray(record)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidRecord):
        verify_record(bytes(flipped))


def _deferred(data: bytes):
    """verify_record_deferred then its signature check: the record, or InvalidRecord."""
    record, check = verify_record_deferred(data)
    if check is not None and failed_signatures([check]):
        raise InvalidRecord("signature: does not verify")
    return record


@given(record_args(), st.data())
def test_a_deferred_signature_check_accepts_and_rejects_exactly_what_verify_record_does(
    args: RecordArgs, data: st.DataObject
) -> None:
    record = args.sign()
    assert _deferred(record) == verify_record(record)
    bit = data.draw(st.integers(0, len(record) * 8 - 1))
    flipped = bytearray(record)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidRecord):
        _deferred(bytes(flipped))


def test_failed_signatures_names_each_failure_in_order() -> None:
    checks = [verify_record_deferred(sign_record(KEY, "vouch", vouch_body(_did_of(i), 0.5, "operator"), seq=1,
                                                 prev=None))[1] for i in range(4)]
    forged = [checks[0], checks[1]._replace(signature=bytes(64)), checks[2], checks[3]._replace(public_key=bytes(32))]
    assert failed_signatures(checks) == [] and failed_signatures(forged) == [1, 3]


@given(st.binary(max_size=600))
def test_random_bytes_raise_only_invalid_record(data: bytes) -> None:
    with pytest.raises(InvalidRecord):
        verify_record(data)


edits = st.lists(st.tuples(st.integers(0), st.integers(0, 255), st.integers(0, 3)), min_size=1, max_size=4)


@given(record_args(), edits)
def test_mutated_records_raise_only_invalid_record(args: RecordArgs, edits: list[tuple[int, int, int]]) -> None:
    data = bytearray(args.sign())
    for position, byte, kind in edits:
        position %= len(data) + 1
        if kind == 0 and position < len(data):
            data[position] = byte
        elif kind == 1:
            data.insert(position, byte)
        elif kind == 2:
            del data[position : position + 1]
        else:
            del data[position:]
    try:
        verify_record(bytes(data))
    except InvalidRecord:
        return
    assert bytes(data) == args.sign()  # only an edit that changed nothing leaves a valid record


ascii_keys = st.text(st.characters(max_codepoint=0x7F), max_size=10)
values = st.recursive(
    st.integers(-(2**64), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=30)
    | st.floats()
    | st.booleans()
    | st.none(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ascii_keys, inner, max_size=4),
    max_leaves=8,
)


@given(record_args(), st.data())
def test_signed_payloads_with_any_field_changed_raise_only_invalid_record(
    args: RecordArgs, data: st.DataObject
) -> None:
    # Signed properly, so that what is fuzzed is the schema: any field of the payload or body, set to any value.
    payload = {"v": 1, "kind": args.kind, "iss": args.iss, "seq": args.seq, "ts": args.ts, "body": dict(args.body)}
    if args.prev is not None:
        payload["prev"] = args.prev
    target = payload["body"] if data.draw(st.booleans()) else payload
    field = data.draw(st.sampled_from(sorted(target)) | ascii_keys)
    target[field] = data.draw(values)
    try:
        record = verify_record(_sign_payload(payload, args.key))
    except InvalidRecord:
        return
    assert record.body.to_wire() == payload["body"]


def test_truncated() -> None:
    data = sign_record(KEY, "vouch", BODIES["vouch"], seq=2, prev=PREV, ts=TS)
    for end in (0, 1, 7, len(data) // 2, len(data) - 1):
        with pytest.raises(InvalidRecord):
            verify_record(data[:end])
    with pytest.raises(InvalidRecord, match="COSE_Sign1: truncated"):
        verify_record(data[:-1])


def test_oversized_is_rejected_before_decoding() -> None:
    data = _sign_payload_bytes(bytes(MAX_RECORD_SIZE))
    with pytest.raises(InvalidRecord, match=f"record: {len(data)} bytes, more than {MAX_RECORD_SIZE}"):
        verify_record(data)


def test_sign_refuses_an_oversized_record() -> None:
    body = equivocation_body("checkpoint", AGENT, b"a" * 33_000, b"b" * 33_000)
    with pytest.raises(InvalidRecord, match=f"more than {MAX_RECORD_SIZE}"):
        sign_record(KEY, "equivocation", body, seq=1, prev=None, ts=TS)


def test_exactly_64_kib_is_accepted_and_one_byte_more_is_not() -> None:
    def sign(size_b: int) -> bytes:
        body = equivocation_body("checkpoint", AGENT, b"a" * 30_000, b"b" * size_b)
        return sign_record(KEY, "equivocation", body, seq=1, prev=None, ts=TS)

    size_b = 30_000 + MAX_RECORD_SIZE - len(sign(30_000))
    assert len(data := sign(size_b)) == MAX_RECORD_SIZE
    verify_record(data)
    with pytest.raises(InvalidRecord, match=f"record: {MAX_RECORD_SIZE + 1} bytes, more than {MAX_RECORD_SIZE}"):
        sign(size_b + 1)


def test_trailing_bytes() -> None:
    data = sign_record(KEY, "vouch", BODIES["vouch"], seq=2, prev=PREV, ts=TS)
    with pytest.raises(InvalidRecord, match="COSE_Sign1: trailing bytes"):
        verify_record(data + b"\x00")


def test_not_bytes() -> None:
    data = sign_record(KEY, "vouch", BODIES["vouch"], seq=2, prev=PREV, ts=TS)
    for value in (bytearray(data), memoryview(data), data.hex(), None):
        with pytest.raises(InvalidRecord, match="record: must be bytes"):
            verify_record(value)  # type: ignore[arg-type]


def test_payload_keys_out_of_order() -> None:
    # cbor2's plain encoder keeps insertion order: "ts" (after its 9-byte value, "v" at byte 13) breaks the order.
    payload = _payload()
    unsorted = cbor2.dumps({"ts": payload.pop("ts"), **payload})
    with pytest.raises(InvalidRecord, match="payload: map keys out of order at byte 13"):
        verify_record(_sign_payload_bytes(unsorted))


def test_payload_indefinite_length() -> None:
    payload = encode(_payload())
    indefinite = bytes([0xBF]) + payload[1:] + b"\xff"  # the same map, as an indefinite-length one
    with pytest.raises(InvalidRecord, match="payload: indefinite length at byte 0"):
        verify_record(_sign_payload_bytes(indefinite))


def test_payload_non_shortest_integer() -> None:
    payload = encode(_payload())
    seq_at = payload.index(b"\x63seq\x02") + 4
    longer = payload[:seq_at] + b"\x1a\x00\x00\x00\x02" + payload[seq_at + 1 :]
    with pytest.raises(InvalidRecord, match=f"payload: integer not in shortest form at byte {seq_at}"):
        verify_record(_sign_payload_bytes(longer))


def test_payload_trailing_bytes() -> None:
    with pytest.raises(InvalidRecord, match="payload: trailing bytes"):
        verify_record(_sign_payload_bytes(encode(_payload()) + b"\x00"))


def test_payload_with_a_tag() -> None:
    with pytest.raises(InvalidRecord, match="payload: tags are not allowed"):
        verify_record(_sign_payload_bytes(b"\xc1" + encode(_payload())))


def test_payload_not_a_map() -> None:
    with pytest.raises(InvalidRecord, match="payload: must be a map"):
        verify_record(_sign_payload([1, 2]))


def test_wrong_cose_tag() -> None:
    data = sign_record(KEY, "vouch", BODIES["vouch"], seq=2, prev=PREV, ts=TS)
    with pytest.raises(InvalidRecord, match="COSE_Sign1: must start with tag 18"):
        verify_record(b"\xd1" + data[1:])
    with pytest.raises(InvalidRecord, match="COSE_Sign1: must start with tag 18"):
        verify_record(data[1:])


def test_wrong_alg() -> None:
    data = sign1(KEY, encode(_payload()), protected={1: -7}, unprotected={})
    with pytest.raises(InvalidRecord, match=r"protected: alg must be EdDSA \(-8\)"):
        verify_record(data)


def test_missing_alg() -> None:
    data = sign1(KEY, encode(_payload()), protected={}, unprotected={})
    with pytest.raises(InvalidRecord, match=r"protected: alg must be EdDSA \(-8\)"):
        verify_record(data)


def test_extra_protected_header() -> None:
    data = sign1(KEY, encode(_payload()), protected={1: -8, 3: 0}, unprotected={})
    with pytest.raises(InvalidRecord, match=r"protected: must hold only alg, not labels \[3\]"):
        verify_record(data)


def test_unprotected_header_must_be_empty() -> None:
    data = sign1(KEY, encode(_payload()), protected={1: -8}, unprotected={4: b"kid"})
    with pytest.raises(InvalidRecord, match="unprotected: must be an empty map"):
        verify_record(data)


def test_bad_signature() -> None:
    data = bytearray(sign_record(KEY, "vouch", BODIES["vouch"], seq=2, prev=PREV, ts=TS))
    data[-1] ^= 0x01
    with pytest.raises(InvalidRecord, match="signature: does not verify"):
        verify_record(bytes(data))


def test_wrong_key() -> None:
    # A payload claiming ISS, signed by another org's key.
    with pytest.raises(InvalidRecord, match="signature: does not verify"):
        verify_record(_sign_payload(_payload(), OTHER_KEY))


def test_signature_of_wrong_length() -> None:
    data = sign_record(KEY, "vouch", BODIES["vouch"], seq=2, prev=PREV, ts=TS)
    with pytest.raises(InvalidRecord, match="signature: must be 64 bytes"):
        verify_record(data[:-66] + b"\x58\x3f" + data[-63:])


# ---------------------------------------------------------------------------------------------- payload schema

MAX = 2**53 - 1

PAYLOAD_CASES = [
    ({"v": 2}, r"v: version 2 is not supported \(this node reads version 1\)"),
    ({"v": 0}, "v: must be 1"),
    ({"v": True}, "v: must be 1"),
    ({"v": 1.0}, "v: must be 1"),
    ({"v": DELETE}, "v: must be 1"),
    ({"kind": "gossip"}, "kind: must be one of org, vouch, revoke, digest, equivocation"),
    ({"kind": ["vouch"]}, "kind: must be one of"),
    ({"kind": DELETE}, "kind: required field is missing"),
    ({"iss": "did:web:example.com"}, "iss: must be an Ed25519 did:key"),
    ({"iss": 5}, "iss: must be an Ed25519 did:key"),
    ({"iss": DELETE}, "iss: required field is missing"),
    ({"seq": 0}, rf"seq: must be an integer in \[1, {MAX}\]"),
    ({"seq": MAX + 1}, rf"seq: must be an integer in \[1, {MAX}\]"),
    ({"seq": True}, r"seq: must be an integer in \[1,"),
    ({"seq": 2.0}, r"seq: must be an integer in \[1,"),
    ({"seq": DELETE}, "seq: required field is missing"),
    ({"prev": DELETE}, "prev: must be present when seq is greater than 1"),
    ({"prev": PREV[:31]}, "prev: must be a byte string of 32 bytes"),
    ({"prev": PREV.hex()}, "prev: must be a byte string of 32 bytes"),
    ({"prev": None}, "prev: must be a byte string of 32 bytes"),
    ({"seq": 1}, "prev: must be absent when seq is 1"),
    ({"ts": -1}, rf"ts: must be an integer in \[0, {MAX}\]"),
    ({"ts": float(TS)}, r"ts: must be an integer in \[0,"),
    ({"ts": DELETE}, "ts: required field is missing"),
    ({"body": DELETE}, "body: required field is missing"),
    ({"body": [1]}, "body: must be a map"),
    ({"extra": 1}, "payload: unknown field 'extra'"),
    ({"Seq": 2}, "payload: unknown field 'Seq'"),
]


@pytest.mark.parametrize(("changes", "reason"), PAYLOAD_CASES)
def test_payload_rules(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        verify_record(_sign_payload(_changed(_payload(), changes)))


def test_a_future_version_is_named_before_its_unknown_fields() -> None:
    with pytest.raises(InvalidRecord, match="v: version 3 is not supported"):
        verify_record(_sign_payload(_changed(_payload(), {"v": 3, "shiny": True})))


def test_int_keys_in_the_payload_are_unknown_fields() -> None:
    with pytest.raises(InvalidRecord, match="payload: unknown field 1"):
        verify_record(_sign_payload({**_payload(), 1: 1}))


# ---------------------------------------------------------------------------------------------- body schemas

X25519_DID = "did:key:z6LShLeXRTzevtwcfehaGEzCMyL3bNsAeKCwcqwJxyCo63yE"


def _outcomes(**changes: Any) -> dict[str, Any]:
    return _changed(BODIES["digest"]["outcomes"], changes)


def _categories(**changes: Any) -> dict[str, Any]:
    return _changed(BODIES["digest"]["categories"], changes)


def _high_risk(**changes: Any) -> dict[str, Any]:
    return _changed(BODIES["digest"]["high_risk"], changes)


BODY_CASES = [
    # org
    ("org", {"name": DELETE}, "body.name: required field is missing"),
    ("org", {"name": ""}, "body.name: must be printable text of 1 to 128 characters"),
    ("org", {"name": "x" * 129}, "body.name: must be printable text of 1 to 128 characters"),
    ("org", {"name": "Acme\nAgents"}, "body.name: must be printable text"),
    ("org", {"name": b"Acme"}, "body.name: must be printable text"),
    ("org", {"network": "Main"}, "body.network: must be 1 to 64 characters of a-z 0-9 . _ -"),
    ("org", {"network": "-main"}, "body.network: must be 1 to 64 characters"),
    ("org", {"network": "m" * 65}, "body.network: must be 1 to 64 characters"),
    ("org", {"network": ""}, "body.network: must be 1 to 64 characters"),
    ("org", {"addrs": "/ip4/1.2.3.4"}, "body.addrs: must be a list of at most 16 addresses"),
    ("org", {"addrs": [f"/ip4/10.0.0.{i}" for i in range(17)]}, "body.addrs: must be a list of at most 16"),
    ("org", {"addrs": ["ip4/1.2.3.4"]}, "body.addrs: each must be a multiaddr of 1 to 256 characters starting '/'"),
    ("org", {"addrs": ["/" + "x" * 256]}, "body.addrs: each must be a multiaddr of 1 to 256 characters"),
    ("org", {"addrs": [1]}, "body.addrs: each must be a multiaddr"),
    ("org", {"addrs": ["/dns/a b"]}, "body.addrs: each must be printable ASCII without spaces"),
    ("org", {"addrs": ["/dns/\u00e9"]}, "body.addrs: each must be printable ASCII without spaces"),
    ("org", {"addrs": ["/ip4/1.2.3.4", "/ip4/1.2.3.4"]}, "body.addrs: entries must not repeat"),
    ("org", {"next": ISS}, r"body.next: must differ from iss \(it names the replacement key\)"),
    ("org", {"next": None}, "body.next: must be an Ed25519 did:key"),
    ("org", {"next": X25519_DID}, "body.next: must be an Ed25519 did:key"),
    ("org", {"prior": ISS}, r"body.prior: must differ from iss \(it names the key this one replaces\)"),
    ("org", {"prior": "did:web:acme"}, "body.prior: must be an Ed25519 did:key"),
    ("org", {"prior": AGENT}, "body.next: must differ from body.prior"),
    ("org", {"port": 4001}, "body: unknown field 'port'"),
    # vouch
    ("vouch", {"subject": DELETE}, "body.subject: required field is missing"),
    ("vouch", {"subject": ISS}, "body.subject: must not be the issuer"),
    ("vouch", {"subject": "agent-7"}, "body.subject: must be an Ed25519 did:key"),
    ("vouch", {"weight": 0.0}, r"body.weight: must be a float in \(0, 1\] or the integer 1"),
    ("vouch", {"weight": -0.5}, r"body.weight: must be a float in \(0, 1\] or the integer 1"),
    ("vouch", {"weight": 1.0000001}, r"body.weight: must be a float in \(0, 1\] or the integer 1"),
    ("vouch", {"weight": float("nan")}, r"body.weight: must be a float in \(0, 1\] or the integer 1"),
    ("vouch", {"weight": 0}, r"body.weight: must be a float in \(0, 1\] or the integer 1"),
    ("vouch", {"weight": 2}, r"body.weight: must be a float in \(0, 1\] or the integer 1"),
    ("vouch", {"weight": -1}, r"body.weight: must be a float in \(0, 1\] or the integer 1"),
    # Python's bool is an int, and CBOR's true is not a number
    ("vouch", {"weight": True}, r"body.weight: must be a float in \(0, 1\] or the integer 1"),
    ("vouch", {"weight": "1"}, r"body.weight: must be a float in \(0, 1\] or the integer 1"),
    ("vouch", {"basis": "friend"}, "body.basis: must be one of operator, audit, developer, interaction, org-peer"),
    ("vouch", {"basis": DELETE}, "body.basis: required field is missing"),
    ("vouch", {"scope": []}, r"body.scope: must be a list of 1 to 64 entries \(omit it for no limit\)"),
    ("vouch", {"scope": None}, "body.scope: must be a list of 1 to 64 entries"),
    ("vouch", {"scope": [f"tool:{i}" for i in range(65)]}, "body.scope: must be a list of 1 to 64 entries"),
    ("vouch", {"scope": ["a", "a"]}, "body.scope: entries must not repeat"),
    ("vouch", {"scope": [""]}, "body.scope: must be printable text of 1 to 128 characters"),
    ("vouch", {"scope": ["x" * 129]}, "body.scope: must be printable text of 1 to 128 characters"),
    ("vouch", {"scope": [7]}, "body.scope: must be printable text"),
    ("vouch", {"expires": TS}, "body.expires: must be later than ts"),
    ("vouch", {"expires": TS - 1}, "body.expires: must be later than ts"),
    ("vouch", {"expires": True}, r"body.expires: must be an integer in \[0,"),
    ("vouch", {"expires": float(TS + 1)}, r"body.expires: must be an integer in \[0,"),
    ("vouch", {"expires": None}, r"body.expires: must be an integer in \[0,"),
    ("vouch", {"why": "trust me"}, "body: unknown field 'why'"),
    # revoke
    ("revoke", {"record": PREV[:31]}, "body.record: must be a byte string of 32 bytes"),
    ("revoke", {"record": PREV.hex()}, "body.record: must be a byte string of 32 bytes"),
    ("revoke", {"record": DELETE}, "body.record: required field is missing"),
    ("revoke", {"reason": ""}, "body.reason: must be printable text of 1 to 256 characters"),
    ("revoke", {"reason": "x" * 257}, "body.reason: must be printable text of 1 to 256 characters"),
    ("revoke", {"reason": DELETE}, "body.reason: required field is missing"),
    # digest
    ("digest", {"agent": "did:key:z6Mk"}, "body.agent: must be an Ed25519 did:key"),
    ("digest", {"epoch": -1}, r"body.epoch: must be an integer in \[0,"),
    ("digest", {"len": 0}, r"body.len: must be an integer in \[1,"),
    ("digest", {"length": HOUR}, "body: unknown field 'length'"),
    ("digest", {"epoch": TS - HOUR + 1}, "body.len: the epoch must end at or before ts"),
    ("digest", {"outcomes": _outcomes(timeout=DELETE)}, "body.outcomes.timeout: required field is missing"),
    ("digest", {"outcomes": _outcomes(crash=0)}, "body.outcomes: unknown field 'crash'"),
    ("digest", {"outcomes": _outcomes(ok=-7)}, r"body.outcomes.ok: must be an integer in \[0,"),
    ("digest", {"outcomes": _outcomes(ok=True)}, r"body.outcomes.ok: must be an integer"),
    ("digest", {"outcomes": [7, 1, 1, 1]}, "body.outcomes: must be a map"),
    ("digest", {"categories": _categories(other=DELETE)}, "body.categories.other: required field is missing"),
    ("digest", {"categories": _categories(tool=4.0)}, "body.categories.tool: must be an integer"),
    ("digest", {"high_risk": _high_risk(timeout=DELETE)}, "body.high_risk.timeout: required field is missing"),
    ("digest", {"events": 11}, "body.events: must equal the sum of body.outcomes"),
    ("digest", {"events": -10}, r"body.events: must be an integer in \[0,"),
    ("digest", {"categories": _categories(tool=5)}, "body.categories: must sum to body.events"),
    ("digest", {"high_risk": _high_risk(error=2)}, "body.high_risk.error: must not exceed body.outcomes.error"),
    ("digest", {"evidence_root": bytes(31)}, "body.evidence_root: must be a byte string of 32 bytes"),
    ("digest", {"dp": {"eps": 0.0}},
     r"body.dp.eps: must be a finite float greater than 0 or an integer in \[1, 9007199254740991\]"),
    ("digest", {"dp": {"eps": float("inf")}},
     r"body.dp.eps: must be a finite float greater than 0 or an integer in \[1, 9007199254740991\]"),
    ("digest", {"dp": {"eps": float("nan")}},
     r"body.dp.eps: must be a finite float greater than 0 or an integer in \[1, 9007199254740991\]"),
    ("digest", {"dp": {"eps": 0}},
     r"body.dp.eps: must be a finite float greater than 0 or an integer in \[1, 9007199254740991\]"),
    ("digest", {"dp": {"eps": -2}},
     r"body.dp.eps: must be a finite float greater than 0 or an integer in \[1, 9007199254740991\]"),
    # past MAX_UINT, where a float no longer holds every integer
    ("digest", {"dp": {"eps": 2**53}},
     r"body.dp.eps: must be a finite float greater than 0 or an integer in \[1, 9007199254740991\]"),
    ("digest", {"dp": {"eps": 2**64 - 1}},
     r"body.dp.eps: must be a finite float greater than 0 or an integer in \[1, 9007199254740991\]"),
    ("digest", {"dp": {"eps": True}},
     r"body.dp.eps: must be a finite float greater than 0 or an integer in \[1, 9007199254740991\]"),
    ("digest", {"dp": {"eps": 1.0, "delta": 0.0}}, "body.dp: unknown field 'delta'"),
    ("digest", {"dp": {}}, "body.dp.eps: required field is missing"),
    ("digest", {"dp": 1.0}, "body.dp: must be a map"),
    # equivocation
    ("equivocation", {"type": "gossip"}, "body.type: must be one of record, checkpoint"),
    ("equivocation", {"offender": "x"}, "body.offender: must be an Ed25519 did:key"),
    ("equivocation", {"a": b""}, "body.a: must be a byte string of at least 1 bytes"),
    ("equivocation", {"b": "checkpoint b"}, "body.b: must be a byte string of at least 1 bytes"),
    ("equivocation", {"a": b"checkpoint b", "b": b"checkpoint a"}, r"body.b: must sort after body.a \(bytewise\)"),
    ("equivocation", {"a": b"same", "b": b"same"}, "body.b: must sort after body.a"),
]


@pytest.mark.parametrize(("kind", "changes", "reason"), BODY_CASES)
def test_body_rules_on_verify(kind: str, changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        verify_record(_sign_payload(_payload(kind, _changed(BODIES[kind], changes))))


@pytest.mark.parametrize(("kind", "changes", "reason"), BODY_CASES)
def test_sign_refuses_what_verify_would_reject(kind: str, changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        sign_record(KEY, kind, _changed(BODIES[kind], changes), seq=2, prev=PREV, ts=TS)


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"kind": "gossip"}, "kind: must be one of"),
        ({"seq": 0}, r"seq: must be an integer in \[1,"),
        ({"seq": True}, r"seq: must be an integer in \[1,"),
        ({"ts": -1}, r"ts: must be an integer in \[0,"),
        ({"ts": 1.5}, r"ts: must be an integer in \[0,"),
        ({"prev": PREV[:31]}, "prev: must be a byte string of 32 bytes"),
    ],
)
def test_sign_refuses_bad_common_fields(arguments: dict[str, Any], reason: str) -> None:
    call = {"kind": "revoke", "seq": 2, "prev": PREV, "ts": TS, **arguments}
    with pytest.raises(InvalidRecord, match=reason):
        sign_record(KEY, call.pop("kind"), BODIES["revoke"], **call)


def test_sign_checks_prev_against_seq() -> None:
    with pytest.raises(InvalidRecord, match="prev: must be absent when seq is 1"):
        sign_record(KEY, "revoke", BODIES["revoke"], seq=1, prev=PREV, ts=TS)
    with pytest.raises(InvalidRecord, match="prev: must be present when seq is greater than 1"):
        sign_record(KEY, "revoke", BODIES["revoke"], seq=2, prev=None, ts=TS)


def test_counts_are_in_wire_order_whatever_order_sign_record_was_given() -> None:
    categories = dict(reversed(list(BODIES["digest"]["categories"].items())))
    body = {**BODIES["digest"], "categories": categories}
    record = verify_record(sign_record(KEY, "digest", body, seq=1, prev=None, ts=TS))
    assert list(record.body.categories) == ["a2a", "mcp", "auth", "tool", "other", "resource"]
    assert record.raw == sign_record(KEY, "digest", BODIES["digest"], seq=1, prev=None, ts=TS)


def test_high_risk_is_compared_name_by_name_whatever_the_order() -> None:
    reordered = dict(reversed(list(_high_risk().items())))
    sign_record(KEY, "digest", {**BODIES["digest"], "high_risk": reordered}, seq=1, prev=None, ts=TS)
    too_many = dict(reversed(list(_high_risk(error=2).items())))
    with pytest.raises(InvalidRecord, match="body.high_risk.error: must not exceed body.outcomes.error"):
        sign_record(KEY, "digest", {**BODIES["digest"], "high_risk": too_many}, seq=1, prev=None, ts=TS)


def test_load_record_reads_own_ledger_bytes_without_a_signature_check():
    """Records from the node's own ledger were verified on acceptance; loading them skips only the signature."""
    key = nacl.signing.SigningKey.generate()
    raw = sign_record(key, "org", org_body("acme", "test"), seq=1, prev=None, ts=1)
    forged = raw[:-1] + bytes([raw[-1] ^ 1])
    assert load_record(forged).iss == verify_record(raw).iss
    with pytest.raises(InvalidRecord):
        verify_record(forged)
    with pytest.raises(InvalidRecord, match="truncated"):
        load_record(raw[:20])


@given(record_args())
def test_load_stored_gives_what_load_record_gives_for_a_valid_record(args: RecordArgs):
    raw = args.sign()
    with mock.patch("vouching.records.load_record", side_effect=AssertionError("read by load_record")):
        stored = load_stored(raw)  # by its own path, not load_record's
    loaded = load_record(raw)
    assert stored == loaded
    assert repr(stored) == repr(loaded)  # field by field, types too (1 == 1.0 == True)


def test_load_stored_rejects_what_is_not_a_record_as_load_record_does():
    raw = sign_record(KEY, "digest", BODIES["digest"], seq=1, prev=None, ts=TS)
    for damaged in (raw[:20], raw[:-70] + b"\xff" + raw[-69:], raw.replace(b"epoch", b"epoxh")):
        with pytest.raises(InvalidRecord) as expected:
            load_record(damaged)
        with pytest.raises(InvalidRecord, match=re.escape(str(expected.value))):
            load_stored(damaged)


@given(record_args())
def test_issue_record_gives_what_verifying_its_bytes_gives(args: RecordArgs):
    issued = issue_record(args.key, args.kind, args.body, seq=args.seq, prev=args.prev, ts=args.ts)
    assert issued == verify_record(issued.raw)
