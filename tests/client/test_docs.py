"""The README's SDK examples run as written against a real node: each is executed verbatim, given only what its
text says is yours (a chat client or model, an A2A card and executor, a URL), for a trusted and an untrusted
calling agent."""

import asyncio
import re
from pathlib import Path

import httpx2
import pytest
from mcp.client.client import Client
from langchain_core.messages import AIMessage
from mcp.client.streamable_http import streamable_http_client

from node.client import TrustPolicy, Vouchnet
from node.client.adapters.agent_framework import TrustRefused
from node.client.adapters.a2a import UntrustedTarget

from .loopback import serving_in_thread
from .running_node import RunningNode
from .test_a2a import Echo, _card
from .test_agent_framework import ScriptedClient
from .test_langchain import ScriptedModel

DOC = Path(__file__).parents[2] / "README.md"
EXAMPLE = re.compile(r"<!-- example: (\w+) -->\n```python\n(.*?)```", re.DOTALL)
EXAMPLES = dict(EXAMPLE.findall(DOC.read_text()))


def _model() -> ScriptedModel:
    return ScriptedModel(messages=iter([
        AIMessage(content="", tool_calls=[{"name": "search", "args": {"query": "vouchnet"}, "id": "call-1"}]),
        AIMessage(content="done"),
    ]))


@pytest.fixture
def run_example(running: RunningNode, monkeypatch, capsys):
    """Run an example as a script would (`__name__` is not "__main__"); return its globals and what it printed."""
    monkeypatch.setenv("VOUCHNET_NODE", running.url)
    monkeypatch.setenv("VOUCHNET_TOKEN", running.token)

    made: list[dict] = []

    def run(name: str, credential: str | None = None, **yours):
        if credential is not None:
            monkeypatch.setenv("AGENT_CREDENTIAL", credential)
        namespace = {"__name__": f"docs_example_{name}", **yours}
        made.append(namespace)
        exec(compile(EXAMPLES[name], f"README.md:{name}", "exec"), namespace)  # noqa: S102 - our own docs
        return namespace, capsys.readouterr().out

    yield run
    for namespace in made:  # what an example leaves open (its process would end here)
        for value in namespace.values():
            if isinstance(value, Vouchnet):
                value.policy.close()
                if value.telemetry is not None:
                    value.telemetry.shutdown(timeout=1)
            elif isinstance(value, TrustPolicy):
                value.close()


def test_every_example_is_tested():
    tests = [name for name in globals() if name.startswith("test_")]
    assert len(EXAMPLES) == 9 and all(any(example in test for test in tests) for example in EXAMPLES)


def test_agent_framework(running, run_example):
    known, credential = running.new_agent(trusted=True)
    _, out = run_example("agent_framework", credential, client=ScriptedClient())
    assert "answer: results for vouchnet" in out
    assert running.first_hand_events(known) == 11  # the tool call: the run is no event of its own
    _, stranger = running.new_agent(trusted=False)
    with pytest.raises(TrustRefused, match="tier untrusted"):
        run_example("agent_framework", stranger, client=ScriptedClient())


def test_langchain(running, run_example):
    _, credential = running.new_agent(trusted=True)
    assert run_example("langchain", credential, model=_model())[1].strip() == "results for vouchnet"
    _, stranger = running.new_agent(trusted=False)
    assert run_example("langchain", stranger, model=_model())[1].startswith("Refused by vouchnet: tier untrusted")


def test_pydantic_ai(running, run_example):
    _, credential = running.new_agent(trusted=True)
    assert "results for" in run_example("pydantic_ai", credential)[1]
    _, stranger = running.new_agent(trusted=False)
    assert "Refused by vouchnet: tier untrusted" in run_example("pydantic_ai", stranger)[1]


def test_mcp(running, run_example):
    namespace, _ = run_example("mcp")
    known, credential = running.new_agent(trusted=True)
    _, stranger = running.new_agent(trusted=False)

    async def call(url: str, token: str):
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
            async with Client(streamable_http_client(url + "/mcp", http_client=http)) as client:
                return await client.call_tool("search", {"query": "vouchnet"})

    with serving_in_thread(lambda _: namespace["server"].streamable_http_app()) as url:
        assert asyncio.run(call(url, credential)).content[0].text == "results for vouchnet"
        assert asyncio.run(call(url, stranger)).is_error
    asyncio.run(namespace["vouchnet"].aclose())
    assert running.first_hand_events(known) == 11


def test_a2a_server_and_a2a_client(running, run_example, tmp_path, monkeypatch):
    """The server example serves; the client example delegates to it (trusted) or refuses (untrusted)."""
    monkeypatch.chdir(tmp_path)
    for trusted in (True, False):
        agent, credential, key = running.new_agent_with_key(trusted=trusted)
        (tmp_path / "alice.key").write_bytes(bytes(key))
        (tmp_path / "alice.vc.jwt").write_text(credential + "\n")
        echo = Echo()
        with serving_in_thread(lambda url: run_example("a2a_server", card=_card(url), executor=echo)[0]["app"]) as url:
            _, caller = running.new_agent(trusted=True)
            if trusted:
                assert 'text: "echo hi"' in run_example("a2a_client", caller, url=url)[1]
                assert echo.heard == ["hi"]
            else:
                with pytest.raises(UntrustedTarget, match="tier untrusted"):
                    run_example("a2a_client", caller, url=url)
                assert echo.heard == []


def test_direct(running, run_example):
    known, credential = running.new_agent(trusted=True)
    namespace, out = run_example("direct", credential)
    assert out.startswith("allow tier trusted")
    assert namespace["incoming"].verdict == "allow"
    assert running.first_hand_events(known) == 11


def test_clients(running, run_example):
    known, credential = running.new_agent(trusted=True)
    _, out = run_example("clients", credential)
    tier, decision, reply = out.splitlines()
    assert tier == "trusted" and decision.startswith("allow tier trusted")
    assert reply == str({"accepted": 1, "rejected": []}) and running.first_hand_events(known) == 11


def test_adoption(running, run_example):
    namespace, _ = run_example("adoption")
    stranger, _ = running.new_agent(trusted=False)
    assert namespace["week1"].policy.check(stranger).allowed
    assert not namespace["week3"].policy.check(stranger).allowed
