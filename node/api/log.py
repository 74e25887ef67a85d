"""The records ledger as a transparency log (DESIGN §4): the signed checkpoint, entries, and RFC 9162 proofs.

Entries and proof hashes are standard base64, as in C2SP checkpoints. The log's public size is the size of the latest
checkpoint the node publishes (GET /v1/log/checkpoint; 0 before its first): entries and proofs default to it and stop
there, as an RFC 9162 log answers relative to its latest signed tree head and a C2SP tlog-tiles log serves the tree
of its checkpoint. The entries appended since (one is signed once the ledger grew, and published once its witnesses
answered) are not served: a proof to a size no checkpoint signed cannot be verified. Every checkpoint is saved
before it is published (gossip.witnessing), so the public size never goes back across a restart or a crash.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from .errors import ApiError, read_responses
from .json_body import StrictJsonRoute
from .records import MAX_CURSOR
from .view import NodeDep, NodeView

MAX_ENTRIES = 256  # per page of /v1/log/entries: at most 16 MiB even if every record is the largest allowed

router = APIRouter(prefix="/v1/log", route_class=StrictJsonRoute, tags=["log"])

_Position = Annotated[int, Query(ge=0, le=MAX_CURSOR, description="An index into the log, from 0")]
_OldSize = Annotated[int, Query(ge=0, le=MAX_CURSOR, description="The size of the earlier tree")]
_SizeOrPublic = Annotated[int | None, Query(ge=0, le=MAX_CURSOR,
                                            description="Default: the log's public size, its latest checkpoint's")]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _out_of_range(detail: str) -> ApiError:
    return ApiError(400, "out_of_range", detail)


def _public_size(node: NodeView) -> int | None:
    """The size of the latest checkpoint the node publishes (module docstring); None before its first."""
    checkpoint = node.published_checkpoint()
    return None if checkpoint is None else checkpoint.size


_NO_CHECKPOINT = "the node has published no checkpoint of its log yet"


def _beyond(where: str, public: int | None) -> ApiError:
    """A size or position past the public log."""
    if public is None:
        return _out_of_range(f"{where}: must be at most 0: {_NO_CHECKPOINT}")
    return _out_of_range(f"{where}: must be at most the latest checkpoint's size, {public}")


def _above(rule: str, public: int | None) -> ApiError:
    """`rule` broken in a tree within the public log; with no checkpoint, saying why that tree is empty."""
    return _out_of_range(rule if public is not None else f"{rule}: {_NO_CHECKPOINT}")


def _tree_size(requested: int | None, public: int | None, where: str) -> int:
    """A tree size of the public log: `requested`, or the public size when it is None (0 with no checkpoint)."""
    if requested is None:
        return public or 0
    if requested > (public or 0):
        raise _beyond(where, public)
    return requested


@router.get(
    "/checkpoint",
    responses={200: {"content": {"text/plain": {}}, "description": "A C2SP signed note"}, **read_responses(404)},
)
async def checkpoint(node: NodeDep) -> Response:
    """The latest checkpoint of the records ledger: a C2SP signed note, the node's signature then cosignatures."""
    note = node.checkpoint()
    if note is None:
        raise ApiError(404, "no_checkpoint", "the node has not signed a checkpoint of its ledger yet")
    return Response(note, media_type="text/plain; charset=utf-8")


@router.get("/entries", responses=read_responses(400, 422, 503))
async def entries(node: NodeDep, start: _Position, end: _SizeOrPublic = None) -> dict[str, Any]:
    """Entries [start, end) as base64 COSE records, within the latest checkpoint (`size` in the answer); a page
    holds at most 256, so `end` in the answer may be smaller than asked (ask again from there). From the log's end
    (start = size), the page is empty: a client polling for new entries asks from there until a checkpoint covers
    more."""
    public = _public_size(node)
    size = public or 0
    if start > size:
        raise _beyond("query.start", public)
    stop = _tree_size(end, public, "query.end")
    if stop < start:
        raise _out_of_range("query.end: must be at least query.start")
    stop = min(stop, start + MAX_ENTRIES)
    entries = node.replica.store.ledger.entries(start, stop)
    return {"start": start, "end": stop, "size": size, "entries": [_b64(e) for e in entries]}


@router.get("/proof/inclusion", responses=read_responses(400, 422, 503))
async def inclusion_proof(node: NodeDep, index: _Position, size: _SizeOrPublic = None) -> dict[str, Any]:
    """RFC 9162 §2.1.3: the audit path of entry `index` in the tree of `size` entries (default: the latest
    checkpoint's, against whose root it verifies)."""
    public = _public_size(node)
    tree = _tree_size(size, public, "query.size")
    if index >= tree:
        raise _above(f"query.index: must be less than the tree size, {tree}", public)
    proof = node.replica.store.ledger.inclusion_proof(index, tree)
    return {"index": index, "size": tree, "proof": [_b64(h) for h in proof]}


@router.get("/proof/consistency", responses=read_responses(400, 422, 503))
async def consistency_proof(node: NodeDep, old: _OldSize, new: _SizeOrPublic = None) -> dict[str, Any]:
    """RFC 9162 §2.1.4: proof that the tree of `old` entries is a prefix of the tree of `new` entries (default: the
    latest checkpoint's)."""
    public = _public_size(node)
    tree = _tree_size(new, public, "query.new")
    if old > tree:
        raise _above(f"query.old: must be at most the new tree size, {tree}", public)
    proof = node.replica.store.ledger.consistency_proof(old, tree)
    return {"old": old, "new": tree, "proof": [_b64(h) for h in proof]}
