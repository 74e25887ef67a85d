"""The telemetry side of a node, composed (DESIGN §7): audit log, idempotency keys, ingest, digests, retention,
the clock hold's saver, the live stream and the credential endpoints, opened from the data directory and handed to
the daemon as routers for the API app and services for the root nursery."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import APIRouter
from nacl.signing import SigningKey, VerifyKey

from gossip.replica import Replica
from ledger.writes_under_way import close_named
from vouching import load_record, public_key_from_did

from .api.http_server import Refused
from .audit_log import AUDIT_FILE, AuditLog, wall_clock_ms
from .config import NodeConfig
from .credential_registry import CREDENTIALS_FILE, CredentialRegistry
from .credentials_api import credentials_router
from .digests import Digester, DigestService, DigestState
from .hold_saver import HoldSaver
from .idempotency import IDEMPOTENCY_FILE, IdempotencyStore
from .ingest import Ingestor
from .ingest_api import ingest_router
from .metrics import Registry, metrics_router
from .retention import RetentionService
from .store_manifest import DIGESTS_FILE
from .stream import Broadcaster, stream_router
from .vouch_revocations import VouchRevocations


@dataclass
class Telemetry:
    key: SigningKey
    replica: Replica
    metrics: Registry
    audit: AuditLog
    idempotency: IdempotencyStore
    ingestor: Ingestor
    digester: Digester
    broadcaster: Broadcaster
    digest_service: DigestService
    retention: RetentionService
    hold_saver: HoldSaver
    credentials: CredentialRegistry
    public_url: str
    vouch_revocations: VouchRevocations

    @classmethod
    def open(
        cls,
        config: NodeConfig,
        *,
        key: SigningKey,
        replica: Replica,
        metrics: Registry,
        clock: Callable[[], int] = wall_clock_ms,
        rng: random.Random | None = None,
        rebuild: bool = True,
    ) -> Telemetry:
        """Open the telemetry files in `config.data_dir`; the digester resumes where it stopped (with `rebuild`
        false, once the caller has run through `digester.rebuilding()`)."""
        audit = AuditLog.open(config.data_dir, clock=clock)
        idempotency = IdempotencyStore.open(config.data_dir, log_size=audit.size)
        digester = Digester(audit, replica, DigestState.open(config.data_dir), metrics,
                            epoch_ms=round(config.epoch_seconds * 1000), dp_epsilon=config.dp_epsilon, rng=rng,
                            rebuild=rebuild)
        ingestor = Ingestor(audit, idempotency, metrics, listeners=[digester.observe])
        return cls(
            key=key,
            replica=replica,
            metrics=metrics,
            audit=audit,
            idempotency=idempotency,
            ingestor=ingestor,
            digester=digester,
            broadcaster=Broadcaster(metrics),
            digest_service=DigestService(digester, ingestor.write_lock, clock=clock),
            retention=RetentionService(audit, idempotency, digester, metrics, retention_days=config.retention_days),
            hold_saver=HoldSaver(audit.time),
            credentials=CredentialRegistry.open(config.data_dir),
            public_url=config.api_public_url,
            vouch_revocations=VouchRevocations(replica.store),
        )

    def routers(self, retired_keys: Sequence[tuple[VerifyKey, int]], served_url: str | None = None, *,
                refused: Refused) -> list[APIRouter]:
        """For `create_app`: /v1/events, /v1/traces, /.well-known/jwks.json, /v1/records/{id}/vc,
        /v1/credentials/status/{list}, /v1/credentials/vouch-status/{did}/{list}, /v1/stream, /metrics (see
        node.ingest_api for what the write guard must allow); `retired_keys`: `retired_keys()`, read beforehand on
        the store's thread, so that the routers can be made in a worker thread (node.daemon.serve_node);
        `served_url`: where the API listens, if not at `public_url` (node.credentials_api.credentials_router);
        `refused`: told of the ingest endpoints' 503 busy (node.ingest_api.ingest_router)."""
        return [
            ingest_router(self.ingestor, refused=refused),
            credentials_router(self.key, self.replica, self.credentials, self.public_url,
                               retired_keys=retired_keys, vouches=self.vouch_revocations, served_url=served_url),
            stream_router(self.broadcaster),
            metrics_router(self.metrics),
        ]

    def retired_keys(self) -> list[tuple[VerifyKey, int]]:
        """The org's keys before this one, newest first (key rotation), each with when it signed its rotation (s):
        credentials they minted still verify while they live."""
        return [(VerifyKey(public_key_from_did(did)), self._retired_at(did))
                for did in self.replica.succession.earlier(self.replica.did)]

    def _retired_at(self, did: str) -> int:
        store = self.replica.store
        head = store.head(did)
        raw = store.at(did, head.seq) if head is not None else None
        if raw is None:  # (linked keys' rotations are stored: the link is made of them)
            raise AssertionError(f"bad bookkeeping: the rotation of {did} is not stored")
        return load_record(raw).ts // 1000

    def services(self) -> list[DigestService | RetentionService | HoldSaver]:
        """For the root nursery: each has `run(*, task_status)`."""
        return [self.digest_service, self.retention, self.hold_saver]

    def close(self) -> None:
        """Close its stores, each named while it closes (a stop that a disk holds up names it)."""
        for name, close in ((CREDENTIALS_FILE, self.credentials.close), (DIGESTS_FILE, self.digester.state.close),
                            (IDEMPOTENCY_FILE, self.idempotency.close), (AUDIT_FILE, self.audit.close)):
            close_named(name, close)
