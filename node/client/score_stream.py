"""Following the node's `/v1/stream` (server-sent events, WHATWG HTML §9.2) from a daemon thread: score and tier
changes reach a callback, once each (the node announces a tier change as a `score` event and then a `tier` event of
the same data, node.trust: the second is not passed on), a `reset` (or a first connection) tells the caller to drop
what it cached.

A thread rather than a task: it serves sync code, threads and any asyncio loop alike, needs no trio, and as a
daemon it never keeps the process alive. A node that goes quiet (no line for IDLE_S: it sends a keep-alive every
15 s) or sends a line (or an event's data) over MAX_LINE bytes is left, and the stream reconnects, with a reset.
A failed connection is tried again after RECONNECT_S, doubled at each failure in a row up to 30 s and jittered (as
node.client._breaker backs off); a refused connection's Retry-After (a node serving as many streams as it may) is
waited out before reconnecting, MAX_RETRY_AFTER_S at most (`reconnect_wait`). A connection the node answers
closes the breaker of its address (node.client._breaker): the node is back, so the policy's requests go at once.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import httpx

from . import _breaker
from ._bounded import IDENTITY, bounded_transport, deadline, renew
from ._breaker import interval
from ._fork import in_forked_children
from ._http import normal_url, without_passwords
from ._log import log

RECONNECT_S = 1.0
MAX_RETRY_AFTER_S = 60.0  # the longest a node's Retry-After holds a reconnect back (it refuses streams past its cap)
CLOSE_WAIT_S = 5.0  # the longest close() waits for the thread, which ends at once once its socket is shut
IDLE_S = 45.0  # the longest wait for a line; the node sends a keep-alive comment every 15 s
MAX_LINE = 64 * 1024  # bytes; the node's lines are a few hundred
# Streams of one node followed at once by this process past which it says (once) that they pile up: a service makes
# one Vouchnet, and each stream is a thread here and a connection of the node's 256 (node.stream.MAX_CLIENTS) there
MANY_STREAMS = 8
_EOL = re.compile(rb"\r\n|\r|\n")


class TooLong(ValueError):
    """A line of the stream is longer than MAX_LINE bytes, or the data of one event than MAX_LINE characters."""


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its type, data (lines joined) and id (the last one seen)."""

    event: str
    data: str
    id: str | None


class SseParser:
    """Fed one line at a time (without its newline), hands back each event completed by a blank line; raises
    TooLong once an event's data passes MAX_LINE."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self._event = ""
        self._data: list[str] = []
        self._size = 0  # of the data so far (characters), bounded as a line is

    def feed(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self.last_id)
            self._event, self._data, self._size = "", [], 0
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._size += len(value) + 1
            if self._size > MAX_LINE:
                raise TooLong(f"/v1/stream: an event's data longer than {MAX_LINE} characters")
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None


@dataclass(frozen=True)
class ScoreChange:
    """The node's announcement that an agent's score (and maybe tier), or the tools it holds scoped vouches for,
    changed; `scopes` None: the node did not say (one older than scoped checks). `scopes_complete` false: the agent
    holds scoped vouches for more tools than the node lists (node.trust.listed_scopes), so that any tool's check
    may differ from its general score. Also announced when who operates the agent changed: `issuers`, the org keys
    whose agent credentials stand for it (the first 64, node.trust.listed_issuers), `issuers_complete` (false:
    there are more, and of a key not listed only the node can say), and `cold_start`, the score a credential of
    any other key is decided on; `issuers` and `cold_start` None: the node did not say (one older than this SDK, or
    a malformed list). `previous_score` and `previous_tier`: what the node said of the agent before (None: it did not
    say), so that a tier change is `tier != previous_tier`."""

    agent: str
    score: int
    tier: str
    scopes: tuple[str, ...] | None = None
    scopes_complete: bool = True
    issuers: tuple[str, ...] | None = None
    cold_start: int | None = None
    issuers_complete: bool = True
    previous_score: int | None = None
    previous_tier: str | None = None


def valid_scopes(scopes: object, complete: object) -> bool:
    """Whether a node's `scopes` and `scopes_complete` (in a stream event or a check answer) are a list of tool
    names and a boolean."""
    return type(scopes) is list and all(isinstance(tool, str) for tool in scopes) and type(complete) is bool


def valid_issuers(issuers: object, complete: object, cold_start: object) -> bool:
    """Whether a node's `issuers`, `issuers_complete` and `cold_start` (in a stream event or a check answer:
    node.trust.listed_issuers) are a list of org keys, a boolean and an integer."""
    return (type(issuers) is list and all(isinstance(key, str) for key in issuers) and type(complete) is bool
            and type(cold_start) is int)


def score_change(event: SseEvent) -> ScoreChange | None:
    """The change a `score` or `tier` event announces; None for any other event or a malformed one. Its `issuers`,
    `issuers_complete` (true if absent: a node that lists them all) and `cold_start` are taken only together and
    well-formed: else the change says nothing of who operates the agent, and a cache drops what it kept of that
    (TrustPolicy._changed), as for a node that does not say."""
    if event.event not in ("score", "tier"):
        return None
    try:
        data = json.loads(event.data)
        scopes, issuers, cold_start = data.get("scopes"), data.get("issuers"), data.get("cold_start")
        complete = data.get("issuers_complete", True)
        operators = ((tuple(issuers), cold_start, complete) if valid_issuers(issuers, complete, cold_start)
                     else (None, None))
        previous_score, previous_tier = data.get("previous_score"), data.get("previous_tier")
        change = ScoreChange(data["agent"], data["score"], data["tier"], None if scopes is None else tuple(scopes),
                             data.get("scopes_complete", True), *operators,
                             previous_score=previous_score if type(previous_score) is int else None,
                             previous_tier=previous_tier if isinstance(previous_tier, str) else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring a malformed stream event", extra={"fields": {"event": event.event}})
        return None
    if not (isinstance(change.agent, str) and type(change.score) is int and isinstance(change.tier, str)
            and valid_scopes([] if scopes is None else scopes, change.scopes_complete)):
        return None
    return change


class _Following:
    """The streams this process follows, by node; says once, as a warning, when one node's reach MANY_STREAMS: a
    Vouchnet (or TrustPolicy) made per request and never closed leaks a thread and a connection each, and takes the
    node's streams from every other service of the org (theirs then refused: their caches kept only by cache_ttl)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, set[ScoreStream]] = {}
        self._said = False
        in_forked_children(self._forked)

    def _forked(self) -> None:
        """In a child forked from this process (node.client._fork): it follows none of the parent's streams."""
        self._lock = threading.Lock()
        self._streams = {}

    def started(self, stream: ScoreStream) -> None:
        with self._lock:
            streams = self._streams.setdefault(stream.base_url, set())
            streams.add(stream)
            count = len(streams)
            say = count >= MANY_STREAMS and not self._said
            self._said = self._said or say
        if say:
            log.warning(f"this process follows {count} streams of the node at {stream.shown_url}, a thread and "
                        "one of the node's connections each: make one Vouchnet (or TrustPolicy) per service, not per "
                        "request, and close it; or pass TrustPolicy(listen=False) (said once)",
                        extra={"fields": {"node": stream.shown_url}})

    def ended(self, stream: ScoreStream) -> None:
        """`stream` is followed no more (if it was not, nothing changes)."""
        with self._lock:
            self._streams.get(stream.base_url, set()).discard(stream)

    def count(self, node: str) -> int:
        """How many streams of `node` this process follows."""
        with self._lock:
            return len(self._streams.get(node, ()))


FOLLOWING = _Following()


class ScoreStream:
    """Follows `base_url`'s `/v1/stream`: `on_change` for each score change, `on_reset` whenever what was cached
    may have missed changes (the first connection, a node restart, a gap the node cannot replay)."""

    def __init__(self, base_url: str, *, on_change: Callable[[ScoreChange], None], on_reset: Callable[[], None],
                 reconnect: float = RECONNECT_S) -> None:
        self.base_url = normal_url(base_url)
        self.shown_url = without_passwords(self.base_url)  # the node's address in the log
        self.connected = threading.Event()
        self._on_change, self._on_reset = on_change, on_reset
        self._reconnect = reconnect
        self._stop = threading.Event()
        self._socket: socket.socket | None = None  # the connection's, once the node answered
        self._waiting = threading.Event()  # set while a connection waits for the node's answer
        self._http = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(5.0, read=IDLE_S),
                                  transport=bounded_transport())
        self._thread = threading.Thread(target=self._run, name="vouchnet-score-stream", daemon=True)

    def start(self) -> None:
        FOLLOWING.started(self)  # until close() or the thread's end, whichever is first
        self._thread.start()

    def close(self) -> None:
        """Stop following, and wait for the thread to end (at once: its socket is shut under the read it is blocked
        in; closing the client from another thread would not wake it); `connected` is then clear. A thread still
        waiting for the node's first answer has no socket to shut yet, and is not waited for: it ends at its
        deadline, and sees the stop before calling anything (a hung node held close() CLOSE_WAIT_S). No callback
        starts once close() has begun: not for the events already read, nor when a callback itself closes."""
        self._stop.set()
        FOLLOWING.ended(self)  # its thread, still waiting for a hung node, may be left to end by itself
        sock = self._socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
        self._http.close()
        if (sock is not None or not self._waiting.is_set()) and self._thread.is_alive() and (
                self._thread is not threading.current_thread()):  # on_change may close
            self._thread.join(CLOSE_WAIT_S)
        self.connected.clear()

    def _run(self) -> None:
        try:
            self._follow_until_closed()
        finally:
            FOLLOWING.ended(self)

    def _follow_until_closed(self) -> None:
        """Follow, and reconnect after `reconnect` seconds, doubled at each failure in a row to connect, up to
        node.client._breaker's MAX_S, and jittered, as the breaker of the node's requests backs off (a refusal's
        Retry-After may hold it longer: `reconnect_wait`)."""
        parser = SseParser()
        failures = 0  # in a row, since the stream was last connected
        while not self._stop.is_set():
            refusal: Exception | None = None
            try:
                self._follow(parser)
            except (httpx.HTTPError, RuntimeError) as error:  # RuntimeError: the client was closed under us
                if self._stop.is_set():
                    return
                refusal = error
                log.info("score stream disconnected",  # (httpx's refusal names the URL, password and all)
                         extra={"fields": {"node": self.shown_url, "error": without_passwords(str(error))}})
            except Exception as error:  # anything else must not end the thread: the caches would go stale unseen
                if self._stop.is_set():
                    return
                log.warning("score stream failed",
                            extra={"fields": {"node": self.shown_url, "error": without_passwords(repr(error))}})
                parser = SseParser()  # what came after the failure is lost: start afresh, with a reset
            failures = 1 if self.connected.is_set() else failures + 1
            wait = interval(failures, random.random(), first=self._reconnect)
            self.connected.clear()
            self._stop.wait(wait if refusal is None else reconnect_wait(refusal, wait))

    def _follow(self, parser: SseParser) -> None:
        headers = {"Accept": "text/event-stream", **IDENTITY}  # lines are capped as sent: none inflates past it
        if parser.last_id is not None:
            headers["Last-Event-ID"] = parser.last_id
        self._socket = None
        self._waiting.set()  # cleared once the node answered, or the connection failed
        try:
            with deadline(IDLE_S), self._http.stream("GET", "/v1/stream", headers=headers) as response:
                self._socket = response.extensions["network_stream"].get_extra_info("socket")
                self._waiting.clear()
                response.raise_for_status()
                if self._stop.is_set():
                    return
                _breaker.BREAKERS.of(self.base_url).answered()  # the node is back: its requests need not wait
                if parser.last_id is None:
                    self._on_reset()  # whatever was cached before we listened may be stale
                self.connected.set()
                announced: ScoreChange | None = None  # the last `score` event's change, which its `tier` event repeats
                for line in _lines(response.iter_raw(), MAX_LINE):
                    renew(IDLE_S)  # an idle bound, not a total one: the stream lasts as long as the node sends
                    event = parser.feed(line)
                    if event is None:
                        continue
                    if self._stop.is_set():  # closed meanwhile (by a callback, say): dispatch no more
                        return
                    if event.event == "reset":
                        announced = None
                        self._on_reset()
                    elif (change := score_change(event)) is not None and not (event.event == "tier"
                                                                               and change == announced):
                        announced = change if event.event == "score" else None
                        self._on_change(change)
        finally:
            self._waiting.clear()


def reconnect_wait(error: Exception, reconnect: float) -> float:
    """How long to wait before reconnecting after `error`: a refusal's Retry-After in seconds (a node serving as
    many streams as it may answers 503 with one; node.stream), at most MAX_RETRY_AFTER_S, else `reconnect`."""
    if not isinstance(error, httpx.HTTPStatusError):
        return reconnect
    after = error.response.headers.get("retry-after", "")
    return min(max(float(after), reconnect), MAX_RETRY_AFTER_S) if after.isascii() and after.isdigit() else reconnect


def _lines(chunks: Iterable[bytes], limit: int) -> Iterator[str]:
    """The lines of a stream (ended by CRLF, LF or CR, WHATWG HTML §9.2.5), as UTF-8 (a broken sequence replaced,
    so its event fails to parse instead of the stream); raises TooLong past `limit` bytes without an end."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        start = 0
        while (end := _EOL.search(pending, start)) is not None:
            if end.group() == b"\r" and end.end() == len(pending):
                break  # maybe the first half of a CRLF split across chunks
            if end.start() - start > limit:
                break  # left pending, and refused below: a whole chunk may hold one line over the limit
            yield pending[start:end.start()].decode(errors="replace")
            start = end.end()
        pending = pending[start:]
        if len(pending) > limit:
            raise TooLong(f"/v1/stream: a line longer than {limit} bytes")
