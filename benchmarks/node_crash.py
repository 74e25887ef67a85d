"""Crash safety of the whole node at length: SIGKILL or SIGTERM a `vouchnet run` under mixed load many times, with
the checks of tests/node/crash_node.py after every restart.

Usage: python benchmarks/node_crash.py [--stops N] [--seed S] [--sigterm-share F]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.node.crash_node import run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stops", type=int, default=30)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--sigterm-share", type=float, default=0.5)
    args = parser.parse_args()
    seed = random.randrange(1 << 32) if args.seed is None else args.seed
    with tempfile.TemporaryDirectory() as workdir:
        report = run(Path(workdir), args.stops, seed, sigterm_share=args.sigterm_share)
    print(f"node crash safety: {report.kills} SIGKILLs and {report.terms} SIGTERMs, {report.startup_kills} restarts "
          f"killed midway (seed {seed}), every check passed")
    print(f"  records answered 201 at A, all there               {report.records:,}")
    print(f"  event batches sent, each retried after the stops    {report.batches:,}")
    print(f"  vouches answered at B, all reached A                {report.peer_records:,}")
    print(f"  slowest SIGTERM to exit                             {report.slowest_stop:.2f} s")
    print(f"  time                                                {report.seconds:,.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
