"""node.strict_json: a request body is read as I-JSON (RFC 7493 §2), or refused saying why."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.strict_json import loads_strict

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
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
