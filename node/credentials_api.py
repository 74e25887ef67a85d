"""`GET /.well-known/jwks.json` (the org's keys), `GET /v1/records/{id}/vc` (one of this org's vouches as a `vc+jwt`
credential), `GET /v1/credentials/status/{list}` (which of the agent credentials it minted are revoked, a W3C
Bitstring Status List) and `GET /v1/credentials/vouch-status/{did}/{list}` (which of the vouches of one of its
keys are revoked, likewise). DESIGN §2, §8."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar

import trio
from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse
from nacl.signing import SigningKey, VerifyKey

from gossip.replica import Replica
from vouching import VouchBody, load_record
from vouching.schema import MAX_UINT

from .api.errors import ErrorBody, checked_did, error_response, read_responses
from .api.records import RecordId, parse_record_id
from .credential_registry import CredentialRegistry, NotKept
from .credential_status import LIST_ENTRIES, STATUS_PATH, VOUCH_STATUS_PATH, NoPublicUrl, list_url, vouch_list_url
from .credentials import jwks, vouch_credential
from .signed_lists import LIST_REUSE_S, SignedLists
from .vouch_revocations import VouchRevocations

MAX_LISTS = 10**9  # a path number beyond this is a mistake, not a list (an org mints far fewer credentials)
MAX_VOUCH_LISTS = MAX_UINT // LIST_ENTRIES  # the list of the last seq a record can have, 2^53 - 1
RETIRED_KEY_GRACE_S = 86_400  # a key rotated away from stays in the JWKS this long at least
T = TypeVar("T")
_LIST_NUMBER = (f"The list's number, from 0, as a credential's `statusListCredential` names it (entry n is in list "
                f"n // {LIST_ENTRIES})")


def credentials_router(key: SigningKey, replica: Replica, registry: CredentialRegistry, public_url: str,
                       retired_keys: Sequence[tuple[VerifyKey, int]] = (),
                       clock: Callable[[], float] = time.time, vouches: VouchRevocations | None = None,
                       served_url: str | None = None) -> APIRouter:
    """The credential endpoints of the org whose key is `key` (`retired_keys`: its earlier public keys, newest
    first, each with when it was retired (s), DESIGN §2); `public_url` is where other orgs reach this API, which
    its credentials name. `served_url`, if not `public_url`, is where the API listens, which the status lists it
    serves name: the address it bound, when [api] bind has port 0 and no public_url is set (a URL credentials may
    not name: the OS picks the port anew at each start). `vouches`: the revokes of its vouches as the node reads
    them (VouchRevocations.run), else read at the first ask."""
    router = APIRouter(tags=["credentials"])
    lists_at = served_url or public_url
    signed = SignedLists(key, clock)
    vouches = vouches or VouchRevocations(replica.store)

    reading = trio.CapacityLimiter(1)  # the registry's one connection, for the loop or one thread at a time

    async def read(query: Callable[[], T]) -> T:
        """`query`'s answer from the registry: on the event loop if it asks only answers the registry kept and it
        has not changed since (CredentialRegistry.kept_only), else read in a worker thread. A scan or a count of
        its credentials took up to 0.2 s at 131,072 (benchmarks/credential_status.py), and on the loop held
        everything up; a kept answer served through a thread waited 1-6 ms for its hop, at every GET."""
        async with reading:  # no thread holds the connection
            try:
                with registry.kept_only():
                    return query()
            except NotKept:
                return await trio.to_thread.run_sync(query)

    async def served() -> list[VerifyKey]:
        """A retired key is served while what it signed may still be shown: a day at least (score statements,
        verifiers' caches), and as long as an unrevoked agent credential issued before its retirement, or in its
        second, lives. After that, a copy of the key can mint nothing that verifies."""
        now = clock()
        graced = [retired for _, retired in retired_keys if now >= retired + RETIRED_KEY_GRACE_S]
        expiries = dict(zip(graced, await read(lambda: [registry.latest_expiry(r) for r in graced]))) if graced else {}
        return [key.verify_key, *(old for old, retired in retired_keys
                                  if retired not in expiries or now < (expiries[retired] or 0))]

    @router.get("/.well-known/jwks.json", responses=read_responses(503))
    async def jwks_endpoint() -> JSONResponse:
        """The org's Ed25519 keys as RFC 8037 OKP JWKs, the current one first, then the ones it rotated away from
        while credentials they signed live (a day at least); `kid` is each key's did URL, as in every token."""
        return JSONResponse(jwks(await served()), headers={"Cache-Control": "public, max-age=300"})

    @router.get(
        "/v1/records/{record_id}/vc",
        response_class=Response,
        responses={200: {"content": {"application/vc+jwt": {}}, "description": "A W3C VC 2.0 credential, vc+jwt"},
                   **read_responses(404, 422, 503),
                   409: {"model": ErrorBody,
                         "description": "Not a vouch of this org, or revoked; or the node has no URL to name "
                                        "(no_public_url: [api] bind with port 0, and no [api] public_url)"}},
    )
    async def vouch_vc(record_id: RecordId) -> Response:
        """One of this org's vouches, under its current key or one it rotated away from, as a W3C VC 2.0 credential
        secured as `vc+jwt` and signed with its current key (verify it with any JWT library against
        `/.well-known/jwks.json`); the signed record is in `evidence`. Its `exp` is 30 days from now
        (VOUCH_CREDENTIAL_DAYS), or the vouch's `expires` if sooner: fetch it again. Its `credentialStatus` names
        its bit, the vouch record's seq, in `/v1/credentials/vouch-status/{did}/{seq // 131072}`."""
        rid = parse_record_id(record_id, "path.record_id")
        raw = replica.store.get(rid)
        if raw is None:
            return error_response(404, "not_found", "path.record_id: the node holds no record with this id")
        record = load_record(raw)
        earlier = replica.succession.earlier(replica.did)
        if (record.iss != replica.did and record.iss not in earlier) or not isinstance(record.body, VouchBody):
            return error_response(409, "conflict", "path.record_id: only this org's own vouches are credentials here")
        if replica.store.revoked(rid):
            return error_response(409, "conflict", "path.record_id: this vouch was revoked")
        try:
            credential = vouch_credential(key, record, public_url, now=int(clock()), earlier_keys=earlier)
        except NoPublicUrl as error:  # its status list's URL would name port 0
            return error_response(409, "no_public_url", str(error))
        return Response(credential, media_type="application/vc+jwt")

    @router.get(
        STATUS_PATH + "/{list_number}",
        response_class=Response,
        responses={200: {"content": {"application/vc+jwt": {}},
                         "description": "A BitstringStatusListCredential (W3C Bitstring Status List v1.0), vc+jwt"},
                   **read_responses(404, 422, 503)},
    )
    async def status_list(list_number: Annotated[int, Path(ge=0, le=MAX_LISTS, description=_LIST_NUMBER)]) -> Response:
        """Which of this org's agent credentials are revoked: the credential's `credentialStatus` names this list
        and its bit (1: revoked). Signed with the org key, valid for 5 minutes; one signed list is served for up to
        LIST_REUSE_S, until a credential of it is revoked."""
        def span_and_count() -> tuple[int, int]:
            """How many lists the credentials span and, of a list among them, how many of its are revoked: a count
            is kept until the registry changes, and one kept for every number a client names (to MAX_LISTS) grew
            the node's memory without bound."""
            lists = registry.lists()
            return lists, registry.revoked_count(list_number) if list_number < lists else 0

        lists, revocations = await read(span_and_count)
        if list_number >= lists:
            return error_response(404, "not_found", f"path.list_number: this org's credentials span lists 0 to "
                                  f"{lists - 1}")

        async def positions() -> list[int]:
            return await read(lambda: registry.revoked_positions(list_number))

        return status_list_response(await signed.token(list_url(lists_at, list_number), revocations, positions))

    @router.get(
        VOUCH_STATUS_PATH + "/{did}/{list_number}",
        response_class=Response,
        responses={200: {"content": {"application/vc+jwt": {}},
                         "description": "A BitstringStatusListCredential (W3C Bitstring Status List v1.0), vc+jwt"},
                   **read_responses(404, 422, 503)},
    )
    async def vouch_status_list(
        did: Annotated[str, Path(description="A did:key of this org: its current key or one it rotated away from")],
        list_number: Annotated[int, Path(ge=0, le=MAX_VOUCH_LISTS, description=_LIST_NUMBER)],
    ) -> Response:
        """Which vouches of the key `did`, this org's or one it rotated away from, are revoked: a vouch's credential
        (`/v1/records/{id}/vc`) names this list and its bit, the vouch record's seq (1: revoked). Signed with the org
        key, valid for 5 minutes; one signed list is served for up to LIST_REUSE_S, until a revoke is signed."""
        if checked_did(did, "path.did") not in (replica.did, *replica.succession.earlier(replica.did)):
            return error_response(404, "not_found", "path.did: not a key of this org")
        head = replica.store.head(did)
        if list_number >= (lists := 1 if head is None else head.seq // LIST_ENTRIES + 1):
            return error_response(404, "not_found", f"path.list_number: the records of this key span lists 0 to "
                                  f"{lists - 1}")
        first, revoked = list_number * LIST_ENTRIES, await vouches.revoked(did, replica.succession.later(did))

        async def positions() -> list[int]:
            seqs = tuple(revoked)  # a copy: the loop adds to the set while the thread reads
            return await trio.to_thread.run_sync(lambda: [seq - first for seq in seqs
                                                          if first <= seq < first + LIST_ENTRIES])

        return status_list_response(await signed.token(vouch_list_url(lists_at, did, list_number), len(revoked),
                                                       positions))

    def status_list_response(token: str) -> Response:
        return Response(token, media_type="application/vc+jwt", headers={"Cache-Control": f"max-age={LIST_REUSE_S}"})

    return router
