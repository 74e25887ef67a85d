"""Microsoft Agent Framework adapter (`pip install vouchnet[agent-framework]`): a FunctionMiddleware that gates
every tool call and an AgentMiddleware that gates the run, both failing closed through MiddlewareFailure (which
the function-invocation loop never turns into a tool result). Each tool call that ran is reported; the run is not
itself an event (a run of N tool calls is N events, as through every other adapter).

The caller's agent credential travels with the run: `agent.run(..., function_invocation_kwargs={
"vouchnet_credential": token})`; both middlewares verify it (node/client/identity.py) rather than trust it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agent_framework import (
    AgentContext,
    AgentMiddleware,
    FunctionInvocationContext,
    FunctionMiddleware,
    MiddlewareFailure,
)

from ..guard import CREDENTIAL_KEY, TrustRefusal, Vouchnet, refused
from ..policy import TrustDecision

INVOKE_AGENT = "invoke_agent"


class TrustRefused(MiddlewareFailure, TrustRefusal):
    """vouchnet refused the call; `decision` says why. Raised to the caller of `Agent.run`; a guarded call it ends is
    not reported as failing (TrustRefusal)."""

    def __init__(self, decision: TrustDecision) -> None:
        what = f"{decision.action} with {decision.tool}" if decision.tool else decision.action
        super().__init__(f"vouchnet refused {what}: {decision.reason}")
        self.decision = decision


def _refuse(decision: TrustDecision) -> Any:
    raise refused(TrustRefused(decision))


class _Guarded:
    def __init__(self, vouchnet: Vouchnet, *, credential_key: str = CREDENTIAL_KEY) -> None:
        self.vouchnet, self.credential_key = vouchnet, credential_key


class TrustFunctionMiddleware(_Guarded, FunctionMiddleware):
    """Gates each tool call on the caller's trust; a refusal aborts the run (fail closed)."""

    async def process(self, context: FunctionInvocationContext, call_next: Callable[[], Awaitable[None]]) -> None:
        async def run() -> Any:
            await call_next()
            return context.result

        await self.vouchnet.guard(context.kwargs.get(self.credential_key), run, _refuse,
                                  tool=context.function.name)


class TrustAgentMiddleware(_Guarded, AgentMiddleware):
    """Gates the whole run on the caller's trust (action `invoke_agent`), before the model is asked anything. It
    reports nothing: what the run did is reported as its tool calls (TrustFunctionMiddleware), as every other
    adapter reports what ran, so that the same work weighs the same whichever framework serves it."""

    async def process(self, context: AgentContext, call_next: Callable[[], Awaitable[None]]) -> None:
        decision = await self.vouchnet.authorize(context.function_invocation_kwargs.get(self.credential_key),
                                                 INVOKE_AGENT)
        if not decision.allowed:
            _refuse(decision)
        await call_next()


def trust_middleware(vouchnet: Vouchnet) -> list[AgentMiddleware | FunctionMiddleware]:
    """Both middlewares, for `Agent(..., middleware=trust_middleware(vouchnet))`."""
    return [TrustAgentMiddleware(vouchnet), TrustFunctionMiddleware(vouchnet)]
