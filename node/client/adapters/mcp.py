"""MCP server adapter (`pip install vouchnet[mcp]`, MCP Python SDK 2.x): the caller's access token is its agent
credential. A TokenVerifier admits only credentials that verify (others get HTTP 401); an Extension's
`intercept_tool_call` gates each tool call, a refusal being a tool error result with the reason; a server
middleware gates each resource read and prompt the same way (a refusal is a JSON-RPC error with the reason);
another reports every tool call, resource read and prompt that ran.

    server = MCPServer("files", **mcp_trust(vouchnet, "http://127.0.0.1:8000/mcp"))
"""

from __future__ import annotations

import contextvars
import time
from typing import Any
from urllib.parse import unquote

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST, CallToolRequestParams, CallToolResult, TextContent

from .._log import log
from ..guard import Vouchnet, refusal_text, reported_outcome, watching_refusals
from ..identity import UnverifiedAgent
from ..policy import TrustDecision

DECISION_META = "dev.vouchnet/decision"  # marks a refusal in the result's _meta, for clients and our middleware
REPORTED_METHODS = frozenset({"tools/call", "resources/read", "prompts/get"})
GATED_READS = {"resources/read": "uri", "prompts/get": "name"}  # method -> the param naming what is read
# The gates' decisions for the request TelemetryMiddleware reports (it reports on them rather than deciding again)
_decided: contextvars.ContextVar[list[TrustDecision] | None] = contextvars.ContextVar("vouchnet_mcp_decided",
                                                                                     default=None)


def _credential() -> str | None:
    token = get_access_token()
    return token.token if token is not None else None


class TrustTokenVerifier:
    """mcp's TokenVerifier: a bearer token is accepted iff it is an agent credential that verifies."""

    def __init__(self, vouchnet: Vouchnet) -> None:
        self.vouchnet = vouchnet

    async def verify_token(self, token: str) -> AccessToken | None:
        """The caller's access token, expiring when the CredentialVerifier stops accepting it (exp plus its leeway):
        mcp refuses a token past its expires_at, which at exp refused what every other adapter accepts. A token
        refused (HTTP 401, in observe mode too: mcp admits no caller without a principal) is logged with the reason,
        which the caller is not told, and never with the token."""
        try:
            identity = await self.vouchnet.identify(token)
        except UnverifiedAgent as error:
            log.warning("mcp bearer token refused (HTTP 401)", extra={"fields": {
                "reason": f"unverified caller: {error.public}",
                **({"detail": str(error)} if str(error) != error.public else {})}})
            return None
        expires = identity.expires + self.vouchnet.verifier.leeway
        return AccessToken(token=token, client_id=identity.did, scopes=[], expires_at=expires, subject=identity.did,
                           claims={"iss": identity.org})


class TrustExtension(Extension):
    """Gates every `tools/call` on the caller's trust. Telemetry is TelemetryMiddleware's job."""

    identifier = "dev.vouchnet/trust"

    def __init__(self, vouchnet: Vouchnet) -> None:
        self.vouchnet = vouchnet

    async def intercept_tool_call(self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any],
                                  call_next: CallNext) -> HandlerResult:
        decision = await self.vouchnet.authorize(_credential(), "tool_call", params.name)
        _kept(decision)
        if decision.allowed:
            return await call_next(ctx)
        return _refusal(decision)


class ReadGate:
    """mcp server middleware: gates `resources/read` and `prompts/get` on the caller's trust, as the extension
    gates `tools/call` (action: the method; tool: the resource's URI or the prompt's name)."""

    def __init__(self, vouchnet: Vouchnet) -> None:
        self.vouchnet = vouchnet

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        field = GATED_READS.get(ctx.method)
        if field is None:
            return await call_next(ctx)
        decisions = []
        for name in _checked_names(ctx.method, (ctx.params or {}).get(field)):
            decisions.append(decision := await self.vouchnet.authorize(_credential(), ctx.method, name))
            if not decision.allowed:
                raise MCPError(INVALID_REQUEST, refusal_text(decision), {DECISION_META: _meta(decision)})
        token = _decided.set(decisions)
        try:
            return await call_next(ctx)
        finally:
            _decided.reset(token)


def _kept(decision: TrustDecision) -> None:
    """Keep the gate's `decision` for TelemetryMiddleware, when it is reporting this request."""
    decided = _decided.get()
    if decided is not None:
        decided.append(decision)


def _checked_names(method: str, target: object) -> list[str | None]:
    """What a read is checked as, each name allowed or the read refused: a prompt's name; a resource's URI as sent
    and, when it differs, percent-decoded, as a URI template hands it to the handler (`files://docs/%73ecrets`
    reads `secrets`). Whole: one over MAX_TOOL_NAME characters is refused as invalid (TrustPolicy), as a tool's
    name is; cut to its first 256, a high-risk word padded past them would go unseen."""
    if not isinstance(target, str) or not target:
        return [None]
    if method == "resources/read" and (decoded := unquote(target)) != target:
        return [target, decoded]
    return [target]


def _meta(decision: TrustDecision) -> dict[str, str]:
    return {"verdict": decision.verdict, "reason": decision.reason}


def _refusal(decision: TrustDecision) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=refusal_text(decision))],
                          is_error=True, meta={DECISION_META: _meta(decision)})


class TelemetryMiddleware:
    """mcp server middleware: each tool call, resource read and prompt request that ran becomes an `mcp` event
    of the verified caller (refusals by trust are not reported: see node/client/guard.py; nor is a call failing
    for a refusal by trust raised within it, such as a tool's delegation refused its target, which mcp turns into
    an error result)."""

    def __init__(self, vouchnet: Vouchnet, server: str = "mcp") -> None:
        self.vouchnet, self.server = vouchnet, server

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method not in REPORTED_METHODS or self.vouchnet.telemetry is None:
            return await call_next(ctx)
        started = time.perf_counter()
        decided = _decided.get()
        token = _decided.set(decided := []) if decided is None else None  # (a read's: ReadGate's, made already)
        with watching_refusals() as noted:
            try:
                result = await call_next(ctx)
            except Exception:
                if reported_outcome("error", noted) is not None:
                    await self._report(ctx, "error", started, decided)
                raise
            finally:
                if token is not None:
                    _decided.reset(token)
        outcome = reported_outcome("error" if _is_error(result) else "ok", noted)
        if not _refused(result) and outcome is not None:
            await self._report(ctx, outcome, started, decided)
        return result

    async def _report(self, ctx: ServerRequestContext[Any, Any], outcome: str, started: float,
                      decided: list[TrustDecision]) -> None:
        """Reported as the agent only if the caller's credential stands for it (its issuer operates the agent:
        Vouchnet.report's rule), by the gate's decision for the call (`decided`), else by the node's word the
        gate's check kept, else by a check of the call. Deciding again each call that the cache did not serve (a
        scoped tool's, failing open) logged an audited call twice, and used the log limit twice as fast."""
        params = ctx.params or {}
        target = params.get("name") or params.get("uri")
        target = target if isinstance(target, str) else None
        try:
            identity = await self.vouchnet.identify(_credential())
        except UnverifiedAgent:
            return
        operated = decided[-1].operated if decided else self.vouchnet.policy.operates(identity.did, identity.org)
        if operated is None:  # the kept word expired while the call ran
            action = "tool_call" if ctx.method == "tools/call" else ctx.method
            operated = (await self.vouchnet.authorize(_credential(), action, target)).operated
        if not operated:
            return
        name = f"{ctx.method} {target}" if target is not None else ctx.method
        assert self.vouchnet.telemetry is not None
        self.vouchnet.telemetry.record_mcp_operation(
            identity.did, name, self.server, outcome, round((time.perf_counter() - started) * 1000, 3),
            high_risk=ctx.method == "tools/call" and self.vouchnet.policy.is_high_risk(target))


def _field(result: Any, key: str, attribute: str) -> Any:
    return result.get(key) if isinstance(result, dict) else getattr(result, attribute, None)


def _is_error(result: Any) -> bool:
    return _field(result, "isError", "is_error") is True


def _refused(result: Any) -> bool:
    meta = _field(result, "_meta", "meta")
    return isinstance(meta, dict) and DECISION_META in meta


def mcp_trust(vouchnet: Vouchnet, resource_server_url: str, *, server: str = "mcp") -> dict[str, Any]:
    """The MCPServer arguments that put `vouchnet` in front of a server reachable at `resource_server_url`: the
    token verifier, auth settings naming the org's node as the credentials' issuer, the extension, the
    middlewares (the gate outermost: what it refuses is not reported)."""
    auth = AuthSettings(issuer_url=vouchnet.node, resource_server_url=resource_server_url,
                        validate_token_resource=False)  # agent credentials are not audience-bound tokens
    return {"token_verifier": TrustTokenVerifier(vouchnet), "auth": auth, "extensions": [TrustExtension(vouchnet)],
            "middleware": [ReadGate(vouchnet), TelemetryMiddleware(vouchnet, server)]}
