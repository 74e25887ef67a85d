"""Pydantic AI: the same tool call is refused (the model reads the refusal as the tool's result) for an untrusted
caller and runs for a trusted one; what ran reaches the node. A FunctionModel stands in for the LLM."""

import os
import subprocess
import sys
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from node.client.adapters.pydantic_ai import trust_hooks

from .running_node import on_asyncio, vouchnet_for

ROOT = Path(__file__).resolve().parents[2]


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


RUN_SYNC_AND_CLOSE = """
import os, sys
from pydantic_ai import Agent
from pydantic_ai.models.function import FunctionModel
from node.client import TelemetryCollector, TrustPolicy, Vouchnet
from node.client.adapters.pydantic_ai import trust_hooks
from tests.client.test_pydantic_ai import _script

url = os.environ["NODE"]
vouchnet = Vouchnet(url, policy=TrustPolicy(url, listen=False), telemetry=TelemetryCollector(url, os.environ["TOKEN"]))
agent = Agent(FunctionModel(_script), deps_type=str, capabilities=[trust_hooks(vouchnet)])
agent.tool_plain(lambda query: f"results for {query}", name="search")
print(agent.run_sync("find it", deps=os.environ["CREDENTIAL"]).output)
vouchnet.close()
"""


def test_close_after_run_sync_closes_the_policy_s_connection_on_the_loop_run_sync_left_open(running):
    """Found by stop 45's adapter walk: Agent.run_sync runs the agent on an event loop it leaves open, so the policy's
    async client made on that loop was never closed (the loop never ends to close it): a program that ran an agent
    with run_sync and closed Vouchnet left its connection to the node to the garbage collector (ResourceWarning:
    unclosed transport, under -X dev)."""
    known, credential = running.new_agent(trusted=True)
    done = subprocess.run([sys.executable, "-X", "dev", "-c", RUN_SYNC_AND_CLOSE], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "NODE": running.url,
                                                      "TOKEN": running.token, "CREDENTIAL": credential})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "answer: results for vouchnet\n"
    assert "ResourceWarning" not in done.stderr, done.stderr
    assert running.first_hand_events(known) == 11
