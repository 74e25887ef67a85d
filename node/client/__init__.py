"""The SDK local services import to talk to their org's node (DESIGN §8): the API clients, the trust policy, A2A
trust, the telemetry collector and the credential verifier; framework adapters live in node.client.adapters.
Needs neither trio nor libp2p, nor any agent framework."""

from .a2a_trust import A2ATrust
from .async_client import AsyncTrustClient
from .guard import Vouchnet
from .identity import AgentIdentity, CredentialVerifier, UnverifiedAgent
from .node_client import ClientError, NodeApiError, NodeClient, NodeUnreachable
from .policy import TrustDecision, TrustPolicy
from .score_stream import ScoreChange
from .telemetry import CollectorStats, TelemetryCollector

TrustClient = NodeClient  # the synchronous client; AsyncTrustClient is its async twin (asyncio, trio) for the hot path

__all__ = [
    "A2ATrust",
    "AgentIdentity",
    "AsyncTrustClient",
    "ClientError",
    "CollectorStats",
    "CredentialVerifier",
    "NodeApiError",
    "NodeClient",
    "NodeUnreachable",
    "ScoreChange",
    "TelemetryCollector",
    "TrustClient",
    "TrustDecision",
    "TrustPolicy",
    "UnverifiedAgent",
    "Vouchnet",
]
