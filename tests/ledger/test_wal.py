"""ledger.wal: a fresh SQLite file switched to WAL by several connections at once."""

import sqlite3
import threading

from ledger.wal import WAL_SIZE_LIMIT, use_wal

OPENERS = 4
FILES = 60  # without the retry, about 7% of fresh files failed one of four openers here


def test_connections_opening_one_fresh_file_together_all_get_wal(tmp_path):
    failures: list[Exception] = []
    modes: list[str] = []
    for n in range(FILES):
        start = threading.Barrier(OPENERS)

        def opener(path=tmp_path / f"{n}.db", start=start):
            db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
            try:
                start.wait()
                modes.append(use_wal(db))
            except sqlite3.Error as error:
                failures.append(error)
            finally:
                db.close()

        threads = [threading.Thread(target=opener) for _ in range(OPENERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    assert modes == ["wal"] * OPENERS * FILES


def test_an_error_other_than_a_busy_file_is_raised_at_once(tmp_path):
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    db.close()
    try:
        use_wal(db)
    except sqlite3.ProgrammingError as error:
        assert "closed" in str(error)
    else:
        raise AssertionError("a closed connection was put in WAL mode")


def test_a_large_transaction_leaves_no_wal_larger_than_the_limit(tmp_path):
    """Without journal_size_limit the WAL kept the 16 MB one transaction grew it to for the life of the file."""
    path = tmp_path / "x.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        use_wal(db, size_limit=1 << 20)
        db.execute("CREATE TABLE t (b BLOB)")
        db.execute("BEGIN")
        db.executemany("INSERT INTO t VALUES (randomblob(4000))", [()] * 4000)
        db.execute("COMMIT")
        assert (tmp_path / "x.db-wal").stat().st_size > 15 << 20  # checkpointed as it committed, not yet truncated
        db.execute("INSERT INTO t VALUES (1)")  # the next write starts the checkpointed WAL again
        assert (tmp_path / "x.db-wal").stat().st_size <= 1 << 20
    finally:
        db.close()


def test_the_limit_defaults_to_a_few_checkpoints_worth(tmp_path):
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    try:
        use_wal(db)
        assert db.execute("PRAGMA journal_size_limit").fetchone() == (WAL_SIZE_LIMIT,)
    finally:
        db.close()
