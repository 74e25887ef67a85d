"""What periodic sync rounds cost the node serving them (DESIGN.md §5, gossip.serving_budget): a node holding a record
of each of N orgs serves its heads to peers in step with it, which then ask for nothing more. Prints a round's units
(as the serving budget counts them), KiB and CPU, all heads (`/vouchnet/sync/1`) and only those changed since the
peer's last round (`/2`, gossip.sync_marks), and how many of the rounds its K peers have with it in a simulated hour
its default serving budget serves, each way: each peer has a round every sync interval (30 s, give or take a quarter)
with 3 of its own P peers (P = K by default: all know one another; a bootstrap hub has K = 200 peers of P = 8 each,
75 rounds an interval), reading every head again 120 intervals (an hour) after it last did, or after a round cut short.
Meanwhile the network's orgs sign --changes records a second, each moving the head of one org at random.

Usage: python benchmarks/sync_rounds.py [--orgs N] [--peers K] [--their-peers P] [--hours H] [--changes R]
Exits 1 if any `/2` round is answered Busy. The node's store is built once and cached (benchmarks/sync.py's).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip.serving_budget import ServingBudget, ServingRates, most_page_cost, page_cost  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from gossip.sync import Finished, IssuerIndex, Send, SyncClient, SyncLimits, SyncServer  # noqa: E402
from gossip.sync_marks import HeadMarks  # noqa: E402
from gossip.sync_messages import SYNC_PROTOCOL, SYNC_PROTOCOL_2  # noqa: E402
from sync import CACHE, build_server_store  # noqa: E402

INTERVAL = 30.0  # [p2p] sync_interval's default
ROUND_PEERS = 3  # [p2p] sync_peers' default
REFRESH = 120 * INTERVAL  # SyncService's mark_rounds intervals: a peer reads every head again


class _Everyone:
    """A horizon holding every org."""

    def __contains__(self, org: object) -> bool:
        return True


@dataclass
class Round:
    """What one round cost the node serving it."""

    costs: list[int]  # each page's units
    size: int  # bytes
    cpu: float  # seconds of the node's CPU
    mark: bytes | None  # the mark to ask since next time (`/2`)


def serve_round(store: RecordStore, issuers: IssuerIndex, marks: HeadMarks | None = None,
                since: bytes | None = None) -> Round:
    """One round served to a peer in step with `store` (the same store: it holds all the node holds, its horizon
    every org), on `/2` if `marks` (since the mark `since`), else `/1`."""
    limits = SyncLimits()
    server = SyncServer(store, issuers, limits, marks)
    client = SyncClient(store, _Everyone(), limits, since=since,
                        protocol=SYNC_PROTOCOL if marks is None else SYNC_PROTOCOL_2)
    took = Round([], 0, 0.0, None)
    event = client.start()
    while isinstance(event, Send):
        units, start = server.units, time.process_time()
        page = next(server.receive(event.payload))
        took.cpu += time.process_time() - start
        took.costs.append(page_cost(server.units - units, len(page)))
        took.size += len(page)
        event = client.receive(page)
    assert isinstance(event, Finished), "a peer in step asks for no records"
    took.mark = client.in_step_mark()
    return took


def rounds_in(hours: float, peers: int, their_peers: int, seed: int = 7) -> list[tuple[float, str]]:
    """When each of `peers` peers, of `their_peers` peers each, has a round with the node, and which, over `hours`."""
    rng = random.Random(seed)
    rounds = []
    for peer in range(peers):
        at = rng.uniform(0, INTERVAL)
        while at < hours * 3600:
            if rng.random() < min(1.0, ROUND_PEERS / their_peers):
                rounds.append((at, f"peer{peer}"))
            at += INTERVAL * rng.uniform(0.75, 1.25)
    return sorted(rounds)


@dataclass
class Served:
    """The rounds of a simulated hour, and what they cost the node."""

    done: int = 0
    busy: int = 0
    units: int = 0
    cpu: float = 0.0


def served(rounds: list[tuple[float, str]], store: RecordStore, *, marked: bool, changes: float,
           seed: int = 11) -> Served:
    """Serve `rounds` under the default budget (a peer told to come back asks nothing until then, as SyncService
    does), each on `/2` since the peer's last mark if `marked`, else `/1`, while `changes` records a second come in.
    A round reading every head costs as the first did (the store does not change)."""
    rng = random.Random(seed)
    orgs = sorted(store.heads())
    issuers, marks = IssuerIndex(store), HeadMarks()
    budget = ServingBudget(ServingRates(), most_page_cost(SyncLimits()))
    throttled: dict[str, float] = {}
    kept: dict[str, tuple[bytes, float]] = {}  # peer -> its mark, and when it last read every head
    full: Round | None = None
    clock = 0.0
    result = Served()
    for now, peer in rounds:
        arrived = int(now * changes) - int(clock * changes)
        marks.add(SimpleNamespace(iss=rng.choice(orgs)) for _ in range(arrived))  # (only their issuers count)
        clock = now
        if throttled.get(peer, -1.0) > now:
            continue
        mark, read_all = kept.pop(peer, (None, now))
        since = mark if marked and now - read_all < REFRESH else None
        if since is None and full is not None and marked:
            taken = Round(full.costs, full.size, full.cpu, marks.mark())
            read_all = now
        elif since is None and full is not None:
            taken = full
        else:
            taken = serve_round(store, issuers, marks if marked else None, since)
            full = full or taken
        for cost in taken.costs:
            if retry := budget.retry_after(peer, now):
                throttled[peer] = now + retry
                result.busy += 1
                break
            budget.charge(peer, cost, now)
            result.units += cost
        else:
            result.done += 1
            result.cpu += taken.cpu
            if taken.mark is not None:
                kept[peer] = (taken.mark, read_all)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=100_000)
    parser.add_argument("--peers", type=int, default=8, help="peers the node has, each having rounds with it")
    parser.add_argument("--their-peers", type=int, help="peers each of them has (default: --peers)")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--changes", type=float, default=10.0, help="records the network signs a second")
    args = parser.parse_args()
    their_peers = args.their_peers or args.peers
    if args.orgs < 1 or args.peers < 1 or their_peers < 1 or not args.hours > 0 or args.changes < 0:
        parser.error("--orgs, --peers and --their-peers: at least 1; --hours: more than 0; --changes: at least 0")
    directory = CACHE / f"{args.orgs}-{args.orgs}"
    build_server_store(directory, args.orgs, args.orgs)
    rounds = rounds_in(args.hours, args.peers, their_peers)
    print(f"{len(rounds)} rounds from {args.peers} peers of {their_peers} peers each in {args.hours:g} h, "
          f"{args.changes:g} records a second signed meanwhile:")
    with RecordStore.open(directory) as store:
        issuers = IssuerIndex(store)
        every = serve_round(store, issuers)
        marks = HeadMarks()
        unchanged = serve_round(store, issuers, marks, serve_round(store, issuers, marks).mark)
        print(f"  a round of all {args.orgs:,} orgs' heads: {sum(every.costs):,} units, {every.size / 1024:,.0f} KiB, "
              f"{every.cpu * 1000:.0f} ms of the node's CPU; of those changed since the last, none: "
              f"{sum(unchanged.costs):,} units, {unchanged.size} bytes, {unchanged.cpu * 1e6:.0f} us")
        busy = 0
        for name, marked in (("/vouchnet/sync/1, every head", False), ("/vouchnet/sync/2, heads changed", True)):
            took = served(rounds, store, marked=marked, changes=args.changes)
            print(f"  {name}: {took.done} served, {took.busy} answered Busy, "
                  f"{len(rounds) - took.done - took.busy} not asked (their peer told to come back); served "
                  f"{took.units / (args.hours * 3600):,.0f} units/s, {took.cpu / (args.hours * 36):.1f}% of a core "
                  f"(a round served: {took.units / max(1, took.done):,.0f} units, "
                  f"{took.cpu * 1000 / max(1, took.done):.1f} ms)")
            busy = took.busy
    return 1 if busy else 0


if __name__ == "__main__":
    sys.exit(main())
