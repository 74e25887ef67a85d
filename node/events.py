"""Behaviour events (DESIGN §7): the schema local services report, its strict validation, and the deterministic
CBOR entry each accepted event becomes in the private audit log.

An event is `{agent, ts, category, name, outcome, duration_ms?, high_risk?, attrs?}`:
- `agent`: the did:key of the agent whose behaviour this is; `ts`: when it happened, ms since the Unix epoch, at
  most MAX_AGE_MS old and MAX_SKEW_MS ahead of the node's clock.
- `category`: a digest category (tool, mcp, a2a, auth, resource, other). Other names are accepted and counted as
  `other`: `error` (a failure that is not tied to a tool or a peer; the outcome says how it failed) and any
  unknown lower-case name, so a newer reporter never loses events to an older node. The entry stores the digest
  category only, because that is what the digest commits to.
- `outcome`: ok, error, denied (refused by policy) or timeout; `duration_ms`: a non-negative number, optional;
  `high_risk`: whether the action was high-risk, default false; `attrs`: at most MAX_ATTRS keys, values text,
  integers, finite floats or booleans.

Each audit-log entry holds a salt, SALT_SIZE fresh random bytes: a digest's `evidence_root` is the Merkle root of
its entries' exact bytes, and without a salt whoever knows an agent's event but its outcome hashes the few
candidates and reads the outcome the digest's DP noise hides. With it, an entry is a hiding commitment to its event,
as a CONIKS or Key Transparency leaf commits to its data with a nonce shown only to who may see the data: here the
audit log (mode 0600) and the audit exports an auditor is given. Entries of version 1, written before salts, are
still read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cbor2

from vouching import InvalidDid, public_key_from_did
from vouching.bodies import CATEGORIES, OUTCOMES
from vouching.cbor import CborError, decode

ENTRY_VERSION = 2  # of the entries written; version 1 (before salts) is read too
SALT_SIZE = 16  # bytes, from the OS's CSPRNG: 128 bits that a guesser of an entry's event must guess as well
MAX_NAME = 128
MAX_ATTRS = 16
MAX_ATTR_KEY = 64
MAX_ATTR_TEXT = 256
MAX_INT = 2**53 - 1  # what JSON carries exactly
MAX_AGE_MS = 24 * 3600 * 1000
MAX_SKEW_MS = 5 * 60 * 1000
MAX_BATCH_EVENTS = 1000  # a POST /v1/events batch: at most this many events,
MAX_BATCH_BYTES = 1 << 20  # and this many bytes of JSON (HTTP 413 beyond either),
# and this many JSON arrays and objects, counted before it is parsed: one per 16 bytes, as node.otlp bounds OTLP/JSON's
# (a batch's event is an object, its attrs another, in 100 bytes or more). 1 MiB of empty objects, half a million,
# took 0.26-0.50 s of CPU to parse, and are refused in 4 ms (benchmarks/otlp_attacks.py).
MAX_BATCH_CONTAINERS = MAX_BATCH_BYTES // 16
CATEGORY_ALIASES = {"error": "other"}
_CATEGORY_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_REQUIRED = ("agent", "ts", "category", "name", "outcome")
_KNOWN = frozenset((*_REQUIRED, "duration_ms", "high_risk", "attrs"))
_V1_REQUIRED = frozenset({"v", "at", "agent", "ts", "cat", "name", "out", "hr"})
# entry version -> (required keys, known keys)
_ENTRY_KEYS = {1: (_V1_REQUIRED, _V1_REQUIRED | {"dur", "attrs"}),
               2: (_V1_REQUIRED | {"salt"}, _V1_REQUIRED | {"salt", "dur", "attrs"})}

AttrValue = str | int | float | bool


class InvalidEvent(ValueError):
    """An event that is not kept; the message is "field: rule". `reason` is the event's field that broke the rule,
    which vouchnet_events_rejected_total counts it under (node.ingest.REJECTION_REASONS): the one the message names
    (`attrs` for `attrs.key`) unless given, as for an OTLP span's field that becomes the event's, or an unknown
    field ("unknown_field")."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message.split(":", 1)[0].split(".", 1)[0] if reason is None else reason


class NewerEntry(InvalidEvent):
    """An audit-log entry of a later version than this vouchnet reads (`version`): written by a later vouchnet."""

    def __init__(self, version: int) -> None:
        super().__init__(f"entry.v: version {version}, newer than this vouchnet reads ({ENTRY_VERSION})")
        self.version = version


@dataclass(frozen=True, slots=True)
class Event:
    """One validated behaviour event; `category` is always one of the digest's categories."""

    agent: str
    ts: int
    category: str
    name: str
    outcome: str
    duration_ms: int | float | None = None
    high_risk: bool = False
    attrs: dict[str, AttrValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every Event is valid, however it was made: the audit log only ever holds entries decode_entry reads."""
        check_agent(self.agent)
        _check_ts(self.ts)
        if self.category not in CATEGORIES:
            raise InvalidEvent(f"category: must be one of {', '.join(CATEGORIES)}")
        check_name(self.name)
        check_outcome(self.outcome)
        _check_duration(self.duration_ms)
        if type(self.high_risk) is not bool:
            raise InvalidEvent("high_risk: must be true or false")
        object.__setattr__(self, "attrs", check_attrs(self.attrs))

    def to_json(self) -> dict[str, Any]:
        """The event as the API and the audit export show it."""
        return {
            "agent": self.agent,
            "ts": self.ts,
            "category": self.category,
            "name": self.name,
            "outcome": self.outcome,
            "duration_ms": self.duration_ms,
            "high_risk": self.high_risk,
            "attrs": dict(self.attrs),
        }


def digest_category(value: Any) -> str:
    """The digest category an event's reported category counts under (see the module docstring)."""
    if type(value) is not str or not _CATEGORY_NAME.fullmatch(value):
        raise InvalidEvent("category: must be 1 to 32 characters of a-z 0-9 _ . -, starting with a-z")
    if value in CATEGORIES:
        return value
    return CATEGORY_ALIASES.get(value, "other")


def check_agent(value: Any) -> str:
    """An agent's did:key."""
    try:
        public_key_from_did(value)
    except InvalidDid as error:
        raise InvalidEvent(f"agent: must be an Ed25519 did:key ({error})") from None
    return value


def check_name(value: Any) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_NAME or not value.isprintable():
        raise InvalidEvent(f"name: must be printable text of 1 to {MAX_NAME} characters")
    return value


def check_attrs(value: Any) -> dict[str, AttrValue]:
    """A small flat map of printable keys to text, integers, finite floats or booleans."""
    if type(value) is not dict or len(value) > MAX_ATTRS:
        raise InvalidEvent(f"attrs: must be a map of at most {MAX_ATTRS} entries")
    for key, item in value.items():
        if type(key) is not str or not 0 < len(key) <= MAX_ATTR_KEY or not key.isprintable():
            raise InvalidEvent(f"attrs: keys must be printable text of 1 to {MAX_ATTR_KEY} characters")
        kind = type(item)
        if kind is str:
            if len(item) > MAX_ATTR_TEXT or not item.isprintable():
                raise InvalidEvent(f"attrs.{key}: text must be printable and at most {MAX_ATTR_TEXT} characters")
        elif kind is int:
            if not -MAX_INT <= item <= MAX_INT:
                raise InvalidEvent(f"attrs.{key}: integers must be within ±(2^53 - 1)")
        elif kind is float:
            if not math.isfinite(item):
                raise InvalidEvent(f"attrs.{key}: numbers must be finite")
        elif kind is not bool:
            raise InvalidEvent(f"attrs.{key}: must be text, a number or a boolean")
    return dict(value)


def _check_ts(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_INT:
        raise InvalidEvent("ts: must be an integer of ms since the Unix epoch")
    return value


def check_recent(ts: int, now_ms: int) -> int:
    """A reported time the node accepts: at most MAX_AGE_MS old and MAX_SKEW_MS ahead of `now_ms`."""
    _check_ts(ts)
    if _recent(ts, now_ms):  # (as nearly every event is: no hints built, on the ingest path)
        return ts
    return check_time("ts", ts, "ms", ts, now_ms, (("seconds", ts * 1000), ("microseconds", ts // 1000)))


def _recent(ts: int, now_ms: int) -> bool:
    """Whether the node takes `ts` (ms since the Unix epoch) as a reported time at `now_ms`: at most MAX_AGE_MS old
    and MAX_SKEW_MS ahead."""
    return now_ms - MAX_AGE_MS <= ts <= now_ms + MAX_SKEW_MS


def check_time(field: str, value: int, unit: str, ts: int, now_ms: int, readings: Iterable[tuple[str, int]]) -> int:
    """`ts` (ms since the Unix epoch), read from `field`'s `value` counted in `unit`, if the node accepts it: at most
    MAX_AGE_MS old and MAX_SKEW_MS ahead of `now_ms`; else InvalidEvent naming `field` (its reason the event's ts),
    and the first of the other `readings` (a unit, and `value` counted in it as ms) under which the node would take
    it, if any: `date +%s`, `time.time()` or a time in µs sent as ms."""
    if _recent(ts, now_ms):
        return ts
    hint = next((f" ({field} counts {unit} since the Unix epoch: {value} is a time the node would take in {other})"
                 for other, as_ms in readings if _recent(as_ms, now_ms)), "")
    if ts < now_ms - MAX_AGE_MS:
        raise InvalidEvent(f"{field}: more than {MAX_AGE_MS // 3_600_000} h in the past{hint}", reason="ts")
    hint = hint or " (check the reporter's clock)"
    raise InvalidEvent(f"{field}: more than {MAX_SKEW_MS // 60_000} min in the future{hint}", reason="ts")


def _check_duration(value: Any) -> int | float | None:
    if value is None:
        return None
    # Comparisons, not math.isfinite, which raises OverflowError on an integer past the float range (NaN and
    # infinities fail the bound too).
    if type(value) not in (int, float) or not 0 <= value <= MAX_INT:
        raise InvalidEvent("duration_ms: must be a non-negative number of ms")
    return value


def check_outcome(value: Any) -> str:
    if type(value) is not str or value not in OUTCOMES:
        raise InvalidEvent(f"outcome: must be one of {', '.join(OUTCOMES)}")
    return value


def parse_event(value: Any, *, now_ms: int) -> Event:
    """Validate one reported event (decoded JSON) against the schema; raises InvalidEvent naming the field."""
    if type(value) is not dict:
        raise InvalidEvent("event: must be a JSON object")
    for name in _REQUIRED:
        if name not in value:
            raise InvalidEvent(f"{name}: required field is missing")
    if len(value) > len(_REQUIRED) and not value.keys() <= _KNOWN:
        unknown = sorted(value.keys() - _KNOWN)[0]
        raise InvalidEvent(f"{unknown[:64]}: unknown field (known: {', '.join(sorted(_KNOWN))})",
                           reason="unknown_field")
    agent = check_agent(value["agent"])
    attrs = value.get("attrs")
    return Event(
        agent=agent,
        ts=check_recent(value["ts"], now_ms),
        category=digest_category(value["category"]),
        name=value["name"],
        outcome=value["outcome"],
        duration_ms=value.get("duration_ms"),
        high_risk=value.get("high_risk", False),
        attrs={} if attrs is None else attrs,
    )


def encode_entry(event: Event, at: int, salt: bytes) -> bytes:
    """The audit-log entry of an event accepted at `at` (ms), with `salt` (SALT_SIZE fresh random bytes, which
    AuditLog.append draws): deterministic CBOR (RFC 8949 §4.2.1) of {v: 2, at, agent, ts, cat, name, out, hr, salt,
    dur?, attrs?}; dur is absent when unknown, attrs when empty, and attrs is an array of [key, value] pairs sorted by
    key (the CBOR profile only takes short ASCII map keys)."""
    if type(salt) is not bytes or len(salt) != SALT_SIZE:
        raise ValueError(f"salt: must be {SALT_SIZE} bytes")
    return _encode(event, at, salt)


def _encode(event: Event, at: int, salt: bytes | None) -> bytes:
    """An entry of version 2 with `salt`; of version 1 (before salts) without."""
    entry: dict[str, Any] = {
        "v": 1 if salt is None else 2,
        "at": at,
        "agent": event.agent,
        "ts": event.ts,
        "cat": event.category,
        "name": event.name,
        "out": event.outcome,
        "hr": event.high_risk,
    }
    if salt is not None:
        entry["salt"] = salt
    if event.duration_ms is not None:
        entry["dur"] = event.duration_ms
    if event.attrs:
        entry["attrs"] = [[key, event.attrs[key]] for key in sorted(event.attrs)]
    # vouching.cbor.encode is cbor2's canonical encoding after a walk proving the value is inside the profile. An
    # Event's fields were checked on the way in (printable text, 53-bit integers, finite floats), so the walk is
    # skipped on this hot path; decode_entry, through vouching.cbor.decode, checks the bytes are in the profile.
    return cbor2.dumps(entry, canonical=True)


def _attr_pairs(value: Any) -> dict[str, Any]:
    if type(value) is not list or not all(type(p) is list and len(p) == 2 and type(p[0]) is str for p in value):
        raise InvalidEvent("entry.attrs: must be an array of [key, value] pairs")
    return {key: item for key, item in value}


def decode_entry(data: bytes) -> tuple[int, Event]:
    """(at, event) of an audit-log entry written by encode_entry (or by a version before salts); raises InvalidEvent
    for anything else, NewerEntry for an entry of a later version."""
    at, event, _ = decode_salted_entry(data)
    return at, event


def decode_salted_entry(data: bytes) -> tuple[int, Event, bytes | None]:
    """(at, event, salt) of an audit-log entry, as decode_entry; salt is None in an entry of version 1."""
    try:
        entry = decode(data)
    except CborError as error:
        raise InvalidEvent(f"entry: not deterministic CBOR ({error})") from None
    if type(entry) is not dict:
        raise InvalidEvent("entry: must be a map")
    version = entry.get("v")
    if type(version) is int and version > ENTRY_VERSION:
        raise NewerEntry(version)
    if type(version) is not int or version not in _ENTRY_KEYS:
        raise InvalidEvent(f"entry.v: must be one of {', '.join(map(str, _ENTRY_KEYS))}")
    required, known = _ENTRY_KEYS[version]
    if not required <= entry.keys() <= known:
        raise InvalidEvent(f"entry: version {version} must be a map of {', '.join(sorted(known))}")
    salt = entry.get("salt")
    if version >= 2 and (type(salt) is not bytes or len(salt) != SALT_SIZE):
        raise InvalidEvent(f"entry.salt: must be {SALT_SIZE} bytes")
    at = entry["at"]
    if type(at) is not int or not 0 <= at <= MAX_INT:
        raise InvalidEvent("entry.at: must be an integer of ms since the Unix epoch")
    event = Event(entry["agent"], entry["ts"], entry["cat"], entry["name"], entry["out"], entry.get("dur"),
                  entry["hr"], _attr_pairs(entry.get("attrs", [])))
    if _encode(event, at, salt) != data:
        raise InvalidEvent("entry: not in the form encode_entry writes")
    return at, event, salt
