"""LangChain / LangGraph: the same tool call is refused (the model reads an error ToolMessage with the reason)
for an untrusted caller and runs for a trusted one; fail-closed when the node is down; what ran reaches the node.
A scripted chat model stands in for the LLM."""

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from node.client import TrustPolicy, Vouchnet
from node.client.adapters.langchain import TrustMiddleware

from .running_node import GOOD_EVENTS, on_asyncio, vouchnet_for
from .test_a2a import untrusted_target


class ScriptedModel(GenericFakeChatModel):
    def bind_tools(self, tools, **kwargs):
        return self


def _agent(vouchnet: Vouchnet, ran: list[str]):
    @tool
    def search(query: str) -> str:
        """Search the web."""
        ran.append(query)
        return f"results for {query}"

    model = ScriptedModel(messages=iter([
        AIMessage(content="", tool_calls=[{"name": "search", "args": {"query": "vouchnet"}, "id": "call-1"}]),
        AIMessage(content="done"),
    ]))
    return create_agent(model, tools=[search], middleware=[TrustMiddleware(vouchnet)])


async def _tool_message(vouchnet: Vouchnet, credential: str | None, ran: list[str]) -> ToolMessage:
    out = await _agent(vouchnet, ran).ainvoke({"messages": [{"role": "user", "content": "find it"}]},
                                              context={"vouchnet_credential": credential})
    (message,) = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    return message


@on_asyncio
async def test_a_tool_call_is_refused_for_an_untrusted_caller_and_runs_for_a_trusted_one(running):
    vouchnet = vouchnet_for(running)
    stranger, stranger_credential = running.new_agent(trusted=False)
    known, known_credential = running.new_agent(trusted=True)
    ran: list[str] = []

    refused = await _tool_message(vouchnet, stranger_credential, ran)
    assert refused.status == "error" and refused.content.startswith("Refused by vouchnet: tier untrusted")
    assert ran == []

    allowed = await _tool_message(vouchnet, known_credential, ran)
    assert allowed.status == "success" and allowed.content == "results for vouchnet" and ran == ["vouchnet"]
    await vouchnet.aclose()
    assert running.first_hand_events(known) == GOOD_EVENTS + 1


@on_asyncio
async def test_a_caller_without_a_credential_is_refused(running):
    ran: list[str] = []
    refused = await _tool_message(vouchnet_for(running), None, ran)
    assert "unverified caller" in refused.content and ran == []


@on_asyncio
async def test_it_fails_closed_when_the_node_is_down(running):
    _, credential = running.new_agent(trusted=True)
    down = "http://127.0.0.1:9"
    vouchnet = Vouchnet(down, policy=TrustPolicy(down, listen=False), issuers=[running.url])
    ran: list[str] = []
    refused = await _tool_message(vouchnet, credential, ran)
    assert "failing closed" in refused.content and ran == []


def test_a_synchronous_agent_is_gated_too(running):
    vouchnet = vouchnet_for(running)
    _, stranger = running.new_agent(trusted=False)
    known, credential = running.new_agent(trusted=True)
    ran: list[str] = []
    for caller in (stranger, credential):
        out = _agent(vouchnet, ran).invoke({"messages": [{"role": "user", "content": "find it"}]},
                                           context={"vouchnet_credential": caller})
        (message,) = [m for m in out["messages"] if isinstance(m, ToolMessage)]
        assert message.status == ("success" if caller == credential else "error")
    assert ran == ["vouchnet"]
    vouchnet.telemetry.shutdown()
    assert running.first_hand_events(known) == GOOD_EVENTS + 1


@on_asyncio
async def test_a_tool_whose_delegation_is_refused_its_target_is_not_reported_as_the_caller_s_error(running):
    """Found by stop 45's adapter walk: LangGraph's ToolNode with handle_tool_errors turns a tool's exception into an
    error ToolMessage before the middleware sees it, so a tool whose A2A delegation TrustInterceptor refused
    (UntrustedTarget) was reported as its caller's error."""
    vouchnet = vouchnet_for(running)
    caller, credential = running.new_agent(trusted=True)
    async with untrusted_target(running, vouchnet, credential) as delegate:
        @tool
        async def ask_a_partner(task: str) -> str:
            """Delegate the task to a partner's agent."""
            return str(await delegate())

        tools = ToolNode([ask_a_partner], handle_tool_errors=True,
                         awrap_tool_call=TrustMiddleware(vouchnet).awrap_tool_call)
        graph = StateGraph(MessagesState, context_schema=dict).add_node("tools", tools).add_edge(START, "tools")
        call = {"name": "ask_a_partner", "args": {"task": "find it"}, "id": "call-1"}
        out = await graph.compile().ainvoke({"messages": [AIMessage(content="", tool_calls=[call])]},
                                            context={"vouchnet_credential": credential})
    (message,) = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert message.status == "error" and "vouchnet refused to delegate" in message.content
    await vouchnet.aclose()
    assert running.first_hand_events(caller) == GOOD_EVENTS
