"""The records of the org's key that came from peers (gossip.own_records): the list, and the operator's
acknowledgement of those explained, which takes them out of `own_records_from_peers`."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from gossip.own_records import MAX_CONFLICTS, MAX_LISTED, OwnRecord
from gossip.store import RecordStore, StoreError
from ledger import LedgerError

from .errors import ApiError, error_responses, read_responses
from .json_body import StrictJsonRoute
from .view import NodeDep, NodeView

router = APIRouter(route_class=StrictJsonRoute, tags=["node"])
log = logging.getLogger(__name__)
# What a page says of a conflicting row's bytes and of the record's it conflicted with (`_row`)
KEPT, DROPPED, NOT_KEPT = "kept", "dropped", "not_kept"


class Acknowledgement(BaseModel):
    """Which listed records the operator has explained."""

    model_config = ConfigDict(extra="forbid", strict=True)

    through: int = Field(ge=1, le=2**63 - 1, description="Acknowledge every listed record with this `number` or a "
                         "lower one: the highest number of those GET /v1/node/own-records showed")


@router.get("/v1/node/own-records", responses=read_responses(422, 503))
async def own_records(
    node: NodeDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="List those with a higher `number`")] = 0,
) -> dict[str, Any]:
    """The records of the org's key that came from peers, signed elsewhere (its own history, after its data
    directory was restored from an older copy, or a thief's), kept across restarts: up to 1,000 a page in the order
    listed, each with its `number` (1 up, in the order listed, never reused), `id`, `iss` (the key that signed it:
    the org's key then) and `seq`, `accepted_ms` (when the node accepted it, ms since the Unix epoch), `peer` (the
    PeerID it came from, one held for an earlier record of the key too; null if submitted through this API) and
    `acknowledged`, `conflicts_with` (for a record that conflicted with one the node held at its seq when it came,
    which the ledger does not take: the key signed twice at one seq, that one's id; null for others; its COSE bytes
    at GET /v1/node/own-records/{number}/cose, that one's at .../conflicts-with/cose), `bytes` and
    `conflicts_with_bytes` (for such a record, whether those two paths serve the bytes of the record and of the one
    it conflicted with: `kept` (by the list, or the ledger holding the record), `dropped` (to make room for a later
    conflict's, the row acknowledged: 410 `bytes_dropped`) or, for the one it conflicted with, `not_kept` (a row
    listed before own_records.db format 5, of a record the node held only: 410 `bytes_not_kept`); null for others)
    and `stored` (whether the ledger holds the record: false for a conflicting one, unless the one it conflicted with
    was only held, for a missing predecessor, then dropped, and it came again and was stored; it stays listed as a
    conflict, the key having signed twice; false too for one of a batch the ledger refused, a full disk say, until it
    comes again); `ledger_unreadable`: null, or why the ledger's index could not be read for this page (an I/O
    error, say: logged at ERROR), the page served all the same, as the list is a file apart, with `stored` null
    (unknown) from the row whose read failed on, and `bytes` or `conflicts_with_bytes` null there where the ledger
    would say; `unacknowledged` counts those not acknowledged, as `own_records_from_peers` in GET /v1/node;
    `conflicts_unlisted` counts the conflicting records not listed, once each, across restarts: those the list had
    no room for (it keeps the bytes of 1,000, making room only by dropping acknowledged ones' bytes, oldest first)
    and those dropped from it to make room (past 10,000 rows, the oldest acknowledged), not kept; one sent again
    after 10,000 others counts again; `next` is the `after` of the following page, null on the last."""
    own = node.replica.own_records
    listed = own.listed(after=after, limit=MAX_LISTED + 1)
    ledger = _Ledger(node.replica.store)
    page = listed[:MAX_LISTED]
    keeping = own.keeping_bytes(after=after, through=page[-1].number) if page else {}
    records = [_row(ledger, keeping, record) for record in page]
    if ledger.unreadable is not None:
        log.error("GET /v1/node/own-records: the node's storage failed: %s; served with `stored` unknown",
                  ledger.unreadable)
    return {"records": records, "ledger_unreadable": ledger.unreadable,
            "unacknowledged": node.replica.own_from_peers, "conflicts_unlisted": own.unlisted_conflicts,
            "next": listed[MAX_LISTED - 1].number if len(listed) > MAX_LISTED else None}


class _Ledger:
    """Whether the ledger holds a record, asked of its index until a read fails (StoreError or LedgerError: an I/O
    error, a damaged file), then unknown (None) for the rest of the page, `unreadable` saying why: the list is a
    file apart, which a page serves all the same, without asking a failing disk once a row."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self.unreadable: str | None = None

    def has(self, record_id: bytes) -> bool | None:
        if self.unreadable is not None:
            return None
        try:
            return self._store.has(record_id)
        except (StoreError, LedgerError) as error:
            self.unreadable = str(error)
            return None


def _row(ledger: _Ledger, keeping: dict[int, bool], record: OwnRecord) -> dict[str, object]:
    """`record` as the page shows it, with whether the ledger holds it and, for a conflicting record, whether the
    node serves its bytes and those of the one it conflicted with (`bytes`, `conflicts_with_bytes`),
    None where the ledger would say and cannot. `keeping`: OwnRecords.keeping_bytes of the page, which reads no
    bytes."""
    stored = ledger.has(record.id)
    row = record.to_json(stored=stored)
    if record.conflicts_with is None:
        return {**row, "bytes": None, "conflicts_with_bytes": None}
    if record.number not in keeping:  # dropped, those of the one it conflicted with too: the ledger's only, if any
        return {**row, "bytes": _kept_or(stored, DROPPED),
                "conflicts_with_bytes": _kept_or(ledger.has(record.conflicts_with), DROPPED)}
    if keeping[record.number]:
        return {**row, "bytes": KEPT, "conflicts_with_bytes": KEPT}
    return {**row, "bytes": KEPT, "conflicts_with_bytes": _kept_or(ledger.has(record.conflicts_with), NOT_KEPT)}


def _kept_or(stored: bool | None, otherwise: str) -> str | None:
    """KEPT if the ledger holds the record, `otherwise` if not, None if it cannot say."""
    return None if stored is None else KEPT if stored else otherwise


_NUMBER = Path(ge=0, le=2**63 - 1, description="The row's `number`")
_COSE = {200: {"content": {"application/cose": {}}, "description": "The COSE_Sign1 bytes as they came"},
         **read_responses(404, 410, 422, 503)}


@router.get("/v1/node/own-records/{number}/cose", response_model=None, responses=_COSE)
async def own_record_bytes(node: NodeDep, number: Annotated[int, _NUMBER]) -> Response:
    """The exact COSE_Sign1 bytes (application/cose) of the listed record numbered `number` that conflicted with one
    the node held (`conflicts_with`), kept for forensics as the ledger does not hold them (or did not then); 404 for
    another row (its record is at GET /v1/records/{id}) or none; 410 `bytes_dropped` once the node dropped them to
    make room for a later conflict's: the list keeps the bytes of 1,000 conflicting records, and drops only those of
    acknowledged ones, oldest first (served still if the ledger holds the record since)."""
    rid, _ = _conflicting(node, number)
    cose = node.replica.own_records.cose(number) or node.replica.store.get(rid)
    if cose is None:
        raise ApiError(410, "bytes_dropped", f"path.number: the bytes of record {rid.hex()} were dropped to make "
                       "room for a later conflicting record's, as it was acknowledged (the list keeps those of "
                       f"{MAX_CONFLICTS:,}, dropping the oldest acknowledged first); its row stays listed")
    return Response(cose, media_type="application/cose")


@router.get("/v1/node/own-records/{number}/conflicts-with/cose", response_model=None, responses=_COSE)
async def conflicted_record_bytes(node: NodeDep, number: Annotated[int, _NUMBER]) -> Response:
    """The exact COSE_Sign1 bytes (application/cose) of the record that the listed record numbered `number`
    conflicted with (`conflicts_with`): the other signature of the key at that seq. Kept with the row if the node
    held that record only (for a missing predecessor, and may drop it since), else from the ledger if it holds it;
    404 for a row that conflicts with none, or none; 410 `bytes_dropped` once the node dropped them with the row's
    (GET /v1/node/own-records/{number}/cose), `bytes_not_kept` for a row listed by a node before own_records.db format
    5, which kept no bytes of a record it held only."""
    _, conflicts_with = _conflicting(node, number)
    own = node.replica.own_records
    cose = own.conflicts_with_cose(number) or node.replica.store.get(conflicts_with)  # (served while the index fails)
    if cose is not None:
        return Response(cose, media_type="application/cose")
    if own.cose(number) is None:
        raise ApiError(410, "bytes_dropped", f"path.number: the bytes of record {conflicts_with.hex()}, which "
                       "the node held only, were dropped with those of the record conflicting with it, to make room "
                       "for a later conflicting record's, as it was acknowledged")
    raise ApiError(410, "bytes_not_kept", f"path.number: the node held record {conflicts_with.hex()} only, and "
                   "listed this row in a version that kept no bytes of a held record (before own_records.db format "
                   "5): it holds them no longer")


def _conflicting(node: NodeView, number: int) -> tuple[bytes, bytes]:
    """The id of the conflicting record listed as `number`, and that of the one it conflicted with; 404 for another
    row or none."""
    row = node.replica.own_records.row(number)
    if row is None or row.conflicts_with is None:
        raise ApiError(404, "not_found", "path.number: no listed record with this number that conflicted with one "
                       "the node held (another's record is at GET /v1/records/{id})")
    return row.id, row.conflicts_with


@router.post("/v1/node/own-records/acknowledge", responses=error_responses())
async def acknowledge_own_records(request: Acknowledgement, node: NodeDep) -> dict[str, int]:
    """Acknowledge the listed records numbered up to `through`, once explained (a restore from an older copy): they
    stay listed, and no longer count in `own_records_from_peers` (nor its metric). A record listed later has a
    higher number, and counts. `acknowledged`: how many were not acknowledged before; `unacknowledged`: how many
    remain. Logged at WARNING."""
    count = node.replica.own_records.acknowledge(request.through)
    return {"acknowledged": count, "unacknowledged": node.replica.own_from_peers}
