"""The trust engine's rebuild after `vouchnet key adopt` (node.trust.TrustService._rebuild): once the successor's
first record comes back, the engine is built again from every stored record on the trio loop, a TURN_S at a time,
and swapped in. This gives its wall time and the loop's longest stalls meanwhile: the longest gaps between the
wake-ups of a task ticking every TICK_S (what a request would wait); and of them, those while it captured
engine.snapshot of the records it caught up with (TrustService._captured_rebuild: the ledger's root, then the capture
a chunk at a time, on the loop), with that capture's wall time, and how long after the swap the snapshot was written
(in a worker thread); the stall the swapped-out engine was freed in (the gap between ticks its free fell in: its
objects, an item an agent or a vouch in each of its lists, freed at once, or none left once it was emptied a turn at a
time, vouching.engine_state.letting_go), how long after the swap it was freed, the longest stalls from the swap until
then, and until engine.snapshot was written too (encoded on the loop a turn at a time, sharing turns with the old
engine's emptying; the recompute the swap brings forward, PROMPT_RECOMPUTE_S after it, may come first), and the
agents the engine swapped in holds; when that recompute returned its table, the stall it returned in (what runs on
the loop as it does: the table's install, and the first agents it announces looked up in it, or all of them), and
the longest stalls from the swap until then; how long its announce of every agent the stream told of took (a chunk at
a time, TrustService._recompute_and_announce: each a read that fills the agent's cached sums), the longest stalls
meanwhile, and the full garbage collections from the swap until it ended; the full (generation 2) garbage
collections of the whole measure, in whichever thread: each holds the GIL, so the loop, for as long as it walks every
object the process tracks but the frozen ones; and, once the measure ended, the CPU time of a full collection (the
first, then the median of COLLECTIONS more: what each later one walks, the rebuilt engine's lists of an item an agent
among it) and the objects it walks. What there is before the measure is frozen, as the node freezes what
its start built (node.daemon.serve_node): the start's engine, and the flood's records, signed beforehand, which a
node receiving them would not hold; a collection walks what the measure made, the rebuilt engine and what the flood
adds to both. A figure with no target; it is not a test.

With --flood R, records are stored at R a second (a vouch chain of another org, signed beforehand, taken each
FLOOD_TICK_S in a batch of those due, FLOOD_BATCH at most, as a sync's page) from the first record on until the
rebuild has caught up with the store (or the flood runs out): a flood half as fast as the rebuild feeds, or faster,
makes it feed a gap of AT_ONCE_MAX records at most at once (TrustService._feed_stored), which the stalls show; one
that keeps the gap larger, as fast as it feeds, keeps it feeding until the flood runs out. Each vouch names a new
agent, so that the flood grows what the collector walks. The longest batch of the flood stored while the capture
ran is given too, its wall time against its thread's CPU time: a batch waiting for the GIL (as it did while the
capture ran in a worker thread) takes longer than its CPU time.

--gc off turns the collector off for the measure, to show the stalls that are not its; --gc freeze-after-full
also freezes (gc.freeze) every object that survived a full collection, so that the next walks only those made since: a
proposal, not what the node does (cyclic garbage among frozen objects would never be freed). benchmarks/gc_objects.py
gives the objects the engine leaves tracked per agent.

The data directory is benchmarks/startup.py's (`build`, no telemetry: no undigested events to read), its node key
then rotated to a new one whose first record is held back; the node starts as the new key (the engine replayed, not
measured) and takes the first record in, once the start's engine.snapshot is written.

    python benchmarks/adopt_rebuild.py                       # N = 10^5
    python benchmarks/adopt_rebuild.py --records 1000000
    python benchmarks/adopt_rebuild.py --records 20000 --flood 20000
    python benchmarks/adopt_rebuild.py --records 20000 --flood 20000 --gc off
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from benchmarks.startup import build  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from node.keys import load_org_key  # noqa: E402
from node.metrics import Registry  # noqa: E402
from node.stream import Broadcaster  # noqa: E402
from node.trust import SNAPSHOT_AFTER, TrustService  # noqa: E402
from vouching import Record, did_key, issue_record, org_body, vouch_body  # noqa: E402
from vouching.params import HOUR_MS  # noqa: E402
from vouching.policy import DEFAULT_POLICY  # noqa: E402

TICK_S = 0.001
FLOOD_TICK_S = 0.01
FLOOD_BATCH = 1000
FLOOD_S = 10.0  # the longest flood, in seconds at its rate: the records it needs are signed beforehand
SHOWN_STALLS = 5
COLLECTIONS = 5  # full collections timed once the measure ended, of which the median is given


def rotate(directory: Path, store: RecordStore) -> tuple[SigningKey, Record]:
    """The node key's rotation to a new key, stored; the new key and its first record (not stored)."""
    old, new = load_org_key(directory / "org.key"), SigningKey.generate()
    old_did, new_did = did_key(bytes(old.verify_key)), did_key(bytes(new.verify_key))
    head = store.head(old_did)
    assert head is not None
    now = int(time.time() * 1000)
    store.append([issue_record(old, "org", org_body("org 0", "bench", (), next=new_did), seq=head.seq + 1,
                               prev=head.id, ts=now)])
    return new, issue_record(new, "org", org_body("org 0", "bench", (), prior=old_did), seq=1, prev=None, ts=now)


def flood_records(key: SigningKey, count: int) -> list[Record]:
    """`key`'s first record and `count` - 1 vouches after it, each for a new agent, chained."""
    now = int(time.time() * 1000)
    records = [issue_record(key, "org", org_body("flood", "bench", ()), seq=1, prev=None, ts=now)]
    for seq in range(2, count + 1):
        subject = did_key(os.urandom(32))
        records.append(issue_record(key, "vouch", vouch_body(subject, 0.5, "operator"), seq=seq, prev=records[-1].id,
                                    ts=now))
    return records


async def tick_while(gaps: list[tuple[float, float]], going: Callable[[], bool]) -> None:
    """Wake up every TICK_S while `going()`, noting in `gaps` each gap between two wake-ups as (its end, its length)."""
    last = time.perf_counter()
    while going():
        await trio.sleep(TICK_S)
        now = time.perf_counter()
        gaps.append((now, now - last))
        last = now


async def flood_while(replica: Replica, flood: list[Record], rate: int, batches: list[tuple[float, float, float]],
                      going: Callable[[], bool]) -> int:
    """Store `flood` at `rate` records a second (those due each FLOOD_TICK_S, FLOOD_BATCH at most, in a batch) while
    `going()`, each batch noted in `batches` as (its end, its length, its CPU time); the records stored."""
    flooded, began = 0, time.perf_counter()
    while flooded < len(flood) and going():
        due = int(rate * (time.perf_counter() - began))
        batch = flood[flooded:min(due, flooded + FLOOD_BATCH)]
        began_batch, cpu = time.perf_counter(), time.thread_time()
        assert replica.accept(batch).accepted == batch
        now = time.perf_counter()
        batches.append((now, now - began_batch, time.thread_time() - cpu))
        flooded += len(batch)
        await trio.sleep(FLOOD_TICK_S)
    return flooded


class Stalls:
    """The loop's gaps between ticks, each as (its end, its length), the windows of the rebuild's captures, the
    flood's batches, each as (its end, its length, its CPU time), and the full garbage collections, each as (its end,
    its length, its CPU time, its thread's name): under load the loop waits for a core too, so that its length varies
    with the machine's other work (up to twice its CPU time at load 4-5 on 2 cores), and its CPU time far less."""

    def __init__(self) -> None:
        self.gaps: list[tuple[float, float]] = []
        self.captures: list[tuple[float, float]] = []
        self.batches: list[tuple[float, float, float]] = []
        self.collections: list[tuple[float, float, float, str]] = []
        self.written = 0.0  # seconds from the swap until the rebuild's engine.snapshot was written
        self.swapped = 0.0  # when the measure saw the rebuilt engine swapped in (within a TICK_S)
        self.freed = 0.0  # when the swapped-out engine was freed (its last reference gone)
        self.recomputed = 0.0  # when the first recompute begun after the swap returned its table
        self.announced = 0.0  # when that recompute's announce of every agent the stream told of ended
        self._collecting = (0.0, 0.0)  # (perf_counter, thread_time) as the one under way began

    def longest(self, window: tuple[float, float] | None = None) -> list[float]:
        """The longest gaps, of those beginning in `window` if given (the gap it began in is the turn before's too)."""
        gaps = [gap for end, gap in self.gaps if window is None or window[0] <= end - gap < window[1]]
        return sorted(gaps, reverse=True)[:SHOWN_STALLS]

    def around(self, instant: float) -> float:
        """The gap between ticks that `instant` fell in (0: none, the ticks went on around it)."""
        return max((gap for end, gap in self.gaps if end - gap <= instant <= end), default=0.0)

    def noted_free(self) -> None:
        """A weakref.finalize callback of the swapped-out engine: note when it was freed."""
        self.freed = time.perf_counter()

    def collected(self, phase: str, info: dict[str, int]) -> None:
        """A gc.callbacks callback: note each full collection."""
        if phase == "start":
            self._collecting = (time.perf_counter(), time.thread_time())
        elif info["generation"] == 2:
            now, cpu = time.perf_counter(), time.thread_time()
            self.collections.append((now, now - self._collecting[0], cpu - self._collecting[1],
                                     threading.current_thread().name))

    def full_collections(self, window: tuple[float, float] | None = None) -> str:
        """The full collections that ended in `window`, if given: how many, and the longest with their threads."""
        within = sorted(((length, cpu, thread) for end, length, cpu, thread in self.collections
                         if window is None or window[0] <= end <= window[1]), reverse=True)
        longest = ", ".join(f"{length * 1000:.1f} ms ({cpu * 1000:.1f} ms of CPU, {_thread(name)})"
                            for length, cpu, name in within[:3])
        return f"{len(within)}" + (f", the longest {longest}" if within else "")


async def measure(replica: Replica, trust: TrustService, first: Record, metrics: Registry, flood: list[Record],
                  rate: int) -> tuple[float, float, Stalls, int, int]:
    """Take the first record in, once the start's engine.snapshot is written, and `flood` at `rate` a second until
    the rebuild has caught up; the rebuild's wall time, the loop's longest gap in the second before (idle), its gaps
    until the swapped-out engine is freed and the rebuild's engine.snapshot written, and the records flooded. It holds
    the engine it started with by a weak reference alone, so that the swap frees it as a node's does; and the agents
    the engine swapped in holds. It ends once the recompute the swap brings forward has announced what changed."""
    stalls, flooded = Stalls(), 0
    capturing, recomputing, announcing = trust._captured_rebuild, trust._recomputed, trust._recompute_and_announce

    async def recomputed() -> Any:
        swapped = stalls.swapped
        table = await recomputing()
        if swapped and not stalls.recomputed:
            stalls.recomputed = time.perf_counter()
        return table

    async def announced() -> None:
        swapped = stalls.swapped
        await announcing()
        if swapped and not stalls.announced:
            stalls.announced = time.perf_counter()

    async def captured(*args: Any) -> Any:
        began = time.perf_counter()
        snapshot = await capturing(*args)
        stalls.captures.append((began, time.perf_counter()))
        return snapshot

    async def flooding() -> None:
        nonlocal flooded
        while flooded < len(flood) and trust._rebuilt is None:
            await trio.sleep(0)
        flooded = await flood_while(replica, flood, rate, stalls.batches, lambda: trust._mirror is None)

    trust._captured_rebuild = captured  # type: ignore[method-assign]
    trust._recomputed = recomputed  # type: ignore[method-assign]
    trust._recompute_and_announce = announced  # type: ignore[method-assign]
    engine = weakref.ref(trust.engine)
    weakref.finalize(trust.engine, stalls.noted_free)
    async with trio.open_nursery() as nursery:
        await nursery.start(trust.run)
        while metrics.value("engine_snapshot_records") != replica.store.size:
            await trio.sleep(0.05)
        nursery.start_soon(tick_while, stalls.gaps, lambda: True)
        await trio.sleep(1.0)
        idle, covered = max(gap for _, gap in stalls.gaps), metrics.value("engine_snapshot_records")
        stalls.gaps.clear()
        gc.callbacks.append(stalls.collected)
        began = time.perf_counter()
        assert replica.accept([first]).accepted == [first]
        nursery.start_soon(flooding)
        while trust.engine is engine():
            await trio.sleep(TICK_S)
        stalls.swapped = time.perf_counter()
        took, agents = stalls.swapped - began, len(trust.engine.agents())
        while metrics.value("engine_snapshot_records") == covered:  # (the rebuild's, written after it)
            await trio.sleep(0.05)
        stalls.written = time.perf_counter() - began - took
        while engine() is not None or not stalls.announced:
            await trio.sleep(0.05)
        while stalls.gaps[-1][0] < stalls.announced:  # (the gap it ended in, noted)
            await trio.sleep(TICK_S)
        gc.callbacks.remove(stalls.collected)
        nursery.cancel_scope.cancel()
    return took, idle, stalls, flooded, agents


def _arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options; exits 2 naming the one a measure could not run with."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--agents", type=int, default=1000, help="agents each org digests an epoch")
    parser.add_argument("--vouches", type=int, default=1000)
    parser.add_argument("--flood", type=int, default=0, help="records a second stored during the rebuild")
    parser.add_argument("--gc", choices=("on", "off", "freeze-after-full"), default="on",
                        help="the garbage collector during the measure (see above)")
    args = parser.parse_args(argv)
    if args.records < SNAPSHOT_AFTER:  # (the measure waits for the start's engine.snapshot, and the rebuild's)
        parser.error(f"--records: at least {SNAPSHOT_AFTER:,}: a node writes engine.snapshot only once it holds that "
                     "many records, and the measure begins once the start's is written")
    for option, value, least in (("--orgs", args.orgs, 1), ("--agents", args.agents, 1), ("--flood", args.flood, 0)):
        if value < least:  # (the data directory's build divides the records among orgs and agents)
            parser.error(f"{option}: at least {least}, got {value}")
    return args


def main() -> None:
    args = _arguments()
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name) / "node"
        began = time.perf_counter()
        build(directory, records=args.records, orgs=args.orgs, agents=args.agents, vouches=args.vouches)
        with RecordStore.open(directory) as store:
            key, first = rotate(directory, store)
            print(f"built {store.size} records in {time.perf_counter() - began:.1f} s")
            flooding = SigningKey.generate()  # a root of the replica's, so that its records are in the horizon
            replica = Replica(key, store, roots=(did_key(bytes(flooding.verify_key)),), max_hops=3, held_limit=1000)
            metrics = Registry()
            trust = TrustService(replica, roots=(), policy=DEFAULT_POLICY, broadcaster=Broadcaster(metrics),
                                 metrics=metrics, recompute_interval=3600.0, epoch_ms=HOUR_MS,
                                 snapshot_dir=directory)
            began = time.perf_counter()
            trust.replay(())
            print(f"start's replay: {time.perf_counter() - began:.1f} s")
            replica.listeners.append(trust.on_records)
            flood = flood_records(flooding, int(args.flood * FLOOD_S)) if args.flood else []
            gc.collect()
            gc.freeze()  # (see above)
            if args.gc == "off":
                gc.disable()
            elif args.gc == "freeze-after-full":
                gc.callbacks.append(_freeze_after_full)
            took, idle, stalls, flooded, agents = trio.run(measure, replica, trust, first, metrics, flood, args.flood)
            first_ms = full_collection_ms()
            later_ms = statistics.median(full_collection_ms() for _ in range(COLLECTIONS))
            if args.flood:
                print(f"flooded {flooded} records at {args.flood} a second"
                      f"{' (all it had)' if flooded == len(flood) else ' until the rebuild caught up'}")
            print(f"rebuild after the first record: {took:.1f} s; the loop's longest stalls: {_ms(stalls.longest())}"
                  f" (idle, the second before: {idle * 1000:.1f} ms)")
            print(f"full garbage collections during it: {stalls.full_collections()}")
            until_written = (stalls.swapped, max(stalls.freed, stalls.swapped + stalls.written))
            print(f"the swapped-out engine freed {max(stalls.freed - stalls.swapped, 0.0):.2f} s after the swap, in a "
                  f"stall of {stalls.around(stalls.freed) * 1000:.1f} ms ({agents} agents swapped in); the loop's "
                  f"longest stalls from the swap until then: "
                  f"{_ms(stalls.longest((stalls.swapped, stalls.freed))) or 'none'}; until engine.snapshot was "
                  f"written too: {_ms(stalls.longest(until_written))}")
            print(f"the recompute the swap brought forward returned {stalls.recomputed - stalls.swapped:.2f} s after "
                  f"it, in a stall of {stalls.around(stalls.recomputed) * 1000:.1f} ms; the loop's longest stalls from "
                  f"the swap until then: {_ms(stalls.longest((stalls.swapped, stalls.recomputed)))}")
            announced = (stalls.recomputed, stalls.announced)
            print(f"its announce of the {len(trust._known)} agents the stream told of: "
                  f"{stalls.announced - stalls.recomputed:.2f} s; the loop's longest stalls meanwhile: "
                  f"{_ms(stalls.longest(announced))}; full garbage collections from the swap until it ended: "
                  f"{stalls.full_collections((stalls.swapped, stalls.announced))}")
            for began, ended in stalls.captures:
                print(f"its capture of engine.snapshot: {ended - began:.2f} s; the loop's longest stalls meanwhile: "
                      f"{_ms(stalls.longest((began, ended)))}; written {stalls.written:.1f} s after the swap")
                print(f"  full garbage collections meanwhile: {stalls.full_collections((began, ended))}")
                batches = sorted((length, cpu) for end, length, cpu in stalls.batches if began <= end <= ended)
                if batches:
                    print(f"  the flood's longest batch meanwhile: {batches[-1][0] * 1000:.1f} ms "
                          f"({batches[-1][1] * 1000:.1f} ms of CPU), of {len(batches)}")
            print(f"a full garbage collection once the measure ended: the first {first_ms:.1f} ms of CPU, then "
                  f"{later_ms:.1f} ms each (median of {COLLECTIONS}), walking {len(gc.get_objects()):,} objects")


def full_collection_ms() -> float:
    """The CPU time of one full garbage collection made now, in ms."""
    began = time.thread_time()
    gc.collect()
    return (time.thread_time() - began) * 1000


def _thread(name: str) -> str:
    """A thread by its name: the loop's, or a worker thread by the function it runs (trio names it so)."""
    return "the loop's" if name == threading.main_thread().name else name.split(" from ")[0] + "'s"


def _freeze_after_full(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def _ms(gaps: list[float]) -> str:
    return ", ".join(f"{gap * 1000:.1f} ms" for gap in gaps)


if __name__ == "__main__":
    main()
