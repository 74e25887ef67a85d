"""Records through the API: vouch and revoke as this org, submit a signed record as a peer would, list what the
node holds, fetch one record."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from gossip.validation import check_record
from node.records_json import record_json
from vouching import Record, load_record, load_stored, revoke_body, vouch_body
from vouching.bodies import KINDS
from vouching.identity import meant_as_did

from .errors import ApiError, ErrorBody, checked_did, error_responses, read_responses
from .guard import media_type
from .idempotent import HEADER_DESCRIPTION, RequestKey, keyed_responses
from .json_body import StrictJsonRoute
from .view import NodeDep, NodeView

DEFAULT_PAGE = 100
MAX_PAGE = 500
RecordId = Annotated[str, Path(description="The record's id, 64 hex digits")]
PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"At most this many on the page, 1-{MAX_PAGE}")]
MAX_CURSOR = 2**53 - 1  # ledger indexes stay within what JSON carries exactly (and SQLite's INTEGER)
_MAX_FILTER = 512  # longer than any did or record id
_RECORD_ID = re.compile(r"[0-9a-fA-F]{64}")

router = APIRouter(prefix="/v1", route_class=StrictJsonRoute, tags=["records"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description=HEADER_DESCRIPTION)]


class VouchRequest(BaseModel):
    """A vouch this org signs; the node checks it by the record rules and names the field that breaks one."""

    model_config = ConfigDict(extra="forbid", strict=True)

    subject: str = Field(description="did:key of the agent vouched for (an org's, with basis org-peer)")
    weight: float = Field(description="How strongly, in (0, 1]")
    basis: str = Field(description="operator, audit, developer, interaction, or org-peer (an org-to-org edge)")
    scope: list[str] | None = Field(None, description="The tools the vouch covers, named exactly (1 to 64 entries); "
                                    "omit for all. Not on an org-peer vouch")
    expires: int | None = Field(None, description="When the vouch lapses, in ms since the Unix epoch")


class RevocationRequest(BaseModel):
    """Withdraws one of this org's vouches."""

    model_config = ConfigDict(extra="forbid", strict=True)

    record: str = Field(description="The vouch's record id, 64 hex digits")
    reason: str = Field(description="Why, 1 to 256 printable characters")


def record_view(index: int, record: Record) -> dict[str, Any]:
    """A record as the API shows it: its JSON form and its index in the node's records ledger."""
    return {"index": index, **record_json(record)}


def _subject_filter(value: str) -> str:
    """A `subject=` filter as the store keeps subjects: a did:key, or (a revoke's) a vouch's record id, in lowercase
    hex; anything else a 422, where it matched nothing and answered an empty page."""
    if _RECORD_ID.fullmatch(value):
        return value.lower()
    if not meant_as_did(value):
        raise ApiError(422, "invalid_request", "query.subject: must be a did:key, or (for a revoke) a vouch's record "
                                               "id, 64 hex digits")
    return checked_did(value, "query.subject")


def parse_record_id(value: str, where: str) -> bytes:
    if not _RECORD_ID.fullmatch(value):
        raise ApiError(422, "invalid_request", f"{where}: must be a record id, 64 hex digits")
    return bytes.fromhex(value)


def _created(node: NodeView, record: Record, response: Response) -> dict[str, Any]:
    index = node.replica.store.index_of(record.id)
    if index is None:
        raise AssertionError(f"record {record.id.hex()} was issued but is not in the store")
    return _shown(index, record, response)


def _shown(index: int, record: Record, response: Response) -> dict[str, Any]:
    """The answer naming a record this org signed: its view, and where to fetch it."""
    response.headers["Location"] = f"/v1/records/{record.id.hex()}"
    return record_view(index, record)


@router.post("/vouches", status_code=201, responses={**error_responses(), **keyed_responses("vouch")})
async def create_vouch(request: VouchRequest, node: NodeDep, response: Response,
                       idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Sign and publish a vouch as this org; 201 with the record, 422 naming the field a bad vouch breaks. With an
    `Idempotency-Key`, a retry of the request gets the first one's record (201, `Idempotent-Replayed: true`) and
    signs nothing; the key with another vouch is 422 `idempotency_key_reused`."""
    key = RequestKey.of(node, "vouches", idempotency_key, request)
    if key is not None and (replayed := key.replay(response)) is not None:
        return _shown(*replayed, response)
    if request.basis == "org-peer" and request.scope is not None:
        # The record rules allow it (a peer's such vouch is accepted), but scoring reads no scope on an org edge.
        raise ApiError(422, "invalid_request", "body.scope: an org-peer vouch covers an org, not tools; scoring would "
                                               "ignore the scope, so omit it")
    body = vouch_body(request.subject, request.weight, request.basis, scope=request.scope, expires=request.expires)
    reserve = None if key is None else key.reserve
    return _created(node, node.replica.issue("vouch", body, before_storing=reserve), response)


@router.post(
    "/revocations",
    status_code=201,
    responses={**error_responses(404, 409), **keyed_responses("revocation")},
)
async def create_revocation(request: RevocationRequest, node: NodeDep, response: Response,
                            idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Revoke one of this org's vouches, made under its current key or one it rotated away from; 404 if the node has
    no such record, 409 if it cannot be revoked here. With an `Idempotency-Key`, a retry of the request gets the
    first one's revoke record (201, `Idempotent-Replayed: true`), not a 409; the key with another revocation is 422
    `idempotency_key_reused`."""
    key = RequestKey.of(node, "revocations", idempotency_key, request)
    if key is not None and (replayed := key.replay(response)) is not None:
        return _shown(*replayed, response)
    vouch_id = parse_record_id(request.record, "body.record")
    store = node.replica.store
    found = store.kind_and_issuer(vouch_id)
    if found is None:
        raise ApiError(404, "not_found", "body.record: the node holds no record with this id")
    kind, issuer = found
    if issuer != node.did and issuer not in node.replica.succession.earlier(node.did):
        raise ApiError(409, "conflict", f"body.record: issued by {issuer}; only an org's own vouches can be revoked")
    if kind != "vouch":
        article = "an" if kind[0] in "aeiou" else "a"  # an org, an equivocation
        raise ApiError(409, "conflict", f"body.record: {article} {kind} record; only vouches can be revoked")
    if store.revoked(vouch_id):
        raise ApiError(409, "conflict", "body.record: this vouch is already revoked")
    reserve = None if key is None else key.reserve
    revoke = revoke_body(vouch_id, request.reason)
    return _created(node, node.replica.issue("revoke", revoke, before_storing=reserve), response)


_COSE = "application/cose"
_SUBMIT_BODY = {"required": True, "content": {_COSE: {"schema": {"type": "string", "format": "binary"}}}}


@router.post(
    "/records",
    status_code=201,
    openapi_extra={"requestBody": _SUBMIT_BODY},
    responses={200: {"description": "The node already holds this record"},
               202: {"description": "Held until the issuer's missing earlier records arrive (sync fetches them)"},
               409: {"model": ErrorBody,
                     "description": "Not accepted: outside the horizon, equivocation, a broken chain"},
               **error_responses(415, json_body=False)},
)
async def submit_record(request: Request, node: NodeDep, response: Response) -> dict[str, Any]:
    """Offer a signed record (its COSE_Sign1 bytes) exactly as a peer's gossip would: it is checked like any record
    from the network and accepted only if it extends its issuer's chain within this node's horizon; 409 says why
    not (an `equivocation` refusal means the node now holds, and publishes, evidence against the issuer)."""
    if media_type(request) != _COSE:
        raise ApiError(415, "unsupported_media_type", f"Content-Type: must be {_COSE}")
    record = check_record(await request.body())
    replica = node.replica
    outcome = replica.accept([record])
    if record in outcome.accepted:
        return _created(node, record, response)
    index = replica.store.index_of(record.id)
    if index is not None:
        response.status_code = 200
        return record_view(index, record)
    if outcome.held or outcome.duplicates:  # held now, or held since an earlier offer
        response.status_code = 202
        return {"status": "held", "detail": f"seq: {record.iss} has records before seq {record.seq} that this node "
                                            "lacks; it holds this one until sync brings them"}
    if outcome.outside_horizon:
        raise ApiError(409, "outside_horizon", f"iss: {record.iss} is outside this node's horizon (more than "
                                               "max_hops org-peer vouches from its trust roots)")
    if outcome.unlinked:
        raise ApiError(409, "unlinked", f"iss: {record.iss} names a key it replaces, whose rotation record naming it "
                                        "has not reached this node; offer it again once that has")
    if outcome.equivocations:
        raise ApiError(409, "equivocation", f"seq: the node holds another record of {record.iss} with seq "
                                            f"{record.seq}; both are evidence that the issuer equivocated")
    if outcome.dropped:
        raise ApiError(409, "held_full", "seq: the record waits for earlier ones, and the node holds as many such "
                                         "records as it may; offer it again later")
    (_, reason), = outcome.rejected
    raise ApiError(409, "rejected", reason)


@router.get("/records", responses=read_responses(422, 503))
async def list_records(
    node: NodeDep,
    issuer: Annotated[str | None, Query(max_length=_MAX_FILTER, description="Only this org's records")] = None,
    kind: Annotated[str | None, Query(max_length=_MAX_FILTER, description=f"One of {', '.join(KINDS)}")] = None,
    subject: Annotated[
        str | None,
        Query(max_length=_MAX_FILTER, description="The did:key a record is about; for a revoke, the vouch's record "
                                                  "id (64 hex digits)"),
    ] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_CURSOR, description="The `next` of the previous page")] = None,
    limit: PageLimit = DEFAULT_PAGE,
) -> dict[str, Any]:
    """Records matching every filter, oldest first by ledger index; `next` is the cursor of the following page,
    null on the last."""
    if kind is not None and kind not in KINDS:
        raise ApiError(422, "invalid_request", f"query.kind: must be one of {', '.join(KINDS)}")
    if issuer is not None:
        checked_did(issuer, "query.issuer")
    if subject is not None:
        subject = _subject_filter(subject)
    rows = node.replica.store.query(
        issuer=issuer, kind=kind, subject=subject, after=-1 if after is None else after, limit=limit + 1
    )
    page = rows[:limit]
    return {
        "records": [record_view(index, load_stored(raw)) for index, raw in page],  # of our store: verified once
        "next": page[-1][0] if len(rows) > limit else None,
    }


@router.get(
    "/records/{record_id}",
    response_model=None,
    responses={
        200: {"content": {"application/cose": {}}, "description": "The COSE_Sign1 bytes, or JSON"},
        **read_responses(404, 422, 503),
    },
)
async def get_record(
    record_id: RecordId, node: NodeDep,
    format: Annotated[Literal["cose", "json"], Query(description="cose: the signed bytes as gossiped; json: the record "
                                                                  "decoded, with its ledger index")] = "cose"
) -> Response | dict[str, Any]:
    """One record: its exact COSE_Sign1 bytes (application/cose), or `?format=json` for its JSON form."""
    rid = parse_record_id(record_id, "path.record_id")
    store = node.replica.store
    index = store.index_of(rid)
    if index is None:
        raise ApiError(404, "not_found", "path.record_id: the node holds no record with this id")
    raw = store.ledger.entry(index)
    if format == "json":
        return record_view(index, load_record(raw))
    return Response(raw, media_type="application/cose")
