"""A node's fixed CPU per second among many peers (issue 7): N real nodes on loopback (benchmarks/gossip.py's
network, its node config), once every pair is connected: the CPU time each node process uses per second with
nothing to gossip, then at a low offered load (publishers' digests, as in gossip.py), in windows of `--seconds`,
`--repeats` times each. Process CPU time from /proc, not wall time: the machine's other work shows in the load
average printed beside each figure, not in the figures. `--profile PREFIX` profiles the last node (a receiver)
in every window, by its CPU clock (benchmarks/profiled_node.py): PREFIX-<nodes>-<k>.pstats, idle and loaded in turn.
Each idle window also prints the checkpoint messages a node sent and received a minute (its /metrics): a node
gossips its unchanged checkpoint again each sync interval, 3 times at most (gossip.witnessing), which its peers
ignore.

Usage: python benchmarks/node_cpu.py [--nodes 10 20] [--load 25] [--seconds 20] [--repeats 2] [--quiet 15]
       [--checkpoint-interval 1] [--sync-interval 10] [--profile PREFIX]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import daemons  # noqa: E402
from benchmarks import gossip as gossip_bench  # noqa: E402
from benchmarks.machine import Run  # noqa: E402


def cpu_per_second(nodes: list[daemons.Daemon], seconds: int, profile: bool,
                   action: Callable[[], None] | None = None) -> list[float]:
    """Each node's CPU in ms per second over `seconds` (while `action()` runs, if given; then over its duration);
    the last node's profile of the window written if `profile` (it runs under benchmarks/profiled_node.py)."""
    if profile:
        nodes[-1].process.send_signal(signal.SIGUSR1)
    marks = [node.cpu_seconds() for node in nodes]
    start = time.monotonic()
    if action is None:
        time.sleep(seconds)
    else:
        action()
    elapsed = time.monotonic() - start
    used = [(node.cpu_seconds() - m) * 1000 / elapsed for node, m in zip(nodes, marks)]
    if profile:
        nodes[-1].process.send_signal(signal.SIGUSR2)
    return used


_CHECKPOINTS = re.compile(r"^vouchnet_witness_checkpoints_(gossiped|reannounced|received|ignored|rejected)_total"
                          r"(?:\{[^}]*\})? (\S+)$", re.MULTILINE)


def checkpoint_messages(client: httpx.Client, nodes: list[daemons.Daemon]) -> list[tuple[float, float]]:
    """Each node's checkpoint messages so far: (sent, new or again; received, delivered or not)."""
    counts = []
    for node in nodes:
        sent = received = 0.0
        for name, value in _CHECKPOINTS.findall(node.request(client, "GET", "/metrics").text):
            if name in ("gossiped", "reannounced"):
                sent += float(value)
            else:
                received += float(value)
        counts.append((sent, received))
    return counts


def per_minute(before: list[tuple[float, float]], after: list[tuple[float, float]], seconds: float) -> str:
    sent = [(a[0] - b[0]) * 60 / seconds for a, b in zip(after, before)]
    received = [(a[1] - b[1]) * 60 / seconds for a, b in zip(after, before)]
    return (f"  checkpoint messages a minute per node: sent mean {statistics.mean(sent):.1f}, received mean "
            f"{statistics.mean(received):.1f} (min {min(received):.1f}, max {max(received):.1f})")


def summary(label: str, values: list[float]) -> str:
    load = os.getloadavg()[0]
    return (f"  {label:<28} mean {statistics.mean(values):6.1f}  median {statistics.median(values):6.1f}  "
            f"min {min(values):6.1f}  max {max(values):6.1f} ms/s   (load average {load:.1f})")


def measure(n: int, load: float, seconds: int, repeats: int, publishers: int, profile: Path | None,
            quiet: float, config: dict[str, float]) -> None:
    """Print each window's figures (profiles: PROFILE-<nodes>-<window>.pstats, windows idle and loaded in turn). An
    idle window starts `quiet` s after the network settled (gossip_bench.settle), when the last load's tail (its
    last checkpoints' cosigning, sync rounds) is over."""
    prefix = None if profile is None else str(profile.absolute()) + f"-{n}"
    with tempfile.TemporaryDirectory() as workdir, \
            gossip_bench.network(Path(workdir), n, config, profile_last=prefix) as nodes:
        gossip_bench.warm_up(nodes, publishers)
        gossip_bench.settle(nodes)
        per_publisher = max(1, round(load / publishers))
        clients = [httpx.Client() for _ in nodes[:publishers]]
        try:
            for _ in range(repeats):
                time.sleep(quiet)
                messages, since = checkpoint_messages(clients[0], nodes), time.monotonic()
                idle = cpu_per_second(nodes, seconds, prefix is not None)
                print(summary(f"{n} nodes, idle", idle), flush=True)
                after = checkpoint_messages(clients[0], nodes)
                print(per_minute(messages, after, time.monotonic() - since), flush=True)
                loaded = cpu_per_second(nodes, seconds, prefix is not None, lambda: gossip_bench.drive(
                    clients, nodes[:publishers], per_publisher, seconds))
                print(summary(f"{n} nodes, {per_publisher * publishers} records/s", loaded), flush=True)
                if loaded[publishers:]:  # (none with as many publishers as nodes: a node alone, its own witness)
                    print(summary("  of them, the receivers", loaded[publishers:]), flush=True)
                gossip_bench.settle(nodes)
        finally:
            for client in clients:
                client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--load", type=float, default=25.0, help="records/s offered by the publishers")
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=20, help="length of each window")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--checkpoint-interval", type=float, default=gossip_bench.NODE_CONFIG["checkpoint_interval"],
                        help="seconds between a node's checkpoints (witness.checkpoint_interval)")
    parser.add_argument("--sync-interval", type=float, default=gossip_bench.NODE_CONFIG["sync_interval"],
                        help="seconds between a node's anti-entropy rounds and re-announcements (p2p.sync_interval)")
    parser.add_argument("--quiet", type=float, default=15.0, help="seconds between a settled network and idle window")
    parser.add_argument("--profile", type=Path,
                        help="cProfile the last node, a file per window: PREFIX-<nodes>-<k>.pstats")
    args = parser.parse_args()
    run = Run.start()
    print(run.header("a node's CPU per second, idle and at low load (issue 7)"), flush=True)
    config = {**gossip_bench.NODE_CONFIG, "checkpoint_interval": args.checkpoint_interval,
              "sync_interval": args.sync_interval}
    print(f"node config: {config}", flush=True)
    for n in args.nodes:
        measure(n, args.load, args.seconds, args.repeats, min(args.publishers, n), args.profile, args.quiet, config)
    print(run.footer())
    return 0


if __name__ == "__main__":
    sys.exit(main())
