"""`vouchnet` under cProfile timed by the process's CPU clock (not wall time: on a shared machine a process waiting
for a core is not busy), switched by signals so that a window of a long run can be profiled: SIGUSR1 starts
profiling, SIGUSR2 stops it and writes the stats (pstats) to the next of PREFIX-0.pstats, PREFIX-1.pstats, ...

Usage: python -m benchmarks.profiled_node PREFIX run --dir DIR ...   (what follows PREFIX: vouchnet's arguments)
"""

from __future__ import annotations

import cProfile
import itertools
import signal
import sys
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.cli import main  # noqa: E402


def profiled(prefix: str, argv: list[str]) -> int:
    profiler = cProfile.Profile(time.process_time)
    windows = itertools.count()

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(f"{prefix}-{next(windows)}.pstats")
        profiler.clear()

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return main(argv)


if __name__ == "__main__":
    sys.exit(profiled(sys.argv[1], sys.argv[2:]))
