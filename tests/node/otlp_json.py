"""OTLP/JSON trace export requests as a hostile exporter might send them: the shape of the real thing, with a
value of the wrong type, or text a careless parser takes for a number, at any level."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

numbers = st.one_of(st.integers(-3, 6), st.integers(), st.floats(),
                    st.sampled_from([2**53, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400]))
# Text that int(), float() or a check such as str.isdigit() reads otherwise than a strict parser would.
lookalikes = st.sampled_from(["", " 1", "-1", "--1", "-", "+1", "1e3", "0x10", "1_000", "²", "-²", "¹²", "١٢",
                              "NaN", "inf", "1" * 21, "0" * 20])
junk = st.recursive(st.none() | st.booleans() | numbers | st.text(max_size=10) | lookalikes,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)


def _or_junk(plausible: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any] = junk) -> st.SearchStrategy[Any]:
    """One time in ten `wrong`: a request of many fields should mostly be read to its end. (st.one_of would not
    weigh it so: it draws among distinct strategies.)"""
    return st.sampled_from([plausible] * 9 + [wrong]).flatmap(lambda strategy: strategy)


def _object(fields: dict[str, st.SearchStrategy[Any]], *optional: str) -> st.SearchStrategy[dict[str, Any]]:
    """An object of these fields (those named `optional` present or not), each plausible or junk."""
    return st.fixed_dictionaries({name: _or_junk(value) for name, value in fields.items() if name not in optional},
                                 optional={name: _or_junk(fields[name]) for name in optional})


def otlp_json(agents: list[str], now_ms: int) -> st.SearchStrategy[dict[str, Any]]:
    """Requests about `agents`, with span times around `now_ms`."""
    time = st.integers(-10**5, 10**5).map(lambda d: str((now_ms + d) * 1_000_000))
    value = st.one_of(
        st.builds(lambda v: {"stringValue": v}, _or_junk(st.sampled_from(["execute_tool", "search", "ok", *agents]))),
        st.builds(lambda v: {"intValue": v}, st.integers(-(2**63), 2**63 - 1).map(str) | lookalikes),
        st.builds(lambda v: {"doubleValue": v}, numbers),
        st.builds(lambda v: {"boolValue": v}, _or_junk(st.booleans())))
    attribute = _object({"key": st.sampled_from(["gen_ai.agent.id", "gen_ai.operation.name", "gen_ai.tool.name",
                                                 "vouchnet.outcome", "vouchnet.high_risk", "error.type"]),
                         "value": value})
    span = _object({"name": st.text(max_size=10), "startTimeUnixNano": time | lookalikes,
                    "endTimeUnixNano": time | lookalikes, "attributes": st.lists(attribute, max_size=4),
                    "traceId": st.binary(min_size=16, max_size=16).map(bytes.hex),
                    "spanId": st.binary(min_size=8, max_size=8).map(bytes.hex),
                    "status": _object({"code": st.integers(0, 2), "message": st.text(max_size=10)}, "code", "message")},
                   "name", "traceId", "spanId", "status")
    scope = _object({"spans": st.lists(span, min_size=1, max_size=2)})
    resource = _object({"resource": _object({"attributes": st.lists(attribute, max_size=2)}),
                        "scopeSpans": st.lists(scope, min_size=1, max_size=1)}, "resource")
    return _object({"resourceSpans": st.lists(resource, min_size=1, max_size=2)})
