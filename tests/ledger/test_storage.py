"""ledger.Ledger: appends, roots, entries and proofs against the in-memory reference; reopening; pruning;
files that are not ledgers; bad arguments."""

import os
import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import EntryPruned, Ledger, LedgerError, bundles, merkle, tiles

from .memory_tree import MemoryTree
from .without_room import without_room


def _entries(start: int, n: int) -> list[bytes]:
    # Lengths vary (0 to 40 bytes), so rows of 16 entries and empty entries both occur.
    return [f"entry {i}".encode() * (i % 5) for i in range(start, start + n)]


def _filled(path: Path, batches: list[int]) -> list[bytes]:
    everything: list[bytes] = []
    with Ledger.open(path) as ledger:
        for n in batches:
            ledger.append(_entries(len(everything), n))
            everything += _entries(len(everything), n)
    return everything


def _check_against_reference(ledger: Ledger, everything: list[bytes], sizes: list[int]) -> None:
    tree = MemoryTree(everything)
    for size in sizes:
        root = ledger.root(size)
        assert root == merkle.tree_hash(everything[:size])
        for index in {0, size // 3, size - 1} if size else ():
            proof = ledger.inclusion_proof(index, size)
            assert proof == merkle.inclusion_proof(index, size, tree)
            merkle.verify_inclusion(everything[index], index, size, proof, root)
        for old in {0, 1, size // 2, size - 1, size} & set(range(size + 1)):
            proof = ledger.consistency_proof(old, size)
            assert proof == merkle.consistency_proof(old, size, tree)
            merkle.verify_consistency(old, size, ledger.root(old), root, proof)


@settings(max_examples=30)
@given(st.lists(st.integers(0, 70), max_size=6), st.data())
def test_random_batches_match_the_reference_tree(batches, data):
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "log") as ledger:
        everything: list[bytes] = []
        for n in batches:
            batch = _entries(len(everything), n)
            assert ledger.append(batch) == len(everything)
            everything += batch
            assert ledger.size == len(everything)
            assert ledger.root() == merkle.tree_hash(everything)
        assert ledger.entries(0, ledger.size) == everything
        if everything:
            index = data.draw(st.integers(0, len(everything) - 1))
            assert ledger.entry(index) == everything[index]
        sizes = data.draw(st.lists(st.integers(0, len(everything)), max_size=4))
        _check_against_reference(ledger, everything, [*sizes, len(everything)])


def test_every_proof_of_a_small_ledger_matches_the_reference(tmp_path):
    # 70 entries in uneven batches: sizes across tile (16 hashes) and row (16 entries) boundaries.
    everything = _filled(tmp_path / "log", [1, 2, 13, 16, 1, 37])
    tree = MemoryTree(everything)
    with Ledger.open(tmp_path / "log") as ledger:
        for size in range(len(everything) + 1):
            assert ledger.root(size) == merkle.root_hash(size, tree)
            for index in range(size):
                assert ledger.inclusion_proof(index, size) == merkle.inclusion_proof(index, size, tree)
            for old in range(size + 1):
                assert ledger.consistency_proof(old, size) == merkle.consistency_proof(old, size, tree)


def test_reopening_preserves_everything_and_appending_continues(tmp_path):
    path = tmp_path / "log"
    everything = _filled(path, [5, 40, 3])
    with Ledger.open(path) as ledger:
        assert ledger.size == len(everything)
        assert ledger.entries(0, ledger.size) == everything
        _check_against_reference(ledger, everything, [1, 17, len(everything)])
        ledger.append(_entries(len(everything), 30))
    everything += _entries(len(everything), 30)
    with Ledger.open(path) as ledger:
        assert ledger.entries(0, ledger.size) == everything
        _check_against_reference(ledger, everything, [47, len(everything)])


def test_paging_through_entries(tmp_path):
    everything = _filled(tmp_path / "log", [100, 1, 60])
    with Ledger.open(tmp_path / "log") as ledger:
        pages = [ledger.entries(start, min(start + 7, ledger.size)) for start in range(0, ledger.size, 7)]
    assert [e for page in pages for e in page] == everything
    assert [len(p) for p in pages[:-1]] == [7] * (len(pages) - 1)


def test_large_entries(tmp_path):
    big = [os.urandom(n) for n in (70_000, 1, 20_000, 16_384, 0, 5_000)]
    with Ledger.open(tmp_path / "log") as ledger:
        ledger.append(big)
    with Ledger.open(tmp_path / "log") as ledger:
        assert [ledger.entry(i) for i in range(len(big))] == big
        assert ledger.root() == merkle.tree_hash(big)


def test_an_empty_batch_appends_nothing(tmp_path):
    with Ledger.open(tmp_path / "log") as ledger:
        ledger.append([b"a"])
        assert ledger.append([]) == 1
        assert ledger.size == 1
    with Ledger.open(tmp_path / "log") as ledger:
        assert ledger.size == 1


def test_a_new_ledger_is_empty_and_leaves_no_temporary_files(tmp_path):
    with Ledger.open(tmp_path / "log") as ledger:
        assert ledger.size == 0
        assert ledger.root() == merkle.EMPTY_ROOT
        assert ledger.consistency_proof(0) == []
    assert os.listdir(tmp_path) == ["log"]
    with sqlite3.connect(tmp_path / "log") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_missing_directory_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        Ledger.open(tmp_path / "no" / "log")


# --- Pruning ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("before", [0, 1, 15, 16, 17, 40, 64, 69, 70])
def test_pruning_keeps_roots_and_proofs(tmp_path, before):
    path = tmp_path / "log"
    everything = _filled(path, [20, 5, 45])
    with Ledger.open(path) as ledger:
        ledger.prune(before)
        assert ledger.pruned == before
        _check_against_reference(ledger, everything, [1, 33, len(everything)])
    with Ledger.open(path) as ledger:
        assert ledger.pruned == before
        assert ledger.entries(before, ledger.size) == everything[before:]
        if before:
            with pytest.raises(EntryPruned, match=f"entry {before - 1}: pruned"):
                ledger.entry(before - 1)
            with pytest.raises(EntryPruned):
                ledger.entries(0, ledger.size)
        assert ledger.entries(0, 0) == []
        ledger.append([b"after pruning"])
        everything.append(b"after pruning")
        _check_against_reference(ledger, everything, [len(everything)])
        assert ledger.entry(len(everything) - 1) == b"after pruning"


_operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 40)),
        st.tuples(st.just("prune"), st.floats(0, 1)),
        st.tuples(st.just("reopen"), st.none()),
    ),
    max_size=8,
)


@settings(max_examples=30)
@given(_operations)
def test_random_appends_prunes_and_reopens_keep_the_tree(operations):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log"
        ledger = Ledger.open(path)
        everything: list[bytes] = []
        pruned = 0
        for op, arg in operations:
            if op == "append":
                ledger.append(_entries(len(everything), arg))
                everything += _entries(len(everything), arg)
            elif op == "prune":
                ledger.prune(int(arg * len(everything)))
                pruned = max(pruned, int(arg * len(everything)))
            else:
                ledger.close()
                ledger = Ledger.open(path)
            assert (ledger.size, ledger.pruned) == (len(everything), pruned)
            assert ledger.entries(pruned, ledger.size) == everything[pruned:]
            assert ledger.root() == merkle.tree_hash(everything)
        _check_against_reference(ledger, everything, [len(everything) // 2, len(everything)])
        ledger.close()


@pytest.mark.parametrize("before", [1, 15, 16, 17, 40, 70])
def test_a_reader_beside_the_writer_finds_what_the_writer_pruned_pruned(tmp_path, before):
    """A second Ledger on the file (`vouchnet audit export` reads the audit log beside the node) asked for entries
    the writer pruned since it opened: they read as b"" (the row across the boundary is rewritten) or as rows gone
    ("corrupt: no row holds entry"). Its own empty entries still read as entries."""
    everything = _filled(tmp_path / "log", [70])
    with Ledger.open(tmp_path / "log") as reader, Ledger.open(tmp_path / "log") as writer:
        writer.prune(before)
        with pytest.raises(EntryPruned, match=f"entry {before - 1}: pruned"):
            reader.entry(before - 1)
        with pytest.raises(EntryPruned, match="entry 0: pruned"):
            reader.entries(0, before)
        assert reader.pruned == before
        assert reader.entries(before, 70) == everything[before:]


def test_pruning_twice_and_pruning_less_does_nothing_more(tmp_path):
    everything = _filled(tmp_path / "log", [50])
    with Ledger.open(tmp_path / "log") as ledger:
        ledger.prune(10)
        ledger.prune(30)
        ledger.prune(5)
        assert ledger.pruned == 30
        assert ledger.entries(30, 50) == everything[30:]
    with Ledger.open(tmp_path / "log") as ledger:
        assert ledger.pruned == 30
        assert ledger.root() == merkle.tree_hash(everything)


# --- Files that are not ledgers --------------------------------------------------------------------------


def _other_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('hello')")
    db.close()


def _edit_ledger(sql: str, *params):
    def edit(path: Path) -> None:
        _filled(path, [20, 30])
        db = sqlite3.connect(path)
        with db:
            db.execute(sql, params)
        db.close()

    return edit


def _truncated_ledger(path: Path) -> None:
    _filled(path, [3000])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _ledger_header_without_tables(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA application_id = 0x564E4C47")
    db.execute("PRAGMA user_version = 1")
    db.execute("CREATE TABLE t (x)")
    db.close()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(os.urandom(8192)), "not an SQLite database"),
        (lambda p: p.write_bytes(b""), "not an SQLite database"),
        (lambda p: p.write_text("hello\n"), "not an SQLite database"),
        (_other_sqlite, "application_id 0x0"),
        (_ledger_header_without_tables, "not a ledger: no such table: meta"),
        (_edit_ledger("PRAGMA user_version = 0"), "not a ledger: schema version 0"),
        (_edit_ledger("PRAGMA user_version = 2"), "schema version 2 is newer"),
        (_edit_ledger("UPDATE meta SET value = 51 WHERE key = 'size'"), "stored size 51 disagrees"),
        (_edit_ledger("UPDATE meta SET value = 49 WHERE key = 'size'"), "stored size 49 disagrees"),
        (_edit_ledger("UPDATE meta SET value = 60 WHERE key = 'pruned'"), "not 0 <= pruned <= size"),
        (_edit_ledger("UPDATE meta SET value = 8 WHERE key = 'tile_width'"), "tile_width is 8"),
        (_edit_ledger("DELETE FROM meta WHERE key = 'size'"), "size None"),
        (_edit_ledger("DELETE FROM tiles WHERE id = (SELECT max(id) FROM tiles)"), "disagrees with the top hash"),
        (_edit_ledger("DELETE FROM tiles WHERE id = (SELECT max(id) FROM tiles WHERE id < 1 << 40)"), "level-0"),
        (_edit_ledger("DELETE FROM entries WHERE first = (SELECT max(first) FROM entries)"), "entry rows"),
        (_edit_ledger("DELETE FROM entries WHERE first = 0"), "first entry row"),
        (_edit_ledger("UPDATE entries SET data = ? WHERE first = (SELECT max(first) FROM entries)", b"x" * 300),
         "malformed"),
        (_edit_ledger("UPDATE entries SET data = substr(data, 1, length(data) - 1) || 'Z'"
                      " WHERE first = (SELECT max(first) FROM entries)"), "malformed"),  # text, not a blob
        (_edit_ledger("UPDATE entries SET data = CAST(substr(data, 1, length(data) - 1) || 'Z' AS BLOB)"
                      " WHERE first = (SELECT max(first) FROM entries)"), "does not match its stored leaf hash"),
        (_edit_ledger("UPDATE tiles SET hashes = 'text' WHERE id = (SELECT max(id) FROM tiles)"), "corrupt"),
        (_truncated_ledger, "corrupt"),
    ],
)
def test_a_file_that_is_not_a_sound_ledger_is_refused_and_left_untouched(tmp_path, make, message):
    path = tmp_path / "log"
    make(path)
    before = path.read_bytes()
    with pytest.raises(LedgerError, match=message):
        Ledger.open(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["log"]


def test_a_ledger_whose_disk_fails_as_it_opens_is_not_called_corrupt(tmp_path):
    # A node started on a full disk said its sound audit.ledger was "corrupt or not a ledger: disk I/O error".
    path = tmp_path / "log"
    _filled(path, [40])
    before = path.read_bytes()
    opened = without_room("from ledger import Ledger, LedgerError\ntry:\n    Ledger.open(sys.argv[1])\n"
                          "except LedgerError as e:\n    print(e)", str(path))
    assert opened.startswith(f"{path}: cannot be opened, as its storage failed (disk I/O error")
    assert "corrupt or not" not in opened
    assert "free space" in opened
    assert path.read_bytes() == before
    with Ledger.open(path) as ledger:  # sound: with room again it opens
        assert ledger.size == 40


def test_a_directory_is_not_a_ledger(tmp_path):
    with pytest.raises(IsADirectoryError):
        Ledger.open(tmp_path)


# --- Writers and threads ---------------------------------------------------------------------------------


def test_a_second_writer_is_refused(tmp_path):
    path = tmp_path / "log"
    with Ledger.open(path) as first, Ledger.open(path) as second:
        first.append([b"a"])
        with pytest.raises(LedgerError, match="another process wrote"):
            second.append([b"b"])
        assert second.size == 0
    with Ledger.open(path) as ledger:
        assert ledger.entries(0, ledger.size) == [b"a"]


@pytest.mark.parametrize("store", [bundles.EntryStore, tiles.TileStore])
def test_a_ledger_opened_while_another_connection_appends_checks_one_state_of_it(tmp_path, monkeypatch, store):
    """An append between the open's reads of the size, the entries and the hashes (the node's, while `vouchnet audit
    export` opens its audit log) made the open fail as corrupt: 22 of 300 opens beside a busy writer."""
    path = tmp_path / "log"
    with Ledger.open(path) as writer:
        writer.append(_entries(0, 20))
        check = store.check

        def appended_first(self, *args):
            writer.append([b"appended meanwhile"])
            return check(self, *args)

        monkeypatch.setattr(store, "check", appended_first)
        with Ledger.open(path) as reader:
            assert (reader.size, reader.root()) == (20, merkle.tree_hash(_entries(0, 20)))


def test_calls_from_many_threads_are_serialised(tmp_path):
    with Ledger.open(tmp_path / "log") as ledger:
        def writer(t: int) -> None:
            for i in range(20):
                ledger.append([f"{t}/{i}/{j}".encode() for j in range(i % 4 + 1)])
                ledger.inclusion_proof(0)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        everything = ledger.entries(0, ledger.size)
        assert len(everything) == 4 * sum(i % 4 + 1 for i in range(20))
        assert ledger.root() == merkle.tree_hash(everything)


# --- Bad arguments ---------------------------------------------------------------------------------------


@pytest.fixture
def ten(tmp_path):
    with Ledger.open(tmp_path / "log") as ledger:
        ledger.append(_entries(0, 10))
        yield ledger


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda l: l.append(b"abc"), TypeError, "entries: must be a list of bytes"),
        (lambda l: l.append([b"ok", "text"]), TypeError, r"entries\[1\]: must be bytes, got str"),
        (lambda l: l.append([bytearray(b"x")]), TypeError, r"entries\[0\]: must be bytes"),
        (lambda l: l.entry(10), IndexError, r"index: must be in \[0, 10\), got 10"),
        (lambda l: l.entry(-1), IndexError, "index"),
        (lambda l: l.entry("1"), TypeError, "index: must be an int"),
        (lambda l: l.entry(1.0), TypeError, "index: must be an int"),
        (lambda l: l.entries(3, 2), IndexError, "start, end"),
        (lambda l: l.entries(0, 11), IndexError, "start, end"),
        (lambda l: l.root(11), ValueError, r"size: must be in \[0, 10\]"),
        (lambda l: l.root(-1), ValueError, "size"),
        (lambda l: l.inclusion_proof(10), IndexError, "index"),
        (lambda l: l.inclusion_proof(5, 5), IndexError, r"index: must be in \[0, 5\)"),
        (lambda l: l.inclusion_proof(0, 11), ValueError, "size"),
        (lambda l: l.consistency_proof(6, 5), ValueError, r"old: must be in \[0, new=5\]"),
        (lambda l: l.consistency_proof(0, 11), ValueError, "new"),
        (lambda l: l.consistency_proof(-1), ValueError, "old"),
        (lambda l: l.prune(11), ValueError, "before"),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(ten, call, error, message):
    root = ten.root()
    with pytest.raises(error, match=message):
        call(ten)
    assert (ten.size, ten.root(), ten.pruned) == (10, root, 0)


def test_a_closed_ledger_refuses_calls(tmp_path):
    ledger = Ledger.open(tmp_path / "log")
    ledger.close()
    ledger.close()
    with pytest.raises(ValueError, match="closed"):
        ledger.append([b"x"])
    with pytest.raises(ValueError, match="closed"):
        ledger.root()
