"""A hung or down node costs a check one timeout, then microseconds (node.client._breaker): the breaker of its
address opens at a failure, lets one probe through once its interval has passed, and closes at the first answer;
the decisions meanwhile are those of an unreachable node, saying when it failed and when it is asked again."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from nacl.signing import SigningKey

from node.client import CredentialVerifier, TrustPolicy, UnverifiedAgent, _breaker
from node.client._breaker import FIRST_S, JITTER, MAX_S, Breaker, Breakers, NodeFailing, interval
from node.client._http import NodeUnreachable
from node.client.identity import JWKS_PATH, MAX_JWKS, MAX_LIST_TOKEN
from node.credential_status import list_url
from node.credentials import agent_credential
from vouching.policy import DEFAULT_POLICY

from ..factories import new_did
from ..refused_port import refused_port
from .loopback import serving_in_thread
from .stub_org import StubOrg

TIMEOUT = 0.3  # seconds: each request to a hung node really waits this long


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The breakers' clock (no jitter: each interval its nominal length), moved by the test."""
    fake = FakeClock()
    monkeypatch.setattr(_breaker, "BREAKERS", Breakers(clock=fake, draw=lambda: 0.0))
    return fake


@dataclass
class SwitchableNode:
    """A node's policy and check endpoints that answer (allow, from a verified agent), or hang until the test ends
    while `hung` is set; `asked` counts the requests that reached it."""

    hung: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    asked: int = 0
    arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    streaming: threading.Event = field(default_factory=threading.Event)  # its /v1/stream answers once set

    def app(self, _: str) -> Starlette:
        async def answering(answer: dict[str, object]) -> JSONResponse:
            self.asked += 1
            self.arrived.release()
            if self.hung.is_set():
                await anyio.to_thread.run_sync(self.ended.wait)
            return JSONResponse(answer)

        async def policy(_: Request) -> JSONResponse:
            return await answering(DEFAULT_POLICY.as_dict())

        async def check(_: Request) -> JSONResponse:
            return await answering({"decision": "allow", "reason": "verified", "score": 900, "tier": "verified"})

        async def keys(_: Request) -> JSONResponse:
            return await answering({"keys": []})

        async def stream(_: Request) -> StreamingResponse:
            await anyio.to_thread.run_sync(self.streaming.wait)

            async def lines() -> AsyncIterator[bytes]:
                yield b": connected\n\n"
                await anyio.to_thread.run_sync(self.ended.wait)

            return StreamingResponse(lines(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/policy", policy), Route("/v1/agents/{did}/check", check, methods=["POST"]),
                                 Route(JWKS_PATH, keys), Route("/v1/stream", stream)])


@contextmanager
def switchable(*, hung: bool) -> Iterator[tuple[str, SwitchableNode]]:
    node = SwitchableNode()
    if hung:
        node.hung.set()
    with serving_in_thread(node.app) as url:
        try:
            yield url, node
        finally:
            node.streaming.set()
            node.ended.set()  # before the server stops: it waits for the requests in flight


def _reasons_agree(first: str, later: str) -> None:
    """`later`, a decision made while the breaker is open, says what `first` said, and when the node is asked again."""
    cause = first.removeprefix("the node's policy: ").removesuffix("; failing closed")
    assert later.startswith(f"the node's policy: {cause} (") and later.endswith("; failing closed")
    assert " s ago, 1 failure in a row: not asked again for " in later


def test_n_checks_against_a_hung_node_take_one_timeout_not_n(clock):
    with switchable(hung=True) as (url, node):
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT)
        first = policy.check(new_did())
        assert (first.verdict, first.source) == ("block", "unreachable")
        assert f"did not answer within {TIMEOUT} s; failing closed" in first.reason
        for _ in range(20):
            later = policy.check(new_did())
            assert (later.verdict, later.source, later.allowed) == ("block", "unreachable", False)
            _reasons_agree(first.reason, later.reason)
        assert node.asked == 1
        policy.close()


async def test_n_async_checks_failing_open_take_one_timeout_and_keep_its_rules(clock):
    """Failing open, the check after the policy's failed fetch is not sent either: one timeout for both; a high-risk
    tool is still blocked."""
    with switchable(hung=True) as (url, node):
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT, fail_open=True)
        for _ in range(5):
            decision = await policy.acheck(new_did(), "tool_call", "search")
            assert (decision.verdict, decision.source, decision.allowed) == ("audit", "unreachable", True)
            assert decision.reason.endswith("; failing open")
            risky = await policy.acheck(new_did(), "tool_call", "shell")
            assert (risky.verdict, risky.source) == ("block", "unreachable")
            assert "failing open, but shell is high-risk" in risky.reason
        assert node.asked == 1
        await policy.aclose()


def test_a_node_back_answers_the_first_check_once_the_interval_has_passed(clock):
    with switchable(hung=True) as (url, node):
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT)
        assert policy.check(new_did()).source == "unreachable"
        node.hung.clear()  # the node is back
        clock.now += FIRST_S - 0.01
        assert "not asked again for 0.0 s" in policy.check(new_did()).reason
        assert node.asked == 1
        clock.now += 0.01
        decision = policy.check(new_did())
        assert (decision.verdict, decision.source) == ("allow", "node")
        assert node.asked == 3  # the probe (the policy), then the check: the breaker closed at the first answer
        policy.close()


def test_a_node_back_from_a_restart_answers_the_next_check_once_its_stream_reconnects(clock):
    """The breaker kept the checks failing closed for the rest of its interval (up to 8 s after a restart) though the
    policy's stream had reconnected, proof the node answers again: the stream's connection closes it."""
    with switchable(hung=True) as (url, node):
        policy = TrustPolicy(url, timeout=TIMEOUT)
        assert policy.check(new_did()).source == "unreachable"
        node.hung.clear()  # the node is back: its stream answers too
        node.streaming.set()
        assert policy.stream_connected.wait(10)
        decision = policy.check(new_did())  # the breaker's clock has not moved: none of its interval has passed
        assert (decision.verdict, decision.source) == ("allow", "node")
        policy.close()


def test_two_concurrent_checks_do_not_both_wait_for_the_probe(clock):
    with switchable(hung=True) as (url, node):
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT)
        policy.check(new_did())
        clock.now += FIRST_S
        probing = threading.Thread(target=policy.check, args=(new_did(),))
        probing.start()
        assert node.arrived.acquire(timeout=10)  # the failure's
        assert node.arrived.acquire(timeout=10)  # the probe's: in flight now
        other = policy.check(new_did())
        assert other.source == "unreachable" and "not asked again until the request trying it now ends" in other.reason
        assert probing.is_alive() and node.asked == 2
        probing.join(10)
        later = policy.check(new_did())  # the probe failed: the interval doubled
        assert f"2 failures in a row: not asked again for {2 * FIRST_S:.1f} s" in later.reason
        policy.close()


def test_a_hung_node_costs_a_cold_authorize_one_timeout_across_the_verifier_and_the_policy(clock):
    """Its keys (the verifier) and its policy (the policy) are fetched from one address: one breaker."""
    with switchable(hung=True) as (url, node):
        verifier = CredentialVerifier([url], timeout=TIMEOUT)
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT)
        with pytest.raises(UnverifiedAgent, match="cannot fetch the keys of any trusted issuer"):
            verifier.verify(agent_credential(SigningKey.generate(), new_did()))
        decision = policy.check(new_did())
        assert (decision.source, node.asked) == ("unreachable", 1)
        assert f"{url}{JWKS_PATH}: timed out (0.0 s ago" in decision.reason
        policy.close()


def test_a_jwks_url_s_password_is_not_repeated_to_the_policy_s_callers(clock, caplog):
    """The verifier's failed fetch opens the breaker its URL shares with the policy, whose decisions (told to the
    caller, and logged) then said why the breaker is open: in the JWKS URL's words, its password included."""
    with refused_port() as port:
        verifier = CredentialVerifier([f"http://service:hunter2@127.0.0.1:{port}"], timeout=TIMEOUT)
        policy = TrustPolicy(f"http://127.0.0.1:{port}", listen=False, timeout=TIMEOUT)
        with pytest.raises(UnverifiedAgent):
            verifier.verify(agent_credential(SigningKey.generate(), new_did()))
        decision = policy.check(new_did())
        policy.close()
    assert f"http://service@127.0.0.1:{port}{JWKS_PATH}: " in decision.reason
    assert "hunter2" not in decision.reason and "hunter2" not in caplog.text


# --- the breaker alone -------------------------------------------------------------------------------------------


def _fail(breaker: Breaker, why: str = "down") -> None:
    with pytest.raises(NodeUnreachable), breaker.attempt():
        raise NodeUnreachable(why)


def test_an_answer_closes_it_and_a_refusal_is_an_answer():
    clock = FakeClock()
    breaker = Breaker(clock, lambda: 0.0)
    _fail(breaker)
    clock.now += FIRST_S
    with pytest.raises(ValueError), breaker.attempt():  # the node answered, with what the caller refuses
        raise ValueError("not JSON")
    with breaker.attempt():
        pass


def test_a_cancelled_probe_hands_its_turn_to_the_next_request():
    clock = FakeClock()
    breaker = Breaker(clock, lambda: 0.0)
    _fail(breaker)
    clock.now += FIRST_S
    with pytest.raises(KeyboardInterrupt), breaker.attempt():
        raise KeyboardInterrupt
    with breaker.attempt():
        pass


def test_a_probe_that_never_ends_holds_the_others_back_at_most_the_longest_interval():
    """A probe whose task stalls (its event loop stopped, or blocked by its own code) or whose thread is lost (a fork
    copies the breaker, not the thread) never ends: every request of the process, from any thread or loop, failed at
    once for as long, the node long back."""
    clock = FakeClock()
    breaker = Breaker(clock, lambda: 0.0)
    _fail(breaker)
    clock.now += FIRST_S
    stalled = breaker.attempt()
    stalled.__enter__()  # the probe, never to end
    clock.now += MAX_S - 0.1
    with pytest.raises(NodeFailing, match="until the request trying it now ends"), breaker.attempt():
        pass
    clock.now += 0.1
    with breaker.attempt():
        pass


def test_a_request_sent_before_it_opened_does_not_lengthen_the_interval():
    clock = FakeClock()
    breaker = Breaker(clock, lambda: 0.0)
    with pytest.raises(NodeUnreachable), breaker.attempt():  # sent while closed, fails after the other below
        _fail(breaker, "first")
        raise NodeUnreachable("second")
    clock.now += FIRST_S
    with breaker.attempt():
        pass


def test_intervals_double_from_one_second_to_thirty_jittered():
    clock = FakeClock()
    breaker = Breaker(clock, lambda: 0.5)
    seen = []
    for _ in range(8):
        _fail(breaker)
        with pytest.raises(NodeFailing, match=r"not asked again for (\d+\.\d) s") as refused:
            with breaker.attempt():
                pass
        seen.append(float(refused.value.args[0].rsplit("not asked again for ", 1)[1].split(" ")[0]))
        clock.now += MAX_S
    assert seen == [0.9, 1.8, 3.6, 7.2, 14.4, 27.0, 27.0, 27.0]


@given(st.integers(1, 1_000), st.floats(0, 1, exclude_max=True))
def test_an_interval_is_within_its_jitter_of_its_nominal_length(failures, draw):
    nominal = min(FIRST_S * 2 ** (failures - 1), MAX_S)
    assert nominal * (1 - JITTER) <= interval(failures, draw) <= nominal


def test_each_origin_has_its_own_breaker():
    breakers = Breakers()
    assert breakers.of("http://127.0.0.1:8700/v1/policy") is breakers.of("http://127.0.0.1:8700/.well-known/jwks.json")
    assert breakers.of("http://127.0.0.1:8700") is not breakers.of("http://127.0.0.1:8701")


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_proxy_that_cannot_reach_the_node_opens_the_breaker_as_a_hung_node_does(clock, status):
    """A reverse proxy in front of the node answering its own 502, 503 or 504 page (not the node's error form) is a
    node not reached: checks fail closed and only the first reaches the proxy (Envoy counts gateway errors as
    failures). It closed the breaker as an answer, so a proxy whose upstream timeout was under the SDK's made every
    check wait it. A node's own 503, in its error form, stays an answer."""
    asked = []

    def app(_: str) -> Starlette:
        async def gateway(_: Request) -> PlainTextResponse:
            asked.append(1)
            return PlainTextResponse("<html>upstream timed out</html>", status_code=status)

        return Starlette(routes=[Route("/v1/policy", gateway), Route("/v1/agents/{did}/check", gateway,
                                                                     methods=["POST"])])

    with serving_in_thread(app) as url:
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT)
        for _ in range(10):
            decision = policy.check(new_did())
            assert (decision.verdict, decision.source, decision.allowed) == ("block", "unreachable", False)
        assert len(asked) == 1
        assert "not asked again for" in decision.reason and str(status) in decision.reason
        policy.close()


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_proxy_that_cannot_reach_the_node_for_its_keys_opens_the_breaker_too(clock, status):
    """The verifier's JWKS fetch counted only a connection's failure: a proxy's 502 closed the breaker the policy
    shares, as if the node had answered, so the next check waited on the proxy again."""
    asked = []

    def app(_: str) -> Starlette:
        async def gateway(_: Request) -> PlainTextResponse:
            asked.append(1)
            return PlainTextResponse("<html>bad gateway</html>", status_code=status)

        return Starlette(routes=[Route(JWKS_PATH, gateway), Route("/v1/policy", gateway),
                                 Route("/v1/agents/{did}/check", gateway, methods=["POST"])])

    with serving_in_thread(app) as url:
        verifier = CredentialVerifier([url], timeout=TIMEOUT)
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT)
        with pytest.raises(UnverifiedAgent, match="cannot fetch the keys of any trusted issuer"):
            verifier.verify(agent_credential(SigningKey.generate(), new_did()))
        decision = policy.check(new_did())
        assert (decision.source, len(asked)) == ("unreachable", 1)
        assert f"{url}{JWKS_PATH}: " in decision.reason and str(status) in decision.reason
        policy.close()


@pytest.mark.parametrize("answer, said", [
    (PlainTextResponse("<html>bad gateway</html>", status_code=502), "502"),
    (Response(b" " * (MAX_LIST_TOKEN + 1), media_type="application/vc+jwt"), f"over the limit of {MAX_LIST_TOKEN}"),
], ids=["a proxy's 502", "an answer over its cap"])
def test_a_status_list_fetch_that_gets_no_answer_opens_the_breaker_too(clock, answer, said):
    """A status list is fetched as the keys are (_bounded.get_capped), by the same rule (an answer over its cap was
    counted as an answer, and closed the breaker the policy shares)."""
    key, node = SigningKey.generate(), SwitchableNode()
    org = StubOrg([key])

    def app(url: str) -> Starlette:
        return Starlette(routes=[Route(list_url("", 0), lambda _: answer), *org.app(url).routes,
                                 *node.app(url).routes])

    with serving_in_thread(app) as url:
        verifier = CredentialVerifier([url], timeout=TIMEOUT)
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT)
        with pytest.raises(UnverifiedAgent, match="the issuer's status list is unavailable"):
            verifier.verify(org.credential(key, 0))
        decision = policy.check(new_did())
        assert (decision.source, node.asked) == ("unreachable", 0)
        assert f"{url}{list_url('', 0)}: " in decision.reason and said in decision.reason
        policy.close()


def test_an_answer_over_its_cap_to_a_fetch_of_keys_opens_the_breaker_as_it_does_on_the_policy_s_path(clock):
    """An oversized answer failed a policy's call and opened the breaker, but a fetch of keys counted it as an
    answer and closed the breaker the policy shares: the next check asked the node that sent it again."""
    node = SwitchableNode()

    def app(url: str) -> Starlette:
        async def oversized(_: Request) -> Response:
            return Response(b" " * (MAX_JWKS + 1), media_type="application/json")

        return Starlette(routes=[Route(JWKS_PATH, oversized), *node.app(url).routes])

    with serving_in_thread(app) as url:
        verifier = CredentialVerifier([url], timeout=TIMEOUT)
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT)
        with pytest.raises(UnverifiedAgent, match=f"cannot fetch the keys .*over the limit of {MAX_JWKS}"):
            verifier.verify(agent_credential(SigningKey.generate(), new_did()))
        decision = policy.check(new_did())
        assert (decision.source, node.asked) == ("unreachable", 0)
        assert f"{url}{JWKS_PATH}: " in decision.reason and f"over the limit of {MAX_JWKS}" in decision.reason
        policy.close()


def test_a_node_s_own_503_to_a_fetch_of_its_keys_is_an_answer_too(clock):
    """The JWKS fetch counted any 503 as a failure, the node's own in its error form too: a storage failure of the
    node's opened the breaker the policy shares, and its checks failed closed without asking it."""
    asked = []

    def app(_: str) -> Starlette:
        async def storage(_: Request) -> JSONResponse:
            asked.append(1)
            return JSONResponse({"error": "storage", "detail": "disk full"}, status_code=503)

        return Starlette(routes=[Route(JWKS_PATH, storage), *SwitchableNode().app(_).routes])

    with serving_in_thread(app) as url:
        verifier = CredentialVerifier([url], timeout=TIMEOUT)
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT)
        with pytest.raises(UnverifiedAgent, match="cannot fetch the keys of any trusted issuer.*503"):
            verifier.verify(agent_credential(SigningKey.generate(), new_did()))
        assert policy.check(new_did()).verdict == "allow"
        assert len(asked) == 1
        policy.close()


def test_a_node_s_own_503_in_its_error_form_is_an_answer(clock):
    """The node's own refusal (its {"error", "detail"} form, a storage failure's 503) is the node answering: the
    breaker stays closed and every check asks it."""
    asked = []

    def app(_: str) -> Starlette:
        async def storage(_: Request) -> JSONResponse:
            asked.append(1)
            return JSONResponse({"error": "storage", "detail": "disk full"}, status_code=503)

        return Starlette(routes=[Route("/v1/policy", storage), Route("/v1/agents/{did}/check", storage,
                                                                     methods=["POST"])])

    with serving_in_thread(app) as url:
        policy = TrustPolicy(url, listen=False, timeout=TIMEOUT)
        for _ in range(3):
            assert policy.check(new_did()).verdict == "block"
        assert len(asked) == 3
        policy.close()
