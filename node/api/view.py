"""What the local API needs from the running node (the daemon implements it; tests use a fake)."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from gossip.peers import KnownPeer
from gossip.replica import Replica
from ledger import Checkpoint

from ..idempotency import IdempotencyStore


class NodeView(Protocol):
    """The running node as the API sees it. Every call is made from the node's trio thread."""

    @property
    def did(self) -> str:
        """The org's did:key (also its libp2p PeerID's key)."""

    @property
    def network(self) -> str:
        """The vouchnet network this node joined."""

    @property
    def token(self) -> str | None:
        """The bearer token that writes must present (the contents of `api.token` now); None while that file cannot
        be read as one, when no write is taken."""

    @property
    def replica(self) -> Replica:
        """The node's records: `.store`, `.issue(kind, body)`, `.horizon`, `.flagged`, `.held_count`."""

    @property
    def idempotency(self) -> IdempotencyStore:
        """The Idempotency-Keys of writes: `POST /v1/vouches` and `/v1/revocations` keep theirs here."""

    def info(self) -> dict[str, Any]:
        """JSON-ready facts about the node for `GET /v1/node`: peer id, listen addresses, ..."""

    def peers(self) -> list[dict[str, Any]]:
        """JSON-ready connected peers for `GET /v1/peers`: peer id, did, addresses, ..."""

    def known_peers(self, *, after: str | None, limit: int) -> list[KnownPeer]:
        """The first `limit` peers the node knows, in peer id order after `after`: those it dials and those connected
        that dialled in, with how dialling them goes (gossip.peers.PeerManager.known)."""

    def checkpoint(self) -> bytes | None:
        """The latest signed checkpoint note of the records ledger with its cosignature lines; None before the first."""

    def published_checkpoint(self) -> Checkpoint | None:
        """The checkpoint of `checkpoint()`'s note, as the node signed it (not parsed again from the note): its size
        is the log's public size (node.api.log); None before the first."""

    def blocked_peers(self) -> list[str]:
        """The PeerIDs this node refuses to connect to or hear from, sorted."""

    async def set_blocked_peers(self, peer_ids: list[str]) -> None:
        """Refuse exactly these PeerIDs from now on (disconnecting them); the API has checked each is a PeerID."""


async def node_view(request: Request) -> NodeView:
    """FastAPI dependency: the node this app serves (async, so it runs on the node's thread, not a worker)."""
    return request.app.state.node


NodeDep = Annotated[NodeView, Depends(node_view)]
