"""The node's own state: liveness, what it is and holds, whom it is connected to, and whom it refuses."""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Collection, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gossip.addrs import AddrError, check_org_peer_id
from gossip.host import InvalidPeerId, peer_public_key
from gossip.peers import KnownPeer
from vouching import did_key
from vouching.succession import Succession

from ..audit_log import wall_clock_ms
from ..health import own_org_flagged
from .errors import ApiError, error_responses, read_responses
from .json_body import StrictJsonRoute
from .records import DEFAULT_PAGE, PageLimit
from .view import NodeDep

MAX_BLOCKED = 1000
# Flagged orgs GET /v1/node lists: any org inside the horizon can get keys it mints flagged by having them equivocate
MAX_LISTED_FLAGGED = 64
MAX_PEER_ID = 64  # an Ed25519 PeerID has 52 characters
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]+")

router = APIRouter(route_class=StrictJsonRoute, tags=["node"])


class BlockedPeers(BaseModel):
    """The whole block list: the node disconnects these peers and refuses them until it is changed or restarts."""

    model_config = ConfigDict(extra="forbid", strict=True)

    peers: list[str] = Field(max_length=MAX_BLOCKED, description="PeerIDs (12D3KooW...), as GET /v1/peers shows")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers while the node runs."""
    return {"status": "ok"}


@router.get("/v1/node", responses=read_responses(503))
async def node_info(node: NodeDep) -> dict[str, Any]:
    """The org's did (and its keys before this one, newest first, if it rotated its key) and network, the node's
    peer id and addresses, and counts of what it holds; `own_records_from_peers` counts records of the org's key
    that arrived from peers, signed elsewhere: its own history, if its data directory was restored from an older
    copy, else a thief's (the node logs each at CRITICAL), and that its operator has not acknowledged (GET
    /v1/node/own-records lists them, with those of its keys that conflict with a record the node holds at their seq,
    which it does not store: proof that someone else holds the key; kept across restarts), but not those of a key
    adopted by `vouchnet key adopt` coming back as it starts (logged at INFO: gossip.replica.Replica._report_own);
    `log` tells how its records ledger stands to the newest checkpoint of its log that its peers hold
    (gossip.witnessing.Witnessing.log_state: "ok", "behind" or "diverged", when it signs no checkpoint any more);
    `startup_sync` how the catch-up sync with a peer it dials that holds the org's records (of its network, the org
    inside its horizon) that a start runs before it signs went: "done" (for a new org, whose data directory holds
    none of its records, the heads of any peer it dials naming none of its keys), "no_peers" (none to dial),
    "timed_out" (none completed a round in time: it signs without it; if its data directory was restored from an
    older copy, the org may sign twice at one seq; the metric
    vouchnet_startup_sync_timed_out), "unreachable" (ended early, as none could be connected for a sync before it
    would end: each one's last dial failed or found it on another network, and none was due to be dialled again in
    time, or it was connected but refused /vouchnet/sync/1, a gossip-only node; the same metric) or "unheld" (those
    that did hold none of the org's records, as for an org no other org vouches for yet, or did not serve the head
    they named: it signs without a check too; vouchnet_startup_sync_unheld), "done" once a later round ends it as it
    would have ended the start's (a peer of another network, or whose horizon leaves the org out, holds none of its
    records), "timed_out" and "unreachable" turning "unheld" at a later round with a peer it dials that holds none.
    `horizon` counts the orgs inside its horizon; `flagged` lists the first 64 orgs flagged for equivocation in did
    order, each by its identity (its first key, vouching.succession: a stolen key's org and the thief's key it
    rotated to are one org), `flagged_total` counts them all and `flagged_complete` is false if there are more;
    `own_org_flagged` is true once this org is flagged itself (peers then trust none of it; the metric
    vouchnet_own_org_flagged).
    `takes_writes` is false while the node cannot read its api.token as a token: it refuses every write (503
    no_token; the metric vouchnet_api_writes_refused)."""
    replica = node.replica
    return {
        **node.info(),
        "did": node.did,
        "earlier_keys": list(replica.succession.earlier(node.did)),
        "network": node.network,
        "records": replica.store.size,
        "held": replica.held_count,
        "horizon": len(replica.horizon),
        **listed_flagged(replica.flagged, replica.succession),
        "own_org_flagged": own_org_flagged(replica),
        "own_records_from_peers": replica.own_from_peers,
        "takes_writes": node.token is not None,
    }


def listed_flagged(flagged: Collection[str], succession: Succession) -> dict[str, Any]:
    """The `flagged`, `flagged_complete` and `flagged_total` fields of GET /v1/node: of the orgs whose keys are
    `flagged`, the first MAX_LISTED_FLAGGED identities in did order (picked without sorting or copying them all),
    whether that is all, and how many orgs (not keys: every key of a flagged org is flagged)."""
    total = sum(1 for _ in _identities(flagged, succession))
    return {"flagged": heapq.nsmallest(MAX_LISTED_FLAGGED, _identities(flagged, succession)),
            "flagged_complete": total <= MAX_LISTED_FLAGGED, "flagged_total": total}


def _identities(flagged: Collection[str], succession: Succession) -> Iterator[str]:
    """The flagged keys that are their org's identity: one per flagged org."""
    return (key for key in flagged if succession.identity(key) == key)


@router.get("/v1/peers", responses=read_responses(422))
async def peers(
    node: NodeDep,
    after: Annotated[str | None, Query(max_length=MAX_PEER_ID, description="The `next` of the previous page")] = None,
    limit: PageLimit = DEFAULT_PAGE,
) -> dict[str, Any]:
    """`peers`: every peer the node is connected to now, dialled or dialling in (`peer_id`, `org`, GossipSub
    `score`, `serves_sync`). `known`: a page of the peers it knows, in peer id order: those it dials (`source`
    `bootstrap`, from its config, or `org_record`, named by the org's latest `org` record) and those that dialled in
    (`inbound`, listed while connected), each with its `org` (null if its PeerID names none), the `addrs` it dials
    (in the order tried), `connected`, `failures` (dials failed in a row, a connection closed within a minute
    counting as one; forgotten once a connection lasts), `last_error` (why the last of them failed: one line of
    printable text, as a peer's own words in it may be hostile, at most 512 characters, a longer one cut in the
    middle; null without failures; `the peer is blocked on this host: not dialled until unblocked` from the moment
    it is put on the block list until it is taken off; one of a connection closed within 5 s of opening, not by this
    node, adds that a peer that blocked this node closes each connection to it as it opens; one of a connection this
    node closed itself begins `this node closed the connection`; one of a dial of an org's earlier key, shown on its
    successor's row once the org's rotation is followed, begins `as <that PeerID>, before its org's key rotated:`),
    `other_network` (the network the peer was
    found on, when its sync request or answer named another than the node's: a mistyped bootstrap address, say; it is
    then dialled ever less often, a minute, doubling up to an hour, apart, each wait less up to half at random, and this
    stays until a connection to it lasts a minute or a sync round with it runs to the end; null otherwise) and
    `next_dial_at` (when it is dialled next, in ms since the Unix epoch, the present if it is due and waits for a free
    dial; null while connected or blocked). `next` is the cursor of the following page (the last peer id), null on the
    last."""
    if after is not None and not _BASE58.fullmatch(after):
        raise ApiError(422, "invalid_request", "query.after: must be a PeerID (base58), the `next` of a page")
    page = node.known_peers(after=after, limit=limit + 1)
    now = wall_clock_ms()
    return {"peers": node.peers(), "known": [known_peer_view(peer, now) for peer in page[:limit]],
            "next": page[limit - 1].peer_id if len(page) > limit else None}


def known_peer_view(peer: KnownPeer, now_ms: int) -> dict[str, Any]:
    """A known peer as GET /v1/peers shows it, its next dial a time in ms since the Unix epoch (`now_ms` is now)."""
    try:
        org: str | None = did_key(check_org_peer_id(peer.peer_id))
    except AddrError:
        org = None
    next_dial = None if peer.next_dial_in is None else now_ms + math.ceil(peer.next_dial_in * 1000)
    return {"peer_id": peer.peer_id, "org": org, "addrs": list(peer.addrs), "connected": peer.connected,
            "source": peer.source, "failures": peer.failures, "last_error": peer.last_error,
            "other_network": peer.other_network, "next_dial_at": next_dial}


@router.get("/v1/peers/blocked")
async def blocked_peers(node: NodeDep) -> dict[str, list[str]]:
    """The peers the node refuses: no connection either way, no gossip, no sync."""
    return {"peers": node.blocked_peers()}


@router.put("/v1/peers/blocked", responses=error_responses())
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
