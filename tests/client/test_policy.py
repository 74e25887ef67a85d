"""TrustPolicy against a real node: tiers decide, high-risk tools escalate, it fails closed, it observes, and its
cache follows the node's stream of score changes."""

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from node.client import NodeClient, TrustPolicy

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


def test_an_answer_overtaken_by_a_change_the_stream_announced_is_not_cached():
    agent, announced = new_did(), threading.Event()
    frames: asyncio.Queue[bytes] = asyncio.Queue()
    tiers = iter(["trusted", "untrusted"])  # what the node answers: before its recompute, then after

    async def stream(_: Request) -> StreamingResponse:
        async def frames_of() -> AsyncIterator[bytes]:
            yield b": hello\n\n"
            while True:
                yield await frames.get()

        return StreamingResponse(frames_of(), media_type="text/event-stream")

    async def check(_: Request) -> JSONResponse:
        tier = next(tiers)
        if tier == "trusted":  # computed before the change; the change overtakes it on the stream
            change = json.dumps({"agent": agent, "score": 100, "tier": "untrusted"})
            await frames.put(f"event: tier\nid: a-1\ndata: {change}\n\n".encode())
            await asyncio.to_thread(announced.wait, 10)
        return JSONResponse({"decision": "n/a", "reason": "", "score": 100 if tier == "untrusted" else 800,
                             "tier": tier})

    app = Starlette(routes=[Route("/v1/stream", stream), Route("/v1/agents/{did}/check", check, methods=["POST"])])
    with serving_in_thread(lambda _: app) as url:
        policy = TrustPolicy(url, cache_ttl=600, on_change=lambda change: announced.set())
        try:
            assert policy.stream_connected.wait(10)
            assert policy.check(agent).verdict == "allow"  # the answer as it came
            decision = policy.check(agent)
            assert (decision.verdict, decision.tier) == ("block", "untrusted")
        finally:
            policy.close()
