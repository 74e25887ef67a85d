"""Crash safety of ledger.Ledger (issue 2 item 4): SIGKILL a writing process at random moments, then check.

After every kill the ledger is reopened and must hold every acknowledged entry byte for byte, a root equal to
the RFC 9162 tree hash of its entries, proofs that tie it to every root seen after earlier kills, and every
checkpoint the writer signed must verify and be consistent with it. Used by tests/ledger/test_crash_safety.py
(a few dozen kills, until every kind of kill moment has come) and benchmarks/crash.py (thousands).
"""

from __future__ import annotations

import base64
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ledger import Ed25519Verifier, Ledger, merkle, open_checkpoint

from .crash_writer import KEY, ORIGIN, expected_entry
from .memory_tree import MemoryTree

_ROOT = Path(__file__).resolve().parents[2]
_MOST_ACKS = 6  # a writer is killed after 0 to this many acknowledged batches
_DURING_STARTUP = 0.1  # the share of writers killed at a random time before they report the ledger open


@dataclass(frozen=True)
class Report:
    kills: int
    acknowledged: int  # entries acknowledged in all
    unacknowledged_kept: int  # kills that landed after a commit and before its acknowledgement
    killed_during_startup: int
    killed_before_a_commit: int  # kills after start-up that left nothing beyond what was acknowledged
    size: int
    seconds: float


@dataclass
class _Expected:
    """What the ledger must show: facts established by acknowledgements and by earlier checks."""

    acknowledged_end: int = 0  # every entry below this was acknowledged
    checked: int = 0  # entries below this were checked byte for byte (and are in `tree`)
    tree: MemoryTree = field(default_factory=MemoryTree)
    roots: list[tuple[int, bytes]] = field(default_factory=list)  # (size, root) seen after earlier kills


def _writer(path: Path, seed: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ledger.crash_writer", str(path), str(seed)],
        cwd=_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


Ack = tuple[int, int, bytes]  # first index, count, the signed checkpoint note for the new size


def _acknowledgements(lines: list[bytes]) -> list[Ack]:
    """Complete acknowledgement lines (a kill may cut the last one short: it was not acknowledged)."""
    acks = []
    for line in lines:
        if line.endswith(b"\n") and line != b"ready\n":
            first, n, note = line.split()
            acks.append((int(first), int(n), base64.b64decode(note)))
    return acks


def _kill_and_collect(proc: subprocess.Popen[bytes], rng: random.Random) -> tuple[list[Ack], bool]:
    """Kill the writer at a random moment; every acknowledgement it made, and whether it died before "ready"."""
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[bytes] = []
    if rng.random() < _DURING_STARTUP:
        time.sleep(rng.uniform(0, 0.08))  # no event marks the moments inside start-up and open: pick a time
    else:
        for _ in range(1 + rng.randrange(_MOST_ACKS + 1)):  # "ready", then that many acknowledgements
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    proc.send_signal(signal.SIGKILL)
    lines += proc.stdout.read().splitlines(keepends=True)
    if proc.wait() != -signal.SIGKILL:
        raise AssertionError(f"the writer died by itself ({proc.returncode}): {proc.stderr.read().decode()}")
    proc.stdout.close()
    proc.stderr.close()
    return _acknowledgements(lines), b"ready\n" not in lines


def _check(path: Path, expected: _Expected, acks: list[Ack], rng: random.Random) -> int:
    """Reopen the ledger after a kill and check it against what is known; the number of entries it holds."""
    for (first, n, _), (next_first, _, _) in zip(acks, acks[1:]):
        assert next_first == first + n, f"acknowledged batches are not consecutive: {acks}"
    if acks:
        held = expected.checked
        assert acks[0][0] == held, f"the writer appended at {acks[0][0]}, but the ledger held {held} entries"
        expected.acknowledged_end = acks[-1][0] + acks[-1][1]
    with Ledger.open(path) as ledger:
        size = ledger.size
        assert size >= expected.acknowledged_end, f"size {size} < acknowledged {expected.acknowledged_end}"
        new = ledger.entries(expected.checked, size)
        assert new == [expected_entry(i) for i in range(expected.checked, size)], "a new entry differs"
        for i in rng.sample(range(expected.checked), min(20, expected.checked)):
            assert ledger.entry(i) == expected_entry(i), f"entry {i} changed"
        expected.tree.append(new)
        expected.checked = size
        root = ledger.root()
        assert root == merkle.root_hash(size, expected.tree), f"root at {size} is not the tree hash of the entries"
        for old, old_root in rng.sample(expected.roots, min(3, len(expected.roots))):
            assert ledger.root(old) == old_root, f"the root at {old} changed"
            merkle.verify_consistency(old, size, old_root, root, ledger.consistency_proof(old))
            if old:
                i = rng.randrange(old)
                merkle.verify_inclusion(expected_entry(i), i, old, ledger.inclusion_proof(i, old), old_root)
        if size:
            i = rng.randrange(size)
            merkle.verify_inclusion(expected_entry(i), i, size, ledger.inclusion_proof(i), root)
        verifier = Ed25519Verifier(ORIGIN, bytes(KEY.verify_key))
        for _, _, note in acks:
            checkpoint, _ = open_checkpoint(note, [verifier])
            assert ledger.root(checkpoint.size) == checkpoint.root, f"checkpoint at {checkpoint.size} disagrees"
            proof = ledger.consistency_proof(checkpoint.size)
            merkle.verify_consistency(checkpoint.size, size, checkpoint.root, root, proof)
        expected.roots.append((size, root))
    return size


def run(path: Path, kills: int, seed: int, *, every_kind: int = 0, most: int = 0) -> Report:
    """Start and kill a writer `kills` times over one ledger at `path`, checking after each kill; then on, up to
    `most` kills in all, until kills during start-up and before a commit have each happened `every_kind` times:
    where a kill lands in an append is down to timing. A kill between a commit and its acknowledgement is counted
    (`unacknowledged_kept`) but not waited for: its window is narrow, and a quiet machine may not hit it in 200."""
    # Two generators: the checks draw more or less depending on where the kills landed, so sharing one would make
    # the kill moments a seed picks depend on timing; apart, a seed always picks the same moments.
    moments, checks = random.Random(seed), random.Random(f"checks {seed}")
    expected = _Expected()
    start = time.perf_counter()
    acknowledged = unacknowledged_kept = during_startup = before_a_commit = size = kill = 0
    while kill < kills or (kill < most and min(during_startup, before_a_commit) < every_kind):
        acks, before_ready = _kill_and_collect(_writer(path, moments.getrandbits(32)), moments)
        acknowledged_to = acks[-1][0] + acks[-1][1] if acks else expected.checked
        try:
            size = _check(path, expected, acks, checks)
        except Exception as e:
            raise AssertionError(f"after kill {kill} (seed {seed}): {e}") from e
        acknowledged += sum(n for _, n, _ in acks)
        unacknowledged_kept += size > acknowledged_to
        during_startup += before_ready
        before_a_commit += size == acknowledged_to and not before_ready
        kill += 1
    return Report(
        kill, acknowledged, unacknowledged_kept, during_startup, before_a_commit, size, time.perf_counter() - start
    )
