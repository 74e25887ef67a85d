"""Telemetry ingest (DESIGN §7): JSON event batches and OTLP spans become audit-log entries, and every accepted
batch is handed to the listeners (the digester, and the scoring engine's first-hand evidence).

Synchronous, on the node's trio thread: a batch is validated, appended in one durable commit, then announced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from vouching.bodies import OUTCOMES
from vouching.evidence import Outcomes
from vouching.scoring import TrustEngine

from .audit_log import Appended, AuditLog
from .events import MAX_BATCH_CONTAINERS, MAX_BATCH_EVENTS, Event, InvalidEvent, parse_event
from .idempotency import IdempotencyStore, StoredReply, legacy_span_content, span_content, span_key
from .metrics import Registry
from .otlp import IGNORED_REASONS, MALFORMED, SpanBatch
from .span_rejection_log import SpanRejectionLog
from .strict_json import TooManyContainers, check_containers, loads_strict, not_json

_FIELDS = ("event", "agent", "ts", "category", "name", "outcome", "duration_ms", "high_risk", "attrs")
# events_rejected_total's reasons (InvalidEvent.reason): an event's field, or an OTLP span not as OTLP has it
REJECTION_REASONS = (*_FIELDS, "unknown_field", MALFORMED)

log = logging.getLogger(__name__)

BatchListener = Callable[[Appended], None]
# Why the node takes a did for an org and not an agent, or None (node.trust.TrustService.org_not_agent)
OrgNotAgent = Callable[[str], str | None]


def _knows_no_org(did: str) -> str | None:
    return None


class BadBatch(ValueError):
    """A request body that is not a batch at all (HTTP 400); the message names the field and the rule."""


class TooLarge(ValueError):
    """A batch beyond the bounds (HTTP 413)."""


@dataclass(frozen=True)
class Reply:
    """The HTTP answer to a batch: status, JSON body, and whether it repeats an earlier answer."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True)
class FirstHand:
    """One agent's outcomes in an accepted batch, and their high-risk subset: the scoring engine's first-hand
    evidence (`engine.add_first_hand(agent, ts=batch.at, outcomes=Outcomes(**c.outcomes), ...)`)."""

    outcomes: dict[str, int]
    high_risk: dict[str, int]


def first_hand(batch: Appended) -> dict[str, FirstHand]:
    """Per agent, the outcome counts of an accepted batch."""
    counts: dict[str, FirstHand] = {}
    for event in batch.events:
        tally = counts.get(event.agent)
        if tally is None:
            tally = counts[event.agent] = FirstHand(dict.fromkeys(OUTCOMES, 0), dict.fromkeys(OUTCOMES, 0))
        tally.outcomes[event.outcome] += 1
        if event.high_risk:
            tally.high_risk[event.outcome] += 1
    return counts


def feed_first_hand(engine: TrustEngine, batch: Appended) -> dict[str, FirstHand]:
    """Give the trust engine a stored batch as this node's first-hand evidence; the counts, by agent."""
    counts = first_hand(batch)
    for agent, tally in counts.items():
        engine.add_first_hand(agent, ts=batch.at, outcomes=Outcomes(**tally.outcomes),
                              high_risk=Outcomes(**tally.high_risk))
    return counts


def _parse_batch(body: bytes) -> list[Any]:
    try:
        check_containers(body, MAX_BATCH_CONTAINERS)
    except TooManyContainers as error:
        raise TooLarge(str(error)) from None
    try:
        document = loads_strict(body)
    except ValueError as error:
        raise BadBatch(not_json(error)) from None
    if type(document) is not dict or set(document) != {"events"}:
        raise BadBatch('body: must be a JSON object {"events": [...]}')
    events = document["events"]
    if type(events) is not list:
        raise BadBatch("body.events: must be a list of events")
    if len(events) > MAX_BATCH_EVENTS:
        raise TooLarge(f"body.events: at most {MAX_BATCH_EVENTS} events per batch, got {len(events)}")
    return events


@dataclass(frozen=True)
class ReadBatch:
    """A `POST /v1/events` body read: its valid events, and each invalid one's index in the batch and why."""

    events: list[Event]
    rejected: list[tuple[int, InvalidEvent]]


def read_batch(body: bytes, *, now_ms: int) -> ReadBatch:
    """A batch's events parsed and each checked (DESIGN §7), their times against the clock `now_ms`, not the log's
    next acceptance time, which stays ahead for as long as the clock once ran ahead. Pure: it may run on a worker
    thread. Raises BadBatch, TooLarge."""
    events, rejected = [], []
    for index, value in enumerate(_parse_batch(body)):
        try:
            events.append(parse_event(value, now_ms=now_ms))
        except InvalidEvent as error:
            rejected.append((index, error.with_traceback(None)))  # (its frames would hold the values parsed)
    return ReadBatch(events, rejected)


@dataclass(frozen=True)
class Pending:
    """A validated batch waiting to be stored, with the reply it will get and, if it came with an idempotency
    key, the key and what to store under it."""

    events: tuple[Event, ...]
    reply: Reply
    keyed: tuple[str, StoredReply] | None = None
    spans: tuple[bytes | None, ...] | None = None  # OTLP events: each one's span id (span_key), if it has one


@dataclass(frozen=True)
class SpansWritten:
    """What became of an OTLP request's events: the batch appended (None if every one was a duplicate), how many
    were left out as duplicates, and how many appended were of ids stored with other content."""

    appended: Appended | None
    duplicates: int
    conflicting: int = 0


@dataclass
class Ingestor:
    """Validates, stores and announces events. `listeners` are called with each durably appended batch; `monotonic`
    times the log's lines of rejected spans (node.span_rejection_log); `org_not_agent` says why an event's agent is
    taken for an org, if it is (its events are refused, as GET /v1/agents/{did}/score refuses the did).

    The HTTP handlers store with `commit_async`: the commits (fsync) run in a worker thread, so the node's trio
    thread goes on serving, and validating the next batch, meanwhile. `write_lock` keeps one batch in flight at a
    time, in order; the digest service holds it while it closes epochs, so no batch is half-way in as one closes.
    """

    audit: AuditLog
    idempotency: IdempotencyStore
    metrics: Registry
    listeners: list[BatchListener] = field(default_factory=list)
    monotonic: Callable[[], float] = time.monotonic
    org_not_agent: OrgNotAgent = _knows_no_org

    def __post_init__(self) -> None:
        self.write_lock = trio.Lock()
        self._rejection_log = SpanRejectionLog(self.monotonic)
        m = self.metrics
        self._accepted = m.counter("events_accepted_total", "Events appended to the audit log")
        self._rejected = m.counter("events_rejected_total", "Events refused, by the field that broke a rule",
                                   ("reason",), REJECTION_REASONS)
        self._batches = m.counter("event_batches_total", "Batches appended to the audit log")
        self._replays = m.counter("idempotent_replays_total", "Batches answered from an earlier request's reply")
        self._listener_errors = m.counter("ingest_listener_errors_total", "Failures of a batch listener")
        self._spans = m.counter("spans_total", "OTLP spans received, by what became of them", ("result",),
                                 ("accepted", "duplicate", "rejected", "ignored"))
        self._ignored = m.counter("spans_ignored_total", "OTLP spans that are not an agent's action, by why",
                                  ("reason",), IGNORED_REASONS)
        self._conflicting = m.counter(
            "spans_conflicting_total", "OTLP spans stored whose trace and span id a span saying something else had "
            "already (both kept, each counted as accepted): spans sent under another's ids, or one span exported "
            "twice, its attributes changed on the way")
        m.collect("audit_entries", "Entries in the private audit log", lambda: self.audit.size)

    def reject(self, reason: str) -> None:
        """Count one refused event (or span) under the event field that broke a rule (InvalidEvent.reason)."""
        self._rejected.inc(reason=reason)

    def prepare_json(self, body: bytes, *, key: str | None = None) -> Reply | Pending:
        """A `POST /v1/events` body checked on this thread: `replay_of`, else `prepare_batch` of `read_batch`."""
        replay = self.replay_of(body, key=key)
        return replay if replay is not None else self.prepare_batch(
            body, read_batch(body, now_ms=self.audit.clock()), key=key)

    def replay_of(self, body: bytes, *, key: str | None) -> Reply | None:
        """With an idempotency key, a repeated request's first reply (marked replayed), or 422 if the same key came
        with a different body; None if there is none yet (or no key)."""
        if key is None or (stored := self.idempotency.lookup(key, log_size=self.audit.size)) is None:
            return None
        return self._replay(stored, hashlib.sha256(body).digest())

    def prepare_batch(self, body: bytes, batch: ReadBatch, *, key: str | None = None) -> Reply | Pending:
        """A `POST /v1/events` body read (`read_batch`): the final Reply (nothing to store), or the Pending batch
        of its valid events; counts the invalid ones. With an idempotency key, what to store under it: one that
        comes while the first is being appended is answered by `commit_async`, once that append is done (or has
        failed: then it is stored)."""
        events, refused = self._agents_only(batch)
        for _, error in refused:
            self.reject(error.reason)
        rejected = [{"index": index, "detail": str(error)} for index, error in refused]
        if not events and rejected:
            return Reply(422, {"error": "invalid_events", "detail": "no event in the batch is valid; see rejected",
                               "accepted": 0, "rejected": rejected})
        reply = Reply(200, {"accepted": len(events), "rejected": rejected})
        if not events:
            return reply
        if key is None:
            return Pending(tuple(events), reply)
        fingerprint = hashlib.sha256(body).digest()  # only a keyed request is replayed
        return Pending(tuple(events), reply,
                       (key, StoredReply(fingerprint, reply.status, json.dumps(reply.body).encode())))

    def _agents_only(self, batch: ReadBatch) -> tuple[list[Event], list[tuple[int, InvalidEvent]]]:
        """The batch's valid events but those naming an org as their agent (a service given the org's did where its
        agent's was wanted: its node would sign digests of an org as an agent), and every refused event's index in
        the batch and why, in index order."""
        invalid = {index for index, _ in batch.rejected}
        indexes = (index for index in range(len(batch.events) + len(invalid)) if index not in invalid)
        why = {agent: self.org_not_agent(agent) for agent in {event.agent for event in batch.events}}
        events, refused = [], list(batch.rejected)
        for index, event in zip(indexes, batch.events):
            if why[event.agent] is None:
                events.append(event)
            else:
                refused.append((index, InvalidEvent(f"agent: {event.agent} is an org ({why[event.agent]}), not an "
                                                    "agent")))
        return events, sorted(refused, key=lambda rejection: rejection[0])

    def prepare_spans(self, batch: SpanBatch) -> Reply | Pending:
        """The Pending events of an OTLP request's spans, or the Reply at once if none became an event (nothing to
        store: no write, no batch); counts the rejected and ignored spans, and logs the rejected (at most a line per
        reason a minute: node.span_rejection_log). The reply's body is `{"duplicates": n}`: spans already stored,
        or twice in the request, left out by the commit (accepted, and counted once)."""
        batch.reject_orgs(self.org_not_agent)
        for span in batch.rejected:
            self.reject(span.reason)
        self._spans.inc(len(batch.rejected), result="rejected")
        self._rejection_log.note(batch.rejected)
        self._spans.inc(batch.ignored.total(), result="ignored")
        for reason, count in batch.ignored.items():
            self._ignored.inc(count, reason=reason)
        if not batch.events:
            return Reply(200, {"duplicates": 0})
        spans = tuple(span_key(str(e.attrs.get("trace_id", "")), str(e.attrs.get("span_id", "")))
                      for e in batch.events)
        return Pending(tuple(batch.events), Reply(200, {"duplicates": 0}), spans=spans)

    def submit(self, events: Sequence[Event]) -> Appended | None:
        """Store validated events now, on this thread, and announce them; None for an empty batch. Without the
        write lock: for callers outside trio (tests, benchmarks), never beside a running digest service."""
        if not events:
            return None
        self.idempotency.settle()
        batch = self.audit.append(events)
        self._announce(batch)
        return batch

    def submit_json(self, body: bytes, *, key: str | None = None) -> Reply:
        """`prepare_json`, then store on this thread (for callers without trio, and tests)."""
        prepared = self.prepare_json(body, key=key)
        return prepared if isinstance(prepared, Reply) else self._finish(prepared, self._write(prepared))

    async def commit_async(self, pending: Pending) -> Reply:
        """Store a Pending batch, the commits in a worker thread; its reply."""
        async with self.write_lock:
            written = await trio.to_thread.run_sync(self._write, pending)
            return self._finish(pending, written)  # no checkpoint since the write: announced before anything else

    def _write(self, pending: Pending) -> Appended | StoredReply | SpansWritten:
        """Reserve the key (if any), then append; or the stored reply of a twin request that got there first. An
        OTLP request's events go to _write_spans."""
        self.idempotency.settle()
        if pending.spans is not None:
            return self._write_spans(pending, pending.spans)
        first = self.audit.size
        if pending.keyed is not None:
            key, reply = pending.keyed
            if (stored := self.idempotency.lookup(key)) is not None:
                return stored
            self.idempotency.reserve(key, reply, first=first, count=len(pending.events), at=self.audit.clock())
        try:
            return self.audit.append(pending.events)
        except BaseException:
            if pending.keyed is not None:
                self.idempotency.abandon(first)
            raise

    def _write_spans(self, pending: Pending, spans: tuple[bytes | None, ...]) -> SpansWritten:
        """Append an OTLP request's events but those of spans stored already or earlier in the request (their ids,
        saying the same: span_content), the ids and contents of those appended reserved first. A span of ids stored
        saying something else is no retry: it is appended too, and counted as conflicting."""
        stored = self.idempotency.stored_spans([span for span in spans if span is not None])
        events: list[Event] = []
        reserved: list[tuple[int, bytes]] = []
        first, conflicting = self.audit.size, 0
        for event, span in zip(pending.events, spans):
            if span is not None:
                content, contents = span_content(event), stored.setdefault(span, set())
                if content in contents or b"" in contents or contents and legacy_span_content(event) in contents:
                    continue  # (b"": stored before contents were kept; legacy: before their encoding was versioned)
                conflicting += bool(contents)
                contents.add(content)
                reserved.append((first + len(events), span + content))
            events.append(event)
        duplicates = len(pending.events) - len(events)
        if not events:
            return SpansWritten(None, duplicates)
        if reserved:
            self.idempotency.reserve_spans(reserved, first=first, at=self.audit.clock())
        try:
            return SpansWritten(self.audit.append(events), duplicates, conflicting)
        except BaseException:
            if reserved:
                self.idempotency.abandon(first)
            raise

    def _finish(self, pending: Pending, written: Appended | StoredReply | SpansWritten) -> Reply:
        if isinstance(written, SpansWritten):
            stored = 0 if written.appended is None else len(written.appended.events)
            self._spans.inc(stored, result="accepted")
            self._spans.inc(written.duplicates, result="duplicate")
            self._conflicting.inc(written.conflicting)
            if written.appended is not None:
                self._announce(written.appended)
            return Reply(200, {"duplicates": written.duplicates})
        if isinstance(written, StoredReply):  # only a keyed batch can meet a stored reply
            return self._replay(written, pending.keyed[1].fingerprint if pending.keyed else b"")
        self._announce(written)
        return pending.reply

    def _replay(self, stored: StoredReply, fingerprint: bytes | None) -> Reply:
        if stored.fingerprint != fingerprint:
            return Reply(422, {"error": "idempotency_key_reused",
                               "detail": "Idempotency-Key: already used for a different batch"})
        self._replays.inc()
        return Reply(stored.status, json.loads(stored.reply), replayed=True)

    def _announce(self, batch: Appended) -> None:
        self._batches.inc()
        self._accepted.inc(len(batch.events))
        for listener in self.listeners:
            try:
                listener(batch)
            except Exception:  # the events are stored: one failing consumer must not fail the reporter
                self._listener_errors.inc()
                log.exception("an ingest listener failed", extra={"fields": {"listener": repr(listener)}})
