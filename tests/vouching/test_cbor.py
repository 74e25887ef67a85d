"""Deterministic CBOR: the encoder's output, and a decoder that accepts nothing else, each rejection explained."""

import math
from typing import Any

import cbor2
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from vouching import cbor
from vouching.cbor import MAX_DEPTH, CborError, decode, encode

# RFC 8949 Appendix A: values whose preferred (and here deterministic) encodings the RFC lists.
RFC_8949_EXAMPLES = [
    (0, "00"),
    (23, "17"),
    (24, "1818"),
    (1000000, "1a000f4240"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-1, "20"),
    (-1000, "3903e7"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (0.0, "f90000"),
    (-0.0, "f98000"),
    (1.5, "f93e00"),
    (65504.0, "f97bff"),
    (100000.0, "fa47c35000"),
    (1.1, "fb3ff199999999999a"),
    (-4.1, "fbc010666666666666"),
    (1.0e300, "fb7e37e43c8800759c"),
    (5.960464477539063e-8, "f90001"),
    (math.inf, "f97c00"),
    (-math.inf, "f9fc00"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("IETF", "6449455446"),
    ("\u00fc", "62c3bc"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
]


@pytest.mark.parametrize(("value", "hex_bytes"), RFC_8949_EXAMPLES)
def test_rfc_8949_examples(value: Any, hex_bytes: str) -> None:
    assert encode(value).hex() == hex_bytes
    assert decode(bytes.fromhex(hex_bytes)) == value


def test_nan_has_one_encoding() -> None:
    assert encode(math.nan).hex() == "f97e00"
    assert math.isnan(decode(bytes.fromhex("f97e00")))


def test_map_keys_sorted_bytewise_whatever_the_insertion_order() -> None:
    assert encode({"bb": 1, "a": 2, -1: 3, 5: 4}).hex() == "a40504200361610262626201"


@pytest.mark.parametrize(
    ("hex_bytes", "reason"),
    [
        ("", "truncated at byte 0"),
        ("a1616101" + "01", "trailing bytes at byte 4"),
        ("0000", "trailing bytes at byte 1"),
        ("8201", "truncated at byte 2"),
        ("1a0001", "truncated at byte 3"),
        ("62c3", "truncated at byte 2"),
        ("1817", "integer not in shortest form at byte 0"),
        ("190017", "integer not in shortest form at byte 0"),
        ("1a0000ffff", "integer not in shortest form at byte 0"),
        ("1b00000000ffffffff", "integer not in shortest form at byte 0"),
        ("3817", "integer not in shortest form at byte 0"),
        ("5801" + "00", "length not in shortest form at byte 0"),
        ("780161", "length not in shortest form at byte 0"),
        ("98020102", "length not in shortest form at byte 0"),
        ("b801616101", "length not in shortest form at byte 0"),
        ("fa3fc00000", "float not in shortest form at byte 0"),
        ("fb3ff8000000000000", "float not in shortest form at byte 0"),
        ("f97e01", "float not in shortest form at byte 0"),
        ("9f01ff", "indefinite length at byte 0"),
        ("bf616101ff", "indefinite length at byte 0"),
        ("5f4101ff", "indefinite length at byte 0"),
        ("7f6161ff", "indefinite length at byte 0"),
        ("ff", "unexpected break at byte 0"),
        ("a2616201616102", "map keys out of order at byte 4"),
        ("a20102" + "0003", "map keys out of order at byte 3"),
        ("a2616101616102", "duplicate map key at byte 4"),
        ("a1182001", "map key is not ASCII text under 24 bytes or an integer in -24..23, at byte 1"),
        ("a1410102", "map key is not ASCII text under 24 bytes"),
        ("a162c3bc01", "map key is not ASCII text under 24 bytes"),
        ("a1f501", "map key is not ASCII text under 24 bytes"),
        ("a1f93c0001", "map key is not ASCII text under 24 bytes"),
        ("c11a00000000", "tags are not allowed, at byte 0"),
        ("c249010000000000000000", "tags are not allowed, at byte 0"),
        ("d81c81d81d00", "tags are not allowed, at byte 0"),
        ("8101" + "d2" + "00", "trailing bytes at byte 2"),
        ("f7", "simple values other than false, true and null are not allowed"),
        ("f0", "simple values other than false, true and null are not allowed"),
        ("f820", "simple values other than false, true and null are not allowed"),
        ("1c", "reserved additional information at byte 0"),
        ("fc", "reserved additional information at byte 0"),
        ("62c328", "invalid UTF-8 in text string at byte 0"),
        ("63eda080", "invalid UTF-8 in text string at byte 0"),
        ("81" * (MAX_DEPTH + 1) + "01", f"nested deeper than {MAX_DEPTH} levels at byte {MAX_DEPTH}"),
    ],
)
def test_rejects_with_reason(hex_bytes: str, reason: str) -> None:
    with pytest.raises(CborError, match=reason):
        decode(bytes.fromhex(hex_bytes))


def test_nesting_up_to_the_limit_is_accepted() -> None:
    data = bytes.fromhex("81" * MAX_DEPTH + "01")
    assert encode(decode(data)) == data


def test_int_keys_do_not_open_the_door_to_bool_keys() -> None:
    assert decode(bytes.fromhex("a10101")) == {1: 1}
    with pytest.raises(CborError, match="map key"):
        decode(bytes.fromhex("a1f501"))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"a" * 24: 1}, "map key 'aaaaaaaaaaaaaaaaaaaaaaaa' is not ASCII text under 24 bytes"),
        ({b"a": 1}, "map key b'a' is not ASCII text"),
        ({24: 1}, "map key 24 is not"),
        ({True: 1}, "map key True is not"),
        ({"\u00fc": 1}, "is not ASCII text"),
        ((1, 2), "tuple is not a CBOR type of the profile"),
        ({1, 2}, "set is not a CBOR type"),
        (2**64, "integer outside 64 bits"),
        (-(2**64) - 1, "integer outside 64 bits"),
        ("\ud800", "text string is not valid Unicode"),
        ([[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]], "nested deeper than 16 levels"),
    ],
)
def test_encode_rejects_values_outside_the_profile(value: Any, reason: str) -> None:
    with pytest.raises(CborError, match=reason):
        encode(value)


def test_decode_needs_bytes() -> None:
    with pytest.raises(CborError, match="input must be bytes"):
        decode(bytearray(b"\x01"))  # type: ignore[arg-type]


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


keys = st.text(st.characters(max_codepoint=0x7F), max_size=23) | st.integers(-24, 23)
scalars = (
    st.integers(-(2**64), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5))


@given(values)
def test_decode_inverts_encode(value: Any) -> None:
    assume(_depth(value) <= MAX_DEPTH)
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(values)
def test_maps_in_key_order_encode_as_cbor2s_canonical_mode_does(value: Any) -> None:
    """encode takes cbor2's plain encoder for maps already in RFC 8949 order: the bytes must not differ."""
    assume(_depth(value) <= MAX_DEPTH)
    in_order = decode(encode(value))  # decoded maps keep their wire order
    assert encode(in_order) == cbor2.dumps(in_order, canonical=True) == encode(value)


def _mutate(data: bytes, position: int, byte: int, kind: str) -> bytes:
    position %= len(data) + 1
    if kind == "replace" and position < len(data):
        return data[:position] + bytes([byte]) + data[position + 1 :]
    if kind == "delete":
        return data[:position] + data[position + 1 :]
    return data[:position] + bytes([byte]) + data[position:]


def _check_strict(data: bytes) -> None:
    """Accepted bytes are exactly the encoding of what they decode to; rejected ones say which rule they break."""
    try:
        value = decode(data)
    except CborError as error:
        assert not str(error).startswith("not deterministic CBOR"), f"no specific reason for {data.hex()}: {error}"
        return
    assert encode(value) == data


@given(values, st.integers(0), st.integers(0, 255), st.sampled_from(["replace", "insert", "delete"]))
def test_mutated_encodings_are_exact_or_rejected_with_a_reason(value: Any, position: int, byte: int, kind: str) -> None:
    assume(_depth(value) <= MAX_DEPTH)
    _check_strict(_mutate(encode(value), position, byte, kind))


@given(st.binary(max_size=64))
def test_random_bytes_are_exact_or_rejected_with_a_reason(data: bytes) -> None:
    _check_strict(data)


def test_many_distinct_maps_are_all_checked_and_memory_stays_bounded() -> None:
    # Key orders are remembered to save work; hostile streams of new shapes must neither grow that memory without
    # bound nor get an out-of-order map past the check once it is full.
    for i in range(cbor._MAX_SHAPES + 10):
        decode(encode({f"k{i}": 1, f"kk{i}": 2}))
        decode(encode({f"key{j}": j for j in range(40)} | {"n": i}))
    assert len(cbor._SHAPES) <= cbor._MAX_SHAPES
    assert max(map(len, cbor._SHAPES)) <= cbor._MAX_SHAPE_KEYS
    with pytest.raises(CborError, match="map keys out of order"):
        decode(bytes.fromhex("a2616201616102"))


@given(st.integers(0, 2**64 - 1))
def test_encode_head_of_an_unsigned_integer_is_its_encoding(value: int) -> None:
    assert cbor.encode_head(0, value) == encode(value)



@given(st.integers(0, 70_000))
def test_encode_head_of_a_length_opens_the_encoding_of_an_item_that_long(length: int) -> None:
    assert encode(b"\x00" * length) == cbor.encode_head(2, length) + b"\x00" * length
    assert encode("a" * length) == cbor.encode_head(3, length) + b"a" * length
    assert encode([0] * length) == cbor.encode_head(4, length) + b"\x00" * length
    pairs = min(length, 1000)  # keys of one length, so that their order is their str order
    items = {f"k{i:04}": 0 for i in range(pairs)}
    assert encode(items) == cbor.encode_head(5, pairs) + b"".join(encode(key) + b"\x00" for key in sorted(items))
