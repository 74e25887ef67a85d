"""The org's private audit log (DESIGN §4, §7): every accepted telemetry event, as a deterministic CBOR entry, in a
second `ledger.Ledger` (`audit.ledger` in the data directory) that is never gossiped.

Each entry carries `at`, the time the node accepted it (ms). `at` never decreases along the log, so the events an
epoch digested are one contiguous range of entries, and an auditor can tell which epoch each entry belongs to. It is
the node's time (node.node_time), which does not follow a clock stepping over a day ahead at once. Each
also carries a salt, fresh random bytes (node.events), so that no one can guess an entry's bytes from its event:
digests' evidence roots, and the proofs exports give, are hashes of them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nacl.signing import SigningKey

from ledger import Checkpoint, Ed25519Signer, Ledger, LedgerError, StoredHashError, leaf_hash, log_origin

from .clock_hold import CLOCK_HOLD_FILE
from .events import (
    ENTRY_VERSION,
    SALT_SIZE,
    Event,
    InvalidEvent,
    NewerEntry,
    decode_entry,
    decode_salted_entry,
    encode_entry,
)
from .node_time import NodeTime

AUDIT_FILE = "audit.ledger"
AUDIT_LOG = "audit"  # the log name in its checkpoint origin, vouchnet/<network>/<org did>/audit

Clock = Callable[[], int]
_WAY_BACK = ("`vouchnet audit check` names every damaged entry, and a copy of the data directory taken before the "
             "damage is the way back")


def audit_origin(network: str, org_did: str) -> str:
    """The audit log's checkpoint origin (and key name): vouchnet/<network>/<org did>/audit."""
    return log_origin(network, org_did, AUDIT_LOG)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class DamagedEntry(LedgerError):
    """An entry inside the audit log, at `index`, that does not decode as an event, or whose bytes do not hash to the
    leaf hash stored for it: the message names it and what to do."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class Appended:
    """A batch of events durably in the audit log: entries [first, first + len(entries)), all accepted at `at`."""

    first: int
    at: int
    events: tuple[Event, ...]
    entries: tuple[bytes, ...] = field(repr=False)  # (their salts are shown to auditors only)


class AuditLog:
    """Appends events with a non-decreasing acceptance time; reads entries back; signs checkpoints; prunes."""

    def __init__(self, ledger: Ledger, *, clock: Clock = wall_clock_ms,
                 monotonic: Callable[[], float] = time.monotonic, hold_file: Path | None = None) -> None:
        """`hold_file`: where the node's time saves a hold of the clock (node.node_time), if anywhere."""
        self.ledger = ledger
        # the node's clock: what reported times are checked against (`now` may differ: node.node_time)
        self.clock = clock
        self.time = NodeTime(clock, monotonic, hold_file)
        self._floor = 0
        if ledger.size > ledger.pruned:  # (decoded here, not by `at`: `open` says what a last entry no event means)
            self._floor = decode_entry(ledger.entry(ledger.size - 1))[0]

    @classmethod
    def open(cls, data_dir: Path, *, clock: Clock = wall_clock_ms, monotonic: Callable[[], float] = time.monotonic,
             read_only: bool = False) -> AuditLog:
        """LedgerError, naming the file, if it is not a ledger or its last entry is not an event (another ledger);
        StoredHashError, naming `vouchnet audit check`, if its last entry's stored hash is not its hash.
        `read_only`: as Ledger.open's (the file must exist), and the hold of the clock is neither read nor saved
        (node.clock_hold: otherwise in `data_dir`)."""
        path = data_dir / AUDIT_FILE
        try:
            ledger = Ledger.open(path, read_only=read_only)
        except StoredHashError as error:  # the last entry, or its stored hash, changed on disk
            raise StoredHashError(f"{error}: `vouchnet audit check --dir {data_dir}` names every damaged entry and "
                                  "stored hash; a copy of the data directory taken before the damage is the way "
                                  "back") from None
        try:
            return cls(ledger, clock=clock, monotonic=monotonic,
                       hold_file=None if read_only else data_dir / CLOCK_HOLD_FILE)
        except NewerEntry as error:
            ledger.close()
            raise LedgerError(f"{path}: an audit log in entry version {error.version}, newer than this vouchnet reads "
                              f"({ENTRY_VERSION}): it was written by a later vouchnet; run that version, or restore "
                              "this node's own from a backup") from None
        except InvalidEvent as error:
            ledger.close()
            raise LedgerError(f"{path}: not an audit log: its last entry is not an event ({error}): another ledger "
                              "(records.ledger?) copied in its place? restore this node's own from a backup") from None

    def close(self) -> None:
        """Close the ledger, saving the hold of the clock as it stands (node.node_time: a restart goes on with it)."""
        self.time.save()
        self.ledger.close()

    @property
    def size(self) -> int:
        return self.ledger.size

    @property
    def latest(self) -> int:
        """The latest acceptance time or seal of the log (0 for an empty log): a time the node's clock has passed."""
        return self._floor

    def now(self) -> int:
        """The acceptance time the next batch would get: the node's time (node.node_time), never earlier than any
        entry or seal."""
        return self.time.now(self._floor)

    def seal(self, until: int) -> None:
        """From now on, entries get `at >= until`: nothing more is added to the epochs that end by `until`."""
        self._floor = max(self._floor, until)

    def append(self, events: Sequence[Event]) -> Appended:
        """Append events (durable when this returns) with one acceptance time, each with a fresh salt."""
        at = self.now()
        salts = secrets.token_bytes(SALT_SIZE * len(events))  # one read a batch: 0.24 us an event, 0.8 read singly
        entries = tuple(encode_entry(event, at, salts[i:i + SALT_SIZE])
                        for i, event in zip(range(0, len(salts), SALT_SIZE), events))
        first = self.ledger.append(entries)
        self._floor = at
        return Appended(first, at, tuple(events), entries)

    def at(self, index: int) -> int:
        """The acceptance time of entry `index` (its bytes must not be pruned), checked against its stored leaf hash
        (`checked`): DamagedEntry if it is no event, or not the bytes appended (a changed time may still decode)."""
        (leaf,) = self.ledger.stored_hashes(0, index, index + 1)
        return self.checked(index, self.ledger.entry(index), leaf)[0]

    def decoded(self, index: int, entry: bytes) -> tuple[int, Event, bytes | None]:
        """(at, event, salt) of `entry`, the bytes of entry `index` (node.events.decode_salted_entry); DamagedEntry,
        naming it, if they are no event: changed on disk (`open` decodes the last entry only)."""
        try:
            return decode_salted_entry(entry)
        except NewerEntry as error:
            raise DamagedEntry(f"{AUDIT_FILE}: entry {index}: {error}: written by a later vouchnet; run that "
                               "version", index=index) from None
        except InvalidEvent as error:
            raise DamagedEntry(f"{AUDIT_FILE}: entry {index}: not an audit entry ({error}): it is damaged; "
                               f"{_WAY_BACK}", index=index) from None

    def read(self, start: int, stop: int, page: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(index, bytes, stored leaf hash) of entries [start, stop) (unpruned), `page` of them read at once."""
        for first in range(start, stop, page):
            end = min(first + page, stop)
            yield from zip(range(first, end), self.ledger.entries(first, end), self.ledger.stored_hashes(0, first, end))

    def checked(self, index: int, entry: bytes, leaf: bytes) -> tuple[int, Event, bytes | None]:
        """`decoded`, of bytes that hash to `leaf`, the leaf hash the ledger stored for entry `index` as it appended
        it (RFC 9162, `read`): DamagedEntry, naming it, if they do not (`check_leaf`)."""
        decoded = self.decoded(index, entry)
        self.check_leaf(index, entry, leaf)
        return decoded

    @staticmethod
    def check_leaf(index: int, entry: bytes, leaf: bytes) -> None:
        """DamagedEntry, naming entry `index`, if its bytes `entry` do not hash to `leaf`, the leaf hash the ledger
        stored for it. So bytes changed on disk are refused though they still decode (a flipped bit in a salt or an
        agent's name): digests signed over them would be wrong, and an export's proofs of them would fail
        (node.audit_check names which of the two changed)."""
        if leaf_hash(entry) != leaf:
            raise DamagedEntry(f"{AUDIT_FILE}: entry {index}: its bytes do not hash to the leaf hash the ledger stores "
                               f"for it: one of them changed on disk; {_WAY_BACK}", index=index)

    def boundary(self, at: int, damaged: Callable[[DamagedEntry], None] | None = None) -> tuple[int, int]:
        """(first, last) about acceptance time `at`, by a binary search (`at` never decreases along the log): the
        unpruned entries before `first` were accepted before `at`, those from `last` on (to the size) at or after it,
        and those in between, none unless the search met damaged ones there, are damaged, their times unknown. Each
        entry read is checked (`at`: a time changed on disk may still decode), one a step, and the damaged ones read
        on past to the next intact one, each given to `damaged`: so no damage moves either boundary."""
        lo, hi = self.ledger.pruned, self.ledger.size
        last = hi  # entries [hi, last) are damaged; `last` is the size, or intact and accepted at or after `at`
        while lo < hi:
            mid = (lo + hi) // 2
            intact = self._next_intact(mid, hi, damaged)
            if intact is not None and intact[1] < at:
                lo = intact[0] + 1
            else:
                hi, last = mid, last if intact is None else intact[0]
        return lo, last

    def _next_intact(self, start: int, stop: int,
                     damaged: Callable[[DamagedEntry], None] | None) -> tuple[int, int] | None:
        """(index, acceptance time) of the first entry of [start, stop) that is not damaged, each damaged one before
        it given to `damaged`; None if all are."""
        for index in range(start, stop):
            try:
                return index, self.at(index)
            except DamagedEntry as error:
                if damaged is not None:
                    damaged(error)
        return None

    def checkpoint(self, key: SigningKey, origin: str, size: int | None = None) -> bytes:
        """A C2SP checkpoint of the log at `size` (default: now), signed by the org key under `origin`."""
        size = self.ledger.size if size is None else size
        return Checkpoint(origin, size, self.ledger.root(size)).sign([Ed25519Signer(origin, key)])
