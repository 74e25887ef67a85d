"""A node's telemetry side without a network: audit log, ingest, digests over a real Replica, and an app serving
the telemetry routers behind a stand-in for the API's write guard (bearer token on writes but OPEN_WRITE_PATHS)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from hypercorn.config import Config
from hypercorn.trio import serve
from nacl.signing import SigningKey

from gossip.replica import Replica
from gossip.store import RecordStore
from node.audit_log import AuditLog
from node.credentials_api import credentials_router
from node.digests import Digester, DigestState
from node.idempotency import IdempotencyStore
from node.ingest import Ingestor
from node.ingest_api import OPEN_WRITE_PATHS, ingest_router
from node.metrics import Registry

TOKEN = "test-token-" + "t" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Clock:
    """A settable wall clock in ms (digests are signed with the real clock, which must not be behind it)."""

    now: int = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


@dataclass
class TelemetryNode:
    directory: Path
    key: SigningKey
    clock: Clock
    epoch_ms: int = 60_000
    dp_epsilon: float | None = None
    metrics: Registry = field(default_factory=Registry)

    def __post_init__(self) -> None:
        self.store = RecordStore.open(self.directory)
        self.replica = Replica(self.key, self.store, roots=(), max_hops=2, held_limit=100)
        self.audit = AuditLog.open(self.directory, clock=self.clock)
        self.idempotency = IdempotencyStore.open(self.directory, log_size=self.audit.size)
        self.ingestor = Ingestor(self.audit, self.idempotency, self.metrics)
        self.digester = Digester(self.audit, self.replica, DigestState.open(self.directory), self.metrics,
                                 epoch_ms=self.epoch_ms, dp_epsilon=self.dp_epsilon)
        self.ingestor.listeners.append(self.digester.observe)

    def app(self) -> FastAPI:
        return guarded_app([ingest_router(self.ingestor), credentials_router(self.key, self.replica)])

    def close(self) -> None:
        self.digester.state.close()
        self.idempotency.close()
        self.audit.close()
        self.store.close()


def guarded_app(routers: list[APIRouter]) -> FastAPI:
    """An app serving `routers` behind the API's WriteGuard, as far as these tests need it."""
    app = FastAPI()
    for router in routers:
        app.include_router(router)

    @app.middleware("http")
    async def guard(request, call_next):
        if request.method == "POST" and request.url.path not in OPEN_WRITE_PATHS:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), TOKEN.encode()):
                return JSONResponse({"error": "unauthorized", "detail": "token"}, status_code=401)
        return await call_next(request)

    return app


@contextmanager
def telemetry_node(directory: Path, *, key: SigningKey | None = None, clock: Clock | None = None,
                   **options: object) -> Iterator[TelemetryNode]:
    node = TelemetryNode(directory, key or SigningKey.generate(), clock or Clock(), **options)  # type: ignore[arg-type]
    try:
        yield node
    finally:
        node.close()


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` with hypercorn's trio worker on a free loopback port; yields its base URL."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, config)
        yield binds[0]
        nursery.cancel_scope.cancel()
