"""Behaviour digests (DESIGN §3 `digest`, §7): at each epoch's end the node signs one digest per agent active in
it, counting the agent's events by outcome, category and high-risk subset, with `evidence_root` committing to them.

Epochs are the intervals [k * len, (k + 1) * len) of acceptance time `at` (ms since the Unix epoch, len =
`epoch_seconds`), so an epoch's events are one contiguous range of the audit log; a digest covers
[max(k * len, end of the previous digested epoch), (k + 1) * len), which only differs from the aligned interval
after `epoch_seconds` was changed. For an agent A and a digest's interval [epoch, epoch + len):

    evidence_root = ledger.tree_hash([e for e in audit-log entries, in log order,
                                      if e.agent == A and epoch <= e.at < epoch + len])

where each e is the exact entry bytes (node.events.encode_entry): the RFC 9162 Merkle tree hash over the same
leaves the audit log holds, so an auditor recomputes it from an export (node.audit_export) and the org can prove
any one event against it without revealing the others. Each entry holds a fresh random salt, so the root hides the
events, as the counts' DP noise is meant to: hashing the few events an agent could have had does not find it.

Durable and exactly once: the digested position (the end of the last digested epoch and the first audit entry
after it) is kept in `digests.db`; the open epochs are rebuilt on start from the audit log entries after it. An
epoch's row is written before its digests are issued and marked done after; a row found not done on start is
finished by the first `closing` after the start (so after the node's start-up sync, never at seqs it signed after
a copy of the data directory it was restored from) by issuing digests only for the agents that have none for it
in the records store; until then, their entries count as undigested. One whose entries hold a damaged one, met as
the start reads them or as that closing reads them again, is abandoned instead (Digester._abandon). Likewise an
epoch is never digested again for an agent whose digest of it is already stored: after a restore from an older copy
of the data directory, sync brings back digests issued after the copy, which digests.db does not know of.

With DP on (`dp_epsilon`), only noisy counts are published; the raw outcome counts of each digest are kept in
digests.db (`raw_counts`, written before the digests are signed), which never leaves the node, so that a restart
rebuilds the node's own first-hand evidence from what it saw, not from its noise (TrustService.replay); those of
the digests of an interrupted epoch, or of one open in the copy, that come back from peers after a restore are kept
again as they come, from its entries (Digester.on_returned).
"""

from __future__ import annotations

import gc
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from gossip.replica import Replica
from gossip.store import StoreError
from ledger import Frontier, LedgerError, leaf_hash
from ledger.disk_failure import open_failure
from ledger.sqlite_format import FileFormat, check, claim
from ledger.wal import use_wal
from ledger.writes_under_way import writing
from vouching import Counts, DigestBody, Record, load_stored
from vouching.bodies import CATEGORIES, OUTCOMES

from .audit_log import AUDIT_FILE, Appended, AuditLog, DamagedEntry, wall_clock_ms
from .dp import noisy_counts
from .events import Event
from .metrics import Registry
from .store_manifest import DIGESTS_FILE


class DigestStateError(Exception):
    """digests.db cannot be opened as one; the message names the file."""

_REPLAY_PAGE = 1000
_ISSUED_PAGE = 200  # our digests `rebuilding` decodes between yields (25-50 us each)
ISSUE_CHUNK = 1000  # digests signed and stored in one commit, between which the node's other tasks run
WAKE_SECONDS = 60.0  # the longest the digest service sleeps: each wake reads the node's time and closes what is due
_OUTCOME_INDEX = {name: i for i, name in enumerate(OUTCOMES)}
_CATEGORY_INDEX = {name: i for i, name in enumerate(CATEGORIES)}

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS epochs (
    start INTEGER PRIMARY KEY,   -- the digests' epoch (ms)
    end_ms INTEGER NOT NULL,     -- epoch + len
    first INTEGER NOT NULL,      -- audit-log entries [first, stop) were accepted in it
    stop INTEGER NOT NULL,
    store_mark INTEGER NOT NULL, -- the records store's size before its digests were issued
    done INTEGER NOT NULL        -- 1: all its digests issued; 0: not yet (the next closing finishes it); 2: abandoned,
                                 -- an entry of it damaged (Digester.closing): those it lacked never issued
);
-- The interrupted epoch, found at every start without reading a row per epoch digested (DigestState.unfinished).
CREATE INDEX IF NOT EXISTS epochs_unfinished ON epochs (start) WHERE done = 0;
CREATE TABLE IF NOT EXISTS raw_counts (
    epoch INTEGER NOT NULL,      -- the DP digest's epoch (ms)
    agent TEXT NOT NULL,
    outcomes TEXT NOT NULL,      -- raw counts in vouching.bodies.OUTCOMES order, comma-separated
    high_risk TEXT NOT NULL,
    PRIMARY KEY (epoch, agent)
);
"""
_DONE, _ABANDONED = 1, 2  # epochs.done (0: not yet)
FORMAT = FileFormat("a digest state file", 0x564E4447, 1, frozenset({"epochs", "raw_counts"}))  # "VNDG"
RawCounts = tuple[tuple[int, ...], tuple[int, ...]]  # (outcomes, high_risk), in OUTCOMES order


@dataclass(slots=True)
class Tally:
    """One agent's events in one epoch: the counts its digest states, and the tree of their entries, whose root is
    its evidence_root (also rebuilt by node.audit_check)."""

    outcomes: list[int] = field(default_factory=lambda: [0] * len(OUTCOMES))
    high_risk: list[int] = field(default_factory=lambda: [0] * len(OUTCOMES))
    categories: list[int] = field(default_factory=lambda: [0] * len(CATEGORIES))
    tree: Frontier = field(default_factory=Frontier)

    def add(self, event: Event, entry: bytes) -> None:
        self.count(event)
        self.tree.add(leaf_hash(entry))

    def count(self, event: Event) -> None:
        """Count `event`, leaving the tree to `add`."""
        outcome = _OUTCOME_INDEX[event.outcome]
        self.outcomes[outcome] += 1
        if event.high_risk:
            self.high_risk[outcome] += 1
        self.categories[_CATEGORY_INDEX[event.category]] += 1

    def raw(self) -> RawCounts:
        """The raw counts a DP digest of it keeps (DigestState.keep_raw)."""
        return tuple(self.outcomes), tuple(self.high_risk)


@dataclass(slots=True)
class _Epoch:
    """An epoch with events not yet digested: its audit-log range and its agents' tallies."""

    first: int
    stop: int
    agents: dict[str, Tally] = field(default_factory=dict)


class DigestState:
    """`digests.db`: one row per digested epoch (see the module docstring)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    def open(cls, data_dir: Path) -> DigestState:
        """Raises DigestStateError if the file is not a digest state file in this version's format."""
        try:
            db = sqlite3.connect(data_dir / DIGESTS_FILE, isolation_level=None)
            claim(db, data_dir / DIGESTS_FILE, FORMAT, DigestStateError)
            use_wal(db)
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            path = data_dir / DIGESTS_FILE
            raise DigestStateError(open_failure(path, error, f"{path}: not a digest state file ({error})")) from None
        return cls(db)

    @classmethod
    def open_readonly(cls, data_dir: Path) -> DigestState:
        """For reading beside a running node (the audit export); a missing file reads as no epochs. DigestStateError if
        the file is not a digest state file in this version's format."""
        path = data_dir / DIGESTS_FILE
        if not path.exists():
            db = sqlite3.connect(":memory:")
            db.executescript(_SCHEMA)
            return cls(db)
        db = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
        try:
            check(db, path, FORMAT, DigestStateError)
        except DigestStateError:
            db.close()
            raise
        return cls(db)

    def intervals(self, start: int, end: int) -> list[tuple[int, int]]:
        """The digested intervals [epoch, epoch + len) that overlap [start, end), in time order."""
        rows = self._db.execute(
            "SELECT start, end_ms FROM epochs WHERE start < ? AND end_ms > ? ORDER BY start", (end, start)
        ).fetchall()
        return [(a, b) for a, b in rows]

    def holding(self, index: int) -> tuple[int, int] | None:
        """(first entry, end in ms) of the digested interval that holds audit-log entry `index`; None if none does."""
        row = self._db.execute("SELECT first, end_ms FROM epochs WHERE first <= ? AND stop > ?",
                               (index, index)).fetchone()
        return None if row is None else (row[0], row[1])

    def close(self) -> None:
        self._db.close()

    def position(self) -> tuple[int, int]:
        """(end of the last digested epoch, first audit entry after it); (0, 0) before the first."""
        row = self._db.execute("SELECT end_ms, stop FROM epochs ORDER BY start DESC LIMIT 1").fetchone()
        return (0, 0) if row is None else (row[0], row[1])

    def last_store_mark(self) -> int:
        """The records store's size before the last digested epoch's digests were issued; 0 before the first."""
        row = self._db.execute("SELECT store_mark FROM epochs ORDER BY start DESC LIMIT 1").fetchone()
        return 0 if row is None else row[0]

    def unfinished(self) -> tuple[int, int, int, int, int] | None:
        """(start, end, first, stop, store_mark) of an epoch whose digests may not all have been issued."""
        return self._db.execute("SELECT start, end_ms, first, stop, store_mark FROM epochs WHERE done = 0").fetchone()

    def begin(self, start: int, end: int, first: int, stop: int, store_mark: int) -> None:
        with writing(DIGESTS_FILE):
            self._db.execute("INSERT INTO epochs VALUES (?, ?, ?, ?, ?, 0)", (start, end, first, stop, store_mark))

    def epochs(self) -> list[tuple[int, int, int, int, bool]]:
        """(start, end, first, stop, done) of every digested epoch, in time order: audit-log entries [first, stop)
        were accepted in [start, end), and done says all its digests were issued (not so of one abandoned)."""
        rows = self._db.execute("SELECT start, end_ms, first, stop, done FROM epochs ORDER BY start")
        return [(start, end, first, stop, done == _DONE) for start, end, first, stop, done in rows]

    def finish(self, start: int) -> None:
        with writing(DIGESTS_FILE):
            self._db.execute("UPDATE epochs SET done = ? WHERE start = ?", (_DONE, start))

    def abandon(self, start: int) -> None:
        """Mark the unfinished epoch beginning at `start` as never to be finished (Digester.closing)."""
        with writing(DIGESTS_FILE):
            self._db.execute("UPDATE epochs SET done = ? WHERE start = ?", (_ABANDONED, start))

    def keep_raw(self, epoch: int, counts: dict[str, RawCounts]) -> None:
        """Keep the raw counts of DP digests about to be signed for `epoch` (a second issue of one keeps its own), in
        one transaction: autocommitted, each row took an fsync of its own (0.3 s per chunk of 1000 agents)."""
        with writing(DIGESTS_FILE), self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO raw_counts VALUES (?, ?, ?, ?)",
                [(epoch, agent, _joined(outcomes), _joined(high)) for agent, (outcomes, high) in counts.items()],
            )

    def raw(self, epoch: int, agent: str) -> RawCounts | None:
        """The raw counts of our DP digest of `agent` for `epoch`; None if none was kept (DP off, or a digest
        issued before raw counts were kept). Raises DigestStateError for a damaged row."""
        row = self._db.execute("SELECT outcomes, high_risk FROM raw_counts WHERE epoch = ? AND agent = ?",
                               (epoch, agent)).fetchone()
        return None if row is None else _counts(epoch, agent, *row)

    def raw_reader(self) -> Callable[[int, str], RawCounts | None]:
        """`raw`, for the start-up replay (node.trust.TrustService.replay): see _RawByEpoch."""
        return _RawByEpoch(self)

    def _epoch_rows(self, epoch: int) -> dict[str, tuple[object, object]]:
        """agent -> (outcomes, high_risk) of the raw_counts rows of `epoch`, as stored."""
        rows = self._db.execute("SELECT agent, outcomes, high_risk FROM raw_counts WHERE epoch = ?", (epoch,))
        return {agent: (outcomes, high_risk) for agent, outcomes, high_risk in rows}


class _RawByEpoch:
    """DigestState.raw for a start-up replay, which asks for our digests in the order they were stored, an epoch's
    together: an epoch's rows are read in one query the first time it is asked for, and held until another epoch is
    (a query per row took 15-20 us, 17 s at 10^6 own DP digests; read so, a row takes 7 us, 4 of them checking its
    counts). An epoch asked for again after another (its digests that peers gave back after a restore, stored later)
    is read a row at a time: no row is read in bulk twice."""

    def __init__(self, state: DigestState) -> None:
        self._state = state
        self._epoch: int | None = None
        self._rows: dict[str, tuple[object, object]] = {}
        self._read: set[int] = set()

    def __call__(self, epoch: int, agent: str) -> RawCounts | None:
        if epoch != self._epoch:
            if epoch in self._read:
                return self._state.raw(epoch, agent)
            self._epoch, self._rows = epoch, self._state._epoch_rows(epoch)
            self._read.add(epoch)
        row = self._rows.get(agent)
        return None if row is None else _counts(epoch, agent, *row)


def _counts(epoch: int, agent: str, outcomes: object, high_risk: object) -> RawCounts:
    """The raw counts a raw_counts row keeps; DigestStateError naming the row if it is damaged."""
    outcome_counts, high_risk_counts = _split(outcomes), _split(high_risk)
    if outcome_counts is None or high_risk_counts is None:
        raise DigestStateError(
            f"{DIGESTS_FILE}: the raw counts of {agent:.80} for epoch {epoch} are damaged ({outcomes!r:.80}, "
            f"{high_risk!r:.80}; each must be {len(OUTCOMES)} comma-separated counts): restore the file from a copy, "
            f"or delete that row of raw_counts for the digest to count as published")
    return outcome_counts, high_risk_counts


def _joined(counts: Sequence[int]) -> str:
    return ",".join(map(str, counts))


def _split(text: object) -> tuple[int, ...] | None:
    """Counts kept by _joined, one per outcome (OUTCOMES); None if `text` is not such."""
    parts = text.split(",") if isinstance(text, str) else []
    if len(parts) != len(OUTCOMES) or not all(part.isascii() and part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


class Digester:
    """Tallies accepted events by epoch and agent (`observe`, an ingest listener) and issues the digests of the
    epochs that have ended (`close_due`). Synchronous; `DigestService` drives it on time."""

    def __init__(
        self,
        audit: AuditLog,
        replica: Replica,
        state: DigestState,
        metrics: Registry,
        *,
        epoch_ms: int,
        dp_epsilon: float | None = None,
        rng: random.Random | None = None,
        rebuild: bool = True,
    ) -> None:
        """Resume where digests.db says the digester stopped; the open epochs are rebuilt from the audit log at
        once, or with `rebuild` false, by `rebuilding`, which the caller runs through before using the digester."""
        if type(epoch_ms) is not int or epoch_ms < 1:
            raise ValueError(f"epoch_ms: must be a positive integer, got {epoch_ms!r}")
        self.audit, self.replica, self.state = audit, replica, state
        self.epoch_ms = epoch_ms
        self.dp_epsilon = dp_epsilon
        self._rng = rng or random.SystemRandom()  # DP noise must not be predictable
        self._open: dict[int, _Epoch] = {}
        self._issued = metrics.counter("digests_issued_total", "Digest records signed")
        self._epochs = metrics.counter("digest_epochs_total", "Epochs digested")
        self._seconds = metrics.gauge("digest_last_seconds", "Time the last epoch's digests took to sign and store")
        self.damaged_reads = metrics.counter(
            "audit_damaged_reads_total", "Reads of the audit log by the node, as it runs or as it starts, that met a "
            "damaged entry (one that no longer decodes, or no longer hashes to the leaf hash stored for it), each "
            "logged at ERROR naming it: the digests an interrupted epoch lacked are then never issued, a trust rebuild "
            "leaves the entry out, retention prunes no further")
        self.failures = metrics.counter("digest_failures_total", "Closings of the epochs due that could not sign or "
                                        "store their digests (a full disk, say), each try: tried again within a minute")
        metrics.collect("digest_open_agents", "Agents with events in epochs not yet digested",
                        lambda: sum(len(e.agents) for e in self._open.values()))
        metrics.collect("clock_held", "1 while the clock, stepped over a day ahead of the time the node has seen, is "
                        "held: acceptance times, digests and retention follow the time the node has seen (taken once "
                        "it has stayed so a day)", lambda: int(audit.time.held))
        metrics.collect("clock_behind_seconds", "How far the clock is behind the audit log's latest time (0 if it is "
                        "not), as when put back: acceptance times stay there and no epoch's digests are issued until "
                        "it catches up", lambda: max(0, audit.latest - audit.clock()) / 1000)
        # Finished by the first `closing`: signing waits for the start-up sync (node.daemon._take_back_own_records).
        self._interrupted = state.unfinished()
        # The raw counts of each agent's entries in `_interrupted` (`rebuilding` read them). Of each epoch `_abandon`
        # gave up after the trust engine counted its entries: how many rebuilds of the engine had read the undigested
        # events by then (`reread`), and those raw counts (`counts_entries`, `on_returned`).
        self._interrupted_raw: dict[str, RawCounts] = {}
        self._abandoned: dict[int, tuple[int, dict[str, RawCounts]]] = {}
        self._rereads = 0
        self.digested_until, self.undigested_from = state.position()
        if self.undigested_from > audit.size:
            raise DigestStateError(f"{DIGESTS_FILE}: digested up to audit-log entry {self.undigested_from}, but "
                                   f"{AUDIT_FILE} holds {audit.size}: restored from copies of different times? "
                                   f"Restore both from one copy")
        # (retention never prunes them: digests.db is older than the audit log)
        if (needed := self.needed_from) < audit.ledger.pruned:
            raise DigestStateError(f"{DIGESTS_FILE}: needs the audit-log entries from {needed} on (not yet digested), "
                                   f"but {AUDIT_FILE} keeps those from {audit.ledger.pruned} on: restored from copies "
                                   f"of different times? Restore both from one copy")
        # Our digests stored from here on are looked for before an epoch is issued: after a restore from an older
        # copy of the data directory, sync brings back digests that this digests.db never saw issued.
        self._store_mark = state.last_store_mark()
        audit.seal(self.digested_until)
        audit.now()  # the node's first reading of its clock, against the log's floor (a new node's is taken)
        # The entries decoded to rebuild the open epochs, kept for the start-up replay's `undigested` only: decoding
        # is most of either's time (benchmarks/startup.py --events). Dropped by the first `undigested` or `closing`.
        self._decoded_at_start: list[tuple[int, int, Event]] = []
        # Likewise the (at, event)s of the interrupted epoch's entries, as `rebuilding` read them.
        self._interrupted_at_start: list[tuple[int, Event]] | None = None
        # Our digests since the last epoch's mark, as `rebuilding` read them for `undigested`: (mark, the store's size
        # as the read began, their (epoch, agent)s). Dropped by the first `_issued_since`.
        self._issued_at_start: tuple[int, int, set[tuple[int, str]]] | None = None
        if rebuild:
            for _ in self.rebuilding():
                pass

    @property
    def needed_from(self) -> int:
        """The first audit-log entry digests may still be made of: of the epochs not yet digested, or of one whose
        digests a stop cut short (`closing` finishes it); retention prunes none from here on."""
        return self.undigested_from if self._interrupted is None else min(self.undigested_from, self._interrupted[2])

    # --- tallying ---------------------------------------------------------------------------------------

    def observe(self, batch: Appended) -> None:
        """Count an appended batch into its epoch (the ingest listener)."""
        self._count(self._open, self.digested_until, batch.at, batch.first, batch.events, batch.entries)

    def _count(self, epochs: dict[int, _Epoch], floor: int, at: int, first: int, events: Sequence[Event],
               entries: Sequence[bytes]) -> None:
        if at < floor:
            raise AssertionError(f"bad math in Digester: an entry at {at} lands in an epoch digested up to {floor}")
        aligned = at - at % self.epoch_ms
        epoch = epochs.get(aligned)
        if epoch is None:
            epoch = epochs[aligned] = _Epoch(first, first)
        epoch.stop = first + len(entries)
        agents = epoch.agents
        for event, entry in zip(events, entries):
            tally = agents.get(event.agent)
            if tally is None:
                tally = agents[event.agent] = Tally()
            tally.add(event, entry)

    def rebuilding(self) -> Iterator[None]:
        """Read the interrupted epoch's entries (`_reading_interrupted`), and rebuild the open epochs from the bytes of
        the audit-log entries not yet digested, yielding after each _REPLAY_PAGE of them, so that a caller can let a
        signal stop the start between pages (83,000 entries took 3-4 s on a loaded machine); then read our digests
        since the last epoch's mark for `undigested`, yielding after each _ISSUED_PAGE of them. It only reads, but
        for abandoning an interrupted epoch one of whose entries is damaged. DamagedEntry at a damaged entry of the
        open epochs: their digests are yet to be signed over them, and the trust replay to count them."""
        yield from self._reading_interrupted()
        for n, (index, at, event, entry) in enumerate(self._replay(self.undigested_from, self.audit.size), 1):
            self._count(self._open, self.digested_until, at, index, (event,), (entry,))
            self._decoded_at_start.append((index, at, event))
            if n % _REPLAY_PAGE == 0:
                yield
        issued: set[tuple[int, str]] = set()
        size = self.replica.store.size  # before the read: a record stored during it makes `undigested` read again
        yield from self._reading_issued(self._store_mark, issued)
        self._issued_at_start = (self._store_mark, size, issued)

    def _reading_interrupted(self) -> Iterator[None]:
        """Decode the interrupted epoch's entries for `undigested`, and count each agent's for `counts_entries` and
        `on_returned`, yielding after each _REPLAY_PAGE of them. Meeting a damaged one, abandon the epoch
        (`_abandon`) as a running node's closing would, before the trust replay counts any of its entries: the start
        goes on, its replay counting our digests of the epoch and none of its entries, as every later start's does."""
        if self._interrupted is None:
            return
        start, _, first, stop, _ = self._interrupted
        read: list[tuple[int, Event]] = []
        tallies: dict[str, Tally] = {}
        try:
            for n, (_, at, event, _) in enumerate(self._replay(first, stop), 1):
                read.append((at, event))
                tally = tallies.get(event.agent)
                if tally is None:
                    tally = tallies[event.agent] = Tally()
                tally.count(event)
                if n % _REPLAY_PAGE == 0:
                    yield
        except DamagedEntry as error:
            self._abandon(start, error, counted=False)
            return
        self._interrupted_at_start, self._interrupted_raw = read, {a: t.raw() for a, t in tallies.items()}

    def _replay(self, start: int, stop: int, *, skip_damaged: bool = False) -> Iterator[tuple[int, int, Event, bytes]]:
        """(index, at, event, entry) of audit-log entries [start, stop), each checked against its stored leaf hash
        (AuditLog.checked): DamagedEntry at one damaged, or with `skip_damaged`, it is logged, counted and left out."""
        for index, entry, leaf in self.audit.read(start, stop, _REPLAY_PAGE):
            try:
                at, event, _ = self.audit.checked(index, entry, leaf)
            except DamagedEntry as error:
                if not skip_damaged:
                    raise
                self.damaged_reads.inc()
                log.error("an undigested event left out of the trust engine's rebuild: %s", error)
                continue
            yield index, at, event, entry

    def undigested(self, *, skip_damaged: bool = False) -> Iterator[tuple[int, Event]]:
        """(time, event) of the audit-log entries no digest of ours counts yet, decoded (the trust replay's
        first-hand evidence): those of the epochs still open and of an epoch interrupted while issuing, but those of
        agents with a digest of ours for their epoch in the records store (the interrupted epoch's issued agents;
        after a restore of an older digests.db, the epochs since the copy). Lazily, so that the replay's yields
        come between them (a list of 20,833 open entries took 0.3-0.4 s on the trio thread at load 7-8). A damaged
        entry raises DamagedEntry; with `skip_damaged`, for a rebuild while the node runs (`reread`),
        it is logged, counted (vouchnet_audit_damaged_reads_total) and left out."""
        issued = self._issued_since(self._store_mark)  # (the interrupted epoch's row is the last: its mark)
        if self._interrupted is not None:
            start = self._interrupted[0]
            yield from ((at, event) for at, event in self._interrupted_entries(skip_damaged)
                        if (start, event.agent) not in issued)
        for at, event in self._open_entries(skip_damaged):
            if (self._digest_epoch(at - at % self.epoch_ms), event.agent) not in issued:
                yield at, event

    def reread(self) -> Iterator[tuple[int, Event]]:
        """`undigested`, damaged entries left out, for a rebuild of the trust engine while the node runs (TrustService
        `reread`, holding the ingest lock). The engine it builds holds no entry of an epoch abandoned before this read,
        as a restart's holds none: `counts_entries` answers for it asked with the count of these reads so far, this
        one included, which the trust service keeps likewise."""
        self._rereads += 1
        return self.undigested(skip_damaged=True)

    def _open_entries(self, skip_damaged: bool) -> Iterator[tuple[int, Event]]:
        """(at, event) of audit-log entries [undigested_from, size): those decoded at start, then the rest."""
        decoded, self._decoded_at_start = self._decoded_at_start, []
        stop = self.undigested_from
        for index, at, event in decoded:
            if index >= self.undigested_from:
                yield at, event
                stop = index + 1
        for _, at, event, _ in self._replay(stop, self.audit.size, skip_damaged=skip_damaged):
            yield at, event

    def _interrupted_entries(self, skip_damaged: bool) -> Iterable[tuple[int, Event]]:
        """(at, event) of the interrupted epoch's entries: as `rebuilding` read them, the first time; then again."""
        read, self._interrupted_at_start = self._interrupted_at_start, None
        if read is not None:
            return read
        assert self._interrupted is not None
        _, _, first, stop, _ = self._interrupted
        return ((at, event) for _, at, event, _ in self._replay(first, stop, skip_damaged=skip_damaged))

    def counts_entries(self, epoch: int, agent: str, rereads: int = 0) -> bool:
        """Whether audit-log entries of `agent` for our digest epoch `epoch` count as undigested (`undigested`, and
        `observe` since) in the trust engine built from the read of them after `rereads` rebuilds' reads (`reread`;
        0: the start's): the open epochs or the interrupted one hold entries of it for that epoch. A digest of ours
        for it coming back from peers (a restore from an older copy) would count those events a second time. So do
        those of an interrupted epoch `_abandon` gave up after that read counted them, of every agent: the engine
        holds what it read of them, and an engine read after the abandon, a rebuild's or the next start's, reads
        none (the digests count in it instead, as they come back or as its replay reads them)."""
        if self._interrupted is not None and self._interrupted[0] == epoch and agent in self._interrupted_raw:
            return True
        if (abandoned := self._abandoned.get(epoch)) is not None:
            return abandoned[0] >= rereads
        return self._open_tally(epoch, agent) is not None

    def on_returned(self, records: list[Record]) -> None:
        """Replica returned listener: keep the raw counts of our DP digests coming back from peers (a restore from an
        older copy) of the interrupted epoch, of one abandoned after the trust engine counted its entries, or of an
        epoch still open (open in the copy, closed by the node after it), from those entries, as their issue kept
        them in the newer digests.db: the trust engine counts the entries now (`counts_entries`), and the next start
        counts the digests by these, not by their noise. (An open epoch's digest comes back once the epoch has ended,
        the node having signed it after: no entry of it comes after its raw counts are kept.)"""
        kept: dict[int, dict[str, RawCounts]] = {}
        for record in records:
            body = record.body
            if isinstance(body, DigestBody) and body.dp_epsilon is not None:
                if (raw := self._entries_raw(body.epoch, body.agent)) is not None:
                    kept.setdefault(body.epoch, {})[body.agent] = raw
        for epoch, rows in kept.items():
            self.state.keep_raw(epoch, rows)

    def _entries_raw(self, epoch: int, agent: str) -> RawCounts | None:
        """The raw counts of `agent`'s audit-log entries for our digest epoch `epoch` that count as undigested
        (`counts_entries`): of the interrupted epoch or one abandoned after the trust engine counted them, as the
        start read them; of an open epoch, as tallied. None if there are none."""
        if self._interrupted is not None and self._interrupted[0] == epoch:
            return self._interrupted_raw.get(agent)
        if epoch in self._abandoned:
            return self._abandoned[epoch][1].get(agent)
        tally = self._open_tally(epoch, agent)
        return None if tally is None else tally.raw()

    def _open_tally(self, epoch: int, agent: str) -> Tally | None:
        """`agent`'s tally in the open epoch whose digests are of `epoch` (`_digest_epoch`); None if none holds it."""
        for aligned, tallied in self._open.items():
            if self._digest_epoch(aligned) == epoch and (tally := tallied.agents.get(agent)) is not None:
                return tally
        return None

    def _digest_epoch(self, aligned: int) -> int:
        """The `epoch` of the digests of the open epoch aligned at `aligned`, as `closing` issues them: it starts no
        earlier than the end of the last epoch digested (which an earlier, longer epoch length may have set)."""
        return max(aligned, self.digested_until)

    # --- closing epochs ---------------------------------------------------------------------------------

    def next_end(self, now: int) -> int:
        """When the epoch holding `now` ends (ms)."""
        return now - now % self.epoch_ms + self.epoch_ms

    def close_due(self, now: int) -> list[Record]:
        """Issue the digests of every epoch that ended by `now`, stamped `now`; the records, in issue order."""
        return [record for chunk in self.closing(now) for record in chunk]

    def closing(self, now: int) -> Iterator[list[Record]]:
        """Issue the digests of every epoch that ended by `now` (the node's time: node.node_time), stamped `now`, so
        never ahead of it, yielding each chunk of at most ISSUE_CHUNK
        records once stored, so that a caller can let other work run between chunks (DigestService does); and an
        empty chunk after each page of an interrupted epoch's entries, read before its digests are issued.

        An epoch left between chunks (the node stopping) is finished by the first call after the next start: its
        row says so. One whose digests or row could not be written (a full disk: the error is raised) is finished by
        the next call, as after a restart, or closed by it if its row was not written either. One whose entries,
        read back to finish it, hold a damaged one is abandoned (`_abandon`), and the epochs after it closed.
        """
        self._decoded_at_start, self._interrupted_at_start = [], None
        if (interrupted := self._interrupted) is not None:
            try:
                yield from self._finish_interrupted(*interrupted, now)
            except DamagedEntry as error:
                self._abandon(interrupted[0], error, counted=True)
            self._interrupted, self._interrupted_raw = None, {}
        while self._open and (aligned := min(self._open)) + self.epoch_ms <= now:
            end = aligned + self.epoch_ms
            self.audit.seal(end)  # what is accepted from now on belongs to a later epoch
            epoch = self._open.pop(aligned)
            start = self._digest_epoch(aligned)
            began = time.perf_counter()
            issued = self._issued_agents(start, self._store_mark)  # none, unless restored (see __init__)
            row = (start, end, epoch.first, epoch.stop, self.replica.store.size)
            try:
                self.state.begin(*row)
            except BaseException:
                self._open[aligned] = epoch
                raise
            try:
                agents = sorted(agent for agent in epoch.agents if agent not in issued)
                yield from self._issue_chunks(start, end, {a: epoch.agents[a] for a in agents}, now)
                self.state.finish(start)
            except BaseException:
                self._interrupted = row
                self._interrupted_raw = {a: t.raw() for a, t in epoch.agents.items()}
                raise
            self.digested_until, self.undigested_from = end, epoch.stop
            self._store_mark = self.replica.store.size
            self._record(start, len(agents), time.perf_counter() - began)

    def _issue_chunks(self, start: int, end: int, agents: dict[str, Tally], ts: int) -> Iterator[list[Record]]:
        """Issue the digests of `agents`, in their order, ISSUE_CHUNK at a time, stamped `ts`."""
        names = list(agents)
        for first in range(0, len(names), ISSUE_CHUNK):
            yield self._issue(start, end, {a: agents[a] for a in names[first:first + ISSUE_CHUNK]}, ts)

    def _issue(self, start: int, end: int, agents: dict[str, Tally], ts: int) -> list[Record]:
        """Sign and store the digests of `agents`, in their order, stamped `ts` (with DP, their raw counts kept
        first)."""
        if self.dp_epsilon is not None:
            self.state.keep_raw(start, {a: t.raw() for a, t in agents.items()})
        with _cyclic_gc_paused():
            return self.replica.issue_digests([self._body(agent, tally, start, end) for agent, tally in agents.items()],
                                             ts=ts)

    def _body(self, agent: str, tally: Tally, start: int, end: int) -> DigestBody:
        outcomes, high_risk, categories = tally.outcomes, tally.high_risk, tally.categories
        if self.dp_epsilon is not None:
            noisy = noisy_counts(dict(zip(OUTCOMES, outcomes)), dict(zip(OUTCOMES, high_risk)),
                                 dict(zip(CATEGORIES, categories)), epsilon=self.dp_epsilon, rng=self._rng)
            outcomes = [noisy.outcomes[name] for name in OUTCOMES]
            high_risk = [noisy.high_risk[name] for name in OUTCOMES]
            categories = [noisy.categories[name] for name in CATEGORIES]
        return DigestBody(agent, start, end - start, Counts(tuple(zip(OUTCOMES, outcomes))),
                          Counts(tuple(zip(CATEGORIES, categories))), Counts(tuple(zip(OUTCOMES, high_risk))),
                          sum(outcomes), tally.tree.root(), self.dp_epsilon)

    def _record(self, start: int, count: int, seconds: float) -> None:
        self._issued.inc(count)
        self._epochs.inc()
        self._seconds.set(seconds)
        log.info("digests issued", extra={"fields": {"epoch": start, "agents": count, "seconds": round(seconds, 3)}})

    def _issued_agents(self, start: int, mark: int) -> set[str]:
        """The agents of our digests for the epoch beginning at `start` stored at index `mark` or later."""
        return {agent for epoch, agent in self._issued_since(mark) if epoch == start}

    def _issued_since(self, mark: int) -> set[tuple[int, str]]:
        """(epoch, agent) of our digests stored at index `mark` or later (`_reading_issued`): as `rebuilding` read
        them, if it read them since `mark` and no record has been stored since (the store only grows); else at
        once."""
        read, self._issued_at_start = self._issued_at_start, None
        if read is not None and read[:2] == (mark, self.replica.store.size):
            return read[2]
        done: set[tuple[int, str]] = set()
        for _ in self._reading_issued(mark, done):
            pass
        return done

    def _reading_issued(self, mark: int, into: set[tuple[int, str]]) -> Iterator[None]:
        """Add (epoch, agent) of our digests stored at index `mark` or later to `into`, under any key of our org (a
        rotation may come between an interrupted epoch and the start that finishes it, DESIGN §2), reading and
        decoding _ISSUED_PAGE of them between yields: a start's read of the last epoch's, a digest an agent, held
        the loop for 27-58 ms at 1,000 (benchmarks/startup.py), and would for seconds at 10^5."""
        store = self.replica.store
        for key in self.replica.succession.keys(self.replica.did):
            cursor = mark - 1
            while rows := store.query(issuer=key, kind="digest", after=cursor, limit=_ISSUED_PAGE):
                for _, raw in rows:
                    body = load_stored(raw).body
                    if isinstance(body, DigestBody):
                        into.add((body.epoch, body.agent))
                cursor = rows[-1][0]
                yield
                if len(rows) < _ISSUED_PAGE:
                    break

    def _abandon(self, start: int, error: DamagedEntry, *, counted: bool) -> None:
        """Leave the interrupted epoch beginning at `start` unfinished for good, `error` having met one of its entries
        damaged: no digest is signed over evidence that cannot be read (any agent lacking one may be the damaged
        entry's), and digests.db says so, for the next start not to try again. Logged and counted once: the node
        runs on, and digests the epochs after it. `counted`: the trust engine counts the epoch's undigested entries
        (the start's replay read them), so that `counts_entries` answers for it from now on, for the engines read
        before now."""
        self.state.abandon(start)
        if counted:
            self._abandoned[start] = (self._rereads, self._interrupted_raw)
        self._interrupted, self._interrupted_raw, self._interrupted_at_start = None, {}, None
        self.damaged_reads.inc()
        log.error("the digests an interrupted epoch lacked are not issued, and never will be: %s", error,
                  extra={"fields": {"epoch": start}})

    def _finish_interrupted(self, start: int, end: int, first: int, stop: int, store_mark: int,
                            ts: int) -> Iterator[list[Record]]:
        """Issue what an epoch interrupted mid-issue still lacks, a chunk at a time: digests for agents that have none
        for it (the start-up sync may have brought back some the node issued after a copy it was restored from).
        Its entries are read first, with an empty chunk after each _REPLAY_PAGE of them: the node finishes it as it
        starts, on the trio thread, and a signal stops it between pages."""
        done = self._issued_agents(start, store_mark)
        # Its entries as the row says, not by the epoch length configured now: that may have changed meanwhile.
        missing: dict[str, Tally] = {}
        for n, (_, _, event, entry) in enumerate(self._replay(first, stop), 1):
            if event.agent not in done:
                missing.setdefault(event.agent, Tally()).add(event, entry)
            if n % _REPLAY_PAGE == 0:
                yield []
        yield from self._issue_chunks(start, end, dict(sorted(missing.items())), ts)
        self.state.finish(start)
        log.warning("finished an interrupted epoch", extra={"fields": {"epoch": start, "issued": len(missing),
                                                                        "already": len(done)}})


class DigestService:
    """Closes each epoch when it ends by the node's time (and, on start, those that ended while the node was down),
    holding the ingest's `write_lock` meanwhile, so that no batch is being appended as its epoch closes. It wakes by
    `clock` (a node's time stuck at the floor, the clock stepped back, would wake it at once again and again), and
    after WAKE_SECONDS at most: each wake reads the node's time, so that an idle node finds a step of its clock, or
    the end of a hold (node.node_time), within that time; while the clock is held an epoch closes that late at most.
    (node.hold_saver saves the hold.)"""

    def __init__(self, digester: Digester, write_lock: trio.Lock, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.digester = digester
        self.write_lock = write_lock
        self._clock = clock

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._close_due()
        task_status.started()
        while True:
            now = self._clock()
            await trio.sleep(min(self.digester.next_end(now) - now, WAKE_SECONDS * 1000) / 1000)
            await self._close_due()

    async def _close_due(self) -> None:
        """Close the epochs due. One that cannot be written (a full disk) is logged and counted, and tried again at
        the next wake, within WAKE_SECONDS: the node runs on, and a restart would meet the same disk."""
        async with self.write_lock:
            try:
                for _ in self.digester.closing(self.digester.audit.now()):
                    await trio.sleep(0)  # the API and gossip run between chunks; ingest waits for the lock
            except (LedgerError, StoreError, sqlite3.Error) as error:
                log.error("digests not issued (%s); tried again within a minute", error)
                self.digester.failures.inc()


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Hold off the cycle collector while a chunk of digests is signed and stored (synchronous, ISSUE_CHUNK
    records, tens of milliseconds). Every object the chunk allocates outlives it, so collections in between only
    traverse the heap again and again: 10-30% of the time to sign an epoch's digests (benchmarks/telemetry.py)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
