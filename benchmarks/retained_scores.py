"""What a host keeps of penalised peers that left, and what one more costs once the table is full (gossip.host
quirk 48, GossipSub v1.1 RetainScore; not a test).

A host's scorer, as Host builds it with the default PeerScoring, sees `--peers` peers with fresh keys in turn, each
scored on the topic (as pubsub does for every RPC it reads), rejected once on it and then leaving: the Python memory
held per retained peer (tracemalloc, the peer's id included), how many are held at the end, the time a departure
takes once the table is full (it pushes the least negative out), and the time a heartbeat then takes (the retained
counters are out of the tables py-libp2p's heartbeat decays; it also forgets counters of peers neither connected nor
retained).

    python benchmarks/retained_scores.py              # 4,096 peers: four times PeerScoring.retained_peers
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402
from libp2p.peer.id import ID  # noqa: E402

from gossip.host import PeerScoring, _RetainedScores, _RetainingScorer, peer_id_from_public_key  # noqa: E402

TOPIC = "/vouchnet/records/1"


def _scorer() -> tuple[_RetainingScorer, int]:
    scoring = PeerScoring()
    retained = _RetainedScores(scoring.retain_score, scoring.retained_peers)
    return _RetainingScorer(scoring._params(), retained, lambda: ()), scoring.retained_peers  # none connected


def _leave(scorer: _RetainingScorer, n: int) -> float:
    """Peer `n`, a fresh key, is scored, rejected once and leaves; returns the seconds its departure took."""
    peer = ID.from_base58(peer_id_from_public_key(os.urandom(32)))
    scorer.score(peer, [TOPIC])
    scorer.on_invalid_message(peer, TOPIC)
    started = time.perf_counter()
    scorer.remove_peer(peer)
    return time.perf_counter() - started


async def retained(peers: int) -> None:
    scorer, cap = _scorer()
    if peers <= cap:
        raise SystemExit(f"--peers must be more than the {cap} the table holds")
    tracemalloc.start()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(cap):
        _leave(scorer, n)
    gc.collect()
    per_peer = (tracemalloc.get_traced_memory()[0] - before) / cap
    tracemalloc.stop()
    departures = [_leave(scorer, n) for n in range(cap, peers)]
    heartbeats = []
    for _ in range(20):
        started = time.perf_counter()
        scorer.on_heartbeat()
        heartbeats.append(time.perf_counter() - started)
    print(f"{per_peer:.0f} bytes per retained peer ({per_peer * cap / 2**20:.2f} MiB at the cap of {cap}); "
          f"{len(scorer.retained)} held after {peers} left; a departure once full (pushing one out): median "
          f"{statistics.median(departures) * 1e6:.0f} us, max {max(departures) * 1e6:.0f} us; a heartbeat "
          f"(each second): median {statistics.median(heartbeats) * 1e6:.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=4096)
    trio.run(retained, parser.parse_args().peers)


if __name__ == "__main__":
    main()
