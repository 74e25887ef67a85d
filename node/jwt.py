"""Compact JWS / JWT signed with Ed25519 (RFC 7515, RFC 7519, RFC 8037 `EdDSA`), through PyNaCl like every other
signature in vouchnet. We sign with alg `EdDSA`; we also accept `Ed25519`, the fully-specified name (RFC 9864).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import nacl.exceptions
import nacl.signing

SIGN_ALG = "EdDSA"
ACCEPTED_ALGS = frozenset({"EdDSA", "Ed25519"})
MAX_TOKEN = 16 * 1024
LEEWAY_S = 60
# The last second (9999-12-31T23:59:59Z) a NumericDate may name: the last VC 2.0's validFrom and validUntil can say
# (four-digit years), and far below where a float stops counting seconds.
MAX_NUMERIC_DATE = 253_402_300_799
_B64URL = re.compile(r"[A-Za-z0-9_-]*")  # RFC 4648 §5 alphabet only, no padding


class JwtError(ValueError):
    """A token that does not verify; the message says which part and rule."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str, what: str) -> bytes:
    """The bytes `text` encodes as unpadded base64url (RFC 7515 §2), nothing else: Python's decoder skips characters
    outside the alphabet and ignores the unused bits of the last one, so that, say, a signature followed by `!!`
    would verify as the token its issuer signed (one credential, any number of distinct tokens)."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise JwtError(f"{what}: not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise JwtError(f"{what}: not unpadded base64url (bits set past its last byte)")
    return data


def _json_part(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise JwtError(f"{what}: not JSON") from None
    if not isinstance(value, dict):
        raise JwtError(f"{what}: must be a JSON object")
    return value


def encode_jwt(claims: Mapping[str, Any], key: nacl.signing.SigningKey, *, kid: str, typ: str = "JWT") -> str:
    """`header.payload.signature` with header {alg: EdDSA, typ, kid}."""
    header = {"alg": SIGN_ALG, "typ": typ, "kid": kid}
    signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()).signature)}"


def decode_jwt(
    token: str,
    public_key: bytes | Callable[[Mapping[str, Any]], bytes],
    *,
    typ: str | None = None,
    now: float | None = None,
    leeway: int = LEEWAY_S,
    max_length: int = MAX_TOKEN,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a token of at most `max_length` characters whose Ed25519 signature verifies under
    `public_key` (or the key a function finds from the header, e.g. by `kid`); typ is enforced if given, and exp
    and nbf: a token is refused on or after exp + leeway and before nbf - leeway (RFC 7519 §4.1.4, §4.1.5), and if
    its exp, nbf or iat is not a NumericDate (`_numeric_date`). Raises JwtError."""
    if not isinstance(token, str) or len(token) > max_length or token.count(".") != 2:
        raise JwtError(f"token: must be three base64url parts separated by '.', at most {max_length} characters")
    encoded_header, encoded_claims, encoded_signature = token.split(".")
    header = _json_part(b64url_decode(encoded_header, "header"), "header")
    if header.get("alg") not in ACCEPTED_ALGS:
        raise JwtError(f"header.alg: must be one of {', '.join(sorted(ACCEPTED_ALGS))}")
    if "crit" in header:
        raise JwtError("header.crit: no critical extensions are understood")
    if typ is not None and header.get("typ") != typ:
        raise JwtError(f"header.typ: must be {typ}")
    key = public_key if isinstance(public_key, bytes) else public_key(header)
    signature = b64url_decode(encoded_signature, "signature")
    try:
        nacl.signing.VerifyKey(key).verify(f"{encoded_header}.{encoded_claims}".encode(), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
        raise JwtError("signature: does not verify under the issuer's key") from None
    claims = _json_part(b64url_decode(encoded_claims, "payload"), "payload")
    moment = time.time() if now is None else now
    exp, nbf, _ = (_numeric_date(claims, name) for name in ("exp", "nbf", "iat"))
    if exp is not None and moment >= exp + leeway:
        raise JwtError("payload.exp: the token has expired")
    if nbf is not None and moment < nbf - leeway:
        raise JwtError("payload.nbf: the token is not valid yet")
    return header, claims


def _numeric_date(claims: Mapping[str, Any], name: str) -> int | float | None:
    """The claim `name` if the token has it, a NumericDate (RFC 7519 §2): seconds from 1970 to MAX_NUMERIC_DATE.
    Python's parser reads NaN and Infinity, which JSON has not (RFC 8259 §6): an exp of NaN never passed, and a
    number past a float's range overflowed where a verifier counted with it (node.client.identity)."""
    value = claims.get(name)
    if value is not None and (type(value) not in (int, float) or not 0 <= value <= MAX_NUMERIC_DATE):
        raise JwtError(f"payload.{name}: must be a NumericDate, seconds from 1970 to the year 9999 (RFC 7519 §2)")
    return value
