"""The event schema: what a reporter may send, how each rule names its field, and the audit-log entry codec."""

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.events import (
    MAX_AGE_MS,
    MAX_ATTRS,
    MAX_SKEW_MS,
    SALT_SIZE,
    Event,
    InvalidEvent,
    NewerEntry,
    decode_entry,
    decode_salted_entry,
    encode_entry,
    parse_event,
)
from node.ingest import REJECTION_REASONS
from vouching.bodies import CATEGORIES, OUTCOMES

from ..factories import new_did

NOW = 1_700_000_000_000
AGENT = new_did()


def event(**changes):
    value = {"agent": AGENT, "ts": NOW - 5, "category": "tool", "name": "search", "outcome": "ok"}
    value.update(changes)
    return {k: v for k, v in value.items() if v is not ...}


def test_a_minimal_event_gets_the_defaults():
    parsed = parse_event(event(), now_ms=NOW)
    assert parsed == Event(AGENT, NOW - 5, "tool", "search", "ok", None, False, {})


def test_every_field_is_kept():
    value = event(duration_ms=12.5, high_risk=True, attrs={"tool": "shell", "exit": 3, "ok": False, "ratio": 0.5})
    parsed = parse_event(value, now_ms=NOW)
    assert parsed.to_json() == {**value, "category": "tool"}


@pytest.mark.parametrize(("reported", "counted"), [
    *((c, c) for c in CATEGORIES), ("error", "other"), ("llm", "other"), ("memory.write", "other"),
])
def test_categories_outside_the_digest_count_as_other(reported, counted):
    assert parse_event(event(category=reported), now_ms=NOW).category == counted


@pytest.mark.parametrize(("changes", "field"), [
    ({"agent": "did:key:zNope"}, "agent"),
    ({"agent": ...}, "agent"),
    ({"ts": 1.5}, "ts"),
    ({"ts": True}, "ts"),
    ({"ts": NOW - MAX_AGE_MS - 1}, "ts"),
    ({"ts": NOW + MAX_SKEW_MS + 1}, "ts"),
    ({"category": "Tool"}, "category"),
    ({"category": ""}, "category"),
    ({"name": ""}, "name"),
    ({"name": "x" * 129}, "name"),
    ({"name": "bad\nname"}, "name"),
    ({"outcome": "fine"}, "outcome"),
    ({"duration_ms": -1}, "duration_ms"),
    ({"duration_ms": "3"}, "duration_ms"),
    ({"duration_ms": 10**400}, "duration_ms"),  # math.isfinite raised OverflowError: the batch was a 500
    ({"high_risk": "yes"}, "high_risk"),
    ({"attrs": []}, "attrs"),
    ({"attrs": {f"k{i}": i for i in range(MAX_ATTRS + 1)}}, "attrs"),
    ({"attrs": {"nested": {"a": 1}}}, "attrs.nested"),
    ({"attrs": {"big": 2**60}}, "attrs.big"),
    ({"attrs": {"text": "x" * 257}}, "attrs.text"),
    ({"colour": "blue"}, "colour"),
])
def test_each_rule_names_its_field(changes, field):
    """...and counts the event under a reason vouchnet_events_rejected_total lists (node.ingest counts the reason
    unchecked: another would be a label no dashboard knows)."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(event(**changes), now_ms=NOW)
    assert str(caught.value).startswith(f"{field}:")
    assert caught.value.reason in REJECTION_REASONS


@pytest.mark.parametrize(("ts", "unit"), [(NOW // 1000, "seconds"), (NOW * 1000 + 7, "microseconds")])
def test_a_time_in_another_unit_than_ms_is_refused_naming_the_unit_it_fits(ts, unit):
    """`date +%s` in a shell script, or a time in µs, is one the node would take counted in another unit:
    the refusal says so, not only that it is a day old or in the future."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(event(ts=ts), now_ms=NOW)
    assert str(caught.value).endswith(f"(ts counts ms since the Unix epoch: {ts} is a time the node would take "
                                      f"in {unit})")


@pytest.mark.parametrize("ts", [NOW - MAX_AGE_MS, NOW + MAX_SKEW_MS])
def test_a_time_at_either_bound_is_taken(ts):
    """At most 24 h old and 5 min ahead, the bounds included (the refusals say "more than")."""
    assert parse_event(event(ts=ts), now_ms=NOW).ts == ts


@pytest.mark.parametrize("ts", [float(NOW), str(NOW), NOW + 0.5, -1, 2**53])
def test_a_time_that_is_not_a_whole_number_of_ms_in_range_is_refused_as_such(ts):
    """A time within the bounds but not an integer (a float, text) is refused for its type, not taken or left to
    raise anything but InvalidEvent; so is an integer outside 0..2^53 - 1."""
    with pytest.raises(InvalidEvent, match="^ts: must be an integer of ms since the Unix epoch$"):
        parse_event(event(ts=ts), now_ms=NOW)


@pytest.mark.parametrize("ts", [NOW - MAX_AGE_MS - 1, NOW + MAX_SKEW_MS + 1])
def test_a_time_no_unit_fits_is_refused_without_a_unit_hint(ts):
    with pytest.raises(InvalidEvent) as caught:
        parse_event(event(ts=ts), now_ms=NOW)
    assert "counts ms" not in str(caught.value)


def test_an_event_must_be_an_object():
    with pytest.raises(InvalidEvent, match="^event:"):
        parse_event(["not", "an", "event"], now_ms=NOW)


attr_values = st.one_of(
    st.text(max_size=20).filter(str.isprintable), st.integers(-(2**53) + 1, 2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
)
events = st.builds(
    Event,
    agent=st.just(AGENT),
    ts=st.integers(0, 2**53 - 1),
    category=st.sampled_from(CATEGORIES),
    name=st.text(min_size=1, max_size=128).filter(str.isprintable),
    outcome=st.sampled_from(OUTCOMES),
    duration_ms=st.one_of(st.none(), st.integers(0, 2**40), st.floats(0, 1e9)),
    high_risk=st.booleans(),
    attrs=st.dictionaries(st.text(min_size=1, max_size=10).filter(str.isprintable), attr_values, max_size=4),
)


salts = st.binary(min_size=SALT_SIZE, max_size=SALT_SIZE)


@given(events, st.integers(0, 2**53 - 1), salts)
def test_entries_decode_to_what_was_encoded(value, at, salt):
    data = encode_entry(value, at, salt)
    assert decode_salted_entry(data) == (at, value, salt)
    assert decode_entry(data) == (at, value)
    assert encode_entry(*reversed(decode_entry(data)), salt) == data


@given(events, salts, st.binary(min_size=1, max_size=3), st.data())
def test_a_damaged_entry_is_refused_or_is_another_valid_entry(value, salt, garbage, data):
    entry = encode_entry(value, NOW, salt)
    cut = data.draw(st.integers(0, len(entry)))
    damaged = entry[:cut] + garbage + entry[cut + 1:]
    try:
        at, decoded, kept = decode_salted_entry(damaged)
    except InvalidEvent:
        return
    assert encode_entry(decoded, at, kept) == damaged


# An entry as vouchnet wrote it before salts (version 1), which the audit logs of that time hold.
UNSALTED = bytes.fromhex(
    "aa6176016261741b0000018bcfe5682a626872f56274731b0000018bcfe568006363617464746f6f6c63647572f94a40636f75746664656e"
    "696564646e616d6566736561726368656167656e7478386469643a6b65793a7a364d6b68615867425a44766f74446b4c353235376661697a"
    "74694769433251744b4c4770626e6e4547746132646f4b65617474727382826465786974038264746f6f6c657368656c6c")
UNSALTED_AGENT = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


def test_an_entry_written_before_salts_is_read():
    event = Event(UNSALTED_AGENT, NOW, "tool", "search", "denied", 12.5, True, {"exit": 3, "tool": "shell"})
    assert decode_salted_entry(UNSALTED) == (NOW + 42, event, None)


@pytest.mark.parametrize(("change", "complaint"), [
    (lambda e: e.update(salt=bytes(SALT_SIZE - 1)), f"entry.salt: must be {SALT_SIZE} bytes"),
    (lambda e: e.update(salt="0" * SALT_SIZE), f"entry.salt: must be {SALT_SIZE} bytes"),
    (lambda e: e.pop("salt"), "entry: version 2 must be a map of"),
    (lambda e: e.update(v=1), "entry: version 1 must be a map of"),  # no salt in an entry from before them
    (lambda e: e.update(v=0), "entry.v: must be one of 1, 2"),
    (lambda e: e.update(v="2"), "entry.v: must be one of 1, 2"),
])
def test_an_entry_with_a_salt_out_of_place_is_refused(change, complaint):
    entry = cbor2.loads(encode_entry(Event(AGENT, NOW, "tool", "n", "ok"), NOW, bytes(SALT_SIZE)))
    change(entry)
    with pytest.raises(InvalidEvent, match=f"^{complaint}"):
        decode_entry(cbor2.dumps(entry, canonical=True))


def test_an_entry_of_a_later_version_says_so():
    entry = cbor2.loads(encode_entry(Event(AGENT, NOW, "tool", "n", "ok"), NOW, bytes(SALT_SIZE)))
    with pytest.raises(NewerEntry, match=r"^entry.v: version 3, newer than this vouchnet reads \(2\)$") as caught:
        decode_entry(cbor2.dumps({**entry, "v": 3}, canonical=True))
    assert caught.value.version == 3


@pytest.mark.parametrize("salt", [bytes(SALT_SIZE - 1), bytes(SALT_SIZE + 1), bytearray(SALT_SIZE), None])
def test_an_entry_is_written_with_a_salt_of_its_size_only(salt):
    """An entry written with another would be one the audit log cannot read back, and the log refused as it opens."""
    with pytest.raises(ValueError, match=f"^salt: must be {SALT_SIZE} bytes$"):
        encode_entry(Event(AGENT, NOW, "tool", "n", "ok"), NOW, salt)


def test_an_event_is_valid_however_it_is_made():
    with pytest.raises(InvalidEvent, match="^attrs.big:"):
        Event(AGENT, NOW, "tool", "n", "ok", attrs={"big": 2**60})
    with pytest.raises(InvalidEvent, match="^category:"):
        Event(AGENT, NOW, "error", "n", "ok")
    with pytest.raises(InvalidEvent, match="^high_risk:"):
        Event(AGENT, NOW, "tool", "n", "ok", high_risk=1)
