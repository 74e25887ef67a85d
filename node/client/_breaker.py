"""A circuit breaker per node address (DESIGN §8, fail closed), shared by the requests a decision waits on (the
policy's, the credential verifier's): after a request to an address got no answer (refused, timed out, unreadable;
or a gateway's 502, 503 or 504 not in the node's error form: a proxy in front of it that could not reach it, counted
as a failure as Envoy's outlier detection counts gateway errors; or an answer longer than the caller's cap, on
every path alike: see `_no_answer`), further requests to it fail at once, as
NodeUnreachable saying why and when the address is tried again, for an interval that starts at FIRST_S and doubles
with each failure in a row up to MAX_S, jittered; once it has passed, one request at a time goes through (the probe;
the others still fail at once, for MAX_S at most: a probe that has not ended by then, its task stalled or its thread
lost to a fork, no longer holds them back), and the first answer closes the breaker, as does the node's score stream
connecting again (node.client.score_stream: the node is back, whatever is left of the interval). gRPC's and Envoy's
outlier ejection and Finagle's failure accrual do the same: a hung or down node costs a call microseconds, not the
request's timeout.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from ._fork import in_forked_children
from ._http import NOT_THE_NODES, BodyTooLarge, NodeApiError, NodeUnreachable, refusal, without_passwords

FIRST_S = 1.0  # the interval after a first failure
MAX_S = 30.0  # the longest interval, after failures in a row
GATEWAY_FAILURES = frozenset({502, 503, 504})  # a proxy's answers that say it could not reach the node
JITTER = 0.2  # an interval is drawn from [1 - JITTER, 1] of its nominal length: services do not probe in step


class NodeFailing(NodeUnreachable):
    """The address failed recently and is not asked until its interval has passed (or a probe is in flight)."""


def interval(failures: int, draw: float, first: float = FIRST_S) -> float:
    """The interval after `failures` failures in a row (1 or more): `first`, doubled at each failure after the
    first, up to MAX_S (or `first`, if longer); `draw`, in [0, 1), its jitter."""
    return min(first * 2 ** min(failures - 1, 32), max(MAX_S, first)) * (1 - JITTER * draw)


class Breaker:
    """The breaker of one address; `clock` gives monotonic seconds, `draw` a number in [0, 1) for the jitter."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 draw: Callable[[], float] = random.random) -> None:
        self._clock, self._draw = clock, draw
        self._lock = threading.Lock()
        self._failures = 0  # in a row; 0: closed
        self._failed_at = self._retry_at = 0.0
        self._why = ""
        self._probing = False
        self._probe_lapses = 0.0  # when the probe in flight no longer holds the other requests back

    @contextmanager
    def attempt(self, failure: type[BaseException] | tuple[type[BaseException], ...] = NodeUnreachable,
                what: str = "") -> Iterator[None]:
        """A request to the address, if the breaker lets it go (else NodeFailing): an exception of `failure` out of
        the block, or what `_no_answer` counts as none, opens the breaker (or keeps it open, longer for a probe), and
        is what NodeFailing then says, after `what`; anything else the address answered closes it, and a
        cancellation or interrupt leaves it as it was (a probe's turn goes to the next request)."""
        probe = self._admit()
        try:
            yield
        except failure as error:
            self._failed(probe, f"{what}{str(error) or type(error).__name__}")
            raise
        except Exception as error:  # the address answered, with a refusal or an answer the caller refuses
            if _no_answer(error):  # (... but a proxy's, for a node it could not reach, or one past the cap)
                self._failed(probe, f"{what}{error}")
            else:
                self.answered()
            raise
        except BaseException:
            self._released(probe)
            raise
        self.answered()

    def _admit(self) -> bool:
        """Whether the request is the probe (True), or goes with the breaker closed (False); NodeFailing if it may
        not go."""
        with self._lock:
            if self._failures == 0:
                return False
            now = self._clock()
            if now >= self._retry_at and (not self._probing or now >= self._probe_lapses):
                self._probing, self._probe_lapses = True, now + MAX_S
                return True
            wait = (f"for {self._retry_at - now:.1f} s" if now < self._retry_at
                    else "until the request trying it now ends")
            raise NodeFailing(f"{self._why} ({now - self._failed_at:.1f} s ago, {self._failures} failure"
                              f"{'s' if self._failures > 1 else ''} in a row: not asked again {wait})")

    def _failed(self, probe: bool, why: str) -> None:
        with self._lock:
            if self._failures and not probe:  # a request let go before the breaker opened: the interval stands
                return
            self._probing = False
            self._failures += 1
            self._failed_at = self._clock()
            self._retry_at = self._failed_at + interval(self._failures, self._draw())
            self._why = without_passwords(why)  # said to the callers of every client of the address

    def answered(self) -> None:
        """The address answered (a request through the breaker, or the node's stream connecting: a node back from a
        restart): the breaker closes, and requests go at once rather than after the rest of the interval."""
        with self._lock:
            self._failures, self._probing = 0, False

    def _released(self, probe: bool) -> None:
        if probe:
            with self._lock:
                self._probing = False


class Breakers:
    """The breakers of a process, one per origin (scheme, host, port): every client of one node shares one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 draw: Callable[[], float] = random.random) -> None:
        self._clock, self._draw = clock, draw
        self._lock = threading.Lock()
        self._by_origin: dict[tuple[str, str, int | None], Breaker] = {}
        in_forked_children(self._forked)

    def _forked(self) -> None:
        """In a child forked from this process (node.client._fork): breakers afresh, as one whose lock or probe a
        thread of the parent held as it forked would hold its address back."""
        self._lock = threading.Lock()
        self._by_origin = {}

    def of(self, url: str) -> Breaker:
        """The breaker of `url`'s origin."""
        parsed = httpx.URL(url)
        origin = (parsed.scheme, parsed.host, parsed.port)
        with self._lock:
            if (breaker := self._by_origin.get(origin)) is None:
                breaker = self._by_origin[origin] = Breaker(self._clock, self._draw)
            return breaker


BREAKERS = Breakers()


def _no_answer(error: Exception) -> bool:
    """Whether `error`, out of a request something answered, counts as no answer (a failure), on the policy's path
    and the fetches of keys and status lists alike:

    - a proxy's word that it could not reach the node (a node's own 503 is in its error form): a client's
      NodeApiError, or the httpx status error of a fetch of keys or a status list (_bounded.get_capped, which reads
      its body first);
    - an answer longer than the caller's cap (BodyTooLarge: a fetch's; the clients' own reach the breaker as the
      NodeUnreachable it becomes, _http.too_large). A server whose answer runs past a cap set well above any it
      gives is broken or hostile: the caller can use that answer no more than none, and each request to it costs
      the cap's bytes, or the whole timeout if trickled, which is the cost the breaker spares a decision. Counted
      as an answer, it would close the breaker (a fetch of keys closing the one the policy shares), so that such a
      server made every check wait on it again."""
    if isinstance(error, BodyTooLarge):
        return True
    if isinstance(error, httpx.HTTPStatusError):
        error = refusal(error.response)
    return isinstance(error, NodeApiError) and error.code == NOT_THE_NODES and error.status in GATEWAY_FAILURES
