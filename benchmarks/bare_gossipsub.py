"""Baseline: bare GossipSub (gossip.host, accept-all validator, one message per record) among N node processes
on loopback: publish-to-receive latency p50/p99 and CPU per message per node at rising offered loads.
benchmarks/gossip.py imports measure() for the same figures next to vouchnet's. Run from the repository root:
`PYTHONPATH=. python benchmarks/bare_gossipsub.py [--nodes 5] [--size 512] [--protocols /meshsub/1.1.0]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import struct
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import trio

TOPIC = "/vouchnet/bench/bare"
_HEADER = struct.Struct(">IQQ")  # phase, index, scheduled publish time (CLOCK_MONOTONIC ns, shared by processes)
_WARMUP_PHASE = 0


@dataclass(frozen=True)
class LoadResult:
    offered: float  # messages/s the publisher was asked for
    achieved: float  # messages/s it managed to publish
    published: int
    delivered_fraction: float  # of published x receivers
    p50_ms: float
    p99_ms: float
    cpu_ms_publisher: float  # CPU per published message, publishing node
    cpu_ms_receiver: float  # CPU per received message, mean over receiving nodes


def measure(nodes: int = 5, loads: tuple[float, ...] = (10, 20, 40, 80), seconds: float = 8.0,
            size: int = 512, protocols: tuple[str, ...] | None = None, degree: int = 4
            ) -> tuple[float, list[LoadResult]]:
    """Start `nodes` processes, link each to up to `degree` earlier ones, and run one phase per load.

    Returns the mean CPU an idle node uses (ms per second: heartbeats and the like) and one result per load.
    """
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for _ in range(nodes):
        ours, theirs = context.Pipe()
        worker = context.Process(target=_worker, args=(theirs, size, protocols), daemon=True)
        worker.start()
        pipes.append(ours)
        workers.append(worker)
    try:
        addrs = [_ask(pipe) for pipe in pipes]
        rng = random.Random(1)
        for i, pipe in enumerate(pipes):
            pipe.send(("dial", rng.sample(addrs[:i], min(i, degree))))
        for pipe in pipes:
            _ask(pipe)
        _warm_up(pipes)
        idle = _idle_cpu(pipes, seconds)
        return idle, [_phase(pipes, phase, load, seconds) for phase, load in enumerate(loads, start=1)]
    finally:
        for pipe in pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass  # that node is gone already
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()


def _ask(pipe: Connection, *command: object) -> object:
    if command:
        pipe.send(command)
    reply = pipe.recv()
    if isinstance(reply, BaseException):
        raise RuntimeError("a benchmark node failed") from reply
    return reply


def _warm_up(pipes: list[Connection]) -> None:
    """Publish until every node has received something, so every mesh is formed before measuring."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _ask(pipes[0], "publish", _WARMUP_PHASE, 20.0, 0.25)
        if all(_ask(pipe, "report", _WARMUP_PHASE)[0] > 0 for pipe in pipes[1:]):
            return
    raise RuntimeError("gossip did not reach every node within 60 s")


def _idle_cpu(pipes: list[Connection], seconds: float) -> float:
    for pipe in pipes:
        _ask(pipe, "reset")
    time.sleep(seconds)
    return 1000 * statistics.mean(_ask(pipe, "report", _WARMUP_PHASE)[2] for pipe in pipes) / seconds


def _phase(pipes: list[Connection], phase: int, load: float, seconds: float) -> LoadResult:
    for pipe in pipes:
        _ask(pipe, "reset")
    published, elapsed = _ask(pipes[0], "publish", phase, load, seconds)
    progress, last_progress = -1, time.monotonic()
    while True:  # wait for stragglers; what has not come after 5 s without progress counts as lost
        reports = [_ask(pipe, "report", phase) for pipe in pipes]
        received = sum(count for count, _, _ in reports[1:])
        if received == published * (len(pipes) - 1) or time.monotonic() - last_progress > 5:
            break
        if received > progress:
            progress, last_progress = received, time.monotonic()
        time.sleep(0.2)
    latencies = sorted(ns for _, lat, _ in reports[1:] for ns in lat)
    cpu = [seconds_used for _, _, seconds_used in reports]
    return LoadResult(
        offered=load,
        achieved=published / elapsed,
        published=published,
        delivered_fraction=received / (published * (len(pipes) - 1)),
        p50_ms=_percentile(latencies, 0.50) / 1e6,
        p99_ms=_percentile(latencies, 0.99) / 1e6,
        cpu_ms_publisher=1000 * cpu[0] / published,
        cpu_ms_receiver=1000 * statistics.mean(c / max(1, r[0]) for c, r in zip(cpu[1:], reports[1:])),
    )


def _percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


def _worker(pipe: Connection, size: int, protocols: tuple[str, ...] | None) -> None:
    try:
        trio.run(_node, pipe, size, protocols)
    except BaseException as error:  # the coordinator is waiting on the pipe: tell it instead of hanging it
        pipe.send(RuntimeError(repr(error)))


async def _node(pipe: Connection, size: int, protocols: tuple[str, ...] | None) -> None:
    from gossip.host import HostConfig, open_host

    config = HostConfig(gossip_protocols=protocols) if protocols else HostConfig()
    received: dict[int, list[int]] = {}  # phase -> latencies in ns

    async def record(inbox: trio.MemoryReceiveChannel) -> None:
        async for _, data in inbox:
            phase, _, scheduled = _HEADER.unpack_from(data)
            received.setdefault(phase, []).append(time.monotonic_ns() - scheduled)

    async with open_host(os.urandom(32), ["/ip4/127.0.0.1/tcp/0"], config=config) as host:
        inbox = await host.subscribe(TOPIC, lambda peer, data: True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(record, inbox)
            pipe.send(host.listen_addrs[0])
            cpu_mark = time.process_time()
            while True:
                command, *args = await trio.to_thread.run_sync(pipe.recv)
                if command == "dial":
                    for addr in args[0]:
                        await host.connect(addr)
                    pipe.send("ok")
                elif command == "reset":
                    cpu_mark = time.process_time()
                    pipe.send("ok")
                elif command == "publish":
                    pipe.send(await _publish(host, size, *args))
                elif command == "report":
                    latencies = received.get(args[0], [])
                    pipe.send((len(latencies), latencies, time.process_time() - cpu_mark))
                else:
                    nursery.cancel_scope.cancel()
                    return


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
    print(f"{'offered/s':>9} {'achieved/s':>10} {'delivered':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'CPU ms/msg pub':>14} {'CPU ms/msg recv':>15}")
    idle, results = measure(args.nodes, tuple(args.loads), args.seconds, args.size,
                            tuple(args.protocols) if args.protocols else None)
    for r in results:
        print(f"{r.offered:9.0f} {r.achieved:10.1f} {100 * r.delivered_fraction:8.2f}% {r.p50_ms:8.1f} "
              f"{r.p99_ms:8.1f} {r.cpu_ms_publisher:14.2f} {r.cpu_ms_receiver:15.2f}")
    print(f"an idle node uses {idle:.1f} ms of CPU per second (included in the per-message figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
