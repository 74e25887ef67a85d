"""ledger.StoredHashCheck: every hash a ledger stores, compared with the tree of its entries; and the read-only
Ledger it reads them through, beside the writer."""

import sqlite3
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Ledger, LedgerError, StoredHashCheck, merkle, tiles, tree_check

from .flip import flip_bit


def _entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def _checked(ledger: Ledger, entries: list[bytes]) -> StoredHashCheck:
    check = StoredHashCheck(ledger, len(entries))
    for entry in entries:
        check.add(merkle.leaf_hash(entry))
    return check


def _flip_stored_hash(path: Path, level: int, index: int, bit: int) -> None:
    """Invert one bit of the stored hash of node (level, index), as a disk fault would."""
    tile_id = level << 40 | index // tiles.TILE_WIDTH
    offset = index % tiles.TILE_WIDTH * merkle.HASH_SIZE
    with sqlite3.connect(path, isolation_level=None) as db:
        (blob,) = db.execute("SELECT hashes FROM tiles WHERE id = ?", (tile_id,)).fetchone()
        stored = flip_bit(blob[offset : offset + merkle.HASH_SIZE], bit)
        blob = blob[:offset] + stored + blob[offset + merkle.HASH_SIZE :]
        db.execute("UPDATE tiles SET hashes = ? WHERE id = ?", (blob, tile_id))
    db.close()


@settings(max_examples=60)
@given(st.lists(st.integers(1, 90), min_size=1, max_size=4), st.sampled_from([1, 3, 16, 4096]), st.data())
def test_a_flipped_stored_hash_is_named_and_a_sound_tree_passes(batches, run, data):
    """Whatever the batches, the hashes compared at once (`run`) and whichever stored hash (any level, any complete
    node) loses a bit, the check names exactly that node, and finds nothing wrong before; the root it computes stays
    the entries' root either way. (The last leaf's hash is the one that opening the ledger checks.)"""
    entries = _entries(sum(batches))
    size = len(entries)
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(tree_check, "_RUN", run):
        path = Path(tmp) / "t.ledger"
        with Ledger.open(path) as ledger:
            for k in range(len(batches)):
                ledger.append(entries[sum(batches[:k]) : sum(batches[: k + 1])])
        with Ledger.open(path, read_only=True) as ledger:
            sound = _checked(ledger, entries)
        assert (sound.mismatches, sound.wrong, sound.root()) == (0, [], merkle.tree_hash(entries))
        assert sound.checked == sum(size >> level for level in range(size.bit_length()))

        level = data.draw(st.integers(0, size.bit_length() - 1), label="level")
        index = data.draw(st.integers(0, (size >> level) - 1), label="index")
        _flip_stored_hash(path, level, index, data.draw(st.integers(0, 255), label="bit"))
        if (level, index) == (0, size - 1):  # the one hash opening checks
            with pytest.raises(LedgerError, match=f"corrupt: entry {size - 1} does not match its stored leaf hash"):
                Ledger.open(path, read_only=True)
            return
        with Ledger.open(path, read_only=True) as ledger:
            check = _checked(ledger, entries)
        assert (check.mismatches, check.wrong, check.root()) == (1, [(level, index)], merkle.tree_hash(entries))


def test_the_check_reads_past_the_appends_of_a_writer_beside_it(tmp_path):
    """The node appends while `vouchnet log verify` checks the tree of its checkpoint: each append rewrites the
    partial tile of every level, and no hash of the tree checked may seem to change."""
    path = tmp_path / "t.ledger"
    entries = _entries(5000)
    with Ledger.open(path) as writer:
        writer.append(entries[:37])
        with Ledger.open(path, read_only=True) as reader:
            check = StoredHashCheck(reader, 37)
            for n, entry in enumerate(entries[:37]):
                check.add(merkle.leaf_hash(entry))
                writer.append(entries[37 + n * 100 : 137 + n * 100])
            assert (check.mismatches, check.root()) == (0, merkle.tree_hash(entries[:37]))
            assert reader.size == 37  # the state it opened, whatever was appended since


def test_a_check_refuses_sizes_and_leaves_beyond_its_tree(tmp_path):
    with Ledger.open(tmp_path / "t.ledger") as ledger:
        ledger.append(_entries(3))
        with pytest.raises(ValueError, match=r"size: must be in \[0, 3\]"):
            StoredHashCheck(ledger, 4)
        check = _checked(ledger, _entries(2))
        with pytest.raises(IndexError, match="the tree checked has 2 leaves"):
            check.add(merkle.leaf_hash(b"entry 2"))


@pytest.mark.parametrize(("level", "start", "end"), [(0, 0, 6), (1, 2, 3), (-1, 0, 0), (0, 2, 1)])
def test_stored_hashes_outside_the_tree_are_refused(tmp_path, level, start, end):
    with Ledger.open(tmp_path / "t.ledger") as ledger:
        ledger.append(_entries(5))
        assert ledger.stored_hashes(1, 0, 2) == [merkle.tree_hash(_entries(5)[i : i + 2]) for i in (0, 2)]
        with pytest.raises(IndexError, match="must satisfy 0 <= start <= end <= size >> level"):
            ledger.stored_hashes(level, start, end)


def test_a_read_only_ledger_is_never_created_nor_written(tmp_path):
    with pytest.raises(FileNotFoundError):
        Ledger.open(tmp_path / "missing.ledger", read_only=True)
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "t.ledger"
    with Ledger.open(path) as ledger:
        ledger.append(_entries(3))
    with Ledger.open(path, read_only=True) as ledger:
        with pytest.raises(LedgerError, match="append: attempt to write a readonly database"):
            ledger.append([b"more"])
        with pytest.raises(LedgerError, match="prune: attempt to write a readonly database"):
            ledger.prune(2)
        assert (ledger.size, ledger.pruned, ledger.entries(0, 3)) == (3, 0, _entries(3))
    with Ledger.open(path) as ledger:
        assert (ledger.size, ledger.pruned, ledger.root()) == (3, 0, merkle.tree_hash(_entries(3)))
