"""CPU an org inside the horizon can make a node's replication horizon (vouching.horizon) spend: figures, no targets;
not a test. The org vouches for n fresh keys, then revokes the vouches one by one, as the replica feeds them; CPU time
of the revocations at growing n: linear growth is bounded, quadratic is not.

    python benchmarks/horizon_attacks.py            # up to 8,000 fresh keys
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vouching.horizon import Horizon  # noqa: E402


def revocations_seconds(n: int) -> float:
    """CPU seconds to revoke, one by one, the vouches of an org one hop from the root for n fresh keys."""
    horizon = Horizon({"root"}, 3)
    horizon.add_edge(b"r" * 32, "root", "org")
    for i in range(n):
        horizon.add_edge(i.to_bytes(32, "big"), "org", f"fresh{i}")
    start = time.process_time()
    for i in range(n):
        horizon.remove_edge(i.to_bytes(32, "big"))
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=8000, help="fresh keys at the largest size (default 8000)")
    args = parser.parse_args()
    sizes = [args.keys // 4 * k for k in (1, 2, 4)]
    print("revoking vouches for fresh keys one by one: " +
          ", ".join(f"{n}: {revocations_seconds(n):.3f} s" for n in sizes))


if __name__ == "__main__":
    main()
