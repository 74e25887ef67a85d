"""Bit flipping for the tamper-rejection property tests."""


def flip_bit(data: bytes, bit: int) -> bytes:
    """`data` with one bit inverted; `bit` wraps around the length, so any non-negative integer selects one."""
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)
