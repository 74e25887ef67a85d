"""The objects the garbage collector tracks per agent and per record in the trust engine, and what one full collection
of them takes: a full collection walks every tracked object but those frozen (gc.freeze, as the node freezes what its
start built), holding the GIL and so the node's trio loop meanwhile (benchmarks/adopt_rebuild.py prints those during
a flood of new agents). Counted after full collections, which untrack the tuples and dicts holding no tracked object:
what every later full collection walks. A figure with no target; it is not a test.

Per size: an engine (--orgs orgs, a trust root vouching for the others) fed an operator vouch for each of N new agents,
then --digests digests of each agent by other orgs, then read as a node reads it (a full recompute, every agent
scored, then one more digest of each and every agent scored again, which updates its cached sums); the tracked
objects each step made, by type, and the CPU time of one gc.collect() over the engine, made after what there was
before was frozen: it walks the engine's lists and dicts too, as it walks those of an engine rebuilt while the node
runs (a node's start freezes the engine it replayed, whose lists a collection then never walks). Then the node's path
(gossip.replica.Replica and node.trust.TrustService over a record store, made likewise): N records, each a vouch for
a new agent, as a flood of them arrives, and the objects they leave tracked, by type.

    python benchmarks/gc_objects.py                          # N = 10^4 and 10^5
    python benchmarks/gc_objects.py --agents 200000 --no-node
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacl.signing import SigningKey  # noqa: E402

from benchmarks.adopt_rebuild import flood_records, full_collection_ms  # noqa: E402
from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from node.metrics import Registry  # noqa: E402
from node.stream import Broadcaster  # noqa: E402
from node.trust import TrustService  # noqa: E402
from vouching import did_key  # noqa: E402
from vouching.evidence import Outcomes  # noqa: E402
from vouching.params import HOUR_MS  # noqa: E402
from vouching.policy import DEFAULT_POLICY  # noqa: E402
from vouching.scoring import TrustEngine  # noqa: E402

COLLECTIONS = 5  # timed full collections, of which the median is given
SHOWN_TYPES = 6
FLOOD_BATCH = 1000  # records a flood's batch holds, as benchmarks/adopt_rebuild.py


def tracked() -> Counter[str]:
    """The objects the collector tracks, by type, after two full collections (the frozen ones not among them): one
    untracks a tuple of untracked values only if it reaches the tuple after them, as the younger generations'
    collections, many a full one, do in a node."""
    gc.collect()
    gc.collect()
    return Counter(type(value).__name__ for value in gc.get_objects())


def made(step: Callable[[], None]) -> Counter[str]:
    """The tracked objects `step` left, by type."""
    before = tracked()
    step()
    return tracked() - before


def collection_ms() -> float:
    """The median CPU time of a full collection, in ms (the wall time the loop waits, on a machine with a core to
    spare: the CPU time does not grow with what else the machine runs)."""
    return statistics.median(full_collection_ms() for _ in range(COLLECTIONS))


def engine(agents: int, orgs: int, digests: int) -> None:
    org_dids = [f"did:key:org{o}" for o in range(orgs)]
    agent_dids = [f"did:key:agent{a}" for a in range(agents)]
    ids = iter(range(1, 10**12))

    def record_id() -> bytes:
        return next(ids).to_bytes(32, "big")

    gc.collect()
    gc.freeze()
    trust = TrustEngine(org_dids[0], [org_dids[1]], epoch_ms=HOUR_MS)
    for org in org_dids[2:]:
        trust.add_org_vouch(org_dids[1], org, 1.0, record_id=record_id(), ts=0)

    def vouches() -> None:
        for a, agent in enumerate(agent_dids):
            trust.add_agent_vouch(org_dids[a % orgs], agent, 0.5, "operator", record_id=record_id(), ts=0)

    def digest_each(epoch: int, issuer: int) -> None:
        for agent in agent_dids:
            trust.add_digest(org_dids[issuer % orgs], agent, epoch=epoch * HOUR_MS, length=HOUR_MS,
                             outcomes=Outcomes(ok=5, error=epoch % 2), record_id=record_id(), ts=(epoch + 1) * HOUR_MS)

    def digested() -> None:
        for d in range(digests):
            digest_each(0, d + 2)

    def read() -> None:
        now = 2 * HOUR_MS
        trust.recompute(now=now)
        for agent in agent_dids:
            trust.score(agent, now=now)
        digest_each(1, 2)
        for agent in agent_dids:
            trust.score(agent, now=now)

    print(f"{agents:,} agents, {orgs} orgs, {digests} digests an agent:")
    _row("an agent vouch (a new agent)", made(vouches), agents)
    _row("a digest", made(digested), agents * digests)
    _row("an agent read (recompute, scores, a digest, scores)", made(read), agents)
    print(f"  one full collection: {collection_ms():.1f} ms, {len(gc.get_objects()):,} tracked objects")
    gc.unfreeze()


def node(agents: int) -> None:
    flooding = SigningKey.generate()
    flood = flood_records(flooding, agents + 1)
    gc.collect()
    gc.freeze()  # (the flood's records with the rest: a node receiving them would not hold them)
    with tempfile.TemporaryDirectory() as name, RecordStore.open(Path(name)) as store:
        replica = Replica(SigningKey.generate(), store, roots=(did_key(bytes(flooding.verify_key)),), max_hops=3,
                          held_limit=1000)
        metrics = Registry()
        trust = TrustService(replica, roots=(), policy=DEFAULT_POLICY, broadcaster=Broadcaster(metrics),
                             metrics=metrics, recompute_interval=3600.0, epoch_ms=HOUR_MS)
        trust.replay(())
        replica.listeners.append(trust.on_records)
        replica.accept(flood[:1])

        def flooded() -> None:
            for at in range(1, len(flood), FLOOD_BATCH):
                replica.accept(flood[at:at + FLOOD_BATCH])

        counts = made(flooded)
        print(f"the node's path, {agents:,} records flooded, each a vouch for a new agent:")
        _row("a record", counts, agents)
        print(f"  one full collection: {collection_ms():.1f} ms, {len(gc.get_objects()):,} tracked objects")
    gc.unfreeze()


def _row(what: str, counts: Counter[str], per: int) -> None:
    types = ", ".join(f"{kind} {count / per:.2f}" for kind, count in counts.most_common(SHOWN_TYPES)
                      if count / per >= 0.005)
    print(f"  tracked objects {what}: {counts.total() / per:.2f}" + (f" ({types})" if types else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--digests", type=int, default=2, help="digests of each agent, each by another org")
    parser.add_argument("--no-node", dest="node", action="store_false", help="the engine alone")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}")
    for agents in args.agents:
        engine(agents, args.orgs, args.digests)
        if args.node:
            node(agents)


if __name__ == "__main__":
    main()
