"""The node's own state: liveness, what it is and holds, whom it is connected to, and whom it refuses."""

from __future__ import annotations

import heapq
from collections.abc import Collection
from typing import Any

from fastapi import APIRouter, Security
from pydantic import BaseModel, ConfigDict, Field

from gossip.host import InvalidPeerId, peer_public_key

from .errors import ApiError, error_responses
from .guard import bearer_scheme
from .view import NodeDep

MAX_BLOCKED = 1000
# Flagged orgs GET /v1/node lists: any org inside the horizon can get keys it mints flagged by having them equivocate
MAX_LISTED_FLAGGED = 64

router = APIRouter(tags=["node"])


class BlockedPeers(BaseModel):
    """The whole block list: the node disconnects these peers and refuses them until it is changed or restarts."""

    model_config = ConfigDict(extra="forbid", strict=True)

    peers: list[str] = Field(max_length=MAX_BLOCKED, description="PeerIDs (12D3KooW...), as GET /v1/peers shows")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers while the node runs."""
    return {"status": "ok"}


@router.get("/v1/node")
async def node_info(node: NodeDep) -> dict[str, Any]:
    """The org's did (and its keys before this one, newest first, if it rotated its key) and network, the node's
    peer id and addresses, and counts of what it holds; `own_records_from_peers` counts records of the org's key
    that arrived from peers since the node started, signed elsewhere: its own history, if its data directory was
    restored from an older copy, else a thief's (the node logs each at CRITICAL); `log` tells how its records ledger
    stands to the newest checkpoint of its log that its peers hold (gossip.witnessing.Witnessing.log_state: "ok",
    "behind" or "diverged", when it signs no checkpoint any more). `horizon` counts the orgs inside its horizon;
    `flagged` lists the first 64 orgs flagged for equivocation in did order, `flagged_total` counts them all and
    `flagged_complete` is false if there are more."""
    replica = node.replica
    return {
        **node.info(),
        "did": node.did,
        "earlier_keys": list(replica.succession.earlier(node.did)),
        "network": node.network,
        "records": replica.store.size,
        "held": replica.held_count,
        "horizon": len(replica.horizon),
        **listed_flagged(replica.flagged),
        "own_records_from_peers": replica.own_from_peers,
    }


def listed_flagged(flagged: Collection[str]) -> dict[str, Any]:
    """The `flagged`, `flagged_complete` and `flagged_total` fields of GET /v1/node: the first MAX_LISTED_FLAGGED
    dids in did order (picked without sorting or copying them all), whether that is all, and how many."""
    return {"flagged": heapq.nsmallest(MAX_LISTED_FLAGGED, flagged),
            "flagged_complete": len(flagged) <= MAX_LISTED_FLAGGED, "flagged_total": len(flagged)}


@router.get("/v1/peers")
async def peers(node: NodeDep) -> dict[str, list[dict[str, Any]]]:
    """The peers the node is connected to."""
    return {"peers": node.peers()}


@router.get("/v1/peers/blocked")
async def blocked_peers(node: NodeDep) -> dict[str, list[str]]:
    """The peers the node refuses: no connection either way, no gossip, no sync."""
    return {"peers": node.blocked_peers()}


@router.put("/v1/peers/blocked", dependencies=[Security(bearer_scheme)], responses=error_responses(401, 413))
async def set_blocked_peers(request: BlockedPeers, node: NodeDep) -> dict[str, list[str]]:
    """Replace the block list: listed peers are disconnected and refused (both ways) until removed or until the
    node restarts; peers removed from it are dialled again at once. An empty list unblocks everyone."""
    own = node.info().get("peer_id")
    for i, peer in enumerate(request.peers):
        if peer == own:
            raise ApiError(422, "invalid_request", f"body.peers[{i}]: this node's own PeerID")
        try:
            peer_public_key(peer)
        except InvalidPeerId as e:
            raise ApiError(422, "invalid_request", f"body.peers[{i}]: not an Ed25519 PeerID ({e})") from None
    await node.set_blocked_peers(list(dict.fromkeys(request.peers)))
    return {"peers": node.blocked_peers()}
