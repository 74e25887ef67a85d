"""Proofs of equivocation: two valid records of one issuer at one seq, and equivocation records carrying them."""

from typing import Any

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st
from .record_strategies import RecordArgs, record_args

from vouching import (
    EquivocationBody,
    InvalidRecord,
    did_key,
    equivocation_body,
    proves_equivocation,
    record_equivocation_body,
    revoke_body,
    sign_record,
    verify_record,
)
from vouching.cbor import encode
from vouching.cose import sign1

OFFENDER = nacl.signing.SigningKey(bytes(range(32)))
REPORTER = nacl.signing.SigningKey(bytes(range(1, 33)))
THIRD = nacl.signing.SigningKey(bytes(range(2, 34)))
OFFENDER_DID = did_key(bytes(OFFENDER.verify_key))
TS = 1_764_000_000_000


def _revoke(seq: int, reason: str, key: nacl.signing.SigningKey = OFFENDER) -> bytes:
    prev = None if seq == 1 else bytes(32)
    return sign_record(key, "revoke", revoke_body(bytes(32), reason), seq=seq, prev=prev, ts=TS)


A, B = _revoke(5, "a"), _revoke(5, "b")


def test_two_records_at_one_seq_prove_equivocation() -> None:
    assert proves_equivocation(A, B)
    assert proves_equivocation(B, A)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (A, A),  # the same record twice
        (A, _revoke(6, "b")),  # different seq
        (A, _revoke(5, "b", key=THIRD)),  # different issuers
        (A, B[:-1]),  # not a valid record
        (A, b"junk"),
    ],
)
def test_what_does_not_prove_equivocation(a: bytes, b: bytes) -> None:
    assert not proves_equivocation(a, b)


def test_an_equivocation_record_carries_its_proof() -> None:
    body = record_equivocation_body(B, A)
    assert body == {"type": "record", "offender": OFFENDER_DID, "a": min(A, B), "b": max(A, B)}
    record = verify_record(sign_record(REPORTER, "equivocation", body, seq=1, prev=None, ts=TS))
    assert record.body == EquivocationBody("record", OFFENDER_DID, min(A, B), max(A, B))


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        (A, A, "body.b: must be a different record from body.a"),
        (A, _revoke(6, "b"), "body.b: must have the same seq as body.a"),
        (A, _revoke(5, "b", key=THIRD), "body.b: must have the same iss as body.a"),
        (A, b"junk", r"body.a: not a valid record \(COSE_Sign1: must start with tag 18\)"),  # b"junk" sorts first
        (A[:-1], B, r"body.a: not a valid record \(COSE_Sign1: truncated"),
    ],
)
def test_building_a_body_from_records_that_prove_nothing(a: bytes, b: bytes, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        record_equivocation_body(a, b)


def _signed_body(body: dict[str, Any]) -> bytes:
    """An equivocation record signed by REPORTER over any body, bypassing sign_record's own checks."""
    payload = {"v": 1, "kind": "equivocation", "iss": did_key(bytes(REPORTER.verify_key)), "seq": 1, "ts": TS}
    return sign1(REPORTER, encode({**payload, "body": body}), protected={1: -8}, unprotected={})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (equivocation_body("record", OFFENDER_DID, A, _revoke(6, "b")), "same seq as body.a"),
        (equivocation_body("record", OFFENDER_DID, A, b"junk"), "body.a: not a valid record"),
        (equivocation_body("record", did_key(bytes(THIRD.verify_key)), A, B), "body.offender: must be the iss of"),
        (equivocation_body("record", OFFENDER_DID, A[:-1] + b"\x00", B), "body.a: not a valid"),
    ],
)
def test_a_false_accusation_is_rejected_by_everyone(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        verify_record(_signed_body(body))
    with pytest.raises(InvalidRecord, match=reason):
        sign_record(REPORTER, "equivocation", body, seq=1, prev=None, ts=TS)


def test_checkpoint_evidence_is_carried_as_bytes() -> None:
    # vouching cannot read signed notes; whoever acts on checkpoint evidence checks it with ledger.checkpoint.
    body = equivocation_body("checkpoint", OFFENDER_DID, b"note 2", b"note 1")
    record = verify_record(sign_record(REPORTER, "equivocation", body, seq=1, prev=None, ts=TS))
    assert (record.body.type, record.body.a, record.body.b) == ("checkpoint", b"note 1", b"note 2")


def test_nested_evidence_costs_at_most_three_signature_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    # The offender equivocated by signing two different equivocation records at one seq; the proof of that
    # needs their signatures only, not the proofs they carry.
    def inner(seq: int) -> bytes:
        evidence = record_equivocation_body(_revoke(seq, "x", THIRD), _revoke(seq, "y", THIRD))
        return sign_record(OFFENDER, "equivocation", evidence, seq=9, prev=bytes(32), ts=TS)

    inner_a, inner_b = inner(1), inner(2)
    outer = sign_record(REPORTER, "equivocation", record_equivocation_body(inner_a, inner_b), seq=1, prev=None, ts=TS)
    checks = []
    original = nacl.signing.VerifyKey.verify
    monkeypatch.setattr(nacl.signing.VerifyKey, "verify", lambda *args: checks.append(1) or original(*args))
    verify_record(outer)
    assert len(checks) == 3


@given(record_args(("org", "vouch", "revoke", "digest")), st.booleans())
def test_same_issuer_and_seq_prove_equivocation_iff_the_records_differ(args: RecordArgs, same: bool) -> None:
    first = args.sign()
    kind, body = (args.kind, args.body) if same else ("revoke", revoke_body(bytes(32), "changed my mind"))
    second = sign_record(args.key, kind, body, seq=args.seq, prev=args.prev, ts=args.ts)
    assert proves_equivocation(first, second) == (first != second)
