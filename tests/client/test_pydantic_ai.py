"""Pydantic AI: the same tool call is refused (the model reads the refusal as the tool's result) for an untrusted
caller and runs for a trusted one; what ran reaches the node. A FunctionModel stands in for the LLM."""

from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from node.client.adapters.pydantic_ai import trust_hooks

from .running_node import on_asyncio, vouchnet_for


def _script(messages, info: AgentInfo) -> ModelResponse:
    last = messages[-1].parts[-1]
    if isinstance(last, ToolReturnPart):
        return ModelResponse(parts=[TextPart(f"answer: {last.content}")])
    return ModelResponse(parts=[ToolCallPart("search", {"query": "vouchnet"})])


@on_asyncio
async def test_a_tool_call_is_refused_for_an_untrusted_caller_and_runs_for_a_trusted_one(running):
    vouchnet = vouchnet_for(running)
    ran: list[str] = []
    agent = Agent(FunctionModel(_script), deps_type=str, capabilities=[trust_hooks(vouchnet)])

    @agent.tool_plain
    def search(query: str) -> str:
        ran.append(query)
        return f"results for {query}"

    _, stranger_credential = running.new_agent(trusted=False)
    known, known_credential = running.new_agent(trusted=True)
    refused = await agent.run("find it", deps=stranger_credential)
    assert refused.output.startswith("answer: Refused by vouchnet: tier untrusted") and ran == []
    allowed = await agent.run("find it", deps=known_credential)
    assert allowed.output == "answer: results for vouchnet" and ran == ["vouchnet"]
    await vouchnet.aclose()
    assert running.first_hand_events(known) == 11
