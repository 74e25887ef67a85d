"""The trust engine's memory and CPU per digest as a node's start-up replay feeds it (node.trust.TrustService.replay,
DESIGN.md §6): the bytes the engine holds per digest (tracemalloc, once every agent and org pair exists, so that
what grows is what grows with the digests), where they are held (by file), the peak of a full recompute over them,
and the CPU microseconds of TrustEngine.add_digest a digest (timed without tracemalloc). A figure with no target; it
is not a test.

The network: `--orgs` orgs, this node's and one trust root among them, the rest vouched for by the root; `--agents`
agents, each with an hourly digest from every other org and this node's first-hand observations of it every hour
(as replay counts the node's own digests), over `--epochs` hours.

    python benchmarks/engine.py                          # 10 orgs, 10^3 agents, 100 hours: 9 * 10^5 digests
    python benchmarks/engine.py --epochs 20 --agents 500  # quicker
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from typing import Any
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vouching.evidence import Outcomes  # noqa: E402
from vouching.params import HOUR_MS  # noqa: E402
from vouching.scoring import TrustEngine  # noqa: E402

WARM_EPOCHS = 2  # fed before the first measure: every agent and (agent, org) pair exists from then on


def _network(orgs: int) -> tuple[TrustEngine, list[str]]:
    names = [f"did:key:org{i}" for i in range(orgs)]
    engine = TrustEngine(names[0], [names[1]])
    for n, org in enumerate(names[2:]):
        engine.add_org_vouch(names[1], org, 1.0, record_id=random.randbytes(32), ts=n)
    return engine, names


def _epoch(orgs: list[str], agents: list[str], epoch: int, rng: random.Random
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One hour's inputs: this node's first-hand observations of every agent (add_first_hand's arguments), and
    every other org's digest of each (add_digest's)."""
    ts = (epoch + 1) * HOUR_MS
    first_hand = [dict(agent=agent, ts=ts, outcomes=Outcomes(ok=rng.randrange(40), error=rng.randrange(2)))
                  for agent in agents]
    digests = [dict(issuer=org, agent=agent, epoch=epoch * HOUR_MS, length=HOUR_MS, ts=ts,
                    outcomes=Outcomes(ok=rng.randrange(40), error=rng.randrange(3), denied=rng.randrange(2),
                                      timeout=rng.randrange(2)), record_id=rng.randbytes(32))
               for org in orgs[1:] for agent in agents]
    return first_hand, digests


def _feed(engine: TrustEngine, orgs: list[str], agents: list[str], epochs: range, rng: random.Random) -> int:
    """Feed `epochs`; the nanoseconds spent in add_digest."""
    clock, spent = time.process_time_ns, 0  # CPU time: the machine may be busy with more than this
    for epoch in epochs:
        first_hand, digests = _epoch(orgs, agents, epoch, rng)
        for kwargs in first_hand:
            engine.add_first_hand(**kwargs)
        add = engine.add_digest
        began = clock()
        for kwargs in digests:
            add(**kwargs)
        spent += clock() - began
    return spent


def memory(orgs: int, agents: int, epochs: int) -> None:
    rng = random.Random(1)
    names = [f"did:key:agent{i}" for i in range(agents)]
    tracemalloc.start()
    engine, org_names = _network(orgs)
    _feed(engine, org_names, names, range(WARM_EPOCHS), rng)
    engine.recompute(now=WARM_EPOCHS * HOUR_MS)
    gc.collect()
    before = tracemalloc.take_snapshot()
    held_before, _ = tracemalloc.get_traced_memory()
    _feed(engine, org_names, names, range(WARM_EPOCHS, WARM_EPOCHS + epochs), rng)
    gc.collect()
    held_after, _ = tracemalloc.get_traced_memory()
    digests = epochs * agents * (orgs - 1)
    growth = held_after - held_before
    print(f"{digests} digests ({orgs} orgs, {agents} agents, {epochs} hours): the engine held "
          f"{held_before / 1e6:.1f} MB before them and {held_after / 1e6:.1f} MB after, "
          f"{growth / digests:.1f} bytes per digest")
    for stat in tracemalloc.take_snapshot().compare_to(before, "filename")[:4]:
        print(f"  {stat.size_diff / digests:7.1f} bytes per digest in {stat.traceback[0].filename}")
    tracemalloc.reset_peak()
    engine.recompute(now=(WARM_EPOCHS + epochs) * HOUR_MS)
    _, peak = tracemalloc.get_traced_memory()
    print(f"  a full recompute over them peaks at {(peak - held_after) / digests:.1f} bytes per digest more")
    tracemalloc.stop()


def cpu(orgs: int, agents: int, epochs: int) -> None:
    rng = random.Random(1)
    names = [f"did:key:agent{i}" for i in range(agents)]
    engine, org_names = _network(orgs)
    _feed(engine, org_names, names, range(WARM_EPOCHS), rng)
    spent = _feed(engine, org_names, names, range(WARM_EPOCHS, WARM_EPOCHS + epochs), rng)
    digests = epochs * agents * (orgs - 1)
    print(f"feeding a digest (TrustEngine.add_digest): {spent / digests / 1000:.2f} us ({digests} digests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    memory(args.orgs, args.agents, args.epochs)
    cpu(args.orgs, args.agents, args.epochs)


if __name__ == "__main__":
    main()
