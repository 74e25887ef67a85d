"""Pydantic AI adapter (`pip install vouchnet[pydantic-ai]`): a `Hooks` capability whose tool-execute hook gates
every tool call; a refusal becomes the tool's result, which the model reads, with the reason. Every call that ran
is reported.

The caller's agent credential comes from the run's deps: `agent.run(..., deps=...)` where deps is the token itself,
a mapping with `vouchnet_credential`, or an object with that attribute; it is verified, not trusted.
"""

from __future__ import annotations

from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.capabilities import Hooks
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import ToolDefinition

from ..guard import CREDENTIAL_KEY, Vouchnet, credential_in, refusal_text


def credential_from_deps(deps: Any, key: str = CREDENTIAL_KEY) -> str | None:
    """The credential in a run's deps: the deps themselves when a string, else `deps[key]` or `deps.<key>`."""
    return deps if isinstance(deps, str) else credential_in(deps, key)


def trust_hooks(vouchnet: Vouchnet, *, credential_key: str = CREDENTIAL_KEY) -> Hooks[Any]:
    """The capability to pass as `Agent(..., capabilities=[trust_hooks(vouchnet)])`."""

    async def tool_execute(ctx: RunContext[Any], *, call: ToolCallPart, tool_def: ToolDefinition, args: Any,
                           handler: Any) -> Any:
        return await vouchnet.guard(credential_from_deps(ctx.deps, credential_key), lambda: handler(args),
                                    refusal_text, tool=call.tool_name)

    return Hooks(tool_execute=tool_execute)
