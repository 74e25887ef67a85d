"""What one save of the clock's hold costs (node.hold_saver writes `clock.hold` every HOLD_SAVE_SECONDS while the
clock is held, on a worker thread): the time of each write, whole and durably (a partial file fsynced, renamed, the
directory fsynced), in a directory on the disk to measure; figures, no targets; not a test. The loop's stall was this
time when the save was on the trio thread; now it is the disk's time only, and the time to hand it to a thread.

    python benchmarks/clock_hold.py                  # 1,000 writes in a directory under /tmp
    python benchmarks/clock_hold.py --dir /var/lib/vouchnet --writes 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.clock_hold import CLOCK_HOLD_FILE, Hold, write_hold  # noqa: E402
from node.node_time import CLOCK_HOLD_SECONDS, HOLD_SAVE_SECONDS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="a directory on the disk to measure (default: /tmp)")
    parser.add_argument("--writes", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        path = Path(directory) / CLOCK_HOLD_FILE
        times = []
        for i in range(args.writes):
            began = time.perf_counter()
            write_hold(path, Hold(i * HOLD_SAVE_SECONDS + 0.123, 1_700_000_000_000 + i))
            times.append(time.perf_counter() - began)
    times.sort()
    per_day = CLOCK_HOLD_SECONDS / HOLD_SAVE_SECONDS
    print(f"{args.writes} writes of {CLOCK_HOLD_FILE}: median {statistics.median(times) * 1000:.2f} ms, "
          f"p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms, max {times[-1] * 1000:.2f} ms")
    print(f"a day of hold: {per_day:.0f} writes, {per_day * statistics.median(times):.1f} s of a worker thread "
          f"at the median")


if __name__ == "__main__":
    main()
