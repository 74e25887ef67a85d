"""Microsoft Agent Framework: the same tool call is refused (fail closed, MiddlewareFailure) for an untrusted
caller and runs for a trusted one; what ran reaches the node. A scripted chat client stands in for the model."""

import pytest
from agent_framework import (
    Agent,
    BaseChatClient,
    ChatMiddlewareLayer,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    FunctionInvocationLayer,
    Message,
    ResponseStream,
    tool,
)

from node.client.adapters.agent_framework import TrustFunctionMiddleware, TrustRefused, trust_middleware

from .running_node import GOOD_EVENTS, on_asyncio, vouchnet_for


class ScriptedClient(FunctionInvocationLayer, ChatMiddlewareLayer, BaseChatClient):
    """A model that asks for `search` once, then answers with what the tool returned."""

    async def _inner_get_response(self, *, messages, stream, options, **kwargs):
        last = messages[-1].contents[-1]
        if last.type == "function_result":
            return ChatResponse(messages=[Message(role="assistant", contents=[f"answer: {last.result}"])])
        call = Content.from_function_call(call_id="call-1", name="search", arguments={"query": "vouchnet"})
        return ChatResponse(messages=[Message(role="assistant", contents=[call])])


def _agent(middleware, ran: list[str]) -> Agent:
    @tool
    def search(query: str) -> str:
        """Search the web."""
        ran.append(query)
        return f"results for {query}"

    return Agent(client=ScriptedClient(), tools=[search], middleware=middleware)


@on_asyncio
async def test_a_tool_call_is_refused_for_an_untrusted_caller_and_runs_for_a_trusted_one(running):
    vouchnet = vouchnet_for(running)
    stranger, stranger_credential = running.new_agent(trusted=False)
    known, known_credential = running.new_agent(trusted=True)
    ran: list[str] = []
    agent = _agent([TrustFunctionMiddleware(vouchnet)], ran)

    with pytest.raises(TrustRefused, match="vouchnet refused tool_call with search: tier untrusted") as refused:
        await agent.run("find it", function_invocation_kwargs={"vouchnet_credential": stranger_credential})
    assert refused.value.decision.agent == stranger and ran == []

    answer = await agent.run("find it", function_invocation_kwargs={"vouchnet_credential": known_credential})
    assert answer.text == "answer: results for vouchnet" and ran == ["vouchnet"]
    await vouchnet.aclose()
    assert running.first_hand_events(known) == GOOD_EVENTS + 1
    assert running.first_hand_events(stranger) == 0  # a refusal by trust is not reported as a violation


@on_asyncio
async def test_the_agent_middleware_refuses_the_run_before_the_model_is_asked_and_reports_only_its_tool_calls(running):
    """Found by stop 45's adapter walk: the run was an invoke_agent event of its own besides its tool calls, so a run
    of N tool calls weighed N+1 events, where LangChain, Pydantic AI and MCP report the same work as N."""
    vouchnet = vouchnet_for(running)
    ran: list[str] = []
    agent = _agent(trust_middleware(vouchnet), ran)
    with pytest.raises(TrustRefused, match="invoke_agent: unverified caller: credential"):
        await agent.run("find it")
    known, credential = running.new_agent(trusted=True)
    await agent.run("find it", function_invocation_kwargs={"vouchnet_credential": credential})
    assert ran == ["vouchnet"]
    await vouchnet.aclose()
    assert running.first_hand_events(known) == GOOD_EVENTS + 1  # the tool call, as through every other adapter


@on_asyncio
async def test_observe_mode_lets_an_untrusted_caller_through_and_reports_it(running):
    vouchnet = vouchnet_for(running, observe=True)
    stranger, credential = running.new_agent(trusted=False)
    ran: list[str] = []
    await _agent(trust_middleware(vouchnet), ran).run(
        "find it", function_invocation_kwargs={"vouchnet_credential": credential})
    assert ran == ["vouchnet"]
    await vouchnet.aclose()
    assert running.first_hand_events(stranger) == 1


@on_asyncio
async def test_a_tool_call_refused_within_a_gated_run_is_not_reported_as_the_run_failing(running):
    """Found by stop 45's adapter walk: the run's gate reported the TrustRefused of a tool call it let through as the
    run's error, a bad event that cost a trusted agent 15 points for a tool its tier did not reach."""
    vouchnet = vouchnet_for(running, high_risk_tools=["search"], high_risk_tier="verified")
    known, credential = running.new_agent(trusted=True)
    ran: list[str] = []
    with pytest.raises(TrustRefused, match="search is high-risk"):
        await _agent(trust_middleware(vouchnet), ran).run(
            "find it", function_invocation_kwargs={"vouchnet_credential": credential})
    assert ran == []
    await vouchnet.aclose()
    assert running.first_hand_events(known) == GOOD_EVENTS
    with running.client() as client:
        assert client.score(known)["tier"] == "trusted"


class StreamingClient(FunctionInvocationLayer, ChatMiddlewareLayer, BaseChatClient):
    """A model that streams some text, then loses its connection."""

    def _inner_get_response(self, *, messages, stream, options, **kwargs):
        async def updates():
            yield ChatResponseUpdate(role="assistant", contents=[Content.from_text("thinking")])
            raise ConnectionError("the model's connection was lost")

        return self._build_response_stream(updates())


@on_asyncio
async def test_a_streamed_run_is_gated_and_its_model_failing_is_not_the_caller_s_event(running):
    """A streamed run (agent.run(..., stream=True)) is refused before the model is asked, as a run is; one whose model
    fails as it streams ran no tool, so it is no event of the caller's (it was an invoke_agent error)."""
    vouchnet = vouchnet_for(running)
    known, credential = running.new_agent(trusted=True)
    agent = Agent(client=StreamingClient(), middleware=trust_middleware(vouchnet))
    with pytest.raises(TrustRefused, match="invoke_agent: unverified caller"):
        async for _ in agent.run("find it", stream=True):
            pass
    stream = agent.run("find it", stream=True, function_invocation_kwargs={"vouchnet_credential": credential})
    assert isinstance(stream, ResponseStream)
    with pytest.raises(ConnectionError):
        async for _ in stream:
            pass
    await vouchnet.aclose()
    assert running.first_hand_events(known) == GOOD_EVENTS
