"""Idempotency-Key on `POST /v1/vouches` and `POST /v1/revocations` (DESIGN §8; node.idempotency): a request retried
with its key after a lost answer is answered with the record the first one signed, 201 as the first time with
`Idempotent-Replayed: true`, and signs nothing; the key with another body is 422 `idempotency_key_reused`.

The key's row, naming the signed record, is durable before the record is stored (`Replica.issue`'s
`before_storing`), so a crash after the answer never forgets it; a row whose record the store lacks is of a store
that failed or never happened, and the request signs anew. Lookup, signing and storing run on the node's trio
thread with no await between them: a retry that arrives while the first is being stored is served after it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Response
from pydantic import BaseModel

from vouching import Record, load_stored

from ..idempotency import MAX_KEY, WINDOW_MS, RecordKey, check_key
from .errors import ApiError, ErrorBody, error_responses
from .view import NodeView

Route = Literal["vouches", "revocations"]
HEADER_DESCRIPTION = (f"1 to {MAX_KEY} printable ASCII characters, fresh for each vouch or revocation (a UUID) and "
                      "sent again on its retries: the node then signs once (a key is kept "
                      f"{WINDOW_MS // 60_000} minutes)")


def keyed_responses(what: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entries of the answers a key adds, to take the place of a write's own (error_responses): its 400,
    for a body that is not I-JSON, kept before the key's."""
    body = error_responses()[400]["description"]
    return {400: {"model": ErrorBody, "description": f"{body}; or an Idempotency-Key that is not 1 to {MAX_KEY} "
                                                    "printable ASCII"},
            422: {"model": ErrorBody, "description": f"A malformed request, a {what} the rules reject, or an "
                                                     f"Idempotency-Key used before for another {what}"}}


@dataclass(frozen=True)
class RequestKey:
    """One request's Idempotency-Key on `route`, and a hash of its body as parsed (its fields, keys sorted)."""

    node: NodeView
    route: Route
    key: str
    fingerprint: bytes

    @classmethod
    def of(cls, node: NodeView, route: Route, key: str | None, body: BaseModel) -> RequestKey | None:
        """The key of a request, None without one; ApiError 400 for an unusable one."""
        if key is None:
            return None
        if (problem := check_key(key)) is not None:
            raise ApiError(400, "bad_request", problem)
        canonical = json.dumps(body.model_dump(), sort_keys=True, separators=(",", ":")).encode()
        return cls(node, route, key, hashlib.sha256(canonical).digest())

    def replay(self, response: Response) -> tuple[int, Record] | None:
        """The first request's stored record with its ledger index (setting the replay header), or None if the key
        names no stored record; ApiError 422 if it was first used for another body."""
        stored = self.node.idempotency.lookup_record(self.route, self.key)
        store = self.node.replica.store
        index = None if stored is None else store.index_of(stored.record)
        if stored is None or index is None:
            return None
        if stored.fingerprint != self.fingerprint:
            raise ApiError(422, "idempotency_key_reused", f"Idempotency-Key: already used for another {self.route} "
                                                          "request")
        response.headers["Idempotent-Replayed"] = "true"
        return index, load_stored(store.ledger.entry(index))

    def reserve(self, record: Record) -> None:
        """Make the key name `record`, signed and not yet stored; durable on return (Replica.issue's
        `before_storing`)."""
        self.node.idempotency.reserve_record(self.route, self.key, RecordKey(self.fingerprint, record.id),
                                             at=record.ts)
