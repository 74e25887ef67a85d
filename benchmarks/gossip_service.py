"""vouchnet gossip (gossip.service over gossip.host) among N node processes on loopback, each with its own replica
and record store: time from a record's acceptance at its issuer to its acceptance at every other node (p50/p99),
delivery at rising offered loads (records/s), CPU per record per node; batched, or one record per message.
benchmarks/gossip.py puts measure() next to bare_gossipsub.measure() (the same LoadResult, in records).
Usage: python benchmarks/gossip_service.py [--nodes 5] [--loads 100 500 1000] [--unbatched] [--protocols ...]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import trio

# The repository root before this folder: benchmarks/ledger.py would otherwise shadow the ledger package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness  # noqa: E402

_TICK = 0.005  # seconds between the publisher's group commits of the records due


@dataclass(frozen=True)
class Setup:
    """What every node process runs with."""

    batch_bytes: int = 65536  # 1: one record per message
    linger: float = 0.1
    protocols: tuple[str, ...] | None = None  # GossipSub versions offered; None: the host's default
    org_records_per_second: float = 1e6  # per-org and per-peer limits out of the way unless asked for
    peer_messages_per_second: float = 1e6


def measure(nodes: int = 5, loads: tuple[float, ...] = (100, 250, 500, 1000), seconds: float = 8.0,
            publishers: int = 1, setup: Setup = Setup(), degree: int = 4
            ) -> tuple[float, list[harness.LoadResult]]:
    """Start `nodes` node processes, link each to up to `degree` earlier ones, and run one phase per load.

    The load (records/s) is split evenly among the first `publishers` nodes. Returns the mean CPU an idle node
    uses (ms per second) and one result per load; CPU figures are per record published anywhere in the network
    (what a node spends on the topic's whole traffic, its own issuing included), the idle CPU included.
    """
    seeds = [os.urandom(32) for _ in range(nodes)]
    with harness.node_processes(_node, [(seed, seeds, setup) for seed in seeds]) as pipes:
        harness.link(pipes, degree)
        _warm_up(pipes)
        idle = harness.idle_cpu(pipes, seconds, lambda pipe: harness.ask(pipe, "report")[2])
        return idle, [_phase(pipes, publishers, load, seconds) for load in loads]


def _warm_up(pipes: list[Connection]) -> None:
    """Publish until every node has accepted a record from every other, so every mesh has formed."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pipe in pipes:
            harness.ask(pipe, "reset")
        issued = [set(harness.ask(pipe, "publish", 20.0, 0.25)[0]) for pipe in pipes]
        time.sleep(0.5)
        heard = [set(harness.ask(pipe, "report")[1]) for pipe in pipes]
        if all(ids <= got for i, ids in enumerate(issued) for j, got in enumerate(heard) if i != j):
            return
    raise RuntimeError("gossip did not reach every node within 60 s")


def _phase(pipes: list[Connection], publishers: int, load: float, seconds: float) -> harness.LoadResult:
    for pipe in pipes:
        harness.ask(pipe, "reset")
    for pipe in pipes[:publishers]:
        pipe.send(("publish", load / publishers, seconds))
    issued: dict[bytes, int] = {}  # record id -> when its issuer accepted it (CLOCK_MONOTONIC ns, all processes)
    elapsed = 0.0
    for pipe in pipes[:publishers]:
        times, took = harness.ask(pipe)
        issued.update(times)
        elapsed = max(elapsed, took)
    expected = len(issued) * (len(pipes) - 1)
    harness.wait_for_stragglers(lambda: sum(harness.ask(pipe, "count") for pipe in pipes), expected)
    reports = [harness.ask(pipe, "report") for pipe in pipes]
    received = sum(1 for _, got, _ in reports for record in got if record in issued)
    latencies = sorted(t - issued[r] for _, got, _ in reports for r, t in got.items() if r in issued)
    cpu = [seconds_used for _, _, seconds_used in reports]
    return harness.LoadResult(
        offered=load,
        achieved=len(issued) / elapsed,
        published=len(issued),
        delivered_fraction=received / expected,
        p50_ms=harness.quantile(latencies, 0.50) / 1e6,
        p99_ms=harness.quantile(latencies, 0.99) / 1e6,
        # CPU per record the network carried: what each node spends on the whole topic's traffic
        cpu_ms_publisher=1000 * statistics.mean(cpu[:publishers]) / len(issued),
        cpu_ms_receiver=1000 * statistics.mean(cpu[publishers:]) / len(issued) if publishers < len(pipes) else math.nan,
    )


async def _node(pipe: Connection, seed: bytes, seeds: list[bytes], setup: Setup) -> None:
    from nacl.signing import SigningKey

    from gossip.host import HostConfig, open_host
    from gossip.replica import Replica
    from gossip.service import GossipService
    from gossip.store import RecordStore
    from node.config import Limits
    from vouching import Record, did_key

    config = HostConfig(gossip_protocols=setup.protocols) if setup.protocols else HostConfig()
    limits = Limits(gossip_batch_bytes=setup.batch_bytes, org_records_per_second=setup.org_records_per_second,
                    peer_messages_per_second=setup.peer_messages_per_second)
    roots = tuple(did_key(bytes(SigningKey(s).verify_key)) for s in seeds)
    accepted: dict[bytes, int] = {}  # others' record id -> when this replica accepted it, since the last reset
    cpu_mark = time.process_time()

    def hear(records: list[Record]) -> None:
        now = time.monotonic_ns()
        for record in records:
            if record.iss != replica.did:
                accepted[record.id] = now

    async def reset() -> str:
        nonlocal cpu_mark
        accepted.clear()
        cpu_mark = time.process_time()
        return "ok"

    async def count() -> int:
        return len(accepted)

    async def report() -> tuple[object, dict[bytes, int], float]:
        return service.stats(), accepted, time.process_time() - cpu_mark

    async def publish(rate: float, seconds: float) -> tuple[dict[bytes, int], float]:
        return await _issue(replica, rate, seconds)

    with tempfile.TemporaryDirectory() as directory, RecordStore.open(Path(directory)) as store:
        replica = Replica(SigningKey(seed), store, roots=roots, max_hops=3, held_limit=1_000_000)
        replica.listeners.append(hear)
        async with open_host(seed, ["/ip4/127.0.0.1/tcp/0"], config=config) as host, trio.open_nursery() as nursery:
            service = GossipService(host, replica, network="bench", limits=limits, linger=setup.linger)
            await nursery.start(service.run)
            pipe.send(host.listen_addrs[0])
            await harness.serve(pipe, {"dial": harness.dialler(host), "reset": reset, "count": count,
                                       "report": report, "publish": publish})
            nursery.cancel_scope.cancel()


async def _issue(replica: object, rate: float, seconds: float) -> tuple[dict[bytes, int], float]:
    """Issue vouches at `rate` for `seconds`, committing the records due every tick in one batch (as a node's
    API would under load); returns when each was accepted here, and the time taken.
    """
    from vouching import sign_record, verify_record, vouch_body

    subject = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    issued: dict[bytes, int] = {}
    total = int(rate * seconds)
    start = time.monotonic()
    while len(issued) < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        batch = []
        for _ in range(due - len(issued)):
            head = batch[-1] if batch else replica.store.head(replica.did)
            raw = sign_record(replica.key, "vouch", vouch_body(subject, 0.5, "operator"),
                              seq=head.seq + 1 if head else 1, prev=head.id if head else None)
            batch.append(verify_record(raw))
        if batch:
            replica.accept(batch)
            now = time.monotonic_ns()
            issued.update((record.id, now) for record in batch)
        await trio.sleep(_TICK)
    return issued, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="vouchnet gossip among node processes on loopback.")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--loads", type=float, nargs="+", default=[100, 250, 500, 1000], help="records/s")
    parser.add_argument("--seconds", type=float, default=8.0, help="publishing time per load")
    parser.add_argument("--unbatched", action="store_true", help="one record per message")
    parser.add_argument("--linger", type=float, default=Setup.linger, help="seconds a record may wait for company")
    parser.add_argument("--protocols", nargs="+", help="GossipSub versions to offer (default: 1.2 and 1.1)")
    args = parser.parse_args(argv)
    setup = Setup(batch_bytes=1 if args.unbatched else Setup.batch_bytes, linger=args.linger,
                  protocols=tuple(args.protocols) if args.protocols else None)
    print(f"vouchnet gossip, {args.nodes} node processes on loopback, {args.publishers} publishing, "
          f"{'one record per message' if args.unbatched else f'batches up to {setup.batch_bytes} bytes'}, "
          f"linger {setup.linger * 1000:.0f} ms, protocols {args.protocols or 'default'}, {os.cpu_count()} CPUs")
    idle, results = measure(args.nodes, tuple(args.loads), args.seconds, args.publishers, setup)
    harness.print_table(idle, results, "rec")
    return 0


if __name__ == "__main__":
    sys.exit(main())
