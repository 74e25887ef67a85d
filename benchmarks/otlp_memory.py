"""Memory a flood of `POST /v1/traces` requests makes a node hold at once (DESIGN §7): figures, no targets; not a
test. Each request is 4 KiB of gzip that inflates to the body limit (node.ingest_api.MAX_TRACES_BYTES), as a process
without the token may send on each of the API's connections; all are sent at once, so each waits its turn to be read
(node.ingest_api.READS_AT_ONCE) holding what it was let hold. With --agents, each is gzip of agents' spans to the
limit (16,643 tool calls), whose events, read, take some 3.5 times the body until the request is answered. Prints
the process's peak RSS above its size before the flood, the answers by status, the time they took, and how many
bodies were inflated, and read (their spans sorted out), for requests then answered 503 busy: for nothing.

    python benchmarks/otlp_memory.py [requests] [--agents]
"""

from __future__ import annotations

import collections
import gzip
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import trio  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: E402

from benchmarks.otlp_attacks import agent_spans  # noqa: E402
from node import ingest_api  # noqa: E402
from node.audit_log import AuditLog  # noqa: E402
from node.idempotency import IdempotencyStore  # noqa: E402
from node.ingest import Ingestor  # noqa: E402
from node.ingest_api import MAX_TRACES_BYTES, ingest_router  # noqa: E402
from node.metrics import Registry  # noqa: E402
from node.otlp import MalformedSpan, Span, SpanBatch  # noqa: E402


def one_long_span() -> bytes:
    """A request of one span whose name fills the body limit."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(name="a" * (MAX_TRACES_BYTES - 64))
    return request.SerializeToString()


def inflating_request() -> bytes:
    """one_long_span gzip-compressed: about 4 KiB."""
    return gzip.compress(one_long_span())


def agents_request() -> bytes:
    """A request of agents' tool calls as many as the body limit holds, gzip-compressed."""
    each = len(agent_spans(2)) - len(agent_spans(1))
    return gzip.compress(agent_spans((MAX_TRACES_BYTES - 64) // each))


@contextmanager
def ingest_app() -> Iterator[FastAPI]:
    """An app of the ingest endpoints alone, over a fresh data directory."""
    with tempfile.TemporaryDirectory() as directory:
        audit = AuditLog.open(Path(directory))
        idempotency = IdempotencyStore.open(Path(directory), log_size=0)
        app = FastAPI()
        app.include_router(ingest_router(Ingestor(audit, idempotency, Registry()), refused=lambda status, code: None))
        try:
            yield app
        finally:
            idempotency.close()
            audit.close()


async def flood(app: FastAPI, body: bytes, count: int) -> collections.Counter[int]:
    """`count` requests of `body` at once; their answers' statuses."""
    statuses: collections.Counter[int] = collections.Counter()
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n") as client:

        async def post() -> None:
            statuses[(await client.post("/v1/traces", content=body, headers=headers)).status_code] += 1

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(post)
    return statuses


def counting_reads() -> tuple[list[int], list[int]]:
    """One item appended to the first list for each request body inflated, to the second for each read (its spans
    sorted out), from now on."""
    inflated: list[int] = []
    read: list[int] = []
    inflate, sort_spans = ingest_api._inflate, ingest_api.sort_spans

    def inflate_counted(*arguments: Any) -> Any:  # (a coroutine function before read_body took room beforehand)
        inflated.append(1)
        return inflate(*arguments)

    def sort_spans_counted(spans: list[Span | MalformedSpan], *, now_ms: int) -> SpanBatch:
        read.append(1)
        return sort_spans(spans, now_ms=now_ms)

    ingest_api._inflate, ingest_api.sort_spans = inflate_counted, sort_spans_counted
    return inflated, read


def main() -> None:
    arguments = [argument for argument in sys.argv[1:] if argument != "--agents"]
    count = int(arguments[0]) if arguments else 200
    body = agents_request() if "--agents" in sys.argv else inflating_request()
    with ingest_app() as app:
        inflated, read = counting_reads()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        statuses = trio.run(flood, app, body, count)
        took = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    answers = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    print(f"{count} requests of {len(body):,} bytes of gzip (up to {MAX_TRACES_BYTES:,} inflated) at once: "
          f"peak RSS +{(peak - before) / 1024:,.0f} MiB, answers {answers}, in {took:.1f} s; "
          f"for nothing: {len(inflated) - statuses[200]} inflated, {len(read) - statuses[200]} read")


if __name__ == "__main__":
    main()
