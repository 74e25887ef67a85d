"""The trust policy local services apply (DESIGN §8): the node's score and tier for an agent in, allow, audit or
block out, by tier, minimum score and high-risk tools (vouching.policy's rules, configured here).

The node's own policy (`GET /v1/policy`: its operator's `[scoring]`) is a floor: the verdict is the stricter of
this service's rules and the node's, on cached scores too, and of the node's own answer when there is a fresh one.
Fails closed: when the node cannot answer, or its policy cannot be had, the decision is `block` unless
`fail_open=True`. Scores are cached for `cache_ttl` seconds, the node's policy (which changes only when its node
restarts) for `policy_ttl`, and both are kept current by the node's `/v1/stream`; in `observe` mode every decision is
made and logged but nothing is blocked.

A cached score is the agent's general one. A vouch scoped to some tools (DESIGN.md §3 `scope`) counts only in the
node's check of those tools, so a check of a tool the node listed in the agent's `scopes` is always asked of the
node, and the node's answer for such a tool (its score counts the scoped vouches) is never cached. The node lists
at most 64 tools; past that (`scopes_complete` false) every tool check of the agent is asked of the node.

A check for a caller's credential names its issuer: the agent's score counts only if that org operates the agent
(the node's org, or one with a live operator vouch for it: the node's `issuers`), else the decision is made on the
node's cold-start score. The node lists 64 keys at most (`issuers_complete` false past that): a check with a
credential names its issuer to the node, which says whether it operates the agent of them all (`issuer_operates`), so
that a key not listed is never taken for one that does not operate it while the node knows otherwise (a node older
than this SDK says nothing of it: decided on the cold start, and that kept as its answer). The node's word on that is
cached with the score, never past a `cache_ttl` from when the node said it: in a check answer, or in a stream event,
which the node sends when it changes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

import anyio

from vouching.explanation import Score
from vouching.identity import is_compact_jwt
from vouching.policy import (DEFAULT_HIGH_RISK_TOOLS, DEFAULT_TIER_VERDICTS, VERDICTS, Decision, Policy, Verdict,
                             decide, tool_name_problem)
from vouching.tiers import tier_of, tier_rank

from . import _breaker
from ._blocking import warn_if_blocking
from ._closing import Steps
from ._env import default_node
from ._fork import in_forked_children
from ._http import NodeApiError, NodeUnreachable, normal_url, without_passwords
from ._log import log
from .async_client import AsyncTrustClient, closed_as_its_loop_ends, event_loop
from .node_client import NodeClient
from .score_stream import ScoreChange, ScoreStream, valid_issuers, valid_scopes

DEFAULT_CACHE_TTL = 30.0
DEFAULT_POLICY_TTL = 60.0  # a node's policy changes only when it restarts, and a restart resets the stream
DEFAULT_TIMEOUT = 2.0
MAX_CACHED = 100_000  # agents; past it the oldest entry goes
_IDENTIFY = "CredentialVerifier(issuers).verify(credential).did, or (await vouchnet.identify(credential)).did"
Source = Literal["node", "cache", "unreachable", "invalid", "unverified"]


@dataclass(frozen=True)
class TrustDecision:
    """What the policy decided for `agent` doing `action` (with `tool`), and why.

    `verdict` is the policy's answer; `allowed` is whether to go ahead, which in observe mode is always true.
    `source` says where the score came from: the node, the cache, or nowhere (`unreachable`: the node did not
    answer; `invalid`: the node refused the agent id, or would the tool's name; `unverified`: the caller's credential
    did not verify).
    `operated` false: the caller's credential was issued by an org that does not operate the agent, so the decision
    was made on the cold-start score (`check(issuer=...)`), or by one the node did not say operates it (no answer:
    `unreachable`, `invalid`); a call it lets run (failing open, observe mode) is not the agent's to report."""

    agent: str
    action: str
    tool: str | None
    verdict: Verdict
    reason: str
    score: int | None
    tier: str | None
    source: Source
    enforced: bool = True
    operated: bool = True  # false: the credential's issuer does not operate the agent, or the node did not say

    @property
    def allowed(self) -> bool:
        """Whether to go ahead: the verdict is allow or audit, or it is block but not enforced (observe mode)."""
        return self.verdict != "block" or not self.enforced


@dataclass(frozen=True)
class _Operators:
    """What the node said of who operates an agent (node.trust.listed_issuers), in a check answer or a stream
    event, kept until `expires`, a cache_ttl after it was said: an event of a node that does not say it drops it
    (TrustPolicy._changed)."""

    issuers: frozenset[str]  # org keys whose agent credentials stand for the agent (as the node listed them, and the
    # issuer a check named if the node said it is one)
    complete: bool  # false: the node listed only some (node.trust.listed_issuers), so of another key it must say
    cold_start: int  # the node's score of an agent nothing names
    expires: float
    refuted: frozenset[str] = frozenset()  # the issuer a check named, if the node said it is none
    unsaid: frozenset[str] = frozenset()  # the issuer a check named, if the node (older than this SDK) said nothing

    def operates(self, issuer: str) -> bool | None:
        """Whether `issuer`'s credentials stand for the agent, by the node's word; None: it did not say (a key not
        listed among some, whether or not named to it)."""
        if issuer in self.issuers:
            return True
        return False if self.complete or issuer in self.refuted else None

    def kept(self, issuer: str) -> bool:
        """Whether a check of a credential of `issuer` is decided by what is kept: the node's word on it, or, named to
        a node that said nothing (older than this SDK), its silence, decided on the cold start until `expires`: asking
        again at each call gets no more."""
        return self.expires >= time.monotonic() and (self.operates(issuer) is not None or issuer in self.unsaid)


@dataclass(frozen=True)
class _Cached:
    score: int
    tier: str
    expires: float
    scopes: frozenset[str]  # tools the agent holds scoped vouches for: their checks are the node's to decide
    scopes_complete: bool  # false: the node listed only some (node.trust.listed_scopes), so every tool's is
    operators: _Operators | None  # whose credentials stand for the agent, if the node said (a check with an issuer)

    def serves(self, tool: str | None, issuer: str | None = None) -> bool:
        """Whether the cached general score decides a check of `tool`: not that of a tool the node decides on a
        score of its own (scoped vouches), nor, when the node did not list them all, of any tool; and, for a
        credential of `issuer`, whether the node's word on whether that key operates the agent is still kept."""
        if issuer is not None and (self.operators is None or not self.operators.kept(issuer)):
            return False
        return tool is None or (self.scopes_complete and tool not in self.scopes)


@dataclass(frozen=True)
class _NodePolicy:
    policy: Policy
    expires: float


# The node's policy, or why it could not be had (then the decision fails closed, or open if asked to)
_Floor = Policy | str
# An event loop's client (by event_loop()), and what closes it as the loop ends (closed_as_its_loop_ends)
_LoopClient = tuple[AsyncTrustClient, AsyncGenerator[None, None]]


def _operators(answer: Mapping[str, object], expires: float, issuer: str | None) -> _Operators | None:
    """The node's `issuers`, `issuers_complete` and `cold_start` in a check answer (node.trust.listed_issuers), with
    its `issuer_operates` of the `issuer` the check named (absent from a node older than this SDK); None if it has
    none."""
    issuers, cold_start = answer.get("issuers"), answer.get("cold_start")
    complete = answer.get("issuers_complete", True)
    if not valid_issuers(issuers, complete, cold_start):
        return None
    said = answer.get("issuer_operates")
    named = frozenset() if issuer is None else frozenset({issuer})
    return _Operators(frozenset(issuers) | (named if said is True else frozenset()), complete,  # type: ignore[arg-type]
                      cold_start, expires, named if said is False else frozenset(),  # type: ignore[arg-type]
                      frozenset() if type(said) is bool else named)


class TrustPolicy:
    """Decides with the node at `node` (default $VOUCHNET_NODE, else the local node); sync `check`, async
    `acheck` (on asyncio or trio), safe from any thread and any event loop.

    `tiers` maps each tier to allow/audit/block; below `min_score` is block; tools named in `high_risk_tools`
    (matched by words: `shell` covers `run_shell` and `shellCommand`, vouching.policy.Policy) need at least
    `high_risk_tier`. `on_change` is called from the stream thread with each score change the node announces, once
    a change (node.client.score_stream); `on_reset` as the stream (re)connects without the node's changes since, or
    the node says it has none (it restarted): the node announces an agent's changes only once asked about it since it
    started, so a service watching agents reads them again then.
    `timeout` (seconds) bounds each question to the node as a whole, its answer included: past it the node counts
    as unreachable.

    The node's policy binds too: the verdict is the stricter of these rules' and the node's (block > audit >
    allow; on a tie these rules give the reason), and the reason ends with the one that decided: `(local
    policy)`, `(node policy)` or, when the node's fresh answer is stricter still (an SDK older than its node),
    `(node's answer)`. The node's policy is fetched with the first check, again after `policy_ttl` and after the
    stream reconnects; without it the decision is `block`, or with `fail_open` these rules' verdict, at least
    `audit` (allowed and logged). Without the node's answer at all, `fail_open` audits the call, but for a high-risk
    action or tool, which needs a tier no agent is known to have then: blocked."""

    def __init__(
        self,
        node: str | None = None,
        *,
        tiers: Mapping[str, Verdict] = DEFAULT_TIER_VERDICTS,
        min_score: int = 0,
        high_risk_tools: Iterable[str] = DEFAULT_HIGH_RISK_TOOLS,
        high_risk_tier: str = "trusted",
        fail_open: bool = False,
        observe: bool = False,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        policy_ttl: float = DEFAULT_POLICY_TTL,
        listen: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        on_change: Callable[[ScoreChange], None] | None = None,
        on_reset: Callable[[], None] | None = None,
    ) -> None:
        if (on_change is not None or on_reset is not None) and not listen:
            raise ValueError(f"{'on_change' if on_change is not None else 'on_reset'}: needs the node's stream; "
                             "listen=False follows none")
        if isinstance(high_risk_tools, str):  # its letters would be the tools, and the tool itself none of them
            raise ValueError(f"high_risk_tools: a list of tool names, not one string: [{high_risk_tools!r}]")
        self.rules = Policy(tiers=tiers, min_score=min_score, high_risk_tools=frozenset(high_risk_tools),
                            high_risk_tier=high_risk_tier)
        self.node = normal_url(node or default_node())
        self.fail_open, self.observe, self.cache_ttl, self.timeout = fail_open, observe, cache_ttl, timeout
        self.policy_ttl = policy_ttl
        self._on_change, self._on_reset = on_change, on_reset
        self._cache: dict[str, _Cached] = {}
        self._announcements = 0  # changes and resets the stream delivered: an answer asked for before one is stale
        self._resets = 0  # resets (and invalidations of everything): a node policy asked for before one is stale
        self._node_policy: _NodePolicy | None = None
        self._lock = threading.Lock()
        self._client: NodeClient | None = None
        self._async_clients: weakref.WeakKeyDictionary[object, _LoopClient] = weakref.WeakKeyDictionary()
        self._stream = ScoreStream(self.node, on_change=self._changed, on_reset=self._reset) if listen else None
        self._stream_started = False
        in_forked_children(self._forked)
        self._say_mode()

    def _say_mode(self) -> None:
        """One line as the policy starts, naming its node and whether its decisions bind (DESIGN §8): a service's
        log otherwise shows that nothing is blocked (observe) or that calls go ahead without the node (fail_open)
        only once a decision is logged. At WARNING then, which a service's log shows by default: either weakens
        what the policy stops; at INFO when it enforces and fails closed."""
        weakened = self.observe or self.fail_open
        blocked = "logged as blocked" if self.observe else "blocked"  # observing, a block verdict binds nothing
        log.log(logging.WARNING if weakened else logging.INFO,
                "trust policy started: " + ("observe mode, no call is blocked" if self.observe else "enforcing") +
                (f"; fails open: a call the node cannot answer goes ahead, audited (a high-risk one is {blocked})"
                 if self.fail_open else f"; fails closed: a call the node cannot answer is {blocked}"),
                extra={"fields": {"node": without_passwords(self.node), "enforced": not self.observe,
                                  "fail_open": self.fail_open}})

    # --- deciding -----------------------------------------------------------------------------------------

    def check(self, agent: str, action: str = "tool_call", tool: str | None = None, *,
              issuer: str | None = None) -> TrustDecision:
        """The decision for `agent` doing `action` with `tool`, from the cache or the node (blocking). `issuer`: the
        org key that issued the caller's credential (AgentIdentity.org); unless that org operates the agent (a live
        operator vouch of its, or this node's own org: the node's `issuers`, or its `issuer_operates` of a key it
        does not list, the check naming it), the decision is made on the cold-start score, never the agent's: any
        accepted org's credential may name any did. From a running event loop, a warning says once that
        it blocks the loop: `acheck` does not."""
        warn_if_blocking("TrustPolicy.check", "TrustPolicy.acheck()")
        if (refused := self._bad_input(agent, action, tool)) is not None:
            return refused
        if (floor := self._floor()) is None:
            resets = self._resets
            try:
                floor = self._kept_floor(self._sync_client().policy(), resets)
            except (NodeUnreachable, NodeApiError) as error:
                floor = str(error)
        if (refused := self._without_floor(agent, action, tool, floor, issuer)) is not None:
            return refused
        if (cached := self._cached(agent)) is not None and cached.serves(tool, issuer):
            return self._decide(agent, action, tool, cached.score, cached.tier, "cache", floor,
                                operators=(issuer, cached.operators))
        asked = self._announcements
        try:
            answer = self._sync_client().check(agent, action, tool, issuer=issuer)
        except (NodeUnreachable, NodeApiError) as error:
            return self._failed(agent, action, tool, error, issuer)
        return self._answered(agent, action, tool, answer, asked, floor, issuer)

    async def acheck(self, agent: str, action: str = "tool_call", tool: str | None = None, *,
                     issuer: str | None = None) -> TrustDecision:
        """`check` for async code (asyncio or trio): the node is asked without blocking the loop."""
        if (refused := self._bad_input(agent, action, tool)) is not None:
            return refused
        if (floor := self._floor()) is None:
            resets = self._resets
            try:
                client = await self._async_client()
                floor = self._kept_floor(await client.policy(), resets)
            except (NodeUnreachable, NodeApiError) as error:
                floor = str(error)
        if (refused := self._without_floor(agent, action, tool, floor, issuer)) is not None:
            return refused
        if (cached := self._cached(agent)) is not None and cached.serves(tool, issuer):
            return self._decide(agent, action, tool, cached.score, cached.tier, "cache", floor,
                                operators=(issuer, cached.operators))
        asked = self._announcements
        try:
            client = await self._async_client()
            answer = await client.check(agent, action, tool, issuer=issuer)
        except (NodeUnreachable, NodeApiError) as error:
            return self._failed(agent, action, tool, error, issuer)
        return self._answered(agent, action, tool, answer, asked, floor, issuer)

    def unverified(self, action: str, tool: str | None, reason: str, *, who: str = "caller",
                   detail: str | None = None) -> TrustDecision:
        """The decision for a caller (or a delegation target) whose credential did not verify: block (logged,
        not enforced if observing). `reason` is what the caller is told (UnverifiedAgent.public); `detail`, what
        only the service's log shows (str(UnverifiedAgent): how a fetch of the service's went)."""
        return self._made(TrustDecision("", action, tool, "block", f"unverified {who}: {reason}", None, None,
                                        "unverified"), detail=detail if detail != reason else None)

    def is_high_risk(self, tool: str | None) -> bool:
        """Whether these rules, or the node's policy as last fetched, count `tool` as high-risk (what a service
        reports in telemetry: the node's operator may list tools this service does not)."""
        kept = self._node_policy
        return self.rules.is_high_risk(tool) or (kept is not None and kept.policy.is_high_risk(tool))

    def operates(self, agent: str, issuer: str) -> bool | None:
        """Whether the node's kept word (a check with `issuer`, within `cache_ttl`) says `issuer`'s credentials
        stand for `agent` (false too of a key it neither lists nor said of, older than this SDK: decided on the cold
        start); None when it is not kept (`check` asks the node). Nothing is decided or logged."""
        cached = self._cached(agent)
        if cached is None or not cached.serves(None, issuer):
            return None
        assert cached.operators is not None  # serves() with an issuer: kept
        return issuer in cached.operators.issuers

    def invalidate(self, agent: str | None = None) -> None:
        """Forget the cached score of `agent`, or everything cached: every agent's score and the node's policy."""
        with self._lock:
            self._announcements += 1
            if agent is None:
                self._resets += 1
                self._node_policy = None
                self._cache.clear()
            else:
                self._cache.pop(agent, None)

    @property
    def stream_connected(self) -> threading.Event:
        """Set while the policy follows the node's stream of score changes."""
        if self._stream is None:
            raise RuntimeError("listen=False: this policy does not follow the node's stream")
        self._start_stream()
        return self._stream.connected

    # --- closing --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop following the stream, close the sync client and the async clients of asyncio loops left open and
        idle (_close_left_clients; an async client is otherwise closed by `aclose` on its loop, or as its loop
        ends, as asyncio.run's and trio.run's do): all, though one raises (its error is raised after)."""
        steps = Steps("TrustPolicy")
        with steps.step("the score stream's close"):
            if self._stream is not None:
                self._stream.close()
        with steps.step("the client's close"):
            if self._client is not None:
                self._client.close()
        with steps.step("the async clients' close of loops left open"):
            self._close_left_clients()
        steps.done()

    async def aclose(self) -> None:
        """`close` (in a worker thread: it waits for the stream's thread to end), and close this loop's async
        client, though `close` raises (its error is raised after)."""
        steps = Steps("TrustPolicy")
        with steps.step("close"):
            await anyio.to_thread.run_sync(self.close)
        with steps.step("this loop's async client's close"):
            kept = self._async_clients.pop(event_loop(), None)
            if kept is not None:
                await kept[1].aclose()  # (closes the client)
        steps.done()

    def _close_left_clients(self) -> None:
        """Close, each in its loop, the async clients of asyncio loops left open and not running, as Pydantic AI's
        run_sync leaves its loop (loop.run_until_complete, never closed): such a loop never ends to close its client,
        whose connection to the node was left to the garbage collector (ResourceWarning: unclosed transport)."""
        with self._lock:
            left = [(loop, closer) for loop, (_, closer) in self._async_clients.items()
                    if isinstance(loop, asyncio.AbstractEventLoop) and not loop.is_running() and not loop.is_closed()]
            for loop, _ in left:
                del self._async_clients[loop]
        for loop, closer in left:
            if closer.ag_frame is not None:  # (no frame: it ran, and closed the client)
                loop.run_until_complete(closer.aclose())

    # --- internals ------------------------------------------------------------------------------------------

    def _cached(self, agent: str) -> _Cached | None:
        cached = self._cache.get(agent)
        if cached is None or cached.expires < time.monotonic():
            return None
        return cached

    def _floor(self) -> Policy | None:
        """The node's policy while it is fresh (None: ask the node). Every check starts here, and so does the stream
        (its first connection is a reset: the policy is fetched again after it, and every cached score dropped)."""
        self._start_stream()
        kept = self._node_policy
        if kept is None or kept.expires < time.monotonic():
            return None
        return kept.policy

    def _kept_floor(self, answer: object, resets: int) -> _Floor:
        """The policy in the node's `answer`, kept for `policy_ttl` unless the stream reset since it was asked (at
        that count of resets); or why it cannot be applied."""
        try:
            policy = Policy.from_dict(answer)
        except ValueError as error:
            return f"not a policy this SDK can apply: {error}"
        with self._lock:
            if self._resets == resets:
                self._node_policy = _NodePolicy(policy, time.monotonic() + self.policy_ttl)
        return policy

    def _bad_input(self, agent: str, action: str, tool: str | None) -> TrustDecision | None:
        """The decision for a tool the node's check refuses (vouching.policy.tool_name_problem): block, never a
        cached score's verdict, so that the answer does not depend on whether the agent's score was cached. And for
        an agent's credential passed as its did: block, saying so (the node's refusal named only its length), and
        without the credential, which the decision's log line would carry."""
        if is_compact_jwt(agent):
            problem = (f"expected the agent's did (did:key:z6Mk...), got a credential (a JWT): check its subject, "
                       f"`{_IDENTIFY}`, which also verifies it")
            return self._made(TrustDecision("", action, tool, "block", problem, None, None, "invalid"))
        if (problem := tool_name_problem(tool)) is None:
            return None
        return self._made(TrustDecision(agent, action, tool, "block", f"not a tool the node checks: {problem}",
                                        None, None, "invalid"))

    def _without_floor(self, agent: str, action: str, tool: str | None, floor: _Floor,
                       issuer: str | None) -> TrustDecision | None:
        """The decision when the node's policy could not be had and failing open was not asked for."""
        if isinstance(floor, Policy) or self.fail_open:
            return None
        return self._made(TrustDecision(agent, action, tool, "block", f"the node's policy: {floor}; failing closed",
                                        None, None, "unreachable", operated=issuer is None))

    def _answered(self, agent: str, action: str, tool: str | None, answer: object, asked: int,
                  floor: _Floor, issuer: str | None) -> TrustDecision:
        """The decision the node's `answer` gives, cached unless the stream announced a change or a reset since it
        was `asked` (at that count of announcements): the answer may predate it, and the stream will not repeat it.
        Nor is it cached when `tool` is among the agent's `scopes` (or may be: `scopes_complete` false): its score
        is that tool's, not the general one."""
        score, tier, verdict, reason, scopes, complete = (
            (answer.get("score"), answer.get("tier"), answer.get("decision"), answer.get("reason", ""),
             answer.get("scopes", []), answer.get("scopes_complete", True)) if isinstance(answer, Mapping)
            else (None,) * 6)
        if type(score) is not int or not isinstance(tier, str) or verdict not in VERDICTS or type(reason) is not str:
            return self._failed(agent, action, tool, NodeApiError(
                200, "bad_answer", "check: no score, tier and decision (allow, audit or block)"), issuer)
        if not valid_scopes(scopes, complete):
            return self._failed(agent, action, tool, NodeApiError(
                200, "bad_answer", "check: scopes is not a list of tool names, or scopes_complete not a boolean"),
                issuer)
        expires = time.monotonic() + self.cache_ttl
        operators = _operators(answer, expires, issuer)  # type: ignore[arg-type]
        if issuer is not None and operators is None:
            return self._failed(agent, action, tool, NodeApiError(
                200, "bad_answer", "check: no issuers (a list of org keys) and cold_start (an integer): a node older "
                "than this SDK cannot say whose credentials stand for the agent"), issuer)
        cached = _Cached(score, tier, expires, frozenset(scopes), complete, operators)
        with self._lock:
            if self._announcements == asked and cached.serves(tool):
                self._cache.pop(agent, None)  # re-inserted last: the dict's order is the order of arrival
                if len(self._cache) >= MAX_CACHED:
                    del self._cache[next(iter(self._cache))]
                self._cache[agent] = cached
        return self._decide(agent, action, tool, score, tier, "node", floor, Decision(verdict, reason),
                            operators=(issuer, operators))

    def _decide(self, agent: str, action: str, tool: str | None, score: int, tier: str, source: Source,
                floor: _Floor, answered: Decision | None = None, *,
                operators: tuple[str | None, _Operators | None] = (None, None)) -> TrustDecision:
        """The strictest of the local rules, the node's policy (`floor`) and the node's fresh answer, in that order
        on a tie; without the node's policy (failing open), at least `audit`. For a credential of an issuer that
        does not operate the agent (`operators`: the issuer, and the node's word), the agent's score and the
        node's answer for it are replaced by the cold-start score."""
        issuer, node_said = operators
        unoperated = ""
        if issuer is not None and node_said is not None and not (operates := node_said.operates(issuer)):
            score, answered = node_said.cold_start, None
            tier = tier_of(score)
            why = (f"{issuer} does not operate {agent} (no live operator vouch of its for the agent in the node's "
                   f"records)" if operates is False else f"{issuer} is not among the orgs the node says operate "
                   f"{agent} (it lists 64 of more, and, older than this SDK, says nothing of the others)")
            unoperated = (f"{why}, so its credential does not stand for the agent's standing: decided on the "
                          f"cold-start score; ")
        known = Score(agent, score, tier, 0.0, 0)  # type: ignore[arg-type]
        try:
            ruled = [("local policy", decide(known, action, tool, self.rules))]
            if isinstance(floor, Policy):
                ruled.append(("node policy", decide(known, action, tool, floor)))
        except (ValueError, KeyError):  # a tier this SDK does not know (a newer node): never guess upwards
            return self._made(TrustDecision(agent, action, tool, "block", f"unknown tier {tier!r} from the node",
                                            score, tier, source))
        if answered is not None:
            ruled.append(("node's answer", answered))
        by, decision = max(ruled, key=lambda each: VERDICTS.index(each[1].decision))  # max: the first of the strictest
        verdict, reason = decision.decision, f"{unoperated}{decision.reason} ({by})"
        if isinstance(floor, str):
            verdict = "audit" if verdict == "allow" else verdict
            reason += f"; the node's policy: {floor}; failing open"
        return self._made(TrustDecision(agent, action, tool, verdict, reason, score, tier, source,
                                        operated=not unoperated))

    def _failed(self, agent: str, action: str, tool: str | None, error: Exception,
                issuer: str | None) -> TrustDecision:
        """The decision without the node's answer: blocked, or audited failing open; a credential of `issuer` is
        not taken to stand for the agent (`operated` false), as the node did not say its issuer operates it."""
        operated = issuer is None
        if isinstance(error, NodeApiError) and error.status < 500:
            decision = TrustDecision(agent, action, tool, "block", f"the node refused the agent: {error.detail}",
                                     None, None, "invalid", operated=operated)
        elif self.fail_open and (unmet := self._needs_a_tier(action, tool)) is not None:
            decision = TrustDecision(agent, action, tool, "block", f"{error}; failing open, but {unmet}", None, None,
                                     "unreachable", operated=operated)
        elif self.fail_open:
            decision = TrustDecision(agent, action, tool, "audit", f"{error}; failing open", None, None,
                                     "unreachable", operated=operated)
        else:
            decision = TrustDecision(agent, action, tool, "block", f"{error}; failing closed", None, None,
                                     "unreachable", operated=operated)
        return self._made(decision)

    def _needs_a_tier(self, action: str, tool: str | None) -> str | None:
        """Why failing open does not let this call run, if it does not: the action or tool is high-risk under these
        rules (or the node's policy as last fetched) and needs a tier above the lowest, which no agent is known to
        have without the node's answer (vouching.policy.decide's high-risk rule)."""
        kept = self._node_policy
        for by, rules in (("local policy", self.rules), ("node policy", kept.policy if kept is not None else None)):
            if rules is None or tier_rank(rules.high_risk_tier) == 0:
                continue
            if (risky := next((name for name in (action, tool) if rules.is_high_risk(name)), None)) is not None:
                return (f"{risky} is high-risk and needs tier {rules.high_risk_tier} or better, which no agent is "
                        f"known to have without the node's answer ({by})")
        return None

    def _made(self, decision: TrustDecision, *, detail: str | None = None) -> TrustDecision:
        """`decision`, not enforced if observing, and logged unless it allows (with `detail`, for the log only)."""
        if self.observe:
            decision = replace(decision, enforced=False)
        if decision.verdict != "allow":
            log.warning("trust decision", extra={"fields": {
                "agent": decision.agent, "action": decision.action, "tool": decision.tool or "",
                "verdict": decision.verdict, "enforced": decision.enforced, "reason": decision.reason,
                **({"detail": detail} if detail is not None else {})}})
        return decision

    def _changed(self, change: ScoreChange) -> None:
        """A change the node announced: refresh the agent's entry if we hold one (others we never asked about),
        with who operates it as the announcement says (a partner's operator vouch revoked, though it moved no
        score: the node announces it). An announcement that does not say (a node older than this SDK) drops what was
        kept of it, as the change may come of such a revocation: a check with a credential asks the node again."""
        with self._lock:
            self._announcements += 1
            if (cached := self._cache.get(change.agent)) is not None:
                scopes, complete = ((cached.scopes, cached.scopes_complete) if change.scopes is None
                                    else (frozenset(change.scopes), change.scopes_complete))
                expires = time.monotonic() + self.cache_ttl
                operators = (None if change.issuers is None or change.cold_start is None else
                             _Operators(frozenset(change.issuers), change.issuers_complete, change.cold_start, expires))
                self._cache[change.agent] = _Cached(change.score, change.tier, expires, scopes, complete, operators)
        if self._on_change is not None:
            try:
                self._on_change(change)
            except Exception:  # the service's bug must not end the stream thread, and with it the invalidation
                log.exception("on_change failed", extra={"fields": {"agent": change.agent}})

    def _forked(self) -> None:
        """In a child forked from this process (node.client._fork): the stream's thread did not come along, so it is
        made again, to start with the child's first check (with a reset: what the parent cached is dropped then);
        and the clients, whose connections are the parent's, are made again as they are needed."""
        self._lock = threading.Lock()
        self._client = None  # (the parent's is left as it is: closing it here could end its TLS sessions)
        self._async_clients = weakref.WeakKeyDictionary()
        if self._stream is not None:
            self._stream = ScoreStream(self.node, on_change=self._changed, on_reset=self._reset)
            self._stream_started = False

    def _reset(self) -> None:
        """The stream reset: everything cached goes, and the service is told (`on_reset`)."""
        self.invalidate()
        if self._on_reset is not None:
            try:
                self._on_reset()
            except Exception:  # the service's bug must not end the stream thread, and with it the invalidation
                log.exception("on_reset failed")

    def _start_stream(self) -> None:
        if self._stream is not None and not self._stream_started:
            with self._lock:
                if not self._stream_started:
                    self._stream_started = True
                    self._stream.start()

    def _sync_client(self) -> NodeClient:
        with self._lock:
            if self._client is None:
                self._client = NodeClient(self.node, timeout=self.timeout,
                                          breaker=_breaker.BREAKERS.of(self.node))
            return self._client

    async def _async_client(self) -> AsyncTrustClient:
        """This event loop's client, closed in its loop as the loop ends (closed_as_its_loop_ends: a service may run
        each check in an asyncio.run of its own). Those of loops that have ended are dropped as another is made:
        one whose loop closed without finalizing it (a loop closed by hand) holds its loop, through its open
        connection to the node, so its weak key never goes."""
        loop = event_loop()
        with self._lock:
            kept = self._async_clients.get(loop)
            if kept is not None and kept[1].ag_frame is not None:  # (no frame: it ran, and closed the client)
                return kept[0]
            for ended in [each for each, (_, closer) in self._async_clients.items() if closer.ag_frame is None
                          or isinstance(each, asyncio.AbstractEventLoop) and each.is_closed()]:
                del self._async_clients[ended]
            client = AsyncTrustClient(self.node, timeout=self.timeout, breaker=_breaker.BREAKERS.of(self.node))
            closer = closed_as_its_loop_ends(client)
            self._async_clients[loop] = client, closer
        await closer.asend(None)  # started: the loop finalizes it as it ends (it runs to its yield, not suspending)
        return client
