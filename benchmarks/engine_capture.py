"""The capture of engine.snapshot on the trio loop (vouching.engine_state.capturing, run by node.trust.Capture.on_loop
in the rebuild after `vouchnet key adopt`): how long each of its steps holds the loop, by phase, and the loop's
longest stall over the whole capture. A figure with no target; it is not a test.

The engine is fed an operator vouch for each of N new agents by --orgs orgs, then --digests digests of each agent by
other orgs (as benchmarks/gc_objects.py feeds it). Each run steps `capturing` alone, with the collector off (a full
collection may land in any step: benchmarks/adopt_rebuild.py's subject), and gives the wall time of its first step
(the state's scalars and lists), of its longest and of its median: the next steps copy the columns, COPY_BYTES at a
time, then take the agents, vouches and latest vouches, CAPTURE_CHUNK at a time. Then each run captures with
Capture.on_loop on a trio loop, the collector on, and gives the longest gap between the wake-ups of a task ticking
every TICK_S meanwhile: a turn is TURN_S of steps (node.trust) plus the step that ends it, or a full collection.

    python benchmarks/engine_capture.py                      # N = 10^5, 3 runs
    python benchmarks/engine_capture.py --agents 1000000 --runs 1
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402

from node.trust import Capture  # noqa: E402
from vouching import engine_state  # noqa: E402
from vouching.arrays import array_columns  # noqa: E402
from vouching.evidence import Outcomes  # noqa: E402
from vouching.params import HOUR_MS  # noqa: E402
from vouching.scoring import TrustEngine  # noqa: E402

TICK_S = 0.001


def fed(agents: int, orgs: int, digests: int) -> TrustEngine:
    org_dids = [f"did:key:org{o}" for o in range(orgs)]
    ids = iter(range(1, 10**12))
    engine = TrustEngine(org_dids[0], [org_dids[1]], epoch_ms=HOUR_MS)
    for org in org_dids[2:]:
        engine.add_org_vouch(org_dids[1], org, 1.0, record_id=next(ids).to_bytes(32, "big"), ts=0)
    agent_dids = [f"did:key:agent{a}" for a in range(agents)]
    for a, agent in enumerate(agent_dids):
        engine.add_agent_vouch(org_dids[a % orgs], agent, 0.5, "operator", record_id=next(ids).to_bytes(32, "big"),
                               ts=0)
    for d in range(digests):
        for agent in agent_dids:
            engine.add_digest(org_dids[(d + 2) % orgs], agent, epoch=0, length=HOUR_MS, outcomes=Outcomes(ok=5),
                              record_id=next(ids).to_bytes(32, "big"), ts=HOUR_MS)
    return engine


def stepped(engine: TrustEngine) -> list[float]:
    """The wall time of each step of a capture, in ms."""
    steps, times = engine_state.capturing(engine), []
    while True:
        began = time.perf_counter()
        try:
            next(steps)
        except StopIteration:
            times.append((time.perf_counter() - began) * 1000)
            return times
        times.append((time.perf_counter() - began) * 1000)


async def longest_stall(engine: TrustEngine) -> tuple[float, float]:
    """The loop's longest stall during Capture.on_loop, and the capture's wall time, in ms."""
    stall, done = [0.0], trio.Event()

    async def ticking() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await trio.sleep(TICK_S)
            now = time.perf_counter()
            stall[0] = max(stall[0], now - last - TICK_S)
            last = now

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticking)
        await trio.sleep(0.01)
        began = time.perf_counter()
        await Capture(engine).on_loop()
        took = time.perf_counter() - began
        done.set()
    return stall[0] * 1000, took * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--digests", type=int, default=2, help="digests of each agent, each by another org")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    engine = fed(args.agents, args.orgs, args.digests)
    column_bytes = sum(len(column) * column.itemsize
                       for store in (engine._vouches, engine._evidence, engine._deviation)
                       for column in array_columns(store).values())
    print(f"Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}; {args.agents:,} agents, "
          f"{column_bytes / 1e6:.1f} MB of columns")
    for run in range(args.runs):
        gc.disable()
        times = stepped(engine)
        gc.enable()
        print(f"  run {run + 1}, collector off: first step {times[0]:.2f} ms; {len(times)} steps, the longest "
              f"{max(times):.2f} ms, of the others {max(times[1:]):.2f} ms, median {statistics.median(times):.2f} "
              f"ms; total {sum(times):.0f} ms")
    for run in range(args.runs):
        stall, took = trio.run(longest_stall, engine)
        print(f"  run {run + 1}, Capture.on_loop, collector on: the loop's longest stall {stall:.1f} ms, capture "
              f"{took:.0f} ms")


if __name__ == "__main__":
    main()
