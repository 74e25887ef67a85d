"""The records ledger as a transparency log (DESIGN §4): the signed checkpoint, entries, and RFC 9162 proofs.

Entries and proof hashes are standard base64, as in C2SP checkpoints; sizes default to the ledger's current size.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from .errors import ApiError, error_responses
from .records import MAX_CURSOR
from .view import NodeDep

MAX_ENTRIES = 256  # per page of /v1/log/entries: at most 16 MiB even if every record is the largest allowed

router = APIRouter(prefix="/v1/log", tags=["log"])

_Position = Annotated[int, Query(ge=0, le=MAX_CURSOR)]
_SizeOrCurrent = Annotated[int | None, Query(ge=0, le=MAX_CURSOR, description="Default: the log's current size")]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _out_of_range(detail: str) -> ApiError:
    return ApiError(400, "out_of_range", detail)


def _tree_size(requested: int | None, size: int, where: str) -> int:
    """A tree size the ledger has: `requested`, or the current size when it is None."""
    if requested is None:
        return size
    if requested > size:
        raise _out_of_range(f"{where}: must be at most the log's size, {size}")
    return requested


@router.get(
    "/checkpoint",
    responses={200: {"content": {"text/plain": {}}, "description": "A C2SP signed note"}, **error_responses(404)},
)
async def checkpoint(node: NodeDep) -> Response:
    """The latest checkpoint of the records ledger: a C2SP signed note, the node's signature then cosignatures."""
    note = node.checkpoint()
    if note is None:
        raise ApiError(404, "no_checkpoint", "the node has not signed a checkpoint of its ledger yet")
    return Response(note, media_type="text/plain; charset=utf-8")


@router.get("/entries", responses=error_responses(400))
async def entries(node: NodeDep, start: _Position, end: _SizeOrCurrent = None) -> dict[str, Any]:
    """Entries [start, end) as base64 COSE records; a page holds at most 256, so `end` in the answer may be
    smaller than asked (ask again from there). From the log's end (start = size), the page is empty: a client
    polling for new entries asks from there until the log grows."""
    ledger = node.replica.store.ledger
    size = ledger.size
    if start > size:
        raise _out_of_range(f"query.start: must be at most the log's size, {size}")
    stop = _tree_size(end, size, "query.end")
    if stop < start:
        raise _out_of_range("query.end: must be at least query.start")
    stop = min(stop, start + MAX_ENTRIES)
    return {"start": start, "end": stop, "size": size, "entries": [_b64(e) for e in ledger.entries(start, stop)]}


@router.get("/proof/inclusion", responses=error_responses(400))
async def inclusion_proof(node: NodeDep, index: _Position, size: _SizeOrCurrent = None) -> dict[str, Any]:
    """RFC 9162 §2.1.3: the audit path of entry `index` in the tree of `size` entries."""
    ledger = node.replica.store.ledger
    tree = _tree_size(size, ledger.size, "query.size")
    if index >= tree:
        raise _out_of_range(f"query.index: must be less than the tree size, {tree}")
    return {"index": index, "size": tree, "proof": [_b64(h) for h in ledger.inclusion_proof(index, tree)]}


@router.get("/proof/consistency", responses=error_responses(400))
async def consistency_proof(node: NodeDep, old: _Position, new: _SizeOrCurrent = None) -> dict[str, Any]:
    """RFC 9162 §2.1.4: proof that the tree of `old` entries is a prefix of the tree of `new` entries."""
    ledger = node.replica.store.ledger
    tree = _tree_size(new, ledger.size, "query.new")
    if old > tree:
        raise _out_of_range(f"query.old: must be at most the new tree size, {tree}")
    return {"old": old, "new": tree, "proof": [_b64(h) for h in ledger.consistency_proof(old, tree)]}
