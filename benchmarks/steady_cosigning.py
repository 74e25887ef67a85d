"""How many of a node's published checkpoints carry a cosignature under a steady load (README, footnote 2): two
real nodes on loopback, each the other's trust root and witness, checkpointing every `--interval`, the first
issuing a record every `--every` for `--seconds`; prints the first node's checkpoints signed, cosignatures
collected, notes published and those of them carrying a cosignature.

Usage: python benchmarks/steady_cosigning.py [--interval 0.1] [--every 0.05] [--seconds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402

from tests.factories import new_did  # noqa: E402
from tests.gossip.nodes import identities, running  # noqa: E402
from vouching import vouch_body  # noqa: E402


async def measure(interval: float, every: float, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        a, b = identities(Path(directory), 2)
        roots = (a.did, b.did)
        async with running(a, roots, witness_interval=interval) as n0, \
                running(b, roots, witness_interval=interval) as n1:
            await n0.host.connect(n1.addr)
            assert n0.witnessing is not None
            notes: list[bytes] = []
            n0.witnessing.listeners.append(notes.append)
            end = trio.current_time() + seconds
            while trio.current_time() < end:
                n0.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
                await trio.sleep(every)
            stats = n0.witnessing.stats
            cosigned = sum(note.count("\u2014 ".encode()) > 1 for note in notes)
            print(f"checkpoints signed {stats.checkpoints_signed}, cosignatures collected {stats.cosignatures}, "
                  f"notes published {len(notes)}, with a cosignature {cosigned}, records {n0.replica.store.size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between checkpoints")
    parser.add_argument("--every", type=float, default=0.05, help="seconds between records issued")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long the load lasts")
    args = parser.parse_args()
    trio.run(measure, args.interval, args.every, args.seconds)


if __name__ == "__main__":
    main()
