"""JSON request bodies read as I-JSON (RFC 7493 §2) reads them: UTF-8 only, no member name twice in one object, and
numbers only as JSON has them, none beyond a double's range (RFC 7493 §2.2), integers included.

Python's json module takes UTF-16 and UTF-32 bytes, keeps the last of two values of one member name and reads
`NaN`, `Infinity` and `1e400` (as infinity). A body the node would then read one way and another program (a proxy
that checks it, an audit of what was sent) another is refused, naming what is wrong; a UTF-8 byte order mark is
skipped (RFC 8259 §8.1 lets a parser ignore one). An integer of thousands of digits (Python's int refuses over 4,300)
and arrays or objects nested beyond what the parser goes are refused saying so, as any other body that is not JSON.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

_MAX_INTEGER_DIGITS = len(str(int(sys.float_info.max)))  # 309: any integer of more digits is beyond a double


def loads_strict(body: bytes) -> Any:
    """The JSON value of `body`; ValueError saying why it is not I-JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 (byte {error.start})") from None
    try:
        return json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_members, parse_constant=_no_constant,
                          parse_float=_finite, parse_int=_integer)
    except RecursionError:
        raise ValueError("arrays or objects nested too deep, beyond what the node reads") from None


def not_json(error: ValueError) -> str:
    """The detail of a request body's 400 for `error`, loads_strict's reason (the API's and the ingest readers')."""
    return f"body: not JSON ({str(error)[:160]})"


def _members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) < len(pairs):
        seen: set[str] = set()
        twice = next(name for name, _ in pairs if name in seen or seen.add(name))
        raise ValueError(f"member {twice[:64]!r} given twice in one object; give each once")
    return members


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _integer(text: str) -> int:
    if len(text) < _MAX_INTEGER_DIGITS:  # under 10^308, within a double: the ingest path's every id and time
        return int(text)
    digits = len(text.removeprefix("-"))
    if digits > _MAX_INTEGER_DIGITS or abs(value := int(text)) > sys.float_info.max:
        raise ValueError(f"{text[:32]}... ({digits} digits) is beyond a JSON number's range (a double's)")
    return value


def _finite(text: str) -> float:
    if not math.isfinite(value := float(text)):
        raise ValueError(f"{text[:32]} is beyond a JSON number's range (a double's)")
    return value
