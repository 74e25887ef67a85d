"""A C2SP tlog-witness (c2sp.org/tlog-witness, add-checkpoint): cosigns a log's checkpoint only after checking the
log's signature and a consistency proof from the last checkpoint it cosigned for that origin, which it stores
durably (SQLite WAL, synchronous=FULL) before answering; a log whose key was rotated continues its predecessor's
(DESIGN §2). Also the add-checkpoint request body's wire format.
"""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from .checkpoint import MAX_TREE_SIZE, Checkpoint, open_checkpoint, peek_origin
from .cosignature import CosignatureSigner
from .disk_failure import open_failure
from .merkle import EMPTY_ROOT, HASH_SIZE, ProofError, verify_consistency
from .note import MAX_NOTE_SIZE, NoteError, NoteVerifier, Signature, decode_base64, format_note, note_signature
from .sqlite_format import FileFormat, claim
from .wal import use_wal
from .writes_under_way import writing

MAX_PROOF_LINES = 63  # tlog-witness: a client MUST NOT send more
_HASH_LINE = 45  # base64 of a 32-byte hash, and a newline
MAX_REQUEST_SIZE = len(f"old {MAX_TREE_SIZE}\n") + MAX_PROOF_LINES * _HASH_LINE + 1 + MAX_NOTE_SIZE
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]*)")
FORMAT = FileFormat("a witness state file", 0x766E7774, 1, frozenset({"cosigned", "continued"}))  # "vnwt"


# --- Answers other than a cosignature (tlog-witness's HTTP status codes, for protocols that carry them) -----


class WitnessError(Exception):
    """The witness refuses an add-checkpoint request; the message names the field and the rule."""

    http_status: ClassVar[int] = 400


class BadRequest(WitnessError):
    """The request body is malformed, or its old size exceeds the checkpoint's size."""


class UnknownOrigin(WitnessError):
    """The checkpoint's origin is not a log this witness follows."""

    http_status = 404


class BadCheckpoint(WitnessError):
    """The checkpoint is malformed or carries no valid signature of the log's key."""

    http_status = 403


class Conflict(WitnessError):
    """The old size is not the size this witness last cosigned (a stale client, or a rollback); retry from `size`."""

    http_status = 409

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class BadProof(WitnessError):
    """The consistency proof does not verify, or a rotated log's checkpoint contradicts its predecessor's. Both
    log-signed notes travel with it (`cosigned`, `submitted`) for a caller to follow up; gossip.cosigning.answer,
    the one caller, refuses the request and keeps neither (counted in WitnessStats.refused_peers by status)."""

    http_status = 422

    def __init__(self, message: str, cosigned: bytes | None, submitted: bytes) -> None:
        super().__init__(message)
        self.cosigned = cosigned
        self.submitted = submitted


class Equivocation(WitnessError):
    """The log signed two different roots for one size: `cosigned` and `submitted` are the two signed notes,
    each with the log's signatures only, self-contained evidence against the log."""

    http_status = 409

    def __init__(self, origin: str, cosigned: bytes, submitted: bytes) -> None:
        super().__init__(f"origin {origin}: the log signed two different roots at one size")
        self.origin = origin
        self.cosigned = cosigned
        self.submitted = submitted


class WitnessStoreError(Exception):
    """The witness's state file cannot be used: missing directory, corrupt, or not a witness state file."""


# --- The add-checkpoint request body --------------------------------------------------------------------


@dataclass(frozen=True)
class AddCheckpointRequest:
    """tlog-witness add-checkpoint body: `old <size>`, consistency proof lines, a blank line, the checkpoint.

    `old_size` is the size the client believes the witness last cosigned (0 if none); `proof` is the RFC 9162
    consistency proof from it to the checkpoint's size; `checkpoint` is the log-signed checkpoint note.
    """

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: bytes

    def __post_init__(self) -> None:
        if type(self.old_size) is not int or not 0 <= self.old_size <= MAX_TREE_SIZE:
            raise BadRequest("old size: must be an integer from 0 to 2^64 - 1")
        if not isinstance(self.proof, tuple) or len(self.proof) > MAX_PROOF_LINES:
            raise BadRequest(f"proof: must be a tuple of at most {MAX_PROOF_LINES} hashes")
        for i, h in enumerate(self.proof, 1):
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise BadRequest(f"proof line {i}: must be a {HASH_SIZE}-byte hash")
        if not isinstance(self.checkpoint, bytes) or not self.checkpoint:
            raise BadRequest("checkpoint: must be a non-empty signed note")

    def to_bytes(self) -> bytes:
        proof = "".join(base64.b64encode(h).decode() + "\n" for h in self.proof)
        return f"old {self.old_size}\n{proof}\n".encode() + self.checkpoint

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpointRequest:
        """Parse a request body strictly; raise BadRequest naming the line and the rule."""
        if len(body) > MAX_REQUEST_SIZE:
            raise BadRequest(f"request: {len(body)} bytes is more than {MAX_REQUEST_SIZE}")
        # Header lines are never empty, so the first blank line ends them; the checkpoint note follows it.
        head, blank, checkpoint = body.partition(b"\n\n")
        if not blank:
            raise BadRequest("request: must be an old size line, proof lines, a blank line and a checkpoint")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError:
            raise BadRequest("request: the old size and proof lines must be ASCII") from None
        m = _OLD_LINE.fullmatch(lines[0])
        if not m or len(m[1]) > len(str(MAX_TREE_SIZE)):
            raise BadRequest(f"old size line {lines[0][:32]!r}: must be 'old <decimal size>' without leading zeros")
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise BadRequest(f"proof: {len(lines) - 1} lines is more than {MAX_PROOF_LINES}")
        proof = []
        for i, line in enumerate(lines[1:], 1):
            try:
                proof.append(decode_base64(line, f"proof line {i}"))
            except NoteError as e:
                raise BadRequest(str(e)) from None
        return cls(int(m[1]), tuple(proof), checkpoint)


# --- The witness ----------------------------------------------------------------------------------------


class Witness:
    """Cosigns checkpoints of the logs in `logs` (origin -> the log's key), keeping its state at `path`.

    A log whose key was rotated continues its predecessor's: `continues(origin)` names the origins of the same
    log under its earlier keys, newest first, and a log this witness has not cosigned yet starts from the last
    checkpoint it cosigned of the first of those, not from the empty tree (so a rotation cannot rewrite history);
    a log it cosigned before it knew its predecessor is cosigned again only once shown to continue that one too,
    and a log continuing such a log, not yet shown to continue its own predecessor, must continue both.

    `logs` and `continues` are read on every request, so their owner may change them while the witness runs.
    Methods may be called from several threads; checking a request against the stored state and storing the new
    state are one SQLite transaction, so no interleaving can roll an origin back. The latest checkpoint of each
    origin and its note are also held in memory (`cosigned`, `cosigned_checkpoint`), read from the file as it opens
    and changed only once a transaction storing a new one committed, so a reader never waits for a write: the file
    stays the truth, and no other writer of it is seen (a node's data directory is locked).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        signer: CosignatureSigner,
        logs: Mapping[str, NoteVerifier],
        continues: Callable[[str], Sequence[str]] = lambda origin: (),
    ) -> None:
        self._signer = signer
        self._logs = logs
        self._continues = continues
        # origin -> (the states it must extend, a checkpoint proven to extend the first `steps` sizes of them, steps):
        # a _continue's progress, one proof per request.
        self._proven: dict[str, tuple[tuple[Checkpoint, ...], Checkpoint, int]] = {}
        self._lock = threading.Lock()
        self._name = Path(path).name  # (of its writes under way)
        self._db = _open_store(path)
        self._closed = False
        try:
            rows = self._db.execute("SELECT origin, checkpoint, note FROM cosigned")
            self._cosigned = {origin: (Checkpoint.parse(text), note) for origin, text, note in rows}
        except (NoteError, sqlite3.Error) as e:
            self._db.close()
            raise WitnessStoreError(f"{os.fspath(path)}: a stored checkpoint cannot be read ({e})") from None

    def add_checkpoint(self, request: AddCheckpointRequest) -> Signature:
        """tlog-witness add-checkpoint: verify, store the checkpoint durably, then return the cosignature.

        Raises UnknownOrigin, BadCheckpoint, BadRequest, Conflict, BadProof or Equivocation (two roots at one
        size of one origin; a rotated log's root that contradicts its predecessor's at one size is a BadProof).
        """
        try:
            origin = peek_origin(request.checkpoint)
        except NoteError as e:
            raise BadCheckpoint(str(e)) from None
        verifier = self._logs.get(origin)
        if verifier is None:
            raise UnknownOrigin(f"origin {origin[:200]!r}: not a log this witness follows")
        try:
            checkpoint, signatures = open_checkpoint(request.checkpoint, [verifier])
        except NoteError as e:
            raise BadCheckpoint(str(e)) from None
        if request.old_size > checkpoint.size:
            raise BadRequest(f"old size {request.old_size}: exceeds the checkpoint's size {checkpoint.size}")
        # Kept and reported with the log's signatures only: compact, and evidence on its own.
        submitted = format_note(checkpoint.to_text(), signatures)
        with self._lock, writing(self._name):
            self._check_open()
            self._advance(request, checkpoint, submitted)
        return note_signature(checkpoint.to_text(), self._signer)

    def cosigned(self, origin: str) -> tuple[Checkpoint, bytes] | None:
        """The latest checkpoint cosigned for `origin` and its log-signed note, or None if there is none; from memory
        (DESIGN §4): no read of the file, and no wait for a request being stored (it shows once committed)."""
        self._check_open()
        return self._cosigned.get(origin)

    def cosigned_checkpoint(self, origin: str) -> Checkpoint | None:
        """The checkpoint of `cosigned(origin)`, or None."""
        cosigned = self.cosigned(origin)
        return None if cosigned is None else cosigned[0]

    def close(self) -> None:
        """Close the state file; later calls raise WitnessStoreError (a call in another thread may come late)."""
        with writing(self._name), self._lock:  # (after a write under way)
            self._closed = True
            self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise WitnessStoreError("the witness is closed")

    def __enter__(self) -> Witness:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _latest(self, origin: str) -> tuple[Checkpoint, bytes] | None:
        row = self._db.execute("SELECT checkpoint, note FROM cosigned WHERE origin = ?", (origin,)).fetchone()
        if row is None:
            return None
        try:
            return Checkpoint.parse(row[0]), row[1]
        except NoteError as e:
            raise WitnessStoreError(f"stored checkpoint of {origin}: {e}") from None

    def _states(self, origin: str, own: tuple[Checkpoint, bytes] | None) -> list[tuple[Checkpoint, bytes]]:
        """What a new checkpoint of `origin` must extend, newest first: its own latest, unless it was shown to
        continue its predecessors, then the latest cosigned of each earlier origin, back to one that was shown to
        continue its own (a log cosigned on first use, before the witness knew of its rotation, and never checked
        since because its key rotated again, vouches for nothing before it)."""
        states = [own] if own is not None else []
        if own is not None and self._continued(origin):
            return states
        for earlier in self._continues(origin):
            if (latest := self._latest(earlier)) is not None:
                states.append(latest)
                if self._continued(earlier):
                    break
        return states

    def _advance(self, request: AddCheckpointRequest, checkpoint: Checkpoint, submitted: bytes) -> None:
        """Check the request against the stored states (the log's own, else its predecessors', or all of them
        until checked once) and store the new checkpoint, in one transaction."""
        origin = checkpoint.origin
        self._db.execute("BEGIN IMMEDIATE")
        try:
            own = self._latest(origin)
            states = self._states(origin, own)
            if len(states) > 1:
                self._continue(request, checkpoint, submitted, states)
            else:
                _check(request, checkpoint, submitted, states[0] if states else None)
            stored = own is None or checkpoint.size != own[0].size
            if stored:
                self._db.execute(
                    "INSERT INTO cosigned (origin, checkpoint, note) VALUES (?, ?, ?) ON CONFLICT (origin) "
                    "DO UPDATE SET checkpoint = excluded.checkpoint, note = excluded.note",
                    (origin, checkpoint.to_text(), submitted),
                )
            if any(state[0].origin != origin for state in states):
                self._db.execute("INSERT OR IGNORE INTO continued (origin) VALUES (?)", (origin,))
            self._db.execute("COMMIT")
            if stored:
                self._cosigned[origin] = checkpoint, submitted
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _continued(self, origin: str) -> bool:
        """Whether `origin`'s log was checked to continue its predecessor's."""
        return self._db.execute("SELECT 1 FROM continued WHERE origin = ?", (origin,)).fetchone() is not None

    def _continue(
        self, request: AddCheckpointRequest, checkpoint: Checkpoint, submitted: bytes,
        states: list[tuple[Checkpoint, bytes]],
    ) -> None:
        """A checkpoint that must extend several states (its log's own, cosigned on first use, and its predecessors')
        is cosigned after consistency proofs from each of their sizes, one per request (tlog-witness carries one),
        in order. Progress is remembered, with the checkpoint proven, for the next request; a Conflict names the
        size the next proof must start from."""
        origin = checkpoint.origin
        sizes = list(dict.fromkeys(state[0].size for state in states))
        key = tuple(state[0] for state in states)
        proven = self._proven.get(origin)
        if proven is not None and proven[0] == key:
            reached, steps = proven[1], proven[2]
        elif states[0][0].origin == origin:
            reached, steps = states[0][0], 1  # its own latest checkpoint extends its own state
        else:
            reached, steps = None, 0
        if request.old_size == sizes[0]:
            steps = 0
        elif not (0 < steps < len(sizes) and request.old_size == sizes[steps]
                  and checkpoint in (states[0][0], reached)):
            of = "" if states[0][0].origin == origin else f" of this log's predecessor {states[0][0].origin}"
            raise Conflict(f"old size {request.old_size}: this witness last cosigned size {sizes[0]}{of}", sizes[0])
        size = sizes[steps]
        state = next(state for state in states if state[0].size == size)
        _check(request, checkpoint, submitted, state)
        for other in states:  # equal sizes: the proof just checked starts from both, or neither
            if other[0].size == size and other[0].root != state[0].root:
                message = f"root at size {size}: differs from the one cosigned of this log's predecessor"
                raise BadProof(f"{message} {other[0].origin}", other[1], state[1])
        if steps + 1 < len(sizes):
            self._proven[origin] = (key, checkpoint, steps + 1)
            following = next(state for state in states if state[0].size == sizes[steps + 1])[0]
            raise Conflict(
                f"old size {size}: this log continues {following.origin}, which this witness cosigned up to size "
                f"{following.size}: a consistency proof from there is needed too",
                following.size,
            )
        self._proven.pop(origin, None)


def _check(
    request: AddCheckpointRequest, checkpoint: Checkpoint, submitted: bytes, state: tuple[Checkpoint, bytes] | None
) -> None:
    """Check that `request` takes `state` (the latest checkpoint cosigned of this log or of its predecessor, and its
    log-signed note; None for a log new to this witness) to `checkpoint`."""
    size = state[0].size if state else 0
    inherited = state is not None and state[0].origin != checkpoint.origin
    of = f" of this log's predecessor {state[0].origin}" if inherited else ""
    if request.old_size != size:
        raise Conflict(f"old size {request.old_size}: this witness last cosigned size {size}{of}", size)
    if state and checkpoint.size == size:
        if checkpoint.root != state[0].root:
            if inherited:  # notes of two origins are not one log signing two roots: not evidence peers accept
                raise BadProof(f"root: differs from the one cosigned at size {size}{of}", state[1], submitted)
            raise Equivocation(checkpoint.origin, state[1], submitted)
        if request.proof:
            raise BadProof("proof: must be empty when the sizes are equal", state[1], submitted)
    else:
        old_root = state[0].root if state else EMPTY_ROOT
        try:
            verify_consistency(size, checkpoint.size, old_root, checkpoint.root, request.proof)
        except ProofError as e:
            message = f"consistency proof from {size}{of} to {checkpoint.size}: {e}"
            raise BadProof(message, state[1] if state else None, submitted) from None


def _open_store(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open (or create) a witness state file; never alter a file that is not one (ledger.sqlite_format)."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            claim(db, Path(path), FORMAT, WitnessStoreError)
            # WAL with synchronous=FULL: a committed transaction is on disk before COMMIT returns.
            if use_wal(db) != "wal":
                raise WitnessStoreError(f"{os.fspath(path)}: cannot use write-ahead logging")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE IF NOT EXISTS cosigned"
                       " (origin TEXT PRIMARY KEY, checkpoint TEXT NOT NULL, note BLOB NOT NULL)")
            # Logs checked to continue their predecessor's (a file from before this table re-checks each one once).
            db.execute("CREATE TABLE IF NOT EXISTS continued (origin TEXT PRIMARY KEY)")
        except BaseException:
            db.close()
            raise
    except sqlite3.Error as e:  # (a full disk fails switching to WAL: not a file that is not one)
        raise WitnessStoreError(open_failure(Path(path), e, f"{os.fspath(path)}: cannot be read as a witness state file"
                                                         f" ({e})")) from None
    return db
