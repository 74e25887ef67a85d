"""The trust engine's rebuild after `vouchnet key adopt` (node.trust.TrustService._rebuild): once the successor's
first record comes back, the engine is built again from every stored record on the trio loop, a TURN_S at a time,
and swapped in. This gives its wall time and the loop's longest stalls meanwhile: the longest gaps between the
wake-ups of a task ticking every TICK_S (what a request would wait). A figure with no target; it is not a test.

The data directory is benchmarks/startup.py's (`build`, no telemetry: no undigested events to read), its node key
then rotated to a new one whose first record is held back; the node starts as the new key (the engine replayed, not
measured) and takes the first record in.

    python benchmarks/adopt_rebuild.py                       # N = 10^5
    python benchmarks/adopt_rebuild.py --records 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from benchmarks.startup import build  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from node.keys import load_org_key  # noqa: E402
from node.metrics import Registry  # noqa: E402
from node.stream import Broadcaster  # noqa: E402
from node.trust import TrustService  # noqa: E402
from vouching import Record, did_key, issue_record, org_body  # noqa: E402
from vouching.params import HOUR_MS  # noqa: E402
from vouching.policy import DEFAULT_POLICY  # noqa: E402

TICK_S = 0.001
SHOWN_STALLS = 5


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


async def measure(replica: Replica, trust: TrustService, first: Record) -> tuple[float, float, list[float]]:
    """Take the first record in; the rebuild's wall time, the loop's longest gap in the second before (idle), and
    its longest gaps until the swap."""
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await trio.sleep(TICK_S)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    engine = trust.engine
    async with trio.open_nursery() as nursery:
        await nursery.start(trust.run)
        nursery.start_soon(tick)
        await trio.sleep(1.0)
        idle = max(gaps)
        gaps.clear()
        began = time.perf_counter()
        assert replica.accept([first]).accepted == [first]
        while trust.engine is engine:
            await trio.sleep(0.05)
        took = time.perf_counter() - began
        nursery.cancel_scope.cancel()
    return took, idle, sorted(gaps, reverse=True)[:SHOWN_STALLS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--agents", type=int, default=1000, help="agents each org digests an epoch")
    parser.add_argument("--vouches", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name) / "node"
        began = time.perf_counter()
        build(directory, records=args.records, orgs=args.orgs, agents=args.agents, vouches=args.vouches)
        with RecordStore.open(directory) as store:
            key, first = rotate(directory, store)
            print(f"built {store.size} records in {time.perf_counter() - began:.1f} s")
            replica = Replica(key, store, roots=(), max_hops=3, held_limit=1000)
            metrics = Registry()
            trust = TrustService(replica, roots=(), policy=DEFAULT_POLICY, broadcaster=Broadcaster(metrics),
                                 metrics=metrics, recompute_interval=3600.0, epoch_ms=HOUR_MS)
            began = time.perf_counter()
            trust.replay(())
            print(f"start's replay: {time.perf_counter() - began:.1f} s")
            replica.listeners.append(trust.on_records)
            took, idle, stalls = trio.run(measure, replica, trust, first)
            print(f"rebuild after the first record: {took:.1f} s; the loop's longest stalls: "
                  + ", ".join(f"{gap * 1000:.1f} ms" for gap in stalls) + f" (idle, the second before: {idle * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
