"""The SDK local services import to talk to their org's node (DESIGN §8). Needs neither trio nor libp2p."""

from .node_client import ClientError, NodeApiError, NodeClient, NodeUnreachable

__all__ = ["ClientError", "NodeApiError", "NodeClient", "NodeUnreachable"]
