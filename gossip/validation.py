"""Validation of a record from the network: `verify_record` plus what `vouching` cannot check on its own, one
record at a time or a batch at a time on worker threads.

`vouching` cannot read C2SP signed notes, so checkpoint equivocation evidence (DESIGN.md §4: two checkpoints of
one origin that cannot be consistent) is verified here, each checkpoint opened by gossip.checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ledger import Checkpoint, NoteError
from vouching import EquivocationBody, InvalidRecord, Record, verify_record

from .checkpoints import open_signed_checkpoint


def check_record(data: bytes) -> Record:
    """Verify a record from anyone, including checkpoint evidence; raises InvalidRecord ("field: rule") only."""
    record = verify_record(data)
    if isinstance(record.body, EquivocationBody) and record.body.type == "checkpoint":
        check_checkpoint_evidence(record.body)
    return record


def _open(note: bytes, field: str, offender: str) -> Checkpoint:
    try:
        opened = open_signed_checkpoint(note)
    except NoteError as e:
        raise InvalidRecord(f"{field}: not a checkpoint signed by the offender: {e}") from None
    if opened.org != offender:
        raise InvalidRecord(f"{field}: a checkpoint of {opened.org}, not of the offender")
    return opened.checkpoint


def check_checkpoint_evidence(body: EquivocationBody) -> None:
    """Two checkpoints signed by the offender for one origin and one size, with different roots."""
    a, b = _open(body.a, "body.a", body.offender), _open(body.b, "body.b", body.offender)
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


@dataclass(frozen=True)
class Checking:
    """A batch being checked on worker threads (ThreadedChecker.submit)."""

    _parts: list[Future[list[Record]]]

    def result(self) -> list[Record]:
        """Wait for the check: the records in order, or InvalidRecord for the first invalid one (check_records)."""
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
        return Checking([self._pool.submit(check_records, raws, start, min(start + share, len(raws)))
                         for start in range(0, len(raws), share)])

    def close(self) -> None:
        """Wait for the checks under way, and stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ThreadedChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
