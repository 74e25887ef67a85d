"""ledger.repair_stored_hashes: the stored hashes of a ledger rebuilt from its entries in one transaction, committed
only if the entries hash to the signed root; and what it leaves when killed midway."""

import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import (
    EntriesDamaged,
    Ledger,
    LedgerError,
    StoredHashError,
    merkle,
    repair_stored_hashes,
    tree_check,
    tree_repair,
)

from .flip import flip_bit
from .test_tree_check import _checked, _entries, _flip_stored_hash

_ROOT = Path(__file__).resolve().parents[2]


def _ledger(path: Path, entries: list[bytes], batches: list[int] | None = None) -> None:
    with Ledger.open(path) as ledger:
        for k, n in enumerate(batches or [len(entries)]):
            first = sum((batches or [])[:k])
            ledger.append(entries[first : first + n])


def _rows(path: Path) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True) as db:
        tiles = db.execute("SELECT id, hashes FROM tiles ORDER BY id").fetchall()
        entries = db.execute("SELECT first, ends, data FROM entries ORDER BY first").fetchall()
    db.close()
    return tiles, entries


def _assert_sound(path: Path, entries: list[bytes]) -> None:
    """The ledger opens, every stored hash is the entries', and proofs from it verify against their root."""
    root = merkle.tree_hash(entries)
    with Ledger.open(path) as ledger:
        assert _checked(ledger, entries).mismatches == 0
        assert ledger.root() == root
        for i in range(len(entries)):
            merkle.verify_inclusion(entries[i], i, len(entries), ledger.inclusion_proof(i), root)


@settings(max_examples=60)
@given(st.lists(st.integers(1, 90), min_size=1, max_size=4), st.sampled_from([1, 3, 16, 4096]), st.data())
def test_a_flipped_stored_hash_at_any_level_is_replaced_and_proofs_verify_again(batches, run, data):
    """Whatever the batches, the hashes compared at once and the stored hash (any level, any node, the last leaf's,
    which stops the ledger opening, included) that loses a bit, the repair names that one, replaces it, and the
    ledger then opens and checks sound, every inclusion proof verifying."""
    entries = _entries(sum(batches))
    size = len(entries)
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(tree_check, "_RUN", run):
        path = Path(tmp) / "t.ledger"
        _ledger(path, entries, batches)
        level = data.draw(st.integers(0, size.bit_length() - 1), label="level")
        index = data.draw(st.integers(0, (size >> level) - 1), label="index")
        _flip_stored_hash(path, level, index, data.draw(st.integers(0, 255), label="bit"))
        with Ledger.open(path, to_repair=True) as ledger:
            repaired = repair_stored_hashes(ledger, size, merkle.tree_hash(entries))
            assert (repaired.mismatches, repaired.wrong) == (1, [(level, index)])
            assert ledger.root() == merkle.tree_hash(entries)  # the frontier read anew
        _assert_sound(path, entries)


def test_the_last_leaf_s_wrong_hash_stops_an_open_but_for_a_repair(tmp_path):
    path = tmp_path / "t.ledger"
    _ledger(path, _entries(5))
    _flip_stored_hash(path, 0, 4, 0)
    with pytest.raises(StoredHashError, match="corrupt: entry 4 does not match its stored leaf hash"):
        Ledger.open(path)
    with Ledger.open(path, to_repair=True) as ledger:
        assert repair_stored_hashes(ledger, 5, merkle.tree_hash(_entries(5))).wrong == [(0, 4)]
    _assert_sound(path, _entries(5))


def test_a_sound_ledger_is_left_byte_for_byte(tmp_path):
    path = tmp_path / "t.ledger"
    entries = _entries(5000)
    _ledger(path, entries, [1000, 3, 3997])
    before = path.read_bytes()
    with Ledger.open(path, to_repair=True) as ledger:
        repaired = repair_stored_hashes(ledger, 4000, merkle.tree_hash(entries[:4000]))
    assert (repaired.mismatches, repaired.checked) == (0, sum(5000 >> level for level in range(13)))
    assert path.read_bytes() == before


@pytest.mark.parametrize("damaged", [0, 6, 39])
def test_a_damaged_entry_changes_nothing_and_is_named(tmp_path, damaged):
    """Entry `damaged`'s bytes changed: its stored leaf hash and the one above it differ from what the entries now
    give, but the entries miss the signed root, so the stored hashes are the sound ones: nothing is replaced."""
    path = tmp_path / "t.ledger"
    entries = _entries(40)
    _ledger(path, entries)
    _flip_stored_hash(path, 2, 3, 7)  # a wrong stored hash too: left as it is
    with sqlite3.connect(path, isolation_level=None) as db:
        first, data = db.execute("SELECT first, data FROM entries WHERE first <= ? ORDER BY first DESC LIMIT 1",
                                 (damaged,)).fetchone()
        offset = sum(len(e) for e in entries[first:damaged])
        db.execute("UPDATE entries SET data = ? WHERE first = ?", (flip_bit(data, offset * 8), first))
    db.close()
    before = _rows(path)
    with Ledger.open(path, to_repair=True) as ledger:
        with pytest.raises(EntriesDamaged, match=rf"the first 40 entries do not hash to the signed root: an entry is "
                           rf"damaged \(stored hashes differ from those of entries {damaged}\)"):
            repair_stored_hashes(ledger, 40, merkle.tree_hash(entries))
        assert ledger.stored_hashes(2, 3, 4) != [merkle.tree_hash(entries[12:16])]  # read after the rollback
    assert _rows(path) == before


def test_an_entry_past_the_signed_size_that_its_check_refuses_changes_nothing(tmp_path):
    path = tmp_path / "t.ledger"
    entries = _entries(30)
    _ledger(path, entries)
    _flip_stored_hash(path, 0, 3, 0)
    before = _rows(path)
    seen = []

    def check(index: int, entry: bytes) -> None:
        seen.append(index)
        if index == 25:
            raise ValueError("entry 25: not a record")

    with Ledger.open(path, to_repair=True) as ledger, pytest.raises(ValueError, match="entry 25: not a record"):
        repair_stored_hashes(ledger, 20, merkle.tree_hash(entries[:20]), check_entry=check)
    assert (seen, _rows(path)) == (list(range(20, 26)), before)


def test_a_repair_refuses_pruned_entries_sizes_past_the_ledger_and_replacing_outside_a_transaction(tmp_path):
    with Ledger.open(tmp_path / "t.ledger") as ledger:
        ledger.append(_entries(4))
        with pytest.raises(ValueError, match=r"size: must be in \[0, 4\]"):
            repair_stored_hashes(ledger, 5, merkle.EMPTY_ROOT)
        with pytest.raises(LedgerError, match="stored hashes are replaced only inside Ledger.rewriting"):
            ledger.replace_stored_hashes(0, {0: bytes(32)})
        with ledger.rewriting(), pytest.raises(IndexError, match="must be in \\[0, size >> level = 2\\), got 2"):
            ledger.replace_stored_hashes(1, {2: bytes(32)})
        ledger.prune(2)
        with pytest.raises(LedgerError, match="entries before 2 were pruned to their hashes"):
            repair_stored_hashes(ledger, 4, merkle.tree_hash(_entries(4)))


_CHILD = """
import sys
from ledger import Ledger, merkle, repair_stored_hashes, tree_check, tree_repair
tree_check._RUN = tree_repair.PAGE = 64  # many runs replaced, a line at each page: moments to be killed at
path, size = sys.argv[1], int(sys.argv[2])
entries = [f"entry {i}".encode() for i in range(size)]
print("ready", flush=True)
with Ledger.open(path, to_repair=True) as ledger:
    repair_stored_hashes(ledger, size, merkle.tree_hash(entries), progress=lambda done, total: print(done, flush=True))
print("repaired", flush=True)
"""


def _restore_tiles(path: Path, tiles: list[tuple]) -> None:
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("BEGIN")
        db.execute("DELETE FROM tiles")
        db.executemany("INSERT INTO tiles VALUES (?, ?)", tiles)
        db.execute("COMMIT")
    db.close()


@pytest.mark.slow
def test_a_repair_killed_at_any_moment_leaves_the_old_ledger_or_the_repaired_one(disk_path):
    """SIGKILL at random points of a repair replacing hashes at every level (after k of its progress lines): the
    ledger opens after each kill holding either every hash as it was or every one repaired, and then checks sound.
    Half the kills come before the repair says it is done, and the ledger is corrupted again after each that lands
    after its commit."""
    path = disk_path / "t.ledger"
    entries = _entries(3000)
    _ledger(path, entries)
    rng = random.Random(7)
    nodes = {(level, rng.randrange(3000 >> level)) for level in range(11) for _ in range(3)} - {(0, 2999)}
    for level, index in sorted(nodes):
        _flip_stored_hash(path, level, index, rng.randrange(256))
    corrupt, outcomes = _rows(path), []
    lines = 1 + -(-3000 // 64) + 1  # "ready", one a page, "repaired"
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), "3000"], cwd=_ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert child.stdout is not None and child.stderr is not None
        for _ in range(rng.choice([rng.randrange(1, lines), lines])):
            assert child.stdout.readline(), child.stderr.read()
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stderr.close()
        with Ledger.open(path) as ledger:
            mismatches = _checked(ledger, entries).mismatches
        if mismatches:
            assert (mismatches, _rows(path)) == (len(nodes), corrupt), "a kill left some hashes repaired, others not"
            outcomes.append("old")
        else:
            _assert_sound(path, entries)
            outcomes.append("repaired")
            _restore_tiles(path, corrupt[0])
    assert {"old", "repaired"} <= set(outcomes), outcomes


def test_a_repair_holds_a_page_and_a_run_a_level_not_the_tree(tmp_path):
    """Streaming: a repair of 2**15 entries with pages of 256 entries and runs of 64 hashes peaks far below the
    ~4 MiB that its 2**16 hashes would take as Python bytes at once (tracemalloc counts Python's memory alone)."""
    path = tmp_path / "t.ledger"
    entries = _entries(1 << 15)
    _ledger(path, entries)
    root = merkle.tree_hash(entries)
    del entries
    for index in range(0, 1 << 15, 1000):
        _flip_stored_hash(path, 0, index, 0)
    with mock.patch.object(tree_check, "_RUN", 64), mock.patch.object(tree_repair, "PAGE", 256):
        with Ledger.open(path, to_repair=True) as ledger:
            tracemalloc.start()
            try:
                repaired = repair_stored_hashes(ledger, 1 << 15, root)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    assert repaired.mismatches == 33
    assert peak < 1 << 20, peak
