"""COSE_Sign1 (RFC 9052 §4.2, tag 18) with EdDSA over Ed25519 (RFC 9053 §2.2), verified with PyNaCl only."""

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing

from vouching.cbor import CborError, decode, encode, encode_head

TAG = b"\xd2"  # tag 18 (COSE_Sign1): the only deterministic encoding of the tag head
HEADER_ALG = 1
ALG_EDDSA = -8
SIGNATURE_SIZE = 64
_TAG_ARRAY4 = TAG + b"\x84"
_EMPTY_MAP = b"\xa0"
_SIGNATURE_HEAD = b"\x58\x40"  # a byte string of 64 bytes
# tag, array head, a 1-byte protected header, {}, an empty payload, the signature
_SHORTEST_COMMON_SHAPE = 1 + 1 + 2 + 1 + 1 + 2 + SIGNATURE_SIZE


class CoseError(ValueError):
    """A COSE_Sign1 message that is malformed or whose signature does not verify; the message names the part."""


@dataclass(frozen=True, slots=True)
class Sign1:
    """A parsed COSE_Sign1: the protected header exactly as signed, its decoded map, and the other three parts."""

    protected: bytes
    protected_header: Mapping[int | str, Any]
    unprotected: dict[int | str, Any]
    payload: bytes
    signature: bytes


def _bstr(data: bytes) -> bytes:
    """A CBOR byte string (major type 2) with its shortest-form length head (RFC 8949 §3, §4.2.1)."""
    return encode_head(2, len(data)) + data


_SIGNATURE1 = b"\x84\x6aSignature1"  # array(4), then the text string "Signature1"


def to_be_signed(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The ToBeSigned bytes: Sig_structure ["Signature1", protected, external_aad, payload] (RFC 9052 §4.4).

    Assembled directly: every element is a byte or text string, whose deterministic encoding is just a head.
    """
    return _to_be_signed_prefix(protected, external_aad) + _bstr(payload)


def _to_be_signed_prefix(protected: bytes, external_aad: bytes) -> bytes:
    return _SIGNATURE1 + _bstr(protected) + _bstr(external_aad)


def sign1(
    signing_key: nacl.signing.SigningKey,
    payload: bytes,
    *,
    protected: dict[int | str, Any],
    unprotected: dict[int | str, Any],
    external_aad: bytes = b"",
) -> bytes:
    """A tagged COSE_Sign1 over payload; an empty protected map is sent as a zero-length string (RFC 9052 §3)."""
    protected_bytes = encode(protected) if protected else b""
    signature = signing_key.sign(to_be_signed(protected_bytes, payload, external_aad)).signature
    if not unprotected:  # records: every element is a byte string or the empty map, so assemble it directly
        return _tagged(protected_bytes, payload, signature)
    return TAG + encode([protected_bytes, unprotected, payload, signature])


class Signer:
    """sign1 of many payloads with one key and protected header, an empty unprotected header and no external aad
    (the shape of records): what does not depend on the payload is encoded once, and libsodium signs without
    PyNaCl's per-call wrapping."""

    __slots__ = ("_secret", "_signed_prefix", "_message_prefix")

    def __init__(self, signing_key: nacl.signing.SigningKey, protected: dict[int | str, Any]) -> None:
        # libsodium's 64-byte secret key, derived from the seed as SigningKey itself derives it
        self._secret = nacl.bindings.crypto_sign_seed_keypair(bytes(signing_key))[1]
        protected_bytes = encode(protected) if protected else b""
        self._signed_prefix = _to_be_signed_prefix(protected_bytes, b"")
        self._message_prefix = _tagged_prefix(protected_bytes)

    def sign(self, payload: bytes) -> bytes:
        """The tagged COSE_Sign1 over payload: what sign1 gives for the same key, headers and payload."""
        payload = _bstr(payload)
        signed = nacl.bindings.crypto_sign(self._signed_prefix + payload, self._secret)
        return self._message_prefix + payload + _SIGNATURE_HEAD + signed[:SIGNATURE_SIZE]


def _tagged(protected: bytes, payload: bytes, signature: bytes) -> bytes:
    """Tag 18 and [protected, {}, payload, signature]: each a byte string or the empty map, whose deterministic
    encodings are their heads and bytes."""
    return _tagged_prefix(protected) + _bstr(payload) + _bstr(signature)


def _tagged_prefix(protected: bytes) -> bytes:
    return _TAG_ARRAY4 + _bstr(protected) + _EMPTY_MAP


def parse_sign1(data: bytes) -> Sign1:
    """Parse a tagged COSE_Sign1 in deterministic CBOR, without verifying it; raises CoseError."""
    return _parse_common_shape(data) or _parse(data)


def _parse_common_shape(data: bytes) -> Sign1 | None:
    """Fast path for the shape records have: [short protected, {}, payload, 64-byte signature] with shortest heads.

    Bytes of exactly this layout are the deterministic encoding of that array, so cbor2 is not needed; anything
    else (None) goes through the full decoder, which also explains errors.
    """
    if len(data) < _SHORTEST_COMMON_SHAPE or data[:2] != _TAG_ARRAY4 or not 0x40 < data[2] < 0x58:
        return None
    if data[-66:-64] != _SIGNATURE_HEAD:
        return None
    unprotected = 3 + data[2] - 0x40
    if data[unprotected : unprotected + 1] != _EMPTY_MAP:
        return None
    payload_head = unprotected + 1
    head, end = data[payload_head], len(data) - 66
    if 0x40 <= head < 0x58:
        start = payload_head + 1
        size = head - 0x40
    elif head == 0x58 or head == 0x59:
        start = payload_head + 1 + (head - 0x57)
        size = int.from_bytes(data[payload_head + 1 : start], "big")
        if size < (24 if head == 0x58 else 256):
            return None
    else:
        return None
    if start + size != end:
        return None
    protected = data[3:unprotected]
    return Sign1(protected, _protected_header(protected), {}, data[start:end], data[end + 2 :])


def _parse(data: bytes) -> Sign1:
    if data[:1] != TAG:
        raise CoseError("COSE_Sign1: must start with tag 18")
    try:
        parts = decode(data[1:])
    except CborError as error:
        raise CoseError(f"COSE_Sign1: {error} (counting from after the tag)") from None
    if type(parts) is not list or len(parts) != 4:
        raise CoseError("COSE_Sign1: must be an array of 4 items")
    protected, unprotected, payload, signature = parts
    if type(protected) is not bytes:
        raise CoseError("protected: must be a byte string")
    protected_header = _protected_header(protected)
    if type(unprotected) is not dict:
        raise CoseError("unprotected: must be a map")
    if type(payload) is not bytes:
        raise CoseError("payload: must be a byte string (detached payloads are not supported)")
    if type(signature) is not bytes:
        raise CoseError("signature: must be a byte string")
    if protected_header.keys() & unprotected.keys():
        raise CoseError("unprotected: a header label must not also be in the protected header")
    return Sign1(protected, protected_header, unprotected, payload, signature)


def verify_sign1(message: Sign1, public_key: bytes, external_aad: bytes = b"") -> None:
    """Verify an EdDSA COSE_Sign1 with an Ed25519 public key; raises CoseError."""
    if message.protected_header.get(HEADER_ALG) != ALG_EDDSA:
        raise CoseError(f"protected: alg must be EdDSA ({ALG_EDDSA})")
    if len(message.signature) != SIGNATURE_SIZE:
        raise CoseError(f"signature: must be {SIGNATURE_SIZE} bytes")
    if not signature_valid(public_key, to_be_signed(message.protected, message.payload, external_aad),
                           message.signature):
        raise CoseError("signature: does not verify")


def signature_valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is an Ed25519 signature of `message` by `public_key` (PyNaCl's checks: RFC 8032)."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


# Bounded, and only headers that parse are kept: senders reuse one header, so parsing it once is enough.
@lru_cache(maxsize=64)
def _protected_header(protected: bytes) -> Mapping[int | str, Any]:
    """The protected header map, read-only; a zero-length string stands for the empty map (RFC 9052 §3)."""
    if not protected:
        return MappingProxyType({})
    try:
        header = decode(protected)
    except CborError as error:
        raise CoseError(f"protected: {error}") from None
    if type(header) is not dict:
        raise CoseError("protected: must encode a header map")
    return MappingProxyType(header)
