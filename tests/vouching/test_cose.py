"""COSE_Sign1 with EdDSA: the cose-wg example reproduced byte for byte, parsing, verification and rejection."""

import json
from pathlib import Path

import cbor2
import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vouching.cose import CoseError, Sign1, Signer, parse_sign1, sign1, to_be_signed, verify_sign1

VECTOR = json.loads((Path(__file__).parents[1] / "vectors/cose/eddsa-sig-01.json").read_text())
KEY = VECTOR["input"]["sign0"]["key"]
SIGNING_KEY = nacl.signing.SigningKey(bytes.fromhex(KEY["d_hex"]))
PUBLIC_KEY = bytes.fromhex(KEY["x_hex"])
MESSAGE = bytes.fromhex(VECTOR["output"]["cbor"])
PAYLOAD = VECTOR["input"]["plaintext"].encode()
# The vector's headers: alg EdDSA and content type 0 protected, kid "11" unprotected (RFC 9052 labels 1, 3, 4).
PROTECTED = {1: -8, 3: 0}
UNPROTECTED = {4: KEY["kid"].encode()}


def test_vector_to_be_signed() -> None:
    assert to_be_signed(bytes.fromhex("a201270300"), PAYLOAD) == bytes.fromhex(VECTOR["intermediates"]["ToBeSign_hex"])


def test_vector_message_byte_for_byte() -> None:
    assert bytes(SIGNING_KEY.verify_key) == PUBLIC_KEY
    assert sign1(SIGNING_KEY, PAYLOAD, protected=PROTECTED, unprotected=UNPROTECTED) == MESSAGE


def test_vector_parses_and_verifies() -> None:
    message = parse_sign1(MESSAGE)
    assert message.protected == bytes.fromhex("a201270300")
    assert dict(message.protected_header) == PROTECTED
    assert message.unprotected == UNPROTECTED
    assert message.payload == PAYLOAD
    verify_sign1(message, PUBLIC_KEY)


def test_external_aad_is_signed() -> None:
    message = parse_sign1(sign1(SIGNING_KEY, PAYLOAD, protected={1: -8}, unprotected={}, external_aad=b"context"))
    verify_sign1(message, PUBLIC_KEY, external_aad=b"context")
    with pytest.raises(CoseError, match="signature: does not verify"):
        verify_sign1(message, PUBLIC_KEY)


def test_wrong_key_does_not_verify() -> None:
    other = bytes(nacl.signing.SigningKey(bytes(32)).verify_key)
    with pytest.raises(CoseError, match="signature: does not verify"):
        verify_sign1(parse_sign1(MESSAGE), other)


def test_alg_must_be_eddsa() -> None:
    message = parse_sign1(sign1(SIGNING_KEY, PAYLOAD, protected={1: -7}, unprotected={}))
    with pytest.raises(CoseError, match=r"protected: alg must be EdDSA \(-8\)"):
        verify_sign1(message, PUBLIC_KEY)


def test_signature_must_be_64_bytes() -> None:
    message = parse_sign1(MESSAGE)
    short = Sign1(message.protected, message.protected_header, message.unprotected, message.payload, bytes(63))
    with pytest.raises(CoseError, match="signature: must be 64 bytes"):
        verify_sign1(short, PUBLIC_KEY)


@given(
    st.binary(max_size=70_000),
    st.sampled_from([{}, {1: -8}, {1: -8, 3: 0}, {1: -8, 5: b"x" * 30}]),
    st.sampled_from([{}, {4: b"11"}]),
)
def test_every_shape_parses_to_what_was_signed(payload: bytes, protected: dict, unprotected: dict) -> None:
    # Covers the fast path (short protected header, empty unprotected) and the full decoder alike.
    message = parse_sign1(sign1(SIGNING_KEY, payload, protected=protected, unprotected=unprotected))
    assert (dict(message.protected_header), message.unprotected, message.payload) == (protected, unprotected, payload)
    if protected:
        verify_sign1(message, PUBLIC_KEY)



SIGNATURE = bytes(64)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "must start with tag 18"),
        (b"\xd2\x84", "COSE_Sign1: truncated at byte 1"),
        (b"\xd2\x84\x43\xa1", "COSE_Sign1: truncated"),
        (MESSAGE[1:], "must start with tag 18"),
        (b"\xd1" + MESSAGE[1:], "must start with tag 18"),
        (b"\xd8\x12" + MESSAGE[1:], "must start with tag 18"),
        (MESSAGE[:-1], "COSE_Sign1: truncated"),
        (MESSAGE + b"\x00", r"COSE_Sign1: trailing bytes at byte \d+ \(counting from after the tag\)"),
        (b"\xd2\x83\x40\xa0\x40", "must be an array of 4 items"),
        (b"\xd2\xa0", "must be an array of 4 items"),
        (b"\xd2\x84\x01\xa0\x40\x58\x40" + SIGNATURE, "protected: must be a byte string"),
        (b"\xd2\x84\x41\x01\xa0\x40\x58\x40" + SIGNATURE, "protected: must encode a header map"),
        (b"\xd2\x84\x42\xa1\x01\xa0\x40\x58\x40" + SIGNATURE, "protected: truncated"),
        (b"\xd2\x84\x40\x80\x40\x58\x40" + SIGNATURE, "unprotected: must be a map"),
        (b"\xd2\x84\x40\xa0\xf6\x58\x40" + SIGNATURE, r"payload: must be a byte string \(detached"),
        (b"\xd2\x84\x40\xa0\x40\x60", "signature: must be a byte string"),
        (b"\xd2\x84\x43\xa1\x01\x27\xa1\x01\x27\x40\x58\x40" + SIGNATURE, "must not also be in the protected header"),
        # A payload length that is not in shortest form misses the fast path and is named by the full decoder.
        (b"\xd2\x84\x43\xa1\x01\x27\xa0\x58\x01\x00\x58\x40" + SIGNATURE, "length not in shortest form"),
        (b"\xd2\x84\x43\xa1\x01\x27\xa0\x59\x00\x20" + bytes(32) + b"\x58\x40" + SIGNATURE, "length not in shortest"),
    ],
)
def test_rejects_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(CoseError, match=reason):
        parse_sign1(data)


@given(st.binary(max_size=70_000), st.binary(max_size=300), st.binary(max_size=30))
def test_to_be_signed_is_the_deterministic_encoding_of_the_sig_structure(payload, protected, aad):
    assert to_be_signed(protected, payload, aad) == cbor2.dumps(["Signature1", protected, aad, payload])


@given(st.binary(max_size=70_000))
def test_a_message_without_unprotected_headers_is_the_deterministic_encoding(payload):
    key = nacl.signing.SigningKey(bytes(32))
    message = sign1(key, payload, protected={1: -8}, unprotected={})
    parsed = parse_sign1(message)
    assert message == b"\xd2" + cbor2.dumps([parsed.protected, {}, payload, parsed.signature])


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=70_000), st.sampled_from([{}, {1: -8}, {1: -8, 3: 0}]))
def test_a_signer_gives_what_sign1_gives(seed: bytes, payload: bytes, protected: dict) -> None:
    key = nacl.signing.SigningKey(seed)
    assert Signer(key, protected).sign(payload) == sign1(key, payload, protected=protected, unprotected={})
