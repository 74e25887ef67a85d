"""Behaviour telemetry from local services to their node (DESIGN §7): events recorded without waiting, sent in
batches to `POST /v1/events` every `flush_interval` seconds or `batch_size` events, from a daemon thread. A batch
is cut short where its body would pass the node's limit (MAX_BATCH_BYTES of JSON).

Memory is bounded: past `max_buffer` waiting events the oldest one waiting is dropped and counted (recent behaviour
tells more), the batch in flight included, however long it is retried. Each batch carries an Idempotency-Key, so a batch
retried after a lost answer is stored once. A batch the node cannot take now (5xx, 429, unreachable), whose answer is
not the node's account of it (not JSON, or no counts adding up to the batch: a proxy's page, another server at its
address), refused by what is not the node (a 3xx or 4xx not in its error format, such as a reverse proxy's 404 or 401
page: the node never saw the batch), whose token the node refuses (401, 403: its token changed, say; or its
Authorization header, as malformed, 400 with a WWW-Authenticate challenge: sent twice, a proxy in front adding its own;
a collector given the token's file reads it again at each post, so a rotated token is taken up at the next retry) or
that the node answers as sent where it has no such endpoint (404, 405: the collector's node URL names a path of the API)
is kept and retried with backoff; the last three hold every batch back until someone acts, so each is logged once as an
error until a post succeeds again. A batch refused as too large (413, by the node or by a proxy before it) is sent again
at once as two halves, down to single events: an event still refused alone is dropped, logged, and counted as rejected
if the node refused it, as dropped if a proxy did. Only a batch the node itself refuses for what it is (any other 4xx in
its error format, node/api/errors.py) is dropped and counted as rejected, and so are the events the node rejects of a
batch, all or some (logged, the first one's reason given), and so is an event JSON cannot carry (a NaN duration, an
attribute that is an object), logged; one whose attributes nest deeper than the node reads (node.strict_json.MAX_DEPTH),
for which the node would refuse the whole batch, is refused as it is recorded. A fault of the sender's own (a bug, an
HTTP stack's unexpected exception) drops the batch it held, counted as dropped and logged as an error, and sending goes
on; a sender thread ended by what is not an Exception (SystemExit raised in it) is started again by the next record(),
and sends the batch it held at once. `shutdown()` sends what is left, retrying, within one deadline (the post in
progress included, the last post cut at it), but not after the node refuses the token (unless its file now holds
another) or has no endpoint there, which no retry in its seconds changes; so does the process's exit if shutdown() was
not called, with one try a batch (no retries: it stops at the first that fails) within the collector's `timeout` in all.
What either could not send is logged, with its count and why (the refusal holding every batch back, if the last post got
one: not one an unreachable node followed), and stays counted in `buffered`. A process killed by a signal left at its
default (SIGTERM to a plain script) runs no exit handler: what was left is neither sent nor said (handle SIGTERM, as
uvicorn does, or call shutdown()).
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

import anyio
import httpx

from ..events import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_NAME
from ..strict_json import MAX_DEPTH, nested_deeper_than
from ._bounded import deadline
from ._env import default_node
from ._fork import in_forked_children
from ._http import NOT_THE_NODES, NodeApiError, NodeUnreachable, events_body, without_passwords
from ._log import log
from ._token_file import TokenFile, api_token_source
from .node_client import NodeClient

FLUSH_INTERVAL_S = 5.0
BATCH_SIZE = 100
MAX_BUFFER = 10_000
OUTCOMES = frozenset({"ok", "error", "denied", "timeout"})
_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 5.0)
MAX_ASKED_WAIT_S = 60.0  # the longest a refusal's Retry-After holds a retry back (within the drain's deadline)
# What events_body raises for an event JSON cannot carry (UnicodeEncodeError is a ValueError; RecursionError, for
# attributes within MAX_DEPTH, only from a thread whose stack is within that of the interpreter's recursion limit)
_UNENCODABLE = (TypeError, ValueError, RecursionError)
_UNREAD = frozenset({"not_json", "bad_answer"})  # a success answered with what is not the node's account of a batch
_TOKEN_REFUSED = ("the node refuses the telemetry API token (VOUCHNET_TOKEN: what the node's api.token holds, not "
                  "its path; VOUCHNET_TOKEN_FILE, that file's path, follows its rotation), or the Authorization header "
                  "carrying it")
_NOT_THE_NODE = ("what answers at the node's address refuses telemetry batches in a form that is not the node's (a "
                 "reverse proxy's page, another server?): the node never saw them")
# The node's answers to a post where it has no /v1/events: not found, or not a POST endpoint (VOUCHNET_NODE names a
# path of the API, such as http://host:8700/v1/events, where the node's address is wanted)
_NO_ENDPOINT = frozenset({404, 405})
_NO_EVENTS_ENDPOINT = ("the node has no POST /v1/events where the collector sends its batches (VOUCHNET_NODE names an "
                       "endpoint's path? give the node's address, such as http://127.0.0.1:8700)")
# The node's own refusals of every batch for what this process holds (its token: 401, 403; its node URL, naming a path
# of the API: 404, 405): shutdown() retries them no longer, as nothing in its few seconds changes them; the sender and
# flush() keep retrying, for the node's operator may put back the token the service holds
_LASTING = frozenset({401, 403, *_NO_ENDPOINT})
_NOT_THE_NODE_TOO_LARGE = ("what answers at the node's address (a reverse proxy's body size limit?) refuses a "
                           "telemetry event sent alone as too large (413, in a form that is not the node's): the node "
                           "never saw it")


@dataclass(frozen=True)
class CollectorStats:
    """Events recorded, accepted by the node, dropped (the oldest, when the buffer was full; recorded after
    shutdown; or too large alone for a proxy before the node), rejected by the node (each one invalid, or its batch
    refused), still waiting (after shutdown: those it could not send by its deadline, never sent); and posts that
    failed and were retried (the node down, busy, or refusing the token; or something else answering in its
    place)."""

    recorded: int
    sent: int
    dropped: int
    rejected: int
    buffered: int
    failed_posts: int


@dataclass(frozen=True)
class _Batch:
    """Events taken from the buffer to be sent together, as their body, under their Idempotency-Key."""

    events: list[dict[str, Any]]
    body: bytes
    key: str

    @classmethod
    def of(cls, events: list[dict[str, Any]], body: bytes | None = None) -> _Batch:
        """`events` (`body` if it is their events_body already) under a fresh key."""
        return cls(events, events_body(events) if body is None else body, uuid.uuid4().hex)


@dataclass(frozen=True)
class _HeldBack:
    """A post's refusal of every batch (TelemetryCollector._held_back): `why`, and whether it is one of the node's
    _LASTING refusals, which shutdown() retries no longer; a 400 with a challenge (the Authorization header
    malformed: a proxy adding its own, say) and a refusal not in the node's form are held back too, but retried."""

    why: str
    lasting: bool


class _Posted(Enum):
    """What became of a post of a batch."""

    SETTLED = "stored, or refused for good"
    RETRY = "kept, to be sent again under its Idempotency-Key after a backoff"
    SPLIT = "too large (413): to be sent at once as two halves, each under a key of its own"


class TelemetryCollector:
    """Batches behaviour events for the node at `node` (default $VOUCHNET_NODE, else the local node) with its API
    `token`, or the token the file `token_file` holds at each post (its `api.token`: the collector follows the token's
    rotation), by default $VOUCHNET_TOKEN or $VOUCHNET_TOKEN_FILE (ValueError without one). Record from any thread or
    event loop; nothing waits on the network. At most `max_buffer` events wait, in flight included.
    `timeout` bounds each post as a whole (seconds; a node that trickles its answer cannot hold the sender)."""

    def __init__(self, node: str | None = None, token: str | TokenFile | None = None, *,
                 token_file: str | os.PathLike[str] | None = None,
                 flush_interval: float = FLUSH_INTERVAL_S, batch_size: int = BATCH_SIZE,
                 max_buffer: int = MAX_BUFFER, timeout: float = 5.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_size: must be 1..{MAX_BATCH_EVENTS} (the node takes at most {MAX_BATCH_EVENTS} "
                             "events a batch)")
        if max_buffer < batch_size:
            raise ValueError("max_buffer: must hold at least one batch")
        if (token := api_token_source(token, token_file)) is None:
            raise ValueError("token: the node's API token is needed to report; pass it, or set $VOUCHNET_TOKEN to "
                             "what the node's api.token holds (or $VOUCHNET_TOKEN_FILE to that file's path)")
        self.flush_interval, self.batch_size, self.max_buffer = flush_interval, batch_size, max_buffer
        self._new_client = functools.partial(NodeClient, node or default_node(),
                                             token.current if isinstance(token, TokenFile) else token,
                                             timeout=timeout, transport=transport)
        self._client = self._new_client()
        self._token_file = token if isinstance(token, TokenFile) else None  # read again where the node refuses it
        self._shown_node = without_passwords(self._client.base_url)  # the node's address in the log
        self._buffer: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()  # the buffer and counters
        self._send_lock = threading.Lock()  # one sender at a time: the flusher, flush() or shutdown()
        # Batches taken from the buffer but not yet settled, the first in flight: one, or the parts of one split
        self._pending: deque[_Batch] = deque()
        self._in_flight = 0  # the events of the pending batches, kept under _lock for record()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False  # the sender thread runs: it closes the client if it outlives shutdown()
        self._closed = False  # shutdown() is done: whoever is last, it or the sender thread, closes the client
        self._recorded = self._sent = self._dropped = self._rejected = self._failed_posts = 0
        # What holds every batch back, or drops every event, if anything (logged once per spell).
        self._holding: str | None = None
        self._last_held_back: _HeldBack | None = None  # the last post's, if it got one (under _send_lock)
        self._asked_wait = 0.0  # seconds the last post's refusal asked to wait before a retry (Retry-After)
        in_forked_children(self._forked)

    def _forked(self) -> None:
        """In a child forked from this process (node.client._fork): no sender thread came along, and the events waiting
        are the parent's, which it sends (sent by both, they were stored twice: a batch's key is drawn as it is taken);
        the child starts afresh, on connections of its own, its sender started by its first record."""
        stopped = self._stopped.is_set()
        self._lock, self._send_lock = threading.Lock(), threading.Lock()
        self._wake, self._stopped = threading.Event(), threading.Event()
        if stopped:
            self._stopped.set()
        self._buffer.clear()
        self._pending.clear()
        self._in_flight = 0
        self._thread, self._running = None, False
        atexit.unregister(self._at_exit)  # (the parent's registration: the child's first record registers it again)
        self._recorded = self._sent = self._dropped = self._rejected = self._failed_posts = 0
        self._holding, self._last_held_back = None, None
        self._client = self._new_client()  # (the parent's is left as it is: closing it here could end its TLS)

    # --- recording --------------------------------------------------------------------------------------------

    def record(self, agent: str, category: str, name: str, outcome: str = "ok", *,
               duration_ms: float | None = None, high_risk: bool = False,
               attrs: dict[str, str | int | float | bool] | None = None) -> bool:
        """Queue one event (node/events.py's schema; a `name` past its MAX_NAME characters is cut to them, as a
        tool's may be twice as long); a full buffer drops its oldest waiting event to make room. False if this one
        was dropped: after shutdown, or when the batch in flight alone fills the buffer; or refused (counted as
        rejected, and logged): its `attrs` nest deeper than the node reads a body (node.strict_json.MAX_DEPTH), and
        the node would refuse the batch it went in, every event of it."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome: must be one of {', '.join(sorted(OUTCOMES))}, got {outcome!r}")
        event: dict[str, Any] = {"agent": agent, "ts": time.time_ns() // 1_000_000, "category": category,
                                 "name": name[:MAX_NAME], "outcome": outcome, "high_risk": high_risk}
        if duration_ms is not None:
            event["duration_ms"] = duration_ms
        if attrs:
            event["attrs"] = attrs
            if nested_deeper_than({"events": [event]}, MAX_DEPTH):  # (as in the body of its batch)
                return self._refused_too_deep(event)
        with self._lock:
            self._recorded += 1
            if self._stopped.is_set() or (self._in_flight >= self.max_buffer and not self._buffer):
                self._dropped += 1
                return False
            if len(self._buffer) + self._in_flight >= self.max_buffer:
                self._buffer.popleft()
                self._dropped += 1
            self._buffer.append(event)
            full = len(self._buffer) >= self.batch_size
        if not self._running:
            self._start()
        if full:
            self._wake.set()
        return True

    def _refused_too_deep(self, event: dict[str, Any]) -> bool:
        log.warning("a telemetry event whose attributes nest deeper than the node reads was dropped",
                    extra={"fields": {"name": event["name"], "max_depth": MAX_DEPTH}})
        with self._lock:
            self._recorded += 1
            self._rejected += 1
        return False

    def record_tool_call(self, agent: str, tool: str, outcome: str = "ok", duration_ms: float | None = None, *,
                         high_risk: bool = False, attrs: dict[str, str | int | float | bool] | None = None) -> bool:
        """A tool the agent called, and how it went."""
        return self.record(agent, "tool", tool, outcome, duration_ms=duration_ms, high_risk=high_risk, attrs=attrs)

    def record_mcp_operation(self, agent: str, operation: str, server: str, outcome: str = "ok",
                             duration_ms: float | None = None, *, high_risk: bool = False) -> bool:
        """An MCP request the agent made of `server` (`tools/call`, `resources/read`, ...)."""
        return self.record(agent, "mcp", operation, outcome, duration_ms=duration_ms, high_risk=high_risk,
                           attrs={"server": server})

    def record_a2a_delegation(self, agent: str, task: str, outcome: str = "ok", duration_ms: float | None = None,
                              *, peer: str | None = None) -> bool:
        """An A2A task: `agent` is the one whose behaviour it was (the sender of a task we took, or the agent we
        delegated to), `peer` the other side."""
        return self.record(agent, "a2a", task, outcome, duration_ms=duration_ms,
                           attrs={"peer": peer} if peer else None)

    def record_auth(self, agent: str, name: str, outcome: str) -> bool:
        """An authentication or authorisation event, e.g. a refused credential."""
        return self.record(agent, "auth", name, outcome)

    # --- sending ------------------------------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Send every waiting event now; True if all were acknowledged within `timeout` seconds (a post is cut
        there: its batch is kept)."""
        return self._drain_by(time.monotonic() + timeout)

    def shutdown(self, timeout: float = 10.0) -> CollectorStats:
        """Stop the timer and send what is left, retrying, all within `timeout` seconds (the post in progress
        included, the last post cut at the deadline), or until the node refuses the token or has no endpoint there;
        what is not sent by then is logged, saying why, and stays in `buffered`. Later records are dropped."""
        return self._close(time.monotonic() + timeout, retry=True)

    def _close(self, end: float, *, retry: bool) -> CollectorStats:
        """Stop, and send what is left by `end` (monotonic), retrying or with one try a batch."""
        self._stopped.set()
        self._wake.set()
        atexit.unregister(self._at_exit)
        if self._thread is not None:
            self._thread.join(max(0.0, end - time.monotonic()))
        self._drain_by(end, retry=retry)
        with self._lock:
            self._closed, close = True, not self._running
            left = len(self._buffer) + self._in_flight
            held_back = self._last_held_back
        if close:
            self._client.close()
        if left:
            why = held_back.why if held_back is not None else (
                "its deadline passed" if retry else "one try a batch at exit: one failed, or the deadline passed")
            log.warning("telemetry events shutdown could not send, lost (but a batch whose post is still in "
                        "progress)", extra={"fields": {"events": left, "node": self._shown_node, "why": why}})
        return self.stats

    async def ashutdown(self, timeout: float = 10.0) -> CollectorStats:
        """`shutdown` for async code (asyncio or trio), in a worker thread."""
        return await anyio.to_thread.run_sync(self.shutdown, timeout)

    def _at_exit(self) -> None:
        """What is left, sent as the process exits without shutdown(): one try a batch, within the timeout of one
        post in all."""
        self._close(time.monotonic() + self._client.timeout, retry=False)

    @property
    def stats(self) -> CollectorStats:
        with self._lock:
            waiting = len(self._buffer) + self._in_flight
            return CollectorStats(self._recorded, self._sent, self._dropped, self._rejected, waiting,
                                  self._failed_posts)

    def _start(self) -> None:
        """Start the sender thread, or start it again if it ended though not stopped (a BaseException out of a
        drain, which _drain_guarded lets through: SystemExit raised in it, say), to send at once the batch it held;
        the exit hook is registered once."""
        with self._lock:
            if self._running or self._stopped.is_set():  # (a record() that raced another, or shutdown())
                return
            first, self._running = self._thread is None, True
            self._thread = threading.Thread(target=self._run, name="vouchnet-telemetry", daemon=True)
            self._thread.start()
            if first:
                atexit.register(self._at_exit)
            else:
                self._wake.set()

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                if self._stopped.is_set():
                    return  # shutdown() drains, with its own deadline
                with self._send_lock:
                    self._drain_guarded(time.monotonic() + self.flush_interval, background=True)
        finally:
            with self._lock:
                self._running, close = False, self._closed
            if close:  # shutdown() ended while a post of ours was in progress
                self._client.close()

    def _drain_by(self, end: float, *, retry: bool = True) -> bool:
        """`_drain` by `end` (monotonic), the wait for the sender's post in progress included; False if that post
        outlasted it."""
        if not self._send_lock.acquire(timeout=max(0.0, end - time.monotonic())):
            return False
        try:
            return self._drain_guarded(end, retry=retry)
        finally:
            self._send_lock.release()

    def _drain_guarded(self, end: float, *, background: bool = False, retry: bool = True) -> bool:
        """`_drain`, which the caller holds the send lock for, surviving a fault of its own (a bug, or an HTTP stack's
        unexpected exception): the events in flight are dropped (counted, logged as an error with the traceback),
        and the sender, flush() and shutdown() go on with the rest; False then."""
        try:
            return self._drain(end, background=background, retry=retry)
        except Exception:
            with self._lock:
                lost, self._in_flight = self._in_flight, 0
                self._dropped += lost
            self._pending.clear()
            log.error("sending telemetry failed unexpectedly; the events in flight were dropped, the rest go on",
                      exc_info=True, extra={"fields": {"events": lost, "node": self._shown_node}})
            return False

    def _drain(self, end: float, *, background: bool = False, retry: bool = True) -> bool:
        """Send batches until none is left (True) or `end` passes (False); transient failures are retried, unless
        not to `retry` (then the first ends the drain). A post is cut at `end` (its batch kept), but in the
        background, where shutdown() interrupts the drain between posts and in the retries instead (and drains with
        its own deadline)."""
        attempt = 0
        while True:
            if background and self._stopped.is_set():
                return False
            if not self._pending and not self._take():
                return True
            batch = self._pending[0]
            if background:
                posted = self._post(batch)
            elif (left := end - time.monotonic()) <= 0:
                return False
            else:
                with deadline(left):
                    posted = self._post(batch)
            if posted is not _Posted.RETRY:
                self._pending.popleft()
                if posted is _Posted.SPLIT:  # (its events stay in flight)
                    half = len(batch.events) // 2
                    self._pending.extendleft([_Batch.of(batch.events[half:]), _Batch.of(batch.events[:half])])
                else:
                    with self._lock:
                        self._in_flight -= len(batch.events)
                attempt = 0
                continue
            backoff = max(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)], min(self._asked_wait, MAX_ASKED_WAIT_S))
            wait = min(backoff, end - time.monotonic())
            held_back = self._last_held_back
            if wait <= 0 or not retry or (self._stopped.is_set() and held_back is not None and held_back.lasting):
                return False
            attempt += 1
            if background:
                if self._stopped.wait(wait):
                    return False
            else:
                time.sleep(wait)

    def _take(self) -> bool:
        """The next batch, from the buffer to the pending: the oldest `batch_size` events waiting, or fewer where
        their body would pass the node's limit; False if none waits. Encoded once, out of the lock (record() waits
        for no encoding), and posted as encoded."""
        events: list[dict[str, Any]] = []
        while not events:
            with self._lock:
                events = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                self._in_flight = len(events)
            if not events:
                return False
            try:
                body = events_body(events)
            except _UNENCODABLE:
                events = self._encodable(events)
                body = events_body(events)
        if len(body) > MAX_BATCH_BYTES and (fits := _fitting(events)) < len(events):
            with self._lock:  # the rest waits again, the oldest first
                self._buffer.extendleft(reversed(events[fits:]))
                self._in_flight = fits
            events, body = events[:fits], events_body(events[:fits])
        self._pending.append(_Batch.of(events, body))
        return True

    def _encodable(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`events` but those JSON cannot carry (a NaN, a lone surrogate, an object for an attribute, attributes
        nested too deep for the stack encoding them: the caller's mistake), which are dropped, counted as rejected and
        logged."""
        kept = []
        for event in events:
            try:
                events_body([event])
            except _UNENCODABLE as error:
                log.warning("a telemetry event JSON cannot carry was dropped", extra={"fields": {"error": error}})
                with self._lock:
                    self._rejected += 1
                    self._in_flight -= 1
            else:
                kept.append(event)
        return kept

    def _post(self, batch: _Batch) -> _Posted:
        """Post one batch, and say what became of it.

        A batch refused as too large (413) was stored by no one: the node refuses one before it stores any of it,
        and a proxy's refusal never reached the node. So its halves may go under new keys, with nothing stored twice."""
        self._last_held_back, self._asked_wait = None, 0.0
        try:
            reply = self._client.report_events_body(batch.body, idempotency_key=batch.key)
        except NodeApiError as error:
            if error.status == 413 and len(batch.events) > 1:
                log.debug("a telemetry batch was refused as too large; sent again in halves",
                          extra={"fields": {"events": len(batch.events), "error": error}})
                return _Posted.SPLIT
            if error.status >= 500 or error.status == 429 or error.code in _UNREAD:
                self._count_failure(error)
                return _Posted.RETRY
            if error.status == 413 and error.code == NOT_THE_NODES:
                with self._lock:  # said once until an event goes through: a proxy may refuse every event
                    self._dropped += 1
                    first, self._holding = self._holding != _NOT_THE_NODE_TOO_LARGE, _NOT_THE_NODE_TOO_LARGE
                if first:
                    log.warning(f"{_NOT_THE_NODE_TOO_LARGE}; dropped, and so are the next such events, unsaid until "
                                "one goes through", extra={"fields": {"name": batch.events[0]["name"], "error": error}})
                return _Posted.SETTLED
            if error.code == NOT_THE_NODES or error.status in (401, 403) or error.challenge is not None:
                self._held_back(_NOT_THE_NODE if error.code == NOT_THE_NODES else _TOKEN_REFUSED, error)
                return _Posted.RETRY
            if error.status in _NO_ENDPOINT:
                self._held_back(_NO_EVENTS_ENDPOINT, error)
                return _Posted.RETRY
            if error.rejected:  # 422 invalid_events: none of the batch valid, each one's reason given
                _log_rejected(batch, error.rejected)
            else:
                log.warning("the node refused a telemetry batch; dropped",
                            extra={"fields": {"events": len(batch.events), "error": error}})
            with self._lock:
                self._rejected += len(batch.events)
            return _Posted.SETTLED
        except NodeUnreachable as error:
            self._count_failure(error)
            return _Posted.RETRY
        accepted, rejected = reply["accepted"], reply["rejected"]  # NodeClient checked their types
        if accepted + len(rejected) != len(batch.events):  # not the node's account of this batch: keep it
            self._count_failure(NodeApiError(200, "bad_answer", "/v1/events: accepted and rejected do not add up to "
                                                                "the batch"))
            return _Posted.RETRY
        with self._lock:
            self._sent += accepted
            self._rejected += len(rejected)
            self._holding = None
        if rejected:
            _log_rejected(batch, rejected)
        return _Posted.SETTLED

    def _held_back(self, why: str, error: NodeApiError) -> None:
        """Every batch is refused, though not by the node for what it holds (`why`: the node refuses our API token,
        or what answers in its place refuses them): the events are not at fault, so they are kept (someone fixes
        the token or the proxy, the batches go through); said once as an error, since nothing is reported until
        then."""
        with self._lock:
            first, self._holding = self._holding != why, why
        renewed = error.status in (401, 403) and self._token_file is not None and self._token_file.renewed()
        self._last_held_back = _HeldBack(why, error.code != NOT_THE_NODES and error.status in _LASTING and not renewed)
        if first:
            log.error(f"{why}; events are kept and retried, the oldest dropped once the buffer is full",
                      extra={"fields": {"node": self._shown_node, "error": error}})
        self._count_failure(error)

    def _count_failure(self, error: Exception) -> None:
        """A post to retry: counted, and its Retry-After (a 429's or 503's: the node busy, its storage failing) kept
        as the least wait before the retry, as RFC 9110 asks (the backoff alone retried a busy node after 0.25 s)."""
        if isinstance(error, NodeApiError) and error.retry_after is not None:
            self._asked_wait = error.retry_after
        with self._lock:
            self._failed_posts += 1
        log.info("telemetry post failed; will retry", extra={"fields": {"error": error}})


_EMPTY_BODY = len(events_body([]))


def _log_rejected(batch: _Batch, rejected: list[dict[str, Any]]) -> None:
    """A warning that the node refused events of a batch (`rejected`, its `{index, detail}` entries: some of a batch
    it took, or all of one it refused as 422 invalid_events): how many, and the first one's name and agent with the
    node's reason, which names the field it breaks (an agent given by name, not did:key, say). Each such event is
    dropped for good; the rest of its batch, if any, was stored."""
    first = rejected[0]
    index = first.get("index")
    event = batch.events[index] if type(index) is int and 0 <= index < len(batch.events) else {}
    log.warning("the node rejected telemetry events; dropped", extra={"fields": {
        "events": len(rejected), "of": len(batch.events), "name": event.get("name"), "agent": event.get("agent"),
        "error": first.get("detail")}})


def _fitting(events: list[dict[str, Any]]) -> int:
    """How many of `events`, from the first, one body of at most MAX_BATCH_BYTES holds (one at least: the node
    refuses an event too large alone)."""
    size = _EMPTY_BODY - len(",")
    for count, event in enumerate(events):
        size += len(events_body([event])) - _EMPTY_BODY + len(",")
        if size > MAX_BATCH_BYTES:
            return max(count, 1)
    return len(events)
