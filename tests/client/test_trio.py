"""The SDK's async API on trio, as on asyncio (DESIGN §8): a trio service authorizes and guards its calls, fails
closed within its timeout, and sends its telemetry on aclose (the suite runs async tests on trio)."""

import json
import threading

import httpx
import pytest
import trio

from node.client import TelemetryCollector, TrustPolicy, Vouchnet

from ..factories import API_TOKEN, new_did
from .running_node import GOOD_EVENTS, vouchnet_for
from .trickling import TRICKLED_BODY, trickling


async def _search() -> str:
    return "results"


def _refused(decision) -> str:
    return f"refused: {decision.reason}"


async def test_a_trio_service_authorizes_guards_and_sends_its_telemetry_on_aclose(running):
    known, credential = running.new_agent(trusted=True)
    _, stranger = running.new_agent(trusted=False)
    vouchnet = vouchnet_for(running)
    assert (await vouchnet.authorize(credential, "tool_call", "search")).verdict == "allow"
    assert await vouchnet.guard(credential, _search, _refused, tool="search") == "results"
    assert (await vouchnet.guard(stranger, _search, _refused, tool="search")).startswith("refused: tier untrusted")
    await vouchnet.aclose()
    assert running.first_hand_events(known) == GOOD_EVENTS + 1


async def test_a_node_that_trickles_its_answer_fails_a_trio_check_closed_within_the_timeout():
    with trickling(TRICKLED_BODY) as (url, _):
        policy = TrustPolicy(url, listen=False, timeout=0.5)
        decision = await policy.acheck(new_did())
        await policy.aclose()
    assert (decision.verdict, decision.source) == ("block", "unreachable")
    assert "did not answer within 0.5 s; failing closed" in decision.reason


async def _too_slow() -> str:
    with trio.fail_after(0):
        await trio.sleep(1)
    return "never"


async def test_a_call_that_trio_timed_out_is_reported_as_a_timeout(running):
    """trio's TooSlowError is no TimeoutError: it was reported as an error, which scoring weighs otherwise."""
    _, credential = running.new_agent(trusted=True)
    posted: list[str] = []

    def node(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        posted.extend(event["outcome"] for event in events)
        return httpx.Response(200, json={"accepted": len(events), "rejected": []})

    telemetry = TelemetryCollector(running.url, API_TOKEN, flush_interval=3600, transport=httpx.MockTransport(node))
    vouchnet = Vouchnet(running.url, policy=TrustPolicy(running.url, listen=False), telemetry=telemetry)
    with pytest.raises(trio.TooSlowError):
        await vouchnet.guard(credential, _too_slow, _refused, tool="search")
    await vouchnet.aclose()
    assert posted == ["timeout"]


async def test_aclose_leaves_the_event_loop_free_while_the_stream_thread_ends(monkeypatch):
    """ScoreStream.close waits up to 5 s for its thread (one in the middle of connecting ends only when the connect
    does): aclose waited on the event loop's own thread, so every other task of the service stood still."""
    policy = TrustPolicy("http://127.0.0.1:9", listen=False)
    released = threading.Event()
    waits: list[bool] = []
    monkeypatch.setattr(policy, "close", lambda: waits.append(released.wait(5)))

    async def other_task() -> None:
        await trio.lowlevel.checkpoint()
        released.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(policy.aclose)
        nursery.start_soon(other_task)
    assert waits == [True]
