"""The bytes of memory what is read from a telemetry request's body holds until the request is answered (DESIGN §7),
as sys.getsizeof counts them: its events (each with its own text, numbers and attributes), and what it says of
the rest. The budget of request bodies (node.body_budget) takes them with the body's: they are 3.2-3.5 times the
body's bytes for agents' spans (14.7 MB for 4 MiB, by tracemalloc, which these counts come within 1% of).

A request takes room for them before its body is read, SPANS_READ_PER_BYTE or EVENTS_READ_PER_BYTE a byte of its
body (node.ingest_api), and gives back what its read turns out not to hold. A read holding more (spans or events
with little but an agent's did, invalid events of a few bytes, each with its error) takes the rest once read.

A measure, not a walk of every object: text and numbers the events share with others (a category's name, a small
integer) are counted once an event, a few bytes more than they hold.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .events import Event
from .ingest import ReadBatch
from .otlp import SpanBatch

# What a read holds a byte of its body, as these count it: 4.54 for the Python SDK's spans of an agent's tool call (its
# did, the operation and the tool's name), 4.15 with a service's name besides, 5.2 for spans of nothing but the did and
# an operation; events of a POST /v1/events batch 2.8-3.5 with an attribute or two, 8.1 with 16 small integers each.
SPANS_READ_PER_BYTE = 4.6
EVENTS_READ_PER_BYTE = 4.0


def events_bytes(events: Sequence[Event]) -> int:
    """The bytes `events` hold: the sequence, each event, its agent, time, name, duration and attributes."""
    size = sys.getsizeof
    return size(events) + sum(size(event) + size(event.agent) + size(event.ts) + size(event.name)
                              + size(event.duration_ms) + size(event.attrs) + sum(map(size, event.attrs))
                              + sum(map(size, event.attrs.values())) for event in events)


def span_batch_bytes(batch: SpanBatch) -> int:
    """The bytes an OTLP request's spans sorted out hold: the events, each one's span (index and name), and each
    rejected span's answer (its rule and reason, most often one text for many, counted once)."""
    size = sys.getsizeof
    rules = {id(text): text for rejected in batch.rejected for text in (rejected.rule, rejected.reason)}
    return (events_bytes(batch.events) + size(batch.spans)
            + sum(size((index, name)) + size(index) + size(name) for index, name in batch.spans)
            + size(batch.rejected) + sum(size(rejected) + size(rejected.detail) for rejected in batch.rejected)
            + sum(map(size, rules.values())))


def read_batch_bytes(batch: ReadBatch) -> int:
    """The bytes a `POST /v1/events` batch read holds: the valid events, and each invalid one's index and error (its
    message and reason)."""
    size = sys.getsizeof
    return events_bytes(batch.events) + size(batch.rejected) + sum(
        size((index, error)) + size(index) + size(error) + size(error.args) + sum(map(size, error.args))
        + size(vars(error)) + sum(map(size, vars(error).values())) for index, error in batch.rejected)
