"""`vouchnet log repair` (DESIGN §4): rebuild the hashes a stopped node's records ledger stores from its entries,
once they are shown sound by hashing to the root of the node's own latest signed checkpoint (ledger.tree_repair)."""

from __future__ import annotations

from pathlib import Path

from gossip.checkpoints import CHECKPOINT_FILE, RECORDS_LOG
from gossip.store import LEDGER_FILE
from gossip.validation import check_record
from ledger import (
    EMPTY_ROOT,
    Checkpoint,
    Ed25519Verifier,
    EntriesDamaged,
    Ledger,
    LedgerError,
    NoteError,
    StoredHashCheck,
    open_checkpoint,
    parse_log_origin,
    peek_origin,
    repair_stored_hashes,
)
from node.data_lock import DataDirBusy, locked_data_dir
from vouching import InvalidDid, InvalidRecord, public_key_from_did
from vouching.counts import counted

from .common import CommandFailed, os_error_text
from .log_verify import RESTORE, Progress


def repair_log(data_dir: Path, network: str, *, progress: Progress) -> tuple[Checkpoint | None, StoredHashCheck]:
    """With the data directory's lock (the node stopped), replace every hash its records ledger stores that differs
    from the tree of its entries, if they hash to the root of the node's latest saved checkpoint (CHECKPOINT_FILE,
    signed by the org key of `network` whose log it is); entries past it (all, if the node saved none: it saves
    only cosigned ones) must be validly signed records. That checkpoint (None: none saved), and what was compared
    and replaced. Raises CommandFailed, having changed nothing."""
    try:
        with locked_data_dir(data_dir):
            checkpoint = _saved_checkpoint(data_dir / CHECKPOINT_FILE, network)
            size, root = (0, EMPTY_ROOT) if checkpoint is None else (checkpoint.size, checkpoint.root)
            path = data_dir / LEDGER_FILE
            if not path.exists():  # Ledger.open would create an empty one
                raise CommandFailed(f"{path}: no such file: is {data_dir} the node's data directory?")
            with Ledger.open(path, to_repair=True) as ledger:
                if ledger.size < size:
                    raise CommandFailed(f"{path} holds {counted(ledger.size, 'entry', 'entries')}, fewer than the "
                                        f"checkpoint of size {size} the node signed: {RESTORE}")
                return checkpoint, repair_stored_hashes(ledger, size, root, check_entry=_signed_record,
                                                        progress=progress)
    except DataDirBusy as e:
        raise CommandFailed(str(e)) from None
    except EntriesDamaged as e:
        raise CommandFailed(f"{data_dir / LEDGER_FILE}: {e}; nothing was repaired: {RESTORE}") from None
    except LedgerError as e:
        raise CommandFailed(f"{e}; nothing was repaired") from None
    except OSError as e:
        raise CommandFailed(os_error_text(e)) from None


def _saved_checkpoint(path: Path, network: str) -> Checkpoint | None:
    """The node's latest published checkpoint of its records log, as it keeps it in `path` (None if there is none),
    checked against the key that signed it (the org's, or its key before a rotation: the did in the origin is it)."""
    try:
        note = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        origin = peek_origin(note)
        origin_network, did, log = parse_log_origin(origin)
        if (origin_network, log) != (network, RECORDS_LOG):
            raise NoteError(f"a checkpoint of {origin}, not of a {RECORDS_LOG} log on {network}")
        checkpoint, _ = open_checkpoint(note, [Ed25519Verifier(origin, public_key_from_did(did))])
    except (NoteError, InvalidDid) as e:
        raise CommandFailed(f"{path}: {e}: the checkpoint the entries are checked against is unreadable, so nothing "
                            "was repaired") from None
    return checkpoint


def _signed_record(index: int, entry: bytes) -> None:
    """An entry past the saved checkpoint, which no signed root covers, must be a validly signed record."""
    try:
        check_record(entry)
    except InvalidRecord as e:
        raise CommandFailed(f"entry {index} (after the saved checkpoint): {e}: an entry is damaged; nothing was "
                            f"repaired: {RESTORE}") from None
