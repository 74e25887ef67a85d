"""Catch-up sync figures against issue 7's target: records/s for a node that lacks 10^5 records, pulled from one
peer over real libp2p on loopback (two processes, one node each), and where the time goes on each side.

Usage: python benchmarks/sync.py [--records N] [--issuers K] [--page P] [--threads T | --processes P] [--profile]
Exits 1 if the catch-up rate misses its target (5,000 records/s). The server's store is built once and cached.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacl.signing import SigningKey  # noqa: E402

import gossip.sync  # noqa: E402
import gossip.sync_service  # noqa: E402
from gossip.host import open_host  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from gossip.sync import SyncLimits, check_page  # noqa: E402
from gossip.sync_service import SyncService  # noqa: E402
from vouching import did_key, sign_record, verify_record, vouch_body  # noqa: E402

TARGET = 5000.0  # records/s (issue 7, item 9)
LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
CACHE = Path(tempfile.gettempdir()) / "vouchnet-bench-sync"


class Timings:
    """Wall time spent inside wrapped calls, by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap_async(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed

    def wrap(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed


def _issuer_keys(issuers: int) -> list[SigningKey]:
    return [SigningKey(i.to_bytes(32, "big")) for i in range(1, issuers + 1)]


def build_server_store(directory: Path, records: int, issuers: int) -> None:
    """Sign `records` records spread over `issuers` orgs and accept them into a store (cached between runs)."""
    marker = directory / "built.json"
    if marker.exists() and json.loads(marker.read_text()) == {"records": records, "issuers": issuers}:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.iterdir():
        stale.unlink()
    print(f"building the server's store: {records:,} records of {issuers} issuers (once; cached in {directory})")
    keys = _issuer_keys(issuers)
    start = time.perf_counter()
    with RecordStore.open(directory) as store:
        replica = Replica(SigningKey(bytes(32)), store, roots=[did_key(bytes(k.verify_key)) for k in keys],
                          max_hops=1, held_limit=1)
        prev: dict[int, bytes | None] = dict.fromkeys(range(issuers))
        batch = []
        for n in range(records):
            i = n % issuers
            raw = sign_record(keys[i], "vouch", vouch_body(did_key(os.urandom(32)), 0.5, "operator"),
                              seq=n // issuers + 1, prev=prev[i], ts=1_700_000_000_000 + n)
            record = verify_record(raw)
            prev[i] = record.id
            batch.append(record)
            if len(batch) == 1000:
                replica.accept(batch)
                batch = []
        replica.accept(batch)
    marker.write_text(json.dumps({"records": records, "issuers": issuers}))
    print(f"  built in {time.perf_counter() - start:.1f} s")


async def serve(directory: Path, page: int) -> None:
    """The server node: its store, a host and a SyncService; prints its address, runs until stdin closes."""
    timings = Timings()
    RecordStore.issuer_range = timings.wrap(  # type: ignore[method-assign]
        "store.issuer_range", RecordStore.issuer_range)
    gossip.sync.encode_message = timings.wrap("encode pages", gossip.sync.encode_message)
    with RecordStore.open(directory) as store:
        replica = Replica(SigningKey(bytes(32)), store, roots=(), max_hops=1, held_limit=1)
        async with open_host(os.urandom(32), LOOPBACK) as host, trio.open_nursery() as nursery:
            service = SyncService(host, replica, network="test", limits=SyncLimits(page_records=page))
            await nursery.start(service.run)
            print(host.listen_addrs[0], flush=True)
            cpu = time.process_time()
            await trio.to_thread.run_sync(sys.stdin.read)
            print(json.dumps({"timings": timings.seconds, "cpu": time.process_time() - cpu}), flush=True)
            nursery.cancel_scope.cancel()


async def catch_up(server_addr: str, records: int, issuers: int, page: int, threads: int, processes: int
                   ) -> tuple[float, float, Timings, dict[str, int]]:
    """Connect an empty node to the server; seconds (wall, CPU) until it holds every record, and its timings."""
    timings = Timings()
    roots = [did_key(bytes(k.verify_key)) for k in _issuer_keys(issuers)]
    with tempfile.TemporaryDirectory() as tmp, RecordStore.open(Path(tmp)) as store:
        replica = Replica(SigningKey.generate(), store, roots=roots, max_hops=1, held_limit=1000)
        replica.accept = timings.wrap("accept (store append)", replica.accept)  # type: ignore[method-assign]
        done = trio.Event()
        replica.listeners.append(lambda batch: store.size >= records and done.set())
        async with open_host(os.urandom(32), LOOPBACK) as host, trio.open_nursery() as nursery:
            service = SyncService(host, replica, network="test", limits=SyncLimits(page_records=page),
                                  verify_threads=threads, verify_processes=processes)
            service._verify = timings.wrap_async("verify (check_page)", service._verify)  # type: ignore[method-assign]
            await nursery.start(service.run)
            start, cpu = time.perf_counter(), time.process_time()
            await host.connect(server_addr)
            with trio.fail_after(600):
                await done.wait()
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            nursery.cancel_scope.cancel()
        return elapsed, cpu, timings, dict(service.stats.errors)


def _sample(directory: Path, count: int = 10_000) -> list[bytes]:
    with RecordStore.open(directory) as store:
        return store.ledger.entries(0, min(count, store.size))


def verify_breakdown(raws: list[bytes]) -> dict[str, float]:
    """Where checking a record goes, from a profile (which inflates the Python parts): share of the time."""
    profiler = cProfile.Profile()
    profiler.runcall(check_page, raws)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values())  # tottime of every function
    parts = {"Ed25519 signature (libsodium)": "crypto_sign_open", "base58 did decoding": "b58decode",
             "CBOR decode and determinism check": "cbor"}
    shares = dict.fromkeys(parts, 0.0)
    for (filename, _, function), entry in stats.items():
        for part, marker in parts.items():
            if marker in function or marker in filename:
                shares[part] += entry[2] / total
    return shares


def verify_threads(raws: list[bytes]) -> dict[int, float]:
    """Microseconds per record to check records on 1 and 2 threads in parallel, nothing else running:
    whether PyNaCl releases the GIL in libsodium's signature check (it does if 2 threads beat 1)."""
    result = {}
    for threads in (1, 2):
        share = -(-len(raws) // threads)
        workers = [threading.Thread(target=check_page, args=(raws[i:i + share],)) for i in range(0, len(raws), share)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        result[threads] = (time.perf_counter() - start) / len(raws) * 1e6
    return result


@contextmanager
def server_process(directory: Path, page: int) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(directory), "--page", str(page)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        yield process, process.stdout.readline().strip()
    finally:
        if process.poll() is None:
            process.kill()


@dataclass(frozen=True)
class CatchUp:
    """One catch-up: how long it took, and what it cost each side (seconds, in all and by part)."""

    records: int
    elapsed: float
    cpu: float  # the catching-up node's
    server_cpu: float
    timings: dict[str, float]
    server_timings: dict[str, float]
    errors: dict[str, int]

    @property
    def rate(self) -> float:
        return self.records / self.elapsed


def measure(records: int, issuers: int, page: int = 500, threads: int = 0, processes: int = 0,
            profile: bool = False) -> CatchUp:
    """An empty node catches up `records` records of `issuers` orgs from a server process (built once, cached)."""
    directory = CACHE / f"{records}-{issuers}"
    build_server_store(directory, records, issuers)
    with server_process(directory, page) as (process, addr):
        run = lambda: trio.run(catch_up, addr, records, issuers, page, threads, processes)  # noqa: E731
        if profile:
            profiler = cProfile.Profile()
            elapsed, cpu, timings, errors = profiler.runcall(run)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        else:
            elapsed, cpu, timings, errors = run()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()
        server = json.loads(process.stdout.readline())
        process.wait(timeout=30)
    return CatchUp(records, elapsed, cpu, server["cpu"], dict(timings.seconds), server["timings"], errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--issuers", type=int, default=100)
    parser.add_argument("--page", type=int, default=500, help="records per page (limits.sync_page_records)")
    parser.add_argument("--threads", type=int, default=0, help="worker threads checking signatures (0: the event loop)")
    parser.add_argument("--processes", type=int, default=0,
                        help="worker processes checking signatures instead (the node's [p2p] verify_processes)")
    parser.add_argument("--profile", action="store_true", help="cProfile the catching-up node")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("gossip").setLevel(logging.INFO)  # a failed or refused sync round says why
    if args.serve:
        trio.run(serve, args.serve, args.page)
        return 0

    if args.threads and args.processes:
        parser.error("--threads and --processes: choose one")
    result = measure(args.records, args.issuers, args.page, args.threads, args.processes, args.profile)
    sample = _sample(CACHE / f"{args.records}-{args.issuers}")
    alone, shares = verify_threads(sample), verify_breakdown(sample)
    rate, n = result.rate, args.records
    mode = (f"on {args.threads} worker thread(s)" if args.threads else
            f"in {args.processes} worker process(es)" if args.processes else "on the event loop")
    print(f"catch-up of {n:,} records from {args.issuers} issuers, pages of {args.page}, signatures checked {mode}")
    print(f"  {'catch-up rate':<40} {rate:>10,.0f} records/s   (target >= {TARGET:,.0f})  "
          f"{'PASS' if rate >= TARGET else 'FAIL'}")
    print(f"  {'elapsed':<40} {result.elapsed:>10.2f} s   (load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs)")
    print(f"  {'CPU per record, catching-up node':<40} {result.cpu / n * 1e6:>10.1f} us")
    print(f"  {'CPU per record, serving node':<40} {result.server_cpu / n * 1e6:>10.1f} us")
    print(f"  {'rate if each node had a CPU to itself':<40} {n / max(result.cpu, result.server_cpu):>10,.0f} records/s")
    print("  client, per record:")
    for name, seconds in sorted(result.timings.items()):
        print(f"    {name:<38} {seconds / n * 1e6:>10.1f} us")
    rest = result.elapsed - sum(result.timings.values())
    print(f"    {'everything else (net, decode, loop)':<38} {rest / n * 1e6:>10.1f} us")
    print("  server, per record:")
    for name, seconds in sorted(result.server_timings.items()):
        print(f"    {name:<38} {seconds / n * 1e6:>10.1f} us")
    if result.errors:
        print(f"  errors: {result.errors}")
    print(f"checking records alone (gossip.validation.check_record): {alone[1]:.1f} us/record on one thread, "
          f"{alone[2]:.1f} us/record on two in parallel; of its time (profiled):")
    for part, share in shares.items():
        print(f"    {part:<38} {share:>10.0%}")
    return 0 if rate >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
