"""LangChain / LangGraph adapter (`pip install vouchnet[langchain]`): an AgentMiddleware whose `awrap_tool_call`
(and `wrap_tool_call`, for agents run with `invoke`) gates every tool call; a refusal is the ToolMessage the model
sees (status "error", with the reason), and every call that ran is reported.

The caller's agent credential comes from the run's context: `agent.ainvoke(..., context={"vouchnet_credential":
token})` (a mapping, or any object with a `vouchnet_credential` attribute); it is verified, not trusted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain.agents.middleware.types import ToolCallRequest
from langchain_core.messages import ToolMessage
from langgraph.types import Command

from ..guard import CREDENTIAL_KEY, Vouchnet, credential_in, refusal_text
from ..policy import TrustDecision


def credential_from_context(context: Any, key: str = CREDENTIAL_KEY) -> str | None:
    """The credential in a run's context: `context[key]` or `context.<key>`."""
    return credential_in(context, key)


def _outcome(result: ToolMessage | Command[Any]) -> str:
    return "error" if isinstance(result, ToolMessage) and result.status == "error" else "ok"


class TrustMiddleware(AgentMiddleware):
    """Gates tool calls on the caller's trust, for `create_agent(..., middleware=[TrustMiddleware(vouchnet)])`."""

    def __init__(self, vouchnet: Vouchnet, *, credential_key: str = CREDENTIAL_KEY) -> None:
        super().__init__()
        self.vouchnet, self.credential_key = vouchnet, credential_key

    async def awrap_tool_call(self, request: ToolCallRequest,
                              handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]]
                              ) -> ToolMessage | Command[Any]:
        credential, name, refuse = self._call(request)
        return await self.vouchnet.guard(credential, lambda: handler(request), refuse, tool=name, outcome=_outcome)

    def wrap_tool_call(self, request: ToolCallRequest,
                       handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]) -> ToolMessage | Command[Any]:
        credential, name, refuse = self._call(request)
        return self.vouchnet.guard_sync(credential, lambda: handler(request), refuse, tool=name, outcome=_outcome)

    def _call(self, request: ToolCallRequest) -> tuple[str | None, str, Callable[[TrustDecision], ToolMessage]]:
        """The caller's credential, the tool's name, and the refusal the model will read."""
        call = request.tool_call
        credential = credential_from_context(getattr(request.runtime, "context", None), self.credential_key)

        def refuse(decision: TrustDecision) -> ToolMessage:
            return ToolMessage(content=refusal_text(decision), tool_call_id=call["id"],
                               name=call["name"], status="error")

        return credential, call["name"], refuse
