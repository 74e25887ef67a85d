"""TrustPolicy against a real node: tiers decide, high-risk tools escalate, the node's own policy is a floor, it fails
closed, it observes, and its cache follows the node's stream of score changes."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from node.client import AsyncTrustClient, NodeClient, TrustPolicy
from node.client.score_stream import ScoreStream
from vouching.policy import DEFAULT_POLICY, Policy

from ..factories import new_did
from ..refused_port import refused_port
from .loopback import serving_in_thread
from .running_node import GOOD_EVENTS, node_in_thread, on_asyncio


@pytest.fixture
def policy(running):
    policy = TrustPolicy(running.url, listen=False)
    yield policy
    policy.close()


@pytest.fixture
def dead_url() -> Iterator[str]:
    """Where no node runs: connections are refused at once."""
    with refused_port() as port:
        yield f"http://127.0.0.1:{port}"


def test_close_closes_the_client_though_the_stream_s_close_raises_then_raises_its_error(monkeypatch):
    """The client's close was skipped when the stream's raised (its connection to the node left open)."""
    policy = TrustPolicy("http://127.0.0.1:9")
    client = policy._sync_client()

    def fails() -> None:
        raise RuntimeError("the stream's close failed")

    monkeypatch.setattr(policy._stream, "close", fails)
    with pytest.raises(RuntimeError, match="the stream's close failed"):
        policy.close()
    assert client._http.is_closed


async def test_aclose_closes_the_loop_s_client_though_close_raises_then_raises_its_error(monkeypatch):
    policy = TrustPolicy("http://127.0.0.1:9", listen=False)
    client = await policy._async_client()

    def fails() -> None:
        raise RuntimeError("close failed")

    monkeypatch.setattr(policy, "close", fails)
    with pytest.raises(RuntimeError, match="close failed"):
        await policy.aclose()
    assert client._http.is_closed


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



def test_a_check_on_each_new_asyncio_loop_leaves_no_client_behind(running):
    """A sync service that runs each check with `asyncio.run` (as the README's direct example runs A2ATrust) kept
    every loop's client, its loop and its open connection to the node: a socket a check, for ever."""
    agent = new_did()
    policy = TrustPolicy(running.url, listen=False, cache_ttl=0, policy_ttl=0)
    before = _live_async_clients()
    try:
        for _ in range(5):
            assert asyncio.run(policy.acheck(agent)).tier == "untrusted"
        assert _live_async_clients() - before <= 1  # the last loop's, dropped at the next loop's first check
    finally:
        policy.close()


def test_a_check_in_each_asyncio_run_closes_that_loop_s_connection_to_the_node_as_the_loop_ends(running):
    """Before: the client of a loop that had ended was dropped unclosed at the next loop's check, its connection to
    the node left to the garbage collector: a ResourceWarning (unclosed transport) for each asyncio.run a service
    ran a check in. The client is closed in its loop, as asyncio.run finalizes it."""
    agent = new_did()
    policy = TrustPolicy(running.url, listen=False, cache_ttl=0, policy_ttl=0)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            for _ in range(3):
                assert asyncio.run(policy.acheck(agent)).tier == "untrusted"
                gc.collect()
    finally:
        policy.close()
    assert [str(warning.message) for warning in caught if warning.category is ResourceWarning] == []


def _live_async_clients() -> int:
    gc.collect()
    return sum(isinstance(each, AsyncTrustClient) for each in gc.get_objects())

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


def test_it_fails_closed_by_default_when_the_node_is_down(running, dead_url):
    agent, _ = running.new_agent(trusted=True)
    closed = TrustPolicy(dead_url, listen=False)
    decision = closed.check(agent, "tool_call", "search")
    assert (decision.verdict, decision.allowed, decision.source) == ("block", False, "unreachable")
    assert "failing closed" in decision.reason
    opened = TrustPolicy(dead_url, listen=False, fail_open=True)
    decision = opened.check(agent, "tool_call", "search")
    assert (decision.verdict, decision.allowed, decision.source) == ("audit", True, "unreachable")


def test_a_node_down_is_named_without_its_url_s_password(dead_url, caplog):
    """A decision's reason (told to the caller, and logged) named the node's URL as given, password included (a
    proxy in front of the node asking for basic auth); RFC 3986 §3.2.1: the part after ':' should not be shown."""
    shown = dead_url.replace("http://", "http://ops@")
    policy = TrustPolicy(dead_url.replace("http://", "http://ops:s3cret@"), listen=False)
    with caplog.at_level(logging.DEBUG, logger="vouchnet.client"):
        decision = policy.check(new_did(), "tool_call", "search")
    policy.close()
    assert (decision.source, f"cannot reach the node at {shown}:" in decision.reason) == ("unreachable", True)
    assert "s3cret" not in decision.reason and "s3cret" not in caplog.text


def test_failing_open_with_the_node_down_still_refuses_a_high_risk_tool(running, dead_url):
    """Failing open let any verified agent run `shell` or `deploy` while the node could not be reached (an outage
    an attacker may cause), though the README says the local rules still apply: a high-risk tool needs a tier, and
    without the node's answer no agent is known to have it."""
    agent, _ = running.new_agent(trusted=True)
    opened = TrustPolicy(dead_url, listen=False, fail_open=True)
    risky = opened.check(agent, "tool_call", "shell")
    assert (risky.verdict, risky.allowed, risky.source) == ("block", False, "unreachable")
    assert risky.reason.endswith("failing open, but shell is high-risk and needs tier trusted or better, which no "
                                 "agent is known to have without the node's answer (local policy)")
    assert asyncio.run(opened.acheck(agent, "tool_call", "deploy")).verdict == "block"
    assert opened.check(agent, "tool_call", "search").verdict == "audit"  # the rest still fails open
    lenient = TrustPolicy(dead_url, listen=False, fail_open=True, high_risk_tier="untrusted")
    assert lenient.check(agent, "tool_call", "shell").verdict == "audit"  # every agent has the lowest tier


def test_a_stranger_s_credential_is_blocked_by_the_node_s_answer_and_leaves_the_agent_s_score_cached(running):
    """Before: the node's check answered `allow` for a credential of an org that does not operate the agent (on the
    agent's own score), which only TrustPolicy corrected, so that a service asking the node itself (TrustClient, or
    curl from another language) let it through. The node decides it on the cold start, its score and tier still
    the agent's: what the policy caches serves the agent's own org's credential after."""
    agent, _ = running.new_agent(trusted=True)
    own, stranger = running.node.replica.did, new_did()
    with running.client() as client:
        answer = client.check(agent, "tool_call", "search", issuer=stranger)
    assert (answer["decision"], answer["tier"], answer["issuer_operates"]) == ("block", "trusted", False)
    policy = TrustPolicy(running.url, listen=False, cache_ttl=600)
    try:
        foreign = policy.check(agent, "tool_call", "search", issuer=stranger)
        ours = policy.check(agent, "tool_call", "search", issuer=own)
    finally:
        policy.close()
    assert (foreign.verdict, foreign.operated, foreign.score, foreign.source) == (
        "block", False, answer["cold_start"], "node")
    assert (ours.verdict, ours.operated, ours.tier, ours.score, ours.source) == (
        "allow", True, "trusted", answer["score"], "cache")


@pytest.mark.parametrize("without", ["the node's answer", "the node's policy", "issuers in the answer"])
def test_a_credential_the_node_did_not_say_stands_for_the_agent_is_not_taken_to(dead_url, without):
    """A call decided without the node's word on who operates the agent runs failing open or in observe mode; its
    credential must not count as the agent's (`operated`: the guard and the MCP middleware report only those), else
    another org's credential used while the node was down, or answered by an older node, built the agent's score.
    An agent checked by its did alone, no credential, is the agent as before."""
    agent, issuer = new_did(), new_did()
    with hostile_node(TRUSTED_ANSWER) as url:  # (an answer with no issuers: a node older than the SDK)
        policy = {"the node's answer": TrustPolicy(dead_url, listen=False, fail_open=True),
                  "the node's policy": TrustPolicy(dead_url, listen=False, observe=True),
                  "issuers in the answer": TrustPolicy(url, listen=False, observe=True)}[without]
        try:
            decisions = [policy.check(agent, "tool_call", "search", issuer=issuer),
                         asyncio.run(policy.acheck(agent, "tool_call", "search", issuer=issuer))]
            direct = policy.check(agent, "tool_call", "search")
        finally:
            policy.close()
    assert [(decision.allowed, decision.operated) for decision in decisions] == [(True, False)] * 2
    assert direct.operated


def test_observe_mode_decides_but_never_blocks(running):
    stranger, _ = running.new_agent(trusted=False)
    policy = TrustPolicy(running.url, listen=False, observe=True)
    try:
        decision = policy.check(stranger, "tool_call", "shell")
        assert (decision.verdict, decision.enforced, decision.allowed) == ("block", False, True)
    finally:
        policy.close()



def test_a_decision_is_logged_with_who_and_what_in_any_log_format(running, caplog):
    """The week-1 log shows who would have been blocked with the service's own logging, not only with the node's
    logfmt formatter: a plain `%(message)s` showed `trust decision` and nothing else."""
    stranger, _ = running.new_agent(trusted=False)
    policy = TrustPolicy(running.url, listen=False, observe=True)
    try:
        with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
            policy.check(stranger, "tool_call", "shell")
    finally:
        policy.close()
    [record] = [r for r in caplog.records if r.getMessage().startswith("trust decision")]
    line = logging.Formatter("%(message)s").format(record)
    assert f"agent={stranger} action=tool_call tool=shell verdict=block enforced=False reason=" in line
    assert record.fields["verdict"] == "block"  # still there for structured handlers

def test_a_malformed_agent_id_is_blocked_even_failing_open(running):
    policy = TrustPolicy(running.url, listen=False, fail_open=True)
    try:
        decision = policy.check("not-a-did")
        assert (decision.verdict, decision.source) == ("block", "invalid")
        assert "did:key" in decision.reason
    finally:
        policy.close()


def test_an_org_s_did_is_blocked_saying_it_is_an_org_even_failing_open(running):
    """The node refuses to score an org's did as an agent's (409 not_an_agent); it was decided on the cold start of
    an agent nobody knows."""
    policy = TrustPolicy(running.url, listen=False, fail_open=True)
    try:
        org = running.node.replica.did
        decision = policy.check(org, "tool_call", "search")
        assert (decision.verdict, decision.source) == ("block", "invalid")
        assert decision.reason.startswith(f"the node refused the agent: path.did: {org} is an org (")
    finally:
        policy.close()


@on_asyncio
async def test_a_credential_passed_as_the_did_is_blocked_saying_a_did_is_expected_and_how_to_get_it(
        running, policy, caplog):
    """The decision says what to do instead, and never carries the credential, a bearer token, which its log line
    would carry."""
    known, credential = running.new_agent(trusted=True)
    with caplog.at_level(logging.INFO, logger="vouchnet.client"):
        decisions = [policy.check(credential, "tool_call", "search"), await policy.acheck(credential)]
    for decision in decisions:
        assert (decision.verdict, decision.source, decision.agent) == ("block", "invalid", "")
        assert decision.reason.startswith("expected the agent's did (did:key:z6Mk...), got a credential (a JWT)")
        assert "CredentialVerifier(issuers).verify(credential).did" in decision.reason
    assert credential not in caplog.text
    assert policy.check(known, "tool_call", "search").verdict == "allow"
    await policy.aclose()


@pytest.mark.parametrize("shape", ["{bad}/../{good}", "{good}#{bad}", "{good}?{bad}"])
def test_an_agent_id_that_is_a_path_to_another_agent_gets_no_verdict_of_that_agent(running, policy, shape):
    stranger, _ = running.new_agent(trusted=False)
    known, _ = running.new_agent(trusted=True)
    decision = policy.check(shape.format(bad=stranger, good=known), "tool_call", "search")
    assert (decision.verdict, decision.source) == ("block", "invalid")


@pytest.mark.parametrize("tool", ["", "run_shell\n", "search\u200b", "x" * 257])
@on_asyncio
async def test_a_tool_the_node_refuses_is_blocked_whether_or_not_the_score_is_cached(running, policy, tool):
    """The node's check refuses a tool no scope could name (422); decided on the cached score instead, the same
    check was allowed once the agent's score was cached and blocked before."""
    known, _ = running.new_agent(trusted=True)
    assert policy.check(known, "tool_call", "search").source == "node"  # cached from here on
    for decision in (policy.check(known, "tool_call", tool), await policy.acheck(known, "tool_call", tool)):
        assert (decision.verdict, decision.source) == ("block", "invalid")
        assert "tool: must be printable text" in decision.reason
    await policy.aclose()


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


def test_a_scoped_vouch_opens_its_tool_through_the_node_and_never_from_the_cache(running, policy):
    """DESIGN.md §3 scope: the node's answer for a scoped tool counts the vouch and is not cached as the agent's
    score; checks of that tool go to the node, of other tools to the cached general score."""
    agent, _ = running.new_agent(trusted=False)
    now = int(time.time() * 1000)
    with running.client() as client:
        client.report_events([{"agent": agent, "ts": now, "category": "tool", "name": "search",
                               "outcome": "ok"}] * 3)  # provisional
        vouch = client.vouch(agent, 1.0, "audit", scope=["search"])
    search = policy.check(agent, "tool_call", "search")
    assert (search.verdict, search.tier, search.source) == ("allow", "trusted", "node")
    other = policy.check(agent, "tool_call", "fetch")
    assert (other.verdict, other.tier, other.source) == ("audit", "provisional", "node")
    shell = policy.check(agent, "tool_call", "run_shell")
    assert (shell.verdict, shell.source) == ("block", "cache")
    assert policy.check(agent, "tool_call", "search").source == "node"
    with running.client() as client:
        client.revoke(vouch["id"], "scope withdrawn")
    search = policy.check(agent, "tool_call", "search")
    assert (search.verdict, search.tier, search.source) == ("audit", "provisional", "node")


def test_a_scope_granted_after_the_score_was_cached_is_followed_from_the_stream(running):
    """The node announces the agent's new scoped tools: the cached general score stays, and the check of the scoped
    tool goes to the node, which opens it."""
    agent, _ = running.new_agent(trusted=False)
    now = int(time.time() * 1000)
    with running.client() as client:
        client.report_events([{"agent": agent, "ts": now, "category": "tool", "name": "search",
                               "outcome": "ok"}] * 3)  # provisional
    scoped = threading.Event()
    policy = TrustPolicy(running.url, cache_ttl=600,
                         on_change=lambda c: scoped.set() if c.agent == agent and c.scopes == ("search",) else None)
    try:
        assert policy.stream_connected.wait(10)
        assert policy.check(agent, "tool_call", "search").verdict == "audit"
        assert policy.check(agent, "tool_call", "search").source == "cache"
        with running.client() as client:
            client.vouch(agent, 1.0, "audit", scope=["search"])
        assert scoped.wait(10)
        search = policy.check(agent, "tool_call", "search")
        assert (search.verdict, search.tier, search.source) == ("allow", "trusted", "node")
        other = policy.check(agent, "tool_call", "fetch")
        assert (other.verdict, other.tier, other.source) == ("audit", "provisional", "cache")
    finally:
        policy.close()


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
        with NodeClient(running.url, running.token) as client:  # as running.new_agent makes one trusted
            client.vouch(agent, 1.0, "audit")
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
    "scopes_complete not a boolean": Response(
        b'{"decision": "allow", "score": 900, "tier": "verified", "scopes": [], "scopes_complete": "no"}',
        media_type="application/json"),
    "scopes not a list": Response(b'{"decision": "allow", "score": 900, "tier": "verified", "scopes": "search"}',
                                  media_type="application/json"),
    "not JSON": Response(b"<html>ok</html>", media_type="text/html"),
    "deeply nested JSON": Response(b"[" * 100_000, media_type="application/json"),
    "broken gzip": Response(b"\x1f\x8b not gzip", media_type="application/json",
                            headers={"Content-Encoding": "gzip"}),
    "a redirect": Response(b"", status_code=307, headers={"Location": "http://127.0.0.1:9/elsewhere"}),
    "a server error": Response(b'{"error": "internal", "detail": "boom"}', status_code=500,
                               media_type="application/json"),
}


DEFAULT_NODE_POLICY = JSONResponse(DEFAULT_POLICY.as_dict())


@contextmanager
def hostile_node(answer: Response, policy: Response = DEFAULT_NODE_POLICY) -> Iterator[str]:
    """A node that answers checks (and score requests) with `answer`, and `GET /v1/policy` with `policy`."""
    async def check(_: Request) -> Response:
        return answer

    async def node_policy(_: Request) -> Response:
        return policy

    with serving_in_thread(lambda _: Starlette(routes=[Route("/v1/agents/{did}/check", check, methods=["POST"]),
                                                         Route("/v1/agents/{did}/score", check),
                                                         Route("/v1/policy", node_policy)])) as url:
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


@pytest.mark.parametrize("complete", [True, False])
def test_past_the_scoped_tools_the_node_lists_every_tool_check_is_the_node_s(complete):
    """The node lists at most 64 of an agent's scoped tools (node.trust.listed_scopes): when it says the list is
    incomplete, any tool may be one whose check counts scoped vouches, so only checks without a tool are cached."""
    answer = JSONResponse({"score": 800, "tier": "trusted", "decision": "allow", "reason": "r", "scopes": ["search"],
                           "scopes_complete": complete})
    agent = new_did()
    with hostile_node(answer) as url:
        policy = TrustPolicy(url, listen=False, cache_ttl=600)
        try:
            assert policy.check(agent).source == "node"
            assert policy.check(agent).source == "cache"
            assert policy.check(agent, "tool_call", "search").source == "node"
            assert policy.check(agent, "tool_call", "fetch").source == ("cache" if complete else "node")
            assert asyncio.run(policy.acheck(agent, "tool_call", "fetch")).source == ("cache" if complete else "node")
        finally:
            policy.close()


class _StubStream:
    """A node's `/v1/stream` whose frames the test sends (to the latest connection), a check that answers with the
    tier `answer()` gives (score 800 and allow if trusted, else 100 and block), and `GET /v1/policy` answering
    `node_policy` (counted in `policy_requests`)."""

    def __init__(self, answer: Callable[[], Awaitable[str]]) -> None:
        self.answer = answer
        self.issuers: list[str] | None = None  # the org keys a check answer says operate the agent, if set
        self.issuers_complete = True  # false: those are the first of more
        self.operating: set[str] | None = None  # if set, every key that does: `issuer_operates` of a check's issuer
        self.node_policy = DEFAULT_POLICY.as_dict()  # what GET /v1/policy answers
        self.policy_requests = 0
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

        async def check(request: Request) -> JSONResponse:
            tier = await self.answer()
            trusted = tier == "trusted"
            operators = {"issuers": self.issuers, "issuers_complete": self.issuers_complete,
                         "cold_start": 100} if self.issuers is not None else {}
            if self.operating is not None and (issuer := request.query_params.get("issuer")) is not None:
                operators["issuer_operates"] = issuer in self.operating
            return JSONResponse({"score": 800 if trusted else 100, "tier": tier,
                                 "decision": "allow" if trusted else "block", "reason": f"tier {tier}", **operators})

        async def policy(_: Request) -> JSONResponse:
            self.policy_requests += 1
            return JSONResponse(self.node_policy)

        return Starlette(routes=[Route("/v1/stream", stream), Route("/v1/agents/{did}/check", check, methods=["POST"]),
                                 Route("/v1/policy", policy)])

    def send(self, frame: bytes) -> None:
        assert self._loop is not None and self._frames is not None
        self._loop.call_soon_threadsafe(self._frames.put_nowait, frame)


def _change(agent: str, tier: str, n: int) -> bytes:
    data = json.dumps({"agent": agent, "score": 100, "tier": tier})
    return f"event: tier\nid: a-{n}\ndata: {data}\n\n".encode()


def test_a_stream_event_saying_the_scoped_tools_are_more_than_listed_sends_every_tool_check_to_the_node():
    agent, announced = new_did(), threading.Event()
    node = _StubStream.answering("trusted")
    with serving_in_thread(node.app) as url:
        policy = TrustPolicy(url, cache_ttl=600, on_change=lambda change: announced.set())
        try:
            assert policy.stream_connected.wait(10)
            policy.check(agent)
            assert policy.check(agent, "tool_call", "fetch").source == "cache"
            data = json.dumps({"agent": agent, "score": 800, "tier": "trusted", "scopes": ["search"],
                               "scopes_complete": False})
            node.send(f"event: score\nid: a-1\ndata: {data}\n\n".encode())
            assert announced.wait(10)
            assert policy.check(agent, "tool_call", "fetch").source == "node"
            assert policy.check(agent).source == "cache"
        finally:
            policy.close()


@pytest.mark.parametrize("says", [True, False], ids=["the node says who operates it", "an older node's event"])
def test_a_partner_whose_operator_vouch_went_is_decided_on_the_cold_start_once_the_stream_announces_the_agent(says):
    """The cached word on who operates the agent outlived the stream's announcement of a change to it (a partner's
    operator vouch revoked): the partner's credentials stood for the agent's score until cache_ttl. The node's event
    says who operates the agent now (node.trust._remember), though its score did not move, and the cache decides on
    that; an event that does not say (a node older than the SDK) drops what was kept: the next such check asks."""
    agent, partner, other, announced = new_did(), new_did(), new_did(), threading.Event()
    node = _StubStream.answering("trusted")
    node.issuers = [partner]
    with serving_in_thread(node.app) as url:
        policy = TrustPolicy(url, cache_ttl=600, on_change=lambda change: announced.set())
        try:
            assert policy.stream_connected.wait(10)
            assert policy.check(agent, issuer=partner).source == "node"
            assert (policy.check(agent, issuer=partner).source, policy.check(agent).source) == ("cache", "cache")
            node.issuers = [other]  # the partner revoked its operator vouch, and another vouched as the operator
            said = {"issuers": [other], "issuers_complete": True, "cold_start": 100} if says else {}
            data = json.dumps({"agent": agent, "score": 790, "tier": "trusted", **said})
            node.send(f"event: score\nid: a-1\ndata: {data}\n\n".encode())
            assert announced.wait(10)
            went, came = policy.check(agent, issuer=partner), policy.check(agent, issuer=other)
            assert policy.check(agent).source == "cache"  # the agent's own score, as announced, still serves
        finally:
            policy.close()
    assert (went.source, went.operated, went.score, went.verdict) == ("cache" if says else "node", False, 100, "block")
    assert (came.source, came.operated, came.verdict) == ("cache", True, "allow")


@pytest.mark.parametrize("says", [True, False], ids=["the node says of every key", "an older node"])
def test_an_operator_past_the_64_the_node_lists_is_decided_on_the_agent_s_score_as_the_node_says(says):
    """Before: a credential whose issuer the node did not list was decided on the cold start, though the node said
    its list was incomplete (`issuers_complete` false: 64 others, heavier or sorting first), so that any 64 keys
    made the agent's every credential of its operator a stranger's. The check names the issuer, and the node says of
    every key whether it operates the agent; an older node, which does not say, leaves it decided as before, and its
    silence is kept as its word is (before: each check of such a key asked it again, to hear nothing more)."""
    agent, partner, stranger, listed = new_did(), new_did(), new_did(), [new_did() for _ in range(64)]
    node = _StubStream.answering("trusted")
    node.issuers, node.issuers_complete = listed, False
    node.operating = {*listed, partner} if says else None
    with serving_in_thread(node.app) as url:
        policy = TrustPolicy(url, listen=False, cache_ttl=600)
        try:
            partners = [policy.check(agent, issuer=partner), asyncio.run(policy.acheck(agent, issuer=partner))]
            strangers = [policy.check(agent, issuer=stranger), policy.check(agent, issuer=stranger)]
        finally:
            policy.close()
    assert [(d.source, d.operated, d.verdict) for d in partners] == (
        [("node", True, "allow"), ("cache", True, "allow")] if says else
        [("node", False, "block"), ("cache", False, "block")])
    assert [(d.source, d.operated, d.verdict) for d in strangers] == [
        ("node", False, "block"), ("cache", False, "block")]  # the node's no (or silence) is kept as its yes is
    if not says:
        assert "says nothing of the others" in partners[0].reason


@pytest.mark.parametrize("asynchronous", [False, True], ids=["check", "acheck"])
def test_check_and_acheck_alike_name_the_credential_s_issuer_to_the_node(asynchronous):
    """An operator past the 64 listed stands for the agent only by the node's word on the issuer the check names
    (`?issuer=`), from async services (acheck: the MCP and A2A adapters) as from sync ones; no test failed with
    AsyncTrustClient.check leaving it unnamed, which decided every such credential on the cold start."""
    agent, partner = new_did(), new_did()
    node = _StubStream.answering("trusted")
    node.issuers, node.issuers_complete = [new_did() for _ in range(64)], False
    node.operating = {*node.issuers, partner}
    with serving_in_thread(node.app) as url:
        policy = TrustPolicy(url, listen=False)
        try:
            decided = (asyncio.run(policy.acheck(agent, issuer=partner)) if asynchronous
                       else policy.check(agent, issuer=partner))
        finally:
            policy.close()
    assert (decided.source, decided.operated, decided.verdict) == ("node", True, "allow")


def test_a_stream_event_listing_some_of_the_operators_sends_a_check_of_a_key_not_listed_to_the_node():
    """The event's `issuers_complete` false (a partner now past the 64 listed): the cache does not take a key it
    does not list for one that does not operate the agent; the node says."""
    agent, partner, announced, heavier = new_did(), new_did(), threading.Event(), [new_did() for _ in range(64)]
    node = _StubStream.answering("trusted")
    node.issuers, node.operating = [partner], {partner, *heavier}
    with serving_in_thread(node.app) as url:
        policy = TrustPolicy(url, cache_ttl=600, on_change=lambda change: announced.set())
        try:
            assert policy.stream_connected.wait(10)
            assert policy.check(agent, issuer=partner).source == "node"
            node.issuers, node.issuers_complete = heavier, False
            data = json.dumps({"agent": agent, "score": 800, "tier": "trusted", "issuers": heavier,
                               "issuers_complete": False, "cold_start": 100})
            node.send(f"event: score\nid: a-1\ndata: {data}\n\n".encode())
            assert announced.wait(10)
            decisions = [policy.check(agent, issuer=partner), policy.check(agent, issuer=partner)]
        finally:
            policy.close()
    assert [(d.source, d.operated, d.verdict) for d in decisions] == [("node", True, "allow"), ("cache", True, "allow")]


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


def test_a_service_watching_the_stream_is_told_of_each_reset_to_read_its_agents_again():
    """A node announces an agent's changes only once asked about it since it started (README, the score stream): a
    service watching agents through on_change was never told the node had restarted, and missed their changes from
    then on. on_reset is called as the stream connects and at each reset the node sends, after the cache is dropped;
    a failing one ends neither the stream nor the next reset."""
    agent, resets = new_did(), threading.Semaphore(0)

    def on_reset() -> None:
        resets.release()
        raise RuntimeError("the service's callback has a bug")

    node = _StubStream.answering("trusted")
    with _following(node, on_reset=on_reset) as policy:
        assert resets.acquire(timeout=10)  # as it connected
        assert policy.check(agent).source == "node" and policy.check(agent).source == "cache"
        node.send(b"event: reset\ndata: {}\n\n")
        assert resets.acquire(timeout=10)
        assert policy.check(agent).source == "node"
    with pytest.raises(ValueError, match="on_reset: needs the node's stream"):
        TrustPolicy("http://127.0.0.1:9", listen=False, on_reset=lambda: None)


@contextmanager
def _following(node: _StubStream, **callbacks: Callable) -> Iterator[TrustPolicy]:
    """A policy following `node`'s stream, connected, with `callbacks` (on_change, on_reset); closed after."""
    with serving_in_thread(node.app) as url:
        policy = TrustPolicy(url, cache_ttl=600, **callbacks)
        try:
            assert policy.stream_connected.wait(10)
            yield policy
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
    with _following(node, on_change=on_change) as policy:
        assert policy.check(agent).verdict == "allow"
        if failure == "a frame that is not UTF-8":
            node.send(b"event: tier\nid: a-1\ndata: \xff\xfe{\n\n")
        else:
            node.send(_change(agent, "provisional", 1))
        node.send(_change(agent, "untrusted", 2))
        assert untrusted.wait(10)
        assert policy.check(agent).verdict == "block"


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


def test_a_check_the_node_blocks_by_its_own_minimum_score_is_not_allowed():
    """The node's answer is stricter than its policy as this SDK applies it (a node newer than the SDK, say):
    the stricter wins."""
    answer = Response(b'{"decision": "block", "reason": "score 300 is below this policy\'s minimum 500", '
                      b'"score": 300, "tier": "provisional"}', media_type="application/json")
    with hostile_node(answer) as url:
        policy = TrustPolicy(url, listen=False)
        try:
            decision = policy.check(new_did(), "tool_call", "search")
            assert (decision.verdict, decision.allowed, decision.source) == ("block", False, "node")
            assert decision.reason == "score 300 is below this policy's minimum 500 (node's answer)"
        finally:
            policy.close()


# --- the node's policy is a floor: the SDK may be stricter, never more permissive ------------------------------

EVERYONE_ALLOWED = {"verified": "allow", "trusted": "allow", "provisional": "allow", "untrusted": "allow"}
STRICT_NODE = {"min_score": 300, "high_risk_tools": ("rocket",)}  # its operator's [scoring]


@pytest.fixture(scope="module")
def strict_node(tmp_path_factory):
    """A node whose operator set `[scoring] min_score = 300` and `high_risk_tools = ["rocket"]`."""
    with node_in_thread(tmp_path_factory.mktemp("strict-node"), **STRICT_NODE) as node:
        yield node


def _provisional_agent(node) -> str:
    agent, _ = node.new_agent(trusted=False)
    with node.client() as client:
        client.vouch(agent, 1.0, "operator")
        assert client.score(agent, explain=False)["tier"] == "provisional"
    return agent


def test_the_node_serves_the_policy_its_checks_apply(strict_node):
    expected = Policy(min_score=300, high_risk_tools=frozenset({"rocket"})).as_dict()
    with NodeClient(strict_node.url) as client:
        assert client.policy() == expected

    async def asked() -> dict:
        async with AsyncTrustClient(strict_node.url) as client:
            return await client.policy()

    assert asyncio.run(asked()) == expected


def test_the_nodes_minimum_score_binds_fresh_and_cached_decisions(strict_node):
    agent, _ = strict_node.new_agent(trusted=False)  # score 50: below the node's 300
    policy = TrustPolicy(strict_node.url, listen=False, tiers=EVERYONE_ALLOWED)
    try:
        fresh = policy.check(agent, "tool_call", "search")
        cached = policy.check(agent, "tool_call", "calculator")
        in_asyncio = asyncio.run(policy.acheck(agent, "tool_call", "weather"))
    finally:
        policy.close()
    assert [(d.source, d.verdict) for d in (fresh, cached, in_asyncio)] == [
        ("node", "block"), ("cache", "block"), ("cache", "block")]
    for decision in (fresh, cached, in_asyncio):
        assert decision.reason.startswith("score") and decision.reason.endswith("minimum 300 (node policy)")


@on_asyncio
async def test_the_node_policy_binds_acheck_from_its_first_call(strict_node):
    agent, _ = strict_node.new_agent(trusted=False)
    policy = TrustPolicy(strict_node.url, listen=False, tiers=EVERYONE_ALLOWED)
    try:
        fresh, cached = await policy.acheck(agent), await policy.acheck(agent, "tool_call", "search")
    finally:
        await policy.aclose()
    assert [(d.source, d.verdict) for d in (fresh, cached)] == [("node", "block"), ("cache", "block")]
    assert cached.reason.endswith("minimum 300 (node policy)")


def test_the_nodes_high_risk_tools_bind_a_tool_the_local_rules_do_not_list(strict_node):
    agent = _provisional_agent(strict_node)
    policy = TrustPolicy(strict_node.url, listen=False)  # the default high-risk list has no rocket
    try:
        assert not policy.rules.is_high_risk("launch_rocket")
        ordinary = policy.check(agent, "tool_call", "search")
        risky = policy.check(agent, "tool_call", "launch_rocket")
        also_risky = policy.check(agent, "tool_call", "rocketLaunch")
        assert policy.is_high_risk("launch_rocket")  # so telemetry reports the call as high-risk
        assert policy.is_high_risk("run_shell") and not policy.is_high_risk("search")
    finally:
        policy.close()
    assert (ordinary.verdict, ordinary.source) == ("audit", "node")
    assert ordinary.reason.endswith("(local policy)")  # a tie: the local rules give the reason
    assert [(d.verdict, d.source) for d in (risky, also_risky)] == [("block", "cache"), ("block", "cache")]
    assert risky.reason.startswith("launch_rocket is high-risk (rocket) and needs tier trusted")
    assert risky.reason.endswith("(node policy)")


def test_stricter_local_rules_still_win(strict_node):
    trusted, _ = strict_node.new_agent(trusted=True)
    provisional = _provisional_agent(strict_node)
    policy = TrustPolicy(strict_node.url, listen=False, min_score=800)
    try:
        above_the_node = policy.check(trusted, "tool_call", "search")
    finally:
        policy.close()
    assert above_the_node.verdict == "block" and above_the_node.reason.endswith("minimum 800 (local policy)")
    policy = TrustPolicy(strict_node.url, listen=False)
    try:
        shell = policy.check(provisional, "tool_call", "run_shell")  # the node lists only rocket
    finally:
        policy.close()
    assert shell.verdict == "block" and shell.reason.startswith("run_shell is high-risk (shell)")
    assert shell.reason.endswith("(local policy)")


TRUSTED_ANSWER = JSONResponse({"score": 761, "tier": "trusted", "decision": "allow", "reason": "tier trusted"})
UNUSABLE_POLICIES = {
    "no such route (an older node)": JSONResponse({"error": "not_found", "detail": "Not Found"}, status_code=404),
    "a server error": JSONResponse({"error": "internal", "detail": "boom"}, status_code=500),
    "not JSON": Response(b"<html>policy</html>", media_type="text/html"),
    "not an object": JSONResponse(["allow"]),
    "a rule this SDK does not know": JSONResponse({**DEFAULT_POLICY.as_dict(), "max_calls_per_minute": 10}),
    "a rule left out": JSONResponse({k: v for k, v in DEFAULT_POLICY.as_dict().items() if k != "min_score"}),
    "a minimum score that is text": JSONResponse({**DEFAULT_POLICY.as_dict(), "min_score": "300"}),
    "a tier without a verdict": JSONResponse({**DEFAULT_POLICY.as_dict(), "tiers": {"verified": "allow"}}),
    "a high-risk tool that is no name": JSONResponse({**DEFAULT_POLICY.as_dict(), "high_risk_tools": ["--"]}),
}


@pytest.mark.parametrize("answer", UNUSABLE_POLICIES.values(), ids=UNUSABLE_POLICIES.keys())
def test_without_the_nodes_policy_a_check_fails_closed_or_open_if_asked(answer, caplog):
    agent = new_did()
    with hostile_node(TRUSTED_ANSWER, policy=answer) as url:
        closed = TrustPolicy(url, listen=False)
        opened = TrustPolicy(url, listen=False, fail_open=True, high_risk_tier="verified")
        try:
            refused = closed.check(agent, "tool_call", "search")
            caplog.clear()
            let_through = opened.check(agent, "tool_call", "search")
            logged = [r.fields["verdict"] for r in caplog.records if r.getMessage().startswith("trust decision")]
            locally_blocked = opened.check(agent, "tool_call", "shell")
        finally:
            closed.close()
            opened.close()
    assert (refused.verdict, refused.allowed, refused.source) == ("block", False, "unreachable")
    assert refused.reason.startswith("the node's policy: ") and refused.reason.endswith("failing closed")
    assert (let_through.verdict, let_through.allowed, let_through.source) == ("audit", True, "node")
    assert let_through.reason.endswith("failing open")
    assert logged == ["audit"]
    assert locally_blocked.verdict == "block"  # failing open lets the node's policy go, not the local rules


def test_observe_mode_applies_the_nodes_policy_but_blocks_nothing(strict_node):
    agent, _ = strict_node.new_agent(trusted=False)
    policy = TrustPolicy(strict_node.url, listen=False, tiers=EVERYONE_ALLOWED, observe=True)
    try:
        decision = policy.check(agent, "tool_call", "search")
    finally:
        policy.close()
    assert (decision.verdict, decision.enforced, decision.allowed) == ("block", False, True)
    assert decision.reason.endswith("(node policy)")
    with hostile_node(TRUSTED_ANSWER, policy=UNUSABLE_POLICIES["a server error"]) as url:
        policy = TrustPolicy(url, listen=False, observe=True)
        try:
            decision = policy.check(agent, "tool_call", "search")
        finally:
            policy.close()
    assert (decision.verdict, decision.enforced, decision.allowed) == ("block", False, True)


def test_the_nodes_policy_is_asked_for_again_after_policy_ttl_not_with_every_uncached_score():
    agent, node = new_did(), _StubStream.answering("trusted")
    with serving_in_thread(node.app) as url:
        kept = TrustPolicy(url, listen=False, cache_ttl=0.0)
        short = TrustPolicy(url, listen=False, policy_ttl=0.0)
        try:
            assert [kept.check(agent).verdict for _ in range(3)] == ["allow"] * 3
            assert node.policy_requests == 1
            assert [short.check(agent).verdict for _ in range(2)] == ["allow"] * 2
            assert node.policy_requests == 3
            node.node_policy = Policy(min_score=900).as_dict()
            assert short.check(agent).reason == "score 800 is below this policy's minimum 900 (node policy)"
        finally:
            kept.close()
            short.close()


def test_the_nodes_policy_is_asked_for_again_when_the_stream_resets():
    agent, other, node = new_did(), new_did(), _StubStream.answering("trusted")
    after_reset = threading.Event()
    with serving_in_thread(node.app) as url:
        policy = TrustPolicy(url, cache_ttl=600, on_change=lambda c: after_reset.set() if c.agent == other else None)
        try:
            assert policy.stream_connected.wait(10)
            assert policy.check(agent).verdict == "allow" and node.policy_requests == 1
            node.node_policy = Policy(min_score=900).as_dict()
            assert policy.check(agent).verdict == "allow"  # the policy it holds is fresh for 600 s
            node.send(b"event: reset\ndata: {}\n\n")
            node.send(_change(other, "trusted", 1))  # handled after the reset: once seen, the reset was too
            assert after_reset.wait(10)
            decision = policy.check(agent)
            assert (decision.verdict, node.policy_requests) == ("block", 2)
            assert decision.reason == "score 800 is below this policy's minimum 900 (node policy)"
        finally:
            policy.close()


def test_high_risk_tools_given_as_one_string_is_refused_not_taken_as_its_letters(dead_url):
    """`high_risk_tools="bash"` made {b, a, s, h} high-risk, and `bash` itself not."""
    with pytest.raises(ValueError, match=r"high_risk_tools: a list of tool names, not one string: \['bash'\]"):
        TrustPolicy(dead_url, listen=False, high_risk_tools="bash")


def test_on_change_without_listening_is_refused(dead_url):
    """`listen=False` follows no stream, so `on_change` was never called, and nothing said so."""
    with pytest.raises(ValueError, match=r"on_change: needs the node's stream; listen=False follows none"):
        TrustPolicy(dead_url, listen=False, on_change=print)



def test_closing_the_policy_ends_its_stream_thread_and_says_it_no_longer_follows(running):
    """`stream_connected` stayed set after close(), the thread gone or going."""
    before = set(threading.enumerate())
    policy = TrustPolicy(running.url)
    connected = policy.stream_connected
    assert connected.wait(10)
    started = set(threading.enumerate()) - before
    policy.close()
    assert not connected.is_set() and not any(thread.is_alive() for thread in started)
