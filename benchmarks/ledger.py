"""Ledger figures against issue 2's targets: Merkle appends/s, proof times and open time at 10^6, disk per entry;
what checking every stored hash adds to `vouchnet log verify` (ledger.tree_check), and the time and Python memory
of `vouchnet log repair` rebuilding them (ledger.tree_repair), for information.

Usage: python benchmarks/ledger.py [--entries N] [--entry-bytes B] [--batch K]; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import Ledger, StoredHashCheck, merkle, repair_stored_hashes  # noqa: E402


T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: float | None = None  # None: a figure for information, with no target
    higher_is_better: bool = False

    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def line(self) -> str:
        verdict = {None: "", True: "PASS", False: "FAIL"}[self.passed()]
        target = "" if self.target is None else f"{'>=' if self.higher_is_better else '<='} {self.target:,.1f}"
        return f"{self.name:<46} {self.value:>14,.1f} {self.unit:<10} {target:<16} {verdict}"


def _batches(count: int, entry_bytes: int, batch: int, seed: int) -> list[list[bytes]]:
    rng = random.Random(seed)
    out = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        blob = rng.randbytes(n * entry_bytes)
        out.append([blob[i : i + entry_bytes] for i in range(0, len(blob), entry_bytes)])
    return out


def build(path: Path, count: int, entry_bytes: int, batch: int) -> float:
    """Append `count` entries in batches; the durable append rate in entries per second."""
    batches = _batches(count, entry_bytes, batch, seed=count)
    with Ledger.open(path) as ledger:
        start = time.perf_counter()
        for b in batches:
            ledger.append(b)
        return count / (time.perf_counter() - start)


def _timed(call: Callable[[T], R], args: list[T]) -> tuple[list[R], list[float]]:
    """`call(a)` for each of `args`: the results, and how long each call took in microseconds."""
    results, times = [], []
    for a in args:
        start = time.perf_counter_ns()
        results.append(call(a))
        times.append((time.perf_counter_ns() - start) / 1000)
    return results, times


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def _disk_bytes(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())


def run(workdir: Path, count: int, entry_bytes: int, batch: int, samples: int) -> list[Figure]:
    path = workdir / "bench.ledger"
    rate = build(path, count, entry_bytes, batch)
    figures = [Figure(f"Merkle appends/s (batches of {batch:,}, durable)", rate, "entries/s", 200_000, True)]
    small = workdir / "small-batches.ledger"
    figures.append(Figure("  in batches of 100", build(small, 100_000, entry_bytes, 100), "entries/s"))

    opens = []
    for _ in range(5):
        start = time.perf_counter()
        Ledger.open(path).close()
        opens.append((time.perf_counter() - start) * 1000)
    figures.append(Figure(f"open at {count:,} entries (median of 5)", statistics.median(opens), "ms", 1000))

    rng = random.Random(1)
    with Ledger.open(path) as ledger:
        size, root = ledger.size, ledger.root()
        indexes = [rng.randrange(size) for _ in range(samples)]
        proofs, gen = _timed(ledger.inclusion_proof, indexes)
        entries = [ledger.entry(i) for i in indexes]
        _, cons = _timed(ledger.consistency_proof, [rng.randrange(1, size) for _ in range(samples)])
    checks = list(zip(entries, indexes, proofs))
    _, ver = _timed(lambda c: merkle.verify_inclusion(c[0], c[1], size, c[2], root), checks)
    figures += [
        Figure(f"inclusion proof generation at {size:,}, median", statistics.median(gen), "us", 200),
        Figure("  p99", _p99(gen), "us", 200),
        Figure(f"inclusion proof verification at {size:,}, median", statistics.median(ver), "us", 50),
        Figure("  p99", _p99(ver), "us", 50),
        Figure("consistency proof generation, median", statistics.median(cons), "us"),
    ]

    figures += _hash_check(path)
    figures += _repair(path)

    for name, p, n, e in ((f"{entry_bytes}-byte entries", path, count, entry_bytes), *_disk_samples(workdir)):
        per_entry = _disk_bytes(p) / n
        figures.append(Figure(f"disk per entry, {name}", per_entry, "bytes", 1.5 * e + 100))
    return figures


def _hash_check(path: Path) -> list[Figure]:
    """What `vouchnet log verify --dir` adds to growing the tree of the entries it fetched (a Frontier, as before):
    reading every hash the ledger stores, from a read-only Ledger as beside a node, and comparing each. CPU time, which
    a loaded machine leaves as it is where it stretches the wall time."""
    with Ledger.open(path, read_only=True) as ledger:
        size = ledger.size
        pages = (ledger.entries(start, min(start + 10_000, size)) for start in range(0, size, 10_000))
        leaves = [merkle.leaf_hash(entry) for page in pages for entry in page]
        start = time.process_time()
        frontier = merkle.Frontier()
        for leaf in leaves:
            frontier.add(leaf)
        grown = time.process_time() - start
        start = time.process_time()
        check = StoredHashCheck(ledger, size)
        for leaf in leaves:
            check.add(leaf)
        checked = time.process_time() - start
    if check.mismatches or check.root() != frontier.root():
        raise RuntimeError(f"{path}: the check found {check.mismatches} wrong hashes in a sound ledger")
    return [
        Figure(f"tree of {size:,} entries grown (log verify --api), CPU", grown, "s"),
        Figure(f"  grown checking its {check.checked:,} stored hashes (--dir)", checked, "s"),
    ]


def _repair(path: Path, wrong: int = 1000) -> list[Figure]:
    """`vouchnet log repair`'s work (ledger.tree_repair): every entry read and hashed, every stored hash compared,
    in one transaction; for a sound ledger, then for one with `wrong` stored hashes flipped at random levels and
    nodes (the last leaf's, which opening checks, aside), then again under tracemalloc for its Python memory."""
    with Ledger.open(path) as ledger:
        size, root = ledger.size, ledger.root()
    figures = []
    for name in ("sound", f"{wrong} wrong", "memory"):
        if name != "sound":
            _flip(path, size, wrong)
        if name == "memory":
            tracemalloc.start()
        cpu, wall = time.process_time(), time.perf_counter()
        with Ledger.open(path, to_repair=True) as ledger:
            repaired = repair_stored_hashes(ledger, size, root)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if name == "memory":
            figures.append(Figure("  its Python memory at the peak (tracemalloc)", tracemalloc.get_traced_memory()[1]
                                  / 2**20, "MiB"))
            tracemalloc.stop()
        elif repaired.mismatches != (0 if name == "sound" else wrong):
            raise RuntimeError(f"{path}: the repair replaced {repaired.mismatches} hashes, not {wrong}")
        else:
            figures += [Figure(f"log repair at {size:,} entries, {name}, wall", wall, "s"), Figure("  CPU", cpu, "s")]
    return figures


def _flip(path: Path, size: int, count: int) -> None:
    """Invert a bit of `count` stored hashes, each of a random complete node (the last leaf's aside)."""
    rng = random.Random(count)
    nodes: set[tuple[int, int]] = set()
    while len(nodes) < count:
        level = rng.randrange(size.bit_length())
        nodes.add((level, rng.randrange(size >> level)))
        nodes.discard((0, size - 1))
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("BEGIN")
        for level, index in nodes:
            tile_id, offset = level << 40 | index // 16, index % 16 * 32
            (blob,) = db.execute("SELECT hashes FROM tiles WHERE id = ?", (tile_id,)).fetchone()
            db.execute("UPDATE tiles SET hashes = ? WHERE id = ?",
                       (blob[:offset] + bytes([blob[offset] ^ 1]) + blob[offset + 1 :], tile_id))
        db.execute("COMMIT")
    db.close()


def _disk_samples(workdir: Path) -> list[tuple[str, Path, int, int]]:
    """Disk use at other entry sizes, where the fixed +100 B matters more (small) or overflow pages do (large)."""
    out = []
    for entry_bytes in (32, 1024, 4096):
        path = workdir / f"disk-{entry_bytes}.ledger"
        count = 50_000
        build(path, count, entry_bytes, 5_000)
        out.append((f"{entry_bytes}-byte entries", path, count, entry_bytes))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--entry-bytes", type=int, default=256)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=5_000, help="proofs timed")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the ledgers (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as workdir:
        figures = run(Path(workdir), args.entries, args.entry_bytes, args.batch, args.samples)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"ledger benchmark: Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version},"
          f" {os.cpu_count()} CPUs, load average at the end {load}")
    for f in figures:
        print(f.line())
    return 1 if any(f.passed() is False for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
