"""CPU a hostile OTLP exporter can make a node spend per `POST /v1/traces` (DESIGN §7), and a hostile reporter per
`POST /v1/events`: figures, no targets; not a test. Each line is one request at the body limit
(node.ingest_api.MAX_TRACES_BYTES, or node.events.MAX_BATCH_BYTES, before and after decompression) or at a bound of
node.otlp or node.events, with its size gzip-compressed, and the CPU of reading it as the handler does (decode, then
sort the spans into events, on a worker thread past node.ingest_api.READ_ON_LOOP_BYTES; parse a batch, then its
events), or of refusing it (413), against the stock SDK's request of 512 agent spans for comparison.

    python benchmarks/otlp_attacks.py
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacl.signing import SigningKey  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: E402
from opentelemetry.proto.common.v1 import common_pb2  # noqa: E402
from opentelemetry.proto.trace.v1 import trace_pb2  # noqa: E402

from gossip.frames import encode_uvarint  # noqa: E402
from node.audit_log import wall_clock_ms  # noqa: E402
from node.events import MAX_BATCH_BYTES, MAX_BATCH_CONTAINERS  # noqa: E402
from node.ingest import TooLarge, read_batch  # noqa: E402
from node.ingest_api import MAX_TRACES_BYTES  # noqa: E402
from node.otlp import (MAX_ATTRIBUTES, MAX_JSON_CONTAINERS, MAX_SPANS, TooManySpans, decode_json,  # noqa: E402
                       decode_protobuf, sort_spans)
from vouching import did_key  # noqa: E402

NOW_MS = wall_clock_ms()
AGENT = did_key(bytes(SigningKey.generate().verify_key))
# Protobuf field numbers: ExportTraceServiceRequest.resource_spans, ResourceSpans.scope_spans, ScopeSpans.spans,
# Span.attributes. Repeated fields concatenate, so requests are assembled from bytes (building 10^5 attributes as
# messages takes a minute).
_RESOURCE_SPANS, _SCOPE_SPANS, _SPANS, _ATTRIBUTES = 1, 2, 2, 9


def _field(number: int, payload: bytes) -> bytes:
    return encode_uvarint(number << 3 | 2) + encode_uvarint(len(payload)) + payload


def _request(spans: list[bytes]) -> bytes:
    return _field(_RESOURCE_SPANS, _field(_SCOPE_SPANS, b"".join(_field(_SPANS, span) for span in spans)))


def _attribute(key: str) -> bytes:
    return _field(_ATTRIBUTES, common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=1)).SerializeToString())


def _agent_span(n: int) -> bytes:
    span = trace_pb2.Span(name="execute_tool search", trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"),
                          start_time_unix_nano=NOW_MS * 10**6, end_time_unix_nano=NOW_MS * 10**6 + 5_000_000)
    for key, value in (("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", "search"),
                       ("gen_ai.agent.id", AGENT), ("service.name", "travel-agent")):
        span.attributes.add(key=key, value=common_pb2.AnyValue(string_value=value))
    return span.SerializeToString()


def agent_spans(count: int) -> bytes:
    """A request of `count` spans of an agent's tool calls, some 250 bytes each."""
    return _request([_agent_span(n) for n in range(count)])


def stock_request() -> bytes:
    """What the OpenTelemetry SDK's BatchSpanProcessor sends at most: 512 spans, here all about an agent."""
    return agent_spans(512)


def attributes_in_one_span(distinct: bool, most: int | None = None) -> bytes:
    """One agent span with as many more attributes as the body limit holds, or `most` at the most."""
    span, n = [_agent_span(0)], 0
    size = len(span[0])
    while size < MAX_TRACES_BYTES - 64 and n != most:
        span.append(_attribute(str(n) if distinct else "k"))
        size, n = size + len(span[-1]), n + 1
    return _request([b"".join(span)])


def empty_attributes(count: int) -> bytes:
    """One span of `count` empty attributes (2 bytes each)."""
    return _request([_field(_ATTRIBUTES, b"") * count])


def attributes_across_spans() -> bytes:
    """MAX_SPANS spans, the first 100 about an agent, sharing as many attributes as the body limit holds."""
    spans = [_agent_span(n) for n in range(100)] + [b""] * (MAX_SPANS - 100)
    room = MAX_TRACES_BYTES - len(_request(spans)) - 64
    each = room // len(_attribute("k")) // MAX_SPANS
    return _request([span + _attribute("k") * each for span in spans])


def as_json(body: bytes) -> bytes:
    """A protobuf request of one span in OTLP/JSON, as many of its attributes as the body limit holds."""
    span = trace_service_pb2.ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans[0]
    head = {"name": span.name, "startTimeUnixNano": str(span.start_time_unix_nano),
            "endTimeUnixNano": str(span.end_time_unix_nano), "attributes": []}
    attributes = [json.dumps({"key": a.key, "value": {"intValue": str(a.value.int_value)} if a.value.HasField(
        "int_value") else {"stringValue": a.value.string_value}}) for a in span.attributes]
    shell = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [head]}]}]})
    room = MAX_TRACES_BYTES - len(shell)
    kept, size = [], 0
    for attribute in attributes:
        if size + len(attribute) + 1 > room:
            break
        kept.append(attribute)
        size += len(attribute) + 1
    return shell.replace('"attributes": []', '"attributes": [' + ",".join(kept) + "]").encode()


def numbers_in_json() -> bytes:
    """An OTLP/JSON request of no spans and a field the decoder skips, holding as many integers as the body limit
    does: node.strict_json checks each number (against a double's range) in Python, where json.loads does not."""
    shell = b'{"resourceSpans": [], "x": [1]}'
    return shell.replace(b"[1]", b"[" + b"1," * ((MAX_TRACES_BYTES - len(shell)) // 2) + b"1]")


def objects_in_json() -> bytes:
    """An OTLP/JSON request of no spans and a field the decoder skips, holding as many empty objects as
    node.otlp.MAX_JSON_CONTAINERS lets it (4 MiB of them, four times as many, took 1.3 s)."""
    shell = b'{"resourceSpans": [], "x": [{}]}'
    return shell.replace(b"[{}]", b"[" + b"{}," * (MAX_JSON_CONTAINERS - 4) + b"{}]")


def objects_in_events(count: int) -> bytes:
    """A POST /v1/events batch of `count` arrays and objects: one event, its attribute a list of all but five of them,
    empty (the event is refused, for its attrs, once the batch is parsed)."""
    return b'{"events": [{"attrs": {"a": [' + b",".join([b"{}"] * (count - 5)) + b"]}}]}"


def sorted_spans(decode: Callable[[bytes], list]) -> Callable[[bytes], object]:
    """What POST /v1/traces does with a body of its type before it stores anything: decode it, sort its spans out."""
    return lambda body: sort_spans(decode(body), now_ms=NOW_MS)


def parsed_events(body: bytes) -> object:
    """What POST /v1/events does with a body before it stores anything: parse it, then each event."""
    return read_batch(body, now_ms=NOW_MS)


def read(reading: Callable[[bytes], object], body: bytes) -> tuple[float, str]:
    """CPU seconds the handler spends on `body` before it stores anything, and whether it reads it or refuses it
    (413)."""
    start = time.process_time()
    try:
        reading(body)
    except (TooManySpans, TooLarge):
        return time.process_time() - start, "413"
    return time.process_time() - start, "read"


def main() -> None:
    one_span = attributes_in_one_span(distinct=False)
    protobuf, otlp_json = sorted_spans(decode_protobuf), sorted_spans(decode_json)
    requests = {
        "stock SDK request, 512 agent spans (protobuf)": (protobuf, stock_request()),
        "one span, attributes to the limit (protobuf)": (protobuf, one_span),
        "one span, distinct attribute keys (protobuf)": (protobuf, attributes_in_one_span(distinct=True)),
        "one span, distinct keys to MAX_ATTRIBUTES (protobuf)": (protobuf, attributes_in_one_span(
            distinct=True, most=MAX_ATTRIBUTES - 4)),
        f"{MAX_SPANS} spans, attributes to the limit (protobuf)": (protobuf, attributes_across_spans()),
        "one span, empty attributes to the limit (protobuf)": (protobuf,
                                                              empty_attributes((MAX_TRACES_BYTES - 16) // 2)),
        "one span, empty attributes to MAX_ATTRIBUTES (protobuf)": (protobuf, empty_attributes(MAX_ATTRIBUTES)),
        "one span, attributes to the limit (JSON)": (otlp_json, as_json(one_span)),
        "no span, integers to the limit (JSON)": (otlp_json, numbers_in_json()),
        "no span, empty objects to MAX_JSON_CONTAINERS (JSON)": (otlp_json, objects_in_json()),
        "events: empty objects to the limit": (parsed_events, objects_in_events((MAX_BATCH_BYTES - 32) // 3)),
        "events: empty objects to MAX_BATCH_CONTAINERS": (parsed_events, objects_in_events(MAX_BATCH_CONTAINERS)),
    }
    print(f"{'request':<56} {'bytes':>9} {'gzip':>9} {'CPU':>8} answer")
    for name, (reading, body) in requests.items():
        cpu, answer = read(reading, body)
        print(f"{name:<56} {len(body):>9,} {len(gzip.compress(body)):>9,} {cpu:>7.3f}s {answer}")


if __name__ == "__main__":
    main()
