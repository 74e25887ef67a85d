"""Portable credentials (DESIGN §2): the org's keys as a JWK set, W3C VC 2.0 credentials secured as `vc+jwt`
(W3C VC-JOSE-COSE) for agents and for this org's vouches, and signed score statements.

Anyone verifies them with an ordinary JWT library (alg EdDSA) against `/.well-known/jwks.json`, picking the key
by `kid`, the org's did URL `did:key:z…#z…`; or straight from the issuer's did:key, without the network.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from vouching import InvalidDid, Record, VouchBody, did_key, public_key_from_did

from .credential_status import (
    LIST_CREDENTIAL_TYPE,
    LIST_TYPE,
    PURPOSE,
    STATUS_TTL_S,
    encode_list,
    vouch_status_entry,
)
from .jwt import JwtError, b64url, b64url_decode, encode_jwt

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
VC_TYP = "vc+jwt"
SCORE_TTL_S = 300
AGENT_CREDENTIAL_DAYS = 365
# A vouch's credential is valid this long from when it is fetched, and never past the vouch's own expiry: a verifier
# that reads no credentialStatus (an ordinary JWT library) accepts one of a revoked vouch this long at most. Shorter
# than AGENT_CREDENTIAL_DAYS, which an operator re-mints by hand: a holder fetches a vouch's credential again from
# GET /v1/records/{id}/vc, which needs no token, whenever it likes.
VOUCH_CREDENTIAL_DAYS = 30


def did_url(did: str) -> str:
    """The did:key method's key id: the did, '#', and the did's multibase key again."""
    return f"{did}#{did.removeprefix('did:key:')}"


def public_key_from_kid(header: Mapping[str, Any]) -> bytes:
    """The Ed25519 key a token's `kid` (a did:key URL) names; raises JwtError (for decode_jwt)."""
    kid = header.get("kid")
    did, _, fragment = kid.partition("#") if isinstance(kid, str) else ("", "", "")
    try:
        key = public_key_from_did(did)
    except InvalidDid as error:
        raise JwtError(f"header.kid: not a did:key URL ({error})") from None
    if fragment != did.removeprefix("did:key:"):
        raise JwtError("header.kid: the fragment must repeat the did's key")
    return key


def org_jwk(verify_key: VerifyKey) -> dict[str, str]:
    """RFC 8037 OKP JWK of the org's Ed25519 key."""
    did = did_key(bytes(verify_key))
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(verify_key)), "kid": did_url(did), "alg": "EdDSA",
            "use": "sig"}


def jwks(verify_keys: Sequence[VerifyKey]) -> dict[str, list[dict[str, str]]]:
    """The JWK set served at `/.well-known/jwks.json` (RFC 7517 §5): every key of the org, the current one first,
    so that credentials it signed before a rotation (DESIGN §2) still verify until they expire."""
    keys = [org_jwk(key) for key in verify_keys]
    if not keys or len({jwk["kid"] for jwk in keys}) < len(keys):
        raise ValueError("verify_keys: the org's keys, at least one, each once (a kid names one key in a set)")
    return {"keys": keys}


def _datetime(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sign(key: SigningKey, claims: dict[str, Any], typ: str) -> str:
    return encode_jwt(claims, key, kid=did_url(did_key(bytes(key.verify_key))), typ=typ)


def _credential(key: SigningKey, *, kind: str, credential_id: str, subject: dict[str, Any], valid_from: int,
                valid_until: int | None, extra: Mapping[str, Any] = {}) -> str:
    """A VC 2.0 credential as a vc+jwt: the credential is the claims set, with the JWT claims that mirror it."""
    org = did_key(bytes(key.verify_key))
    claims: dict[str, Any] = {
        "@context": [VC_CONTEXT],
        "type": ["VerifiableCredential", kind],
        "id": credential_id,
        "issuer": org,
        "validFrom": _datetime(valid_from),
        "credentialSubject": subject,
        **extra,
        "iss": org,
        "sub": subject["id"],
        "jti": credential_id,
        "iat": valid_from,
        "nbf": valid_from,
    }
    if valid_until is not None:
        claims["validUntil"] = _datetime(valid_until)
        claims["exp"] = valid_until
    return _sign(key, claims, VC_TYP)


def agent_credential(key: SigningKey, agent: str, *, name: str | None = None, now: int | None = None,
                     days: int = AGENT_CREDENTIAL_DAYS, status: Mapping[str, str] | None = None) -> str:
    """A credential binding `agent`'s did to this org (its operator), valid `days` from `now` (s); `status` is
    its revocation entry (node.credential_status.status_entry)."""
    public_key_from_did(agent)
    issued = int(time.time()) if now is None else now
    subject: dict[str, Any] = {"id": agent, "operator": did_key(bytes(key.verify_key))}
    if name is not None:
        subject["name"] = name
    return _credential(key, kind="VouchnetAgentCredential", credential_id=f"urn:uuid:{uuid.uuid4()}",
                       subject=subject, valid_from=issued, valid_until=issued + days * 86400,
                       extra={} if status is None else {"credentialStatus": dict(status)})


def status_list_credential(key: SigningKey, url: str, revoked: Iterable[int], *, now: int | None = None) -> str:
    """This org's status list at `url` (W3C Bitstring Status List v1.0 §2.2), the bits of the `revoked`
    positions set; valid for STATUS_TTL_S from `now` (s)."""
    issued = int(time.time()) if now is None else now
    subject = {"id": f"{url}#list", "type": LIST_TYPE, "statusPurpose": PURPOSE, "encodedList": encode_list(revoked),
               "ttl": STATUS_TTL_S * 1000}
    return _credential(key, kind=LIST_CREDENTIAL_TYPE, credential_id=url, subject=subject, valid_from=issued,
                       valid_until=issued + STATUS_TTL_S)


def vouch_credential(key: SigningKey, record: Record, public_url: str, *, now: int | None = None,
                     days: int = VOUCH_CREDENTIAL_DAYS, earlier_keys: Collection[str] = ()) -> str:
    """This org's vouch record as a credential, signed with its current key `key` whichever of its keys signed the
    record (`earlier_keys`: the dids it rotated away from, DESIGN §2), valid `days` from `now` (s) or until the vouch
    expires, whichever is first, and revocable: its `credentialStatus` is its bit in the status lists of its key's
    vouches served at `public_url` (node.credential_status; NoPublicUrl if it names port 0). The signed record
    itself rides along as evidence."""
    body = record.body
    if (record.iss != did_key(bytes(key.verify_key)) and record.iss not in earlier_keys) or not isinstance(
            body, VouchBody):
        raise ValueError("record: only this org's own vouches can be exported as credentials")
    issued = int(time.time()) if now is None else now
    lapses = issued + days * 86400
    subject: dict[str, Any] = {"id": body.subject, "weight": body.weight, "basis": body.basis}
    if body.scope is not None:
        subject["scope"] = list(body.scope)
    record_urn = f"urn:vouchnet:record:{record.id.hex()}"
    extra = {"credentialStatus": vouch_status_entry(public_url, record.iss, record.seq),
             "evidence": [{"id": record_urn, "type": ["VouchnetRecord"], "cose": b64url(record.raw)}]}
    return _credential(key, kind="VouchnetVouch", credential_id=record_urn, subject=subject,
                       valid_from=record.ts // 1000,
                       valid_until=lapses if body.expires is None else min(lapses, body.expires // 1000), extra=extra)


def score_statement(key: SigningKey, *, agent: str, score: int, tier: str, now: int | None = None,
                    ttl: int = SCORE_TTL_S) -> str:
    """A short-lived JWT `{agent, score, tier, iat, exp, iss}`: this org's score of `agent` at `now` (s)."""
    issued = int(time.time()) if now is None else now
    claims = {"agent": agent, "score": score, "tier": tier, "iat": issued, "exp": issued + ttl,
              "iss": did_key(bytes(key.verify_key))}
    return _sign(key, claims, "JWT")


def record_from_credential_evidence(claims: Mapping[str, Any]) -> bytes:
    """The COSE record a vouch credential carries, for checking it with vouching.verify_record."""
    try:
        return b64url_decode(claims["evidence"][0]["cose"], "evidence.cose")
    except (KeyError, IndexError, TypeError):
        raise JwtError("evidence: a vouch credential carries its record as evidence[0].cose") from None
