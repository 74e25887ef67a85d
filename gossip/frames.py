"""Length-prefixed frames: a multiformats unsigned-varint length, then that many payload bytes.

This is how libp2p protocols delimit messages (multiformats/unsigned-varint: at most 9 bytes, minimal
encoding), so a js-libp2p or go-libp2p peer frames `/vouchnet/sync/1` messages the same way. Pure: no I/O.
"""

MAX_VARINT_BYTES = 9  # the spec's practical maximum: 63 bits of value


class FrameError(ValueError):
    """A peer sent a malformed or oversized frame; the message names the rule broken."""


def encode_uvarint(value: int) -> bytes:
    """The unsigned-varint encoding of `value` (7 bits per byte, least significant group first)."""
    if not 0 <= value < 1 << (7 * MAX_VARINT_BYTES):
        raise ValueError(f"varint value {value} outside 0..2^63-1")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def encode_frame(payload: bytes) -> bytes:
    """`payload` with its length prefix, ready to write to a stream."""
    return encode_uvarint(len(payload)) + payload


def parse_frame_header(buf: bytes | bytearray, max_size: int) -> tuple[int, int] | None:
    """The frame length and the size of its prefix at the start of `buf`, or None if the prefix is incomplete.

    Raises FrameError for a prefix longer than 9 bytes, a non-minimal encoding (the spec forbids them, so
    that one length has one encoding), or a length above `max_size`.
    """
    value = 0
    for i, byte in enumerate(buf[:MAX_VARINT_BYTES]):
        value |= (byte & 0x7F) << (7 * i)
        if value > max_size:  # later groups only add, so an oversized frame is known early
            raise FrameError(f"frame length {value} exceeds the limit of {max_size} bytes")
        if byte & 0x80:
            continue
        if byte == 0 and i > 0:
            raise FrameError("frame length prefix: non-minimal varint encoding")
        return value, i + 1
    if len(buf) >= MAX_VARINT_BYTES:
        raise FrameError(f"frame length prefix: varint longer than {MAX_VARINT_BYTES} bytes")
    return None
