"""A hostile node, issuer or stream that trickles its answer, or sends too much (a decision's answer, a JWKS, a
status list, a stream line), costs the SDK a bounded time and memory: each request fails closed within its
`timeout` as a whole, and past its size cap; the stream leaves a node that goes quiet mid-line or sends an
oversized line or event, and reconnects."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from nacl.signing import SigningKey
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from node.client import (
    AsyncTrustClient,
    CredentialVerifier,
    NodeClient,
    NodeUnreachable,
    TelemetryCollector,
    TrustPolicy,
    UnverifiedAgent,
    score_stream,
)
from node.client import _breaker
from node.client._http import MAX_DECISION_ANSWER
from node.client.identity import JWKS_PATH, MAX_JWKS, MAX_LIST_TOKEN
from node.client.score_stream import MAX_LINE, ScoreStream
from node.credential_status import LIST_ENTRIES, status_entry
from node.credentials import agent_credential, jwks

from ..factories import API_TOKEN, new_did
from .loopback import serving_in_thread
from .stub_org import StubOrg, did_of, serving
from .test_policy import _change, _StubStream
from .trickling import LAST_S, TRICKLED_BODY, TRICKLED_HEADERS, TRICKLED_STREAM, trickling

TIMEOUT = 0.5
BOUND = 3.0  # the timeout and then some for a loaded machine: far below LAST_S, which an unbounded request waits
TRICKLES = {"headers": (TRICKLED_HEADERS, b"a"), "body": (TRICKLED_BODY, b" ")}


def _elapsed(start: float) -> float:
    return time.monotonic() - start


@pytest.mark.parametrize("part", TRICKLES, ids=[f"trickled {part}" for part in TRICKLES])
def test_a_node_that_trickles_its_answer_fails_the_check_closed_within_the_timeout(part, monkeypatch):
    agent = new_did()
    with trickling(*TRICKLES[part]) as (url, _):
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT)
        try:
            for check in (lambda: policy.check(agent), lambda: asyncio.run(policy.acheck(agent))):
                # each client meets the node afresh, not the breaker the other's failure opened (test_breaker.py)
                monkeypatch.setattr(_breaker, "BREAKERS", _breaker.Breakers())
                start = time.monotonic()
                decision = check()
                assert _elapsed(start) < BOUND < LAST_S
                assert (decision.verdict, decision.source) == ("block", "unreachable")
                assert f"did not answer within {TIMEOUT} s; failing closed" in decision.reason
        finally:
            policy.close()


def test_the_deadline_bounds_the_whole_request_not_each_read():
    with trickling(*TRICKLES["body"]) as (url, _), NodeClient(url, timeout=TIMEOUT) as client:
        start = time.monotonic()
        with pytest.raises(NodeUnreachable, match=f"within {TIMEOUT} s"):
            client.score(new_did())
        assert TIMEOUT <= _elapsed(start) < BOUND


def test_a_node_that_trickles_its_answer_holds_a_telemetry_post_only_for_the_timeout():
    with trickling(*TRICKLES["body"]) as (url, _):
        collector = TelemetryCollector(url, API_TOKEN, flush_interval=3600, timeout=TIMEOUT)
        collector.record_tool_call(new_did(), "search")
        start = time.monotonic()
        assert not collector.flush(timeout=TIMEOUT)
        assert _elapsed(start) < BOUND
        stats = collector.shutdown(timeout=0)
        assert (stats.sent, stats.buffered) == (0, 1) and stats.failed_posts >= 1


@pytest.mark.parametrize("part", TRICKLES, ids=[f"trickled {part}" for part in TRICKLES])
def test_an_issuer_that_trickles_its_keys_verifies_nothing_within_the_timeout(part):
    with trickling(*TRICKLES[part]) as (url, _):
        verifier = CredentialVerifier([url], timeout=TIMEOUT)
        start = time.monotonic()
        with pytest.raises(UnverifiedAgent, match="cannot fetch the keys"):
            verifier.verify(agent_credential(SigningKey.generate(), new_did()))
        assert _elapsed(start) < BOUND


def test_a_host_name_that_does_not_resolve_in_time_fails_within_the_timeout(monkeypatch):
    """The deadline bounded a connection's reads, writes and connect, not the resolution of its host's name
    (getaddrinfo blocks for as long as the resolver's timeouts and retries, seconds to tens of seconds): an issuer
    whose name server is slow, or a status list's URL naming a host of its issuer's choosing, held the check that
    long, and with it every other fetch of the verifier."""
    resolving, released = threading.Event(), threading.Event()
    resolve = socket.getaddrinfo

    def stuck(host, *args, **kwargs):
        if host != "stuck.invalid":
            return resolve(host, *args, **kwargs)
        resolving.set()
        released.wait(LAST_S)  # as long as an unbounded request waits, unless the test is over
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", stuck)
    try:
        verifier = CredentialVerifier(["http://stuck.invalid:8700"], timeout=TIMEOUT)
        start = time.monotonic()
        with pytest.raises(UnverifiedAgent, match="cannot fetch the keys .*deadline passed"):
            verifier.verify(agent_credential(SigningKey.generate(), new_did()))
        assert resolving.is_set() and _elapsed(start) < BOUND
    finally:
        released.set()


def test_a_connection_made_past_the_deadline_is_closed():
    """The connect left to finish in its thread (above) opens a socket no one uses: it is closed, not leaked."""
    import httpcore

    from node.client._bounded import _within

    released, closed = threading.Event(), threading.Event()

    def late_connect():
        released.wait(LAST_S)
        return SimpleNamespace(close=closed.set)

    with pytest.raises(httpcore.ConnectTimeout, match="deadline passed resolving or connecting to stuck.invalid"):
        _within(0.01, late_connect, "stuck.invalid")
    released.set()
    assert closed.wait(LAST_S)


@pytest.mark.parametrize("trickle", [(TRICKLED_HEADERS, b"a"), (TRICKLED_STREAM, b" ")],
                         ids=["trickled headers", "trickled body of no stated length"])  # a stated one is capped
def test_a_status_list_that_trickles_fails_revocation_closed_within_the_timeout(trickle):
    key = SigningKey.generate()
    org = StubOrg([key])
    with serving(org), trickling(*trickle) as (url, _):
        verifier = CredentialVerifier([org.url], timeout=TIMEOUT)
        token = agent_credential(key, new_did(), status=status_entry(url, 1))
        start = time.monotonic()
        with pytest.raises(UnverifiedAgent, match="cannot check revocation"):
            verifier.verify(token)
        assert _elapsed(start) < BOUND


# --- size caps: JWKS 1 MiB, status list 64 KiB (a full list at its longest is 30.5 KB) ------------------------

def _oversized(path: str, size: int, chunked: bool, *also: Route) -> Starlette:
    body = b" " * (size + 1)

    async def answer(_):
        if chunked:  # no Content-Length: the cap is applied as the body arrives
            async def chunks():
                for start in range(0, len(body), 65536):
                    yield body[start:start + 65536]

            return StreamingResponse(chunks(), media_type="application/json")
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route(path, answer), *also])


@pytest.mark.parametrize("chunked", [False, True], ids=["with Content-Length", "chunked"])
def test_a_jwks_over_the_cap_verifies_nothing(chunked):
    with serving_in_thread(lambda _: _oversized(JWKS_PATH, MAX_JWKS, chunked)) as url:
        verifier = CredentialVerifier([url])
        with pytest.raises(UnverifiedAgent, match=f"cannot fetch the keys .*limit of {MAX_JWKS}"):
            verifier.verify(agent_credential(SigningKey.generate(), new_did()))


@pytest.mark.parametrize("chunked", [False, True], ids=["with Content-Length", "chunked"])
def test_a_status_list_over_the_cap_fails_revocation_closed(chunked):
    key = SigningKey.generate()
    key_set = Route(JWKS_PATH, lambda _: JSONResponse(jwks([key.verify_key])))  # the list at its issuer's origin
    with serving_in_thread(lambda _: _oversized("/v1/credentials/status/0", MAX_LIST_TOKEN, chunked,
                                                key_set)) as url:
        verifier = CredentialVerifier([url])
        token = agent_credential(key, new_did(), status=status_entry(url, 1))
        with pytest.raises(UnverifiedAgent, match=f"status list is unavailable .*limit of {MAX_LIST_TOKEN}"):
            verifier.verify(token)


def test_a_full_status_list_at_its_longest_is_under_the_cap():
    key = SigningKey.generate()
    revoked = set(random.Random(3).sample(range(1, LIST_ENTRIES), LIST_ENTRIES // 2))  # nothing for GZIP to squeeze
    org = StubOrg([key], revoked=revoked)
    with serving(org):
        verifier = CredentialVerifier([org.url])
        assert verifier.verify(org.credential(key, 0)).org == did_of(key)


# --- the answers a decision waits on: 1 MiB (an explained score takes a few KB) --------------------------------

def _node_answering_oversized(route: str, chunked: bool) -> Callable[[str], Starlette]:
    """A node whose answer to `route` (score, check or policy) is one byte over the cap; its other answers are a
    trusted agent's."""
    node = _StubStream.answering("trusted")
    oversized = _oversized("/", MAX_DECISION_ANSWER, chunked).routes[0].endpoint

    def app(url: str) -> Starlette:
        routes = [r for r in node.app(url).routes if r.path != route]  # type: ignore[attr-defined]
        return Starlette(routes=[Route(route, oversized, methods=["GET", "POST"]), *routes])

    return app


@pytest.mark.parametrize("chunked", [False, True], ids=["with Content-Length", "chunked"])
@pytest.mark.parametrize("route", ["/v1/policy", "/v1/agents/{did}/check"], ids=["policy", "check"])
def test_an_oversized_answer_fails_the_check_closed(route, chunked):
    with serving_in_thread(_node_answering_oversized(route, chunked)) as url:
        policy = TrustPolicy(url, listen=False)
        try:
            for check in (lambda: policy.check(new_did()), lambda: asyncio.run(policy.acheck(new_did()))):
                decision = check()
                assert (decision.verdict, decision.source) == ("block", "unreachable")
                assert f"limit of {MAX_DECISION_ANSWER}" in decision.reason
        finally:
            policy.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["with Content-Length", "chunked"])
def test_an_oversized_score_is_refused_by_both_clients(chunked):
    with serving_in_thread(_node_answering_oversized("/v1/agents/{did}/score", chunked)) as url:
        with NodeClient(url) as client, pytest.raises(NodeUnreachable, match=f"limit of {MAX_DECISION_ANSWER}"):
            client.score(new_did())

        async def ask() -> None:
            async with AsyncTrustClient(url) as client:
                await client.score(new_did())

        with pytest.raises(NodeUnreachable, match=f"limit of {MAX_DECISION_ANSWER}"):
            asyncio.run(ask())


def test_answers_under_the_cap_still_decide():
    node = _StubStream.answering("trusted")
    with serving_in_thread(node.app) as url:
        policy = TrustPolicy(url, listen=False)
        try:
            assert policy.check(new_did()).verdict == "allow"
            assert asyncio.run(policy.acheck(new_did())).verdict == "allow"
        finally:
            policy.close()


# --- the stream: an idle bound per line, a cap per line and per event -------------------------------------------

def test_a_stream_that_trickles_a_line_that_never_ends_is_left_and_reconnected(monkeypatch):
    monkeypatch.setattr(score_stream, "IDLE_S", TIMEOUT)
    with trickling(TRICKLED_STREAM, b"a") as (url, accepted):
        stream = ScoreStream(url, on_change=lambda change: None, on_reset=lambda: None, reconnect=0.01)
        stream.start()
        try:
            start = time.monotonic()
            assert accepted.acquire(timeout=BOUND) and accepted.acquire(timeout=BOUND)  # left, and came back
            assert _elapsed(start) < 2 * BOUND < LAST_S
        finally:
            stream.close()


@pytest.mark.parametrize("frame", [b"data: " + b"a" * MAX_LINE + b"\n\n",
                                   b"event: tier\n" + (b"data: " + b"a" * 1000 + b"\n") * 100 + b"\n"],
                         ids=["a line over the cap", "an event over the cap, in lines under it"])
def test_an_oversized_line_or_event_drops_the_connection_and_reconnects_with_a_reset(frame, caplog):
    agent, resets, arrived = new_did(), [], threading.Event()
    node = _StubStream.answering("trusted")
    with serving_in_thread(node.app) as url, caplog.at_level(logging.WARNING, logger="vouchnet.client"):
        stream = ScoreStream(url, on_change=lambda change: arrived.set(), on_reset=lambda: resets.append(1),
                             reconnect=0.01)
        stream.start()
        try:
            assert stream.connected.wait(10)
            stream.connected.clear()
            node.send(frame)
            assert stream.connected.wait(10) and len(resets) == 2  # reconnected afresh: caches are reset
            node.send(_change(agent, "untrusted", 1))
            assert arrived.wait(10)
        finally:
            stream.close()
    assert any("longer than" in str(record.__dict__.get("fields", {}).get("error")) for record in caplog.records)
