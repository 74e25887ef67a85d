"""Deterministic CBOR (RFC 8949 §4.2.1): the one encoder vouchnet signs with, and a decoder accepting only its output.

Profile: integers (64-bit), byte and text strings, arrays, maps, floats, false, true, null; map keys are ASCII text
under 24 bytes or integers in -24..23, so cbor2's length-first key order equals RFC 8949's bytewise order; no tags,
no other simple values, no indefinite lengths, at most 16 levels of nesting.
"""

import struct
from collections.abc import Iterable
from typing import Any

import cbor2

MAX_DEPTH = 16
_INT_MIN, _INT_LIMIT = -(2**64), 2**64
_TEXT_HEADS = [chr(0x60 + length) for length in range(24)]
# Whether each key sequence seen is in RFC 8949 order. Records repeat a few dozen small shapes, so checking each once
# saves most of the walk. Hostile input must not grow it (only small maps, and a bound) nor freeze it full of junk
# (when full, it starts again, and the shapes in use come straight back).
_SHAPES: dict[tuple[str, ...], bool] = {}
_MAX_SHAPES = 4096
_MAX_SHAPE_KEYS = 16
# What _walk reports about a value: any bit set means cbor2's canonical mode must encode it.
_FLOAT = 1  # holds a float (only canonical mode writes floats in their shortest form)
_UNSORTED = 2  # holds a map whose keys are not in RFC 8949 order


class CborError(ValueError):
    """Bytes that are not deterministic CBOR of the profile, or a value outside it; the message says why and where."""


def encode(value: Any) -> bytes:
    """The deterministic encoding of a value of the profile (map keys in any order; floats in shortest form).

    Values whose maps are already in RFC 8949 key order and that hold no float take cbor2's plain encoder, 3-4x
    faster than its canonical one and, for them, byte for byte the same (as in decode)."""
    sort = _walk(value, 1)
    try:
        return cbor2.dumps(value, canonical=True) if sort else cbor2.dumps(value)
    except UnicodeEncodeError as error:  # a lone surrogate in a str has no UTF-8 form
        raise CborError(f"text string is not valid Unicode: {error.reason}") from None


def encode_in_key_order(value: Any) -> bytes:
    """`encode` of a value its caller built inside the profile, every map's keys in RFC 8949 order and no float in it,
    without the walk that checks so: for values a node assembles itself from what it holds (the heads pages it
    serves), never for values from anywhere else. Callers' tests pin the result against `encode`."""
    return cbor2.dumps(value)


def encode_head(major: int, argument: int) -> bytes:
    """The head of a data item in its shortest form (RFC 8949 §3, §4.2.1): major type 0-5 and its argument (an
    unsigned integer's value, a string's length in bytes, an array's or map's count), 0 <= argument < 2**64. For
    callers that assemble items of a fixed shape directly; their tests pin the result against `encode`."""
    initial = major << 5
    if argument < 24:
        return bytes((initial | argument,))
    if argument < 0x100:
        return bytes((initial | 24, argument))
    if argument < 0x10000:
        return bytes((initial | 25,)) + argument.to_bytes(2, "big")
    if argument < 0x100000000:
        return bytes((initial | 26,)) + argument.to_bytes(4, "big")
    return bytes((initial | 27,)) + argument.to_bytes(8, "big")


def decode(data: bytes) -> Any:
    """Decode bytes that are exactly the deterministic encoding of one value of the profile, and nothing more."""
    if type(data) is not bytes:
        raise CborError("input must be bytes")
    # Fast path: cbor2 decodes and re-encodes; the input is deterministic iff the bytes come back unchanged. Its
    # plain encoder is 3-4x faster than the canonical one and gives the same bytes once the walk has checked that
    # keys are in order, but only canonical mode writes floats in their shortest form. The walk runs first: its
    # depth limit also stops it on the cyclic values cbor2's shared-value tags can build.
    try:
        value = cbor2.loads(data)
        flags = _walk(value, 1)
        if flags & _UNSORTED:
            raise CborError("map keys out of order")
        encoded = cbor2.dumps(value, canonical=True) if flags else cbor2.dumps(value)
    except Exception as error:  # anything cbor2 or the walk rejects is explained from the bytes
        raise _explain(data, str(error)) from None
    if encoded != data:
        raise _explain(data, "re-encoding differs")
    return value


def decode_checked_before(data: bytes) -> Any:
    """What `decode` gives for bytes it accepted before (a record this node stored), without checking them again: the
    check only ever rejects, and re-encoding is most of decode's cost. Never for bytes from anywhere else: cbor2
    alone accepts much that is not in the profile, cyclic values among it. Raises cbor2's errors."""
    return cbor2.loads(data)


def _walk(value: Any, depth: int) -> int:
    """Check that a value is inside the profile; return its _FLOAT and _UNSORTED bits. Hot: scalars are inlined."""
    kind = type(value)
    flags = 0
    if kind is dict:
        shape = tuple(value)
        in_order = _SHAPES.get(shape)
        if in_order is None:
            in_order = _check_keys(shape)
        if not in_order:
            flags = _UNSORTED
        items: Iterable[Any] = value.values()
    elif kind is list:
        items = value
    elif kind is str or kind is bytes or kind is bool or value is None:
        return 0
    elif kind is int:
        if not _INT_MIN <= value < _INT_LIMIT:
            raise CborError("integer outside 64 bits")
        return 0
    elif kind is float:
        return _FLOAT
    else:
        raise CborError(f"{kind.__name__} is not a CBOR type of the profile")
    if depth > MAX_DEPTH:
        raise CborError(f"nested deeper than {MAX_DEPTH} levels")
    for item in items:
        kind = type(item)
        if kind is str or kind is bytes or (kind is int and _INT_MIN <= item < _INT_LIMIT):
            continue
        flags |= _walk(item, depth + 1)
    return flags


def _check_keys(keys: tuple[Any, ...]) -> bool:
    """Check that map keys are in the profile; whether they are in RFC 8949 order. Remembers all-text shapes."""
    previous, in_order = "", True
    for key in keys:
        # The key's encoding as a str of code points < 0x80, so that str order is RFC 8949 key order.
        if type(key) is str and len(key) < 24 and key.isascii():
            encoded = _TEXT_HEADS[len(key)] + key
        elif type(key) is int and -24 <= key < 24:
            encoded = chr(key) if key >= 0 else chr(0x1F - key)
        else:
            raise CborError(f"map key {key!r} is not ASCII text under 24 bytes or an integer in -24..23")
        in_order = in_order and encoded > previous
        previous = encoded
    # Only all-text shapes are remembered: 1 == True == 1.0, so a cached int key would admit bool and float keys.
    if len(keys) <= _MAX_SHAPE_KEYS and all(type(key) is str for key in keys):
        if len(_SHAPES) >= _MAX_SHAPES:
            _SHAPES.clear()
        _SHAPES[keys] = in_order
    return in_order


def _explain(data: bytes, fallback: str) -> CborError:
    """The first rule the bytes break, found by a strict scan; the fast path only knows that one is broken."""
    try:
        end = _scan(data, 0, 1)
        if end != len(data):
            return CborError(f"trailing bytes at byte {end}")
    except CborError as error:
        return error
    return CborError(f"not deterministic CBOR: {fallback}")


def _scan(data: bytes, pos: int, depth: int) -> int:
    """Check the item at pos against the profile and its deterministic encoding; return where it ends."""
    if pos >= len(data):
        raise CborError(f"truncated at byte {pos}")
    start = pos
    major, info = data[pos] >> 5, data[pos] & 0x1F
    if major == 7:
        return _scan_simple(data, pos, info)
    if info == 31:
        raise CborError(f"indefinite length at byte {start}" if major in (2, 3, 4, 5) else f"malformed at byte {start}")
    if info >= 28:
        raise CborError(f"reserved additional information at byte {start}")
    argument, pos = _argument(data, pos, info)
    if major == 6:
        raise CborError(f"tags are not allowed, at byte {start}")
    if major in (0, 1):
        return pos
    if major in (2, 3):
        end = pos + argument
        if end > len(data):
            raise CborError(f"truncated at byte {len(data)}")
        if major == 3:
            try:
                data[pos:end].decode("utf-8")
            except UnicodeDecodeError:
                raise CborError(f"invalid UTF-8 in text string at byte {start}") from None
        return end
    if depth > MAX_DEPTH:
        raise CborError(f"nested deeper than {MAX_DEPTH} levels at byte {start}")
    if major == 4:
        for _ in range(argument):
            pos = _scan(data, pos, depth + 1)
        return pos
    previous = b""
    for _ in range(argument):
        key_start = pos
        pos = _scan(data, pos, depth + 1)
        key = data[key_start:pos]
        if not (key[0] < 0x18 or 0x20 <= key[0] < 0x38 or (0x60 <= key[0] < 0x78 and key.isascii())):
            raise CborError(f"map key is not ASCII text under 24 bytes or an integer in -24..23, at byte {key_start}")
        if key == previous:
            raise CborError(f"duplicate map key at byte {key_start}")
        if key < previous:
            raise CborError(f"map keys out of order at byte {key_start}")
        previous = key
        pos = _scan(data, pos, depth + 1)
    return pos


def _argument(data: bytes, pos: int, info: int) -> tuple[int, int]:
    """The argument of the head at pos and where the head ends; it must be in its shortest form (RFC 8949 §4.2.1)."""
    if info < 24:
        return info, pos + 1
    size = 1 << (info - 24)
    if pos + 1 + size > len(data):
        raise CborError(f"truncated at byte {len(data)}")
    argument = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
    if argument < (24 if size == 1 else 1 << (4 * size)):
        what = "integer" if data[pos] >> 5 in (0, 1) else "length"
        raise CborError(f"{what} not in shortest form at byte {pos}")
    return argument, pos + 1 + size


def _scan_simple(data: bytes, pos: int, info: int) -> int:
    """Major type 7: false, true, null and floats in shortest form; nothing else is in the profile."""
    if info in (20, 21, 22):
        return pos + 1
    if info in (25, 26, 27):
        size = 1 << (info - 24)
        end = pos + 1 + size
        if end > len(data):
            raise CborError(f"truncated at byte {len(data)}")
        (value,) = struct.unpack({2: ">e", 4: ">f", 8: ">d"}[size], data[pos + 1 : end])
        if cbor2.dumps(value, canonical=True) != data[pos:end]:
            raise CborError(f"float not in shortest form at byte {pos}")
        return end
    if info == 31:
        raise CborError(f"unexpected break at byte {pos}")
    if info >= 28:
        raise CborError(f"reserved additional information at byte {pos}")
    raise CborError(f"simple values other than false, true and null are not allowed, at byte {pos}")
