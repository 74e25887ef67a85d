"""`GET /v1/agents/{did}/score` over HTTP against issue 3's target (item 6: p99 <= 2 ms at 1,000 requests/s): a real
node (`vouchnet run`) holding 10^4 agents with vouches and digests from 20 orgs, and an open-loop load generator in
another process (requests sent at a fixed rate; each latency counted from its scheduled send time, so a slow
answer delays no later request's clock).

Usage: python benchmarks/score_http.py [--rates 250 500 1000] [--seconds 10] [--agents 10000] [--quick]
Exits 1 if the target (p99 at 1,000/s, with the explanation and without) is missed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import random
import selectors
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacl.signing import SigningKey  # noqa: E402

from benchmarks import daemons  # noqa: E402
from benchmarks.harness import quantile  # noqa: E402
from benchmarks.machine import Run  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import INDEX_FILE, LEDGER_FILE, RecordStore  # noqa: E402
from vouching import Record, did_key, digest_body, issue_record, vouch_body  # noqa: E402

TARGET_RATE = 1000.0
TARGET_P99_MS = 2.0
_HOUR_MS = 3_600_000
_ZERO = {"ok": 0, "error": 0, "denied": 0, "timeout": 0}
CACHE = Path(tempfile.gettempdir()) / "vouchnet-bench-score"


# --- the node's state ----------------------------------------------------------------------------------------


def org_keys(orgs: int) -> list[SigningKey]:
    return [SigningKey((7_000 + i).to_bytes(32, "big")) for i in range(orgs)]


def agent_dids(agents: int) -> list[str]:
    return [did_key((10**7 + i).to_bytes(32, "big")) for i in range(agents)]


def build_records(orgs: int, roots: int, agents: int, epochs: int, now_ms: int) -> list[Record]:
    """A network as a node replicates it: `roots` orgs it trusts vouch for the others; each agent is vouched for
    by its operator org and reported on every hour of the last `epochs` by two orgs (about 1 in 25 misbehaves)."""
    keys = org_keys(orgs)
    dids = [did_key(bytes(k.verify_key)) for k in keys]
    chains: list[list[tuple[str, dict, int]]] = [[] for _ in range(orgs)]  # per org: (kind, body, ts)
    first_epoch = (now_ms // _HOUR_MS - epochs) * _HOUR_MS
    for o in range(roots, orgs):
        chains[o % roots].append(("vouch", vouch_body(dids[o], 0.9, "org-peer"), first_epoch))
    names = agent_dids(agents)
    for a, agent in enumerate(names):
        chains[a % orgs].append(("vouch", vouch_body(agent, 1.0, "operator"), first_epoch))
    for e in range(epochs):
        epoch = first_epoch + e * _HOUR_MS
        for a, agent in enumerate(names):
            bad = a % 25 == 0
            ok, error, denied = 20 + a % 13, 3 * bad + a % 2, 2 * bad
            events = ok + error + denied
            outcomes = {"ok": ok, "error": error, "denied": denied, "timeout": 0}
            for o in (a % orgs, (a * 7 + e + 1) % orgs):
                body = digest_body(agent, epoch=epoch, length=_HOUR_MS, outcomes=outcomes,
                                   categories={"tool": events, "mcp": 0, "a2a": 0, "auth": 0, "resource": 0,
                                               "other": 0},
                                   high_risk=_ZERO, evidence_root=bytes(32))
                chains[o].append(("digest", body, epoch + _HOUR_MS))
    records = []
    for key, chain in zip(keys, chains):
        prev = None
        for seq, (kind, body, ts) in enumerate(chain, start=1):
            record = issue_record(key, kind, body, seq=seq, prev=prev, ts=ts)
            records.append(record)
            prev = record.id
    return records


def populate(data_dir: Path, orgs: int, roots: int, agents: int, epochs: int) -> None:
    """Put the records of build_records into a node's store before it first runs (its trust engine replays them
    on start). Built once a day and copied from a cache: signing 7*10^4 records takes half a minute."""
    cache = CACHE / f"{orgs}-{roots}-{agents}-{epochs}"
    marker = cache / "built"
    if not marker.exists() or time.time() - marker.stat().st_mtime > 86_400:
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        print(f"building the node's records: {orgs} orgs, {agents:,} agents, {epochs} hours of digests "
              f"(once a day; cached in {cache})", flush=True)
        records = build_records(orgs, roots, agents, epochs, int(time.time() * 1000))
        issuers = [did_key(bytes(k.verify_key)) for k in org_keys(orgs)]
        with RecordStore.open(cache) as store:
            replica = Replica(SigningKey(bytes(32)), store, roots=issuers, max_hops=1, held_limit=1)
            for i in range(0, len(records), 2000):
                replica.accept(records[i:i + 2000])
        marker.touch()
    for name in (LEDGER_FILE, INDEX_FILE):
        shutil.copy(cache / name, data_dir / name)


# --- the load generator (another process) --------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One open-loop run's results."""

    rate: float  # requests/s asked for
    sent: int
    seconds: float  # from the first scheduled send to the last answer
    latencies_ns: list[int]  # answer time minus scheduled send time, sorted
    send_lag_ns: list[int]  # actual send time minus scheduled send time, sorted (the generator's own delay)
    errors: int  # answers other than 200
    response_bytes: float  # mean body size
    generator_cpu: float  # seconds


def generate(api: str, paths: list[str], rate: float, seconds: float, connections: int) -> Load:
    """Send GET `paths` (cycled) at `rate` per second for `seconds` over keep-alive HTTP/1.1 connections.

    One thread sends on schedule (sleeping, which is finer than epoll's millisecond timeouts), taking an idle
    connection or waiting for one (the wait counts: latency runs from the scheduled time); another reads answers.
    """
    address = urlsplit(api)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode() for p in paths]
    socks = [socket.create_connection((host, port)) for _ in range(connections)]
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    idle: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
    for s in socks:
        idle.put(s)
    scheduled: dict[socket.socket, int] = {}
    total = int(rate * seconds)
    latencies, lags, sizes = [], [], []
    errors = 0
    done = threading.Event()

    def receive() -> None:
        nonlocal errors
        selector = selectors.DefaultSelector()
        buffers = {}
        for s in socks:
            selector.register(s, selectors.EVENT_READ)
            buffers[s] = b""
        answered = 0
        while answered < total:
            for key, _ in selector.select(timeout=1.0):
                s = key.fileobj
                data = s.recv(1 << 16)
                if not data:
                    raise RuntimeError("the node closed a connection")
                buffers[s] += data
                head_end = buffers[s].find(b"\r\n\r\n")
                if head_end < 0:
                    continue
                head = buffers[s][:head_end].lower()
                length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                if len(buffers[s]) < head_end + 4 + length:
                    continue
                latencies.append(time.monotonic_ns() - scheduled[s])
                errors += not head.startswith(b"http/1.1 200")
                sizes.append(length)
                buffers[s] = buffers[s][head_end + 4 + length:]
                answered += 1
                idle.put(s)
        done.set()

    cpu = time.process_time()
    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    start = time.monotonic_ns() + 50_000_000
    period = 1e9 / rate
    for i in range(total):
        due = start + int(i * period)
        wait = due - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        s = idle.get()
        scheduled[s] = due
        lags.append(time.monotonic_ns() - due)
        s.sendall(requests[i % len(requests)])
    done.wait()
    end = time.monotonic_ns()
    for s in socks:
        s.close()
    return Load(rate, total, (end - start) / 1e9, sorted(latencies), sorted(lags), errors,
                sum(sizes) / max(1, len(sizes)), time.process_time() - cpu)


def _generator_process(pipe: Connection) -> None:
    """Runs `generate` for each command from the pipe until told to stop."""
    while (command := pipe.recv()) is not None:
        pipe.send(generate(*command))


class Generator:
    """The load generator in its own process (so that its CPU is not the node's)."""

    def __init__(self) -> None:
        self._pipe, theirs = multiprocessing.get_context("spawn").Pipe()
        self._process = multiprocessing.get_context("spawn").Process(target=_generator_process, args=(theirs,),
                                                                     daemon=True)
        self._process.start()

    def run(self, api: str, paths: list[str], rate: float, seconds: float, connections: int) -> Load:
        self._pipe.send((api, paths, rate, seconds, connections))
        return self._pipe.recv()

    def close(self) -> None:
        self._pipe.send(None)
        self._process.join(timeout=10)


# --- the floor: the node's HTTP server serving an app that does nothing ------------------------------------


async def _empty_app(scope: dict, receive: Callable, send: Callable) -> None:
    """An ASGI app answering every request with `{}`: what the node's HTTP stack costs before any of its code."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _serve_empty(pipe: Connection) -> None:
    import trio

    from node.api.http_server import serve

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(partial(serve, _empty_app, "127.0.0.1", 0, refused=lambda status, code: None,
                                               dropped=lambda reason: None))
            pipe.send(urls[0])
            await trio.to_thread.run_sync(pipe.recv)
            nursery.cancel_scope.cancel()

    trio.run(main)


@contextmanager
def empty_server() -> Iterator[tuple[str, int]]:
    """The empty app under node.api.http_server in its own process, as the node serves its API: (base URL, pid)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve_empty, args=(theirs,), daemon=True)
    process.start()
    try:
        yield ours.recv(), process.pid
    finally:
        ours.send("stop")
        process.join(timeout=10)


# --- the run -------------------------------------------------------------------------------------------------


def _header() -> str:
    names = ("request", "rate/s", "achieved", "p50 ms", "p90 ms", "p99 ms", "p99.9", "max ms", "lag p99", "errors",
             "bytes", "server CPU", "gen CPU")
    units = ("", "", "", "", "", "", "", "", "ms", "", "", "us/req", "us/req")
    widths = (12, 6, 8, 7, 7, 7, 7, 8, 7, 6, 7, 10, 7)
    return "\n".join(" ".join(f"{t:<{w}}" if i == 0 else f"{t:>{w}}" for i, (t, w) in enumerate(zip(row, widths)))
                     for row in (names, units))


def _row(mode: str, load: Load, server_cpu: float) -> str:
    ms = [quantile(load.latencies_ns, q) / 1e6 for q in (0.5, 0.9, 0.99, 0.999)]
    return (f"{mode:<12} {load.rate:6.0f} {load.sent / load.seconds:8.0f} {ms[0]:7.2f} {ms[1]:7.2f} {ms[2]:7.2f} "
            f"{ms[3]:7.2f} {load.latencies_ns[-1] / 1e6:8.1f} {quantile(load.send_lag_ns, 0.99) / 1e6:7.2f} "
            f"{load.errors:6d} {load.response_bytes:7.0f} {server_cpu / load.sent * 1e6:10.0f} "
            f"{load.generator_cpu / load.sent * 1e6:7.0f}")


def _measure(generator: Generator, mode: str, api: str, paths: list[str], pid: int, rates: list[float],
             seconds: float, connections: int) -> dict[float, Load]:
    """One open-loop run per rate, each printed as it ends."""
    generator.run(api, paths, 200, 2.0, connections)  # warm-up: connections, caches
    loads = {}
    for rate in rates:
        mark = daemons.cpu_seconds(pid)
        loads[rate] = generator.run(api, paths, rate, seconds, connections)
        print(_row(mode, loads[rate], daemons.cpu_seconds(pid) - mark), flush=True)
    return loads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 250, 500, 1000], help="requests/s, rising")
    parser.add_argument("--seconds", type=float, default=10.0, help="per rate")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--orgs", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections of the generator")
    parser.add_argument("--quick", action="store_true", help="2,000 agents, 5 s per rate, rates 250 and 1,000")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.seconds, args.rates = 2_000, 5.0, [250.0, 1000.0]
    run = Run.start()
    print(run.header("GET /v1/agents/{did}/score over HTTP (issue 3, item 6)"), flush=True)
    roots = 4
    issuers = [did_key(bytes(k.verify_key)) for k in org_keys(args.orgs)]
    agents = agent_dids(args.agents)
    rng = random.Random(1)
    picks = [rng.choice(agents) for _ in range(20_000)]
    generator = Generator()
    try:
        print("latencies from each request's scheduled send time; lag: how late the generator sent (counted in the"
              " latency); server CPU: the serving process's, per request")
        print(_header())
        with empty_server() as (url, pid):
            _measure(generator, "empty app", url, ["/"], pid, args.rates, args.seconds, args.connections)
        with tempfile.TemporaryDirectory() as workdir:
            data_dir = Path(workdir) / "node"
            daemons.init(data_dir, network="bench", roots=tuple(issuers[:roots]))
            populate(data_dir, args.orgs, roots, args.agents, epochs=3)
            node = daemons.start(data_dir)
            try:
                pid = node.process.pid
                mark = node.cpu_seconds()
                time.sleep(3)
                idle = (node.cpu_seconds() - mark) / 3
                at_target = {}
                for mode, suffix in (("explained", ""), ("explain=false", "?explain=false")):
                    loads = _measure(generator, mode, node.api, [f"/v1/agents/{a}/score{suffix}" for a in picks],
                                     pid, args.rates, args.seconds, args.connections)
                    if TARGET_RATE in loads:
                        at_target[mode] = loads[TARGET_RATE]
            finally:
                node.stop()
    finally:
        generator.close()
    print(f"the node: {args.agents:,} agents with vouches and 3 hours of digests from {args.orgs} orgs ({roots} its "
          f"roots); idle, it used {idle * 1000:.0f} ms of CPU per second (included above)")
    failed = False
    for mode, load in at_target.items():
        p99 = quantile(load.latencies_ns, 0.99) / 1e6
        verdict = "PASS" if p99 <= TARGET_P99_MS and not load.errors else "FAIL"
        print(f"p99 at {TARGET_RATE:,.0f} requests/s, {mode}: {p99:.2f} ms (target <= {TARGET_P99_MS} ms)  {verdict}")
        failed |= verdict == "FAIL"
    print(run.footer())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
