"""The formats of the SQLite files a node keeps beside its ledgers, checked as it starts, before it opens anything
(ledger.sqlite_format): a file it cannot read stops the start before any file of the data directory changes."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from gossip.witnessing import WITNESS_FILE
from ledger.sqlite_format import FileFormat, claim
from ledger.witness import FORMAT as WITNESS_FORMAT

from . import credential_registry, digests, idempotency

# (file, format, the part of the node that keeps it, as start-up errors name it)
STORES: tuple[tuple[str, FileFormat, str], ...] = (
    (idempotency.IDEMPOTENCY_FILE, idempotency.FORMAT, "telemetry"),
    (digests.DIGESTS_FILE, digests.FORMAT, "telemetry"),
    (credential_registry.CREDENTIALS_FILE, credential_registry.FORMAT, "credentials"),
    (WITNESS_FILE, WITNESS_FORMAT, "witness"),
)


class DataFormatError(Exception):
    """A store's file is of another kind or format, or not an SQLite database; the message names the file."""


def check_formats(data_dir: Path) -> None:
    """Claim each store's file that exists (a missing one is made when its store opens); DataFormatError, naming the
    part of the node, the file and what to do, for the first that is not its store's format."""
    for name, fmt, part in STORES:
        path = data_dir / name
        if not path.exists():
            continue
        try:
            with closing(sqlite3.connect(path, isolation_level=None)) as db:
                claim(db, path, fmt, DataFormatError)
        except DataFormatError as error:
            raise DataFormatError(f"{part}: {error}") from None
        except sqlite3.Error as error:
            raise DataFormatError(f"{part}: {path}: not {fmt.kind} ({error}): restore this node's own file from a "
                                  "backup, or move it aside to start with a new one") from None
