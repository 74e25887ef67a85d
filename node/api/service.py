"""The local API as a service: node.api.http_server serving `create_app(node)` on host:port until cancelled. (The
daemon binds its port first and serves with http_server.serve_on, so that its app is made knowing the port.)
Requests are not logged: nothing of a request, its token least of all, reaches a log."""

from __future__ import annotations

import trio
from starlette.types import ASGIApp

from .app import create_app
from .http_server import serve
from .view import NodeView


class ApiService:
    """Serves the API of `node` on host:port (port 0: any free port); 127.0.0.1 keeps it to this machine. `app`
    is `create_app(node)` unless the caller assembled it with more routers."""

    def __init__(self, node: NodeView, host: str = "127.0.0.1", port: int = 8700, *, app: ASGIApp | None = None) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.app = app or create_app(node)

    async def run(self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `task_status.started` gets the bound base URLs (e.g. "http://127.0.0.1:8700")."""
        await serve(self.app, self.host, self.port, task_status=task_status)
