"""A node's telemetry side without a network: audit log, ingest, digests over a real Replica, and an app serving
the telemetry routers behind the API's error handlers and write guard; and the data directory a kill -9 leaves."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import trio
from fastapi import APIRouter, FastAPI
from nacl.signing import SigningKey

from gossip.replica import Replica
from gossip.store import RecordStore
from node.api.errors import install_error_handlers
from node.api.guard import WriteGuard
from node.api.http_server import serve
from node.api.refusals import refusals_counter
from node.audit_log import AuditLog
from node.credential_registry import CredentialRegistry
from node.credentials_api import credentials_router
from node.digests import Digester, DigestState
from node.idempotency import IdempotencyStore
from node.ingest import Ingestor
from node.ingest_api import BODY_LIMITS, OPEN_WRITE_PATHS, ingest_router
from node.metrics import Registry

TOKEN = "test-token-" + "t" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PUBLIC_URL = "https://vouchnet.example.org"  # where the app's status lists say they are


@dataclass
class Clock:
    """A settable wall clock in ms, and a monotonic one in s that moves only as the test runs time on (`run`):
    setting `now` steps the wall clock, as NTP may."""

    now: int = 1_700_000_000_000
    mono: float = 0.0

    def __call__(self) -> int:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def run(self, ms: int) -> None:
        """Time passes: both clocks move on."""
        self.now += ms
        self.mono += ms / 1000


@dataclass
class TelemetryNode:
    directory: Path
    key: SigningKey
    clock: Clock
    epoch_ms: int = 60_000
    dp_epsilon: float | None = None
    metrics: Registry = field(default_factory=Registry)
    monotonic: Callable[[], float] | None = None  # default: the clock's

    def __post_init__(self) -> None:
        self.store = RecordStore.open(self.directory)
        self.replica = Replica(self.key, self.store, roots=(), max_hops=2, held_limit=100)
        self.audit = AuditLog.open(self.directory, clock=self.clock, monotonic=self.monotonic or self.clock.monotonic)
        self.idempotency = IdempotencyStore.open(self.directory, log_size=self.audit.size)
        self.ingestor = Ingestor(self.audit, self.idempotency, self.metrics,
                                 monotonic=self.monotonic or self.clock.monotonic)
        self.digester = Digester(self.audit, self.replica, DigestState.open(self.directory), self.metrics,
                                 epoch_ms=self.epoch_ms, dp_epsilon=self.dp_epsilon)
        self.ingestor.listeners.append(self.digester.observe)
        self.credentials = CredentialRegistry.open(self.directory)
        self.refused = refusals_counter(self.metrics)  # the ingest endpoints' 503 busy (the app's 4xx are not counted)

    def app(self, *, traces_need_token: bool = False) -> FastAPI:
        return guarded_app([ingest_router(self.ingestor, refused=self.refused),
                            credentials_router(self.key, self.replica, self.credentials, PUBLIC_URL)],
                           open_paths=frozenset() if traces_need_token else OPEN_WRITE_PATHS)

    def close(self) -> None:
        self.credentials.close()
        self.digester.state.close()
        self.idempotency.close()
        self.audit.close()
        self.store.close()


def guarded_app(routers: list[APIRouter], *, open_paths: frozenset[str] = OPEN_WRITE_PATHS) -> FastAPI:
    """An app serving `routers` as create_app serves the API: its error shape, and its WriteGuard configured as
    node.ingest_api asks (token on writes but `open_paths`, by default OPEN_WRITE_PATHS; BODY_LIMITS)."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(WriteGuard, node=SimpleNamespace(token=TOKEN), body_limits=BODY_LIMITS,
                       open_paths=open_paths)
    for router in routers:
        app.include_router(router)
    return app


@contextmanager
def telemetry_node(directory: Path, *, key: SigningKey | None = None, clock: Clock | None = None,
                   **options: object) -> Iterator[TelemetryNode]:
    node = TelemetryNode(directory, key or SigningKey.generate(), clock or Clock(), **options)  # type: ignore[arg-type]
    try:
        yield node
    finally:
        node.close()


def crash_image(data_dir: Path, image: Path) -> None:
    """The data directory as a kill -9 of its node leaves it, taken while the node holds its files open: each file and
    its write-ahead log as they stand (not the -shm index, which SQLite rebuilds from the log)."""
    image.mkdir()
    for path in data_dir.iterdir():
        if path.is_file() and not path.name.endswith("-shm"):
            shutil.copy2(path, image / path.name)


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` as the node serves its API, on a free loopback port; yields its base URL."""
    async with trio.open_nursery() as nursery:
        (url,) = await nursery.start(partial(serve, app, "127.0.0.1", 0, refused=lambda status, code: None,
                                             dropped=lambda reason: None))
        yield url
        nursery.cancel_scope.cancel()
