"""The answers of the node's idempotent writes (vouch, revoke, events; the Idempotency-Key header of IETF
draft-ietf-httpapi-idempotency-key-header): each the answer's JSON, marked `replayed` when the node answered it with
`Idempotent-Replayed: true`, as the answer to an earlier request with the same key, having done nothing now."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx


class SignedRecord(dict[str, Any]):
    """A record the node signed for a vouch or revoke call, in its JSON form; `replayed`: the node answered with
    `Idempotent-Replayed: true`, having signed it for an earlier request with the same Idempotency-Key, and signed
    nothing now."""

    replayed: bool = False


class EventsReply(dict[str, Any]):
    """The node's answer to a batch of events, `{"accepted": n, "rejected": [{"index", "detail"}]}`; `replayed`: the
    node answered with `Idempotent-Replayed: true`, having stored the batch for an earlier request with the same
    Idempotency-Key (the answer is that request's), and stored nothing now."""

    replayed: bool = False


Answer = TypeVar("Answer", SignedRecord, EventsReply)


def marked(kind: type[Answer], answer: dict[str, Any], response: httpx.Response) -> Answer:
    """`answer`, the JSON of `response`, as a `kind` marked `replayed` if the response says it was."""
    reply = kind(answer)
    reply.replayed = response.headers.get("Idempotent-Replayed") == "true"
    return reply
