"""Memory the fork detector (gossip.forks) holds when every org it follows gossips checkpoints at the most its pace
lets in, for a whole window: figures, no targets; not a test. Each org gossips a burst, then one a second, growing
sizes (what it gossips beyond that is ignored, not remembered); the notes carry a made-up signature, which the
detector stores without checking (the topic's validator checked it). One org's memory is traced (tracemalloc); all
of them are the growth of the process's resident set, and the CPU time is that of building and observing the notes.

    python benchmarks/fork_memory.py                      # 4,096 orgs, the default 600 s window
    python benchmarks/fork_memory.py --origins 64 --window 60
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gossip.checkpoints import OrgCheckpoint  # noqa: E402
from gossip.forks import CHECKPOINT_BURST, FORK_WINDOW, ForkDetector  # noqa: E402
from ledger import Checkpoint, Signature, format_note, log_origin  # noqa: E402
from vouching import did_key  # noqa: E402


def fill(forks: ForkDetector, org: int) -> None:
    """Org number `org` gossips its checkpoints at its pace's bound for a window."""
    did = did_key(hashlib.sha256(b"%d" % org).digest())
    origin = log_origin("vouchnet", did, "records")
    for size in range(forks.max_entries):
        checkpoint = Checkpoint(origin, size + 1, hashlib.sha256(b"%d" % size).digest())
        note = format_note(checkpoint.to_text(), [Signature(origin, 1, bytes(64))])
        forks.observe(OrgCheckpoint(did, checkpoint, note), max(0.0, size + 1 - CHECKPOINT_BURST))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", type=int, default=4096, help="orgs followed, each at its bound (default 4096)")
    parser.add_argument("--window", type=float, default=FORK_WINDOW, help=f"seconds (default {FORK_WINDOW:g})")
    args = parser.parse_args()
    forks = ForkDetector(window=args.window, origins=args.origins)
    tracemalloc.start()
    fill(forks, 0)
    one = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    before, start = resident(), time.process_time()
    for org in range(1, args.origins):
        fill(forks, org)
    seconds, grown = time.process_time() - start, resident() - before
    checkpoints = forks.max_entries * (args.origins - 1)
    print(f"window {args.window:g} s: {forks.max_entries} checkpoints an org at most; one org {one:,} bytes "
          f"({one / forks.max_entries:.0f} a checkpoint); {args.origins:,} orgs {(grown + one) / 2**20:.1f} MiB "
          f"resident; {seconds / checkpoints * 1e6:.0f} us of CPU a checkpoint built and observed")


def resident() -> int:
    """Bytes of this process's resident set."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

if __name__ == "__main__":
    main()
