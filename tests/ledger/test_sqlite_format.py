"""ledger.sqlite_format: a data directory's SQLite file is claimed by its marks before anything writes to it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ledger.sqlite_format import FileFormat, claim
from ledger.wal import use_wal

from .without_room import without_room

FORMAT = FileFormat("a test file", 0x54455354, 1, frozenset({"rows", "later"}))


class Refused(Exception):
    pass


def _claim(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        claim(db, path, FORMAT, Refused)
    finally:
        db.close()


def _marks(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as db:
        marks = (db.execute("PRAGMA application_id").fetchone()[0], db.execute("PRAGMA user_version").fetchone()[0])
    db.close()
    return marks


def _file(path: Path, *statements: str) -> bytes:
    db = sqlite3.connect(path, isolation_level=None)
    for statement in statements:
        db.execute(statement)
    db.close()
    return path.read_bytes()


def test_a_new_file_is_marked_with_the_format(tmp_path):
    _claim(tmp_path / "f.db")
    assert _marks(tmp_path / "f.db") == (FORMAT.application_id, FORMAT.version)
    _claim(tmp_path / "f.db")  # and taken again


@pytest.mark.parametrize("tables", [("rows",), ("rows", "later")])
def test_a_file_from_before_marks_holding_the_kind_s_tables_is_taken_and_marked(tmp_path, tables):
    _file(tmp_path / "f.db", *(f"CREATE TABLE {t} (x)" for t in tables), "INSERT INTO rows VALUES (1)")
    _claim(tmp_path / "f.db")
    assert _marks(tmp_path / "f.db") == (FORMAT.application_id, FORMAT.version)


def test_a_file_marked_before_versions_were_is_version_1(tmp_path):
    _file(tmp_path / "f.db", f"PRAGMA application_id = {FORMAT.application_id}", "CREATE TABLE rows (x)")
    _claim(tmp_path / "f.db")
    assert _marks(tmp_path / "f.db") == (FORMAT.application_id, 1)


@pytest.mark.parametrize(("statements", "complaint"), [
    ((f"PRAGMA application_id = {FORMAT.application_id}", "PRAGMA user_version = 2", "CREATE TABLE rows (x)"),
     "a test file in format version 2, newer than this vouchnet reads (1): it was written by a later vouchnet; run "
     "that version, or restore this node's own file from a backup, or move it aside to start with a new one (the "
     "start then says what that loses, and how to accept it)"),
    ((f"PRAGMA application_id = {0x564E4447}", "CREATE TABLE rows (x)"),
     "not a test file: an SQLite database with application_id 0x564e4447 and user_version 0 (a test file has "
     "0x54455354): another file copied in its place?"),
    (("CREATE TABLE rows (x)", "CREATE TABLE entries (y)"),
     "not a test file: an SQLite database holding tables entries: another file copied in its place?"),
    (("PRAGMA user_version = 7",), "not a test file: an SQLite database with application_id 0x0 and user_version 7"),
])
def test_a_file_of_another_kind_or_a_newer_format_is_refused_and_left_as_it_was(tmp_path, statements, complaint):
    before = _file(tmp_path / "f.db", *statements)
    with pytest.raises(Refused) as refused:
        _claim(tmp_path / "f.db")
    assert str(refused.value).startswith(f"{tmp_path / 'f.db'}: {complaint}")
    assert (tmp_path / "f.db").read_bytes() == before
    assert not (tmp_path / "f.db-wal").exists()


UPGRADED = FileFormat("a test file", FORMAT.application_id, 3, frozenset({"rows", "later"}), oldest=2)


def _claim_upgrading(path: Path, upgrade) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        claim(db, path, UPGRADED, Refused, upgrade)
    finally:
        db.close()


def test_a_file_of_an_older_version_it_reads_is_upgraded_and_marked_in_one_transaction(tmp_path):
    _file(tmp_path / "f.db", f"PRAGMA application_id = {FORMAT.application_id}", "PRAGMA user_version = 2",
          "CREATE TABLE rows (x)", "INSERT INTO rows VALUES (1)")
    seen = []

    def upgrade(db, version):
        seen.append(version)
        db.execute("UPDATE rows SET x = x + 1")

    _claim_upgrading(tmp_path / "f.db", upgrade)
    assert seen == [2] and _marks(tmp_path / "f.db") == (FORMAT.application_id, 3)
    with sqlite3.connect(tmp_path / "f.db") as db:
        assert db.execute("SELECT x FROM rows").fetchall() == [(2,)]
    db.close()
    _claim_upgrading(tmp_path / "f.db", upgrade)  # marked: not upgraded again
    assert seen == [2]


def test_an_upgrade_that_fails_leaves_the_file_as_it_was(tmp_path):
    before = _file(tmp_path / "f.db", f"PRAGMA application_id = {FORMAT.application_id}", "PRAGMA user_version = 2",
                   "CREATE TABLE rows (x)", "INSERT INTO rows VALUES (1)")

    def upgrade(db, version):
        db.execute("UPDATE rows SET x = 5")
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):
        _claim_upgrading(tmp_path / "f.db", upgrade)
    assert (tmp_path / "f.db").read_bytes() == before


def test_a_new_file_in_a_format_with_upgrades_is_marked_without_one(tmp_path):
    _claim_upgrading(tmp_path / "f.db", lambda db, version: pytest.fail("nothing to upgrade"))
    assert _marks(tmp_path / "f.db") == (FORMAT.application_id, 3)


def test_a_file_older_than_the_oldest_version_read_is_refused(tmp_path):
    _file(tmp_path / "f.db", f"PRAGMA application_id = {FORMAT.application_id}", "CREATE TABLE rows (x)")
    with pytest.raises(Refused, match="format version 1, which this vouchnet cannot upgrade to 3"):
        _claim_upgrading(tmp_path / "f.db", lambda db, version: pytest.fail("not upgraded"))


def test_a_file_from_before_marks_is_version_1_and_refused_by_a_format_that_no_longer_reads_it(tmp_path):
    """Version 1, as an unmarked file is taken to be: below `oldest`, so refused as a marked one is, and left as it
    was. Before: taken, and handed to the upgrade as version 1, which it does not read."""
    before = _file(tmp_path / "f.db", "CREATE TABLE rows (x)", "INSERT INTO rows VALUES (1)")
    with pytest.raises(Refused, match="format version 1, which this vouchnet cannot upgrade to 3"):
        _claim_upgrading(tmp_path / "f.db", lambda db, version: pytest.fail(f"upgraded from {version}"))
    assert (tmp_path / "f.db").read_bytes() == before


def test_a_file_whose_disk_fails_as_it_is_checked_is_not_called_another_kind(tmp_path):
    """A node started on a full disk said its sound idempotency.db was "not an idempotency store (disk I/O error)",
    to be restored from a backup or moved aside."""
    path = tmp_path / "f.db"
    _claim(path)
    db = sqlite3.connect(path, isolation_level=None)
    use_wal(db)
    db.execute("CREATE TABLE rows (x)")
    db.close()
    before = path.read_bytes()
    refused = without_room(
        "import sqlite3\nfrom pathlib import Path\nfrom tests.ledger.test_sqlite_format import FORMAT, Refused\n"
        "from ledger.sqlite_format import check\npath = Path(sys.argv[1])\n"
        "try:\n    check(sqlite3.connect(path, isolation_level=None), path, FORMAT, Refused)\n"
        "except Refused as e:\n    print(e)", str(path))
    assert refused.startswith(f"{path}: cannot be opened, as its storage failed (disk I/O error: a full disk")
    assert "not a test file" not in refused and "move it aside" not in refused
    assert path.read_bytes() == before
    _claim(path)  # sound: with room again it is taken
