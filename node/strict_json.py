"""JSON request bodies read as I-JSON (RFC 7493 §2) reads them: UTF-8 only, no member name twice in one object, and
numbers only as JSON has them, none beyond a double's range (RFC 7493 §2.2), integers included.

Python's json module takes UTF-16 and UTF-32 bytes, keeps the last of two values of one member name and reads
`NaN`, `Infinity` and `1e400` (as infinity). A body the node would then read one way and another program (a proxy
that checks it, an audit of what was sent) another is refused, naming what is wrong; a UTF-8 byte order mark is
skipped (RFC 8259 §8.1 lets a parser ignore one). An integer of thousands of digits (Python's int refuses over 4,300)
and arrays or objects nested more than MAX_DEPTH levels deep are refused saying so, as any other body that is not
JSON. Python's parser has no depth of its own but the interpreter's recursion limit, less the stack of the thread
reading: a body the node read or refused by where it was read, and that a client, encoding from a shallower stack,
could not know it would refuse (node.client.telemetry checks its events against MAX_DEPTH as they are recorded).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

# Arrays and objects nested in one another, at most (serde_json's default): far beyond what the node's bodies need (an
# events batch nests 4 deep, an OTLP export about 10), and within what Python's parser reaches from any stack the
# node reads on.
MAX_DEPTH = 128
_TOO_DEEP = f"arrays or objects nested too deep, more than {MAX_DEPTH} levels"
_CONTAINERS = (dict, list, tuple)
_MAX_INTEGER_DIGITS = len(str(int(sys.float_info.max)))  # 309: any integer of more digits is beyond a double


class TooManyContainers(ValueError):
    """A JSON body of more arrays and objects than its reader takes (check_containers; HTTP 413)."""


def loads_strict(body: bytes) -> Any:
    """The JSON value of `body`; ValueError saying why it is not I-JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 (byte {error.start})") from None
    try:
        value = json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_members, parse_constant=_no_constant,
                           parse_float=_finite, parse_int=_integer)
    except RecursionError:  # deeper than the parser goes from this stack, and so than MAX_DEPTH
        raise ValueError(_TOO_DEEP) from None
    # (A text of no more openings than MAX_DEPTH nests no deeper: nothing to walk.)
    if text.count("[") + text.count("{") > MAX_DEPTH and nested_deeper_than(value, MAX_DEPTH):
        raise ValueError(_TOO_DEEP)
    return value


def nested_deeper_than(value: Any, levels: int) -> bool:
    """Whether `value` has arrays (lists or tuples, as json.dumps writes both) and objects (dicts) nested in one
    another more than `levels` deep; a value that holds itself is. Walked without recursion, a level at a time, no
    deeper than `levels` + 1."""
    # A level at a time, in comprehensions, which make no object for each container they pass: walked one at a time,
    # depth first, a tuple made for each, 262,144 empty objects set off some 370 garbage collections and took 0.09-0.30
    # s of CPU (more the larger the process's heap), 0.05 s so. Each level's containers are kept once, by identity: a
    # value holding one list twice at each level has no more at a level than it holds, not 2^n at the n-th.
    level = {id(value): value} if isinstance(value, _CONTAINERS) else {}
    for _ in range(levels):
        if not level:
            break
        level = {id(item): item for container in level.values()
                 for item in (container.values() if isinstance(container, dict) else container)
                 if isinstance(item, _CONTAINERS)}
    return bool(level)


def check_containers(body: bytes, most: int) -> None:
    """Raises TooManyContainers if the JSON text `body` holds more than `most` arrays and objects, counted in its text
    (containers), for a reader to call before it parses it: each one parsed costs some µs of CPU (its check by
    loads_strict, and the garbage collector's passes that many new objects set off), empty ones taking 2 bytes."""
    # Strings may hold brackets: only a body of more brackets than that is counted closer
    if body.count(b"{") + body.count(b"[") > most and containers(body) > most:
        raise TooManyContainers(f"body: at most {most} JSON arrays and objects per request")


def containers(body: bytes) -> int:
    """How many arrays and objects the UTF-8 JSON text `body` holds, counted without parsing it: its '[' and '{'
    outside strings (a body that is not JSON gets a count too, in time linear in its length)."""
    # A backslash is in a string and escapes the next character: with escaped backslashes taken out first (a string
    # reads them left to right) and then escaped quotes, the quotes left open and close strings. UTF-8 encodes no
    # other character with a byte of these ASCII ones.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    return outside.count(b"{") + outside.count(b"[")


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
