"""The machine a benchmark ran on, for its report: CPU model, cores, Python, and the load average at start and end
(wall times on a shared machine grow with the load; CPU times mostly do not).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Run:
    """Wall and CPU time of this process since `start()`, and the load at both ends."""

    load_at_start: str
    wall_start: float
    cpu_start: float

    @classmethod
    def start(cls) -> Run:
        return cls(load(), time.perf_counter(), time.process_time())

    def header(self, title: str) -> str:
        return (f"{title}\nmachine: {cpu_model()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]} "
                f"({platform.python_implementation()}), {platform.system()} {platform.release()}\n"
                f"load average at start: {self.load_at_start}")

    def footer(self) -> str:
        wall, cpu = time.perf_counter() - self.wall_start, time.process_time() - self.cpu_start
        return f"load average at end: {load()}; this process: {wall:.1f} s wall, {cpu:.1f} s CPU"


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) taken by `work()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu
