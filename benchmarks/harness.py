"""Node processes for the network benchmarks: N spawned processes on loopback, each a trio node answering
commands over a pipe; linking them, waiting for stragglers, and the figures the benchmarks report.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import trio

Handler = Callable[..., Awaitable[object]]


@dataclass(frozen=True)
class LoadResult:
    """One offered load; an item is a message (bare GossipSub) or a record (vouchnet)."""

    offered: float  # items/s the publishers were asked for
    achieved: float  # items/s they managed to publish
    published: int
    delivered_fraction: float  # of published x receivers
    p50_ms: float
    p99_ms: float
    cpu_ms_publisher: float  # CPU per published item, publishing node
    cpu_ms_receiver: float  # CPU per received item, mean over receiving nodes


def print_table(idle: float, results: list[LoadResult], item: str) -> None:
    """The results of measure() as a table, one row per load."""
    print(f"{'offered/s':>9} {'achieved/s':>10} {'delivered':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{f'CPU ms/{item} pub':>15} {f'CPU ms/{item} recv':>16}")
    for r in results:
        print(f"{r.offered:9.0f} {r.achieved:10.1f} {100 * r.delivered_fraction:8.2f}% {r.p50_ms:8.1f} "
              f"{r.p99_ms:8.1f} {r.cpu_ms_publisher:15.3f} {r.cpu_ms_receiver:16.3f}")
    print(f"an idle node uses {idle:.1f} ms of CPU per second (included in the per-{item} figures)")


@contextmanager
def node_processes(node: Callable[..., Awaitable[None]], args_per_node: list[tuple]) -> Iterator[list[Connection]]:
    """One process per entry, running `trio.run(node, pipe, *args)`; yields the pipes, stops every node on exit.

    `node` must be a module-level coroutine function (spawned processes import it) that ends on "stop".
    """
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    try:
        for args in args_per_node:
            ours, theirs = context.Pipe()
            worker = context.Process(target=_run, args=(theirs, node, *args), daemon=True)
            worker.start()
            pipes.append(ours)
            workers.append(worker)
        yield pipes
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


def _run(pipe: Connection, node: Callable[..., Awaitable[None]], *args: object) -> None:
    try:
        trio.run(node, pipe, *args)
    except BaseException as error:  # the coordinator is waiting on the pipe: tell it instead of hanging it
        pipe.send(RuntimeError(repr(error)))


def ask(pipe: Connection, *command: object) -> Any:
    """Send a command (if any) and return the node's answer, raising if the node failed."""
    if command:
        pipe.send(command)
    reply = pipe.recv()
    if isinstance(reply, BaseException):
        raise RuntimeError("a benchmark node failed") from reply
    return reply


def link(pipes: list[Connection], degree: int) -> None:
    """Each node announces its address first; then each dials up to `degree` earlier nodes (the same every run)."""
    addrs = [ask(pipe) for pipe in pipes]
    rng = random.Random(1)
    for i, pipe in enumerate(pipes):
        ask(pipe, "dial", rng.sample(addrs[:i], min(i, degree)))


async def serve(pipe: Connection, handlers: dict[str, Handler]) -> None:
    """Answer `(name, *args)` commands with `await handlers[name](*args)` until "stop"."""
    while True:
        command, *args = await trio.to_thread.run_sync(pipe.recv)
        if command == "stop":
            return
        pipe.send(await handlers[command](*args))


def dialler(host: Any) -> Handler:
    """The "dial" handler for a gossip.host.Host: connect to every address given."""

    async def dial(addrs: list[str]) -> str:
        for addr in addrs:
            await host.connect(addr)
        return "ok"

    return dial


def idle_cpu(pipes: list[Connection], seconds: float, cpu_since_reset: Callable[[Connection], float]) -> float:
    """The mean CPU (ms per second) a node uses over `seconds` with nothing to do: heartbeats and the like."""
    for pipe in pipes:
        ask(pipe, "reset")
    time.sleep(seconds)
    return 1000 * sum(cpu_since_reset(pipe) for pipe in pipes) / len(pipes) / seconds


def wait_for_stragglers(received: Callable[[], int], expected: int, patience: float = 5.0) -> None:
    """Poll until `received()` reaches `expected` or has not grown for `patience` seconds (the rest is lost)."""
    progress, last_progress = -1, time.monotonic()
    while (count := received()) < expected and time.monotonic() - last_progress <= patience:
        if count > progress:
            progress, last_progress = count, time.monotonic()
        time.sleep(0.1)


def quantile(sorted_values: list[int], q: float) -> float:
    """The q-quantile of sorted values by the nearest-rank method; NaN for none."""
    if not sorted_values:
        return float("nan")
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])
