"""Signed records (DESIGN §3): a COSE_Sign1 EdDSA message over a deterministic CBOR payload; sign, verify, id.

Payload {v: 1, kind, iss, seq, prev? (absent iff seq is 1), ts, body}; protected header exactly {1: -8},
unprotected header empty; at most 64 KiB in all. The record id is SHA-256 of the COSE bytes.
"""

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import nacl.signing

from vouching.bodies import KINDS, Body, DigestBody, EquivocationBody, OrgBody, check_digest, digest_of, parse_body
from vouching.cbor import CborError, decode, decode_checked_before, encode
from vouching.cose import (
    ALG_EDDSA,
    HEADER_ALG,
    SIGNATURE_SIZE,
    CoseError,
    Sign1,
    Signer,
    parse_sign1,
    sign1,
    signature_valid,
    to_be_signed,
    verify_sign1,
)
from vouching.digest_payload import encode_digest_payload
from vouching.identity import did_key, public_key_from_did
from vouching.schema import ID_SIZE, InvalidRecord, byte_string, did, fields, uint

VERSION = 1
MAX_RECORD_SIZE = 64 * 1024
_PROTECTED = {HEADER_ALG: ALG_EDDSA}
_PROTECTED_BYTES = encode(_PROTECTED)
_REQUIRED = frozenset({"v", "kind", "iss", "seq", "ts", "body"})
_PREV = frozenset({"prev"})


@dataclass(frozen=True, slots=True)
class Record:
    """A verified record: its id and exact bytes, the payload's common fields and its typed body."""

    id: bytes
    raw: bytes
    kind: str
    iss: str
    seq: int
    prev: bytes | None
    ts: int
    body: Body


class SignatureCheck(NamedTuple):
    """What checking a record's signature takes: the issuer's Ed25519 public key, the COSE_Sign1 ToBeSigned bytes
    (RFC 9052 §4.4) and the signature."""

    public_key: bytes
    message: bytes
    signature: bytes


def record_id(data: bytes) -> bytes:
    """The id of a record: SHA-256 of its whole COSE_Sign1 encoding."""
    return hashlib.sha256(data).digest()


def sign_record(
    signing_key: nacl.signing.SigningKey,
    kind: str,
    body: dict[str, Any],
    *,
    seq: int,
    prev: bytes | None,
    ts: int | None = None,
) -> bytes:
    """A record of kind with a wire body (see vouching.bodies), issued by signing_key's org; ts defaults to now (ms).

    The payload is checked by the same rules as verify_record, so a node never signs a record peers would reject;
    raises InvalidRecord.
    """
    return issue_record(signing_key, kind, body, seq=seq, prev=prev, ts=ts).raw


def issue_record(
    signing_key: nacl.signing.SigningKey,
    kind: str,
    body: dict[str, Any],
    *,
    seq: int,
    prev: bytes | None,
    ts: int | None = None,
) -> Record:
    """sign_record, returning the Record it signed: what verify_record of its bytes would give, without decoding
    them again (the payload was validated before signing)."""
    iss = did_key(bytes(signing_key.verify_key))
    payload: dict[str, Any] = {  # in RFC 8949 key order, which encodes fastest (vouching.cbor.encode)
        "v": VERSION,
        "ts": time.time_ns() // 1_000_000 if ts is None else ts,
        "iss": iss,
        "seq": seq,
        "body": body,
        "kind": kind,
    }
    if prev is not None:
        payload["prev"] = prev
    _, _, _, _, record_ts, parsed_body = _parse_payload(payload)
    if type(parsed_body) is EquivocationBody:
        _check_evidence(parsed_body)
    data = sign1(signing_key, encode(payload), protected=_PROTECTED, unprotected={})
    if len(data) > MAX_RECORD_SIZE:
        raise InvalidRecord(f"record: {len(data)} bytes, more than {MAX_RECORD_SIZE}")
    return Record(record_id(data), data, kind, iss, seq, prev, record_ts, parsed_body)


def issue_digests(
    signing_key: nacl.signing.SigningKey,
    bodies: Iterable[DigestBody],
    *,
    seq: int,
    prev: bytes | None,
    ts: int | None = None,
) -> list[Record]:
    """Digest records of signing_key's org, one per typed body, the first at seq after prev and each naming the one
    before: issue_record(signing_key, "digest", body.to_wire(), ...) for each, the same bytes and Records at a
    fraction of the cost (an epoch's end signs one per active agent). ts defaults to now (ms) at each record.

    Checked by the rules verify_record applies (bodies.check_digest) before each is signed; raises InvalidRecord.
    (No size check: a valid digest is a few hundred bytes, far below MAX_RECORD_SIZE.)
    """
    signer = Signer(signing_key, _PROTECTED)
    iss = did_key(bytes(signing_key.verify_key))
    _check_prev(uint(seq, "seq", 1), prev is not None)  # the records after the first follow by construction
    if prev is not None:
        byte_string(prev, "prev", ID_SIZE)
    records = []
    for body in bodies:
        record_ts = time.time_ns() // 1_000_000 if ts is None else ts
        uint(seq, "seq", 1)
        check_digest(body, uint(record_ts, "ts"))
        data = signer.sign(encode_digest_payload(iss, seq, prev, record_ts, body))
        record = Record(record_id(data), data, "digest", iss, seq, prev, record_ts, body)
        records.append(record)
        seq, prev = seq + 1, record.id
    return records


def verify_record(data: bytes) -> Record:
    """Decode, verify and validate a record from anyone; raises InvalidRecord ("field: rule") and nothing else."""
    return _verify(data, True)


def equivocation_offender(a: bytes, b: bytes) -> str:
    """The issuer that records a and b prove equivocated: both valid, same iss and seq, different ids.

    Raises InvalidRecord naming body.a or body.b (the fields they fill in an equivocation record).
    """
    first, second = _evidence(a, "body.a"), _evidence(b, "body.b")
    if first.iss != second.iss:
        raise InvalidRecord("body.b: must have the same iss as body.a")
    if first.seq != second.seq:
        raise InvalidRecord("body.b: must have the same seq as body.a")
    if first.id == second.id:
        raise InvalidRecord("body.b: must be a different record from body.a")
    return first.iss


def load_record(data: bytes) -> Record:
    """Decode and validate a record this node verified before (from its own ledger) without checking signatures.

    Never use it for bytes from the network: that is verify_record's job. Raises InvalidRecord.
    """
    return _verify(data, check_evidence=False, check_signature=False)


def load_stored(data: bytes) -> Record:
    """load_record for the bytes of a record this node accepted (from its records ledger), at about a third of the
    cost: a start-up replay reads every stored record. What they passed when accepted is not checked again, where it
    cannot change what they decode to: that the payload is deterministic CBOR, and for digests (most of a store) the
    schema. The same Record as load_record (tests/vouching/test_records.py); bytes it cannot read so are read by
    load_record, which names the rule they break (raises InvalidRecord).

    Never use it for bytes from the network, nor any not verified before.
    """
    try:
        payload = decode_checked_before(parse_sign1(data).payload)
        if payload["kind"] != "digest":
            return Record(record_id(data), data, *_parse_payload(payload))
        return Record(record_id(data), data, "digest", payload["iss"], payload["seq"], payload.get("prev"),
                      payload["ts"], digest_of(payload["body"]))
    except Exception:  # anything: these bytes are not what this node stores
        return load_record(data)


def verify_record_deferred(data: bytes) -> tuple[Record, SignatureCheck | None]:
    """verify_record but for the issuer's signature, which is returned to be checked elsewhere (a worker process:
    `failed_signatures`); the record must not be trusted until it passes. None when the record was verified whole
    here: an equivocation record's evidence is checked after its own signature, so that no rejection costs more
    than one signature check. Raises InvalidRecord.
    """
    record, message = _decode(data)
    if type(record.body) is EquivocationBody:
        _check_signature(message, record.iss)
        _check_evidence(record.body)
        return record, None
    if len(message.signature) != SIGNATURE_SIZE:
        raise InvalidRecord(f"signature: must be {SIGNATURE_SIZE} bytes")
    return record, SignatureCheck(public_key_from_did(record.iss), to_be_signed(message.protected, message.payload),
                                  message.signature)


def failed_signatures(checks: Iterable[SignatureCheck]) -> list[int]:
    """The positions of the checks whose signature does not verify (Ed25519), in order."""
    return [i for i, (public_key, message, signature) in enumerate(checks)
            if not signature_valid(public_key, message, signature)]


def _verify(data: bytes, check_evidence: bool, check_signature: bool = True) -> Record:
    # Cheapest checks first, the signature after the schema, and evidence (two more signatures) last: a hostile
    # peer can make each rejection cost no more than one signature check.
    record, message = _decode(data)
    if check_signature:
        _check_signature(message, record.iss)
    if check_evidence and type(record.body) is EquivocationBody:
        _check_evidence(record.body)
    return record


def _decode(data: bytes) -> tuple[Record, Sign1]:
    """The record, every rule checked but its signatures; and its COSE_Sign1 message."""
    if type(data) is not bytes:
        raise InvalidRecord("record: must be bytes")
    if len(data) > MAX_RECORD_SIZE:
        raise InvalidRecord(f"record: {len(data)} bytes, more than {MAX_RECORD_SIZE}")
    try:
        message = parse_sign1(data)
    except CoseError as error:
        raise InvalidRecord(str(error)) from None
    if message.protected != _PROTECTED_BYTES:
        raise InvalidRecord(_protected_error(message.protected_header))
    if message.unprotected:
        raise InvalidRecord("unprotected: must be an empty map")
    try:
        payload = decode(message.payload)
    except CborError as error:
        raise InvalidRecord(f"payload: {error}") from None
    kind, iss, seq, prev, ts, body = _parse_payload(payload)
    return Record(record_id(data), data, kind, iss, seq, prev, ts, body), message


def _check_signature(message: Sign1, iss: str) -> None:
    try:
        verify_sign1(message, public_key_from_did(iss))
    except CoseError as error:
        raise InvalidRecord(str(error)) from None


def _parse_payload(payload: Any) -> tuple[str, str, int, bytes | None, int, Body]:
    """The common fields and typed body of a payload map, checked; raises InvalidRecord."""
    if type(payload) is not dict:
        raise InvalidRecord("payload: must be a map")
    # The version is read first, so that a newer record gets "unsupported version" rather than "unknown field".
    version = payload.get("v")
    if type(version) is int and version > VERSION:
        raise InvalidRecord(f"v: version {version} is not supported (this node reads version {VERSION})")
    if type(version) is not int or version != VERSION:
        raise InvalidRecord(f"v: must be {VERSION}")
    if "seq" in payload:
        _check_prev(uint(payload["seq"], "seq", 1), "prev" in payload)
    fields(payload, "payload", _REQUIRED, _PREV)
    seq = payload["seq"]
    kind = payload["kind"]
    if type(kind) is not str or kind not in KINDS:
        raise InvalidRecord(f"kind: must be one of {', '.join(KINDS)}")
    iss = did(payload["iss"], "iss")
    prev = byte_string(payload["prev"], "prev", ID_SIZE) if seq > 1 else None
    ts = uint(payload["ts"], "ts")
    body = parse_body(kind, payload["body"], iss=iss, ts=ts)
    if seq > 1 and isinstance(body, OrgBody) and body.prior is not None:
        raise InvalidRecord("body.prior: only a key's first record (seq 1) may name the key it replaces")
    return kind, iss, seq, prev, ts, body


def _check_prev(seq: int, has_prev: bool) -> None:
    """The chain rule: prev is absent on an issuer's first record (seq 1) and present on every later one."""
    if seq == 1 and has_prev:
        raise InvalidRecord("prev: must be absent when seq is 1")
    if seq > 1 and not has_prev:
        raise InvalidRecord("prev: must be present when seq is greater than 1")


def _check_evidence(body: EquivocationBody) -> None:
    """A record equivocation must carry its proof; checkpoint evidence is checked by ledger.checkpoint's owner."""
    if body.type == "record" and equivocation_offender(body.a, body.b) != body.offender:
        raise InvalidRecord("body.offender: must be the iss of body.a and body.b")


def _evidence(data: bytes, name: str) -> Record:
    # Evidence is verified without its own evidence: what it proves is only that its issuer signed it, and
    # this bounds the work to three signatures however deeply equivocation records nest.
    try:
        return _verify(data, False)
    except InvalidRecord as error:
        raise InvalidRecord(f"{name}: not a valid record ({error})") from None


def _protected_error(header: Mapping[int | str, Any]) -> str:
    """Why a protected header that is not exactly {1: -8} is rejected."""
    if header.get(HEADER_ALG) != ALG_EDDSA:
        return f"protected: alg must be EdDSA ({ALG_EDDSA})"
    extra = sorted((label for label in header if label != HEADER_ALG), key=str)
    return f"protected: must hold only alg, not labels {extra}"
