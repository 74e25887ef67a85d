"""Start-up replay with differential privacy on (node.trust.TrustService.replay, README "Digests"): the time to
rebuild the trust engine from N own DP digests, each counted by the raw counts digests.db keeps for it, and the part
of it spent reading those raw counts. A figure with no target; it is not a test.

The digests are signed and their raw counts kept as node.digests.Digester issues an epoch's (keep_raw, then
issue_digests, ISSUE_CHUNK at a time), over `--epochs` epochs of `--agents` agents; then the files are closed and
opened again, as at a start. The OS page cache is warm, as it is after a restart but not after a reboot.

    python benchmarks/replay.py                         # 10 epochs of 10^4 agents: 10^5 own DP digests
    python benchmarks/replay.py --epochs 100            # 10^6
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nacl.signing import SigningKey  # noqa: E402

from gossip.replica import Replica  # noqa: E402
from gossip.store import RecordStore  # noqa: E402
from node.digests import ISSUE_CHUNK, DigestState  # noqa: E402
from node.dp import noisy_counts  # noqa: E402
from node.metrics import Registry  # noqa: E402
from node.stream import Broadcaster  # noqa: E402
from node.trust import RawLookup, TrustService  # noqa: E402
from vouching import Counts, DigestBody, did_key  # noqa: E402
from vouching.bodies import CATEGORIES, OUTCOMES  # noqa: E402
from vouching.params import HOUR_MS  # noqa: E402
from vouching.policy import DEFAULT_POLICY  # noqa: E402

EPSILON = 1.0
T0 = 1_700_002_800_000  # an hour boundary


def _body(agent: str, epoch: int, raw: tuple[list[int], list[int]], rng: random.Random) -> DigestBody:
    """A DP digest of `agent` whose raw counts are `raw`, published with noise as the digester publishes it."""
    outcomes, high_risk = raw
    noisy = noisy_counts(dict(zip(OUTCOMES, outcomes)), dict(zip(OUTCOMES, high_risk)),
                         {c: sum(outcomes) if c == "tool" else 0 for c in CATEGORIES}, epsilon=EPSILON, rng=rng)
    return DigestBody(agent, epoch, HOUR_MS, Counts(tuple(noisy.outcomes.items())),
                      Counts(tuple(noisy.categories.items())), Counts(tuple(noisy.high_risk.items())),
                      sum(noisy.outcomes.values()), bytes(32), EPSILON)


def build(directory: Path, key: SigningKey, epochs: int, agents: int) -> None:
    """Sign `epochs` hourly epochs of DP digests of `agents` agents each, keeping their raw counts first."""
    rng = random.Random(1)
    names = [did_key(bytes(SigningKey.generate().verify_key)) for _ in range(agents)]
    with RecordStore.open(directory) as store:
        replica = Replica(key, store, roots=(), max_hops=2, held_limit=100)
        state = DigestState.open(directory)
        for epoch in range(T0, T0 + epochs * HOUR_MS, HOUR_MS):
            for first in range(0, agents, ISSUE_CHUNK):
                chunk = {}
                for agent in names[first:first + ISSUE_CHUNK]:
                    outcomes = [rng.randrange(40), rng.randrange(3), rng.randrange(2), rng.randrange(2)]
                    chunk[agent] = (outcomes, [rng.randrange(n + 1) for n in outcomes])
                state.keep_raw(epoch, {a: (tuple(o), tuple(h)) for a, (o, h) in chunk.items()})
                replica.issue_digests([_body(agent, epoch, raw, rng) for agent, raw in chunk.items()])
        state.close()


def measure(directory: Path, key: SigningKey) -> tuple[int, float, float]:
    """(own DP digests, seconds to replay them, seconds of it reading their raw counts)."""
    with RecordStore.open(directory) as store:
        state = DigestState.open(directory)
        replica = Replica(key, store, roots=(), max_hops=2, held_limit=100)
        registry = Registry()
        raw: RawLookup = state.raw_reader()  # as node.daemon gives it to the start-up replay
        count, reading = 0, 0.0

        def timed(epoch: int, agent: str) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
            nonlocal count, reading
            count += 1
            began = time.perf_counter()
            try:
                return raw(epoch, agent)
            finally:
                reading += time.perf_counter() - began

        trust = TrustService(replica, roots=(), policy=DEFAULT_POLICY, broadcaster=Broadcaster(registry),
                             metrics=registry, recompute_interval=60.0, epoch_ms=HOUR_MS,
                             clock=lambda: T0 + 10**12)
        began = time.perf_counter()
        trust.replay([], timed)
        seconds = time.perf_counter() - began
        state.close()
    return count, seconds, reading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--agents", type=int, default=10_000)
    args = parser.parse_args()
    key = SigningKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), key, args.epochs, args.agents)
        count, seconds, reading = measure(Path(tmp), key)
    print(f"start-up replay of {count} own DP digests ({args.epochs} epochs of {args.agents} agents): "
          f"{seconds:.2f} s, {seconds / count * 1e6:.1f} us per digest")
    print(f"  of it reading raw counts: {reading:.2f} s, {reading / count * 1e6:.1f} us per digest "
          f"(timer overhead included)")


if __name__ == "__main__":
    main()
