"""The node's trust engine, kept current (DESIGN.md §6): accepted records and first-hand events in as they come,
a periodic full recompute off the trio loop, and every score or tier change out to `/v1/stream`.

On start the engine is rebuilt from what is durable: the accepted records, this node's own digests as its
first-hand evidence of past epochs, and the raw events no digest of ours counts yet (node.digests.Digester
.undigested). What the records make of it is loaded from engine.snapshot where that is usable (node.engine_snapshot),
and only the records after it replayed (every record, without one); the snapshot is written at a start that
replayed SNAPSHOT_AFTER records or more, by a rebuild (below) of as many, and brought forward while the node runs
(`_keep_snapshot`). With
differential privacy on, an own digest counts by the raw counts kept for it in digests.db, where kept, not by its
noise (`replay`). Restored from an older
copy of its data directory, the node takes back from its peers the digests it signed since, and counts them at once
as replay would (`on_returned`).

Keys linked by a rotation are one org (DESIGN.md §2, vouching.succession): the engine knows each org by its first
key, this node's own org and the configured roots included, and this node's digests under any key of its org are
its own. A link that joins a key the engine already knew as an org (a vouch named it before its rotation arrived)
moves what named it onto the org (TrustEngine.merge_org) and brings the next recompute forward. A link that makes
this node's own key a later key of another (after `vouchnet key adopt` the successor's first record comes back from
peers) changes which org is the node's own, which no merge can do: the engine is rebuilt as a start would build it
and swapped in (`_rebuild`), a TURN_S of work at a time, the old one serving meanwhile and emptied likewise after, once
no recompute holds it; engine.snapshot, which names the org's keys before the link and is of no use since, is
captured from it anew.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import trio

from gossip.replica import Replica
from vouching import DigestBody, Record
from vouching.batch import ScoreTable
from vouching.bodies import OUTCOMES
from vouching.engine_state import capture, capturing as capture_in_chunks, letting_go
from vouching.evidence import Outcomes
from vouching.explanation import Score
from vouching.feed import feed_record, outcomes_of
from vouching.policy import Decision, Policy, decide
from vouching.scoring import TrustEngine
from vouching.succession import Link
from vouching.tiers import tier_of

from . import engine_snapshot
from .audit_log import Appended, wall_clock_ms
from .events import Event
from .ingest import feed_first_hand
from .metrics import Registry
from .stream import Broadcaster

log = logging.getLogger(__name__)
T = TypeVar("T")
# How soon after an org-level change (an org vouch, its revocation, an equivocator flagged: each may move every
# agent's score) the engine is recomputed and the changes announced; a burst of such records makes one recompute.
PROMPT_RECOMPUTE_S = 1.0
MAX_ASKED_UNKNOWN = 100_000  # agents asked about that the engine holds nothing on, remembered to announce their first
# change (reads need no token: whoever reaches the API could otherwise grow this without bound); the oldest go first
# The raw (outcomes, high_risk) counts, in OUTCOMES order, of our DP digest of an agent for an epoch, if kept.
RawLookup = Callable[[int, str], tuple[Sequence[int], Sequence[int]] | None]
# Whether audit-log entries of an agent for an epoch of our digests count as first-hand evidence already, in the
# engine built from the undigested events read after that many rebuilds' reads of them (node.digests.Digester).
EntriesLookup = Callable[[int, str, int], bool]
# Scores are read at the clock's whole second: the engine's cache serves reads at the `now` it was filled at only
# (a score is exact, so it is not decayed from a cached total), and a second is nothing to decays of hours and days.
SCORE_STEP_MS = 1000
MAX_LISTED_ISSUERS = 64  # org keys a check answer lists (listed_issuers): 64 did:keys, 3.5 KiB
MAX_LISTED_SCOPES = 64  # scoped tools an answer or a stream event lists (listed_scopes): 64 of 128 characters, 8 KiB
# Seconds of work `replaying` and `_bring_snapshot_forward` do between yields to the loop, measured (_Turn): a count
# of records varies with them and the machine's load (1,000 records took 0.08 s, 0.25-0.38 s at load 8 at 10^6).
# Another task may wait two turns (trio runs a batch's runnable tasks in either order): at 0.02, a bring-forward's
# longest stall was 45-61 ms with no full collection, 25-31 ms at 0.01 (benchmarks/snapshot_forward.py --flood 0).
TURN_S = 0.01
NO_FULL_COLLECTION = 2**31 - 1  # the oldest generation's threshold in `_full_collections_held`: never reached
# Most records a round of the rebuild after `key adopt` feeds at once, the loop waiting (_feed_stored): 0.16 s quiet,
# some 0.7 s at load 8, by the figures above.
AT_ONCE_MAX = 2_000
ANNOUNCE_CHUNK = 256  # agents whose change is announced between two checkpoints after a recompute
# engine.snapshot is written once this many records, or an eighth (1 / SNAPSHOT_SHARE) of those it covers if more, are
# not in it (a start replays about 10^4 records a second): at a start that replayed them, or by `_keep_snapshot`,
# which looks every SNAPSHOT_CHECK_S and feeds a copy of the snapshot's engine the records since, a TURN_S at a time.
SNAPSHOT_AFTER = 10_000
SNAPSHOT_SHARE = 8
SNAPSHOT_CHECK_S = 60.0
# With no usable engine.snapshot, a running node makes one from no records while the store holds at most this many
# (a node that has not written its first yet): feeding a second engine all of them on the loop took ~100 s at 10^6.
# Past it, the next start writes one, as it replays every record anyway.
SNAPSHOT_FROM_NO_RECORDS = 10 * SNAPSHOT_AFTER


class Checked(NamedTuple):
    """A check's answer (TrustService.check)."""

    decision: Decision
    score: Score  # the agent's, with the vouches scoped to the tool: what it was decided on but for an issuer that
    # does not operate the agent (decided on the cold start)
    scopes: tuple[str, ...]  # the agent's scoped tools
    issuers: tuple[str, ...]  # the org keys whose agent credentials stand for the agent (_credential_issuers)


class TrustService:
    """Scores from this node's point of view, at the clock's whole second (SCORE_STEP_MS); call `score`, `check`,
    `org`, `orgs` from the trio thread."""

    def __init__(
        self,
        replica: Replica,
        *,
        roots: Iterable[str],
        policy: Policy,
        broadcaster: Broadcaster,
        metrics: Registry,
        recompute_interval: float,
        epoch_ms: int,
        clock: Callable[[], int] = wall_clock_ms,
        snapshot_dir: Path | None = None,
    ) -> None:
        """`snapshot_dir`: where engine.snapshot is read and written (None: nowhere, every start replays all)."""
        self.replica = replica
        self.policy = policy
        self._roots = tuple(roots)
        self._epoch_ms = epoch_ms  # the digester's: the node's observations count as its digests of their epochs
        self.engine = self._new_engine()
        self._snapshot_dir = snapshot_dir
        self._snapshot_covers = 0  # records engine.snapshot covers, as far as this service knows
        self.snapshot_written = trio.Event()  # set as engine.snapshot is written, then replaced: a waiter checks first
        self._replayed: engine_snapshot.Snapshot | None = None  # captured at the start or a rebuild, to write
        self._captured = trio.Event()  # ... by a rebuild: `_keep_snapshot` writes it now
        self._loaded: int | None = None  # records engine.snapshot covered, once `load_snapshot` loaded it
        self._raw: RawLookup = lambda epoch, agent: None
        self._reread: Callable[[], Iterable[tuple[int, Event]]] = tuple  # the undigested events, again (`_rebuild`)
        self._rereads = 0  # calls of `_reread` so far (the last one's events built the engine `_mirror` is)
        self._engine_reads = 0  # calls of it up to the one whose events built the engine serving (0: the start's)
        self._ingest_lock = trio.Lock()  # held around every audit-log append and epoch close (`replaying`)
        self._own_org_moved = trio.Event()  # this node's key joined an earlier key's org: `_rebuild` is due
        self.own_org_swapped = trio.Event()  # set as `_rebuild` swaps in the engine of that org, then replaced (so)
        self._rebuilt: TrustEngine | None = None  # the engine `_rebuild` is building, told of links meanwhile
        self._mirror: TrustEngine | None = None  # ... once it caught up with the store: told of records and events
        self._held_links: list[Link] | None = None  # links for it, held while it is captured
        self._swapped = False  # `_rebuild` swapped in an engine whose changes no recompute has begun to announce since
        self._lent = _Lent()  # engines a recompute holds (`_recomputed`): `_rebuild` empties the one it swaps out after
        self._broadcaster = broadcaster
        self._interval = recompute_interval
        self._clock = lambda: clock() // SCORE_STEP_MS * SCORE_STEP_MS
        self._org_changed = trio.Event()
        # Agents records touched while an org-level change awaited its prompt recompute, which announces them: read at
        # once, each would rerun PageRank over every org vouch (the change's reputation refresh), so that an org
        # inside the horizon vouching for fresh keys between its records made the node's work per record grow with
        # the keys (quadratic in them; benchmarks/score_attacks.py).
        self._deferred: dict[str, None] = {}
        # agent -> (score, tier, scoped tools, operating orgs) last published or served
        self._known: dict[str, tuple[int, str, tuple[str, ...], tuple[str, ...]]] = {}
        self._asked_unknown: dict[str, None] = {}  # those of _known only a read put there, oldest first
        self._requests = metrics.counter("score_requests_total", "Score and check requests answered", ["kind"],
                                         ("score", "check"))
        metrics.collect("agents_known", "Agents the trust engine holds evidence or vouches for",
                        lambda: len(self.engine.agents()))
        metrics.collect("engine_snapshot_records", "Records engine.snapshot covers (0: none usable, and a start "
                        "replays every record). It is brought forward (looked at each minute) once "
                        f"{SNAPSHOT_AFTER:,} records, or 1/{SNAPSHOT_SHARE} of those it covers if more, are not in "
                        f"it, so a node of fewer than {SNAPSHOT_AFTER:,} records has none: vouchnet_ledger_size "
                        f"above it by over twice that gap (max({SNAPSHOT_AFTER}, this / {SNAPSHOT_SHARE})) means its "
                        "rewrites fail", lambda: self._snapshot_covers)
        self._snapshot_failures = metrics.counter("engine_snapshot_write_failures_total", "Writes of engine.snapshot "
                                                  "that failed (logged): a start replays the records it lacks")

    def replay(self, undigested: Iterable[tuple[int, Event]], raw: RawLookup = lambda epoch, agent: None) -> None:
        """`replaying` at once, then its full recompute on this thread."""
        for _ in self.replaying(undigested, raw):
            pass
        self.engine.recompute(now=self._clock())

    def replaying(self, undigested: Iterable[tuple[int, Event]], raw: RawLookup = lambda epoch, agent: None, *,
                  reread: Callable[[], Iterable[tuple[int, Event]]] = tuple,
                  ingest_lock: trio.Lock | None = None) -> Iterator[Capture | None]:
        """Rebuild the engine from the store, the digests of every key of our org (as first-hand), and the raw
        events no digest of ours counts yet; from here on, follow the replica's rotations (`_relink`). Yields after
        each TURN_S of work, so that a caller can let a signal stop the start between turns (at 10^6 stored records a
        start took 30.8 s replaying every record, 2.53 s from an engine.snapshot of them all: README,
        benchmarks/startup.py). A DP digest of ours counts by its raw counts, `raw(epoch, agent)`
        (node.digests.DigestState.raw_reader), where kept: its published counts carry noise, which would come back
        as events the node never saw. Where engine.snapshot is due, it yields once a Capture of the records'
        engine, before the events, for the caller to run in a worker thread (the node's start does). The full
        recompute that completes the replay is the caller's: `replay` runs it at once, the node in a worker thread
        (`recompute_replayed`). For a rebuild while the node runs (`_rebuild`): `reread()` gives the undigested events
        again (Digester.reread, which counts its calls as this service does: `on_returned`), and `ingest_lock` is
        the lock held around every append to the audit log and every epoch's close (Ingestor.write_lock)."""
        self._raw, self._reread = raw, reread
        if ingest_lock is not None:
            self._ingest_lock = ingest_lock
        start = self._load_snapshot() if self._loaded is None else self._loaded
        fed, turn = 0, _Turn()
        for fed in self._feeding(self.engine, start, self.replica.store.size):
            if turn.over():
                yield
                turn.begin()
        if self._snapshot_dir is not None and fed >= self._snapshot_due():
            size = start + fed
            root, own_keys = self.replica.store.ledger.root(size), tuple(sorted(self._own_keys()))  # the store's thread
            capturing = Capture(self.engine)
            yield capturing
            if capturing.state is None:
                capturing.run()
            assert capturing.state is not None
            self._replayed = engine_snapshot.Snapshot(size, root, own_keys, capturing.state)  # written by `run`
            turn.begin()
        for at, event in undigested:
            self.engine.add_first_hand(event.agent, ts=at, **_single(event.outcome, event.high_risk))
            if turn.over():
                yield
                turn.begin()
        self.replica.link_listeners.append(self._relink)

    def _new_engine(self) -> TrustEngine:
        identity = self.replica.succession.identity
        return TrustEngine(identity(self.replica.did), [identity(root) for root in self._roots],
                           epoch_ms=self._epoch_ms)

    def _feeding(self, engine: TrustEngine, start: int, stop: int) -> Iterator[int]:
        """Feed `engine` the stored records from index `start` to `stop` as a replay does: this node's own digests
        as first-hand evidence (`_add_own_digest`), the rest by feed_record; yields how many so far after each."""
        identity, own_keys = self.replica.succession.identity, set(self.replica.succession.keys(self.replica.did))
        fed = 0
        for record in self.replica.store.scan(after=start - 1):  # one pass: decoding is most of a replay's time
            if isinstance(record.body, DigestBody) and record.iss in own_keys:
                self._add_own_digest(record.body, self._raw, engine)
            else:
                feed_record(engine, record, identity)
            fed += 1
            yield fed
            if start + fed >= stop:
                return

    def _load_snapshot(self) -> int:
        """Load engine.snapshot into the (fresh) engine, if usable: the records it covers; else 0, logging why."""
        if self._snapshot_dir is None:
            return 0
        try:
            covers = engine_snapshot.load(self._snapshot_dir, self.engine, self.replica.store,
                                          identity=self.replica.succession.identity, own_keys=self._own_keys())
        except engine_snapshot.Unusable as error:
            return self._replaying_all(error)
        return self._loaded_snapshot(covers)

    async def load_snapshot(self) -> None:
        """`_load_snapshot` for `replaying` to go on from, its file read and its state installed with the digests it
        counted in worker threads, the store's checks on the loop: at 10^6 records, decoding it takes seconds
        (benchmarks/startup.py), and so does reading and counting the ids of its 10^6 digests, which on the loop
        would hold up a signal."""
        if self._snapshot_dir is None:
            self._loaded = 0
            return
        try:
            snapshot = await trio.to_thread.run_sync(engine_snapshot.read, self._snapshot_dir, abandon_on_cancel=True)
            engine_snapshot.check(snapshot, self.replica.store, own_keys=self._own_keys(),
                                  identity=self.replica.succession.identity)
            digests = engine_snapshot.counted_digests(snapshot, self.replica.store, own_keys=self._own_keys())
            await trio.to_thread.run_sync(engine_snapshot.install, snapshot, self.engine, digests,
                                          abandon_on_cancel=True)
        except engine_snapshot.Unusable as error:
            self._loaded = self._replaying_all(error)
            return
        self._loaded = self._loaded_snapshot(snapshot.size)

    def _replaying_all(self, error: engine_snapshot.Unusable) -> int:
        assert self._snapshot_dir is not None
        self.engine = self._new_engine()  # (a load that failed may have filled part of it)
        records = self.replica.store.size
        if isinstance(error, engine_snapshot.Missing) and records < SNAPSHOT_AFTER:
            log.info("trust engine: replaying the %d stored records (engine.snapshot is written once %d are)",
                     records, SNAPSHOT_AFTER)
        else:
            log.info("trust engine: replaying every record, as engine.snapshot is not usable: %s", error,
                     extra={"fields": {"file": str(self._snapshot_dir / engine_snapshot.SNAPSHOT_FILE)}})
        return 0

    def _loaded_snapshot(self, covers: int) -> int:
        log.info("trust engine: loaded engine.snapshot", extra={"fields": {"records": covers}})
        self._snapshot_covers = covers
        return covers

    def _own_keys(self) -> list[str]:
        return list(self.replica.succession.keys(self.replica.did))

    def _snapshot_due(self) -> int:
        """How many records not in engine.snapshot make writing it anew worth its cost (SNAPSHOT_AFTER, _SHARE)."""
        return max(SNAPSHOT_AFTER, self._snapshot_covers // SNAPSHOT_SHARE)

    async def _write_snapshot(self, snapshot: engine_snapshot.Snapshot) -> None:
        """Write `snapshot`, encoded on the loop a turn at a time (engine_snapshot.encoding, `_on_loop`) and its file
        written in a worker thread; a failure is logged (a snapshot is a cache: the node runs on). Then let go of its
        state on the loop a turn at a time (letting_go): it is of no use after. No full garbage collection meanwhile
        (`_full_collections_held`), as while it was captured (`_bring_snapshot_forward`, `_rebuild`)."""
        assert self._snapshot_dir is not None
        with _full_collections_held():
            parts = await _on_loop(engine_snapshot.encoding(snapshot))
            try:
                await trio.to_thread.run_sync(engine_snapshot.write_parts, self._snapshot_dir, parts,
                                              abandon_on_cancel=True)
            except OSError as error:
                log.warning("trust engine: cannot write engine.snapshot: %s", error.strerror or error,
                            extra={"fields": {"file": str(error.filename or self._snapshot_dir)}})
                self._snapshot_failures.inc()
            else:
                self._snapshot_covers = snapshot.size
                self.snapshot_written.set()
                self.snapshot_written = trio.Event()
            await _on_loop(letting_go(snapshot.state))

    async def _keep_snapshot(self) -> None:
        """Write the snapshot captured at the start, and one a rebuild captured (`_rebuild`) as soon as it is; every
        SNAPSHOT_CHECK_S bring engine.snapshot forward once _snapshot_due records are not in it. The running engine
        is not a replay's (it counts this node's events as they come, where a replay counts its digests), so a copy
        of the snapshot's engine is loaded (its file read off the loop, decoded and restored on it a turn at a
        time), fed the records since on the loop a chunk at a time, as a start would, captured on the loop a turn at a
        time (Capture.on_loop), encoded on it a turn at a time and written off it. Brings it forward
        no more once engine.snapshot is not usable and the store holds more than SNAPSHOT_FROM_NO_RECORDS records,
        leaving it to the next start or a rebuild's capture. The one task writes every snapshot: a capture is never
        overwritten by an older one, and none is held once written (the start's was, for as long as the node ran)."""
        while True:
            if self._replayed is not None:
                replayed, self._replayed = self._replayed, None
                await self._write_snapshot(replayed)
                del replayed
            with trio.move_on_after(SNAPSHOT_CHECK_S):
                await self._captured.wait()
            self._captured = trio.Event()
            stop = self.replica.store.size
            if self._replayed is None and stop - self._snapshot_covers >= self._snapshot_due() \
                    and not await self._bring_snapshot_forward(stop):
                await self._captured.wait()
                self._captured = trio.Event()

    async def _bring_snapshot_forward(self, stop: int) -> bool:
        """Write engine.snapshot anew to cover the first `stop` records (`_keep_snapshot`); from no records if it is
        not usable, while `stop` is SNAPSHOT_FROM_NO_RECORDS or fewer. False, having logged it, if it is not usable
        past that: it is left to the next start. What it made is let go of on the loop a turn at a time as it is
        done with it (letting_go): the state decoded once restored, the state captured once written, the engine. No
        full garbage collection meanwhile (`_full_collections_held`)."""
        assert self._snapshot_dir is not None
        with _full_collections_held():
            engine = self._new_engine()
            try:
                start = await self._restored_snapshot(engine)
            except engine_snapshot.Unusable as error:
                if stop > SNAPSHOT_FROM_NO_RECORDS:
                    log.warning("trust engine: engine.snapshot is not usable: %s; the next start replays every record "
                                "and writes it anew", error, extra={"fields": {"records": stop}})
                    self._snapshot_covers = 0
                    return False
                engine, start = self._new_engine(), 0
                if isinstance(error, engine_snapshot.Missing):
                    log.info("trust engine: writing engine.snapshot, of %d records", stop)
                else:
                    log.info("trust engine: bringing engine.snapshot forward from no records, as it is not usable: %s",
                             error)
            fed, turn = 0, _Turn()
            for fed in self._feeding(engine, start, stop):
                await turn.checkpoint()
            size = start + fed
            root, own_keys = self.replica.store.ledger.root(size), tuple(sorted(self._own_keys()))  # (store's thread)
            # The engine is this task's own: a capture of its columns themselves, on the loop a turn at a time.
            state = await _on_loop(capture_in_chunks(engine, copy=False))
            await self._write_snapshot(engine_snapshot.Snapshot(size, root, own_keys, state))
            await _on_loop(letting_go(engine=engine))
            return True

    async def _restored_snapshot(self, engine: TrustEngine) -> int:
        """Restore engine.snapshot into the fresh `engine` (`_bring_snapshot_forward`): its file read off the loop,
        decoded and restored on it a turn at a time, then its decoded state let go of likewise; the records it
        covers, or Unusable. Found unusable once decoded (`check`) or partway through its restore, its decoded state
        and the engine as far as it was restored are let go of likewise before Unusable: at once, as the caller
        dropped them, they held the loop as long as they do on success (150-250 ms at 1.2*10^5 agents)."""
        assert self._snapshot_dir is not None
        parts = await trio.to_thread.run_sync(engine_snapshot.read_parts, self._snapshot_dir, abandon_on_cancel=True)
        snapshot = await _on_loop(engine_snapshot.decoding(parts))
        try:
            engine_snapshot.check(snapshot, self.replica.store, identity=self.replica.succession.identity,
                                  own_keys=self._own_keys())
            # No digest ids: the records fed next are none of those it covers (a ledger holds each record once).
            await _on_loop(engine_snapshot.restoring(snapshot, engine, ()))
        except engine_snapshot.Unusable:
            await _on_loop(letting_go(snapshot.state, engine))
            raise
        await _on_loop(letting_go(snapshot.state))
        return snapshot.size

    async def recompute_replayed(self) -> None:
        """The full recompute that completes a replay (`replaying`) at a start, in a worker thread
        (recompute_in_worker): on the loop it held a signal up for 0.05-0.17 s at 20,000 records, 1.4 s or more at
        10^6."""
        await self._recomputed()

    async def _recomputed(self) -> ScoreTable:
        """recompute_in_worker of the engine serving now, lent (`_lent`) until it returns: it reads that engine
        between its checkpoints, and an engine `_rebuild` swaps out meanwhile is emptied only after."""
        engine = self.engine
        with self._lent.lending(engine):
            return await recompute_in_worker(engine, self._clock)

    # --- inputs (listeners) -------------------------------------------------------------------------------

    def on_records(self, records: list[Record]) -> None:
        """Replica listener: feed accepted records and tell the stream about the agents they touch (feed_record);
        an org-level change brings the next recompute forward to within PROMPT_RECOMPUTE_S, and the agents touched
        until it runs are announced by it (`_announce_soon`)."""
        identity = self.replica.succession.identity
        org_changes = self.engine.org_changes
        touched = [a for record in records if (a := feed_record(self.engine, record, identity)) is not None]
        if self.engine.org_changes != org_changes:
            self._org_changed.set()
        if self._mirror is not None:
            for record in records:
                feed_record(self._mirror, record, identity)
        self._announce_soon(touched)

    def on_returned(self, records: list[Record], raw: RawLookup, counts_entries: EntriesLookup) -> None:
        """Replica returned listener: our own digests back from peers (signed after the copy of the data directory
        this node was restored from) count as first-hand evidence, as `replay` counts them, but those of an (epoch,
        agent) whose audit-log entries count already, `counts_entries(epoch, agent, reads)` (Digester
        .counts_entries), asked for each engine with the reads of the undigested events before the one it was built
        from (an epoch abandoned after the start's read counts its entries in the start's engine, and none in one a
        rebuild read after): after a restart, replay counts such a digest, and its entries no more."""
        agents = []
        for record in records:
            body = record.body
            if not isinstance(body, DigestBody):
                continue
            if not counts_entries(body.epoch, body.agent, self._engine_reads):
                self._add_own_digest(body, raw)
                agents.append(body.agent)
            if self._mirror is not None and not counts_entries(body.epoch, body.agent, self._rereads):
                self._add_own_digest(body, raw, self._mirror)
        self._announce_soon(agents)

    def _add_own_digest(self, body: DigestBody, raw: RawLookup, engine: TrustEngine | None = None) -> None:
        """Count a digest of ours as first-hand evidence: a DP one by its raw counts where kept, else as published;
        as its epoch [epoch, epoch + length), which is how its events were counted as they came
        (TrustEngine.add_own_epoch), even under an epoch length since changed."""
        kept = None if body.dp_epsilon is None else raw(body.epoch, body.agent)
        outcomes, high_risk = (body.outcomes, body.high_risk) if kept is None else \
            (dict(zip(OUTCOMES, kept[0])), dict(zip(OUTCOMES, kept[1])))
        (engine or self.engine).add_own_epoch(body.agent, end=body.epoch + body.length,
                                              outcomes=outcomes_of(outcomes), high_risk=outcomes_of(high_risk))

    def _relink(self, link: Link) -> None:
        """Replica link listener: two keys became one org. If the engine already knew the new key as an org, what
        named it now counts for the org, from the next recompute (brought forward, as for any org-level change);
        every record the new key signs is fed after the link, as its org's. A link closing a cycle of keys renames
        the org instead. A link that changes which org is this node's own (its key turned out to be a later key of
        another: `vouchnet key adopt`) is left to `_rebuild`, which it starts, as is the engine being rebuilt."""
        assert link.org is not None  # (the replica tells only links just made, each with its org at that step)
        own_org = self.replica.succession.identity(self.replica.did)
        if own_org != self.engine.own_org:
            if self._rebuilt is None or own_org != self._rebuilt.own_org:  # (a link of another org: one rebuild)
                self._own_org_moved.set()
        else:
            self._apply_link(self.engine, link)
        if self._rebuilt is not None and own_org == self._rebuilt.own_org:
            if self._held_links is not None:
                self._held_links.append(link)
            else:
                self._apply_link(self._rebuilt, link)

    def _apply_link(self, engine: TrustEngine, link: Link) -> None:
        assert link.org is not None
        if link.cycle:
            engine.rename_org(link.successor, link.org)
        elif engine.merge_org(link.successor, link.org) and engine is self.engine:
            log.info("trust engine: a rotation joined a key it knew to its org",
                     extra={"fields": {"prior": link.prior, "successor": link.successor}})
            self._org_changed.set()

    async def _rebuild_when_own_org_moves(self) -> None:
        while True:
            await self._own_org_moved.wait()
            self._own_org_moved = trio.Event()
            await self._rebuild()

    async def _rebuild(self) -> None:
        """This node's key turned out to be a later key of another (`vouchnet key adopt`: the node starts as the
        successor and takes its first record back from peers): the org is the earlier key's, and the node's digests
        under every key of it are first-hand evidence, as at a start after `vouchnet key rotate`. TrustEngine
        .merge_org cannot make a peer's evidence first-hand, so a new engine is built as a start builds it
        (`replaying`), on the loop a TURN_S at a time (the store's reads are the loop's), while the old one serves:
        the stored records, fed up to the store's size (more are stored meanwhile); then, holding the ingest lock
        (no event appended, no epoch closed), the records stored since, and the undigested events; then its full
        recompute (recompute_in_worker), and the swap; then, the new one serving, the old one is emptied on the loop a
        turn at a time (letting_go) once no recompute holds it (`_recomputed` reads it between checkpoints: emptied
        under one, it failed the recompute). Freed at once, its objects, an item an agent or a vouch in each of its
        lists, held the loop 64-85 ms at 2*10^5 agents; emptied, 0.3-0.5 s of turns (benchmarks/adopt_rebuild.py
        --records 20000 --flood 20000, README). Having fed the records, before the events, it is what a start's
        replay of them makes: engine.snapshot is captured from it then (`_captured_rebuild`, SNAPSHOT_AFTER records
        or more) and written once it is swapped in and the old one emptied (`_keep_snapshot`: encoded on the loop a
        turn at a time too, alongside the emptying it made the loop's stalls 41-50 ms, after it 21-30), so that the
        next start loads it; past SNAPSHOT_FROM_NO_RECORDS records, nothing else would write one before that start's
        replay of every record.
        From the moment it caught up with the store, the listeners feed it what they feed the engine (`_mirror`),
        so that every record is counted once, by the replay or by a listener: this relies on the replica storing
        each batch before it tells any listener of it, all on the trio thread, and on nothing about the order it
        calls the listeners in. Links are applied to it as they come (held while it is captured).
        Discarded if the node's own org moves again meanwhile (a link of an earlier key still), emptied so too: built
        again. At 10^6 records it took 87 s, the loop's longest stall 133 ms, at load 6-7 on 2 cores, with turns of
        20 ms then (benchmarks/adopt_rebuild.py: a turn is TURN_S and the store's page of 1,000 records it reads).
        Under a flood of records stored half as fast as it feeds them (some 10^4 a second) or faster, it catches up by
        feeding a gap of AT_ONCE_MAX records at most at once (`_feed_stored`). No full garbage collection from its
        engine made to its swap (`_full_collections_held`), nor while its capture is written (`_write_snapshot`): under
        a flood of new agents, 25-26 of them walked every agent's objects on the loop, the longest 130-138 ms, 7-8
        during its capture, whose longest stall was 84-121 ms, 22-39 ms with none (benchmarks/adopt_rebuild.py --records
        20000 --flood 20000, README), nor while the old engine is emptied; nor, once swapped in, while the recompute it
        brings forward announces what changed (`_recompute_and_announce`)."""
        identity = self.replica.succession.identity
        log.info("trust engine: this node's key joined the org of an earlier key; rebuilding the engine from the "
                 "stored records", extra={"fields": {"org": identity(self.replica.did), "key": self.replica.did,
                                                     "records": self.replica.store.size}})
        with _full_collections_held():
            engine = self._rebuilt = self._new_engine()
            snapshot = None
            try:
                fed = await self._feed_stored(engine, 0)
                async with self._ingest_lock:
                    fed = await self._feed_stored(engine, fed)
                    if self._snapshot_dir is not None and fed >= SNAPSHOT_AFTER:
                        snapshot = await self._captured_rebuild(engine, fed)
                        await self._feed_stored(engine, fed)
                    self._mirror = engine  # (no checkpoint since the store's size was read last)
                    self._rereads += 1
                    reads, turn = self._rereads, _Turn()
                    for at, event in self._reread():
                        engine.add_first_hand(event.agent, ts=at, **_single(event.outcome, event.high_risk))
                        await turn.checkpoint()
                await recompute_in_worker(engine, self._clock)
                moved = engine.own_org != identity(self.replica.did)  # (`_own_org_moved` is set: built again)
                if not moved:
                    old, self.engine, self._swapped = self.engine, engine, True
                    self._engine_reads = reads
                    self.own_org_swapped.set()
                    self.own_org_swapped = trio.Event()
            finally:
                self._rebuilt = self._mirror = self._held_links = None
            if moved:  # (discarded, emptied as an engine swapped out is)
                await _on_loop(letting_go(None if snapshot is None else snapshot.state, engine))
                return
            log.info("trust engine: rebuilt, with this node's own org the earlier key's",
                     extra={"fields": {"org": engine.own_org}})
            self._org_changed.set()  # its recompute announces what changed
            await self._lent.returned(old)
            await _on_loop(letting_go(engine=old))
        if snapshot is not None:
            self._replayed = snapshot
            self._captured.set()

    async def _captured_rebuild(self, engine: TrustEngine, size: int) -> engine_snapshot.Snapshot:
        """engine.snapshot of the rebuilt `engine`, fed the first `size` records and nothing else: what a start's
        replay of them makes (`replaying`), and the one usable snapshot, the one there is holding the org's keys
        before the link. Captured on the loop a turn at a time (Capture.on_loop) while nothing feeds it: the ingest
        lock is held, the records stored meanwhile are the caller's to feed after, and the links that come are held
        and applied after, as they are to the records fed after them before it caught up."""
        root, own_keys = self.replica.store.ledger.root(size), tuple(sorted(self._own_keys()))  # the store's thread
        capturing, self._held_links = Capture(engine), []
        await capturing.on_loop()
        held, self._held_links = self._held_links, None
        for link in held:
            self._apply_link(engine, link)
        assert capturing.state is not None
        return engine_snapshot.Snapshot(size, root, own_keys, capturing.state)

    async def _feed_stored(self, engine: TrustEngine, start: int) -> int:
        """Feed `engine` the stored records from index `start` as a replay does (`_feeding`), until it has every
        record stored when it returns; the records fed in all. It goes in rounds, each to the store's size as the
        round begins, a TURN_S at a time while each round is under half the one before; a later round of half or
        more (records stored half as fast as they are fed, or faster: a flood) is fed at once, the loop waiting, if
        it is of AT_ONCE_MAX records at most, so that it ends after a few rounds. A flood that keeps its rounds
        larger (stored as fast as they are fed) keeps it feeding a turn at a time, the old engine serving, until the
        flood slows: a pause of the loop as long as such a round takes (seconds, at 10^6 records) would fail every
        check and sync meanwhile."""
        turn, gap = _Turn(), None
        while (stop := self.replica.store.size) > start:
            at_once = gap is not None and 2 * (stop - start) >= gap and stop - start <= AT_ONCE_MAX
            gap = stop - start
            for _ in self._feeding(engine, start, stop):
                if not at_once:
                    await turn.checkpoint()
            start = stop
        return start

    def on_events(self, batch: Appended) -> None:
        """Ingest listener: our own observations count as first-hand evidence at once."""
        if self._mirror is not None:
            feed_first_hand(self._mirror, batch)
        self._announce_soon(feed_first_hand(self.engine, batch))

    # --- reads --------------------------------------------------------------------------------------------

    def score(self, agent: str) -> tuple[Score, tuple[str, ...]]:
        """The agent's score now and the tools it held live scoped vouches for at that instant (a check of one is
        decided on a score of its own), both looked up once for the answer and for the stream."""
        self._requests.inc(kind="score")
        now = self._clock()
        score, scopes = self.engine.score(agent, now=now), self.engine.scopes(agent, now=now)
        self._served(agent, score, scopes)
        return score, scopes

    def explain(self, score: Score) -> dict:
        """The explanation of `score` (a `score` answer), at the instant it was computed at."""
        return self.engine.explain(score.agent, now=score.computed_at).as_dict()

    def check(self, agent: str, action: str, tool: str | None, issuer: str | None = None) -> Checked:
        """The decision for `agent` doing `action` with `tool`, the agent's score (with the vouches scoped to
        `tool`, DESIGN.md §3), the agent's scoped tools (`scopes`) and the org keys whose agent credentials stand for
        it (`issuers`). For a caller's credential of `issuer`, a key not among them (DESIGN §8), the decision is the
        cold start's, as an agent nothing names would get: the credential names the agent without standing for it."""
        self._requests.inc(kind="check")
        now = self._clock()
        general, scopes = self.engine.score(agent, now=now), self.engine.scopes(agent, now=now)
        score = self.engine.score(agent, now=now, tool=tool) if tool in scopes else general
        issuers = self._credential_issuers(self._served(agent, general, scopes), now=general.computed_at)
        if issuer is None or issuer in issuers:
            return Checked(decide(score, action, tool, self.policy), score, scopes, issuers)
        cold = self.engine.cold_score
        decision = decide(Score(agent, cold, tier_of(cold), 0.0, general.computed_at), action, tool, self.policy)
        return Checked(Decision(decision.decision, f"{issuer} does not operate {agent} (no live operator vouch of its "
                                f"for the agent in this node's records), so its credential does not stand for the "
                                f"agent's standing: decided on the cold-start score; {decision.reason}"),
                       score, scopes, issuers)

    def _credential_issuers(self, operators: tuple[str, ...], *, now: int) -> tuple[str, ...]:
        """The org keys whose agent credentials stand for an agent the `operators` orgs operate (DESIGN §8,
        TrustEngine.operators: no org proven to equivocate): every key of this node's org (its own credentials),
        then every key of each operator org, the heaviest here first (TrustEngine.heaviest_first), so that keys no
        one vouches for, which anyone can make, come after every partner this node weighs and cannot push one off
        the first 64 a check answer or a stream event lists (listed_issuers). A credential of any other issuer names
        the agent without being its operator's: it is decided on the cold-start score."""
        succession = self.replica.succession
        keys = dict.fromkeys(succession.keys(self.replica.did))
        for org in self.engine.heaviest_first(operators, now=now):
            keys.update(dict.fromkeys(succession.keys(org)))
        return tuple(keys)

    def _served(self, agent: str, score: Score, scopes: tuple[str, ...]) -> tuple[str, ...]:
        """Remember the score and scoped tools a reader was given, so that their first change is announced; of agents
        the engine holds nothing on, the latest MAX_ASKED_UNKNOWN asked about. A reader given other than what the
        stream last said (a record awaiting an org-level change's recompute, time passing) is a change, announced
        now: else one undone before the stream told it (a vouch and its revocation within that second) went unsaid,
        and the reader held the score in between until its cache expired. The orgs operating the agent at the
        score's instant (`_remember`)."""
        first = agent not in self._known
        operators = self._remember(agent, score, scopes)
        if not first or self.engine.holds(agent):
            return operators
        self._asked_unknown[agent] = None
        if len(self._asked_unknown) > MAX_ASKED_UNKNOWN:
            oldest = next(iter(self._asked_unknown))
            del self._asked_unknown[oldest], self._known[oldest]
        return operators

    def org_not_agent(self, did: str) -> str | None:
        """Why this node takes `did` for an org and not an agent, if it does: nothing it holds names `did` as an agent
        (a vouch, a digest, its own observations; TrustEngine.holds), and `did` signed records it holds or is an org
        to the engine (this node's own, a trust root, an org-peer vouch's subject before any record of its own
        arrives). None otherwise: an agent, or a did the node knows nothing of (its score is the cold start)."""
        if self.engine.holds(did):
            return None
        if self.replica.store.head(did) is not None:  # (a key linked to its org by a rotation signed one, its first)
            return "it signed records this node holds"
        if did == self.engine.own_org:
            return "this node's own org"
        if did in self._roots:
            return "a trust root of this node"
        if self.engine.knows_org(did):
            return "a record this node holds names it as an org: an org-peer vouch for it, say"
        return None

    def org(self, did: str) -> dict:
        """How this node sees the org of key `did` (known by its first key)."""
        return self.engine.org(self.replica.succession.identity(did), now=self._clock()).as_dict()

    def witness_group(self, did: str) -> str | None:
        """The independence group of the org of key `did` if this node gives it an independent witness's weight (its
        standing, `voucher_weight`, at least `witness_min_weight`, and no equivocator), else None: the bar `vouchnet
        log verify` judges a cosigner by (node.commands.log_verify), which the witnessing gauge and the order peers
        are asked to cosign in (gossip.witnessing) use too. Read from the engine's last reputation, none listed."""
        org = self.engine.org(self.replica.succession.identity(did), now=self._clock(), listed=0)
        return org.group if org.voucher_weight >= org.witness_min_weight and not org.equivocator else None

    def orgs(self, *, after: str | None = None, limit: int | None = None) -> list[dict]:
        """The orgs whose did sorts after `after`, at most `limit` of them, in did order (GET /v1/orgs pages)."""
        return [o.as_dict() for o in self.engine.orgs(now=self._clock(), after=after, limit=limit)]

    # --- the periodic recompute -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recompute every `recompute_interval` seconds (credibility, accountability, reputation, all scores), and
        PROMPT_RECOMPUTE_S after an org-level change; announce what changed. A stop (a cancel) waits for no
        recompute (recompute_in_worker)."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            if self._snapshot_dir is not None:
                nursery.start_soon(self._keep_snapshot)
            nursery.start_soon(self._rebuild_when_own_org_moves)
            await self._recompute_periodically()

    async def _recompute_periodically(self) -> None:
        while True:
            with trio.move_on_after(self._interval):
                await self._org_changed.wait()
                await trio.sleep(PROMPT_RECOMPUTE_S)  # what else arrives meanwhile joins this recompute
            self._org_changed = trio.Event()
            await self._recompute_and_announce()

    async def _recompute_and_announce(self) -> None:
        """A full recompute (`_recomputed`), then `_announce_soon` of every agent the stream told of or whose change
        awaited it, a chunk at a time. The first to begin after `_rebuild` swapped its engine in holds off full
        collections until it ends (`_full_collections_held`), however it ends: its reads fill every agent's cached
        sums, and what that makes set off on the loop the full collections the rebuild held off, three at 2*10^5 agents,
        59-64, 32-34 and 33-34 ms of CPU, the announce's longest stall 62-154 ms; held, the one that comes after it
        took 53-55 ms (41-44 ms since the vouch book keys its latest vouches by an int, vouching.vouches.latest_key),
        and the announce's longest stall 9-11 ms (benchmarks/adopt_rebuild.py --records 20000 --flood 20000, README)."""
        deferred, self._deferred = self._deferred, {}
        swapped, self._swapped = self._swapped, False
        with _full_collections_held() if swapped else nullcontext():
            table = await self._recomputed()
            agents = list({**self._known, **deferred})
            for start in range(0, len(agents), ANNOUNCE_CHUNK):
                self._announce_soon(a for a in agents[start:start + ANNOUNCE_CHUNK] if table.score(a) is not None)
                await trio.sleep(0)  # requests are answered in between: 10^4 agents take about 0.1 s, and looking
                # all 2*10^5 up in the table at once held the loop 61-70 ms (benchmarks/adopt_rebuild.py, README)

    def _announce_soon(self, agents: Iterable[str]) -> None:
        """`_announce` the agents now, or, while an org-level change awaits its prompt recompute, with that recompute:
        a read now would first refresh reputation over every org vouch, again after each record of a stream of them."""
        if self._org_changed.is_set():
            self._deferred.update(dict.fromkeys(agents))
        else:
            self._announce(agents)

    def _announce(self, agents: Iterable[str]) -> None:
        """Publish a `score` event for every given agent whose general score, scoped tools (`scopes`: a cache of
        general scores asks the node for checks of these) or operating orgs (`_remember`) changed, and a `tier` event
        if its tier did."""
        now = self._clock()
        for agent in dict.fromkeys(agents):
            self._asked_unknown.pop(agent, None)  # announced: the engine holds something on it now
            self._remember(agent, self.engine.score(agent, now=now), self.engine.scopes(agent, now=now))

    def _remember(self, agent: str, score: Score, scopes: tuple[str, ...]) -> tuple[str, ...]:
        """Keep the agent's score, scoped tools and the orgs operating it (TrustEngine.operators, at the score's
        instant) as the stream's word, publishing them if they changed it. An event carries the org keys whose
        credentials stand for the agent and `cold_start`, as a check answer does (listed_issuers), which an SDK
        caches: an operator vouch revoked or expired that moved no score (its org's vouches weigh nothing here) went
        unsaid, and the partner's credentials stood for the agent until the SDK's cache_ttl. Compared by org, not by
        key: a rotation would announce every agent its org operates at once; a cache missing the new key fails
        closed (the cold start) for a cache_ttl. The orgs operating the agent, in did order."""
        operators = self.engine.operators(agent, now=score.computed_at)
        before = self._known.get(agent)
        self._known[agent] = (score.score, score.tier, scopes, operators)
        if before is None or (before[0], before[2], before[3]) == (score.score, scopes, operators):
            return operators
        event = {"agent": agent, "score": score.score, "tier": score.tier, "previous_score": before[0],
                 "previous_tier": before[1], "computed_at": score.computed_at, **listed_scopes(scopes),
                 **listed_issuers(self._credential_issuers(operators, now=score.computed_at)),
                 "cold_start": self.engine.cold_score}
        self._broadcaster.publish({"type": "score", **event})
        if before[1] != score.tier:
            self._broadcaster.publish({"type": "tier", **event})
        return operators


def listed_issuers(issuers: tuple[str, ...]) -> dict[str, Any]:
    """The `issuers` and `issuers_complete` fields of a check answer and of a stream event: the first
    MAX_LISTED_ISSUERS org keys whose credentials stand for the agent (TrustService._credential_issuers: this node's
    org's first, then the operators this node weighs most), and whether that is all of them. Any key may sign an
    operator vouch, so that the full list is unbounded; a client told it is incomplete asks the node of an issuer it
    does not list (a check naming the `issuer`: the node answers `issuer_operates` from the full list)."""
    return {"issuers": list(issuers[:MAX_LISTED_ISSUERS]), "issuers_complete": len(issuers) <= MAX_LISTED_ISSUERS}


def listed_scopes(scopes: tuple[str, ...]) -> dict[str, Any]:
    """The `scopes` and `scopes_complete` fields of a score or check answer and of a stream event: the first
    MAX_LISTED_SCOPES of the agent's scoped tools, and whether that is all of them. Any org with voucher weight can
    scope vouches to 64 tools of 128 characters each, so that a full list could pass what a client reads (an SDK
    reads a stream event of up to 64 KiB); a client told the list is incomplete asks the node for every tool check
    of the agent."""
    return {"scopes": list(scopes[:MAX_LISTED_SCOPES]), "scopes_complete": len(scopes) <= MAX_LISTED_SCOPES}


async def recompute_in_worker(engine: TrustEngine, clock: Callable[[], int]) -> ScoreTable:
    """The engine's full recompute (DESIGN.md §6, vouching.recompute) without holding up the trio loop for more than a
    few ms: its columns are copied a chunk per checkpoint, the snapshot completed at `clock()`, the compute run on a
    worker thread, and the result installed at once. Records fed meanwhile count as if they came right after the
    snapshot. Cancelled (a signal), it returns at once, leaving the thread to finish a compute no one installs: the
    engine takes a recompute only whole (TrustEngine.install), so it serves the scores it had until a later recompute
    is installed. Waiting for the thread held a stop up for as long as the compute, 1.4 s or more at 10^6 records.

    At 10^5 agents and 10^6 digests the compute is ~0.25 s of numpy, and on the loop it held everything up that long
    (benchmarks/score.py: a 1 ms ticker's longest gap ~0.3 s). On a thread, the loop gets the GIL back within the
    5 ms switch interval or the longest numpy call that holds it (the ticker's longest gap ~6 ms); a copy step,
    the snapshot's last step and the install take a millisecond or less. Yielding to the loop between chunks of the
    compute instead would mean cutting every numpy pass over 10^6 pairs into pieces, keeping every float sum in its
    order so that scores stay exactly as they were; the thread leaves the compute as it is.
    """
    copying = engine.start_snapshot()
    while copying.step():
        await trio.sleep(0)
    recompute = engine.snapshot(copying, now=clock())
    return engine.install(await trio.to_thread.run_sync(recompute.compute, abandon_on_cancel=True))


class Capture:
    """The capture for engine.snapshot of the engine a start replayed the records into (`replaying` yields it), a
    rebuild fed them (`_captured_rebuild`), while nothing feeds it: as
    it walks every agent and vouch in Python (tens of ms at 10^6 records, benchmarks/startup.py; 0.3 s at 1.5*10^5
    agents, benchmarks/adopt_rebuild.py --flood), `run` in a worker thread at a start (node.daemon._opened; not run
    by the caller of `replaying`, `replaying` runs it), `on_loop` a chunk at a time on a running node."""

    def __init__(self, engine: TrustEngine) -> None:
        self._engine = engine
        self.state: dict[str, Any] | None = None

    def run(self) -> None:
        self.state = capture(self._engine)

    async def on_loop(self) -> None:
        """`run` on the trio thread, a TURN_S at a time (vouching.engine_state.capturing). In a worker thread, its
        Python held the GIL from the loop, whose every call that lets go of it (sqlite's, the poll's) then waited up
        to the switch interval to have it back: a flood's batch of 1,000 records, 0.04-0.08 s of work, took 0.1-0.4
        s, up to the capture's length, the loop waiting (benchmarks/adopt_rebuild.py --flood --gc off)."""
        self.state = await _on_loop(capture_in_chunks(self._engine))


async def _on_loop(steps: Generator[None, None, T]) -> T:
    """What `steps` returns, run on the trio thread a TURN_S at a time (each of its steps a chunk's work: a cbor2 call
    of engine_snapshot.encoding or decoding, or CAPTURE_CHUNK rows of vouching.engine_state.capturing, restoring or
    letting_go). The whole state, decoded and encoded in a worker thread, stalled the loop 0.5-2.4 s under a flood
    at 1.2-2.2*10^5 agents (benchmarks/snapshot_forward.py)."""
    turn = _Turn()
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        await turn.checkpoint()


class _Lent:
    """Engines tasks hold across checkpoints, each counted while `lending` it: one swapped out is emptied only once
    `returned`."""

    def __init__(self) -> None:
        self._holders: dict[TrustEngine, int] = {}
        self._returned = trio.Event()  # set as an engine is returned by its last holder, then replaced

    @contextmanager
    def lending(self, engine: TrustEngine) -> Iterator[None]:
        self._holders[engine] = self._holders.get(engine, 0) + 1
        try:
            yield
        finally:
            self._holders[engine] -= 1
            if not self._holders[engine]:
                del self._holders[engine]
                self._returned.set()
                self._returned = trio.Event()

    async def returned(self, engine: TrustEngine) -> None:
        """Once no task holds `engine` (at once if none does)."""
        while engine in self._holders:
            await self._returned.wait()


@dataclass
class _Holds:
    """The `_full_collections_held` within which tasks are, and the oldest generation's threshold before the first."""

    count: int = 0
    threshold: int = 0


_FULL_COLLECTION_HOLDS = _Holds()


@contextmanager
def _full_collections_held() -> Iterator[None]:
    """No full collection of the cycle collector (its oldest generation) within: its young ones go on. A full one
    walks each item of each tracked list not frozen (gc.freeze), and a bring-forward's (its engine's lists of an
    item an agent, the states decoded and captured) made each 15-35 ms at 1.2*10^5 agents, on the loop, 5-11 in each
    of its steps: one is set off every 10 young ones once the objects that outlived them pass a quarter of those the
    last full one left, and those are a few hundred (the lists are few, their items many and untracked;
    benchmarks/snapshot_forward.py); a rebuild's likewise (`_rebuild`), then the announce after its swap
    (`_recompute_and_announce`). The process's thresholds, for every task meanwhile: cyclic garbage that outlived
    two young collections waits until after (the next full one comes as due then). Holds of several tasks may
    overlap, ending in any order: the first sets the oldest generation's threshold out of reach, and the last sets
    it back, unless another changed it meanwhile (theirs stands, as do young thresholds changed meanwhile). On the
    trio thread alone. It holds nothing on CPython 3.14.0-3.14.4, whose collector is incremental (each young
    collection takes an increment of the old generation with it, so none walks it all; gc.set_threshold ignores a
    third value there); 3.13 and 3.14.5 on have the generational one this holds."""
    if not _FULL_COLLECTION_HOLDS.count:
        *young, _FULL_COLLECTION_HOLDS.threshold = gc.get_threshold()
        gc.set_threshold(*young, NO_FULL_COLLECTION)
    _FULL_COLLECTION_HOLDS.count += 1
    try:
        yield
    finally:
        _FULL_COLLECTION_HOLDS.count -= 1
        if not _FULL_COLLECTION_HOLDS.count:
            *young, oldest = gc.get_threshold()
            if oldest == NO_FULL_COLLECTION:
                gc.set_threshold(*young, _FULL_COLLECTION_HOLDS.threshold)


class _Turn:
    """A long task's turn on the trio thread: `over` once TURN_S of it has gone by since `begin`."""

    def __init__(self) -> None:
        self.begin()

    def begin(self) -> None:
        self._until = time.perf_counter() + TURN_S

    def over(self) -> bool:
        return time.perf_counter() >= self._until

    async def checkpoint(self) -> None:
        """Once the turn is over, let the loop run its other tasks, and begin the next."""
        if self.over():
            await trio.sleep(0)
            self.begin()


def _single(outcome: str, high_risk: bool) -> dict[str, Outcomes]:
    one = Outcomes(**{outcome: 1})
    return {"outcomes": one, "high_risk": one if high_risk else Outcomes()}
