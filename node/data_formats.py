"""The formats of the SQLite files a node keeps beside its records ledger, checked read-only as it starts, before it
opens anything (ledger.sqlite_format): a file it cannot read stops the start before any file of the data directory
changes (the records ledger and its index, opened next, are checked before anything is written to them).
engine.snapshot, a cache, is not checked here: it carries its own format mark (node.engine_snapshot.FORMAT), and a
start that cannot use it replays the records instead."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from gossip import own_records
from gossip.checkpoints import WITNESS_FILE
from ledger import LedgerError
from ledger.sqlite_format import FileFormat, check
from ledger.witness import FORMAT as WITNESS_FORMAT

from . import credential_registry, digests, idempotency
from .audit_log import AUDIT_FILE, AuditLog
from .store_manifest import DIGESTS_FILE

# (file, format, the part of the node that keeps it, as start-up errors name it)
STORES: tuple[tuple[str, FileFormat, str], ...] = (
    (idempotency.IDEMPOTENCY_FILE, idempotency.FORMAT, "telemetry"),
    (DIGESTS_FILE, digests.FORMAT, "telemetry"),
    (credential_registry.CREDENTIALS_FILE, credential_registry.FORMAT, "credentials"),
    (WITNESS_FILE, WITNESS_FORMAT, "witness"),
    (own_records.OWN_RECORDS_FILE, own_records.FORMAT, "records"),
)


class DataFormatError(Exception):
    """A file is of another kind or format, or not an SQLite database; the message names the file."""


def check_formats(data_dir: Path) -> None:
    """Check audit.ledger and each store's file that exists, read-only (a missing one is made, and one from before
    marks is marked, when its store opens); DataFormatError, naming the part of the node, the file and what to do,
    for the first that is not what it should be."""
    if (data_dir / AUDIT_FILE).exists():
        try:
            AuditLog.open(data_dir, read_only=True).close()
        except LedgerError as error:
            raise DataFormatError(f"telemetry: {error}") from None
    for name, fmt, part in STORES:
        path = data_dir / name
        if not path.exists():
            continue
        try:
            with closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as db:
                check(db, path, fmt, DataFormatError)
        except DataFormatError as error:
            raise DataFormatError(f"{part}: {error}") from None
        except sqlite3.Error as error:  # (opening it)
            raise DataFormatError(f"{part}: {path}: cannot be read ({error})") from None
