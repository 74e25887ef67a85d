"""A running node bringing engine.snapshot forward (node.trust.TrustService._bring_snapshot_forward) under a flood:
the loop's longest stalls in each of its steps, and the flood's batches stored meanwhile, against their CPU time; and
the loop's longest stall in each run, against its target of TARGET_STALL_S with no flood. It is not a test.

The store holds N records, a root's org record and vouches each for a new agent (benchmarks/adopt_rebuild.py's
flood_records), replayed as a start replays them, which writes engine.snapshot of them all; then --since more, so that
bringing it forward is due. While a flood stores records at --flood a second (batches of those due each
FLOOD_TICK_S, FLOOD_BATCH at most, as a sync's pages), each a vouch for a new agent fed to the running engine on the
loop, the snapshot is brought forward once a run: its file read in a worker thread, decoded on the loop a turn at a
time (a chunk of CHUNK_ROWS rows a step; in one cbor2 call in the worker thread before 2026-11-28) and restored into
an engine of its own on the loop a turn at a time (in a worker thread before 2026-11-28), fed the records since on the
loop a TURN_S at a time, captured on the loop a turn at a time (Capture.on_loop; in a worker thread before
2026-11-28), encoded on the loop a turn at a time (as decoded), its file written in a worker thread, and what it made
let go of on the loop a turn at a time ("end"; at once as it returned before 2026-11-28). A worker thread's Python
holds the GIL against the loop, which waits for it back after each call that lets go of it (sqlite's, the poll's),
and a call into C such as cbor2's holds it throughout. Each step gives its wall time, the longest gaps between the
wake-ups of a task ticking every TICK_S that overlap it (what a request would wait; a gap across two steps is each
one's, and the last ends after the bring-forward returned: before 2026-11-28 only those that ended before were
counted, which left out the 150-250 ms of letting go of all it made at once), and the flood's longest batch that ended
in it, its wall time against the loop's CPU time: a batch waiting for the GIL takes longer than its CPU time; and the
full garbage collections that ended in it, which hold the GIL in whichever thread (the engine brought forward is not
frozen). What there is before each run is frozen, as a node freezes what its start built (node.daemon.serve_node);
each run goes on from the last, the flood's records since in the snapshot's.

    python benchmarks/snapshot_forward.py                    # N = 10^5, 10^4 records a second
    python benchmarks/snapshot_forward.py --flood 0          # no flood
"""

from __future__ import annotations

import argparse
import functools
import gc
import inspect
import os
import sys
import tempfile
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

import node.engine_snapshot  # noqa: E402
import node.trust  # noqa: E402
from benchmarks.adopt_rebuild import FLOOD_BATCH, Stalls, flood_records, flood_while, tick_while  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from node.metrics import Registry  # noqa: E402
from node.stream import Broadcaster  # noqa: E402
from node.trust import TrustService  # noqa: E402
from vouching import did_key  # noqa: E402
from vouching.params import HOUR_MS  # noqa: E402
from vouching.policy import DEFAULT_POLICY  # noqa: E402

SHOWN_STALLS = 3
TARGET_STALL_S = 0.05  # the loop's longest stall a bring-forward may cause with no flood
# The steps of _bring_snapshot_forward, each by what it calls: (module, attribute), wrapped to note its window; the
# capture is what comes between the feed and the write.
STEPS = {"read": (node.engine_snapshot, "read_parts"), "decode": (node.engine_snapshot, "decoding"),
         "check": (node.engine_snapshot, "check"), "restore": (node.engine_snapshot, "restoring"),
         "feed": (TrustService, "_feeding"), "encode": (node.engine_snapshot, "encoding"),
         "write": (node.engine_snapshot, "write_parts")}


class Windows:
    """When each step ran, the loop's gaps between ticks and the flood's batches, each as (end, length[, CPU])."""

    def __init__(self) -> None:
        self.steps: dict[str, tuple[float, float]] = {}
        self.gaps: list[tuple[float, float]] = []
        self.batches: list[tuple[float, float, float]] = []
        self.collections = Stalls()  # (its full garbage collections alone)

    def noting(self, name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(step)
        def noted(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                self.steps[name] = (began, time.perf_counter())

        @functools.wraps(step)
        def noted_generator(*args: Any, **kwargs: Any) -> Generator[Any, None, Any]:
            began = time.perf_counter()
            done = yield from step(*args, **kwargs)
            self.steps[name] = (began, time.perf_counter())
            return done
        return noted_generator if inspect.isgeneratorfunction(step) else noted

    def report(self, began: float, ended: float) -> float:
        """Print the figures of a bring-forward from `began` to `ended`; the loop's longest stall, in seconds."""
        steps = dict(self.steps)
        steps["capture"] = (steps["feed"][1], steps["encode"][0])
        steps["end"] = (steps["write"][1], ended)
        print(f"  brought forward in {ended - began:.2f} s; the loop's longest stalls: {self._gaps(began, ended)}"
              f"{self._batch(began, ended)}")
        for name in ("read", "decode", "check", "restore", "feed", "capture", "encode", "write", "end"):
            start, stop = steps[name]
            print(f"    {name}: {stop - start:.3f} s; the loop's longest stalls: {self._gaps(start, stop)}"
                  f"{self._batch(start, stop)}; full collections: "
                  f"{self.collections.full_collections((start, stop))}")
        return max((gap for end, gap in self.gaps if _overlap(end, gap, began, ended)), default=0.0)

    def _gaps(self, start: float, stop: float) -> str:
        """The longest gaps that overlap [start, stop] (a gap across two steps is each one's): the loop is back once
        what held it (a turn, a batch, a call holding the GIL, what the bring-forward let go of as it returned) is
        done, after `stop` for the last."""
        gaps = sorted((gap for end, gap in self.gaps if _overlap(end, gap, start, stop)), reverse=True)
        return ", ".join(f"{gap * 1000:.1f} ms" for gap in gaps[:SHOWN_STALLS]) or "none"

    def _batch(self, start: float, stop: float) -> str:
        """The flood's longest batch that ended in [start, stop]."""
        batches = sorted((length, cpu) for end, length, cpu in self.batches if start <= end <= stop)
        if not batches:
            return ""
        return (f"; the flood's longest batch {batches[-1][0] * 1000:.1f} ms ({batches[-1][1] * 1000:.1f} ms of CPU)"
                f", of {len(batches)}")


async def measure(replica: Replica, trust: TrustService, flood: list, rate: int) -> tuple[int, float]:
    """Bring engine.snapshot forward while `flood` is stored at `rate` a second; the records flooded, and the loop's
    longest stall meanwhile (s)."""
    windows, flooded = Windows(), 0
    for name, (module, attribute) in STEPS.items():
        setattr(module, attribute, windows.noting(name, getattr(module, attribute)))
    done = trio.Event()

    async def flooding() -> None:
        nonlocal flooded
        flooded = await flood_while(replica, flood, rate, windows.batches, lambda: not done.is_set())
        if rate and flooded == len(flood) and not done.is_set():
            print("  (the flood ran out before the snapshot was brought forward: give it more --flood-seconds)")

    gc.callbacks.append(windows.collections.collected)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick_while, windows.gaps, lambda: not done.is_set())
        nursery.start_soon(flooding)
        await trio.sleep(0.5)
        began = time.perf_counter()
        assert await trust._bring_snapshot_forward(replica.store.size)
        ended = time.perf_counter()
        done.set()
    gc.callbacks.remove(windows.collections.collected)
    longest = windows.report(began, ended)
    for name, (module, attribute) in STEPS.items():
        setattr(module, attribute, getattr(module, attribute).__wrapped__)
    return flooded, longest


def _overlap(end: float, gap: float, start: float, stop: float) -> bool:
    """Whether the gap of `gap` seconds that ended at `end` overlaps [start, stop]."""
    return end >= start and end - gap <= stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--since", type=int, default=20_000, help="records stored after engine.snapshot")
    parser.add_argument("--flood", type=int, default=10_000, help="records a second stored meanwhile")
    parser.add_argument("--flood-seconds", type=float, default=10.0, help="the longest flood (signed beforehand)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    flooding = SigningKey.generate()
    began = time.perf_counter()
    records = flood_records(flooding, args.records + args.since + int(args.flood * args.flood_seconds * args.runs))
    stored, since, flood = (records[:args.records], records[args.records:args.records + args.since],
                            records[args.records + args.since:])
    print(f"signed {len(records):,} records in {time.perf_counter() - began:.0f} s")
    with tempfile.TemporaryDirectory() as name, RecordStore.open(Path(name)) as store:
        replica = Replica(SigningKey.generate(), store, roots=(did_key(bytes(flooding.verify_key)),), max_hops=3,
                          held_limit=1000)
        for at in range(0, len(stored), FLOOD_BATCH):
            replica.accept(stored[at:at + FLOOD_BATCH])
        metrics = Registry()
        trust = TrustService(replica, roots=(), policy=DEFAULT_POLICY, broadcaster=Broadcaster(metrics),
                             metrics=metrics, recompute_interval=3600.0, epoch_ms=HOUR_MS, snapshot_dir=Path(name))
        trust.replay(())  # (captures engine.snapshot of them all)
        trust._snapshot_covers = store.size
        node.engine_snapshot.write(Path(name), trust._replayed)
        trust._replayed = None
        replica.listeners.append(trust.on_records)
        for at in range(0, len(since), FLOOD_BATCH):
            replica.accept(since[at:at + FLOOD_BATCH])
        stalls = []
        for run in range(args.runs):
            gc.collect()
            gc.freeze()
            print(f"run {run + 1}: {store.size:,} records, {len(trust.engine.agents()):,} agents, load average "
                  f"{os.getloadavg()[0]:.2f}, flood {args.flood:,} a second")
            flooded, longest = trio.run(measure, replica, trust, flood, args.flood)
            flood, stalls = flood[flooded:], [*stalls, longest]  # (a chain: the next run goes on)
            gc.unfreeze()
        print(f"the loop's longest stall in each run: {', '.join(f'{stall * 1000:.1f} ms' for stall in stalls)} "
              f"(target: {TARGET_STALL_S * 1000:.0f} ms or less{', with no flood' if args.flood else ''})")


if __name__ == "__main__":
    main()
