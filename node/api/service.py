"""The local API as one of the node's services: hypercorn's trio worker serving `create_app(node)`, run in the
node's root nursery until cancelled (CONTRACTS: "The node")."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.types import ASGIApp

from .app import create_app
from .view import NodeView

log = logging.getLogger(__name__)


class ApiService:
    """Serves the API of `node` on host:port (port 0: any free port); 127.0.0.1 keeps it to this machine. `app`
    is `create_app(node)` unless the daemon assembled it with more routers."""

    def __init__(self, node: NodeView, host: str = "127.0.0.1", port: int = 8700, *, app: ASGIApp | None = None) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.app = app or create_app(node)

    async def run(self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `task_status.started` gets the bound base URLs (e.g. "http://127.0.0.1:8700")."""
        config = Config()
        config.bind = [f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"]
        config.accesslog = None  # requests are not logged; nothing of a request, its token least of all, reaches a log
        config.errorlog = log  # into the node's logging, not a handler of hypercorn's own on stderr
        await serve(self.app, config, task_status=task_status)
