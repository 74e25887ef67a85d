"""Whether requests that hold the room for request bodies (node.body_budget) keep an exporter's requests out
(DESIGN §7): figures, no targets; not a test. `holders` requests each send all but the last byte of a body at the
limit (node.ingest_api.MAX_TRACES_BYTES, uncompressed), then nothing for `hold` seconds, as one process may on as
many connections (with `[api] traces_need_token = false`, any process that reaches the API); or, with --queued, each
of `holders` clients posts, one request after another while the exporter runs, 12 KiB of gzip that inflates to a body
at the limit the node is slow to read (OTLP/JSON, one span's attributes: benchmarks/otlp_attacks.py), queueing
bodies behind the node's reads (node.ingest_api.READS_AT_ONCE). Meanwhile an exporter posts the stock SDK's request
of 512 agent spans (benchmarks/otlp_attacks.py) `requests` times, one after another. Prints the exporter's answers by
status and the longest it waited for one, and the holders' answers.

    python benchmarks/otlp_held_bodies.py [--holders 16] [--hold 10] [--requests 5] [--queued]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import sys
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import trio  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from benchmarks.otlp_attacks import as_json, attributes_in_one_span, stock_request  # noqa: E402
from benchmarks.otlp_memory import ingest_app, one_long_span  # noqa: E402

HEADERS = {"Content-Type": "application/x-protobuf"}


async def held_and_exported(app: FastAPI, holders: int, hold_s: float, requests: int,
                            queued: bool) -> tuple[collections.Counter[int], collections.Counter[int], float]:
    """The holders' answers by status, the exporter's, and the longest the exporter waited for an answer (s)."""
    held: collections.Counter[int] = collections.Counter()
    exported: collections.Counter[int] = collections.Counter()
    longest = 0.0
    body, stock = one_long_span(), stock_request()
    slow_to_read = gzip.compress(as_json(attributes_in_one_span(distinct=False)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n", timeout=None) as client:

        async def slowly() -> AsyncIterator[bytes]:
            yield body[:-1]
            await trio.sleep(hold_s)
            yield body[-1:]

        async def hold() -> None:
            held[(await client.post("/v1/traces", content=slowly(), headers=HEADERS)).status_code] += 1

        async def queue() -> None:
            while True:
                answer = await client.post("/v1/traces", content=slow_to_read,
                                           headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
                held[answer.status_code] += 1

        async with trio.open_nursery() as nursery:
            for _ in range(holders):
                nursery.start_soon(queue if queued else hold)
            await trio.sleep(0.5)  # (each holder has sent what it sends at once)
            for _ in range(requests):
                start = trio.current_time()
                exported[(await client.post("/v1/traces", content=stock, headers=HEADERS)).status_code] += 1
                longest = max(longest, trio.current_time() - start)
            if queued:
                nursery.cancel_scope.cancel()
    return held, exported, longest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holders", type=int, default=16)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--queued", action="store_true", help="bodies queued behind the reads, not sent slowly")
    args = parser.parse_args()
    with ingest_app() as app:
        held, exported, longest = trio.run(held_and_exported, app, args.holders, args.hold, args.requests,
                                           args.queued)
    answers = ", ".join(f"{n} {status}" for status, n in sorted(exported.items()))
    held_answers = ", ".join(f"{n} {status}" for status, n in sorted(held.items()))
    holding = ("posting bodies slow to read, one after another" if args.queued
               else f"holding a body at the limit for {args.hold:g} s")
    print(f"{args.holders} requests {holding}: an exporter's {args.requests} requests answered {answers}, the "
          f"longest wait {longest:.1f} s; the holders answered {held_answers}")


if __name__ == "__main__":
    main()
