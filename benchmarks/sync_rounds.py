"""What periodic sync rounds cost the node serving them (DESIGN.md §5, gossip.serving_budget): a node holding a record
of each of N orgs serves every head to a peer in step with it, which then asks for nothing more. Prints a round's
units (as the serving budget counts them), KiB and CPU, and how many of the rounds its K peers have with it in a
simulated hour its default serving budget serves: each peer has a round every sync interval (30 s, give or take a
quarter) with 3 of its K peers at random, as SyncService's periodic rounds with peers all unsettled (a busy network).

Usage: python benchmarks/sync_rounds.py [--orgs N] [--peers K] [--hours H]
Exits 1 if any round is answered Busy. The node's store is built once and cached (benchmarks/sync.py's).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip.serving_budget import ServingBudget, ServingRates, most_page_cost, page_cost  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from gossip.sync import Finished, IssuerIndex, Send, SyncClient, SyncLimits, SyncServer  # noqa: E402
from sync import CACHE, build_server_store  # noqa: E402

INTERVAL = 30.0  # [p2p] sync_interval's default
ROUND_PEERS = 3  # [p2p] sync_peers' default


def serve_round(store: RecordStore) -> tuple[list[int], int, float]:
    """Each page's cost, the bytes and the node's CPU seconds of one round served to a peer in step with `store`."""
    limits = SyncLimits()
    server = SyncServer(store, IssuerIndex(store), limits)
    client = SyncClient(store, store.heads(), limits)  # (the same store: the peer holds all the node holds)
    costs, size, cpu = [], 0, 0.0
    event = client.start()
    while isinstance(event, Send):
        units, start = server.units, time.process_time()
        page = next(server.receive(event.payload))
        cpu += time.process_time() - start
        costs.append(page_cost(server.units - units, len(page)))
        size += len(page)
        event = client.receive(page)
    assert isinstance(event, Finished), "a peer in step asks for no records"
    return costs, size, cpu


def rounds_in(hours: float, peers: int, seed: int = 7) -> list[tuple[float, str]]:
    """When each of `peers` peers has a round with the node, and which, over `hours`."""
    rng = random.Random(seed)
    rounds = []
    for peer in range(peers):
        at = rng.uniform(0, INTERVAL)
        while at < hours * 3600:
            if rng.random() < min(1.0, ROUND_PEERS / peers):
                rounds.append((at, f"peer{peer}"))
            at += INTERVAL * rng.uniform(0.75, 1.25)
    return sorted(rounds)


def served(rounds: list[tuple[float, str]], costs: list[int]) -> tuple[int, int]:
    """Rounds served to their end and rounds answered Busy under the default budget (a peer told to come back asks
    nothing until then, as SyncService does)."""
    budget = ServingBudget(ServingRates(), most_page_cost(SyncLimits()))
    throttled: dict[str, float] = {}
    done = busy = 0
    for now, peer in rounds:
        if throttled.get(peer, -1.0) > now:
            continue
        for cost in costs:
            if retry := budget.retry_after(peer, now):
                throttled[peer] = now + retry
                busy += 1
                break
            budget.charge(peer, cost, now)
        else:
            done += 1
    return done, busy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=100_000)
    parser.add_argument("--peers", type=int, default=8, help="peers the node has, each having rounds with it")
    parser.add_argument("--hours", type=float, default=1.0)
    args = parser.parse_args()
    if args.orgs < 1 or args.peers < 1 or not args.hours > 0:
        parser.error("--orgs and --peers: at least 1; --hours: more than 0")
    directory = CACHE / f"{args.orgs}-{args.orgs}"
    build_server_store(directory, args.orgs, args.orgs)
    with RecordStore.open(directory) as store:
        costs, size, cpu = serve_round(store)
    rounds = rounds_in(args.hours, args.peers)
    done, busy = served(rounds, costs)
    print(f"a round of {args.orgs:,} orgs' heads: {sum(costs):,} units, {size / 1024:,.0f} KiB, "
          f"{cpu * 1000:.0f} ms of the node's CPU")
    print(f"{len(rounds)} rounds from {args.peers} peers in {args.hours:g} h: {done} served, {busy} answered Busy, "
          f"{len(rounds) - done - busy} not asked (their peer told to come back)")
    return 1 if busy else 0


if __name__ == "__main__":
    sys.exit(main())
