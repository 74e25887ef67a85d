"""The local API as one of the node's services: node.api.http_server serving `create_app(node)`, run in the
node's root nursery until cancelled (CONTRACTS: "The node"). Requests are not logged: nothing of a request, its
token least of all, reaches a log."""

from __future__ import annotations

import trio
from starlette.types import ASGIApp

from .app import create_app
from .http_server import serve
from .view import NodeView


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
        await serve(self.app, self.host, self.port, task_status=task_status)
