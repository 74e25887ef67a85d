"""The records-topic gossip message: a deterministic CBOR array (RFC 8949 §4.2.1) of 1 or more record byte strings.

A message is at most the batch limit (Limits.gossip_batch_bytes), except that a single record always travels, alone
if it must: a one-record message may be as large as the largest valid record needs. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vouching import MAX_RECORD_SIZE
from vouching.cbor import CborError, decode, encode


class BatchError(ValueError):
    """A gossip message that is not a batch of records; the message names the rule it breaks."""


class OversizedBatch(BatchError):
    """A gossip message larger than the batch limit allows."""


def _head_size(argument: int) -> int:
    """Bytes of a CBOR head carrying `argument` (a length or a count) in its shortest form."""
    if argument < 24:
        return 1
    if argument < 1 << 8:
        return 2
    if argument < 1 << 16:
        return 3
    if argument < 1 << 32:
        return 5
    return 9


def item_size(record: bytes) -> int:
    """Bytes one record takes inside a batch: its byte-string head and itself."""
    return _head_size(len(record)) + len(record)


MAX_SINGLE_MESSAGE = 1 + _head_size(MAX_RECORD_SIZE) + MAX_RECORD_SIZE  # one record of the largest valid size
# The largest gossip message a node sends or takes (gossip.host.HostConfig.max_message_size): a peer rejects a larger
# one, and scores its forwarder down.
MAX_GOSSIP_MESSAGE = 256 * 1024


def max_message_size(batch_bytes: int) -> int:
    """The largest message a node with this batch limit sends or accepts (set the host's limit at least this)."""
    return max(batch_bytes, MAX_SINGLE_MESSAGE)


def batches(records: Iterable[bytes], max_bytes: int) -> Iterator[list[bytes]]:
    """Records, in order, grouped greedily into batches that each encode to at most `max_bytes`; lazy.

    A record too large to share a message (or larger than `max_bytes` itself) gets a batch of its own.
    Raises ValueError for a record longer than MAX_RECORD_SIZE, which no peer would accept.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
    batch: list[bytes] = []
    size = 0  # of the items in `batch`, without the array head
    for record in records:
        if len(record) > MAX_RECORD_SIZE:
            raise ValueError(f"record of {len(record)} bytes exceeds MAX_RECORD_SIZE {MAX_RECORD_SIZE}")
        grown = size + item_size(record)
        if batch and _head_size(len(batch) + 1) + grown > max_bytes:
            yield batch
            batch, grown = [], item_size(record)
        batch.append(record)
        size = grown
    if batch:
        yield batch


def pack(records: Iterable[bytes], max_bytes: int) -> list[bytes]:
    """The messages that carry `records`, in order, each at most `max_bytes` unless it carries one record alone."""
    return [encode(batch) for batch in batches(records, max_bytes)]


def unpack(data: bytes, max_bytes: int) -> list[bytes]:
    """The records of a message, in order; raises OversizedBatch or BatchError (naming the rule) for anything else.

    Records are not verified here: each must still pass gossip.validation.check_record.
    """
    if len(data) > max_bytes and not (len(data) <= MAX_SINGLE_MESSAGE and data[:1] == b"\x81"):
        raise OversizedBatch(f"batch: {len(data)} bytes, more than the limit of {max_bytes}")
    try:
        records = decode(data)
    except CborError as error:
        raise BatchError(f"batch: not deterministic CBOR: {error}") from None
    if type(records) is not list:
        raise BatchError(f"batch: must be a CBOR array of records, got {type(records).__name__}")
    if not records:
        raise BatchError("batch: must hold at least one record")
    for index, record in enumerate(records):
        if type(record) is not bytes:
            raise BatchError(f"batch[{index}]: must be a byte string, got {type(record).__name__}")
        if not 0 < len(record) <= MAX_RECORD_SIZE:
            raise BatchError(f"batch[{index}]: {len(record)} bytes, must be 1..{MAX_RECORD_SIZE}")
    if len(set(records)) != len(records):
        raise BatchError("batch: holds the same record twice")
    return records
