"""node.client is what agent services import: it must load without trio, libp2p or any agent framework."""

import subprocess
import sys

FORBIDDEN = ("trio", "libp2p", "gossip", "ledger", "fastapi", "agent_framework", "langchain",
             "langgraph", "mcp", "a2a", "pydantic_ai")


def test_the_sdk_imports_without_trio_libp2p_or_frameworks():
    code = ("import sys, node.client, node.client.adapters; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
