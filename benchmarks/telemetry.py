"""Telemetry figures against issue 4's targets: durable ingest through POST /v1/events (batches of 500, over HTTP on
loopback to the node's HTTP server), OTLP spans through POST /v1/traces, and digest generation for 10^4 active agents.

The node side runs here on trio, as in the daemon; the reporters run in another process, so that their CPU is not
the node's. Usage: python benchmarks/telemetry.py [--batches N] [--requests N] [--agents N] [--clients C]
[--only events|traces|digests]; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import trio  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: E402

from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from gossip.sync import IssuerIndex  # noqa: E402
from node.api.http_server import serve  # noqa: E402
from node.audit_log import AuditLog, wall_clock_ms  # noqa: E402
from node.digests import Digester, DigestState  # noqa: E402
from node.events import Event  # noqa: E402
from node.idempotency import IdempotencyStore  # noqa: E402
from node.ingest import Ingestor  # noqa: E402
from node.ingest_api import ingest_router  # noqa: E402
from node.metrics import LATENCY_BUCKETS, Registry, record_latency_listener  # noqa: E402
from node.stream import Broadcaster  # noqa: E402
from node.trust import TrustService  # noqa: E402
from vouching import DigestBody, did_key  # noqa: E402
from vouching.policy import DEFAULT_POLICY  # noqa: E402

BATCH = 500
SPANS_PER_REQUEST = 512  # the OpenTelemetry SDK's BatchSpanProcessor default
AGENTS = [did_key(bytes(SigningKey.generate().verify_key)) for _ in range(200)]


class Node:
    """The telemetry side of a node in a temporary directory, with the listeners node/daemon.py adds (the trust
    engine on accepted records and ingested events, the record latency histogram) and the sync service's issuer
    index. Not the gossip publish queue, which needs a host (a deque append per record of ours)."""

    def __init__(self, directory: Path) -> None:
        self.metrics = Registry()
        self.store = RecordStore.open(directory)
        self.replica = Replica(SigningKey.generate(), self.store, roots=(), max_hops=2, held_limit=100)
        self.audit = AuditLog.open(directory)
        self.idempotency = IdempotencyStore.open(directory, log_size=0)
        self.digester = Digester(self.audit, self.replica, DigestState.open(directory), self.metrics,
                                 epoch_ms=3_600_000)
        self.ingestor = Ingestor(self.audit, self.idempotency, self.metrics, listeners=[self.digester.observe])
        trust = TrustService(self.replica, roots=(), policy=DEFAULT_POLICY, broadcaster=Broadcaster(self.metrics),
                             metrics=self.metrics, recompute_interval=60.0,
                             epoch_ms=self.digester.epoch_ms)
        latency = record_latency_listener(self.metrics.histogram("record_latency_seconds", "Issue to acceptance",
                                                                 LATENCY_BUCKETS), self.replica.did, wall_clock_ms)
        self.replica.listeners += [trust.on_records, latency, IssuerIndex(self.store).add]
        self.ingestor.listeners.append(trust.on_events)


def event_batches(count: int) -> list[bytes]:
    now = wall_clock_ms()
    return [json.dumps({"events": [
        {"agent": AGENTS[(b * BATCH + i) % len(AGENTS)], "ts": now, "category": "tool", "name": f"tool-{i % 17}",
         "outcome": ("ok", "ok", "ok", "error", "denied")[i % 5], "duration_ms": 12.5, "high_risk": i % 9 == 0,
         "attrs": {"session": f"s-{b}", "step": i}}
        for i in range(BATCH)]}).encode() for b in range(count)]


def span_requests(count: int) -> list[bytes]:
    now_ns = time.time_ns()
    requests = []
    for r in range(count):
        request = trace_service_pb2.ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        attribute = resource_spans.resource.attributes.add()
        attribute.key, attribute.value.string_value = "service.name", "bench-agent"
        spans = resource_spans.scope_spans.add().spans
        for i in range(SPANS_PER_REQUEST):
            span = spans.add()
            span.trace_id, span.span_id = (r * 1000 + i).to_bytes(16, "big"), i.to_bytes(8, "big")
            span.name, span.start_time_unix_nano, span.end_time_unix_nano = "execute_tool", now_ns, now_ns + 3_000_000
            for key, value in (("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", f"tool-{i % 11}"),
                               ("gen_ai.agent.id", AGENTS[i % len(AGENTS)])):
                kv = span.attributes.add()
                kv.key, kv.value.string_value = key, value
            if i % 7 == 0:
                span.status.code = 2
        requests.append(request.SerializeToString())
    return requests


def _client(url: str, path: str, bodies: list[bytes], headers: dict[str, str], clients: int,
            result: multiprocessing.Queue) -> None:
    """A reporter process: `clients` connections post `bodies` between them; puts (seconds, failures)."""
    failures = []

    def post(share: list[tuple[int, bytes]]) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for n, body in share:
                response = client.post(path, content=body, headers={**headers, "Idempotency-Key": f"b{n}"})
                if response.status_code != 200:
                    failures.append(response.status_code)

    numbered = list(enumerate(bodies))
    threads = [threading.Thread(target=post, args=(numbered[i::clients],)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.put((time.perf_counter() - began, failures))


async def through_http(
    node: Node, path: str, bodies: list[bytes], headers: dict[str, str], clients: int
) -> tuple[float, float]:
    """(wall seconds for a reporter process to post every body to `path` on the node's HTTP server, CPU
    seconds the node's process spent meanwhile): on a shared machine the second says what one core sustains."""
    app = FastAPI()
    app.include_router(ingest_router(node.ingestor, refused=lambda status, code: None))
    context = multiprocessing.get_context("spawn")
    result = context.Queue()
    async with trio.open_nursery() as nursery:
        (url,) = await nursery.start(partial(serve, app, "127.0.0.1", 0, refused=lambda status, code: None,
                                             dropped=lambda reason: None))
        process = context.Process(target=_client, args=(url, path, bodies, headers, clients, result))
        process.start()
        cpu = time.process_time()
        seconds, failures = await trio.to_thread.run_sync(result.get)
        cpu = time.process_time() - cpu
        await trio.to_thread.run_sync(process.join)
        nursery.cancel_scope.cancel()
    if failures:
        raise SystemExit(f"{path}: {len(failures)} requests failed, e.g. HTTP {failures[0]}")
    return seconds, cpu


def digest_generation(directory: Path, agents: int) -> tuple[float, float, float]:
    """(seconds to digest an epoch of `agents` active agents, of which signing and storing, CPU seconds)."""
    node = Node(directory)
    now = wall_clock_ms() - 3_600_000  # an epoch in the past, so that it is due and its records' ts are later
    node.audit.clock = lambda: now
    dids = [did_key(bytes(SigningKey.generate().verify_key)) for _ in range(agents)]
    for start in range(0, agents, 1000):
        node.ingestor.submit([Event(did, now, "tool", "t", "ok") for did in dids[start:start + 1000] for _ in range(3)])
    issue = node.replica.issue_digests
    spent = [0.0]

    def timed_issue(bodies: list[DigestBody]) -> list:
        began = time.perf_counter()
        try:
            return issue(bodies)
        finally:
            spent[0] += time.perf_counter() - began

    node.replica.issue_digests = timed_issue  # type: ignore[method-assign]
    began, cpu = time.perf_counter(), time.process_time()
    # chunk by chunk, as DigestService closes an epoch: each chunk's records are gossiped and let go
    issued = sum(len(chunk) for chunk in node.digester.closing(now - now % 3_600_000 + 3_600_000))
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    assert issued == agents
    return seconds, spent[0], cpu


def line(name: str, value: float, unit: str, target: float | None, higher: bool = True) -> bool:
    passed = target is None or (value >= target if higher else value <= target)
    goal = "" if target is None else f"{'>=' if higher else '<='} {target:,.0f}"
    print(f"{name:<44} {value:>12,.2f} {unit:<9} {goal:<12} {'' if target is None else 'PASS' if passed else 'FAIL'}")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=400, help="event batches of 500 to post")
    parser.add_argument("--requests", type=int, default=60, help="OTLP requests of 512 spans to post")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4, help="concurrent connections of the reporter")
    parser.add_argument("--only", choices=("events", "traces", "digests"), help="measure this figure alone")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("events", "spans", "digests"):
            (root / name).mkdir()
        if args.only in (None, "events"):
            node = Node(root / "events")
            seconds, cpu = trio.run(through_http, node, "/v1/events", event_batches(args.batches),
                                    {"Content-Type": "application/json"}, args.clients)
            assert node.audit.size == args.batches * BATCH
            ok = line("ingest /v1/events (batches of 500, durable)", args.batches * BATCH / seconds, "events/s",
                      20_000) and ok
            line("  per second of the node's CPU", args.batches * BATCH / cpu, "events/s", None)
        if args.only in (None, "traces"):
            node = Node(root / "spans")
            seconds, cpu = trio.run(through_http, node, "/v1/traces", span_requests(args.requests),
                                    {"Content-Type": "application/x-protobuf"}, args.clients)
            assert node.audit.size == args.requests * SPANS_PER_REQUEST
            spans = args.requests * SPANS_PER_REQUEST
            ok = line("ingest /v1/traces (OTLP protobuf, 512/request)", spans / seconds, "spans/s", 5_000) and ok
            line("  per second of the node's CPU", spans / cpu, "spans/s", None)
        if args.only in (None, "digests"):
            total, signing, cpu = digest_generation(root / "digests", args.agents)
            ok = line(f"digests for {args.agents:,} active agents", total, "s", 1.0, higher=False) and ok
            line("  of which signing and storing (issue_digests)", signing, "s", None)
            line("  CPU time", cpu, "s", None)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
