"""The node's own state: liveness, what it is and holds, and whom it is connected to."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .view import NodeDep

router = APIRouter(tags=["node"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers while the node runs."""
    return {"status": "ok"}


@router.get("/v1/node")
async def node_info(node: NodeDep) -> dict[str, Any]:
    """The org's did and network, the node's peer id and addresses, and counts of what it holds."""
    replica = node.replica
    return {
        **node.info(),
        "did": node.did,
        "network": node.network,
        "records": replica.store.size,
        "held": replica.held_count,
        "horizon": len(replica.horizon.members()),
        "flagged": sorted(replica.flagged),
    }


@router.get("/v1/peers")
async def peers(node: NodeDep) -> dict[str, list[dict[str, Any]]]:
    """The peers the node is connected to."""
    return {"peers": node.peers()}
