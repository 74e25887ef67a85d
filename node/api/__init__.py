"""The node's local HTTP API (DESIGN §8): a FastAPI app over the running node, served on 127.0.0.1 by default."""

from .app import create_app
from .service import ApiService
from .view import NodeView

__all__ = ["ApiService", "NodeView", "create_app"]
