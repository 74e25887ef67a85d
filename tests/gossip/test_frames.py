import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossip.frames import FrameError, encode_frame, encode_uvarint, parse_frame_header


@given(st.binary(max_size=5000), st.binary(max_size=20))
def test_a_frame_parses_back_to_its_length_and_payload(payload: bytes, rest: bytes) -> None:
    buf = encode_frame(payload) + rest
    length, start = parse_frame_header(buf, max_size=len(payload))
    assert buf[start:start + length] == payload


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_varints_are_minimal_and_round_trip(value: int) -> None:
    encoded = encode_uvarint(value)
    assert parse_frame_header(encoded, max_size=2**63) == (value, len(encoded))
    assert len(encoded) == max(1, (value.bit_length() + 6) // 7)


@given(st.binary(min_size=1, max_size=300))
def test_an_incomplete_prefix_asks_for_more_bytes(payload: bytes) -> None:
    prefix = encode_uvarint(len(payload) + 128)  # at least two bytes
    assert parse_frame_header(prefix[:-1], max_size=10**6) is None


def test_the_spec_examples_encode_as_published() -> None:
    # multiformats/unsigned-varint README examples
    assert encode_uvarint(1) == b"\x01"
    assert encode_uvarint(127) == b"\x7f"
    assert encode_uvarint(128) == b"\x80\x01"
    assert encode_uvarint(255) == b"\xff\x01"
    assert encode_uvarint(300) == b"\xac\x02"
    assert encode_uvarint(16384) == b"\x80\x80\x01"


def test_an_oversized_frame_is_refused_from_its_prefix_alone() -> None:
    with pytest.raises(FrameError, match="frame length 1025 exceeds the limit of 1024"):
        parse_frame_header(encode_uvarint(1025), max_size=1024)
    with pytest.raises(FrameError, match="exceeds the limit"):
        parse_frame_header(b"\xff\xff\xff", max_size=1024)  # known too big before the prefix ends


def test_a_non_minimal_prefix_is_refused() -> None:
    with pytest.raises(FrameError, match="non-minimal"):
        parse_frame_header(b"\x81\x00", max_size=1024)


def test_a_prefix_longer_than_nine_bytes_is_refused() -> None:
    with pytest.raises(FrameError, match="longer than 9 bytes"):
        parse_frame_header(b"\x80" * 9 + b"\x01", max_size=2**70)


@given(st.integers(max_value=-1) | st.integers(min_value=2**63))
def test_values_outside_63_bits_cannot_be_encoded(value: int) -> None:
    with pytest.raises(ValueError):
        encode_uvarint(value)
