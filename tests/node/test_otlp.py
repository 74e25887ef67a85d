"""POST /v1/traces: the stock OpenTelemetry SDK and OTLP/HTTP exporter report agents' spans into a running node;
GenAI and MCP spans become events, other spans are ignored, broken ones are rejected without touching the rest."""

import base64
import gzip
import itertools
import json
import logging
import re
import sys
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing
from google.protobuf import json_format
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.re import parse_env_headers

from node import ingest_api, otlp
from node.audit_log import wall_clock_ms
from node.events import InvalidEvent, decode_entry
from node.ingest import REJECTION_REASONS
from node.ingest_api import read_request, room_to_read
from node.read_bytes import SPANS_READ_PER_BYTE, span_batch_bytes
from node.read_turns import ReadTurns
from node.otlp import (IGNORED_REASONS, MAX_JSON_CONTAINERS, MAX_SPANS, OtlpError, Span, decode_json,
                       decode_protobuf, sort_spans, span_event)
from node.strict_json import loads_strict

from ..factories import new_did
from .otlp_json import otlp_json
from .telemetry_node import AUTH, TOKEN, Clock, served, telemetry_node
from .test_readme import README

AGENT, OTHER = new_did(), new_did()
NOW = Clock().now
START_NS = (NOW - 1000) * 1_000_000


@pytest.fixture
def node(tmp_path):
    with telemetry_node(tmp_path) as node:
        yield node


def report_spans(endpoint: str) -> None:
    """What an instrumented agent service does: the SDK, the stock exporter, spans following the conventions."""
    provider = TracerProvider(resource=Resource.create({"service.name": "travel-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("agent-framework")
    common = {"gen_ai.agent.id": AGENT}
    with tracer.start_as_current_span("invoke_agent planner", attributes={**common, "gen_ai.operation.name":
                                                                          "invoke_agent"}):
        with tracer.start_as_current_span("chat gpt-4o", attributes={**common, "gen_ai.operation.name": "chat"}):
            pass
        with tracer.start_as_current_span("execute_tool book_flight", attributes={
                **common, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "book_flight",
                "vouchnet.high_risk": True}):
            pass
        with tracer.start_as_current_span("execute_tool search", attributes={
                **common, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search",
                "error.type": "TimeoutError"}) as span:
            span.set_status(Status(StatusCode.ERROR, "upstream took too long"))
        with tracer.start_as_current_span("tools/call read_file", attributes={
                **common, "mcp.method.name": "tools/call", "gen_ai.tool.name": "read_file",
                "error.type": "tool_error"}):
            pass
        with tracer.start_as_current_span("tools/list", attributes={**common, "mcp.method.name": "tools/list"}):
            pass
        with tracer.start_as_current_span("execute_tool x", attributes={
                "gen_ai.agent.id": "asst_123", "gen_ai.operation.name": "execute_tool"}):
            pass
        with tracer.start_as_current_span("execute_tool y", attributes={
                "gen_ai.agent.id": "did:key:zBroken", "gen_ai.operation.name": "execute_tool"}):
            pass
    provider.shutdown()


@pytest.mark.parametrize("compression", ["none", "gzip"])
async def test_the_stock_exporter_reports_agent_spans(tmp_path, monkeypatch, compression):
    with telemetry_node(tmp_path, clock=wall_clock_ms, monotonic=time.monotonic) as node:
        await _report_and_check(node, monkeypatch, compression)


async def test_the_readme_s_exporter_headers_carry_the_token_as_the_spec_encodes_them(tmp_path, monkeypatch):
    """The README's OTEL_EXPORTER_OTLP_TRACES_HEADERS, read as the OTLP exporter spec writes it (W3C baggage:
    values percent-encoded, no raw space), names the token; the stock exporter sends it to a node whose traces
    need the token."""
    (example,) = re.findall(r'^export OTEL_EXPORTER_OTLP_TRACES_HEADERS="(.*)"$', README.read_text(), re.MULTILINE)
    headers = example.replace("$(cat ~/.vouchnet/api.token)", TOKEN)
    assert parse_env_headers(headers, liberal=False) == {"authorization": AUTH["Authorization"]}
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", headers)
    with telemetry_node(tmp_path, clock=wall_clock_ms, monotonic=time.monotonic) as node:
        await _report_and_check(node, monkeypatch, "gzip", traces_need_token=True)


async def _report_and_check(node, monkeypatch, compression, *, traces_need_token=False):
    async with served(node.app(traces_need_token=traces_need_token)) as url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{url}/v1/traces")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", compression)
        await trio.to_thread.run_sync(report_spans, url)
    stored = [decode_entry(e)[1] for e in node.audit.ledger.entries(0, node.audit.size)]
    assert {(e.category, e.name, e.outcome, e.high_risk) for e in stored} == {
        ("tool", "book_flight", "ok", True),
        ("tool", "search", "timeout", False),
        ("mcp", "tools/call read_file", "error", False),
        ("a2a", "invoke_agent planner", "ok", False),
    }
    assert all(e.agent == AGENT and e.attrs["service.name"] == "travel-agent" for e in stored)
    assert {r: node.metrics.value("spans_total", result=r) for r in ("accepted", "rejected", "ignored")} == {
        "accepted": 4, "rejected": 2, "ignored": 2}
    assert node.metrics.value("spans_ignored_total", reason="not_an_action") == 2  # the model call, tools/list


def json_request(*spans):
    return {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "svc"}}]}, "scopeSpans": [{"spans": list(spans)}]}]}


_SPAN_IDS = itertools.count(1)


def json_span(agent=AGENT, *, span_id=None, **attributes):
    """An agent's tool call in OTLP/JSON, its span id `span_id` (an int) or a fresh one."""
    attrs = {"gen_ai.agent.id": agent, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup",
             **attributes}
    return {"traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": f"{next(_SPAN_IDS) if span_id is None else span_id:016x}", "name": "execute_tool", "kind": 1,
            "startTimeUnixNano": str(START_NS), "endTimeUnixNano": str(START_NS + 2_500_000),
            "attributes": [{"key": k, "value": {"boolValue": v} if isinstance(v, bool) else {"stringValue": v}}
                           for k, v in attrs.items()],
            "status": {}}


async def test_otlp_json_reports_partial_success_for_rejected_spans(node):
    body = json_request(json_span(), json_span("did:key:z6MkBad"), json_span(**{"vouchnet.outcome": "denied"}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        response = await client.post("/v1/traces", content=gzip.compress(json.dumps(body).encode()),
                                     headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "gen_ai.agent.id: must be an Ed25519 did:key" in partial["errorMessage"]
    stored = [decode_entry(e) for e in node.audit.ledger.entries(0, node.audit.size)]
    assert [(e.outcome, e.duration_ms, e.attrs["trace_id"]) for _, e in stored] == [
        ("ok", 2.5, "5b8efff798038103d269b633813fc60c"), ("denied", 2.5, "5b8efff798038103d269b633813fc60c")]


async def test_otlp_json_fields_given_as_null_are_their_defaults(node):
    """ProtoJSON, which OTLP/JSON follows, reads a null as the field's default; a span of `"status": null` (or any
    such field) had its whole request refused 400, which an exporter does not retry: every span in it lost."""
    span = {**json_span(), "status": None, "name": None, "parentSpanId": None, "events": None}
    span["attributes"] += [{"key": "rpc.response.status_code", "value": {"intValue": None}},
                           {"key": "http.route", "value": None}, {"key": None, "value": {"stringValue": "x"}}]
    body = {"resourceSpans": [{"resource": None, "scopeSpans": None}, {
        "resource": {"attributes": None}, "scopeSpans": [{"scope": None, "spans": None}, {"spans": [span]}]}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        response = await client.post("/v1/traces", content=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json() == {}
    (stored,) = [decode_entry(e)[1] for e in node.audit.ledger.entries(0, node.audit.size)]
    assert (stored.agent, stored.name, stored.outcome) == (AGENT, "lookup", "ok")
    assert "rpc.response.status_code" not in stored.attrs


async def test_a_span_refused_for_its_times_is_counted_by_the_event_field_they_become(node):
    """Named by the span's fields, its refusals are counted as the event's ts and duration_ms, not unknown_field."""
    old, backwards = json_span(), json_span()
    old["startTimeUnixNano"] = str(START_NS - 86_400 * 10**9)
    backwards["endTimeUnixNano"] = str(START_NS - 1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        response = await client.post("/v1/traces", content=json.dumps(json_request(old, backwards)).encode(),
                                     headers={"Content-Type": "application/json"})
    assert response.json()["partialSuccess"]["rejectedSpans"] == "2"
    assert [node.metrics.value("events_rejected_total", reason=r) for r in ("ts", "duration_ms", "unknown_field")] \
        == [1, 1, 0]


async def test_a_span_refused_is_counted_by_its_field_whatever_its_name_says(node):
    """The reason was read back out of the refusal's text, after the span's name: a name holding "): " had a span
    refused for its outcome counted as an unknown field; the refusal carries its field now."""
    span = json_span(**{"vouchnet.outcome": "great"})
    span["name"] = "lookup(city): Paris"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        response = await client.post("/v1/traces", content=json.dumps(json_request(span)).encode(),
                                     headers={"Content-Type": "application/json"})
    assert "'lookup(city): Paris'): outcome: vouchnet.outcome must be" in response.json()["partialSuccess"][
        "errorMessage"]
    assert [node.metrics.value("events_rejected_total", reason=r) for r in ("outcome", "unknown_field")] == [1, 0]


async def test_a_fully_accepted_protobuf_request_gets_an_empty_response(node):
    request = trace_service_pb2.ExportTraceServiceRequest()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        response = await client.post("/v1/traces", content=request.SerializeToString(),
                                     headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-protobuf"
    parsed = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert not parsed.HasField("partial_success")


def without_agent(span):
    """`span` with no gen_ai.agent.id attribute."""
    return {**span, "attributes": [a for a in span["attributes"] if a["key"] != "gen_ai.agent.id"]}


def plain_span():
    """A span of no GenAI attribute: an HTTP call the same exporter sends."""
    return {**json_span(), "name": "GET /flights", "attributes": [{"key": "http.request.method",
                                                                  "value": {"stringValue": "GET"}}]}


def mcp_chatter_span():
    """An MCP server's span of session chatter, of no gen_ai.* attribute: not an action."""
    return {**json_span(), "name": "tools/list", "attributes": [{"key": "mcp.method.name",
                                                               "value": {"stringValue": "tools/list"}}]}


async def test_a_request_of_spans_that_are_not_agents_actions_stores_nothing_and_is_a_full_success(node):
    body = json_request(json_span(**{"gen_ai.operation.name": "chat"}), mcp_chatter_span(), plain_span())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        response = await client.post("/v1/traces", content=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and "partialSuccess" not in response.json()
    assert node.audit.size == 0 and node.metrics.value("event_batches_total") == 0
    assert node.metrics.value("spans_total", result="ignored") == 3
    assert [node.metrics.value("spans_ignored_total", reason=r) for r in ("not_an_action", "not_genai")] == [2, 1]


def as_protobuf(body):
    """An OTLP/JSON request as protobuf. ProtoJSON, which json_format reads, has bytes in base64 where OTLP/JSON has
    the ids in hex."""
    body = json.loads(json.dumps(body))
    for resource in body["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.ParseDict(body, trace_service_pb2.ExportTraceServiceRequest()).SerializeToString()


async def post_either(node, body, as_json):
    """POST /v1/traces of the OTLP/JSON request `body`, as JSON or as protobuf."""
    content_type = "application/json" if as_json else "application/x-protobuf"
    content = json.dumps(body).encode() if as_json else as_protobuf(body)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        response = await client.post("/v1/traces", content=content, headers={"Content-Type": content_type})
    assert response.headers["content-type"] == content_type
    return response


def partial_success(response, as_json):
    """An ExportTraceServiceResponse's rejected_spans and error_message, as JSON or protobuf."""
    if as_json:
        partial = response.json().get("partialSuccess", {})
        return int(partial.get("rejectedSpans", 0)), partial.get("errorMessage", "")
    partial = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content).partial_success
    return partial.rejected_spans, partial.error_message


@pytest.mark.parametrize("as_json", [True, False])
async def test_an_agent_s_action_without_its_did_key_is_rejected_in_partial_success(node, as_json):
    """A tool call whose gen_ai.agent.id was a framework's own id, or missing, was ignored and answered as a full
    success: an operator whose exporter set the wrong attribute saw nothing anywhere."""
    body = json_request(json_span(agent="framework-agent-7"), without_agent(json_span()), plain_span(), json_span())
    response = await post_either(node, body, as_json)
    assert response.status_code == 200
    rejected, message = partial_success(response, as_json)
    assert rejected == 2
    assert "span 0 ('execute_tool'): gen_ai.agent.id: must be the agent's did:key (on the span or its resource), " \
           "not a framework's own agent id" in message
    assert "span 1 ('execute_tool'): gen_ai.agent.id: missing, on the span and its resource" in message
    assert [decode_entry(e)[1].agent for e in node.audit.ledger.entries(0, node.audit.size)] == [AGENT]
    assert node.metrics.value("events_rejected_total", reason="agent") == 2
    assert [node.metrics.value("spans_total", result=r) for r in ("accepted", "rejected", "ignored")] == [1, 2, 1]


async def test_an_action_whose_agent_id_is_an_org_s_did_is_rejected_in_partial_success(node, caplog):
    """An exporter given its org's did for gen_ai.agent.id had its spans stored, and its node signed digests of the
    org as an agent; the log line names no did (an attribute's text)."""
    org = new_did()
    node.ingestor.org_not_agent = lambda did: "this node's own org" if did == org else None
    caplog.set_level(logging.WARNING, logger="node.span_rejection_log")
    response = await post_either(node, json_request(json_span(), json_span(agent=org)), True)
    rejected, message = partial_success(response, True)
    assert rejected == 1
    assert message == ("1 span(s) rejected: span 1 ('execute_tool'): gen_ai.agent.id: an org's did:key (this node's "
                       "own org), not an agent's")
    assert [decode_entry(e)[1].agent for e in node.audit.ledger.entries(0, node.audit.size)] == [AGENT]
    assert node.metrics.value("events_rejected_total", reason="agent") == 1
    assert [node.metrics.value("spans_total", result=r) for r in ("accepted", "rejected")] == [1, 1]
    assert org not in caplog.text and "an org's did:key (this node's own org), not an agent's" in caplog.text


async def test_rejected_spans_are_logged_once_per_reason_a_minute_without_their_values(node, caplog):
    """The stock Python exporter drops partial_success unread: the node's log is where its operator sees the
    rejection, one line per reason a minute however many requests, counting them, and naming no attribute value."""
    secret = "framework-agent-secret-s3cr3t"
    skewed = json_span()
    skewed["startTimeUnixNano"] = str(START_NS + 3_600 * 10**9)
    skewed["endTimeUnixNano"] = skewed["startTimeUnixNano"]

    async def post(*spans):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
            await client.post("/v1/traces", content=json.dumps(json_request(*spans)).encode(),
                              headers={"Content-Type": "application/json"})

    caplog.set_level(logging.WARNING, logger="node.span_rejection_log")
    await post(json_span(agent=secret), json_span(agent=secret), skewed)
    for _ in range(5):
        node.clock.run(10_000)
        await post(json_span(agent=secret))
    lines = [(r.fields["reason"], r.fields["spans"], r.getMessage()) for r in caplog.records]
    assert lines == [
        ("agent", 2, "OTLP spans rejected, not stored: gen_ai.agent.id: must be the agent's did:key (on the span or "
                     "its resource), not a framework's own agent id"),
        ("ts", 1, "OTLP spans rejected, not stored: startTimeUnixNano: more than 5 min in the future (check the "
                  "reporter's clock)")]
    node.clock.run(10_000)  # a minute since the first line
    await post(json_span(agent=secret))
    assert [(r.fields["reason"], r.fields["spans"]) for r in caplog.records[2:]] == [("agent", 6)]
    assert secret not in caplog.text and "execute_tool" not in caplog.text


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/x-protobuf", b"\xff\xff\xff garbage"),
    ("application/json", b"{not json"),
    ("application/json", b'[{"resourceSpans": []}]'),
    ("application/json", b'{"resourceSpans": {"oops": 1}}'),
    ("application/json", b'{"resourceSpans": [{"scopeSpans": [[]]}]}'),
    ("application/json", b'{"resourceSpans": [{"scopeSpans": [{"spans": {}}]}]}'),
    ("application/json", json.dumps(json_request("a span")).encode()),
    # A JSON integer past the float range as a double: float() raised OverflowError, a 500 without a token.
    ("application/json", json.dumps(json_request({"attributes": [{"key": "x", "value": {"doubleValue": 10**400}}]}
                                                 )).encode()),
    # Not I-JSON (node.strict_json): a member given twice, UTF-16, both read by Python's parser.
    ("application/json",
     json.dumps(json_request(json_span())).replace('"traceId"', '"traceId": "00", "traceId"').encode()),
    ("application/json", json.dumps(json_request(json_span())).encode("utf-16")),
])
async def test_a_request_that_is_not_otlp_is_400_with_a_reason(node, content_type, body):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        response = await client.post("/v1/traces", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    if content_type == "application/x-protobuf":
        assert "ExportTraceServiceRequest" in status_pb2.Status.FromString(response.content).message
    else:
        assert response.json()["error"] == "bad_request" and response.json()["detail"].startswith("body")
    assert node.audit.size == 0


def malformed_json_spans():
    """(span, the refusal naming its field) of spans each of one field not as OTLP/JSON has it."""
    def span_with(**fields):
        return {**json_span(), **fields}

    def attribute(value):
        return span_with(attributes=[*json_span()["attributes"], {"key": "x", "value": value}])

    return [
        (span_with(traceId="5b8efff798038103d269b633813fc60z"), "traceId: must be hex digits"),
        (span_with(traceId="5b8efff798038103d269b633813fc60c0"),
         "traceId: more than 16 bytes (32 hex digits), the spec's length"),
        (span_with(spanId="0123456789abcdef0"), "spanId: more than 8 bytes (16 hex digits), the spec's length"),
        # Its length is checked before its digits one by one: a 4 MiB id of hex digits cost 0.12 s of CPU.
        (span_with(spanId="z" * (1 << 20)), "spanId: more than 8 bytes (16 hex digits), the spec's length"),
        (span_with(spanId=42), "spanId: must be hex digits"),
        # Stored as it came, "abc", though no bytes are written so in hex.
        (span_with(spanId="abc"), "spanId: an odd number of hex digits; bytes are two each"),
        (span_with(traceId="5b8efff798038103d269b633813fc60"),
         "traceId: an odd number of hex digits; bytes are two each"),
        (span_with(startTimeUnixNano="-5"), "startTimeUnixNano: must be an unsigned 64-bit integer"),
        (span_with(startTimeUnixNano="²"), "startTimeUnixNano: must be an unsigned 64-bit integer"),
        (span_with(endTimeUnixNano=2**64), "endTimeUnixNano: must be an unsigned 64-bit integer"),
        (span_with(name=["execute_tool"]), "name: must be a string"),
        (span_with(status="ERROR"), "status: must be an object"),
        (span_with(status={"code": "2"}), "status.code: must be an integer"),
        (span_with(status={"message": 7}), "status.message: must be a string"),
        (span_with(attributes={"gen_ai.agent.id": AGENT}), "attributes: must be a list"),
        (span_with(attributes=["gen_ai.agent.id"]), "attributes[0]: must be an object"),
        (span_with(attributes=[{"key": 1, "value": {}}]), "attributes[0].key: must be a string"),
        # Text that str.isdigit() passed and int() refused: a ValueError, a 500 without a token.
        (attribute({"intValue": "--5"}), "attributes[3].value.intValue: must be a 64-bit integer"),
        (attribute("5"), "attributes[3].value: must be an object"),
    ]


@pytest.mark.parametrize(("span", "refusal"), malformed_json_spans())
async def test_a_span_of_a_field_not_as_otlp_json_has_it_is_rejected_alone(node, caplog, span, refusal):
    """Such a span, one of a request, had the whole request refused 400: every good span in it lost, as an
    exporter does not retry a 400. Now it is rejected by itself (partial_success), counted as `span`, and logged
    naming its field, not what it held."""
    caplog.set_level(logging.WARNING, logger="node.span_rejection_log")
    response = await post_either(node, json_request(json_span(), span, json_span()), as_json=True)
    assert response.status_code == 200
    name = span["name"] if type(span["name"]) is str else ""
    assert partial_success(response, as_json=True) == (1, f"1 span(s) rejected: span 1 ({name!r}): {refusal}")
    assert node.metrics.value("spans_total", result="accepted") == 2
    assert node.metrics.value("events_rejected_total", reason="span") == 1
    assert [r.fields["reason"] for r in caplog.records] == ["span"]
    assert caplog.records[0].getMessage() == f"OTLP spans rejected, not stored: {refusal}"


async def test_spans_of_a_resource_whose_attributes_cannot_be_read_are_rejected_not_the_request(node):
    """A resource's attributes are each of its spans' (the agent may be named there): those spans are rejected,
    the request's other resources' spans are stored."""
    bad = json_request(json_span(), json_span())
    bad["resourceSpans"][0]["resource"]["attributes"].append({"key": "n", "value": {"intValue": "1.5"}})
    body = {"resourceSpans": [*bad["resourceSpans"], *json_request(json_span())["resourceSpans"]]}
    response = await post_either(node, body, as_json=True)
    rejected, message = partial_success(response, as_json=True)
    assert rejected == 2
    assert "span 1 ('execute_tool'): resource.attributes[1].value.intValue: must be a 64-bit integer" in message
    assert node.metrics.value("spans_total", result="accepted") == 1


async def test_a_protobuf_span_of_an_id_longer_than_the_spec_s_is_rejected_alone(node):
    """A trace_id over 128 bytes became an attrs.trace_id too long for an event, the span rejected as for an
    attribute the exporter never sent, and counted as `attrs`; ids of 17 to 128 bytes were stored as they came, where
    OTLP/JSON's over 16 bytes were a 400. Longer than the spec's 16 and 8 bytes, the span is rejected, naming the
    span's field; a shorter id (or none) is still stored as it comes."""
    body = json_request(json_span(), json_span(), json_span(), json_span())
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["traceId"] = "ab" * 200
    spans[1]["spanId"] = "ab" * 9
    spans[2]["traceId"] = "ab" * 8
    response = await post_either(node, body, as_json=False)
    assert response.status_code == 200
    rejected, message = partial_success(response, as_json=False)
    assert rejected == 2
    assert message == ("2 span(s) rejected: span 0 ('execute_tool'): traceId: more than 16 bytes (32 hex digits), the "
                       "spec's length; span 1 ('execute_tool'): spanId: more than 8 bytes (16 hex digits), the spec's "
                       "length")
    assert [node.metrics.value("events_rejected_total", reason=r) for r in ("span", "attrs")] == [2, 0]
    stored = [decode_entry(e)[1].attrs["trace_id"] for e in node.audit.ledger.entries(0, node.audit.size)]
    assert stored == ["ab" * 8, "5b8efff798038103d269b633813fc60c"]


def empty_spans(count: int) -> bytes:
    """An ExportTraceServiceRequest of `count` empty spans: 2 bytes each, and gzip shrinks them to almost nothing."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for _ in range(count):
        spans.add()
    return request.SerializeToString()


@pytest.mark.parametrize("as_json", [False, True])
async def test_a_request_of_more_than_max_spans_is_413_before_its_spans_are_read(node, as_json):
    """A few KiB of gzip may hold millions of empty spans: read as Span objects on the node's thread they took
    13 s and 800 MB (no token needed). The bound is checked first, and a request at the bound still goes in."""
    if as_json:
        bodies = [json.dumps(json_request(*[{}] * n)).encode() for n in (MAX_SPANS, MAX_SPANS + 1)]
    else:
        bodies = [empty_spans(n) for n in (MAX_SPANS, MAX_SPANS + 1)]
    content_type = "application/json" if as_json else "application/x-protobuf"
    headers = {"Content-Type": content_type, "Content-Encoding": "gzip"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        at_bound, over = [await client.post("/v1/traces", content=gzip.compress(body), headers=headers)
                          for body in bodies]
    assert at_bound.status_code == 200
    assert node.metrics.value("spans_total", result="ignored") == MAX_SPANS
    assert over.status_code == 413
    detail = over.json()["detail"] if as_json else status_pb2.Status.FromString(over.content).message
    assert detail == f"body: at most {MAX_SPANS} spans per request"


def empty_containers(count: int, level: str, as_json: bool) -> bytes:
    """A request of `count` empty resourceSpans, or of one resourceSpans of `count` empty scopeSpans (`level`)."""
    if as_json:
        resources = [{}] * count if level == "resourceSpans" else [{"scopeSpans": [{}] * count}]
        return json.dumps({"resourceSpans": resources}).encode()
    request = trace_service_pb2.ExportTraceServiceRequest()
    for _ in range(count if level == "resourceSpans" else 1):
        resource = request.resource_spans.add()
        if level == "scopeSpans":
            for _ in range(count):
                resource.scope_spans.add()
    return request.SerializeToString()


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("level", ["resourceSpans", "scopeSpans"])
async def test_a_request_of_more_than_max_spans_resource_or_scope_spans_is_413(node, as_json, level):
    """4 MiB of empty resourceSpans (4 KiB gzipped, two million of them) took 2.6 s of CPU to go through, holding the
    GIL the node's trio thread needs; none holds a span, so MAX_SPANS bounds them too."""
    content_type = "application/json" if as_json else "application/x-protobuf"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        at_bound, over = [await client.post("/v1/traces", content=empty_containers(n, level, as_json),
                                            headers={"Content-Type": content_type})
                          for n in (MAX_SPANS, MAX_SPANS + 1)]
    assert at_bound.status_code == 200
    assert over.status_code == 413
    detail = over.json()["detail"] if as_json else status_pb2.Status.FromString(over.content).message
    assert detail == f"body: at most {MAX_SPANS} {level} per request"


def empty_attributes(count: int, holder: str, as_json: bool) -> bytes:
    """A request of one span, `count` empty attributes on it, on its resource, or half on each (`holder` "both")."""
    on_resource = {"span": 0, "resource": count, "both": count // 2}[holder]
    if as_json:
        span = {"attributes": [{}] * (count - on_resource)}
        resource = {"attributes": [{}] * on_resource}
        return json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}).encode()
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    span = resource_spans.scope_spans.add().spans.add()
    for attributes, n in ((resource_spans.resource.attributes, on_resource), (span.attributes, count - on_resource)):
        for _ in range(n):
            attributes.add()
    return request.SerializeToString()


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("holder", ["span", "resource", "both"])
async def test_a_request_of_more_than_max_attributes_is_413_before_they_are_read(node, monkeypatch, as_json, holder):
    """4 MiB of empty attributes in protobuf (2 bytes each, two million, 8 KiB gzipped) took 0.9 s of the node's CPU
    to read, holding the GIL the trio thread needs; its parser took 0.08 s. A list is counted before it is read, a
    span's and its resource's together, and a request at the bound still goes in."""
    content_type = "application/json" if as_json else "application/x-protobuf"
    headers = {"Content-Type": content_type, "Content-Encoding": "gzip"}
    bodies = [gzip.compress(empty_attributes(n, holder, as_json)) for n in (otlp.MAX_ATTRIBUTES,
                                                                            otlp.MAX_ATTRIBUTES + 1)]
    reader = "_json_value" if as_json else "_proto_value"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        at_bound = await client.post("/v1/traces", content=bodies[0], headers=headers)
        read = []
        value = getattr(otlp, reader)
        monkeypatch.setattr(otlp, reader, lambda *args: read.append(1) or value(*args))
        over = await client.post("/v1/traces", content=bodies[1], headers=headers)
    assert at_bound.status_code == 200
    assert node.metrics.value("spans_total", result="ignored") == 1
    assert over.status_code == 413
    detail = over.json()["detail"] if as_json else status_pb2.Status.FromString(over.content).message
    assert detail == f"body: at most {otlp.MAX_ATTRIBUTES} attributes per request, of its spans and resources"
    assert len(read) == (otlp.MAX_ATTRIBUTES // 2 if holder == "both" else 0)


async def test_a_json_request_of_more_than_max_json_containers_is_413_before_it_is_parsed(node, monkeypatch):
    """4 MiB of empty objects (4 KiB gzipped, two million, no token needed) took 1.4-2.2 s of CPU to parse, holding
    the GIL the node's trio thread needs, before any bound applied. They are counted before the body is parsed, and
    a request at the bound still goes in."""
    parsed = []
    monkeypatch.setattr(otlp, "loads_strict", lambda body: parsed.append(body) or loads_strict(body))
    shell = json.dumps({"resourceSpans": [{}], "x": []}).encode()  # 4 of them
    bodies = [shell.replace(b"[]", b"[" + b",".join([b"{}"] * n) + b"]") for n in (MAX_JSON_CONTAINERS - 4,
                                                                                   MAX_JSON_CONTAINERS - 3)]
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        at_bound, over = [await client.post("/v1/traces", content=gzip.compress(body), headers=headers)
                          for body in bodies]
    assert at_bound.status_code == 200
    assert over.status_code == 413
    assert over.json()["detail"] == f"body: at most {MAX_JSON_CONTAINERS} JSON arrays and objects per request"
    assert parsed == [bodies[0]]


async def test_brackets_in_a_json_request_s_strings_are_not_counted_as_its_arrays_and_objects(node):
    """An attribute's text may hold JSON (a tool call's arguments), with its quotes escaped."""
    text = '{"q": "\\", "r": [' + "{[" * MAX_JSON_CONTAINERS + "]}"
    response = await post_either(node, json_request(json_span(**{"gen_ai.tool.call.arguments": text})), True)
    assert response.status_code == 200 and response.json() == {}
    assert node.metrics.value("spans_total", result="accepted") == 1


async def test_a_long_request_is_read_off_the_event_loop(node, monkeypatch):
    # 4 MiB of attributes, 8 KB gzipped, took 0.5-1.2 s to read (benchmarks/otlp_attacks.py): API requests, gossip
    # and sync waited that long. A short request is read on the loop: a thread would cost more than it saves.
    read_on = []

    def sort_spans_spy(spans, *, now_ms):
        read_on.append(threading.get_ident())
        return sort_spans(spans, now_ms=now_ms)

    monkeypatch.setattr(ingest_api, "sort_spans", sort_spans_spy)
    long, short = empty_spans(ingest_api.READ_ON_LOOP_BYTES), json.dumps(json_request(json_span())).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        for body, content_type in ((long, "application/x-protobuf"), (short, "application/json")):
            response = await client.post("/v1/traces", content=body, headers={"Content-Type": content_type})
            assert response.status_code == 200
    assert read_on[0] != threading.get_ident() and read_on[1] == threading.get_ident()
    assert node.metrics.value("spans_total", result="ignored") == ingest_api.READ_ON_LOOP_BYTES
    assert node.metrics.value("spans_total", result="accepted") == 1


READ_HELD_AT_MOST_S = 10  # (real time) a read awaited that does not begin, or is never released, fails its test


def hold_reads(monkeypatch) -> tuple[threading.Semaphore, threading.Event]:
    """Each read of a request's spans made to wait, once it begins (counted by the Semaphore, awaited by
    `read_begins`), for the Event; one not released within READ_HELD_AT_MOST_S fails its request."""
    entered, release = threading.Semaphore(0), threading.Event()

    def sort_spans_held(spans, *, now_ms):
        entered.release()
        if not release.wait(READ_HELD_AT_MOST_S):
            raise AssertionError(f"a read held was not released within {READ_HELD_AT_MOST_S} s")
        return sort_spans(spans, now_ms=now_ms)

    monkeypatch.setattr(ingest_api, "sort_spans", sort_spans_held)
    return entered, release


async def read_begins(entered: threading.Semaphore) -> None:
    """The next read held by `hold_reads` has begun; fails within READ_HELD_AT_MOST_S if it does not, where the
    test waited for ever."""
    began = await trio.to_thread.run_sync(lambda: entered.acquire(timeout=READ_HELD_AT_MOST_S))
    assert began, f"no read began within {READ_HELD_AT_MOST_S} s"


def spy_reads(monkeypatch) -> list[ReadTurns]:
    """The turns to be read each long request waits for, as read_request is given them."""
    turns = []

    async def read_request_spy(read, size, read_room, reads, held):
        turns.append(reads)
        return await read_request(read, size, read_room, reads, held)

    monkeypatch.setattr(ingest_api, "read_request", read_request_spy)
    return turns


async def test_long_requests_are_read_one_at_a_time(node, monkeypatch):
    """Each read held 15-25 bytes a byte of its body in the protobuf parser (100 MB for 4 MiB of empty attributes,
    4 KiB gzipped), and trio's 40 worker threads read 40 at once: a second read is no faster (Python code holds the
    GIL), only more memory. The second waits for the first, then is read."""
    entered, release = hold_reads(monkeypatch)
    turns = spy_reads(monkeypatch)
    long = empty_spans(ingest_api.READ_ON_LOOP_BYTES)
    answers = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:

        async def post() -> None:
            answers.append(await client.post("/v1/traces", content=long,
                                             headers={"Content-Type": "application/x-protobuf"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post)
            nursery.start_soon(post)
            await read_begins(entered)
            await trio.testing.wait_all_tasks_blocked()  # the second request as far as it goes while the first reads
            waiting = [reads.waiting for reads in turns]
            second_at_once = entered.acquire(blocking=False)
            release.set()
    assert waiting == [1, 1] and not second_at_once  # the second waits its turn, its read not begun
    assert [answer.status_code for answer in answers] == [200, 200]
    assert node.metrics.value("spans_total", result="ignored") == 2 * ingest_api.READ_ON_LOOP_BYTES


async def test_an_events_batch_read_off_the_loop_waits_for_a_trace_request_s_read(node, monkeypatch):
    """The parsers' memory while they read is outside the budget of bodies held at once, bounded by one read at a
    time (the README): a long POST /v1/events batch waits for the turn a trace request's read holds, its parse not
    begun, then is read."""
    entered, release = hold_reads(monkeypatch)
    parse, parsed = ingest_api.read_batch, []

    def counted_read(body, *, now_ms):
        parsed.append(len(body))
        return parse(body, now_ms=now_ms)

    monkeypatch.setattr(ingest_api, "read_batch", counted_read)
    event = {"agent": AGENT, "ts": NOW - 1000, "category": "tool", "name": "search", "outcome": "ok"}
    batch = json.dumps({"events": [event] * 200}).encode()
    assert len(batch) > ingest_api.READ_ON_LOOP_BYTES
    answers = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:

        async def post(name: str, path: str, body: bytes, content_type: str) -> None:
            answers[name] = await client.post(path, content=body, headers={**AUTH, "Content-Type": content_type})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post, "spans", "/v1/traces", empty_spans(ingest_api.READ_ON_LOOP_BYTES),
                               "application/x-protobuf")
            await read_begins(entered)
            nursery.start_soon(post, "events", "/v1/events", batch, "application/json")
            await trio.testing.wait_all_tasks_blocked()
            parsed_meanwhile = list(parsed)
            release.set()
    assert parsed_meanwhile == [] and parsed == [len(batch)]
    assert answers["spans"].status_code == 200 and answers["events"].json()["accepted"] == 200


def room_with_read(size: int) -> int:
    """The room a trace request's body of `size` bytes takes in the budget of bodies held at once, its read's with it,
    before it is read (node.ingest_api.read_body)."""
    return size + room_to_read(size, SPANS_READ_PER_BYTE)


def one_body_of_budget(monkeypatch) -> tuple[bytes, bytes]:
    """A gzip request of empty spans (read on a worker thread), and a budget of bodies held at once with room for
    it alone: its compressed bytes, and a body at the limit (its decompressed size unknown until it is inflated) with
    its read."""
    body = empty_spans(ingest_api.READ_ON_LOOP_BYTES)
    compressed = gzip.compress(body)
    monkeypatch.setattr(ingest_api, "INFLATE_PIECE", 1024)
    monkeypatch.setattr(ingest_api, "BODY_BYTES_AT_ONCE", len(compressed) + room_with_read(ingest_api.MAX_TRACES_BYTES))
    return body, compressed


def post_gzip(client: httpx.AsyncClient, compressed: bytes):
    return client.post("/v1/traces", content=compressed,
                       headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})


async def test_bodies_held_at_once_are_bounded_the_next_request_503_busy(node, monkeypatch, autojump_clock):
    """Each of the API's 1,024 connections held a body decompressed to 4 MiB (from 4 KiB of gzip, with no token)
    while it waited its turn to be read: 4 GiB. Bodies held at once now share a budget: a request that finds no room
    in it within BODY_WAIT_S is answered 503 busy with Retry-After (OTLP §Failures: the exporter retries), and the
    budget is given back once a request is answered. Each 503 is counted for an operator's alert (it was not: the
    count of refusals took 4xx alone, and reads no code in a protobuf answer)."""
    body, compressed = one_body_of_budget(monkeypatch)
    entered, release = hold_reads(monkeypatch)
    answers = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:

        async def post() -> None:
            answers.append(await post_gzip(client, compressed))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post)
            await read_begins(entered)
            busy = None
            with trio.move_on_after(60):  # (unbounded, it waited for the first to be read: for ever)
                busy = await post_gzip(client, compressed)
            release.set()
        again = await post_gzip(client, compressed)
    assert busy is not None and busy.status_code == 503 and busy.headers["Retry-After"] == str(ingest_api.BUSY_RETRY_S)
    assert "bytes of request bodies at once" in status_pb2.Status.FromString(busy.content).message
    assert [answer.status_code for answer in answers] == [200] and again.status_code == 200
    assert node.metrics.value("spans_total", result="ignored") == 2 * ingest_api.READ_ON_LOOP_BYTES
    assert node.metrics.value("api_refusals_total", status="503", reason="busy") == 1


async def test_a_body_arriving_slowly_gives_its_room_to_a_request_that_finds_none(node, monkeypatch, autojump_clock):
    """Bodies sent slowly (16 at the limit, up to 30 s each) held the whole budget, and an exporter's requests were
    answered 503 busy meanwhile (benchmarks/otlp_held_bodies.py: 4 of 5). A request that finds no room within
    BODY_WAIT_S now takes the room of bodies arriving for longer than it waited, each answered 503 busy instead."""
    body, compressed = one_body_of_budget(monkeypatch)
    answers = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:

        async def slowly():
            yield body[:-1]
            await trio.sleep(60)
            yield body[-1:]

        async def post_slowly() -> None:
            answers["slow"] = await client.post("/v1/traces", content=slowly(),
                                                headers={"Content-Type": "application/x-protobuf"})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post_slowly)
            await trio.testing.wait_all_tasks_blocked()
            answers["exporter"] = await post_gzip(client, compressed)
    slow, exporter = answers["slow"], answers["exporter"]
    assert exporter.status_code == 200 and trio.current_time() < 60
    assert slow.status_code == 503 and slow.headers["Retry-After"] == str(ingest_api.BUSY_RETRY_S)
    assert "had been arriving for over 2 s" in status_pb2.Status.FromString(slow.content).message
    assert node.metrics.value("api_refusals_total", status="503", reason="busy") == 1
    assert node.metrics.value("spans_total", result="ignored") == ingest_api.READ_ON_LOOP_BYTES


def one_named_span(size: int) -> bytes:
    """A request of one span whose name makes it `size` bytes long, about: read on a worker thread past 16 KiB."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(name="a" * size)
    return request.SerializeToString()


async def test_bodies_waiting_their_turn_to_be_read_give_their_room_the_largest_first_and_are_read_last(
        node, monkeypatch, autojump_clock):
    """Bodies waiting their turn to be read (one at a time) kept their room: a client queueing bodies at the limit
    behind the reads had an exporter's every request answered 503 busy, and one let in was read after all of them
    (benchmarks/otlp_held_bodies.py --queued: 5 of 5 refused; let in, the longest wait 18 s). A request that finds
    no room within BODY_WAIT_S now takes the room of the largest waiting longer than that (answered 503 busy), and
    the smallest body waiting is read next."""
    large, exporter = one_named_span(4 * ingest_api.READ_ON_LOOP_BYTES), one_named_span(ingest_api.READ_ON_LOOP_BYTES)
    monkeypatch.setattr(ingest_api, "BODY_BYTES_AT_ONCE", 3 * room_with_read(len(large)) + 1024)
    entered, release = hold_reads(monkeypatch)
    answers = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:

        async def post(name: str, body: bytes) -> None:
            answer = await client.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
            answers.append((name, answer.status_code, answer.content))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post, "read", large)
            await read_begins(entered)
            for name in ("queued first", "queued next"):
                nursery.start_soon(post, name, large)
                await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(post, "exporter", exporter)
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(ingest_api.BODY_WAIT_S)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
    assert [(name, status) for name, status, _ in answers] == [
        ("queued first", 503), ("read", 200), ("exporter", 200), ("queued next", 200)]
    assert "had been waiting its turn to be read for over 2 s" in status_pb2.Status.FromString(answers[0][2]).message
    assert node.metrics.value("api_refusals_total", status="503", reason="busy") == 1


async def test_the_node_s_http_server_answers_a_body_whose_room_was_taken_and_serves_its_connection_on(
        node, monkeypatch):
    """The request whose room is taken is stopped waiting for its body's bytes (node.api.http_server's receive):
    it is answered at once, the rest of its body read and dropped, and its connection carries the next request."""
    body, compressed = one_body_of_budget(monkeypatch)
    monkeypatch.setattr(ingest_api, "BODY_WAIT_S", 0.05)  # (real sockets: the mock clock would jump their timeouts)
    async with served(node.app()) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        slow = await trio.open_tcp_stream(host, int(port))
        request = (f"POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-protobuf\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode()
        await slow.send_all(request + body[:-1])
        answer = b""
        with trio.fail_after(10):
            async with httpx.AsyncClient(base_url=url) as client:
                while node.metrics.value("api_refusals_total", status="503", reason="busy") == 0:
                    exporter = await post_gzip(client, compressed)  # (until one finds the slow body holding the room)
            while b"\r\n\r\n" not in answer:
                answer += await slow.receive_some()
            await slow.send_all(body[-1:] + request + body)
            again = b""
            while b"200 OK" not in again:
                again += await slow.receive_some()
        await slow.aclose()
    assert exporter.status_code == 200 and answer.startswith(b"HTTP/1.1 503 ")
    assert node.metrics.value("spans_total", result="ignored") == 2 * ingest_api.READ_ON_LOOP_BYTES


async def test_the_budget_is_given_back_by_a_refused_or_cancelled_request(node, monkeypatch, autojump_clock):
    """A request refused as it is decompressed (truncated gzip), or once read (not OTLP), or cancelled while it
    waits for room (its client gone), gives back all it took: a request that takes the whole budget is then read."""
    body, compressed = one_body_of_budget(monkeypatch)
    not_otlp = gzip.compress(b"\xff" * len(body))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        assert (await post_gzip(client, compressed[:-4])).status_code == 400  # inflated to its end, truncated
        assert (await post_gzip(client, not_otlp)).status_code == 400
        entered, release = hold_reads(monkeypatch)
        cancel_second = trio.CancelScope()

        async def second() -> None:
            with cancel_second:
                await post_gzip(client, compressed)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post_gzip, client, compressed)
            await read_begins(entered)
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()  # the second waits for room, its compressed body taken
            cancel_second.cancel()
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        monkeypatch.setattr(ingest_api, "sort_spans", sort_spans)
        assert (await post_gzip(client, compressed)).status_code == 200


async def post_protobuf(client: httpx.AsyncClient, body: bytes, answers: list[httpx.Response]) -> None:
    """POST /v1/traces of a protobuf `body`, its answer appended to `answers`."""
    answers.append(await client.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"}))


def count_reads(monkeypatch) -> list[int]:
    """The spans each request read had, as sort_spans is given them."""
    reads = []

    def sort_spans_counted(spans, *, now_ms):
        reads.append(len(spans))
        return sort_spans(spans, now_ms=now_ms)

    monkeypatch.setattr(ingest_api, "sort_spans", sort_spans_counted)
    return reads


def hold_commits(monkeypatch, node) -> tuple[trio.Event, trio.Event]:
    """Each commit of a request's events made to wait, once it begins (the first Event), for the second."""
    committing, commit_released = trio.Event(), trio.Event()
    commit = node.ingestor.commit_async

    async def held_commit(pending):
        committing.set()
        await commit_released.wait()
        return await commit(pending)

    monkeypatch.setattr(node.ingestor, "commit_async", held_commit)
    return committing, commit_released


async def test_a_request_read_holds_room_for_its_events_as_well_as_its_body_until_answered(
        node, monkeypatch, autojump_clock):
    """The events read from a body take 3.2-3.5 times its bytes, held until the request is answered (its commit
    waits for the write lock), and the budget of bodies held at once counted the body alone: 16 requests at the limit
    held some 4.5 times its 64 MiB. A request read now takes room for what it read too: with room for one body, its
    events and half a body besides, a second request finds none while the first waits for its commit (503 busy); it
    found room, by the body's bytes, for two."""
    body = as_protobuf(json_request(*(json_span() for _ in range(40))))
    read = span_batch_bytes(sort_spans(decode_protobuf(body), now_ms=NOW))
    assert len(body) <= ingest_api.READ_ON_LOOP_BYTES and read > 3 * len(body)
    monkeypatch.setattr(ingest_api, "BODY_BYTES_AT_ONCE", len(body) + read + len(body) // 2)
    committing, commit_released = hold_commits(monkeypatch, node)
    answers = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:

        async def post() -> httpx.Response:
            return await client.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})

        async def first() -> None:
            answers.append(await post())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await committing.wait()
            second = None
            with trio.move_on_after(60):  # (counting the body alone, the second was read and waited for its commit)
                second = await post()
            commit_released.set()
        again = await post()
    assert second is not None and second.status_code == 503
    assert "bytes of request bodies at once" in status_pb2.Status.FromString(second.content).message
    assert [answer.status_code for answer in answers] == [200] and again.status_code == 200
    assert node.metrics.value("spans_total", result="accepted") == 40  # (the third: the first's spans, stored once)


async def test_a_request_that_finds_no_room_for_its_read_is_refused_before_its_body_is_received_or_read(
        node, monkeypatch, autojump_clock):
    """Found by stop 45's review: a request took room for what it read once it had read it, and if there was none
    was answered 503 busy then, its body received, decompressed and read for nothing (11 of the 40 requests of
    benchmarks/otlp_memory.py --agents). A request now takes room for its body and its read from its Content-Length
    before a byte of it is received: finding none, it is answered 503 busy, its body neither received nor read."""
    body = as_protobuf(json_request(*(json_span() for _ in range(40))))
    read = span_batch_bytes(sort_spans(decode_protobuf(body), now_ms=NOW))
    # (room for a second body, not for its read: without taking room for its read first, it was read, then refused)
    monkeypatch.setattr(ingest_api, "BODY_BYTES_AT_ONCE", 2 * len(body) + read + len(body) // 2)
    committing, commit_released = hold_commits(monkeypatch, node)
    reads = count_reads(monkeypatch)
    received = []

    async def sent() -> AsyncIterator[bytes]:
        received.append(len(body))
        yield body

    answers = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post_protobuf, client, body, answers)
            await committing.wait()
            second = await client.post("/v1/traces", content=sent(), headers={
                "Content-Type": "application/x-protobuf", "Content-Length": str(len(body))})
            commit_released.set()
    assert second.status_code == 503 and second.headers["Retry-After"] == str(ingest_api.BUSY_RETRY_S)
    assert "bytes of request bodies at once" in status_pb2.Status.FromString(second.content).message
    assert received == [] and reads == [40]  # (the second's body was received and read, then refused)
    assert [answer.status_code for answer in answers] == [200]
    assert node.metrics.value("api_refusals_total", status="503", reason="busy") == 1


async def test_a_request_gives_back_the_room_its_read_turns_out_not_to_need(node, monkeypatch, autojump_clock):
    """The room a request takes before its body is read, SPANS_READ_PER_BYTE a byte for its read, is more than its
    read holds (an exporter's spans that are not agents' actions hold nothing): once read, it gives the rest back, so
    that a second request finds room for its own while the first waits for its commit."""
    body = as_protobuf(json_request(json_span(), *(plain_span() for _ in range(39))))
    read = span_batch_bytes(sort_spans(decode_protobuf(body), now_ms=NOW))
    assert read < room_to_read(len(body), SPANS_READ_PER_BYTE) // 2
    monkeypatch.setattr(ingest_api, "BODY_BYTES_AT_ONCE", len(body) + read + room_with_read(len(body)))
    monkeypatch.setattr(ingest_api, "BODY_WAIT_S", 60)  # (a second request not let in waited for ever)
    committing, commit_released = hold_commits(monkeypatch, node)
    answers = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post_protobuf, client, body, answers)
            await committing.wait()
            nursery.start_soon(post_protobuf, client, body, answers)
            await trio.testing.wait_all_tasks_blocked()
            ignored = node.metrics.value("spans_total", result="ignored")
            commit_released.set()
    assert ignored == 2 * 39  # (the second read too, waiting for the write lock; keeping the room, it found none)
    assert [answer.status_code for answer in answers] == [200, 200]


@pytest.mark.parametrize("sent", ["gzip", "chunked"])
async def test_a_request_of_unknown_size_gives_back_the_room_it_took_for_a_body_at_the_limit_once_received(
        node, monkeypatch, autojump_clock, sent):
    """A gzip request, or one without a Content-Length, takes room for a body at the limit, its read's with it (and
    for its compressed bytes), before its body is received (its size unknown till then); once received, inflated and
    read it holds its body and its read alone, so that a second such request finds room for its own while the first
    waits for its commit. Found by stop 45's review: dropping the giving back of the compressed bytes and unneeded
    room, of either kind, went unnoticed (the first request held 4 MiB or more until answered, and the second was
    answered 503 busy)."""
    body = as_protobuf(json_request(json_span(), *(plain_span() for _ in range(39))))
    compressed = gzip.compress(body)
    read = span_batch_bytes(sort_spans(decode_protobuf(body), now_ms=NOW))
    taken = room_with_read(ingest_api.MAX_TRACES_BYTES) + (len(compressed) if sent == "gzip" else 0)
    monkeypatch.setattr(ingest_api, "BODY_BYTES_AT_ONCE", len(body) + read + taken)
    monkeypatch.setattr(ingest_api, "BODY_WAIT_S", 60)  # (a second request not let in waited for ever)
    committing, commit_released = hold_commits(monkeypatch, node)
    answers = []
    headers = {"Content-Type": "application/x-protobuf"}

    async def post() -> None:
        if sent == "gzip":
            answer = await client.post("/v1/traces", content=compressed, headers={**headers, "Content-Encoding": "gzip"})
        else:
            async def chunks():
                yield body
            answer = await client.post("/v1/traces", content=chunks(), headers=headers)
            assert "content-length" not in answer.request.headers
        answers.append(answer)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post)
            await committing.wait()
            nursery.start_soon(post)
            await trio.testing.wait_all_tasks_blocked()
            ignored = node.metrics.value("spans_total", result="ignored")
            commit_released.set()
    assert ignored == 2 * 39  # (the second read too, waiting for the write lock)
    assert [answer.status_code for answer in answers] == [200, 200]


@pytest.mark.parametrize(("spare", "status"), [(0, 200), (-1, 503)])
async def test_a_read_holding_more_than_its_room_takes_the_rest_or_is_refused_busy(node, monkeypatch, autojump_clock,
                                                                                   spare, status):
    """A read that holds more than the room its request took for it before it was read (SPANS_READ_PER_BYTE a byte:
    a request of spans of little but a did may hold more) takes the rest from the bodies held at once, to be held until
    the request is answered: found, the request is answered; not found within its wait, 503 busy. Found by stop 45's
    review: dropping the taking of the rest went unnoticed (the read's memory was held outside the bound)."""
    body = as_protobuf(json_request(*(json_span() for _ in range(40))))
    read = span_batch_bytes(sort_spans(decode_protobuf(body), now_ms=NOW))
    monkeypatch.setattr(ingest_api, "SPANS_READ_PER_BYTE", 0.5)
    assert room_to_read(len(body), 0.5) < read
    monkeypatch.setattr(ingest_api, "BODY_BYTES_AT_ONCE", len(body) + read + spare)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        answer = await client.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
    assert answer.status_code == status


async def test_other_media_types_are_415(node):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app()), base_url="http://n") as client:
        response = await client.post("/v1/traces", content=b"x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415


def span(**attrs):
    base = {"gen_ai.agent.id": AGENT, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t"}
    return Span("s", START_NS, START_NS + 1, {**base, **attrs}, {})


@pytest.mark.parametrize(("attrs", "outcome"), [
    ({}, "ok"),
    ({"error.type": "500"}, "error"),
    ({"error.type": "403"}, "denied"),
    ({"error.type": "PermissionDeniedError"}, "denied"),
    ({"error.type": "DEADLINE_EXCEEDED"}, "timeout"),
    ({"error.type": "_OTHER", "vouchnet.outcome": "ok"}, "ok"),
])
def test_outcomes_follow_error_type(attrs, outcome):
    assert span_event(span(**attrs), now_ms=NOW).outcome == outcome


DAY_NS = 86_400 * 10**9


@pytest.mark.parametrize(("start", "end", "refusal"), [
    (START_NS - DAY_NS, START_NS, "startTimeUnixNano: more than 24 h in the past"),
    (START_NS + DAY_NS, START_NS + DAY_NS, "startTimeUnixNano: more than 5 min in the future (check the reporter's "
                                           "clock)"),
    (START_NS // 1000, START_NS // 1000, f"startTimeUnixNano: more than 24 h in the past (startTimeUnixNano counts "
                                         f"ns since the Unix epoch: {START_NS // 1000} is a time the node would take "
                                         f"in microseconds)"),
    (START_NS // 10**9, START_NS // 10**9, f"startTimeUnixNano: more than 24 h in the past (startTimeUnixNano counts "
                                           f"ns since the Unix epoch: {START_NS // 10**9} is a time the node would "
                                           f"take in seconds)"),
    (0, START_NS, "startTimeUnixNano: the span has no start time"),
    (START_NS, START_NS - 1, "endTimeUnixNano: the span ends before it starts"),
])
def test_a_span_s_time_refused_names_the_span_s_field(start, end, refusal):
    """The refusal named the event's fields, `ts` and `duration_ms`, which an OTLP exporter never sent, and read a
    start in µs as one in seconds."""
    with pytest.raises(InvalidEvent) as refused:
        span_event(Span("s", start, end, span().attrs, {}), now_ms=NOW)
    assert str(refused.value) == refusal
    assert refused.value.reason in REJECTION_REASONS  # counted under the event's field


def test_the_agent_may_be_named_on_the_resource():
    resource_only = Span("s", START_NS, START_NS + 1, {"gen_ai.operation.name": "invoke_agent",
                                                       "a2a.method": "message/send"}, {"gen_ai.agent.id": OTHER})
    event = span_event(resource_only, now_ms=NOW)
    assert (event.agent, event.category, event.name) == (OTHER, "a2a", "message/send")


def test_a_framework_s_own_agent_id_on_the_span_leaves_the_resource_s_did_key_the_agent():
    """The span's own `asst_...` shadowed the did:key the operator set on the resource: the span was ignored."""
    framework_named = Span("s", START_NS, START_NS + 1, {**span().attrs, "gen_ai.agent.id": "asst_123"},
                           {"gen_ai.agent.id": OTHER})
    assert span_event(framework_named, now_ms=NOW).agent == OTHER


spans = st.one_of(
    st.builds(span),
    st.builds(span, **{"vouchnet.outcome": st.text(max_size=4)}),
    st.builds(span, **{"vouchnet.high_risk": st.one_of(st.booleans(), st.integers())}),
    st.builds(span, **{"vouchnet.category": st.sampled_from(["tool", "mcp", "Tool", ""])}),
    st.builds(span, **{"mcp.session.id": st.text(max_size=4)}),
    st.builds(span, **{"gen_ai.agent.id": st.sampled_from(["did:key:z6Mkx", "asst_1", "", AGENT])}),
    st.builds(span, **{"gen_ai.operation.name": st.sampled_from(["chat", "embeddings", "execute_tool"])}),
    st.builds(lambda start, end: Span("s", start, end, span().attrs, {}), st.integers(0, 2**64 - 1),
              st.integers(0, 2**64 - 1)),
)


@given(st.lists(spans, max_size=12))
def test_every_span_is_accepted_rejected_or_ignored_independently(items):
    batch = sort_spans(items, now_ms=NOW)
    assert len(batch.events) + len(batch.rejected) + batch.ignored.total() == len(items)
    assert set(batch.ignored) <= set(IGNORED_REASONS)
    assert {span.reason for span in batch.rejected} <= set(REJECTION_REASONS)
    alone = [sort_spans([s], now_ms=NOW).events for s in items]
    assert batch.events == [e for events in alone for e in events]


def spans_in(request):
    """How many spans `request` holds if it is an object of resourceSpans of scopeSpans of spans, lists of objects
    (a list absent or null is empty), else None."""
    def objects(parent, key):
        value = [] if parent.get(key) is None else parent[key]
        return value if type(value) is list and all(type(item) is dict for item in value) else None

    if type(request) is not dict or (resources := objects(request, "resourceSpans")) is None:
        return None
    count = 0
    for resource in resources:
        if (scopes := objects(resource, "scopeSpans")) is None:
            return None
        for scope in scopes:
            if (spans := objects(scope, "spans")) is None:
                return None
            count += len(spans)
    return count


def test_a_double_value_of_an_integer_beyond_a_doubles_range_is_refused_as_json_and_the_largest_is_read():
    """The strict reader (node.strict_json) refuses the request before a doubleValue is read, to the exact bound:
    the largest integer a double holds is read as that double, one past it (either sign) is not JSON."""
    def with_double(number):
        span = json_span()
        span["attributes"].append({"key": "x", "value": {"doubleValue": number}})
        return json.dumps(json_request(span)).encode()

    largest = int(sys.float_info.max)
    for beyond in (largest + 1, -largest - 1):
        with pytest.raises(OtlpError, match=r"^body: not JSON \(.*\(309 digits\) is beyond a JSON number's range"):
            decode_json(with_double(beyond))
    for number in (largest, -largest):
        [span] = decode_json(with_double(number))
        assert span.attrs["x"] == float(number)
        assert type(span.attrs["x"]) is float


@settings(max_examples=150)
@given(otlp_json([AGENT, "did:key:z6MkBroken", "asst_1"], NOW))
def test_any_json_request_gives_spans_each_sorted_out_or_a_reason(request):
    """A request is refused whole only if it is not JSON or not resourceSpans of scopeSpans of spans; else each of
    its spans, whatever its fields hold, is sorted out by itself."""
    try:
        spans = decode_json(json.dumps(request).encode())
    except OtlpError as error:
        assert spans_in(request) is None or str(error).startswith("body: not JSON")
        return
    assert len(spans) == spans_in(request)
    batch = sort_spans(spans, now_ms=NOW)
    assert len(batch.events) + len(batch.rejected) + batch.ignored.total() == len(spans)
    assert {span.reason for span in batch.rejected} <= set(REJECTION_REASONS)


def test_attributes_an_entry_cannot_hold_are_left_out_not_fatal():
    event = span_event(span(**{"rpc.response.status_code": 2**62, "error.type": "x\x00y", "mcp.session.id": "s1"}),
                       now_ms=NOW)
    assert event.outcome == "error"
    assert "rpc.response.status_code" not in event.attrs and "error.type" not in event.attrs
    assert event.attrs["mcp.session.id"] == "s1"
