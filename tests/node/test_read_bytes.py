"""node.read_bytes: what a telemetry request's read holds until it is answered, which the budget of request bodies
takes with the body's (node.ingest_api), counted within 15% below and 25% above what the allocator counts
(tracemalloc)."""

import gc
import json
import tracemalloc
from collections.abc import Callable

import pytest

from node.ingest import read_batch
from node.otlp import decode_protobuf, sort_spans
from node.read_bytes import read_batch_bytes, span_batch_bytes

from ..factories import new_did
from .telemetry_node import Clock
from .test_otlp import as_protobuf, json_request, json_span, without_agent

NOW = Clock().now
AGENT = new_did()


def allocated(read: Callable[[], object]) -> tuple[object, int]:
    """What `read()` returns, and the bytes it left allocated."""
    gc.collect()
    tracemalloc.start()
    try:
        result = read()
        return result, tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def events_batch(outcome: str) -> bytes:
    """A POST /v1/events body of 1,000 events with attributes, each of outcome `outcome`."""
    event = {"agent": AGENT, "ts": NOW - 1000, "category": "tool", "name": "search", "outcome": outcome,
             "attrs": {"query": "flights to Lisbon", "results": 12}}
    return json.dumps({"events": [event] * 1000}).encode()


@pytest.mark.parametrize("spans", [lambda: [json_span(AGENT) for _ in range(512)],
                                   lambda: [without_agent(json_span(AGENT)) for _ in range(512)]],
                         ids=["agents' spans", "rejected spans"])
def test_a_trace_request_s_read_is_counted_as_allocated(spans):
    """The stock SDK's 512 spans: 0.46 MB of events from 0.13 MB of protobuf, which the budget counted as 0.13."""
    body = as_protobuf(json_request(*spans()))
    batch, held = allocated(lambda: sort_spans(decode_protobuf(body), now_ms=NOW))
    assert held > len(body)
    assert 0.85 * held <= span_batch_bytes(batch) <= 1.25 * held


@pytest.mark.parametrize("outcome", ["ok", "x" * 1000], ids=["valid", "invalid"])
def test_an_events_batch_s_read_is_counted_as_allocated(outcome):
    """Each invalid event's error kept its traceback, whose frames held the batch's every value parsed: 3.7 MB for
    1,000 invalid events in 1.2 MB, where their errors are 0.6 MB."""
    body = events_batch(outcome)
    batch, held = allocated(lambda: read_batch(body, now_ms=NOW))
    assert 0.85 * held <= read_batch_bytes(batch) <= 1.25 * held
