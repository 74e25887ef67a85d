"""What every adapter does around a call (DESIGN §8): verify the caller's credential, decide with the trust
policy, refuse the framework's way or run the call, and report how it went to the node.

Refusals by trust are logged, not reported as `denied` events: the node counts `denied` as a policy violation,
so reporting them would sink an agent for being unknown, and it could never earn a score.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from ._blocking import warn_if_blocking
from ._closing import Steps
from ._env import default_node
from ._http import normal_url, without_passwords
from ._log import log
from ._token_file import api_token_source
from .identity import AgentIdentity, CredentialVerifier, UnverifiedAgent
from .policy import TrustDecision, TrustPolicy
from .telemetry import TelemetryCollector

T = TypeVar("T")
CREDENTIAL_KEY = "vouchnet_credential"  # where adapters look for the caller's credential in a run's context


def credential_in(holder: object, key: str = CREDENTIAL_KEY) -> str | None:
    """The credential a framework's run context carries: `holder[key]` or `holder.<key>`."""
    if isinstance(holder, Mapping):
        return holder.get(key)
    return getattr(holder, key, None)


def refusal_text(decision: TrustDecision) -> str:
    """What a refused caller is told, in every framework."""
    return f"Refused by vouchnet: {decision.reason}"


class TrustRefusal(Exception):
    """What an adapter raises to refuse a call (its framework's own exception type mixes it in): a guarded call
    it passes through (a tool that delegates to a target refused) is not reported as failing, since the refusal
    says nothing of how the agent works. Raise it as `raise refused(...)`, so that a call that turns it into a
    result is not reported as failing either."""


RefusalT = TypeVar("RefusalT", bound=TrustRefusal)
_refusals: ContextVar[list[TrustRefusal] | None] = ContextVar("vouchnet_refusals", default=None)


def refused(error: RefusalT) -> RefusalT:
    """`error`, about to be raised, noted for the guarded calls it is raised within (watching_refusals): a framework
    that turns a tool's exception into its result (MCP's isError, LangGraph's ToolNode handle_tool_errors) hides
    it from the call's gate, which must still not report the call as failing. (The first one is kept.)"""
    if (noted := _refusals.get()) is not None and not noted:
        noted.append(error)
    return error


@contextmanager
def watching_refusals() -> Iterator[list[TrustRefusal]]:
    """Around a guarded call: the refusals raised within it (`refused`), those of the calls it encloses too. A list
    shared with the tasks and threads the call starts, which copy the context."""
    outer, noted = _refusals.get(), []
    token = _refusals.set(noted)
    try:
        yield noted
    finally:
        _refusals.reset(token)
        if outer is not None and noted and not outer:
            outer.extend(noted)


def reported_outcome(outcome: str | None, noted: list[TrustRefusal]) -> str | None:
    """The outcome to report for a call that went `outcome` (None: not reported): not a failure, if a refusal by
    trust was raised within it (a delegation refused its target), whatever the call turned it into."""
    return None if noted and outcome != "ok" else outcome


def failure_outcome(error: Exception) -> str | None:
    """How a call that raised `error` went: timeout or error, or None, not reported, for a refusal by trust."""
    if isinstance(error, TrustRefusal):
        return None
    return "timeout" if _timed_out(error) else "error"


def _ok(_: object) -> str:
    return "ok"


def _timed_out(error: Exception) -> bool:
    """Whether a call ended for a deadline: TimeoutError (asyncio's and anyio's too), or trio's TooSlowError (looked
    up only in a program that loaded trio: node.client does not need it)."""
    trio = sys.modules.get("trio")
    return isinstance(error, TimeoutError) or (trio is not None and isinstance(error, trio.TooSlowError))


class Vouchnet:
    """One per service: who may call (`verifier`), what they may do (`policy`), what they did (`telemetry`).

    `node` defaults to $VOUCHNET_NODE or the local node; `token` (the node's API token, needed to report
    telemetry: without one, telemetry is off, with a warning) to $VOUCHNET_TOKEN; or `token_file`, the path of the
    node's `api.token` (default $VOUCHNET_TOKEN_FILE), read again at each post, so that telemetry follows the token's
    rotation. A `policy` given decides with that same node. `issuers` are the orgs whose agents may call (node or
    JWKS URLs, each on the origin of its node's [api] public_url; default: this org's node); a credential stands for
    its agent's score only if its issuer is this node's org or holds a live operator vouch for the agent, else it is
    decided on the cold-start score and its calls are not reported (TrustPolicy.check, `issuer`).
    `observe=True` decides and logs but never blocks: week 1 of adopting vouchnet. At shutdown, `await aclose()`
    (or `close()`, or leave its `async with` / `with` block) sends the telemetry left."""

    def __init__(self, node: str | None = None, token: str | None = None, *, policy: TrustPolicy | None = None,
                 issuers: Iterable[str] | None = None, telemetry: TelemetryCollector | None = None,
                 observe: bool = False, token_file: str | os.PathLike[str] | None = None) -> None:
        self.node = normal_url(node or default_node())
        source = api_token_source(token, token_file) if telemetry is None else None
        self.policy = policy if policy is not None else TrustPolicy(self.node, observe=observe)
        if self.policy.node != self.node:  # it would decide with one node while this one verifies and hears
            raise ValueError(without_passwords(f"policy: decides with the node at {self.policy.node}, not this "
                                               f"service's {self.node}; make it with TrustPolicy({self.node!r}, ...)"))
        if observe and not self.policy.observe:
            raise ValueError("observe: the given policy enforces; make it with TrustPolicy(observe=True)")
        self.verifier = CredentialVerifier(issuers if issuers is not None else (self.node,))
        if telemetry is None and source is not None:
            telemetry = TelemetryCollector(self.node, source)
        elif telemetry is None:
            log.warning("no API token: telemetry is off, so no call that runs is reported and the node builds no "
                        "first-hand score from them; pass token=, or set $VOUCHNET_TOKEN to what the node's "
                        "api.token holds (or $VOUCHNET_TOKEN_FILE to its path)",
                        extra={"fields": {"node": without_passwords(self.node)}})
        self.telemetry = telemetry

    async def identify(self, credential: str | None) -> AgentIdentity:
        """The verified caller behind `credential`; raises UnverifiedAgent."""
        return await self.verifier.averify(credential)

    async def authorize(self, credential: str | None, action: str, tool: str | None = None) -> TrustDecision:
        """The decision for whoever `credential` proves to be doing `action` (with `tool`)."""
        try:
            identity = await self.verifier.averify(credential)
        except UnverifiedAgent as error:
            return self.policy.unverified(action, tool, error.public, detail=str(error))
        return await self.policy.acheck(identity.did, action, tool, issuer=identity.org)

    def authorize_sync(self, credential: str | None, action: str, tool: str | None = None) -> TrustDecision:
        """`authorize` for synchronous code (blocks on the node when the answer is not cached; from a running event
        loop, a warning says so once)."""
        warn_if_blocking("Vouchnet.authorize_sync", "Vouchnet.authorize()")
        try:
            identity = self.verifier.verify(credential)
        except UnverifiedAgent as error:
            return self.policy.unverified(action, tool, error.public, detail=str(error))
        return self.policy.check(identity.did, action, tool, issuer=identity.org)

    async def guard(self, credential: str | None, run: Callable[[], Awaitable[T]],
                    refuse: Callable[[TrustDecision], T], *, action: str = "tool_call", tool: str | None = None,
                    category: str = "tool", outcome: Callable[[T], str] = _ok,
                    decided: TrustDecision | None = None) -> T:
        """Run `run()` if the caller may do `action` (with `tool`), else return (or raise) `refuse(decision)`. A
        call that ran is reported as a `category` event named after the tool (or action), with its outcome:
        `outcome(result)`, or error / timeout for an exception. `decided`: the decision an adapter already made
        for this very call (its credential, action and tool), taken instead of deciding (and logging) again."""
        decision = decided if decided is not None else await self.authorize(credential, action, tool)
        if not decision.allowed:
            return refuse(decision)
        with self._reporting(decision, category, tool or action) as report:
            result = await run()
            report(outcome(result))
        return result

    def guard_sync(self, credential: str | None, run: Callable[[], T], refuse: Callable[[TrustDecision], T], *,
                   action: str = "tool_call", tool: str | None = None, category: str = "tool",
                   outcome: Callable[[T], str] = _ok) -> T:
        """`guard` for synchronous frameworks and code."""
        warn_if_blocking("Vouchnet.guard_sync", "Vouchnet.guard()")
        decision = self.authorize_sync(credential, action, tool)
        if not decision.allowed:
            return refuse(decision)
        with self._reporting(decision, category, tool or action) as report:
            result = run()
            report(outcome(result))
        return result

    @contextmanager
    def _reporting(self, decision: TrustDecision, category: str, name: str) -> Iterator[Callable[[str], None]]:
        """Times the block; the block reports its outcome, an exception out of it is reported as failure_outcome
        says (a refusal by trust, TrustRefusal, as nothing); a failure is not reported if a refusal by trust was
        raised within the block (reported_outcome)."""
        started = time.perf_counter()

        def report(outcome: str | None) -> None:
            if (outcome := reported_outcome(outcome, noted)) is not None:
                self.report(decision, category, name, outcome, started)

        with watching_refusals() as noted:
            try:
                yield report
            except Exception as error:  # not a cancellation: that says nothing about the agent
                report(failure_outcome(error))
                raise

    def report(self, decision: TrustDecision, category: str, name: str, outcome: str, started: float) -> None:
        """One event for a call that ran, if the caller was verified as the agent (its credential's issuer operates
        it: another org's callers must not build or sink the agent's first-hand score) and telemetry is on."""
        if self.telemetry is not None and decision.agent and decision.operated:
            self.telemetry.record(decision.agent, category, name, outcome,
                                  duration_ms=round((time.perf_counter() - started) * 1000, 3),
                                  high_risk=self.policy.is_high_risk(name))

    async def aclose(self) -> None:
        """Send the telemetry left and let go of the node: both, though the first raises (its error is raised
        after)."""
        steps = Steps("Vouchnet")
        with steps.step("the telemetry's shutdown"):
            if self.telemetry is not None:
                await self.telemetry.ashutdown()
        with steps.step("the policy's close"):
            await self.policy.aclose()
        steps.done()

    def close(self) -> None:
        """`aclose` for synchronous code."""
        steps = Steps("Vouchnet")
        with steps.step("the telemetry's shutdown"):
            if self.telemetry is not None:
                self.telemetry.shutdown()
        with steps.step("the policy's close"):
            self.policy.close()
        steps.done()

    def __enter__(self) -> Vouchnet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Vouchnet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

