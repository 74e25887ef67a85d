"""node.client is what agent services import: it must load without trio, libp2p or any agent framework."""

import importlib
import subprocess
import sys

import pytest

FORBIDDEN = ("trio", "libp2p", "gossip", "ledger", "fastapi", "agent_framework", "langchain",
             "langgraph", "mcp", "a2a", "pydantic_ai")


def test_the_sdk_imports_without_trio_libp2p_or_frameworks():
    code = ("import sys, node.client, node.client.adapters; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_node_client_alone_loads_no_other_part_of_the_sdk():
    """`vouchnet` commands and services that only call the node import NodeClient: not the policy or the credential
    verifier (numpy, asyncio), nor the telemetry collector."""
    code = ("import sys; from node.client import ClientError, NodeClient; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'asyncio', 'anyio') "
            "or m.startswith('node.client.') and m.split('.')[2] not in ('node_client', '_http', '_answer', "
            "'_bounded', '_breaker', '_fork', '_idempotent', '_token')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_public_name_of_the_sdk_is_the_one_its_module_defines():
    import node.client

    namespace: dict[str, object] = {}
    exec("from node.client import *", namespace)
    assert set(node.client.__all__) <= set(dir(node.client))
    for name in node.client.__all__:
        module, _, defined = node.client._DEFINED[name].rpartition(".")
        assert namespace[name] is getattr(importlib.import_module(f"node.client.{module}"), defined), name
    assert node.client.TrustClient is node.client.NodeClient
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        node.client.Nope  # noqa: B018
