"""C2SP signed-note (c2sp.org/signed-note): text signed by named keys, key IDs, vkeys, Ed25519 (type 0x01).

Signing and verification use PyNaCl only (DESIGN §2). Everything read from a peer is checked strictly.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, Self

import nacl.exceptions
import nacl.signing

SIG_ED25519 = 0x01  # signed-note §Signature types: Ed25519 over the note text

# signed-note: verifiers MUST accept at least 16 signatures, and post-quantum signatures approach 5 kB each; a
# 64 KiB bound admits 16 of those, and an Ed25519-signed checkpoint is a few hundred bytes.
MAX_NOTE_SIZE = 64 * 1024
MAX_SIGNATURES = 64
MAX_COSIGNATURES = MAX_SIGNATURES - 1  # on a checkpoint, besides the log's own signature

_SIG_PREFIX = "\u2014 "  # em dash, space
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII controls other than newline
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64


class NoteError(ValueError):
    """A note, signature line, key name or vkey breaks signed-note; the message names the part and the rule."""


class NoteSigner(Protocol):
    """Signs note texts with one key, identified in signature lines by (name, key_id)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def sign(self, text: bytes) -> bytes: ...


class NoteVerifier(Protocol):
    """Verifies signatures of one key over note texts; a note's (name, key_id) pair selects it."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verify(self, text: bytes, signature: bytes) -> bool: ...


def _check_key_name(name: str) -> None:
    """signed-note §Format: a key name is non-empty, with no Unicode space, no '+' and no control character."""
    if not isinstance(name, str) or not name:
        raise NoteError("key name: must be a non-empty string")
    for ch in name:
        if ch.isspace() or ch == "+" or ch < " ":
            raise NoteError(f"key name {name!r:.100}: must not contain spaces, '+' or control characters")


def key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """signed-note §Signatures: SHA-256(key name || 0x0A || signature type || public key)[:4], big-endian."""
    _check_key_name(name)
    if not 0 <= sig_type <= 0xFF:
        raise NoteError(f"signature type: must be one byte, got {sig_type}")
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def decode_base64(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4), canonical only: padded, no stray bits; raise NoteError naming `what`.

    Canonical form matters: a lenient decoder accepts variants of a signed note that differ in the unused low
    bits of a last character, so different bytes would open as the same note.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise NoteError(f"{what}: not valid base64") from None
    if base64.b64encode(raw).decode() != text:
        raise NoteError(f"{what}: not canonical base64")
    return raw


# --- Verifier keys (vkeys): "<name>+<hex key ID>+<base64(type || public key)>" -------------------------


def encode_vkey(name: str, sig_type: int, public_key: bytes) -> str:
    """signed-note verifier key: name, '+', the key ID as 8 hex digits, '+', base64(type byte || key)."""
    kid = key_id(name, sig_type, public_key)
    return f"{name}+{kid:08x}+{base64.b64encode(bytes([sig_type]) + public_key).decode()}"


def parse_vkey(vkey: str) -> tuple[str, int, bytes]:
    """Parse a vkey into (name, signature type, public key), checking its key ID; raise NoteError."""
    parts = vkey.split("+", 2) if isinstance(vkey, str) else []
    if len(parts) != 3:
        raise NoteError("vkey: must be <name>+<key ID>+<key>")
    name, hex_id, key64 = parts
    _check_key_name(name)
    if not _HEX8.fullmatch(hex_id):
        raise NoteError(f"vkey {name}: key ID must be 8 hex digits, got {hex_id!r}")
    typed_key = decode_base64(key64, f"vkey {name}: key")
    if len(typed_key) < 2:
        raise NoteError(f"vkey {name}: key must be a type byte and a public key")
    sig_type, public_key = typed_key[0], typed_key[1:]
    if key_id(name, sig_type, public_key) != int(hex_id, 16):
        raise NoteError(f"vkey {name}: key ID {hex_id} does not match the name and key")
    return name, sig_type, public_key


def _check_ed25519_key(public_key: bytes) -> None:
    if not isinstance(public_key, bytes) or len(public_key) != _ED25519_KEY_SIZE:
        raise NoteError(f"public key: an Ed25519 key is {_ED25519_KEY_SIZE} bytes")


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 Ed25519 verification through libsodium; False for any invalid signature or key."""
    if len(signature) != _ED25519_SIG_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


# --- Ed25519 note keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ed25519Verifier:
    """signed-note §Ed25519 signatures: verifies one named Ed25519 key's signatures of type SIG_TYPE (0x01).

    Signature types built on Ed25519 keys (tlog-cosignature's 0x04) subclass it with their own SIG_TYPE and
    signed message; the type is part of the key ID, so one key under two types has two IDs.
    """

    SIG_TYPE: ClassVar[int] = SIG_ED25519

    name: str
    public_key: bytes
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        _check_ed25519_key(self.public_key)
        object.__setattr__(self, "key_id", key_id(self.name, self.SIG_TYPE, self.public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        """The verifier of a vkey of this class's signature type; raise NoteError."""
        name, sig_type, public_key = parse_vkey(vkey)
        if sig_type != cls.SIG_TYPE:
            raise NoteError(f"vkey {name}: signature type must be 0x{cls.SIG_TYPE:02x}, got 0x{sig_type:02x}")
        return cls(name, public_key)

    def vkey(self) -> str:
        return encode_vkey(self.name, self.SIG_TYPE, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        return ed25519_verify(self.public_key, text, signature)


@dataclass(frozen=True)
class Ed25519Signer:
    """signed-note §Ed25519 signatures: signs note texts with one named Ed25519 key (type SIG_TYPE, 0x01)."""

    SIG_TYPE: ClassVar[int] = SIG_ED25519

    name: str
    signing_key: nacl.signing.SigningKey = field(repr=False)
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", key_id(self.name, self.SIG_TYPE, bytes(self.signing_key.verify_key)))

    def sign(self, text: bytes) -> bytes:
        return self.signing_key.sign(text).signature

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self.name, bytes(self.signing_key.verify_key))


# --- Signature lines and notes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key ID, and the signature bytes that follow the key ID."""

    name: str
    key_id: int
    signature: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if not 0 <= self.key_id <= 0xFFFFFFFF:
            raise NoteError(f"signature {self.name}: key ID must be a uint32")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise NoteError(f"signature {self.name}: must be non-empty bytes")

    @property
    def line(self) -> str:
        """The signature line, '— <name> base64(key ID || signature)' and a newline."""
        raw = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(raw).decode()}\n"

    @classmethod
    def from_line(cls, line: str) -> Signature:
        """Parse one signature line (without its newline); raise NoteError."""
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("must start with an em dash and a space")
        name, sep, sig64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep:
            raise NoteError("must be '— <key name> <base64 signature>'")
        _check_key_name(name)
        raw = decode_base64(sig64, f"signature of {name}")
        if len(raw) < 5:
            raise NoteError(f"signature of {name}: must be a 4-byte key ID and a non-empty signature")
        return cls(name, int.from_bytes(raw[:4], "big"), raw[4:])


def _encode_text(text: str) -> bytes:
    """signed-note §Format: a note text is UTF-8, ends in a newline, and has no other ASCII control character."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise NoteError("text: must end with a newline")
    if m := _CONTROL.search(text):
        raise NoteError(f"text: control character U+{ord(m.group()):04X} at position {m.start()}")
    try:
        return text.encode()
    except UnicodeEncodeError as e:
        raise NoteError(f"text: not encodable as UTF-8 at position {e.start}") from None


def note_signature(text: str, signer: NoteSigner) -> Signature:
    """Sign a note text with one signer, giving its signature line."""
    return Signature(signer.name, signer.key_id, signer.sign(_encode_text(text)))


def format_note(text: str, signatures: Sequence[Signature]) -> bytes:
    """signed-note §Format: the text, a blank line, then one line per signature, within this module's limits."""
    body = _encode_text(text)
    if not 1 <= len(signatures) <= MAX_SIGNATURES:
        raise NoteError(f"note: must have 1 to {MAX_SIGNATURES} signatures, got {len(signatures)}")
    note = body + b"\n" + "".join(s.line for s in signatures).encode()
    if len(note) > MAX_NOTE_SIZE:
        raise NoteError(f"note: {len(note)} bytes is more than {MAX_NOTE_SIZE}")
    return note


def sign_note(text: str, signers: Sequence[NoteSigner]) -> bytes:
    """Sign `text` with every signer, in order, and return the signed note."""
    return format_note(text, [note_signature(text, s) for s in signers])


def open_note(note: bytes, verifiers: Iterable[NoteVerifier]) -> tuple[str, tuple[Signature, ...]]:
    """Check a signed note against known keys; return its text and the signatures of known keys, in note order.

    signed-note §Signatures: a signature whose (name, key ID) pair matches no known key is ignored; one that
    matches must verify, or the whole note is rejected; at least one must be from a known key. A malformed note
    is rejected whatever its signatures. Raises NoteError.
    """
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        if (v.name, v.key_id) in known:
            raise ValueError(f"verifiers: two keys named {v.name} share key ID {v.key_id:08x}")
        known[(v.name, v.key_id)] = v
    if not isinstance(note, bytes):
        raise NoteError("note: must be bytes")
    if len(note) > MAX_NOTE_SIZE:
        raise NoteError(f"note: {len(note)} bytes is more than {MAX_NOTE_SIZE}")
    try:
        decoded = note.decode()
    except UnicodeDecodeError as e:
        raise NoteError(f"note: not valid UTF-8 at byte {e.start}") from None
    if m := _CONTROL.search(decoded):
        raise NoteError(f"note: control character U+{ord(m.group()):04X} at position {m.start()}")
    # The text ends at the last blank line; a newline byte never occurs inside a UTF-8 sequence.
    split = note.rfind(b"\n\n")
    if split < 0:
        raise NoteError("note: must be a text, a blank line and signature lines")
    text, block = note[: split + 1], note[split + 2 :].decode()
    if not block.endswith("\n"):
        raise NoteError("note: must end with a signature line and a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note: {len(lines)} signatures is more than {MAX_SIGNATURES}")
    signatures = []
    for i, line in enumerate(lines, 1):
        try:
            signatures.append(Signature.from_line(line))
        except NoteError as e:
            raise NoteError(f"signature line {i}: {e}") from None
    verified = []
    for i, sig in enumerate(signatures, 1):
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(text, sig.signature):
            raise NoteError(f"signature line {i}: {sig.name}+{sig.key_id:08x} does not verify")
        verified.append(sig)
    if not verified:
        raise NoteError(f"note: none of its {len(signatures)} signatures is from a known key")
    return text.decode(), tuple(verified)
