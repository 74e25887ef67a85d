"""Field checks shared by the record payload and the bodies (DESIGN §3): each failure names the field and the rule."""

from typing import Any

from vouching.identity import InvalidDid, public_key_from_did

# Integers stay within what JSON (the local API, other languages' nodes) carries exactly.
MAX_UINT = 2**53 - 1
ID_SIZE = 32


class InvalidRecord(ValueError):
    """A record that must not be accepted or signed; the message is "field: rule"."""


def fields(value: Any, name: str, required: frozenset[str], optional: frozenset[str] = frozenset()) -> dict:
    """A map holding every required field, any of the optional ones, and nothing else."""
    if type(value) is not dict:
        raise InvalidRecord(f"{name}: must be a map")
    keys = value.keys()
    if not required <= keys:
        missing = sorted(required - keys)[0]
        raise InvalidRecord(f"{_child(name, missing)}: required field is missing")
    if len(keys) > len(required) and not keys <= required | optional:
        extra = sorted(keys - required - optional, key=str)[0]
        raise InvalidRecord(f"{name}: unknown field {extra!r}")
    return value


def uint(value: Any, name: str, minimum: int = 0, maximum: int = MAX_UINT) -> int:
    """An integer in [minimum, maximum]; a bool is not an integer."""
    if type(value) is not int or not minimum <= value <= maximum:
        raise InvalidRecord(f"{name}: must be an integer in [{minimum}, {maximum}]")
    return value


def text(value: Any, name: str, max_length: int) -> str:
    """Printable text of 1 to max_length characters (no control, format or surrogate characters)."""
    if type(value) is not str or not 0 < len(value) <= max_length or not value.isprintable():
        raise InvalidRecord(f"{name}: must be printable text of 1 to {max_length} characters")
    return value


def escaped(value: str) -> str:
    """`value` with each character that `text` refuses (not printable) as its escape, e.g. \\x1b, \\n or \\u202e:
    safe to show on a terminal, though a peer or caller wrote it."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in value)


def did(value: Any, name: str) -> str:
    """The did:key of an Ed25519 key."""
    try:
        public_key_from_did(value)
    except InvalidDid as error:
        raise InvalidRecord(f"{name}: must be an Ed25519 did:key ({error})") from None
    return value


def byte_string(value: Any, name: str, size: int | None = None) -> bytes:
    """A byte string, of exactly size bytes when size is given, else non-empty."""
    if type(value) is not bytes or (len(value) != size if size is not None else not value):
        raise InvalidRecord(f"{name}: must be a byte string of {size if size is not None else 'at least 1'} bytes")
    return value


def _child(name: str, key: str) -> str:
    # Payload fields are named bare, as DESIGN §3 names them (seq, prev); body fields by their path (body.weight).
    return key if name == "payload" else f"{name}.{key}"
