"""did:key for Ed25519: encode, decode, and reject every other kind of identifier."""

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vouching import InvalidDid, did_key, public_key_from_did
from vouching.base58 import b58decode, b58encode

# A did:key and its raw key published together in the test suite of another implementation (ACA-Py).
KNOWN_KEY = bytes.fromhex("6c2d48b1605684ef94363dc6158eeb6577466e1a36a740f2fc624617edb7712e")
KNOWN_DID = "did:key:z6MkmjY8GnV5i9YTDtPETC2uUAW6ejw3nk5mXF5yci5ab7th"


def test_known_did_key() -> None:
    assert did_key(KNOWN_KEY) == KNOWN_DID
    assert public_key_from_did(KNOWN_DID) == KNOWN_KEY


def test_a_pynacl_key_round_trips() -> None:
    key = nacl.signing.SigningKey.generate().verify_key
    did = did_key(bytes(key))
    assert did.startswith("did:key:z6Mk")
    assert nacl.signing.VerifyKey(public_key_from_did(did)) == key


@given(st.binary(min_size=32, max_size=32))
def test_every_key_round_trips(key: bytes) -> None:
    assert public_key_from_did(did_key(key)) == key


@given(st.binary(max_size=40))
def test_base58_round_trips_with_leading_zeros(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_base58_known_values() -> None:
    # From draft-msporny-base58-03 §5.
    assert b58encode(b"Hello World!") == "2NEpo7TZRRrLZSi2U"
    assert b58encode(bytes.fromhex("0000287fb4cd")) == "11233QC4"


def _did(multicodec: bytes, key: bytes) -> str:
    return "did:key:z" + b58encode(multicodec + key)


@pytest.mark.parametrize(
    ("did", "reason"),
    [
        ("did:key:z6LShLeXRTzevtwcfehaGEzCMyL3bNsAeKCwcqwJxyCo63yE", "multicodec must be ed25519-pub"),  # X25519
        (_did(b"\x80\x24", b"\x02" + bytes(32)), "multicodec must be ed25519-pub"),  # P-256
        (_did(b"\xed\x01", bytes(31)), "must be 32 bytes, not 31"),
        (_did(b"\xed\x01", bytes(33)), "must be 32 bytes, not 33"),
        ("did:key:z6Mk0OIl", "invalid base58 character '0' at position 12 "),  # of the did: where its reader looks
        ("did:key:z6Mk...", r"invalid base58 character '\.' at position 12 \(from 0\)$"),
        (KNOWN_DID[:-1], "55 characters, where an Ed25519 did:key has 56: one lost or added in copying"),
        (KNOWN_DID[:30] + KNOWN_DID[31:], "55 characters, where an Ed25519 did:key has 56"),
        (KNOWN_DID + KNOWN_DID[-1], "57 characters, where an Ed25519 did:key has 56"),
        ("did:key:m" + KNOWN_DID[9:], "must start with 'did:key:z'"),
        ("did:web:example.com", "must start with 'did:key:z'"),
        (KNOWN_DID[8:], "must start with 'did:key:z'"),
        ("", "must start with 'did:key:z'"),
        (KNOWN_DID + "1" * 20, "longer than 64 characters"),
    ],
)
def test_rejects(did: str, reason: str) -> None:
    with pytest.raises(InvalidDid, match=reason):
        public_key_from_did(did)


@pytest.mark.parametrize("value", [None, 1, b"did:key:z6Mk", ["did"]])
def test_rejects_non_text(value: object) -> None:
    with pytest.raises(InvalidDid, match="must be a text string"):
        public_key_from_did(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [bytes(31), bytes(33), bytearray(32), "k" * 32])
def test_did_key_needs_32_bytes(key: object) -> None:
    with pytest.raises(InvalidDid, match="must be 32 bytes"):
        did_key(key)  # type: ignore[arg-type]


def test_invalid_did_is_a_value_error() -> None:
    assert issubclass(InvalidDid, ValueError)
