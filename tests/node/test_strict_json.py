"""node.strict_json: a request body is read as I-JSON (RFC 7493 §2), or refused saying why."""

from __future__ import annotations

import gc
import json
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from node.strict_json import MAX_DEPTH, containers, loads_strict, nested_deeper_than

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
values = st.recursive(_scalars,
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                      max_leaves=20)


@given(value=values, bom=st.booleans())
def test_any_json_value_sent_as_utf8_reads_as_python_reads_it(value, bom):
    text = json.dumps(value, ensure_ascii=False)
    assert loads_strict(("\ufeff" if bom else "").encode() + text.encode()) == json.loads(text)


@given(members=st.dictionaries(st.text(), values, min_size=1, max_size=4), data=st.data())
def test_an_object_naming_a_member_twice_is_refused_naming_it(members, data):
    name = data.draw(st.sampled_from(sorted(members)))
    repeated = data.draw(values)
    body = json.dumps(members)[:-1] + f", {json.dumps(name)}: {json.dumps(repeated)}}}"
    with pytest.raises(ValueError, match="given twice") as refused:
        loads_strict(json.dumps({"outer": [{}, "x"], "inner": "@"}).replace('"@"', body).encode())
    assert repr(name[:64]) in str(refused.value)


@given(value=values, encoding=st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]))
def test_a_body_in_another_unicode_encoding_is_refused(value, encoding):
    """(Python's json.loads reads each of these as the value.)"""
    with pytest.raises(ValueError):
        loads_strict(json.dumps(value).encode(encoding))


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1.5e309"])
def test_a_number_json_does_not_have_or_a_double_cannot_hold_is_refused(number):
    with pytest.raises(ValueError, match="JSON number"):
        loads_strict(f'{{"weight": [0.5, {number}]}}'.encode())


@pytest.mark.parametrize("digits", [310, 4300, 4301, 100_000])
def test_an_integer_beyond_a_doubles_range_is_refused_naming_its_digits(digits):
    """Python's int refuses a string of over 4,300 digits with its own error, which named no field."""
    with pytest.raises(ValueError, match=f"[(]{digits} digits[)] is beyond a JSON number's range"):
        loads_strict(b'{"weight": [1, -%s]}' % (b"9" * digits))


def test_an_integer_a_double_holds_reads_as_python_reads_it():
    largest = int(sys.float_info.max)
    assert loads_strict(f"[{largest}, {-largest}, 0, -0]".encode()) == [largest, -largest, 0, 0]
    with pytest.raises(ValueError, match="309 digits"):
        loads_strict(f"[{largest + 1}]".encode())


@pytest.mark.parametrize("opening, closing", [(b"[", b"]"), (b'{"a":', b"}")])
def test_arrays_or_objects_nested_too_deep_are_refused_saying_so(opening, closing):
    with pytest.raises(ValueError, match="nested too deep"):
        loads_strict(opening * 100_000 + b"1" + closing * 100_000)


@pytest.mark.parametrize("opening, closing, levels", [(b"[", b"]", 1), (b'{"a":', b"}", 1), (b'[{"a":', b"}]", 2)])
def test_a_body_is_read_to_max_depth_and_refused_past_it_naming_it(opening, closing, levels):
    """Python's parser went as deep as the recursion limit less the reading thread's stack (about 950 levels in an
    API handler): a client could not know which bodies the node would refuse, and had one batch of events refused
    whole for one event's attributes. (`levels`: how deep one `opening` nests.)"""

    def nested(depth: int) -> bytes:
        return opening * (depth // levels) + b"1" + closing * (depth // levels)

    assert loads_strict(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))
    with pytest.raises(ValueError, match=f"nested too deep, more than {MAX_DEPTH} levels"):
        loads_strict(nested(MAX_DEPTH + levels))


def test_brackets_within_strings_are_no_nesting():
    assert loads_strict(json.dumps(["[{" * MAX_DEPTH]).encode()) == ["[{" * MAX_DEPTH]


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max(map(_depth, value), default=0)
    return 0


@given(value=values | st.tuples(values, values), levels=st.integers(0, 8))
def test_nested_deeper_than_is_the_depth_of_arrays_and_objects_past_levels(value, levels):
    assert nested_deeper_than(value, levels) == (_depth(value) > levels)


def test_a_value_that_holds_itself_is_nested_too_deep():
    cycle: list = []
    cycle.append(cycle)
    assert nested_deeper_than(cycle, MAX_DEPTH)


def test_a_value_holding_one_list_twice_at_each_level_is_found_too_deep_without_walking_each_level_whole():
    """(A client's value, not a parsed body's: walked breadth first, its 129th level holds 2^129 lists.)"""
    shared: list = []
    for _ in range(200):
        shared = [shared, shared]
    assert nested_deeper_than(shared, MAX_DEPTH)


def _containers_in(value) -> int:
    if isinstance(value, dict):
        return 1 + sum(map(_containers_in, value.values()))
    if isinstance(value, list):
        return 1 + sum(map(_containers_in, value))
    return 0


# Text mostly of the characters that make strings hard to tell from what is outside them: brackets, quotes and
# backslashes (one at a string's end, before its closing quote, most of all).
_bracketed = st.text(st.sampled_from('{}[]":\\é'), max_size=6) | st.text(max_size=6)
_bracketed_values = st.recursive(
    st.none() | st.integers() | _bracketed,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_bracketed, inner, max_size=4), max_leaves=20)


@example(value=["\\", []], ascii_only=True, indent=None)
@given(value=_bracketed_values, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_containers_counts_a_json_text_s_arrays_and_objects_whatever_its_strings_hold(value, ascii_only, indent):
    """Counted in the text, not parsed (node.otlp bounds them before it parses a request), so brackets, quotes and
    backslashes in strings and names are not counted."""
    body = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode()
    assert containers(body) == _containers_in(value)


def test_checking_a_parsed_body_s_depth_sets_off_no_garbage_collection_per_container():
    """Walked one container at a time, a tuple made for each, 262,144 empty objects (the bound of an OTLP/JSON
    request, 768 KiB of it) set off 374 collections: 0.09-0.30 s of the node's CPU, more the larger its heap, where
    parsing them took 0.05 s (benchmarks/otlp_attacks.py)."""
    value = json.loads(b"[" + b",".join([b"{}"] * (1 << 18)) + b"]")
    collections = []

    def note(phase: str, info: dict) -> None:
        collections.append(phase)

    gc.callbacks.append(note)
    try:
        assert not nested_deeper_than(value, MAX_DEPTH)
    finally:
        gc.callbacks.remove(note)
    assert collections.count("start") <= 2
