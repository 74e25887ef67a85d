"""C2SP tlog-cosignature (c2sp.org/tlog-cosignature): timestamped Ed25519 cosignatures, signature type 0x04,
over "cosignature/v1\\ntime <T>\\n" followed by the cosigned checkpoint's note text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from .note import Ed25519Signer, Ed25519Verifier, NoteError, Signature, ed25519_verify

COSIGNATURE_V1 = 0x04  # signed-note §Signature types: timestamped Ed25519 witness cosignatures
MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1
_TIMESTAMP_SIZE = 8
_SIGNATURE_SIZE = _TIMESTAMP_SIZE + 64  # timestamped_signature: u64 timestamp, then the Ed25519 signature


def cosignature_message(timestamp: int, checkpoint_text: bytes) -> bytes:
    """tlog-cosignature §Ed25519 signed message: the header line, the time line, then the checkpoint's text."""
    if type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError("cosignature timestamp: must be an integer from 0 to 2^63 - 1")
    return b"cosignature/v1\ntime %d\n" % timestamp + checkpoint_text


@dataclass(frozen=True)
class CosignatureVerifier(Ed25519Verifier):
    """Verifies one cosigner's timestamped Ed25519 cosignatures (key ID over type 0x04)."""

    SIG_TYPE: ClassVar[int] = COSIGNATURE_V1

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != _SIGNATURE_SIZE:
            return False
        timestamp = int.from_bytes(signature[:_TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        return ed25519_verify(self.public_key, cosignature_message(timestamp, text), signature[_TIMESTAMP_SIZE:])


@dataclass(frozen=True)
class CosignatureSigner(Ed25519Signer):
    """Cosigns checkpoint texts at the time `clock` gives (POSIX seconds), as a tlog-cosignature cosigner.

    tlog-cosignature: the Ed25519 message does not commit to the cosigner's name, so one key must not serve
    two cosigner names.
    """

    SIG_TYPE: ClassVar[int] = COSIGNATURE_V1

    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def sign(self, text: bytes) -> bytes:
        timestamp = int(self.clock())
        message = cosignature_message(timestamp, text)
        return timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + self.signing_key.sign(message).signature

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, bytes(self.signing_key.verify_key))


def cosignature_timestamp(signature: Signature) -> int:
    """The POSIX time a cosignature states it was made; raise NoteError if it is not a timestamped signature."""
    if len(signature.signature) != _SIGNATURE_SIZE:
        raise NoteError(f"cosignature of {signature.name}: must be {_SIGNATURE_SIZE} bytes")
    timestamp = int.from_bytes(signature.signature[:_TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise NoteError(f"cosignature of {signature.name}: timestamp must not exceed 2^63 - 1")
    return timestamp
