"""Base58btc (the Bitcoin alphabet), as used by multibase 'z' and did:key (draft-msporny-base58-03)."""

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {char: value for value, char in enumerate(_ALPHABET)}


def b58encode(data: bytes) -> str:
    """Encode bytes; each leading zero byte becomes a leading '1'."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(_ALPHABET[digit])
    return "1" * zeros + "".join(reversed(digits))


class Base58Error(ValueError):
    """The first character of a text outside the alphabet: `char`, at `position` (from 0) of the text decoded."""

    def __init__(self, char: str, position: int) -> None:
        super().__init__(f"invalid base58 character {char!r} at position {position}")
        self.char = char
        self.position = position


def b58decode(text: str) -> bytes:
    """Decode base58btc text; raises Base58Error naming the first character outside the alphabet."""
    number = 0
    try:
        for char in text:
            number = number * 58 + _INDEX[char]
    except KeyError:
        position = next(i for i, char in enumerate(text) if char not in _INDEX)
        raise Base58Error(text[position], position) from None
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body
