"""CPU per span of storing OTLP spans (DESIGN §7), as `POST /v1/traces` does after reading a request: the Ingestor's
prepare_spans, then its commit (on a worker thread, the write lock held, one durable append a request), into a
fresh data directory. Requests of the stock SDK's 512 agent spans (benchmarks/otlp_attacks.py), each of new spans,
then the same requests again, as an exporter retrying them sends them; then the CPU of forgetting their span ids
(IdempotencyStore.expire, which retention runs hourly on a worker thread). Figures, no targets; not a test.

    python benchmarks/otlp_ingest.py [--requests N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402

from benchmarks.otlp_attacks import NOW_MS, _agent_span, _request  # noqa: E402
from node.audit_log import AuditLog  # noqa: E402
from node.idempotency import IDEMPOTENCY_FILE, IdempotencyStore  # noqa: E402
from node.ingest import Ingestor, Pending  # noqa: E402
from node.metrics import Registry  # noqa: E402
from node.otlp import SpanBatch, decode_protobuf, sort_spans  # noqa: E402

SPANS = 512


class Clock:
    """The node's clock in ms, a ms on after each request."""

    now = NOW_MS

    def __call__(self) -> int:
        return self.now


async def store(ingestor: Ingestor, batches: list[SpanBatch], clock: Clock) -> float:
    """CPU seconds of this process (the worker threads' included) to prepare and commit every batch."""
    start = time.process_time()
    for batch in batches:
        if isinstance(prepared := ingestor.prepare_spans(batch), Pending):
            await ingestor.commit_async(prepared)
        clock.now += 1
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    bodies = [_request([_agent_span(r * SPANS + n) for n in range(SPANS)]) for r in range(args.requests)]
    batches = [sort_spans(decode_protobuf(body), now_ms=NOW_MS) for body in bodies]
    spans = args.requests * SPANS
    with tempfile.TemporaryDirectory() as directory:
        clock = Clock()
        audit = AuditLog.open(Path(directory), clock=clock)
        idempotency = IdempotencyStore.open(Path(directory), log_size=audit.size)
        ingestor = Ingestor(audit, idempotency, Registry())
        for label in ("new spans", "the same spans again"):
            cpu = trio.run(store, ingestor, batches, clock)
            print(f"{args.requests} requests of {SPANS} {label:<22} {cpu / spans * 1e6:7.1f} us of CPU a span, "
                  f"audit log {audit.size:,} entries")
        size = sum(p.stat().st_size for p in Path(directory).glob(IDEMPOTENCY_FILE + "*"))
        print(f"{IDEMPOTENCY_FILE} and its WAL: {size / spans:.1f} bytes a span")
        start = time.process_time()
        idempotency.expire(NOW_MS + args.requests - 1)  # all but the last request's
        print(f"expiry of the span ids: {(time.process_time() - start) / spans * 1e6:.1f} us of CPU a span")
        idempotency.close()
        audit.close()


if __name__ == "__main__":
    main()
