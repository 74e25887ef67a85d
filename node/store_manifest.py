"""Which stores a data directory has created, in `stores.list` (DESIGN.md §4, storage: nothing acknowledged is lost):
a store listed there but missing or empty was lost (a backup restored without it, a file deleted or emptied), and a
start refuses it, as PostgreSQL refuses a data directory missing a relation file, rather than make a new one that
forgets what the old held (revocations, idempotency keys, raw counts, what the witness cosigned).

A store is listed once it has been created (`list_present`), so a crash in between leaves it unlisted: the next
start opens it and lists it then. The list names what was created, not a fixed set: a store a later version adds is
created at its first start, and names this version does not know are kept and checked. A directory from before the
list is taken as listing the stores present at the first start that writes it. Only `vouchnet stores accept-loss`
takes a name off it. records.index is not listed: a start rebuilds it from records.ledger; nor is engine.snapshot, a
cache of the trust engine that a start does without (node.engine_snapshot)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from gossip.checkpoints import WITNESS_FILE
from gossip.own_records import OWN_RECORDS_FILE
from gossip.store import LEDGER_FILE
from ledger.files import replace_file

from .audit_log import AUDIT_FILE
from .credential_registry import CREDENTIALS_FILE
from .idempotency import IDEMPOTENCY_FILE

MANIFEST_FILE = "stores.list"
# Named here, where node.digests takes it from: `vouchnet agent` must not load node.digests (an event loop).
DIGESTS_FILE = "digests.db"
# Each store: the part of the node that keeps it (as start-up errors name it) and what a new, empty one loses.
STORES: dict[str, tuple[str, str]] = {
    LEDGER_FILE: ("records", "the records it accepted, its own among them, which peers give back only in part"),
    AUDIT_FILE: ("telemetry", "the raw events of its agents, which audit exports prove"),
    DIGESTS_FILE: ("telemetry", "the raw counts of its digests and its open epochs' digest state"),
    IDEMPOTENCY_FILE: ("telemetry", "the Idempotency-Keys of stored writes: a retried batch would count twice"),
    CREDENTIALS_FILE: ("credentials", "the agent credentials it minted and their revocations: revoked credentials "
                                      "would be valid again, and new ones reuse their status list entries"),
    WITNESS_FILE: ("witness", "what its witness cosigned of peers' logs, against which it catches their forks"),
    OWN_RECORDS_FILE: ("records", "which records of the org's key came from peers, and which of those its operator "
                                  "acknowledged, and the bytes of those conflicting with the org's own, which no other "
                                  "file holds: vouchnet_own_records_from_peers would fall back to 0"),
}
_HEADER = ("# The stores this data directory has created, one a line (written by vouchnet): `vouchnet run` refuses to\n"
           "# start while one is missing or empty; restore it from a backup, or see `vouchnet stores accept-loss`.\n")


class StoreLost(Exception):
    """A listed store is missing or empty, or the list cannot be read; the message names the file and what to do."""


class NotAStore(StoreLost):
    """A name `unlist` was given that is no store the list names (a typo, or a file that is no store)."""


def listed(data_dir: Path) -> list[str]:
    """The stores `stores.list` names, in its order; none if there is no list (a directory from before it)."""
    path = data_dir / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise StoreLost(f"{path}: cannot be read ({error}): restore it from a backup of this node's data "
                        "directory") from None
    names = [line for line in text.splitlines() if line and not line.startswith("#")]
    for name in names:
        if "/" in name or name in (".", "..") or name.strip() != name:
            raise StoreLost(f"{path}: not a list of stores: {name!r} is not a file name: restore it from a backup "
                            "of this node's data directory")
    return names


def check_listed(data_dir: Path, names: Iterable[str] | None = None) -> None:
    """Raise StoreLost for the first listed store (of `names`, if given) that is missing or empty, naming it, what it
    held and what to do; read-only."""
    wanted = None if names is None else set(names)
    for name in listed(data_dir):
        if wanted is not None and name not in wanted:
            continue
        path = data_dir / name
        state = "missing" if not path.exists() else "empty" if _empty(path) else None
        if state is None:
            continue
        part, held = STORES.get(name, ("data", "what a later vouchnet kept there"))
        # A WAL the lost file left (its node killed) would be applied by SQLite to the copy restored in its place
        wal = (f" (first delete {name}-wal and {name}-shm, the lost one's, which SQLite would apply to the file "
               "restored)") if (data_dir / f"{name}-wal").exists() else ""
        raise StoreLost(f"{part}: {path}: {state}, though this data directory created it ({MANIFEST_FILE}): restore "
                        f"it from a backup of this node's data directory{wal}; or, to start with a new one and lose "
                        f"what it held ({held}), run `vouchnet stores accept-loss {name} --dir {data_dir}`")


def list_present(data_dir: Path, *, held: Iterable[str] = ()) -> None:
    """Add each store now in `data_dir` (not empty) to the list, durably; nothing if all are listed. Names are only
    added, so writers racing (a node and a command) each write all they saw.

    `held`: the stores this process holds open, listed without being read: closing a descriptor of a file drops
    every POSIX lock the process holds on it, SQLite's too, and another process closing that database then takes it
    for unused, checkpoints it and deletes the WAL this one goes on committing to, unseen and lost at a crash."""
    names, held = listed(data_dir), set(held)
    new = [name for name in STORES if name not in names and (data_dir / name).exists()
           and (name in held or not _empty(data_dir / name))]
    if new:
        _write(data_dir, [*names, *new])


def unlist(data_dir: Path, name: str) -> None:
    """Take `name` off the list, durably (`vouchnet stores accept-loss`, the node stopped). StoreLost if it is not
    listed (NotAStore, naming those that are, for a name that is no store), or if it is there and not empty (nothing
    was lost)."""
    names = listed(data_dir)
    path = data_dir / name
    if name not in names:
        if name in STORES:
            raise StoreLost(f"{path}: not listed in {data_dir / MANIFEST_FILE}: a start makes it if it is missing")
        # (a typo, or a file that is no store: "a start makes it" would be untrue)
        raise NotAStore(f"{path}: not a store {data_dir / MANIFEST_FILE} lists "
                        f"({', '.join(names) or 'it lists none'}): give the file name the start's refusal named")
    if path.exists() and not _empty(path):
        raise StoreLost(f"{path}: is there and not empty: nothing was lost")
    _write(data_dir, [n for n in names if n != name])


def _write(data_dir: Path, names: list[str]) -> None:
    replace_file(data_dir / MANIFEST_FILE, (_HEADER + "".join(f"{name}\n" for name in names)).encode())


def _empty(path: Path) -> bool:
    """A file of no bytes, or an SQLite database without marks or tables (what opening a missing store makes before
    it is claimed), read from its header: opening a WAL database, even read-only, would make its -shm file. A file
    that is not SQLite is not empty: the format checks name it."""
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError:
        return False  # (a directory in its place, say: opening it names it)
    if not header:
        return True
    # schema cookie, user_version and application_id: all 0 until a table is made or a mark set
    return header.startswith(b"SQLite format 3\x00") and header[40:44] == header[60:64] == header[68:72] == bytes(4)
