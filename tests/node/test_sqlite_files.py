"""Every SQLite file a node writes has its WAL truncated back after a large transaction (ledger.wal): each writing
connection carries journal_size_limit, WAL_SIZE_LIMIT or, for the ledger, its own."""

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Protocol

import pytest

from gossip.store import RecordStore
from ledger import storage, witness
from ledger.wal import WAL_SIZE_LIMIT
from node.credential_registry import CredentialRegistry
from node.digests import DigestState
from node.idempotency import IdempotencyStore


class _Store(Protocol):
    _db: sqlite3.Connection

    def close(self) -> None: ...


STORES: dict[str, Callable[[Path], _Store]] = {
    "digests": DigestState.open,
    "credentials": CredentialRegistry.open,
    "idempotency": lambda data_dir: IdempotencyStore.open(data_dir, log_size=0),
    "record index": RecordStore.open,
}


def _limit(db: sqlite3.Connection) -> int:
    (limit,) = db.execute("PRAGMA journal_size_limit").fetchone()
    return int(limit)


@pytest.mark.parametrize("name", STORES)
def test_a_node_store_truncates_its_wal(tmp_path: Path, name: str) -> None:
    with closing(STORES[name](tmp_path)) as store:
        assert _limit(store._db) == WAL_SIZE_LIMIT


def test_the_witness_state_file_truncates_its_wal(tmp_path: Path) -> None:
    with closing(witness._open_store(tmp_path / "witness.db")) as db:
        assert _limit(db) == WAL_SIZE_LIMIT


def test_the_ledger_truncates_its_wal_to_its_own_limit(tmp_path: Path) -> None:
    with closing(storage.Ledger.open(tmp_path / "ledger.db")) as ledger:
        assert ledger._db is not None and _limit(ledger._db) == storage._WAL_LIMIT
