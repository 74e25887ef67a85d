"""Who is calling: an agent's credential (the `vc+jwt` that `vouchnet agent new` mints, node/credentials.py)
checked against the keys of the orgs this service accepts, fetched from their `/.well-known/jwks.json` and cached.

Every adapter takes the caller's identity from here and nowhere else. Only the configured issuers' keys count: a
credential signed by any other key (say a fresh did:key an attacker made) names no one, because anyone can mint
a credential claiming any agent did.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from vouching import InvalidDid, public_key_from_did

from ..credentials import VC_TYP
from ..jwt import LEEWAY_S, MAX_TOKEN, JwtError, b64url_decode, decode_jwt
from ._http import normal_url

JWKS_PATH = "/.well-known/jwks.json"
JWKS_TTL_S = 300.0
REFRESH_BACKOFF_S = 10.0  # an unknown kid refetches the keys at most this often (rotation, not a DoS lever)
VERIFIED_CACHE = 10_000
CREDENTIAL_TYPE = "VouchnetAgentCredential"


class UnverifiedAgent(Exception):
    """The caller's credential is missing or does not verify; the message says which part and rule."""


@dataclass(frozen=True)
class AgentIdentity:
    """A verified caller: the agent's did, the org that issued its credential, its name, and when it expires (s)."""

    did: str
    org: str
    name: str | None
    expires: int


class CredentialVerifier:
    """Verifies agent credentials issued by `issuers`: node URLs (their JWKS is at `/.well-known/jwks.json`) or
    JWKS URLs. Safe from any thread; `averify` for asyncio code never blocks the loop on the network."""

    def __init__(self, issuers: Iterable[str], *, jwks_ttl: float = JWKS_TTL_S, leeway: int = LEEWAY_S,
                 timeout: float = 2.0) -> None:
        self.jwks_urls = tuple(_jwks_url(i) for i in issuers)
        if not self.jwks_urls:
            raise ValueError("issuers: give at least one org node or JWKS URL whose agents are accepted")
        self.jwks_ttl, self.leeway, self.timeout = jwks_ttl, leeway, timeout
        self._keys: dict[str, bytes] = {}
        self._fetched = float("-inf")
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()  # one fetch at a time; the others then find the keys fresh
        self._verified: OrderedDict[str, AgentIdentity] = OrderedDict()

    def verify(self, token: str | None) -> AgentIdentity:
        """The identity `token` proves; raises UnverifiedAgent."""
        if (known := self._remembered(token)) is not None:
            return known
        kid = _kid(token)
        if self._needs_keys(kid):
            self._refresh(kid)
        return self._check(token, kid)  # type: ignore[arg-type]

    async def averify(self, token: str | None) -> AgentIdentity:
        """`verify` for asyncio code: fetching the issuers' keys, when needed, happens in a worker thread."""
        if (known := self._remembered(token)) is not None:
            return known
        kid = _kid(token)
        if self._needs_keys(kid):
            await asyncio.to_thread(self._refresh, kid)
        return self._check(token, kid)  # type: ignore[arg-type]

    def _remembered(self, token: str | None) -> AgentIdentity | None:
        identity = self._verified.get(token) if isinstance(token, str) else None
        if identity is not None and identity.expires + self.leeway >= time.time():
            return identity
        return None

    def _needs_keys(self, kid: str) -> bool:
        age = time.monotonic() - self._fetched
        return age > self.jwks_ttl or (kid not in self._keys and age > REFRESH_BACKOFF_S)

    def _refresh(self, kid: str) -> None:
        """Fetch every issuer's JWK set; the keys of an issuer that does not answer are kept until it does."""
        with self._refreshing:
            if self._needs_keys(kid):
                self._fetch()

    def _fetch(self) -> None:
        keys: dict[str, bytes] = {}
        failures = []
        with httpx.Client(timeout=self.timeout) as http:
            for url in self.jwks_urls:
                try:
                    response = http.get(url)
                    response.raise_for_status()
                    keys.update(_jwk_keys(response.json()))
                except (httpx.HTTPError, ValueError, UnverifiedAgent) as error:
                    failures.append(f"{url}: {error}")
        with self._lock:
            if failures:
                keys = {**self._keys, **keys}
            self._keys, self._fetched = keys, time.monotonic()
        if failures and not keys:
            raise UnverifiedAgent("cannot fetch the keys of any trusted issuer (" + "; ".join(failures) + ")")

    def _check(self, token: str, kid: str) -> AgentIdentity:
        key = self._keys.get(kid)
        if key is None:
            raise UnverifiedAgent("header.kid: not a key of an org this service accepts agents from")
        try:
            _, claims = decode_jwt(token, key, typ=VC_TYP, leeway=self.leeway)
        except JwtError as error:
            raise UnverifiedAgent(str(error)) from None
        identity = _identity(claims, issuer=kid.partition("#")[0])
        with self._lock:
            self._verified[token] = identity
            if len(self._verified) > VERIFIED_CACHE:
                self._verified.popitem(last=False)
        return identity


def _jwks_url(issuer: str) -> str:
    url = normal_url(issuer)
    return url if url.endswith(".json") else url + JWKS_PATH


def _kid(token: object) -> str:
    if not isinstance(token, str) or not token:
        raise UnverifiedAgent("credential: the caller presented no agent credential")
    if len(token) > MAX_TOKEN:
        raise UnverifiedAgent(f"credential: longer than {MAX_TOKEN} characters")
    try:
        header = json.loads(b64url_decode(token.partition(".")[0], "header"))
    except (JwtError, ValueError):
        raise UnverifiedAgent("header: not a JWT") from None
    kid = header.get("kid") if isinstance(header, dict) else None
    if not isinstance(kid, str):
        raise UnverifiedAgent("header.kid: required, the issuing org's key id")
    return kid


def _jwk_keys(document: Any) -> dict[str, bytes]:
    """kid -> Ed25519 public key of each OKP/Ed25519 key in a JWK set (RFC 7517, RFC 8037)."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise UnverifiedAgent("jwks: not a JWK set")
    found = {}
    for jwk in keys:
        if isinstance(jwk, dict) and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            try:
                public = b64url_decode(jwk.get("x"), "jwks.x")
            except JwtError:
                continue
            if len(public) == 32 and isinstance(jwk.get("kid"), str):
                found[jwk["kid"]] = public
    return found


def _identity(claims: Mapping[str, Any], *, issuer: str) -> AgentIdentity:
    """The identity an agent credential's claims state, after checking they are one (node/credentials.py)."""
    if claims.get("iss") != issuer:
        raise UnverifiedAgent("payload.iss: must be the org whose key signed the credential")
    types = claims.get("type")
    if not isinstance(types, list) or CREDENTIAL_TYPE not in types:
        raise UnverifiedAgent(f"payload.type: must include {CREDENTIAL_TYPE}")
    subject = claims.get("credentialSubject")
    agent = claims.get("sub")
    if not isinstance(subject, dict) or subject.get("id") != agent:
        raise UnverifiedAgent("payload.credentialSubject.id: must be the sub, the agent's did")
    try:
        public_key_from_did(agent)
    except InvalidDid as error:
        raise UnverifiedAgent(f"payload.sub: not an Ed25519 did:key ({error})") from None
    if subject.get("operator", issuer) != issuer:
        raise UnverifiedAgent("payload.credentialSubject.operator: must be the issuing org")
    expires = claims.get("exp")
    if type(expires) is not int:
        raise UnverifiedAgent("payload.exp: an agent credential must expire")
    name = subject.get("name")
    return AgentIdentity(agent, issuer, name if isinstance(name, str) else None, expires)
