"""Baseline: bare GossipSub (gossip.host, accept-all validator, one message per record) among N node processes
on loopback: publish-to-receive latency p50/p99 and CPU per message per node at rising offered loads.
benchmarks/gossip.py imports measure() for the same figures next to vouchnet's (benchmarks/gossip_service.py).
Usage: python benchmarks/bare_gossipsub.py [--nodes 5] [--size 512] [--protocols /meshsub/1.1.0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

import trio

# The repository root before this folder: benchmarks/ledger.py would otherwise shadow the ledger package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness  # noqa: E402

TOPIC = "/vouchnet/bench/bare"
_HEADER = struct.Struct(">IQQ")  # phase, index, scheduled publish time (CLOCK_MONOTONIC ns, shared by processes)
_WARMUP_PHASE = 0


def measure(nodes: int = 5, loads: tuple[float, ...] = (10, 20, 40, 80), seconds: float = 8.0,
            size: int = 512, protocols: tuple[str, ...] | None = None, degree: int = 4
            ) -> tuple[float, list[harness.LoadResult]]:
    """Start `nodes` processes, link each to up to `degree` earlier ones, and run one phase per load.

    Returns the mean CPU an idle node uses (ms per second: heartbeats and the like) and one result per load.
    """
    with harness.node_processes(_node, [(size, protocols)] * nodes) as pipes:
        harness.link(pipes, degree)
        _warm_up(pipes)
        idle = harness.idle_cpu(pipes, seconds, lambda pipe: harness.ask(pipe, "report", _WARMUP_PHASE)[2])
        return idle, [_phase(pipes, phase, load, seconds) for phase, load in enumerate(loads, start=1)]


def _warm_up(pipes: list[Connection]) -> None:
    """Publish until every node has received something, so every mesh is formed before measuring."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        harness.ask(pipes[0], "publish", _WARMUP_PHASE, 20.0, 0.25)
        if all(harness.ask(pipe, "report", _WARMUP_PHASE)[0] > 0 for pipe in pipes[1:]):
            return
    raise RuntimeError("gossip did not reach every node within 60 s")


def _phase(pipes: list[Connection], phase: int, load: float, seconds: float) -> harness.LoadResult:
    for pipe in pipes:
        harness.ask(pipe, "reset")
    published, elapsed = harness.ask(pipes[0], "publish", phase, load, seconds)
    expected = published * (len(pipes) - 1)
    harness.wait_for_stragglers(lambda: sum(harness.ask(p, "report", phase)[0] for p in pipes[1:]), expected)
    reports = [harness.ask(pipe, "report", phase) for pipe in pipes]
    received = sum(count for count, _, _ in reports[1:])
    latencies = sorted(ns for _, lat, _ in reports[1:] for ns in lat)
    cpu = [seconds_used for _, _, seconds_used in reports]
    return harness.LoadResult(
        offered=load,
        achieved=published / elapsed,
        published=published,
        delivered_fraction=received / expected,
        p50_ms=harness.quantile(latencies, 0.50) / 1e6,
        p99_ms=harness.quantile(latencies, 0.99) / 1e6,
        cpu_ms_publisher=1000 * cpu[0] / published,
        cpu_ms_receiver=1000 * statistics.mean(c / max(1, r[0]) for c, r in zip(cpu[1:], reports[1:])),
    )


async def _node(pipe: Connection, size: int, protocols: tuple[str, ...] | None) -> None:
    from gossip.host import HostConfig, open_host

    config = HostConfig(gossip_protocols=protocols) if protocols else HostConfig()
    received: dict[int, list[int]] = {}  # phase -> latencies in ns
    cpu_mark = time.process_time()

    async def record(inbox: trio.MemoryReceiveChannel) -> None:
        async for _, data in inbox:
            phase, _, scheduled = _HEADER.unpack_from(data)
            received.setdefault(phase, []).append(time.monotonic_ns() - scheduled)

    async def reset() -> str:
        nonlocal cpu_mark
        cpu_mark = time.process_time()
        return "ok"

    async def report(phase: int) -> tuple[int, list[int], float]:
        latencies = received.get(phase, [])
        return len(latencies), latencies, time.process_time() - cpu_mark

    async with open_host(os.urandom(32), ["/ip4/127.0.0.1/tcp/0"], config=config) as host:
        inbox = await host.subscribe(TOPIC, lambda peer, data: True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(record, inbox)
            pipe.send(host.listen_addrs[0])

            async def publish(phase: int, rate: float, seconds: float) -> tuple[int, float]:
                return await _publish(host, size, phase, rate, seconds)

            await harness.serve(pipe, {"dial": harness.dialler(host), "reset": reset, "publish": publish,
                                       "report": report})
            nursery.cancel_scope.cancel()


async def _publish(host: object, size: int, phase: int, rate: float, seconds: float) -> tuple[int, float]:
    padding = bytes(max(0, size - _HEADER.size))
    start = time.monotonic_ns()
    count = int(rate * seconds)
    for index in range(count):
        scheduled = start + int(index * 1e9 / rate)
        await trio.sleep(max(0.0, (scheduled - time.monotonic_ns()) / 1e9))  # no wait when behind schedule
        await host.publish(TOPIC, _HEADER.pack(phase, index, scheduled) + padding)
    return count, (time.monotonic_ns() - start) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bare GossipSub baseline among node processes on loopback.")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--loads", type=float, nargs="+", default=[10, 20, 40, 80], help="messages/s")
    parser.add_argument("--seconds", type=float, default=8.0, help="publishing time per load")
    parser.add_argument("--size", type=int, default=512, help="message bytes")
    parser.add_argument("--protocols", nargs="+", help="GossipSub versions to offer (default: 1.2 and 1.1)")
    args = parser.parse_args(argv)
    print(f"bare GossipSub, {args.nodes} node processes on loopback, {args.size}-byte messages, "
          f"protocols {args.protocols or 'default'}, {os.cpu_count()} CPUs")
    idle, results = measure(args.nodes, tuple(args.loads), args.seconds, args.size,
                            tuple(args.protocols) if args.protocols else None)
    harness.print_table(idle, results, "msg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
