"""The node's local HTTP API (DESIGN §8): a FastAPI app over the running node, served on 127.0.0.1 by default."""

from .app import create_app
from .view import NodeView

__all__ = ["NodeView", "create_app"]
