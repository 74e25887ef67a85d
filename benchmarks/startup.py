"""How long a node takes to start (node.daemon.serve_node, up to `started`) with N accepted records in its store,
step by step, and its peak RSS. A figure with no target; it is not a test.

The data directory is made as `vouchnet init` makes it, then filled through the store API (not gossip): `--orgs`
orgs, this node's among them, each with an org record and an org-peer vouch for every other (all in the horizon),
`--vouches` agent vouches, and hourly digests of `--agents` agents per org per epoch up to N records in all, the
node's own among them (without DP: benchmarks/replay.py measures own DP digests). The start is then measured in a
fresh process, so that its peak RSS is the start's: each step of node.daemon._opened and of what serve_node runs
before `started` is timed by wrapping it (the wrappers cost well under a microsecond a call). The OS page cache is
warm, as it is after a restart but not after a reboot.

With `--events N`, the telemetry side is filled too, as `--days` of a busy org leave it: N audit-log entries of the
node's own agents, spread evenly over the hourly epochs of those days (up to the records' last), accepted in
batches of `--batch` events, each with an idempotency key; a digests.db row for every epoch but the current one,
naming its range of the audit log; the keys of the last day (retention forgets older ones every hour); the log
pruned to the default 180 days of retention; and one epoch's share of events in the current hour, not digested
yet. Each step is then also given per row of what it reads (audit-log entries, keys, digests.db epochs).

    python benchmarks/startup.py                            # N = 10^5
    python benchmarks/startup.py --records 1000000
    python benchmarks/startup.py --keep /tmp/d --records 1000000   # build once into /tmp/d ...
    python benchmarks/startup.py --keep /tmp/d                     # ... and measure it again
    python benchmarks/startup.py --events 10000000 --batch 10      # and a year of telemetry

Each directory is started twice: without engine.snapshot (a full replay; the start then writes one, off the loop,
and the run waits for it), then from that snapshot, with no record after it (node.engine_snapshot). Each start
gives the trio loop's SHOWN_STALLS longest stalls, the longest gaps between the wake-ups of a task ticking every
TICK_S (what a request or a signal would wait), each with where the trio thread was in it. Started from the
snapshot, the node then brings it forward once as a running node does (TrustService._bring_snapshot_forward: the
file read into an engine of its own, fed the records since, none here, and written anew): its wall time, the
loop's longest stalls meanwhile, its peak RSS over the running node's (the peak reset through
/proc/self/clear_refs), and, brought forward again, what it allocates at its peak.
"""

from __future__ import annotations

import argparse
import functools
import gc
import inspect
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

import gossip.replica  # noqa: E402
import gossip.store  # noqa: E402
import gossip.sync  # noqa: E402
import ledger.witness  # noqa: E402
import node.audit_log  # noqa: E402
import node.engine_snapshot  # noqa: E402
import node.credential_registry  # noqa: E402
import node.daemon  # noqa: E402
import node.digests  # noqa: E402
import node.idempotency  # noqa: E402
import node.retention  # noqa: E402
import node.telemetry  # noqa: E402
import node.trust  # noqa: E402
import vouching.scoring  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from node.audit_log import AuditLog  # noqa: E402
from node.config import NodeConfig, load_config  # noqa: E402
from node.digests import DigestState  # noqa: E402
from node.events import SALT_SIZE, Event, encode_entry  # noqa: E402
from node.idempotency import WINDOW_MS, IdempotencyStore, StoredReply  # noqa: E402
from node.retention import DAY_MS  # noqa: E402
from node.keys import load_org_key  # noqa: E402
from node.setup import init_data_dir  # noqa: E402
from vouching import Counts, DigestBody, Record, did_key, issue_digests, issue_record  # noqa: E402
from vouching.bodies import CATEGORIES, OUTCOMES, org_body, vouch_body  # noqa: E402
from vouching.params import HOUR_MS  # noqa: E402

CHUNK = 1000  # records signed and appended at a time while building
TICK_S = 0.001  # the period of the ticker that measures loop stalls
SAMPLE_S = 0.015  # how far into a stall the ticker samples where the trio thread is
SHOWN_STALLS = 4  # the longest stalls a start shows, longest first


class _Chain:
    """One org's key and the head of its chain while building."""

    def __init__(self, key: SigningKey) -> None:
        self.key, self.did, self.seq, self.prev = key, did_key(bytes(key.verify_key)), 1, None

    def issue(self, kind: str, body: dict[str, Any], ts: int) -> Record:
        record = issue_record(self.key, kind, body, seq=self.seq, prev=self.prev, ts=ts)
        self.seq, self.prev = self.seq + 1, record.id
        return record

    def digests(self, bodies: list[DigestBody], ts: int) -> list[Record]:
        records = issue_digests(self.key, bodies, seq=self.seq, prev=self.prev, ts=ts)
        self.seq, self.prev = self.seq + len(records), records[-1].id
        return records


def _digest(agent: str, epoch: int, rng: random.Random) -> DigestBody:
    outcomes = [rng.randrange(40), rng.randrange(3), rng.randrange(2), rng.randrange(2)]
    high_risk = [rng.randrange(n + 1) for n in outcomes]
    return DigestBody(agent, epoch, HOUR_MS, Counts(tuple(zip(OUTCOMES, outcomes))),
                      Counts(tuple((c, sum(outcomes) if c == "tool" else 0) for c in CATEGORIES)),
                      Counts(tuple(zip(OUTCOMES, high_risk))), sum(outcomes), rng.randbytes(32), None)


@contextmanager
def _one_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """Many autocommitted writes of a module's own API in one commit (one fsync, not one a row), for building."""
    db.execute("BEGIN")
    yield
    db.execute("COMMIT")


def _events(pool: list[str], rng: random.Random) -> list[Event]:
    """Events to draw a busy org's audit log from."""
    return [Event(rng.choice(pool), 0, rng.choice(CATEGORIES), f"call-{i % 50}", rng.choice(OUTCOMES),
                  duration_ms=rng.randrange(2000), high_risk=rng.random() < 0.1) for i in range(4096)]


def fill_telemetry(directory: Path, *, events: int, days: int, batch: int, last_end: int, pool: list[str],
                   rng: random.Random) -> dict[int, tuple[int, int]]:
    """The audit log and idempotency keys of `events` events over the hourly epochs of `days` days up to
    `last_end`, and one epoch's share more in the current hour (see the module docstring); the audit-log range of
    each epoch before `last_end`. digests.db is left to the caller."""
    epochs = list(range(last_end - days * 24 * HOUR_MS, last_end, HOUR_MS))
    per_epoch = max(1, events // len(epochs))
    now = int(time.time() * 1000)
    drawn = _events(pool, rng)
    ranges: dict[int, tuple[int, int]] = {}
    with closing(AuditLog.open(directory)) as audit, closing(IdempotencyStore.open(directory, log_size=0)) as keys:
        for epoch in [*epochs, now - now % HOUR_MS]:
            first, entries, keyed = audit.size, [], []
            length = min(HOUR_MS, now - epoch)  # the current epoch's events so far
            for start in range(0, per_epoch, batch):
                at = epoch + start * length // per_epoch
                count = min(batch, per_epoch - start)
                entries += [encode_entry(rng.choice(drawn), at, rng.randbytes(SALT_SIZE)) for _ in range(count)]
                if at >= now - WINDOW_MS:  # retention forgets older keys every hour
                    keyed.append((f"{at}-{start}", first + start, count, at))
            with _one_transaction(keys._db):
                for key, at_index, count, at in keyed:
                    keys.reserve(key, StoredReply(rng.randbytes(32), 200, b'{"accepted":%d}' % count),
                                 first=at_index, count=count, at=at)
            audit.ledger.append(entries)
            ranges[epoch] = (first, audit.size)
        cutoff = now - int(NodeConfig.retention_days * DAY_MS)
        audit.ledger.prune(min(audit.boundary(cutoff - cutoff % HOUR_MS)[0], ranges[epochs[-1]][1]))
    return {epoch: ranges[epoch] for epoch in epochs}


def build(directory: Path, *, records: int, orgs: int, agents: int, vouches: int, events: int = 0, days: int = 365,
          batch: int = 10) -> None:
    """A node's data directory holding `records` accepted records, and with `events`, a busy org's telemetry (see
    the module docstring)."""
    init_data_dir(directory, network="bench", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    rng = random.Random(1)
    chains = [_Chain(load_org_key(directory / "org.key"))] + [_Chain(SigningKey.generate()) for _ in range(orgs - 1)]
    pool = [did_key(bytes(SigningKey.generate().verify_key)) for _ in range(2 * agents)]
    per_epoch = orgs * agents
    epochs = -(-(records - orgs * orgs - vouches) // per_epoch)
    now = int(time.time() * 1000)
    first_epoch = now - now % HOUR_MS - (epochs + 1) * HOUR_MS
    state = DigestState.open(directory)  # our epochs digested, as the digester leaves them
    ranges: dict[int, tuple[int, int]] = {}
    if events:
        if days * 24 < epochs:
            raise SystemExit(f"--days: the records span {epochs} hourly epochs; give at least {-(-epochs // 24)} days")
        ranges = fill_telemetry(directory, events=events, days=days, batch=batch,
                                last_end=first_epoch + epochs * HOUR_MS, pool=pool, rng=rng)
        with _one_transaction(state._db):
            for epoch in [e for e in ranges if e < first_epoch]:
                state.begin(epoch, epoch + HOUR_MS, *ranges[epoch], 0)
                state.finish(epoch)
    with RecordStore.open(directory) as store:
        start = [c.issue("org", org_body(f"org {i}", "bench", ()), first_epoch) for i, c in enumerate(chains)]
        start += [c.issue("vouch", vouch_body(other.did, 0.8, "org-peer"), first_epoch)
                  for c in chains for other in chains if other is not c]
        start += [chains[i % orgs].issue("vouch", vouch_body(rng.choice(pool), 0.7, "operator"), first_epoch)
                  for i in range(vouches)]
        store.append(start)
        left = records - len(start)
        for epoch in range(first_epoch, first_epoch + epochs * HOUR_MS, HOUR_MS):
            for chain in chains:
                names = rng.sample(pool, min(agents, left))
                if chain is chains[0] and names:
                    state.begin(epoch, epoch + HOUR_MS, *ranges.get(epoch, (0, 0)), store.size)
                for first in range(0, len(names), CHUNK):
                    bodies = [_digest(agent, epoch, rng) for agent in names[first:first + CHUNK]]
                    store.append(chain.digests(bodies, epoch + HOUR_MS))
                if chain is chains[0] and names:
                    state.finish(epoch)
                left -= len(names)
    state.close()


class Steps:
    """Seconds spent in each wrapped callable, in the order first called, and its longest call (of a generator, its
    longest step: what it holds the loop for at once, on the loop); nested steps count in their callers too."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.longest: dict[str, float] = {}

    @contextmanager
    def wrapping(self, owner: Any, name: str, label: str) -> Iterator[None]:
        original = owner.__dict__[name]
        function = original.__func__ if isinstance(original, classmethod) else original

        def add(began: float) -> None:
            seconds = time.perf_counter() - began
            self.seconds[label] = self.seconds.get(label, 0.0) + seconds
            self.longest[label] = max(self.longest.get(label, 0.0), seconds)

        def count(began: float) -> None:
            add(began)
            self.calls[label] = self.calls.get(label, 0) + 1

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                count(began)

        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:  # wall time, other tasks' turns included
            began = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                count(began)

        @functools.wraps(function)
        def timed_steps(*args: Any, **kwargs: Any) -> Iterator[Any]:  # each step, not the caller's time between
            steps = function(*args, **kwargs)
            while True:
                began = time.perf_counter()
                try:
                    item = next(steps)
                except StopIteration:
                    count(began)
                    return
                add(began)
                yield item

        wrapper = (timed_async if inspect.iscoroutinefunction(function)
                   else timed_steps if inspect.isgeneratorfunction(function) else timed)
        setattr(owner, name, classmethod(wrapper) if isinstance(original, classmethod) else wrapper)
        try:
            yield
        finally:
            setattr(owner, name, original)


# (owner, attribute, label, rows): the steps of node.daemon._opened and serve_node's start that can grow with the
# data, and what each is given per row of (see `measure`); "  " marks a part of the step above it.
WRAPPED: list[tuple[Any, str, str, str]] = [
    (gossip.store.RecordStore, "open", "records store open (ledger check, index catch-up, heads)", "record"),
    (gossip.store.RecordStore, "_load_heads", "  of it: heads", "record"),
    (gossip.replica.Replica, "__post_init__", "replica", "record"),
    (gossip.replica.Replica, "tracking", "replica: org, vouch, revoke, equivocation records (yielding)", "record"),
    (node.telemetry.Telemetry, "open", "telemetry open (audit log, digester, credentials)", "audit entry"),
    (node.audit_log.AuditLog, "open", "  of it: audit log open", "audit entry"),
    (node.idempotency.IdempotencyStore, "open", "  of it: idempotency keys open", "key"),
    (node.digests.DigestState, "open", "  of it: digests.db open", "epoch"),
    (node.digests.DigestState, "unfinished", "  of it: the interrupted-epoch check", "epoch"),
    (node.digests.Digester, "rebuilding", "digester: the open epochs' tallies, our digests since (yielding)",
     "open entry"),
    (node.digests.Digester, "_reading_issued", "  of it: our digests since the last epoch's mark (yielding)",
     "record"),
    (node.credential_registry.CredentialRegistry, "open", "  of it: credentials.db open", "record"),
    (node.digests.Digester, "undigested", "digester: undigested entries", "open entry"),
    (node.engine_snapshot, "read", "engine.snapshot: reading it (a worker thread)", "record"),
    (node.engine_snapshot, "install", "engine.snapshot: building the engine, counting its digests (a worker thread)",
     "record"),
    (node.trust.TrustService, "replaying", "trust replay (yielding)", "record"),
    (gossip.store.RecordStore, "query", "  of it and the above: index queries and ledger reads", "record"),
    (gossip.store, "load_stored", "  of it and the above: decoding (load_stored)", "record"),
    (node.trust, "feed_record", "  of it: feeding the engine (feed_record)", "record"),
    (node.trust.TrustService, "_add_own_digest", "  of it: feeding own digests", "record"),
    (node.trust, "capture", "trust replay's capture of the engine for engine.snapshot (a worker thread)", "record"),
    (node.trust.TrustService, "recompute_replayed", "trust replay's recompute (a worker thread)", "record"),
    (vouching.scoring.SnapshotCopy, "step", "  of it on the loop: copying columns", "record"),
    (vouching.scoring.TrustEngine, "snapshot", "  of it on the loop: the snapshot's end", "record"),
    (vouching.scoring.TrustEngine, "install", "  of it on the loop: install", "record"),
    (gossip.sync.IssuerIndex, "__init__", "sync issuer index", "record"),
    (ledger.witness, "_open_store", "witness state open", "record"),
    (node.retention.RetentionService, "prune", "retention: prune", "audit entry"),
    (node.retention.RetentionService, "expire", "retention: expire keys and span ids (a worker thread)", "key"),
    (node.digests.DigestService, "_close_due", "digests of the epochs due", "open entry"),
    (node.daemon, "api_app", "the API's routes and app (a worker thread)", "record"),
]


@contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _rows(directory: Path) -> dict[str, int]:
    """How many rows of each kind the data directory holds, for the per-row figures."""
    with RecordStore.open(directory) as store:
        rows = {"record": store.size}
    with closing(AuditLog.open(directory)) as audit, closing(DigestState.open(directory)) as state, \
            closing(IdempotencyStore.open(directory, log_size=audit.size)) as keys:
        rows["audit entry"] = audit.size
        rows["open entry"] = audit.size - state.position()[1]  # not digested yet
        rows["key"] = keys._db.execute("SELECT count(*) FROM keys").fetchone()[0]
        rows["epoch"] = state._db.execute("SELECT count(*) FROM epochs").fetchone()[0]
    return rows


class Ticker:
    """The gaps between the wake-ups of a task sleeping TICK_S at a time: the loop's stalls, the longest first
    (`report`), each with where the trio thread was SAMPLE_S into it (a watching thread samples its stack)."""

    def __init__(self) -> None:
        self.stalls: list[tuple[float, str]] = []  # (seconds, where), the longest SHOWN_STALLS
        self._last = time.perf_counter()
        self._sampled: dict[float, str] = {}  # the tick a stall began at -> the stack sampled in it

    async def run(self) -> None:
        trio_thread = threading.get_ident()
        watching = threading.Event()
        threading.Thread(target=self._watch, args=(trio_thread, watching), daemon=True).start()
        try:
            while True:
                await trio.sleep(TICK_S)
                now = time.perf_counter()
                if len(self.stalls) < SHOWN_STALLS or now - self._last > self.stalls[-1][0]:
                    self.stalls.append((now - self._last, self._sampled.get(self._last, "")))
                    self.stalls = sorted(self.stalls, reverse=True)[:SHOWN_STALLS]
                self._last = now
        finally:
            watching.set()

    def _watch(self, trio_thread: int, stop: threading.Event) -> None:
        while not stop.wait(SAMPLE_S / 4):
            last = self._last
            if time.perf_counter() - last > SAMPLE_S and last not in self._sampled:
                frame = sys._current_frames().get(trio_thread)
                self._sampled[last] = " < ".join(f"{f.f_code.co_name} ({Path(f.f_code.co_filename).name}:{f.f_lineno})"
                                                 for f in _frames(frame)[:6])

    def report(self) -> str:
        """The longest stall, and the next longest (SHOWN_STALLS in all), each with where it was sampled."""
        return "; ".join(f"{seconds * 1000:.0f} ms" + (f", {SAMPLE_S * 1000:.0f} ms into it at {where}"
                                                       if where else "") for seconds, where in self.stalls)


def _frames(frame: Any) -> list[Any]:
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


def _rss_kib(field: str) -> int:
    """This process's VmRSS or VmHWM (its peak since the last reset), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


async def bring_forward(trust: node.trust.TrustService, size: int) -> None:
    """Bring engine.snapshot forward on the started node, printing its time, stall and peak RSS; then again, printing
    what it allocates at its peak (tracemalloc: the RSS reuses what the start freed, and tracing slows it)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    rss = _rss_kib("VmRSS")
    ticker = Ticker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker.run)
        began = time.perf_counter()
        await trust._bring_snapshot_forward(size)
        seconds = time.perf_counter() - began
        nursery.cancel_scope.cancel()
    tracemalloc.start()
    await trust._bring_snapshot_forward(size)
    allocated = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"engine.snapshot brought forward on the running node: {seconds:.2f} s, longest loop stalls "
          f"{ticker.report()}; peak RSS {_rss_kib('VmHWM') / 1024:.0f} MiB, "
          f"{(_rss_kib('VmHWM') - rss) / 1024:.0f} MiB over the running node's; {allocated / 2**20:.0f} MiB "
          "allocated at its peak")


def measure(directory: Path) -> None:
    """Start the node in `directory` until `started`, then stop it; print each step."""
    config = replace(load_config(directory), bootstrap=())
    steps = Steps()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = _rows(directory)
    size = rows["record"]
    snapshot = directory / node.engine_snapshot.SNAPSHOT_FILE
    had_snapshot = snapshot.exists()

    services: list[node.trust.TrustService] = []
    ticker = Ticker()

    async def start() -> tuple[float, float, int]:
        gc.freeze()  # as node.daemon.run_until_signalled does before the start
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker.run)
            began, cpu = time.perf_counter(), time.process_time()
            await nursery.start(node.daemon.serve_node, config)
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            print(f"longest loop stalls of the start: {ticker.report()}")
            written = time.perf_counter()
            while not had_snapshot and not snapshot.exists():  # written off the loop after a full replay
                await trio.sleep(0.05)
            if not had_snapshot:
                print(f"engine.snapshot written {time.perf_counter() - written:.2f} s after started: "
                      f"{snapshot.stat().st_size / 2**20:.0f} MiB")
            peak = _rss_kib("VmHWM")
            if had_snapshot:
                await bring_forward(services[0], size)
            nursery.cancel_scope.cancel()
        return seconds, cpu, peak

    with ExitStack() as stack:
        made = node.trust.TrustService.__init__
        stack.enter_context(_patched(node.trust.TrustService, "__init__",
                                     lambda self, *a, **k: (services.append(self), made(self, *a, **k))[1]))
        for owner, name, label, _ in WRAPPED:
            stack.enter_context(steps.wrapping(owner, name, label))
        total, cpu, rss = trio.run(start)
    print(f"start-up {'from engine.snapshot' if had_snapshot else 'without engine.snapshot'} of a node holding "
          f"{size} records: {total:.2f} s to started ({cpu:.2f} s of CPU), {total / size * 1e6:.1f} us a record; "
          f"peak RSS {rss / 1024:.0f} MiB ({rss_before / 1024:.0f} MiB before opening anything)")
    print("  rows: " + ", ".join(f"{kind} {count}" for kind, count in rows.items()))
    for _, _, label, per in WRAPPED:
        if label in steps.seconds:
            seconds = steps.seconds[label]
            print(f"  {label:<60} {seconds:8.3f} s {seconds / max(rows[per], 1) * 1e6:10.3f} us per {per:<12} "
                  f"({steps.calls[label]} calls, the longest {steps.longest[label] * 1000:.1f} ms)")
    print(f"  {'not wrapped above':<60} {total - sum(s for l, s in steps.seconds.items() if l[0] != ' '):8.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=5)
    parser.add_argument("--agents", type=int, default=1000, help="agents each org digests each epoch")
    parser.add_argument("--vouches", type=int, default=300)
    parser.add_argument("--events", type=int, default=0, help="audit-log entries (telemetry side; 0: none)")
    parser.add_argument("--days", type=int, default=365, help="the days the events span")
    parser.add_argument("--batch", type=int, default=10, help="events a keyed POST /v1/events carries")
    parser.add_argument("--keep", type=Path, help="build into this directory if it is empty, and measure it")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure)
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp) / "node"
        if not (directory / "records.ledger").exists():
            began = time.perf_counter()
            build(directory, records=args.records, orgs=args.orgs, agents=args.agents, vouches=args.vouches,
                  events=args.events, days=args.days, batch=args.batch)
            print(f"built {directory} in {time.perf_counter() - began:.0f} s")
        (directory / node.engine_snapshot.SNAPSHOT_FILE).unlink(missing_ok=True)
        for _ in range(2):  # a full replay, then from the snapshot it wrote
            subprocess.run([sys.executable, __file__, "--measure", str(directory)], check=True)


if __name__ == "__main__":
    main()
