"""The event schema: what a reporter may send, how each rule names its field, and the audit-log entry codec."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.events import (
    MAX_AGE_MS,
    MAX_ATTRS,
    MAX_SKEW_MS,
    Event,
    InvalidEvent,
    decode_entry,
    encode_entry,
    parse_event,
)
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
    with pytest.raises(InvalidEvent) as caught:
        parse_event(event(**changes), now_ms=NOW)
    assert str(caught.value).startswith(f"{field}:")


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


@given(events, st.integers(0, 2**53 - 1))
def test_entries_decode_to_what_was_encoded(value, at):
    data = encode_entry(value, at)
    assert decode_entry(data) == (at, value)
    assert encode_entry(*reversed(decode_entry(data))) == data


@given(events, st.binary(min_size=1, max_size=3), st.data())
def test_a_damaged_entry_is_refused_or_is_another_valid_entry(value, garbage, data):
    entry = encode_entry(value, NOW)
    cut = data.draw(st.integers(0, len(entry)))
    damaged = entry[:cut] + garbage + entry[cut + 1:]
    try:
        at, decoded = decode_entry(damaged)
    except InvalidEvent:
        return
    assert encode_entry(decoded, at) == damaged


def test_an_event_is_valid_however_it_is_made():
    with pytest.raises(InvalidEvent, match="^attrs.big:"):
        Event(AGENT, NOW, "tool", "n", "ok", attrs={"big": 2**60})
    with pytest.raises(InvalidEvent, match="^category:"):
        Event(AGENT, NOW, "error", "n", "ok")
    with pytest.raises(InvalidEvent, match="^high_risk:"):
        Event(AGENT, NOW, "tool", "n", "ok", high_risk=1)
