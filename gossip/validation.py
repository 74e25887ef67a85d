"""Validation of a record from the network: `verify_record` plus what `vouching` cannot check on its own, one
record at a time, or a batch at a time on worker threads or with its signatures in worker processes.

`vouching` cannot read C2SP signed notes, so checkpoint equivocation evidence (DESIGN.md §4: two checkpoints of
one origin that cannot be consistent) is verified here, each checkpoint opened by gossip.checkpoints. It must be of
the offender's records log, the one log of an org its peers witness: the others (its private audit log) are never
gossiped, so two roots of one of them at one size prove no fork anyone relied on; an org restoring its audit.ledger
from a backup signs one at its next `vouchnet audit export`, and whoever held both exports could get it flagged.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Protocol

from ledger import Checkpoint, NoteError, parse_log_origin
from vouching import (
    EquivocationBody,
    InvalidRecord,
    Record,
    SignatureCheck,
    failed_signatures,
    verify_record,
    verify_record_deferred,
)

from .checkpoints import RECORDS_LOG, open_signed_checkpoint


def check_record(data: bytes) -> Record:
    """Verify a record from anyone, including checkpoint evidence; raises InvalidRecord ("field: rule") only."""
    record = verify_record(data)
    _check_checkpoint_evidence(record)
    return record


def check_record_deferred(data: bytes) -> tuple[Record, SignatureCheck | None]:
    """check_record but for the issuer's signature, returned to be checked afterwards (`failed_signatures`) as in
    vouching.verify_record_deferred: the record must not be trusted until it passes. Raises InvalidRecord."""
    record, check = verify_record_deferred(data)
    _check_checkpoint_evidence(record)
    return record, check


def _check_checkpoint_evidence(record: Record) -> None:
    if isinstance(record.body, EquivocationBody) and record.body.type == "checkpoint":
        check_checkpoint_evidence(record.body)


def _open(note: bytes, field: str, offender: str) -> Checkpoint:
    try:
        opened = open_signed_checkpoint(note)
    except NoteError as e:
        raise InvalidRecord(f"{field}: not a checkpoint signed by the offender: {e}") from None
    if opened.org != offender:
        raise InvalidRecord(f"{field}: a checkpoint of {opened.org}, not of the offender")
    return opened.checkpoint


def _records_log(note: bytes, field: str, offender: str) -> Checkpoint:
    """_open, and the checkpoint must be of the offender's records log."""
    checkpoint = _open(note, field, offender)
    log = parse_log_origin(checkpoint.origin)[2]  # (opened: its origin parses)
    if log != RECORDS_LOG:
        raise InvalidRecord(f"{field}: must be a checkpoint of the offender's {RECORDS_LOG} log, not of its {log} log "
                            "(only that log is witnessed)")
    return checkpoint


def check_checkpoint_evidence(body: EquivocationBody) -> None:
    """Two checkpoints signed by the offender for one origin, its records log, and one size, with different roots
    (module docstring)."""
    a, b = _records_log(body.a, "body.a", body.offender), _records_log(body.b, "body.b", body.offender)
    if a.origin != b.origin:
        raise InvalidRecord("body.b: must be a checkpoint of the same log as body.a")
    if a.size != b.size:
        raise InvalidRecord("body.b: must be a checkpoint of the same size as body.a")
    if a.root == b.root:
        raise InvalidRecord("body.b: must have a different root from body.a")


def check_records(raws: Sequence[bytes], start: int = 0, end: int | None = None) -> list[Record]:
    """check_record for each of `raws[start:end]`, in order; InvalidRecord for the first invalid one names its
    index in `raws` ("records[i]: field: rule")."""
    records = []
    for i in range(start, len(raws) if end is None else end):
        try:
            records.append(check_record(raws[i]))
        except InvalidRecord as e:
            raise InvalidRecord(f"records[{i}]: {e}") from None
    return records


class Checking(Protocol):
    """A batch being checked by a ThreadedChecker or a ProcessChecker (their `submit`)."""

    def result(self) -> list[Record]:
        """Wait for the check: the records in order, or InvalidRecord for the first invalid one (check_records)."""
        ...


@dataclass(frozen=True)
class _ThreadChecking:
    _parts: list[Future[list[Record]]]

    def result(self) -> list[Record]:
        records: list[Record] = []
        for part in self._parts:
            records += part.result()
        return records


class ThreadedChecker:
    """check_records over batches split among worker threads. PyNaCl releases the GIL inside libsodium, where
    most of a check goes, so `threads` checks run in parallel; and `submit` returns at once, so the caller can
    accept the previous batch into its replica while this one is checked (benchmarks/ingest.py measures both).
    Close it (or use it as a context manager) to stop its threads.
    """

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"ThreadedChecker: threads must be at least 1, got {threads}")
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="check_records")

    def submit(self, raws: Sequence[bytes]) -> Checking:
        """Start checking `raws`, one slice per thread."""
        share = max(1, -(-len(raws) // self.threads))
        return _ThreadChecking([self._pool.submit(check_records, raws, start, min(start + share, len(raws)))
                                for start in range(0, len(raws), share)])

    def close(self) -> None:
        """Wait for the checks under way, and stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ThreadedChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Answers a worker's reader keeps for other readers; past it the oldest go (their readers check for themselves).
MAX_KEPT_ANSWERS = 256
# Seconds a stopping worker may take: enough to answer what it holds (a batch's checks take milliseconds); a worker
# still starting (spawn imports the node's main module first, 1.5 s for `vouchnet run` here) is killed instead of
# holding the node's shutdown, which must end within 2 s (issue 7).
STOP_GRACE_S = 0.5


def _check_signatures_forever(connection: Connection) -> None:
    """A worker process: answer each list of signature checks with failed_signatures, until told None. Ctrl-C
    in the node's terminal reaches the worker too: the node stops it, so it ignores SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (checks := connection.recv()) is not None:
        connection.send(failed_signatures(checks))


class _Worker:
    """One worker process and its pipe. Checks go out in order and answers come back in order, so each sender
    gets a ticket and each reader takes the answer of its ticket, keeping the others' for them. No helper threads:
    a ProcessPoolExecutor's feed the worker only when they get the GIL, which a busy caller holds for up to
    sys.getswitchinterval() at a time (measured as in benchmarks/ingest.py: 0.63-0.70x the raw verify rate with
    one, 0.72-0.87x with this)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # not fork: the caller's threads would be copied mid-step
        self._connection, theirs = context.Pipe()
        self.process = context.Process(target=_check_signatures_forever, args=(theirs,), name="check_signatures",
                                       daemon=True)
        self.process.start()
        theirs.close()
        self._sending, self._reading = threading.Lock(), threading.Lock()
        self._sent = self._read = 0
        self._answers: dict[int, list[int]] = {}

    def send(self, checks: list[SignatureCheck]) -> int | None:
        """Send checks; the ticket of their answer, or None if the worker is gone."""
        with self._sending:
            try:
                self._connection.send([tuple(check) for check in checks])  # plain tuples pickle 5x faster
            except OSError:
                return None
            self._sent += 1
            return self._sent - 1

    def answer(self, ticket: int) -> list[int] | None:
        """The failures among the checks of `ticket`, waiting for them; None if the worker died first, or if the
        answer was read so long ago for a reader that never came (a batch abandoned) that it was dropped."""
        with self._reading:
            while ticket not in self._answers:
                if ticket < self._read:
                    return None
                try:
                    self._answers[self._read] = self._connection.recv()
                except (EOFError, OSError):
                    return None
                self._read += 1
                if len(self._answers) > MAX_KEPT_ANSWERS:
                    del self._answers[next(iter(self._answers))]  # the oldest: answers are kept in ticket order
            return self._answers.pop(ticket)

    def ask_to_stop(self) -> None:
        """Tell the worker to exit once it has answered the checks sent before."""
        with self._sending:
            try:
                self._connection.send(None)
            except OSError:
                pass

    def close(self) -> None:
        """Stop the worker (asked, then waited for up to STOP_GRACE_S if it holds checks, then killed)."""
        self.ask_to_stop()
        self.reap(STOP_GRACE_S)

    def reap(self, grace: float) -> None:
        """Wait up to `grace` seconds for the worker, asked to stop, to exit if it holds checks not yet answered;
        then kill it; close the pipe. One that holds none has nothing to finish: waiting for it took all of the grace
        of each shutdown of a node whose worker was still starting, or slow to exit on a loaded CPU."""
        if self._sent > self._read:  # (a reader waiting for an answer has not counted it read yet)
            self.process.join(timeout=grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._connection.close()


@dataclass(frozen=True)
class _ProcessChecking:
    records: list[Record]  # decoded and validated, signatures pending; those before the first invalid one
    invalid: InvalidRecord | None  # why records[len(records)] of the batch was invalid, if one was
    checked: list[int]  # the batch position of each signature check sent
    parts: list[tuple[int, list[SignatureCheck], _Worker, int | None]]  # (first check, checks, worker, ticket)

    def result(self) -> list[Record]:
        for first, checks, worker, ticket in self.parts:
            failed = None if ticket is None else worker.answer(ticket)
            if failed is None:  # the worker died (killed, out of memory): check them here instead
                failed = failed_signatures(checks)
            if failed:
                position = self.checked[first + failed[0]]
                raise InvalidRecord(f"records[{position}]: signature: does not verify")
        if self.invalid is not None:
            raise self.invalid
        return self.records


class ProcessChecker:
    """check_records with the issuers' signatures checked in worker processes. `submit` decodes and validates a
    batch on the calling thread and sends its signatures to the workers, which check them meanwhile, free of the
    GIL that limits ThreadedChecker (benchmarks/ingest.py measures both); `result`, on any thread, joins the two.
    A worker that dies is replaced, and the checks it held are done by whoever asks for their result. Close it
    (or use it as a context manager) to stop the workers.
    """

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError(f"ProcessChecker: processes must be at least 1, got {processes}")
        self.processes = processes
        self._workers = [_Worker() for _ in range(processes)]

    def submit(self, raws: Sequence[bytes]) -> Checking:
        """Decode and validate `raws` here; start their signature checks, one slice per worker."""
        records: list[Record] = []
        checks: list[SignatureCheck] = []
        checked: list[int] = []
        invalid = None
        for i, raw in enumerate(raws):
            try:
                record, check = check_record_deferred(raw)
            except InvalidRecord as e:
                invalid = InvalidRecord(f"records[{i}]: {e}")
                break
            records.append(record)
            if check is not None:
                checks.append(check)
                checked.append(i)
        share = max(1, -(-len(checks) // self.processes))
        parts = []
        for n, first in enumerate(range(0, len(checks), share)):
            worker = self._alive(n)
            part = checks[first:first + share]
            parts.append((first, part, worker, worker.send(part)))
        return _ProcessChecking(records, invalid, checked, parts)

    def _alive(self, n: int) -> _Worker:
        """Worker n, replaced first if it has died."""
        if not self._workers[n].process.is_alive():
            self._workers[n].close()
            self._workers[n] = _Worker()
        return self._workers[n]

    def close(self) -> None:
        """Stop the workers, together: each finishes the checks it holds first if it can within STOP_GRACE_S; one
        that holds none is stopped at once."""
        for worker in self._workers:
            worker.ask_to_stop()
        end = time.monotonic() + STOP_GRACE_S
        for worker in self._workers:
            worker.reap(max(0.0, end - time.monotonic()))

    def __enter__(self) -> ProcessChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
