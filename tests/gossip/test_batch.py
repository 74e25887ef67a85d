"""The gossip message format: records packed into size-bounded deterministic CBOR arrays, and unpacked strictly."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossip.batch import MAX_SINGLE_MESSAGE, BatchError, OversizedBatch, item_size, max_message_size, pack, unpack
from vouching import MAX_RECORD_SIZE
from vouching.cbor import encode

records_lists = st.lists(st.binary(min_size=1, max_size=700), unique=True, max_size=60)
limits = st.integers(min_value=1, max_value=4096)


@given(records_lists, limits)
def test_pack_then_unpack_gives_the_records_back_in_order(records: list[bytes], max_bytes: int) -> None:
    messages = pack(records, max_bytes)
    assert [r for message in messages for r in unpack(message, max_bytes)] == records


@given(records_lists, limits)
def test_every_message_fits_the_limit_unless_it_carries_one_record(records: list[bytes], max_bytes: int) -> None:
    for message in pack(records, max_bytes):
        assert len(message) <= max_bytes or len(unpack(message, max_bytes)) == 1


@given(records_lists, limits)
def test_a_message_is_only_closed_when_the_next_record_does_not_fit(records: list[bytes], max_bytes: int) -> None:
    messages = pack(records, max_bytes)
    for message, following in zip(messages, messages[1:]):
        merged = unpack(message, max_bytes) + unpack(following, max_bytes)[:1]
        assert len(encode(merged)) > max_bytes


def test_records_of_a_vouch_s_size_share_a_64_kib_message() -> None:
    records = [bytes([i % 256, i // 256]) * 133 for i in range(1000)]  # 266 bytes, like a vouch
    messages = pack(records, 65536)
    per_message = (65536 - 3) // (3 + 266)  # a 3-byte array head; each record has a 3-byte head
    assert [len(unpack(m, 65536)) for m in messages] == [per_message] * 4 + [1000 - 4 * per_message]
    assert all(len(m) <= 65536 for m in messages)


def test_item_size_counts_the_byte_string_head() -> None:
    assert [item_size(bytes(n)) for n in (0, 23, 24, 255, 256, 65535, 65536)] == [1, 24, 26, 257, 259, 65538, 65541]


def test_the_largest_record_travels_alone_whatever_the_limit() -> None:
    largest = bytes(MAX_RECORD_SIZE)
    (message,) = pack([largest], 100)
    assert len(message) == MAX_SINGLE_MESSAGE == max_message_size(65536)
    assert unpack(message, 100) == [largest]
    assert pack([b"a", largest, b"b"], 100) == [encode([b"a"]), message, encode([b"b"])]


def test_pack_refuses_what_no_peer_accepts() -> None:
    with pytest.raises(ValueError, match="exceeds MAX_RECORD_SIZE"):
        pack([bytes(MAX_RECORD_SIZE + 1)], 65536)
    with pytest.raises(ValueError, match="max_bytes must be at least 1"):
        pack([b"r"], 0)
    assert pack([], 65536) == []


@pytest.mark.parametrize(
    ("data", "error", "rule"),
    [
        (encode([b"r" * 100, b"s" * 100]), OversizedBatch, "batch: 205 bytes, more than the limit of 200"),
        (encode([b"r" * 300]) + b"\x00", BatchError, "trailing bytes at byte 304"),
        (b"\x81" + bytes(MAX_SINGLE_MESSAGE), OversizedBatch, "more than the limit"),
        (b"\x82\x41a", BatchError, "batch: not deterministic CBOR: truncated"),
        (bytes.fromhex("9f4161ff"), BatchError, "indefinite length"),
        (bytes.fromhex("98014161"), BatchError, "length not in shortest form"),
        (encode({"records": [b"r"]}), BatchError, "must be a CBOR array of records, got dict"),
        (encode([]), BatchError, "must hold at least one record"),
        (encode([b"r", "text"]), BatchError, r"batch\[1\]: must be a byte string, got str"),
        (encode([b"r", [b"nested"]]), BatchError, r"batch\[1\]: must be a byte string, got list"),
        (encode([b""]), BatchError, r"batch\[0\]: 0 bytes, must be 1..65536"),
        (encode([b"r", b"s", b"r"]), BatchError, "holds the same record twice"),
    ],
)
def test_unpack_names_the_rule_a_message_breaks(data: bytes, error: type, rule: str) -> None:
    with pytest.raises(error, match=rule):
        unpack(data, 200)


def test_a_record_over_the_record_limit_is_refused_even_alone() -> None:
    with pytest.raises(BatchError, match=r"batch\[0\]: 65537 bytes"):
        unpack(encode([bytes(MAX_RECORD_SIZE + 1)]), 1 << 20)


@given(st.binary(max_size=300))
def test_garbage_raises_batch_error_and_nothing_else(data: bytes) -> None:
    try:
        records = unpack(data, 200)
    except BatchError:
        return
    assert encode(records) == data


cbor_items = st.one_of(st.binary(max_size=40), st.text(max_size=5), st.integers(-(2**64), 2**64 - 1), st.none())


@given(st.lists(cbor_items, max_size=8))
def test_cbor_that_is_not_an_array_of_records_raises_batch_error(items: list) -> None:
    try:
        unpack(encode(items), 400)
    except BatchError:
        return
    assert items and all(type(i) is bytes and i for i in items) and len(set(items)) == len(items)
