"""did:key identities for Ed25519 keys (W3C did:key method: multicodec ed25519-pub 0xed01, multibase base58btc)."""

from functools import lru_cache

from vouching.base58 import Base58Error, b58decode, b58encode

_PREFIX = "did:key:z"
_ED25519_MULTICODEC = b"\xed\x01"  # unsigned varint of 0xed, the multicodec code of ed25519-pub
_KEY_SIZE = 32
# An Ed25519 did:key is always 56 characters, all beginning so; the bound keeps base58 decoding of hostile input cheap.
_DID_LENGTH = 56
_ED25519_PREFIX = "did:key:z6Mk"
_MAX_DID_LENGTH = 64


class InvalidDid(ValueError):
    """A string that is not the did:key of an Ed25519 public key; the message says which rule it breaks."""


def did_key(public_key: bytes) -> str:
    """The did:key of a 32-byte Ed25519 public key ("did:key:z6Mk…")."""
    if type(public_key) is not bytes or len(public_key) != _KEY_SIZE:
        raise InvalidDid(f"public key: must be {_KEY_SIZE} bytes")
    return _encode(public_key)


@lru_cache(maxsize=1024)  # signers and peers repeat: base58 is the costly part
def _encode(public_key: bytes) -> str:
    return _PREFIX + b58encode(_ED25519_MULTICODEC + public_key)


def is_compact_jwt(text: str) -> bool:
    """Whether `text` is a compact JWT (an agent's credential, DESIGN.md §2) rather than a did: three base64url
    parts, the first a JSON object (`{"` encodes as `eyJ`). Said so where one is passed in a did's place."""
    return text.startswith("eyJ") and text.count(".") == 2


def meant_as_did(text: str) -> bool:
    """Whether `text`, given where a did or something else will do (a record id, an agent's name), is meant as a
    did, or is a credential given for one: checking it as a did then says what is wrong with it."""
    return text.startswith("did:") or is_compact_jwt(text)


def public_key_from_did(did: str) -> bytes:
    """The 32-byte Ed25519 public key named by a did:key; raises InvalidDid for anything else."""
    if type(did) is not str:
        raise InvalidDid("did: must be a text string")
    return _decode(did)


# Record verification looks up the same issuers and agents over and over (a node may see 10^4 agents an epoch);
# errors are not cached, only keys (about 200 bytes each).
@lru_cache(maxsize=16384)
def _decode(did: str) -> bytes:
    if len(did) > _MAX_DID_LENGTH:
        raise InvalidDid(f"did: longer than {_MAX_DID_LENGTH} characters")
    if not did.startswith(_PREFIX):
        raise InvalidDid("did: must start with 'did:key:z' (did:key, multibase base58btc)")
    encoded = did[len(_PREFIX):]
    try:
        decoded = b58decode(encoded)
    except Base58Error as error:  # its position in the did, as its reader counts, not in the base58 part
        raise InvalidDid(f"did: invalid base58 character {error.char!r} at position {len(_PREFIX) + error.position} "
                         "(from 0)") from None
    if not decoded.startswith(_ED25519_MULTICODEC):
        if did.startswith(_ED25519_PREFIX) and len(did) != _DID_LENGTH:  # its base58 shifted: the multicodec with it
            raise InvalidDid(f"did: {len(did)} characters, where an Ed25519 did:key has {_DID_LENGTH}: one lost or "
                             "added in copying?")
        raise InvalidDid("did: multicodec must be ed25519-pub (0xed01)")
    if len(decoded) != len(_ED25519_MULTICODEC) + _KEY_SIZE:
        raise InvalidDid(f"did: an ed25519-pub key must be {_KEY_SIZE} bytes, not {len(decoded) - 2}")
    return decoded[len(_ED25519_MULTICODEC):]
