"""OTLP/HTTP trace export requests (protobuf and JSON, opentelemetry-proto's trace service) read as behaviour
events, following the OpenTelemetry GenAI and MCP semantic conventions (development status, as of semconv 1.37+).

A span becomes an event when it describes an agent acting and names that agent by its did:key:
- `gen_ai.operation.name` = `execute_tool`: a tool call, category `tool` (`mcp` if it carries `mcp.method.name`);
  name = `gen_ai.tool.name` (else the span name).
- `gen_ai.operation.name` = `invoke_agent`, or an `a2a.method` / `a2a.method.name` attribute: an A2A delegation,
  category `a2a`; name = the A2A method, else `gen_ai.agent.name`, else the span name.
- `mcp.method.name` of an MCP action (MCP_ACTIONS: tools/call, resources/read, prompts/get, ...): category `mcp`;
  name = the method and its target (`gen_ai.tool.name`, `gen_ai.prompt.name`). Session chatter (initialize,
  */list, notifications, ping) is not behaviour and is ignored.
- The agent is `gen_ai.agent.id` on the span, else on the resource, the first of them that is a `did:key:` (a
  framework may set its own agent id on the span). An action span of neither (a framework's own agent id only, or
  none), or whose `did:key:` is malformed, or whose times are impossible, is rejected: counted in the response's
  partial_success (the exporter was pointed at this node to report agents' actions; one that sets the wrong
  attribute should hear so, not a full success).
- A span of a field not as OTLP has it (MalformedSpan: a traceId or spanId not hex bytes (an odd number of digits,
  say) or longer than the spec's 16 and 8 bytes, a time not an unsigned 64-bit integer, a name, status or attribute
  of the wrong type, on the span or its resource) is rejected too, by itself. Only a request that cannot be read at
  all is refused (OtlpError, HTTP 400, which an exporter does not retry): not protobuf or JSON, or not resourceSpans
  of scopeSpans of spans.
- Outcome: `vouchnet.outcome` if set (ok, error, denied, timeout); else, if the span has `error.type` or status
  ERROR, `timeout` when the error type or status message says timeout/deadline, `denied` when it says
  denied/forbidden/permission/unauthori[sz]ed/policy (or is 401/403), else `error`; otherwise `ok`.
- `vouchnet.high_risk` (bool) marks a high-risk action; `vouchnet.category` overrides the category.
- ts = span start (ms); duration_ms = end - start. A few attributes are kept in the event's attrs (SPAN_ATTRS,
  and the trace and span ids in hex), text cut to the attrs limit.
Every other span is not an agent's action and is counted as ignored, by IGNORED_REASONS: `not_an_action`, a GenAI
or MCP span of another kind (a model call, embeddings, MCP session chatter), and `not_genai`, a span of no `gen_ai.*`
or `mcp.*` attribute (an HTTP call, a database query). These are not rejected: an exporter sends every span of its
service, and a partial_success on nearly every request would bury the ones that matter.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from vouching.bodies import CATEGORIES, OUTCOMES

from .events import MAX_ATTR_TEXT, MAX_INT, MAX_NAME, Event, InvalidEvent, check_agent, check_time
from .strict_json import TooManyContainers, check_containers, loads_strict, not_json

STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.StatusCode.STATUS_CODE_ERROR
MCP_ACTIONS = frozenset({"tools/call", "resources/read", "resources/subscribe", "prompts/get",
                         "sampling/createMessage", "elicitation/create", "completion/complete"})
SPAN_ATTRS = ("service.name", "error.type", "gen_ai.tool.call.id", "gen_ai.tool.type", "gen_ai.agent.name",
              "mcp.method.name", "mcp.session.id", "mcp.resource.uri", "a2a.task.id", "rpc.response.status_code")
_TIMEOUT_WORDS = ("timeout", "timed out", "deadline")
_DENIED_WORDS = ("denied", "forbidden", "permission", "unauthorized", "unauthorised", "policy", "not_allowed")
_DENIED_CODES = frozenset({"401", "403"})
_MAX_ERROR_MESSAGE = 1024
# Spans in one request. The stock SDK exports at most 512 per request, a Collector's batches 8192 by default; a
# real span is some 200-500 bytes, so a request within the body limit holds about this many. An empty span is
# 2 bytes (and compresses to nothing): without this bound, 4 MiB of them were two million Span objects. It bounds
# the resourceSpans and the scopeSpans too (each one holding a span, there are no more of them than spans): 4 MiB of
# empty ones, two million, took 2.6 s of the node's CPU to go through, holding the GIL the trio thread needs.
MAX_SPANS = 20_000
# JSON arrays and objects in an OTLP/JSON request, at most: one per 16 bytes of the body limit. An attribute this
# module reads, {"key":"k","value":{"intValue":1}}, is two objects in 35 bytes, a span more (objects in array and map
# values carry nothing it keeps). Empty ones take 2 bytes: 4 MiB of them, two million, took 1.4-2.2 s of CPU to parse
# before any bound applied, holding the GIL the trio thread needs (node.strict_json's check of each object and of
# their depth, and the garbage collector's passes that so many new objects set off, growing faster than their
# number: 0.17 s for this many). They are counted in the text, in a few ms, before it is parsed.
MAX_JSON_CONTAINERS = 1 << 18
# Attributes in one request, of its spans and resources, at most: one per 32 bytes of the body limit. A real one is
# some 30-60 bytes in protobuf (`gen_ai.operation.name` = `execute_tool` is 39), two objects in 35 bytes or more in
# OTLP/JSON (MAX_JSON_CONTAINERS bounds them there to this many); the stock SDK keeps at most 128 a span, 65,536 in
# its 512 spans. An empty one is 2 bytes of protobuf: 4 MiB of them, two million, took 0.9 s of the node's CPU to read
# after the protobuf parser's 0.08 s. Each list's length is counted before it is read.
MAX_ATTRIBUTES = 1 << 17
IGNORED_REASONS = ("not_an_action", "not_genai")  # vouchnet_spans_ignored_total's reasons (module docstring)
MALFORMED = "span"  # vouchnet_events_rejected_total's reason for a span not as OTLP has it (MalformedSpan)
TRACE_ID_BYTES, SPAN_ID_BYTES = 16, 8  # the spec's lengths; a span of a longer id is malformed
_GENAI_PREFIXES = ("gen_ai.", "mcp.")

Scalar = str | bool | int | float
# OTLP/JSON's 64-bit integers as decimal text; ASCII digits only (str.isdigit is true of "²", which int() refuses).
_UINT = re.compile(r"[0-9]{1,20}")
_INT = re.compile(r"-?[0-9]{1,19}")


class OtlpError(ValueError):
    """A request body that is not an OTLP trace export request (HTTP 400)."""


class TooManySpans(OtlpError):
    """A request of more than MAX_SPANS spans, resourceSpans or scopeSpans, MAX_ATTRIBUTES attributes, or
    MAX_JSON_CONTAINERS JSON arrays and objects (HTTP 413)."""


class _Malformed(ValueError):
    """A field of an OTLP/JSON request not of the type or form OTLP gives it; the message is "field: rule"."""


def _check_count(count: int, what: str = "spans") -> None:
    """Raises TooManySpans when a request's spans (or resourceSpans, or scopeSpans: `what`), counted before they are
    read, are over MAX_SPANS."""
    if count > MAX_SPANS:
        raise TooManySpans(f"body: at most {MAX_SPANS} {what} per request")


class _AttributeCount:
    """The attributes of a request's spans and resources, counted as each list is about to be read: TooManySpans
    past MAX_ATTRIBUTES, before the list that takes the count past it is read."""

    def __init__(self) -> None:
        self.total = 0

    def add(self, count: int) -> None:
        self.total += count
        if self.total > MAX_ATTRIBUTES:
            raise TooManySpans(f"body: at most {MAX_ATTRIBUTES} attributes per request, of its spans and resources")


@dataclass(frozen=True, slots=True)
class Span:
    """What this module reads of an OTLP span; `resource` holds its resource's attributes."""

    name: str
    start_ns: int
    end_ns: int
    attrs: dict[str, Scalar]
    resource: Mapping[str, Scalar]
    status_code: int = 0
    status_message: str = ""
    trace_id: str = ""
    span_id: str = ""


@dataclass(frozen=True, slots=True)
class MalformedSpan:
    """A span of a field not as OTLP has it (a traceId not hex, a time not an unsigned 64-bit integer, an attribute
    of the wrong type, on the span or its resource): rejected alone, the rest of its request read, as OTLP/HTTP's
    partial success lets a server. `error` names the field (reason MALFORMED); `name` is "" if it is not text."""

    name: str
    error: InvalidEvent


@dataclass(frozen=True, slots=True)
class RejectedSpan:
    """A span that broke a rule: what the response says of it, the rule alone (InvalidEvent's message, naming no
    span), and the event field it broke (InvalidEvent.reason)."""

    detail: str
    rule: str
    reason: str


@dataclass
class SpanBatch:
    """A request's spans sorted out: the events, the rejected spans, and how many were ignored, by IGNORED_REASONS."""

    events: list[Event] = field(default_factory=list)
    rejected: list[RejectedSpan] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    spans: list[tuple[int, str]] = field(default_factory=list)  # each event's span: its index in the request, name

    def reject_orgs(self, org_not_agent: Callable[[str], str | None]) -> None:
        """Reject the spans whose gen_ai.agent.id is an org's did:key, not an agent's (`org_not_agent` says why it
        takes a did for an org, node.trust.TrustService.org_not_agent), as POST /v1/events rejects such events."""
        why = {agent: org_not_agent(agent) for agent in {event.agent for event in self.events}}
        if not any(why.values()):
            return
        kept = [(event, span) for event, span in zip(self.events, self.spans) if why[event.agent] is None]
        for event, (index, name) in zip(self.events, self.spans):
            if why[event.agent] is not None:  # the rule names no did: the log says it (node.span_rejection_log)
                error = InvalidEvent(f"gen_ai.agent.id: an org's did:key ({why[event.agent]}), not an agent's",
                                     reason="agent")
                self.rejected.append(_rejected(index, name, error))
        self.events, self.spans = [event for event, _ in kept], [span for _, span in kept]


# --- decoding -------------------------------------------------------------------------------------------


def _proto_value(value: common_pb2.AnyValue) -> Scalar | None:
    kind = value.WhichOneof("value")
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(value, kind)
    return None  # arrays, maps and bytes carry nothing an event keeps


def _proto_attrs(attributes: Any, count: _AttributeCount) -> dict[str, Scalar]:
    count.add(len(attributes))
    attrs = {}
    for kv in attributes:
        value = _proto_value(kv.value)
        if value is not None:
            attrs[kv.key] = value
    return attrs


def _too_long(field: str, size: int) -> str:
    return f"{field}: more than {size} bytes ({2 * size} hex digits), the spec's length"


def _proto_span(s: Any, resource: Mapping[str, Scalar], count: _AttributeCount) -> Span | MalformedSpan:
    for field, value, size in (("traceId", s.trace_id, TRACE_ID_BYTES), ("spanId", s.span_id, SPAN_ID_BYTES)):
        if len(value) > size:
            return MalformedSpan(s.name, InvalidEvent(_too_long(field, size), reason=MALFORMED))
    return Span(s.name, s.start_time_unix_nano, s.end_time_unix_nano, _proto_attrs(s.attributes, count),
                resource, s.status.code, s.status.message, s.trace_id.hex(), s.span_id.hex())


def decode_protobuf(body: bytes) -> list[Span | MalformedSpan]:
    """The spans of an `application/x-protobuf` ExportTraceServiceRequest; raises OtlpError, TooManySpans for more
    than MAX_SPANS spans (or resourceSpans, or scopeSpans) or MAX_ATTRIBUTES attributes, before they are read."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as error:
        raise OtlpError(f"body: not a protobuf ExportTraceServiceRequest ({error})") from None
    _check_count(len(request.resource_spans), "resourceSpans")
    spans: list[Span | MalformedSpan] = []
    scopes, count = 0, _AttributeCount()
    for resource_spans in request.resource_spans:
        scopes += len(resource_spans.scope_spans)
        _check_count(scopes, "scopeSpans")
        resource = _proto_attrs(resource_spans.resource.attributes, count)
        for scope_spans in resource_spans.scope_spans:
            _check_count(len(spans) + len(scope_spans.spans))
            spans.extend(_proto_span(s, resource, count) for s in scope_spans.spans)
    return spans


def _json_field(parent: Mapping[str, Any], key: str, default: Any) -> Any:
    """A field's value, `default` if it is absent or null: ProtoJSON, which OTLP/JSON follows, reads a null as the
    field's default value, as an exporter that writes its unset fields as null means it."""
    value = parent.get(key)
    return default if value is None else value


def _json_list(parent: Mapping[str, Any], key: str, path: str) -> list[Any]:
    """The list `parent[key]` (an empty one if absent or null); `path` names the field in the _Malformed raised."""
    value = _json_field(parent, key, [])
    if type(value) is not list:
        raise _Malformed(f"{path}: must be a list")
    return value


def _json_object(value: Any, path: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _Malformed(f"{path}: must be an object")
    return value


def _json_uint64(value: Any, path: str) -> int:
    """OTLP/JSON writes 64-bit integers as decimal strings or numbers."""
    if type(value) is str and _UINT.fullmatch(value):
        value = int(value)
    if type(value) is not int or not 0 <= value < 2**64:
        raise _Malformed(f"{path}: must be an unsigned 64-bit integer")
    return value


def _json_value(value: Any, path: str) -> Scalar | None:
    value = _json_object(value, path)
    if "stringValue" in value and type(value["stringValue"]) is str:
        return value["stringValue"]
    if "boolValue" in value and type(value["boolValue"]) is bool:
        return value["boolValue"]
    if (raw := value.get("intValue")) is not None:
        if type(raw) is str and _INT.fullmatch(raw):
            raw = int(raw)
        if type(raw) is int and -(2**63) <= raw < 2**63:
            return raw
        raise _Malformed(f"{path}.intValue: must be a 64-bit integer")
    if "doubleValue" in value and type(value["doubleValue"]) in (int, float):
        return float(value["doubleValue"])  # loads_strict took no integer beyond a double's range
    return None


def _json_attrs(items: list[Any], path: str, count: _AttributeCount) -> dict[str, Scalar]:
    count.add(len(items))
    attrs = {}
    for i, item in enumerate(items):
        item = _json_object(item, f"{path}[{i}]")
        key = _json_field(item, "key", "")
        if type(key) is not str:
            raise _Malformed(f"{path}[{i}].key: must be a string")
        value = _json_value(_json_field(item, "value", {}), f"{path}[{i}].value")
        if value is not None:
            attrs[key] = value
    return attrs


def _json_id(value: Any, field: str, size: int) -> str:
    """An id as OTLP/JSON writes its bytes, in hex (lower-cased here), two digits a byte, "" if absent; at most `size`
    bytes."""
    if value in (None, ""):
        return ""
    if type(value) is not str:
        raise _Malformed(f"{field}: must be hex digits")
    if len(value) > 2 * size:  # before its digits are checked one by one: a 4 MiB id is refused at once
        raise _Malformed(_too_long(field, size))
    if any(c not in "0123456789abcdefABCDEF" for c in value):
        raise _Malformed(f"{field}: must be hex digits")
    if len(value) % 2:
        raise _Malformed(f"{field}: an odd number of hex digits; bytes are two each")
    return value.lower()


def decode_json(body: bytes) -> list[Span | MalformedSpan]:
    """The spans of an `application/json` ExportTraceServiceRequest (OTLP/JSON: hex ids, camelCase keys; a field
    absent or null is its default). Raises OtlpError if the body is not JSON, or not an object of resourceSpans,
    scopeSpans and spans (lists of objects): nothing of it can be read. A span's own field (or its resource's) of
    the wrong type or form makes a MalformedSpan of it alone. Raises TooManySpans for more than MAX_SPANS spans (or
    resourceSpans, or scopeSpans), MAX_ATTRIBUTES attributes, or MAX_JSON_CONTAINERS arrays and objects, before they
    are read."""
    try:
        check_containers(body, MAX_JSON_CONTAINERS)
    except TooManyContainers as error:
        raise TooManySpans(str(error)) from None
    try:
        document = loads_strict(body)
    except ValueError as error:
        raise OtlpError(not_json(error)) from None
    try:
        return _json_spans(_json_object(document, "body"))
    except _Malformed as error:  # a span's own fields' are caught by _json_span: these are of the containers
        raise OtlpError(str(error)) from None


def _json_spans(document: dict[str, Any]) -> list[Span | MalformedSpan]:
    resources = _json_list(document, "resourceSpans", "body.resourceSpans")
    _check_count(len(resources), "resourceSpans")
    spans: list[Span | MalformedSpan] = []
    scopes, count = 0, _AttributeCount()
    for r, resource_spans in enumerate(resources):
        where = f"body.resourceSpans[{r}]"
        resource_spans = _json_object(resource_spans, where)
        scope_list = _json_list(resource_spans, "scopeSpans", f"{where}.scopeSpans")
        scopes += len(scope_list)
        _check_count(scopes, "scopeSpans")
        resource = _json_resource(resource_spans, count)
        for s, scope_spans in enumerate(scope_list):
            scope_where = f"{where}.scopeSpans[{s}]"
            scope = _json_list(_json_object(scope_spans, scope_where), "spans", f"{scope_where}.spans")
            _check_count(len(spans) + len(scope))
            spans.extend(_json_span(_json_object(span, f"{scope_where}.spans[{i}]"), resource, count)
                         for i, span in enumerate(scope))
    return spans


def _json_resource(resource_spans: dict[str, Any], count: _AttributeCount) -> Mapping[str, Scalar] | InvalidEvent:
    """A resourceSpans' resource attributes, or the rejection of each of its spans if they cannot be read: they are
    its spans' too, as their own attributes are."""
    try:
        resource = _json_object(_json_field(resource_spans, "resource", {}), "resource")
        return _json_attrs(_json_list(resource, "attributes", "resource.attributes"), "resource.attributes",
                           count)
    except _Malformed as error:
        return InvalidEvent(str(error), reason=MALFORMED)


def _json_span(span: dict[str, Any], resource: Mapping[str, Scalar] | InvalidEvent,
               count: _AttributeCount) -> Span | MalformedSpan:
    name = _json_field(span, "name", "")
    try:
        if type(name) is not str:
            raise _Malformed("name: must be a string")
        if isinstance(resource, InvalidEvent):
            return MalformedSpan(name, resource)
        status = _json_object(_json_field(span, "status", {}), "status")
        code = _json_field(status, "code", 0)
        if type(code) is not int:
            raise _Malformed("status.code: must be an integer")
        message = _json_field(status, "message", "")
        if type(message) is not str:
            raise _Malformed("status.message: must be a string")
        return Span(
            name,
            _json_uint64(_json_field(span, "startTimeUnixNano", 0), "startTimeUnixNano"),
            _json_uint64(_json_field(span, "endTimeUnixNano", 0), "endTimeUnixNano"),
            _json_attrs(_json_list(span, "attributes", "attributes"), "attributes", count),
            resource,
            code,
            message,
            _json_id(span.get("traceId"), "traceId", TRACE_ID_BYTES),
            _json_id(span.get("spanId"), "spanId", SPAN_ID_BYTES),
        )
    except _Malformed as error:
        return MalformedSpan(name if type(name) is str else "", InvalidEvent(str(error), reason=MALFORMED))


# --- spans to events ------------------------------------------------------------------------------------


def _text(value: Scalar | None) -> str | None:
    return value if type(value) is str and value else None


def _classify(span: Span) -> tuple[str, str] | None:
    """(category, name) of a span describing an agent's action, None for any other span."""
    attrs = span.attrs
    operation = attrs.get("gen_ai.operation.name")
    mcp_method = _text(attrs.get("mcp.method.name"))
    a2a_method = _text(attrs.get("a2a.method")) or _text(attrs.get("a2a.method.name"))
    if operation == "execute_tool":
        return ("mcp" if mcp_method else "tool"), _text(attrs.get("gen_ai.tool.name")) or span.name
    if operation == "invoke_agent" or a2a_method:
        return "a2a", a2a_method or _text(attrs.get("gen_ai.agent.name")) or span.name
    if mcp_method in MCP_ACTIONS:
        target = _text(attrs.get("gen_ai.tool.name")) or _text(attrs.get("gen_ai.prompt.name"))
        return "mcp", f"{mcp_method} {target}" if target else mcp_method
    return None


def _outcome(span: Span) -> str:
    explicit = span.attrs.get("vouchnet.outcome")
    if explicit is not None:
        if explicit not in OUTCOMES:
            raise InvalidEvent(f"outcome: vouchnet.outcome must be one of {', '.join(OUTCOMES)}")
        return explicit
    error_type = span.attrs.get("error.type")
    if error_type is None and span.status_code != STATUS_ERROR:
        return "ok"
    said = f"{error_type or ''} {span.status_message}".lower()
    if any(word in said for word in _TIMEOUT_WORDS):
        return "timeout"
    if str(error_type) in _DENIED_CODES or any(word in said for word in _DENIED_WORDS):
        return "denied"
    return "error"


def _kept_attrs(span: Span) -> dict[str, Scalar]:
    attrs: dict[str, Scalar] = {}
    for key in SPAN_ATTRS:
        value = span.attrs.get(key, span.resource.get(key))
        if type(value) is str:
            value = value[:MAX_ATTR_TEXT]
            if not value.isprintable():
                continue
        elif (type(value) is float and not math.isfinite(value)) or (type(value) is int and abs(value) > MAX_INT):
            continue
        if value is not None:
            attrs[key] = value
    if span.trace_id:
        attrs["trace_id"] = span.trace_id
    if span.span_id:
        attrs["span_id"] = span.span_id
    return attrs


def span_event(span: Span, *, now_ms: int) -> Event | None:
    """The event a span reports, None if it is not an agent's action; raises InvalidEvent."""
    classified = _classify(span)
    if classified is None:
        return None
    agent = _agent(span)
    category, name = classified
    override = span.attrs.get("vouchnet.category")
    if override is not None:
        if override not in CATEGORIES:
            raise InvalidEvent(f"category: vouchnet.category must be one of {', '.join(CATEGORIES)}")
        category = override
    if span.end_ns < span.start_ns:
        raise InvalidEvent("endTimeUnixNano: the span ends before it starts", reason="duration_ms")
    return Event(
        agent=agent,
        ts=_start_ms(span, now_ms),
        category=category,
        name=name[:MAX_NAME],
        outcome=_outcome(span),
        duration_ms=(span.end_ns - span.start_ns) / 1_000_000,
        high_risk=span.attrs.get("vouchnet.high_risk", False),
        attrs=_kept_attrs(span),
    )


def _agent(span: Span) -> str:
    """The span's `gen_ai.agent.id` if it is a did:key, else its resource's if that is: a framework sets its own
    agent id on its spans (OpenAI's `asst_...`), where the operator may name the vouchnet agent on the resource.
    Raises InvalidEvent (reason `agent`) if neither is, or it is malformed; the message holds no attribute's value."""
    for attrs in (span.attrs, span.resource):
        agent = attrs.get("gen_ai.agent.id")
        if type(agent) is str and agent.startswith("did:key:"):
            try:
                return check_agent(agent)
            except InvalidEvent as error:  # named by the attribute the exporter sent, not the event's field
                raise InvalidEvent(f"gen_ai.agent.id{str(error).removeprefix('agent')}", reason="agent") from None
    if "gen_ai.agent.id" in span.attrs or "gen_ai.agent.id" in span.resource:
        raise InvalidEvent("gen_ai.agent.id: must be the agent's did:key (on the span or its resource), not a "
                           "framework's own agent id", reason="agent")
    raise InvalidEvent("gen_ai.agent.id: missing, on the span and its resource; set it to the agent's did:key",
                       reason="agent")


def _ignored_reason(span: Span) -> str:
    """Why a span that is not an agent's action is ignored (IGNORED_REASONS)."""
    if any(key.startswith(_GENAI_PREFIXES) for key in span.attrs):
        return "not_an_action"
    return "not_genai"


def _start_ms(span: Span, now_ms: int) -> int:
    """The span's start as an event's ts, ms since the Unix epoch, if the node takes it (node.events.check_time);
    else InvalidEvent naming the span's field, startTimeUnixNano (OTLP/JSON's name)."""
    start = span.start_ns
    if start == 0:
        raise InvalidEvent("startTimeUnixNano: the span has no start time", reason="ts")
    return check_time("startTimeUnixNano", start, "ns", start // 1_000_000, now_ms,
                      (("microseconds", start // 1000), ("milliseconds", start), ("seconds", start * 1000)))


def _rejected(index: int, name: str, error: InvalidEvent) -> RejectedSpan:
    return RejectedSpan(f"span {index} ({name[:64]!r}): {error}", str(error), error.reason)


def sort_spans(spans: list[Span | MalformedSpan], *, now_ms: int) -> SpanBatch:
    """Every span of a request as an event, a rejection reason, or ignored."""
    batch = SpanBatch()
    for index, span in enumerate(spans):
        if isinstance(span, MalformedSpan):
            batch.rejected.append(_rejected(index, span.name, span.error))
            continue
        try:
            event = span_event(span, now_ms=now_ms)
        except InvalidEvent as error:
            batch.rejected.append(_rejected(index, span.name, error))
            continue
        if event is None:
            batch.ignored[_ignored_reason(span)] += 1
        else:
            batch.events.append(event)
            batch.spans.append((index, span.name))
    return batch


# --- responses ------------------------------------------------------------------------------------------


def _partial_message(rejected: list[RejectedSpan], duplicates: int) -> str:
    parts = [f"{len(rejected)} span(s) rejected: " + "; ".join(r.detail for r in rejected[:5])] if rejected else []
    if duplicates:
        parts.insert(0, f"{duplicates} span(s) already received, stored once")
    return "; ".join(parts)[:_MAX_ERROR_MESSAGE]


def export_response(rejected: list[RejectedSpan], duplicates: int = 0, *, as_json: bool) -> bytes:
    """The ExportTraceServiceResponse (OTLP §Partial Success): rejected_spans counts the rejected spans. Spans
    already stored (retried, or twice in the request) are accepted, not rejected: retrying them again would store
    nothing. They are named in error_message, which the spec lets a server set, rejected_spans 0, as a warning."""
    if not rejected and not duplicates:
        return b"{}" if as_json else b""
    message = _partial_message(rejected, duplicates)
    if as_json:
        return json.dumps({"partialSuccess": {"rejectedSpans": str(len(rejected)), "errorMessage": message}}).encode()
    response = trace_service_pb2.ExportTraceServiceResponse()
    response.partial_success.rejected_spans = len(rejected)
    response.partial_success.error_message = message
    return response.SerializeToString()


def error_status(message: str) -> bytes:
    """A google.rpc.Status (code 3, INVALID_ARGUMENT) for a refused protobuf request (OTLP §Failures)."""
    return status_pb2.Status(code=3, message=message[:_MAX_ERROR_MESSAGE]).SerializeToString()
