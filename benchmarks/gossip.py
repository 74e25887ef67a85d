"""Gossip figures against issue 7's targets (item 9), in one run: N real nodes (`vouchnet init` + `vouchnet run`, a
process each) on loopback, publishers at rising offered loads: time from a record's issue to its acceptance at
every other node (p50/p99, from the nodes' record_latency_seconds histograms), the highest load sustained with
zero loss, CPU per record per node (/proc); catch-up of 10^5 missing records (benchmarks/sync.py); and bare
py-libp2p GossipSub among as many processes in the same run (benchmarks/bare_gossipsub.py), the per-message
baseline.

The publishers issue digests, as nodes do at an epoch's end: every second the driver reports one event for each
of load/publishers agents to each publishing node (POST /v1/events), and with 1 s epochs each signs one digest per
agent at the second's end, in one batch, and gossips them.

Usage: python benchmarks/gossip.py [--nodes 5 10 20] [--loads 100 250 500 1000] [--publishers 4] [--seconds 10]
       [--bare-loads 20 40 80] [--checkpoint-interval 1] [--catch-up 100000]
       [--quick]   (N=5, loads 100 and 500, 5 s each: a few minutes)
Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bare_gossipsub, daemons, harness  # noqa: E402
from benchmarks import sync as sync_bench  # noqa: E402
from benchmarks.machine import Run  # noqa: E402
from gossip.host import peer_id_from_public_key  # noqa: E402
from testnet.ports import choose_ports  # noqa: E402
from vouching import did_key, public_key_from_did  # noqa: E402

TARGET_NODES, TARGET_LOAD, TARGET_P99_S = 20, 1000.0, 0.5
TARGET_CATCH_UP = 5000.0
TARGET_CPU_RATIO = 0.2
NETWORK = "bench"
# Fast but not unusual: 1 s epochs make every node a publisher of digests each second; sync every 10 s repairs
# what gossip loses (counted as delivered if it arrives before the phase's patience runs out).
NODE_CONFIG = {"epoch_seconds": 1, "checkpoint_interval": 1.0, "sync_interval": 10.0}
_METRIC = re.compile(r'^vouchnet_(\w+?)(?:\{le="([^"]+)"\})? (\S+)$', re.MULTILINE)


@dataclass(frozen=True)
class Scrape:
    """What one node's /metrics and /proc said at one moment."""

    ledger_size: int
    digests_issued: int
    latency_buckets: tuple[tuple[float, float], ...]  # (upper bound s, cumulative count), +Inf last
    cpu: float


def scrape(client: httpx.Client, node: daemons.Daemon) -> Scrape:
    values: dict[str, float] = {}
    buckets = []
    for name, le, value in _METRIC.findall(node.request(client, "GET", "/metrics").text):
        if name == "record_latency_seconds_bucket":
            buckets.append((float(le), float(value)))
        else:
            values[name] = float(value)
    return Scrape(int(values["ledger_size"]), int(values.get("digests_issued_total", 0)), tuple(sorted(buckets)),
                  node.cpu_seconds())


def _bucket_delta(before: Scrape, after: Scrape) -> list[tuple[float, float]]:
    old = dict(before.latency_buckets)
    return [(le, count - old.get(le, 0.0)) for le, count in after.latency_buckets]


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The q-quantile of cumulative buckets, interpolated linearly inside its bucket (as Prometheus does)."""
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower  # beyond the last bound: at least this
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = le, count
    return lower


# --- the network ---------------------------------------------------------------------------------------------


@contextmanager
def network(workdir: Path, n: int, config: dict[str, float], degree: int = 3,
            profile_last: str | None = None) -> Iterator[list[daemons.Daemon]]:
    """N nodes configured with `config` (NODE_CONFIG's keys), each trusting every other as a root and
    bootstrapping to up to `degree` earlier ones; the last profiled if `profile_last` is given (daemons.running)."""
    dirs = [workdir / f"n{i:02d}" for i in range(n)]
    ports = choose_ports(n)
    with ThreadPoolExecutor(4) as pool:
        dids = list(pool.map(lambda i: daemons.init(dirs[i], network=NETWORK, listen=f"/ip4/127.0.0.1/tcp/{ports[i]}",
                                                    **config), range(n)))
    addrs = [f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_from_public_key(public_key_from_did(did))}"
             for port, did in zip(ports, dids)]
    rng = random.Random(1)
    for i, directory in enumerate(dirs):
        daemons.configure(directory, roots=[d for d in dids if d != dids[i]],
                          bootstrap=rng.sample(addrs[:i], min(i, degree)))
    with daemons.running(dirs, profile_last) as nodes:
        yield nodes


def _agents(publisher: int, count: int) -> list[str]:
    return [did_key((publisher << 32 | i).to_bytes(32, "big")) for i in range(count)]


def _report_events(client: httpx.Client, node: daemons.Daemon, agents: list[str]) -> None:
    now = int(time.time() * 1000)
    events = [{"agent": a, "ts": now, "category": "tool", "name": "search", "outcome": "ok"} for a in agents]
    response = node.request(client, "POST", "/v1/events", json={"events": events},
                            headers={"Authorization": f"Bearer {node.token}", "Idempotency-Key": uuid.uuid4().hex})
    response.raise_for_status()


def drive(clients: list[httpx.Client], publishers: list[daemons.Daemon], per_publisher: int, seconds: int) -> None:
    """For `seconds` epochs, report one event per agent to each publisher early in the epoch (its digests are
    signed at the epoch's end)."""
    agents = [_agents(i, per_publisher) for i in range(len(publishers))]
    with ThreadPoolExecutor(len(publishers)) as pool:
        for _ in range(seconds):
            time.sleep(1.1 - time.time() % 1.0)  # 0.1 s into the next second
            list(pool.map(_report_events, clients, publishers, agents))


@dataclass(frozen=True)
class Phase:
    """One offered load on one network (records are the publishers' digests)."""

    nodes: int
    offered: float
    issued: int
    achieved: float
    delivered: float  # of issued x nodes (each node holds its own too)
    p50_s: float
    p99_s: float
    within_target: float  # share of (record, node) acceptances within TARGET_P99_S
    cpu_ms_publisher: float  # per record issued anywhere, mean over publishers (their event ingest included)
    cpu_ms_receiver: float  # per record, mean over the other nodes

    @property
    def sustained(self) -> bool:
        return self.delivered >= 1.0 and self.within_target >= 0.99


def phase(nodes: list[daemons.Daemon], publishers: int, load: float, seconds: int, patience: float = 15.0) -> Phase:
    """Publish at `load` records/s for `seconds`; wait until every node holds every record (or no node has
    progressed for `patience` s); the figures from the nodes' metrics and CPU times."""
    per_publisher = max(1, round(load / publishers))
    clients = [httpx.Client() for _ in nodes]
    try:
        before = [scrape(c, node) for c, node in zip(clients, nodes)]
        drive(clients[:publishers], nodes[:publishers], per_publisher, seconds)
        expected = per_publisher * seconds
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the last epoch's digests are signed at its end
            issued = sum(scrape(c, node).digests_issued - b.digests_issued
                         for c, node, b in zip(clients[:publishers], nodes[:publishers], before))
            if issued >= expected * publishers:
                break
            time.sleep(0.2)
        harness.wait_for_stragglers(
            lambda: sum(min(issued, scrape(c, node).ledger_size - b.ledger_size)
                        for c, node, b in zip(clients, nodes, before)),
            issued * len(nodes), patience)
        after = [scrape(c, node) for c, node in zip(clients, nodes)]
    finally:
        for c in clients:
            c.close()
    delivered = sum(min(issued, a.ledger_size - b.ledger_size) for a, b in zip(after, before))
    buckets = [0.0] * len(after[0].latency_buckets)
    bounds = [le for le, _ in after[0].latency_buckets]
    for a, b in zip(after, before):
        for i, (_, count) in enumerate(_bucket_delta(b, a)):
            buckets[i] += count
    cumulative = list(zip(bounds, buckets))
    total = buckets[-1] if buckets else 0.0
    within = dict(cumulative).get(TARGET_P99_S, 0.0) / total if total else math.nan
    cpu = [(a.cpu - b.cpu) * 1000 / max(1, issued) for a, b in zip(after, before)]
    return Phase(len(nodes), load, issued, issued / seconds, delivered / max(1, issued * len(nodes)),
                 histogram_quantile(0.5, cumulative), histogram_quantile(0.99, cumulative), within,
                 statistics.mean(cpu[:publishers]), statistics.mean(cpu[publishers:]) if publishers < len(nodes)
                 else math.nan)


def warm_up(nodes: list[daemons.Daemon], publishers: int) -> None:
    """Publish a little until a phase delivers everything everywhere: every mesh has formed."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if phase(nodes, publishers, 2 * publishers, 2, patience=5).delivered >= 1.0:
            return
    raise RuntimeError("records did not reach every node within 90 s")


def settle(nodes: list[daemons.Daemon], window: float = 2.0, patience: float = 180.0) -> float:
    """Mean CPU (ms per second) a node uses with nothing to gossip (heartbeats, peer upkeep, sync rounds), once
    the network has settled: 2 s windows until two in a row use at most a quarter of the machine in all (a
    network of N processes on few cores takes a while to finish connecting every pair: Noise, identify, mesh
    building), or `patience` runs out (then it says so). Loads offered before that would measure the start-up."""
    deadline, quiet = time.monotonic() + patience, 0
    budget = 0.25 * (os.cpu_count() or 1) * 1000 / len(nodes)  # ms per second per node
    while True:
        marks = [node.cpu_seconds() for node in nodes]
        time.sleep(window)
        used = statistics.mean(node.cpu_seconds() - m for node, m in zip(nodes, marks)) * 1000 / window
        quiet = quiet + 1 if used <= budget else 0
        if quiet == 2:
            return used
        if time.monotonic() > deadline:
            print(f"  (the network did not settle within {patience:.0f} s: {used:.0f} ms/s per node)")
            return used


def print_phases(idle: float, phases: list[Phase]) -> None:
    print(f"{'nodes':>5} {'offered/s':>9} {'achieved/s':>10} {'delivered':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'<=500ms':>8} {'CPU ms/rec pub':>14} {'CPU ms/rec recv':>15}")
    for p in phases:
        print(f"{p.nodes:5d} {p.offered:9.0f} {p.achieved:10.1f} {100 * p.delivered:8.2f}% {1000 * p.p50_s:8.1f} "
              f"{1000 * p.p99_s:8.1f} {100 * p.within_target:7.2f}% {p.cpu_ms_publisher:14.3f} "
              f"{p.cpu_ms_receiver:15.3f}")
    print(f"an idle node uses {idle:.1f} ms of CPU per second (included in the per-record figures); p50/p99 are "
          "interpolated in the nodes' latency buckets (..., 250, 500, 1000 ms), <=500ms is exact")


# --- the run -------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--loads", type=float, nargs="+", default=[100, 250, 500, 1000], help="records/s, rising")
    parser.add_argument("--publishers", type=int, default=4, help="nodes issuing records (at most the node count)")
    parser.add_argument("--seconds", type=int, default=10, help="publishing time per load")
    parser.add_argument("--bare-loads", type=float, nargs="*", default=[20, 40, 80],
                        help="messages/s (none: skip the baseline)")
    parser.add_argument("--checkpoint-interval", type=float, default=NODE_CONFIG["checkpoint_interval"],
                        help="seconds between a node's checkpoints (witness.checkpoint_interval)")
    parser.add_argument("--catch-up", type=int, default=100_000, help="records missing (0: skip)")
    parser.add_argument("--quick", action="store_true", help="5 nodes, loads 100 and 500, 5 s each")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.loads, args.seconds, args.bare_loads = [5], [100.0, 500.0], 5, [20.0, 40.0]
    config = {**NODE_CONFIG, "checkpoint_interval": args.checkpoint_interval}
    run = Run.start()
    print(run.header("gossip benchmark (issue 7, item 9)"), flush=True)
    results: dict[int, list[Phase]] = {}
    bare: dict[int, list[harness.LoadResult]] = {}
    for n in args.nodes:
        publishers = min(args.publishers, n)
        print(f"\nvouchnet: {n} nodes (vouchnet run), {publishers} publishing digests; {config}", flush=True)
        with tempfile.TemporaryDirectory() as workdir, network(Path(workdir), n, config) as nodes:
            warm_up(nodes, publishers)
            idle = settle(nodes)
            phases = []
            for load in args.loads:
                phases.append(phase(nodes, publishers, load, args.seconds))
                print_phases(idle, phases[-1:])
                if phases[-1].delivered < 0.5:
                    print("  (half or more lost: higher loads skipped)")
                    break
                settle(nodes)  # the next load starts from a quiet network
            results[n] = phases
        if args.bare_loads:
            print(f"bare GossipSub: {n} processes, 512-byte messages, one publisher", flush=True)
            bare_idle, bare[n] = bare_gossipsub.measure(n, tuple(args.bare_loads), float(args.seconds))
            harness.print_table(bare_idle, bare[n], "msg")

    catch_up = sync_bench.measure(args.catch_up, 100) if args.catch_up else None
    return verdicts(results, bare, catch_up, run)


def verdicts(results: dict[int, list[Phase]], bare: dict[int, list[harness.LoadResult]],
             catch_up: sync_bench.CatchUp | None, run: Run) -> int:
    print("\nsummary")
    failed = False

    def line(name: str, value: str, target: str, passed: bool | None) -> None:
        nonlocal failed
        failed |= passed is False
        verdict = {None: "", True: "PASS", False: "FAIL"}[passed]
        print(f"  {name:<58} {value:>14} {target:<14} {verdict}")

    for n, phases in results.items():
        sustained = [p for p in phases if p.sustained]
        best = max(sustained, key=lambda p: p.offered, default=None)
        target = n == TARGET_NODES
        line(f"{n} nodes: highest load with zero loss and p99 <= 500 ms", f"{best.offered if best else 0:,.0f} rec/s",
             f">= {TARGET_LOAD:,.0f}" if target else "", (best is not None and best.offered >= TARGET_LOAD)
             if target else None)
        heaviest = phases[-1]
        cpu = heaviest.cpu_ms_receiver if not math.isnan(heaviest.cpu_ms_receiver) else heaviest.cpu_ms_publisher
        bare_ok = [r for r in bare.get(n, []) if r.delivered_fraction >= 0.99] or bare.get(n, [])
        if bare_ok:
            per_message = bare_ok[-1].cpu_ms_receiver
            line(f"{n} nodes: CPU per record / bare CPU per message (per node)", f"{cpu / per_message:.3f}",
                 f"<= {TARGET_CPU_RATIO}", cpu / per_message <= TARGET_CPU_RATIO)
            print(f"    {cpu:.3f} ms per record at {heaviest.offered:,.0f} rec/s against {per_message:.3f} ms per "
                  f"message at {bare_ok[-1].offered:,.0f} msg/s; with a core per node, one node would keep up with "
                  f"about {1000 / cpu:,.0f} records/s")
    if catch_up is not None:
        line(f"catch-up of {catch_up.records:,} missing records", f"{catch_up.rate:,.0f} rec/s",
             f">= {TARGET_CATCH_UP:,.0f}", catch_up.rate >= TARGET_CATCH_UP)
        print(f"    CPU per record: {catch_up.cpu / catch_up.records * 1e6:.0f} us catching up, "
              f"{catch_up.server_cpu / catch_up.records * 1e6:.0f} us serving")
    if TARGET_NODES not in results:
        print(f"  ({TARGET_NODES} nodes not run: the throughput target is not judged)")
    print(run.footer())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
