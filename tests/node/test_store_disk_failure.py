"""The node's SQLite stores opened on a full disk (ledger.disk_failure): refused saying the disk failed, not that the
sound file is not the store it is, to be restored from a backup or moved aside."""

import pytest

from gossip.own_records import OwnRecords
from gossip.store import RecordStore
from node.credential_registry import CredentialRegistry
from node.digests import DigestState
from node.idempotency import IdempotencyStore

from ..ledger.without_room import without_room

def _own_records(data_dir):
    """The list of the org's records from peers, opened as the node opens it (over the record store)."""
    with RecordStore.open(data_dir) as store:
        return OwnRecords.open(data_dir, lambda: 0, store)


# Each store: its file, and how a child process opens it in the data directory sys.argv[1], printing its refusal
STORES = {
    "idempotency.db": (lambda d: IdempotencyStore.open(d, log_size=0),
                       "from node.idempotency import IdempotencyStore as S, IdempotencyStoreError as E\n"
                       "opened = lambda d: S.open(d, log_size=0)"),
    "digests.db": (DigestState.open, "from node.digests import DigestState as S, DigestStateError as E\n"
                                     "opened = S.open"),
    "credentials.db": (CredentialRegistry.open, "from node.credential_registry import CredentialRegistry as S, "
                                                "RegistryError as E\nopened = S.open"),
    "own_records.db": (_own_records,
                       "from gossip.own_records import OwnRecords as S, OwnRecordsError as E\n"
                       "class Holds:  # the record store, which the full disk may refuse to open first\n"
                       "    has = staticmethod(lambda record_id: True)\n"
                       "opened = lambda d: S.open(d, lambda: 0, Holds())"),
}


@pytest.mark.parametrize("name", STORES)
def test_a_store_whose_disk_fails_as_it_opens_is_not_called_another_file(tmp_path, name):
    """Before: `not an idempotency store (disk I/O error): restore this node's own file from a backup, or move it
    aside to start with a new one`, and likewise for the digest state and the credential registry."""
    open_store, child = STORES[name]
    open_store(tmp_path).close()
    before = (tmp_path / name).read_bytes()
    refused = without_room(f"from pathlib import Path\n{child}\ntry:\n    opened(Path(sys.argv[1]))\n"
                           "except E as e:\n    print(e)", str(tmp_path))
    assert refused.startswith(f"{tmp_path / name}: cannot be opened, as its storage failed (disk I/O error: a full")
    assert "not a" not in refused and "move it aside" not in refused
    assert (tmp_path / name).read_bytes() == before
    open_store(tmp_path).close()  # sound: with room again it opens
