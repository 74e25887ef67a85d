"""Microsoft Agent Framework adapter (`pip install vouchnet[agent-framework]`): a FunctionMiddleware that gates
every tool call and an AgentMiddleware that gates the run, both failing closed through MiddlewareFailure (which
the function-invocation loop never turns into a tool result), and both reporting what ran.

The caller's agent credential travels with the run: `agent.run(..., function_invocation_kwargs={
"vouchnet_credential": token})`; both middlewares verify it (node/client/identity.py) rather than trust it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from agent_framework import (
    AgentContext,
    AgentMiddleware,
    FunctionInvocationContext,
    FunctionMiddleware,
    MiddlewareFailure,
    ResponseStream,
)

from ..guard import CREDENTIAL_KEY, TrustRefusal, Vouchnet, failure_outcome
from ..policy import TrustDecision

INVOKE_AGENT = "invoke_agent"


class TrustRefused(MiddlewareFailure, TrustRefusal):
    """vouchnet refused the call; `decision` says why. Raised to the caller of `Agent.run`; a run it stops is not
    reported as failing (the run's gate lets it through unreported)."""

    def __init__(self, decision: TrustDecision) -> None:
        what = f"{decision.action} with {decision.tool}" if decision.tool else decision.action
        super().__init__(f"vouchnet refused {what}: {decision.reason}")
        self.decision = decision


def _refuse(decision: TrustDecision) -> Any:
    raise TrustRefused(decision)


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
    """Gates the whole run on the caller's trust (action `invoke_agent`), before the model is asked anything. A
    streamed run is reported as its stream ends, by how it ended (_StreamedRun)."""

    async def process(self, context: AgentContext, call_next: Callable[[], Awaitable[None]]) -> None:
        async def run() -> Any:
            await call_next()
            return context.result

        credential = context.function_invocation_kwargs.get(self.credential_key)
        if not context.stream:
            await self.vouchnet.guard(credential, run, _refuse, action=INVOKE_AGENT, category="a2a")
            return
        decision = await self.vouchnet.authorize(credential, INVOKE_AGENT)
        if not decision.allowed:
            _refuse(decision)
        streamed = _StreamedRun(self.vouchnet, decision)
        try:
            await call_next()
        except Exception as error:
            streamed.failed(error)
            raise
        if isinstance(context.result, ResponseStream):  # (else a middleware after this one answered, running nothing)
            context.result.with_pull_context_manager(streamed.pulling).with_cleanup_hook(streamed.ended)


class _StreamedRun:
    """A streamed run's report, made once as its stream ends: error (or timeout) if a pull of it raised, else ok,
    whether consumed to its end or closed early; nothing for a refusal by trust (TrustRefusal) or a cancellation.
    (call_next returns the stream before the model is asked anything.)"""

    def __init__(self, vouchnet: Vouchnet, decision: TrustDecision) -> None:
        self.vouchnet, self.decision, self.started = vouchnet, decision, time.perf_counter()
        self.outcome: str | None = "ok"

    @contextmanager
    def pulling(self) -> Iterator[None]:
        """Around each pull of the stream: notes how a pull that raised ended the run."""
        try:
            yield
        except StopAsyncIteration:
            raise
        except Exception as error:
            self.outcome = failure_outcome(error)
            raise
        except BaseException:  # a cancellation says nothing about the agent
            self.outcome = None
            raise

    def failed(self, error: Exception) -> None:
        self.outcome = failure_outcome(error)
        self.ended()

    def ended(self) -> None:
        if self.outcome is not None:
            self.vouchnet.report(self.decision, "a2a", INVOKE_AGENT, self.outcome, self.started)


def trust_middleware(vouchnet: Vouchnet) -> list[AgentMiddleware | FunctionMiddleware]:
    """Both middlewares, for `Agent(..., middleware=trust_middleware(vouchnet))`."""
    return [TrustAgentMiddleware(vouchnet), TrustFunctionMiddleware(vouchnet)]
