"""Crash safety at length: SIGKILL a ledger writer thousands of times, checking the ledger after every kill.

Usage: python benchmarks/crash.py [--kills N] [--seed S]; the same harness as tests/ledger/test_crash_safety.py.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ledger.crash_harness import run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = random.randrange(1 << 32) if args.seed is None else args.seed
    with tempfile.TemporaryDirectory() as workdir:
        report = run(Path(workdir) / "crash.ledger", args.kills, seed)
    print(f"crash safety: {report.kills:,} SIGKILLs (seed {seed}), every check passed after each")
    print(f"  entries acknowledged, all present byte for byte     {report.acknowledged:,}")
    print(f"  final ledger size                                   {report.size:,}")
    print(f"  kills between a commit and its acknowledgement      {report.unacknowledged_kept:,} (entries kept)")
    print(f"  kills during start-up or open                       {report.killed_during_startup:,}")
    print(f"  kills after start-up, before a commit               {report.killed_before_a_commit:,} (none kept)")
    print(f"  time                                                {report.seconds:,.1f} s"
          f" ({report.seconds / report.kills * 1000:.0f} ms a kill)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
