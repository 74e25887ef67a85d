"""The SDK local services import to talk to their org's node (DESIGN §8): the API clients, the trust policy, A2A
trust, the telemetry collector and the credential verifier; framework adapters live in node.client.adapters.
Needs neither trio nor libp2p, nor any agent framework.

Each name is imported from its module when first used (PEP 562), so that a program using one part, such as the
`vouchnet` commands using NodeClient, does not load the others (the policy's and verifier's numpy and asyncio)."""

from __future__ import annotations

import importlib
from typing import Any

# Each public name, and where in this package it is defined (module.name).
_DEFINED = {
    "A2ATrust": "a2a_trust.A2ATrust",
    "AgentIdentity": "identity.AgentIdentity",
    "AsyncTrustClient": "async_client.AsyncTrustClient",
    "ClientError": "node_client.ClientError",
    "CollectorStats": "telemetry.CollectorStats",
    "CredentialVerifier": "identity.CredentialVerifier",
    "EventsReply": "_idempotent.EventsReply",  # what report_events answers, marked `replayed`
    "LOG_LIMIT": "_log.LIMIT",  # the filter bounding the SDK's log (its logger's only)
    "NodeApiError": "node_client.NodeApiError",
    "NodeClient": "node_client.NodeClient",
    "NodeUnreachable": "node_client.NodeUnreachable",
    "ScoreChange": "score_stream.ScoreChange",
    "SignedRecord": "_idempotent.SignedRecord",  # what vouch and revoke answer, marked `replayed`
    "TelemetryCollector": "telemetry.TelemetryCollector",
    "TrustClient": "node_client.NodeClient",  # the synchronous client; AsyncTrustClient is its async twin
    "TrustDecision": "policy.TrustDecision",
    "TrustPolicy": "policy.TrustPolicy",
    "UnverifiedAgent": "identity.UnverifiedAgent",
    "Vouchnet": "guard.Vouchnet",
}

__all__ = sorted(_DEFINED)


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use; AttributeError for any other."""
    if name not in _DEFINED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, defined = _DEFINED[name].rpartition(".")
    value = getattr(importlib.import_module(f".{module}", __name__), defined)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
