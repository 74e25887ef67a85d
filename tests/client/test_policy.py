"""TrustPolicy against a real node: tiers decide, high-risk tools escalate, it fails closed, it observes, and its
cache follows the node's stream of score changes."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from node.client import NodeClient, TrustPolicy
from node.client.score_stream import ScoreStream

from ..factories import new_did
from .loopback import serving_in_thread
from .running_node import GOOD_EVENTS, on_asyncio


@pytest.fixture
def policy(running):
    policy = TrustPolicy(running.url, listen=False)
    yield policy
    policy.close()


def _dead_url() -> str:
    with socket.socket() as s:  # bound, never listening: connections are refused at once
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_an_unknown_agent_is_blocked_and_a_trusted_one_allowed(running, policy):
    stranger, _ = running.new_agent(trusted=False)
    known, _ = running.new_agent(trusted=True)
    refused = policy.check(stranger, "tool_call", "search")
    assert (refused.verdict, refused.allowed, refused.tier) == ("block", False, "untrusted")
    assert "untrusted" in refused.reason
    allowed = policy.check(known, "tool_call", "search")
    assert (allowed.verdict, allowed.allowed, allowed.tier) == ("allow", True, "trusted")


@on_asyncio
async def test_acheck_decides_the_same_on_asyncio(running, policy):
    stranger, _ = running.new_agent(trusted=False)
    known, _ = running.new_agent(trusted=True)
    assert (await policy.acheck(stranger, "tool_call", "search")).verdict == "block"
    assert (await policy.acheck(known, "tool_call", "search")).verdict == "allow"
    await policy.aclose()


def test_high_risk_tools_need_the_high_risk_tier(running):
    known, _ = running.new_agent(trusted=True)
    policy = TrustPolicy(running.url, listen=False, high_risk_tools=["deploy"], high_risk_tier="verified")
    try:
        assert policy.check(known, "tool_call", "search").verdict == "allow"
        risky = policy.check(known, "tool_call", "deploy:prod")
        assert risky.verdict == "block" and "high-risk" in risky.reason
    finally:
        policy.close()


def test_a_minimum_score_blocks_below_it(running):
    known, _ = running.new_agent(trusted=True)
    policy = TrustPolicy(running.url, listen=False, min_score=900)
    try:
        decision = policy.check(known)
        assert decision.verdict == "block" and "minimum 900" in decision.reason
    finally:
        policy.close()


def test_audit_tiers_allow_and_say_so(running):
    known, _ = running.new_agent(trusted=True)
    tiers = {"verified": "allow", "trusted": "audit", "provisional": "block", "untrusted": "block"}
    policy = TrustPolicy(running.url, listen=False, tiers=tiers)
    try:
        decision = policy.check(known)
        assert (decision.verdict, decision.allowed) == ("audit", True)
    finally:
        policy.close()


def test_it_fails_closed_by_default_when_the_node_is_down(running):
    agent, _ = running.new_agent(trusted=True)
    closed = TrustPolicy(_dead_url(), listen=False)
    decision = closed.check(agent, "tool_call", "search")
    assert (decision.verdict, decision.allowed, decision.source) == ("block", False, "unreachable")
    assert "failing closed" in decision.reason
    opened = TrustPolicy(_dead_url(), listen=False, fail_open=True)
    decision = opened.check(agent, "tool_call", "search")
    assert (decision.verdict, decision.allowed, decision.source) == ("audit", True, "unreachable")


def test_observe_mode_decides_but_never_blocks(running):
    stranger, _ = running.new_agent(trusted=False)
    policy = TrustPolicy(running.url, listen=False, observe=True)
    try:
        decision = policy.check(stranger, "tool_call", "shell")
        assert (decision.verdict, decision.enforced, decision.allowed) == ("block", False, True)
    finally:
        policy.close()


def test_a_malformed_agent_id_is_blocked_even_failing_open(running):
    policy = TrustPolicy(running.url, listen=False, fail_open=True)
    try:
        decision = policy.check("not-a-did")
        assert (decision.verdict, decision.source) == ("block", "invalid")
        assert "did:key" in decision.reason
    finally:
        policy.close()


@pytest.mark.parametrize("shape", ["{bad}/../{good}", "{good}#{bad}", "{good}?{bad}"])
def test_an_agent_id_that_is_a_path_to_another_agent_gets_no_verdict_of_that_agent(running, policy, shape):
    stranger, _ = running.new_agent(trusted=False)
    known, _ = running.new_agent(trusted=True)
    decision = policy.check(shape.format(bad=stranger, good=known), "tool_call", "search")
    assert (decision.verdict, decision.source) == ("block", "invalid")


def test_decisions_are_cached_until_their_ttl(running, policy):
    agent, _ = running.new_agent(trusted=True)
    assert policy.check(agent).source == "node"
    assert policy.check(agent, "tool_call", "other").source == "cache"
    short = TrustPolicy(running.url, listen=False, cache_ttl=0.0)
    try:
        short.check(agent)
        assert short.check(agent).source == "node"
    finally:
        short.close()


def test_the_stream_refreshes_a_cached_decision_when_the_score_changes(running):
    agent, _ = running.new_agent(trusted=False)
    changed = threading.Event()
    policy = TrustPolicy(running.url, cache_ttl=600,
                         on_change=lambda c: changed.set() if c.agent == agent and c.tier == "trusted" else None)
    try:
        assert policy.stream_connected.wait(10)
        assert policy.check(agent).verdict == "block"
        assert policy.check(agent).source == "cache"
        now = int(time.time() * 1000)
        with NodeClient(running.url, running.token) as client:
            client.report_events([{"agent": agent, "ts": now, "category": "tool", "name": "search",
                                   "outcome": "ok"}] * GOOD_EVENTS)
        assert changed.wait(10)
        decision = policy.check(agent)
        assert (decision.verdict, decision.source, decision.tier) == ("allow", "cache", "trusted")
    finally:
        policy.close()


def test_one_policy_serves_many_threads(running, policy):
    agents = [running.new_agent(trusted=i % 2 == 0)[0] for i in range(4)]
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda i: policy.check(agents[i % 4]).verdict, range(40)))
    assert verdicts == ["allow" if i % 2 == 0 else "block" for i in range(4)] * 10


# --- a node (or whatever answers at its address) that answers nonsense: never allowed, never a crash -------------

HOSTILE_ANSWERS = {
    "a JSON list": Response(b"[1, 2]", media_type="application/json"),
    "a JSON string": Response(b'"allow"', media_type="application/json"),
    "NaN score": Response(b'{"decision": "allow", "score": NaN, "tier": "verified"}', media_type="application/json"),
    "boolean score": Response(b'{"score": true, "tier": "verified"}', media_type="application/json"),
    "unknown tier": Response(b'{"score": 900, "tier": "godlike"}', media_type="application/json"),
    "not JSON": Response(b"<html>ok</html>", media_type="text/html"),
    "deeply nested JSON": Response(b"[" * 100_000, media_type="application/json"),
    "broken gzip": Response(b"\x1f\x8b not gzip", media_type="application/json",
                            headers={"Content-Encoding": "gzip"}),
    "a redirect": Response(b"", status_code=307, headers={"Location": "http://127.0.0.1:9/elsewhere"}),
    "a server error": Response(b'{"error": "internal", "detail": "boom"}', status_code=500,
                               media_type="application/json"),
}


@contextmanager
def hostile_node(answer: Response) -> Iterator[str]:
    async def check(_: Request) -> Response:
        return answer

    with serving_in_thread(lambda _: Starlette(routes=[Route("/v1/agents/{did}/check", check, methods=["POST"]),
                                                         Route("/v1/agents/{did}/score", check)])) as url:
        yield url


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
def test_a_nonsense_answer_blocks_and_fails_open_only_when_asked(answer):
    agent = new_did()
    with hostile_node(answer) as url:
        for fail_open in (False, True):
            policy = TrustPolicy(url, listen=False, fail_open=fail_open)
            try:
                decisions = [policy.check(agent, "tool_call", "search"),
                             asyncio.run(policy.acheck(agent, "tool_call", "search"))]
            finally:
                policy.close()
            for decision in decisions:
                assert decision.verdict == ("audit" if fail_open and decision.source == "unreachable" else "block")
                assert decision.source in ("unreachable", "invalid", "node", "cache")


class _StubStream:
    """A node's `/v1/stream` whose frames the test sends (to the latest connection), and a check that answers
    with the tier `answer()` gives (score 800 if trusted, else 100)."""

    def __init__(self, answer: Callable[[], Awaitable[str]]) -> None:
        self.answer = answer
        self._frames: asyncio.Queue[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def answering(cls, tier: str) -> _StubStream:
        async def answer() -> str:
            return tier

        return cls(answer)

    def app(self, _: str) -> Starlette:
        async def stream(_: Request) -> StreamingResponse:
            self._loop, self._frames = asyncio.get_running_loop(), (queue := asyncio.Queue())

            async def frames() -> AsyncIterator[bytes]:
                yield b": hello\n\n"
                while True:
                    yield await queue.get()

            return StreamingResponse(frames(), media_type="text/event-stream")

        async def check(_: Request) -> JSONResponse:
            tier = await self.answer()
            return JSONResponse({"score": 800 if tier == "trusted" else 100, "tier": tier})

        return Starlette(routes=[Route("/v1/stream", stream), Route("/v1/agents/{did}/check", check, methods=["POST"])])

    def send(self, frame: bytes) -> None:
        assert self._loop is not None and self._frames is not None
        self._loop.call_soon_threadsafe(self._frames.put_nowait, frame)


def _change(agent: str, tier: str, n: int) -> bytes:
    data = json.dumps({"agent": agent, "score": 100, "tier": tier})
    return f"event: tier\nid: a-{n}\ndata: {data}\n\n".encode()


def test_an_answer_overtaken_by_a_change_the_stream_announced_is_not_cached():
    agent, announced = new_did(), threading.Event()
    tiers = iter(["trusted", "untrusted"])  # what the node answers: before its recompute, then after

    async def answer() -> str:
        tier = next(tiers)
        if tier == "trusted":  # computed before the change; the change overtakes it on the stream
            node.send(_change(agent, "untrusted", 1))
            await asyncio.to_thread(announced.wait, 10)
        return tier

    node = _StubStream(answer)
    with serving_in_thread(node.app) as url:
        policy = TrustPolicy(url, cache_ttl=600, on_change=lambda change: announced.set())
        try:
            assert policy.stream_connected.wait(10)
            assert policy.check(agent).verdict == "allow"  # the answer as it came
            decision = policy.check(agent)
            assert (decision.verdict, decision.tier) == ("block", "untrusted")
        finally:
            policy.close()


@pytest.mark.parametrize("failure", ["on_change raises", "a frame that is not UTF-8"])
def test_the_stream_outlives_a_failing_callback_or_a_broken_frame(failure):
    agent, seen = new_did(), []
    untrusted = threading.Event()

    def on_change(change):
        seen.append(change.tier)
        if change.tier == "untrusted":
            untrusted.set()
        if failure == "on_change raises":
            raise RuntimeError("the service's callback has a bug")

    node = _StubStream.answering("trusted")
    with serving_in_thread(node.app) as url:
        policy = TrustPolicy(url, cache_ttl=600, on_change=on_change)
        try:
            assert policy.stream_connected.wait(10)
            assert policy.check(agent).verdict == "allow"
            if failure == "a frame that is not UTF-8":
                node.send(b"event: tier\nid: a-1\ndata: \xff\xfe{\n\n")
            else:
                node.send(_change(agent, "provisional", 1))
            node.send(_change(agent, "untrusted", 2))
            assert untrusted.wait(10)
            assert policy.check(agent).verdict == "block"
        finally:
            policy.close()


def test_a_stream_that_fails_unexpectedly_reconnects_and_resets_what_was_cached():
    agent, resets, changes = new_did(), [], []
    arrived, reset_again = threading.Event(), threading.Event()

    def on_reset():
        resets.append(1)
        if len(resets) == 2:
            reset_again.set()

    def on_change(change):
        changes.append(change.tier)
        if len(changes) == 1:
            raise ValueError("not an HTTP error: the thread must survive it all the same")
        arrived.set()

    node = _StubStream.answering("trusted")
    with serving_in_thread(node.app) as url:
        stream = ScoreStream(url, on_change=on_change, on_reset=on_reset, reconnect=0.01)
        stream.start()
        try:
            assert stream.connected.wait(10) and len(resets) == 1
            node.send(_change(agent, "provisional", 1))
            assert reset_again.wait(10)  # reconnected afresh: what was cached is dropped
            node.send(_change(agent, "untrusted", 2))
            assert arrived.wait(10) and changes == ["provisional", "untrusted"]
        finally:
            stream.close()


@pytest.mark.xfail(strict=True, reason="open: the SDK decides from score and tier with its own rules and discards "
                                       "the node's decision, so the node's [scoring] min_score and high_risk_tools "
                                       "bind no service (reported to the lead: which policy should win?)")
def test_a_check_the_node_blocks_by_its_own_minimum_score_is_not_allowed():
    answer = Response(b'{"decision": "block", "reason": "score 300 is below this policy\'s minimum 500", '
                      b'"score": 300, "tier": "provisional"}', media_type="application/json")
    with hostile_node(answer) as url:
        policy = TrustPolicy(url, listen=False)
        try:
            assert not policy.check(new_did(), "tool_call", "search").allowed
        finally:
            policy.close()
