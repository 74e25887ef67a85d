"""Who is calling: an agent's credential (the `vc+jwt` that `vouchnet agent new` mints, node/credentials.py)
checked against the keys of the orgs this service accepts, fetched from their `/.well-known/jwks.json` and cached.

The keys of an issuer whose JWKS cannot be fetched again are kept for `jwks_max_stale` seconds (a day by
default) after its last good answer, then its credentials are refused until it answers (fail closed: a key the org
withdrew must not verify for ever because its JWKS went offline).

Every adapter takes the caller's identity from here and nowhere else. Only the configured issuers' keys count: a
credential signed by any other key (say a fresh did:key an attacker made) names no one, because anyone can mint
a credential claiming any agent did.

A credential with a revocation entry (`credentialStatus`, W3C Bitstring Status List v1.0) is refused once its
issuer has revoked it: the list it names is fetched, checked to be signed by a key the credential's issuer serves
(its current one, if the org rotated its key since, DESIGN §2; never another issuer's), and cached for
`status_ttl` seconds at most (less if the list says so). If the list cannot be fetched, the last copy serves until
the list itself expires (a list without an exp counts for nothing); without one the credential is refused
(revocation fails closed). While that copy is valid, a list older than it is refused: one that clears a bit it sets
(a revocation is not reversible), or of the same bits issued (iat) before it. An older list served again cannot
undo a revocation, and a newer one counts at once even if the issuer's clock went back.
A status list is fetched only from the origin (scheme, host, port) of the issuer URL that serves the credential's
key, where a vouchnet node serves its lists too; any other URL is refused without a request (the issuer signs it, and
the fetch comes from inside the service's network). A refusal for a fetch that failed tells the caller only that
(UnverifiedAgent.public); how it failed is in the message, for the service's log.
Credentials minted before vouchnet published status lists carry no entry and are checked as before.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import numpy as np

from vouching import InvalidDid, did_key, public_key_from_did

from ..credential_status import (
    LIST_CREDENTIAL_TYPE,
    PURPOSE,
    STATUS_TTL_S,
    StatusEntry,
    StatusListError,
    bit,
    decode_list,
    parse_entry,
)
from ..credentials import VC_TYP, did_url
from ..jwt import LEEWAY_S, MAX_TOKEN, JwtError, b64url_decode, decode_jwt
from ._blocking import warn_if_blocking
from ._bounded import bounded_transport, get_capped
from ._fork import in_forked_children
from ._http import normal_url, without_passwords

JWKS_PATH = "/.well-known/jwks.json"
JWKS_TTL_S = 300.0
JWKS_MAX_STALE_S = 86_400.0  # a day: the longest keys serve after their issuer's last good JWKS answer
REFRESH_BACKOFF_S = 10.0  # an unknown kid refetches the keys at most this often (rotation, not a DoS lever)
VERIFIED_CACHE = 10_000
STATUS_LISTS_CACHE = 1_000  # status lists kept (an org's 131,072 credentials share one), then the oldest goes
# ... and bytes of their bits kept: a list may inflate to 16 MiB (MAX_ENCODED_BITS) from a 22 KB token, so an issuer
# naming a list at a new URL in each credential it mints would otherwise hold 1,000 of them, 16 GiB. 1,000 of
# vouchnet's lists (LIST_ENTRIES bits) take 16 MiB; the newest list is kept whatever its size.
STATUS_LISTS_BYTES = 64 * 1024 * 1024
# A list's 16 KiB of bits stay over 16 KiB when GZIP finds little to squeeze (some 11,000 scattered revocations),
# and base64url makes that 22 KiB: a status list token may be longer than a credential. At its longest (half the
# 131,072 entries revoked at random: nothing to squeeze) the token is 30.5 KB; this bounds its body too.
MAX_LIST_TOKEN = 64 * 1024
JWKS_FETCHES = 8  # issuers' JWKS fetched at once (threads): past it, each hung issuer in a batch costs a timeout more
MAX_JWKS = 1024 * 1024  # bytes of a JWKS body (an org's few keys take under 1 KiB)
CREDENTIAL_TYPE = "VouchnetAgentCredential"
_LOGGED = "(the service's log says why)"  # what a caller is told of a fetch that failed


class UnverifiedAgent(Exception):
    """The caller's credential is missing or does not verify; the message says which part and rule. `public` is
    what the caller may be told: the message, but for a fetch this service made (an issuer's JWKS, a status list),
    whose outcome (a status code, a timeout, a refused connection) is for the service's log only: told to anyone
    presenting a token, it maps the service's network."""

    def __init__(self, reason: str, *, public: str | None = None) -> None:
        super().__init__(reason)
        self.public = reason if public is None else public


@dataclass(frozen=True)
class AgentIdentity:
    """A verified caller: the agent's did, the org that issued its credential, its name, and when it expires (s)."""

    did: str
    org: str
    name: str | None
    expires: int


@dataclass(frozen=True)
class _Key:
    """A key of the accepted issuers: its Ed25519 public key, and the JWKS URLs that serve it (normally one)."""

    public: bytes
    issuers: frozenset[str]


@dataclass(frozen=True)
class _Checked:
    """A credential whose signature and claims verified; `status` is its revocation entry, if it has one."""

    identity: AgentIdentity
    kid: str
    status: StatusEntry | None


@dataclass(frozen=True)
class _StatusList:
    """A status list as fetched and verified: its bits, and until when (monotonic) each use of them holds."""

    bits: bytes
    fresh_until: float  # refetch after this
    valid_until: float  # the list's own expiry: never used after this
    issued: int  # its iat (0 if it has none): a list older than the copy held does not replace it (_older)


class CredentialVerifier:
    """Verifies agent credentials issued by `issuers`: node URLs (their JWKS is at `/.well-known/jwks.json`) or
    JWKS URLs. Safe from any thread; `averify`, for asyncio or trio code, never blocks the loop on the network."""

    def __init__(self, issuers: Iterable[str], *, jwks_ttl: float = JWKS_TTL_S, leeway: int = LEEWAY_S,
                 timeout: float = 2.0, status_ttl: float = STATUS_TTL_S,
                 jwks_max_stale: float = JWKS_MAX_STALE_S) -> None:
        """`jwks_ttl`: how often (seconds) the issuers' keys are fetched again. `jwks_max_stale`: how long (seconds)
        after an issuer's last good answer its keys still verify while its JWKS cannot be fetched; past it its
        credentials are refused, naming why, until it answers again. `status_ttl`: the longest a fetched status
        list is used before it is fetched again, so a revocation takes effect here within that many seconds.
        `timeout`: the most one fetch of a JWKS or a status list takes as a whole (seconds); a body over MAX_JWKS
        or MAX_LIST_TOKEN bytes is refused, as a failed fetch. A status list is fetched only from the origin of an
        issuer URL serving the credential's key: give each org by its node's [api] public_url."""
        if isinstance(issuers, str):  # its characters would be the issuers, each a host name
            raise ValueError(f"issuers: a list of org node or JWKS URLs, not one string: [{issuers!r}]")
        self.jwks_urls = tuple(_jwks_url(i) for i in issuers)
        if not self.jwks_urls:
            raise ValueError("issuers: give at least one org node or JWKS URL whose agents are accepted")
        self.jwks_ttl, self.leeway, self.timeout, self.status_ttl = jwks_ttl, leeway, timeout, status_ttl
        self.jwks_max_stale = jwks_max_stale
        self._served: dict[str, dict[str, bytes]] = {}  # JWKS URL -> kid -> public key, as last fetched
        self._answered: dict[str, float] = {}  # JWKS URL -> when (monotonic) it last answered with a JWK set
        self._jwks_failures: dict[str, str] = {}  # JWKS URL -> why its last fetch failed, while it fails
        self._keys: dict[str, _Key] = {}  # kid -> key, from _served
        self._fetched = float("-inf")
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()  # one fetch of the keys at a time; the others then find them fresh
        # A status list's key -> the lock of its fetch and how many threads want it (one fetch of a list at a time,
        # lists of different issuers at once: a hung partner's list held the org's own behind it); kept while wanted
        self._status_fetches: dict[tuple[str, str], tuple[threading.Lock, int]] = {}
        self._verified: dict[str, _Checked] = {}  # oldest first (see _bound)
        # By (the credential's kid, url): which lists count depends on the issuer that serves the credential's key.
        self._status_lists: dict[tuple[str, str], _StatusList] = {}
        # -> (monotonic time, why, what the caller is told): the backoff, and the refusal while there is no list
        self._status_failures: dict[tuple[str, str], tuple[float, str, str]] = {}
        in_forked_children(self._forked)

    def _forked(self) -> None:
        """In a child forked from this process (node.client._fork): its locks afresh, as one a fetching thread held
        as it forked would stay held; what was fetched is kept."""
        self._lock, self._refreshing = threading.Lock(), threading.Lock()
        self._status_fetches = {}

    def verify(self, token: str | None) -> AgentIdentity:
        """The identity `token` proves; raises UnverifiedAgent. Fetches keys or a status list when needed, blocking
        (from a running event loop, a warning says so once: `averify` does not)."""
        warn_if_blocking("CredentialVerifier.verify", "CredentialVerifier.averify()")
        kid = _kid(token)
        if self._needs_keys(kid):
            self._refresh(kid)
        checked = self._remembered(token, kid) or self._check(token, kid)  # type: ignore[arg-type]
        if checked.status is not None and self._needs_status(checked):
            self._refresh_status(checked)
        return self._unless_revoked(checked)

    async def averify(self, token: str | None) -> AgentIdentity:
        """`verify` for async code (asyncio or trio): fetching the issuers' keys or status lists, when needed,
        happens in a worker thread."""
        kid = _kid(token)
        if self._needs_keys(kid):
            await anyio.to_thread.run_sync(self._refresh, kid)
        checked = self._remembered(token, kid) or self._check(token, kid)  # type: ignore[arg-type]
        if checked.status is not None and self._needs_status(checked):
            await anyio.to_thread.run_sync(self._refresh_status, checked)
        return self._unless_revoked(checked)

    def _remembered(self, token: str, kid: str) -> _Checked | None:
        """The credential as it verified before, while it has not expired and its issuer still serves its key (an
        org drops a key it found compromised: what it signed must stop verifying once the keys are fetched again)."""
        checked = self._verified.get(token)
        if checked is None or self._key(kid) is None or checked.identity.expires + self.leeway <= time.time():
            return None
        return checked

    def _key(self, kid: str) -> _Key | None:
        """The key `kid` names, if an issuer serves it; raises UnverifiedAgent if every issuer serving it has gone
        unfetched for over jwks_max_stale seconds."""
        key = self._keys.get(kid)
        if key is None or not self._stale(key):
            return key
        why = "; ".join(f"{url}: {self._jwks_failures.get(url, 'no answer')}" for url in sorted(key.issuers))
        refusal = (f"header.kid: the keys of its issuer could not be fetched for over {self.jwks_max_stale:g} s "
                   f"(jwks_max_stale); failing closed")
        raise UnverifiedAgent(without_passwords(f"{refusal} ({why})"), public=f"{refusal} {_LOGGED}")

    def _stale(self, key: _Key) -> bool:
        now = time.monotonic()
        return all(now - self._answered.get(url, float("-inf")) > self.jwks_max_stale for url in key.issuers)

    def _needs_keys(self, kid: str) -> bool:
        age = time.monotonic() - self._fetched
        key = self._keys.get(kid)
        return age > self.jwks_ttl or ((key is None or self._stale(key)) and age > REFRESH_BACKOFF_S)

    def _refresh(self, kid: str) -> None:
        """Fetch every issuer's JWK set; the keys of an issuer that does not answer are kept until it does, and
        serve for jwks_max_stale seconds after its last answer."""
        with self._refreshing:
            if self._needs_keys(kid):
                self._fetch()

    def _fetch(self) -> None:
        """Fetch every issuer's JWK set, JWKS_FETCHES at once: a partner's node that hangs costs the fetch (and the
        check of the org's own agents, waiting on it) one `timeout`, not one per issuer in turn."""
        with (httpx.Client(timeout=self.timeout, transport=bounded_transport()) as http,
              ThreadPoolExecutor(min(len(self.jwks_urls), JWKS_FETCHES), "vouchnet-jwks") as fetching):
            answers = dict(zip(self.jwks_urls, fetching.map(functools.partial(self._jwk_set, http), self.jwks_urls)))
        served = {url: keys for url, keys in answers.items() if not isinstance(keys, str)}
        failures = {url: why for url, why in answers.items() if isinstance(why, str)}
        with self._lock:
            now = time.monotonic()
            self._answered.update((url, now) for url in served)
            self._jwks_failures = failures
            served = {url: served.get(url, self._served.get(url, {})) for url in self.jwks_urls}  # kept if no answer
            keys: dict[str, _Key] = {}
            for url, found in served.items():
                for kid, public in found.items():
                    issuers = keys[kid].issuers if kid in keys else frozenset()
                    keys[kid] = _Key(public, issuers | {url})  # one kid, one key: _jwk_keys binds them
            self._served, self._keys, self._fetched = served, keys, time.monotonic()
        if failures and not keys:
            raise self._unknown_kid()

    def _jwk_set(self, http: httpx.Client, url: str) -> dict[str, bytes] | str:
        """kid -> public key of the JWK set at `url`, or why it could not be had."""
        try:
            return _jwk_keys(json.loads(get_capped(http, url, MAX_JWKS, self.timeout)))
        except (httpx.HTTPError, ValueError, RecursionError, UnverifiedAgent) as error:
            return str(error) or type(error).__name__

    def _unknown_kid(self, kid: str = "") -> UnverifiedAgent:
        """The refusal of a kid no accepted issuer serves, as last fetched, naming the org whose key it names (so
        that the service's operator can tell a partner's agents to accept from a stranger's). While some issuers'
        JWKS could not be fetched (the next try waits REFRESH_BACKOFF_S), it may be theirs: the refusal says so, and
        why the fetch failed (for the service's log), rather than blaming the credential's issuer."""
        unknown = "header.kid: not a key of an org this service accepts agents from"
        failures = self._jwks_failures
        if not failures:
            return UnverifiedAgent(unknown + _naming_org(kid))
        why = "; ".join(f"{url}: {failure}" for url, failure in failures.items())
        refusal = ("cannot fetch the keys of any trusted issuer" if not self._keys else
                   f"{unknown}, as far as their keys could be fetched: {len(failures)} of {len(self.jwks_urls)} "
                   "could not be")
        return UnverifiedAgent(without_passwords(f"{refusal} ({why})"), public=f"{refusal} {_LOGGED}")

    def _check(self, token: str, kid: str) -> AgentIdentity:
        key = self._key(kid)
        if key is None:
            raise self._unknown_kid(kid)
        try:
            _, claims = decode_jwt(token, key.public, typ=VC_TYP, leeway=self.leeway)
        except JwtError as error:
            raise UnverifiedAgent(str(error)) from None
        identity = _identity(claims, issuer=kid.partition("#")[0])
        try:
            checked = _Checked(identity, kid, parse_entry(claims.get("credentialStatus")))
        except StatusListError as error:
            raise UnverifiedAgent(str(error)) from None
        with self._lock:
            self._verified[token] = checked
            _bound(self._verified, VERIFIED_CACHE)
        return checked

    # --- revocation (W3C Bitstring Status List v1.0 §3.2, validate) --------------------------------------------

    def _needs_status(self, checked: _Checked) -> bool:
        known = self._status_lists.get(_list_key(checked))
        if known is not None and time.monotonic() < known.fresh_until:
            return False
        failed = self._status_failures.get(_list_key(checked))
        return failed is None or time.monotonic() - failed[0] > REFRESH_BACKOFF_S

    def _refresh_status(self, checked: _Checked) -> None:
        """Fetch and verify the status list `checked` names; a failure is remembered, and the last copy kept."""
        assert checked.status is not None
        url, key = checked.status.list_url, _list_key(checked)
        with self._one_fetch_of(key):
            if not self._needs_status(checked):
                return
            try:
                self._at_issuer_origin(checked)
                with httpx.Client(timeout=self.timeout, transport=bounded_transport()) as http:
                    body = get_capped(http, url, MAX_LIST_TOKEN, self.timeout)
                fetched = self._status_list(body.decode(errors="replace"), checked)
                kept = self._status_lists.get(key)
                if kept is not None and time.monotonic() < kept.valid_until and _older(fetched, kept):
                    raise UnverifiedAgent(f"credentialStatus: {url}: status list: older than the copy held (it "
                                          f"clears a revocation, or was issued before it), served again")
            # InvalidURL and ValueError (IDNAError, urlsplit's): a URL in the credential, or the list's id, that its
            # issuer signed but that cannot be fetched or parsed; the credential then fails closed, as unchecked.
            except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnverifiedAgent) as error:
                with self._lock:
                    self._status_failures.pop(key, None)
                    self._status_failures[key] = (time.monotonic(), str(error), _public(error))
                    _bound(self._status_failures, STATUS_LISTS_CACHE)
                return
            with self._lock:
                self._status_lists.pop(key, None)
                self._status_lists[key] = fetched  # newest last
                _bound(self._status_lists, STATUS_LISTS_CACHE)
                _bound_bytes(self._status_lists, STATUS_LISTS_BYTES)
                self._status_failures.pop(key, None)

    @contextmanager
    def _one_fetch_of(self, key: tuple[str, str]) -> Iterator[None]:
        """Held while the status list `key` is fetched: by one thread at a time (the others then find it fresh), and
        by none while another list is: each list's lock is kept only while a thread wants it."""
        with self._lock:
            lock, wanting = self._status_fetches.get(key, (threading.Lock(), 0))
            self._status_fetches[key] = (lock, wanting + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, wanting = self._status_fetches[key]
                if wanting == 1:
                    del self._status_fetches[key]
                else:
                    self._status_fetches[key] = (lock, wanting - 1)

    def _at_issuer_origin(self, checked: _Checked) -> None:
        """Refuse, before any request, a status list URL outside the origins (scheme, host and port: RFC 6454 §4)
        of the issuer URLs that serve the credential's key. The issuer signs the URL, and the verifier fetches it
        from inside the service's network: anywhere else (an internal admin page, a cloud metadata address) it
        would be a blind GET of the issuer's choosing. A vouchnet node serves its JWKS and its status lists under
        one [api] public_url (node/credentials_api.py), which its credentials name."""
        assert checked.status is not None
        key = self._keys.get(checked.kid)
        allowed = {_origin(url) for url in key.issuers} if key is not None else set()
        try:
            named = _origin(checked.status.list_url)
        except httpx.InvalidURL:
            named = None
        if named not in allowed:
            rule = ("credentialStatus.statusListCredential: not at the origin (scheme, host, port) of the issuer URL "
                    "this service accepts the credential's key from, and a status list is fetched from nowhere else; "
                    "if it is that issuer's list, configure the issuer by the URL its node's [api] public_url names "
                    "(its credentials name their status lists there)")
            issuers = ", ".join(sorted(key.issuers)) if key is not None else "none"
            raise UnverifiedAgent(without_passwords(f"{rule}: {checked.status.list_url} (issuers: {issuers})"),
                                  public=rule)

    def _status_list(self, token: str, checked: _Checked) -> _StatusList:
        """A status list credential, verified: signed with a key of the credential's issuer and issued (iss) by
        that key's did, the list the credential names (its id's last path segment), typed as a revocation list,
        with an exp, not passed; raises UnverifiedAgent."""
        try:
            signer = functools.partial(self._list_signer, credential_kid=checked.kid)
            header, claims = decode_jwt(token, signer, typ=VC_TYP, leeway=self.leeway, max_length=MAX_LIST_TOKEN)
            types, subject = claims.get("type"), claims.get("credentialSubject")
            if not isinstance(types, list) or LIST_CREDENTIAL_TYPE not in types:
                raise StatusListError(f"status list: payload.type must include {LIST_CREDENTIAL_TYPE}")
            if claims.get("iss") != header["kid"].partition("#")[0]:
                raise StatusListError("status list: payload.iss: must be the did of the key that signed it")
            if _list_name(claims.get("id")) != _list_name(checked.status.list_url):  # not another list, replayed
                raise StatusListError("status list: payload.id: must be the list the credential names")
            if not isinstance(subject, dict):
                raise StatusListError("status list: payload.credentialSubject: must be an object")
            if subject.get("statusPurpose") != PURPOSE:
                raise StatusListError(f"status list: credentialSubject.statusPurpose must be {PURPOSE}")
            if (expires := claims.get("exp")) is None:  # its copy would serve for ever when no new one can be had
                raise StatusListError("status list: payload.exp: a status list must expire")
            bits = decode_list(subject.get("encodedList"))
        except (JwtError, StatusListError) as error:
            raise UnverifiedAgent(f"credentialStatus: {checked.status.list_url}: {error}") from None
        now, wall = time.monotonic(), time.time()
        ttl = subject.get("ttl")
        # ttl (ms) capped before it is divided into a float: 10^400 raised OverflowError
        fresh_for = min(self.status_ttl * 1000, ttl) / 1000 if type(ttl) is int and ttl > 0 else self.status_ttl
        valid_for = expires + self.leeway - wall  # a NumericDate (decode_jwt)
        issued = claims.get("iat")
        return _StatusList(bits, now + min(fresh_for, valid_for), now + valid_for,
                           issued if type(issued) is int else 0)

    def _list_signer(self, header: Mapping[str, Any], credential_kid: str) -> bytes:
        """The key that verifies a status list, by its header.kid: any key the JWKS URL(s) serving the credential's
        key serve too, so an org that rotated signs with its new key (DESIGN §2), but another accepted org cannot
        revoke or reinstate this org's credentials. Raises JwtError (for decode_jwt)."""
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise JwtError("status list: header.kid: required, the issuing org's key id")
        if kid not in self._keys:
            self._refresh(kid)  # the issuer rotated since we fetched its keys
        signer, credential_key = self._keys.get(kid), self._keys.get(credential_kid)
        if credential_key is None:  # the issuer's JWKS dropped the key since the credential verified
            raise JwtError("status list: the credential's key is no longer served by any issuer this service accepts")
        if signer is None:
            raise JwtError("status list: header.kid: not a key of an org this service accepts agents from")
        if not credential_key.issuers <= signer.issuers:
            raise JwtError("status list: header.kid: a key of another issuer than the credential's (its JWKS does "
                           "not serve it)")
        return signer.public

    def _unless_revoked(self, checked: _Checked) -> AgentIdentity:
        if checked.status is None:
            return checked.identity
        status = self._status_lists.get(_list_key(checked))
        if status is None or time.monotonic() >= status.valid_until:
            failed = self._status_failures.get(_list_key(checked))
            why, public = failed[1:] if failed is not None else ("no copy", "no copy")
            refusal = "credentialStatus: cannot check revocation, the issuer's status list is unavailable"
            raise UnverifiedAgent(without_passwords(f"{refusal} ({why})"), public=f"{refusal} ({public})")
        try:
            revoked = bit(status.bits, checked.status.position)
        except StatusListError as error:
            raise UnverifiedAgent(f"credentialStatus: {error}") from None
        if revoked:
            raise UnverifiedAgent("credentialStatus: revoked by its issuer")
        return checked.identity


def _bound(cache: dict, size: int) -> None:
    """Drop the entries put in longest ago (dicts keep insertion order) until at most `size` remain: every cache
    of the verifier is bounded this way."""
    while len(cache) > size:
        del cache[next(iter(cache))]


def _bound_bytes(lists: dict[tuple[str, str], _StatusList], size: int) -> None:
    """Drop the lists put in longest ago until their bits take at most `size` bytes, or one list is left."""
    held = sum(len(status.bits) for status in lists.values())
    while held > size and len(lists) > 1:
        held -= len(lists.pop(next(iter(lists))).bits)


def _older(fetched: _StatusList, kept: _StatusList) -> bool:
    """Whether `fetched` was issued before `kept`. A revocation is not reversible (Bitstring Status List v1.0 §2.1,
    statusPurpose), so the bits tell first: a list clearing a bit `kept` sets is older, one setting a bit it lacks
    newer, whatever their iat (in whole seconds, and from the issuer's clock, which may have gone back); lists of
    the same bits go by their iat."""
    size = max(len(kept.bits), len(fetched.bits))
    old, new = (np.frombuffer(bits.ljust(size, b"\0"), dtype=np.uint8) for bits in (kept.bits, fetched.bits))
    if np.any(old & ~new):  # numpy: a list may be 16 MiB, which Python's integers took a third of a second over
        return True
    return bool(np.array_equal(old, new)) and fetched.issued < kept.issued


def _list_name(url: object) -> str | None:
    """The last two segments of a status list URL's path: which lists and which one, `status/{n}` for vouchnet's
    agent credentials (`/v1/credentials/status/{n}`), `{did}/{n}` for the vouches of its key `did`
    (`/v1/credentials/vouch-status/{did}/{n}`), so that a list of one is not taken for the other's of the same number.
    Only they are compared with the list's id: the host in the credential may be an older or another name of the
    node's (a changed [api] public_url, a proxy), given as an issuer too (_at_issuer_origin)."""
    return "/".join(urllib.parse.urlsplit(url).path.split("/")[-2:]) if isinstance(url, str) else None


def _list_key(checked: _Checked) -> tuple[str, str]:
    assert checked.status is not None
    return checked.kid, checked.status.list_url


def _public(error: Exception) -> str:
    """What a caller is told of a status list that failed: a rule the credential or the list broke, never how
    fetching it went (log it: `why` in _status_failures)."""
    if isinstance(error, UnverifiedAgent) and error.public != str(error):
        return error.public
    if isinstance(error, (httpx.HTTPError, httpx.InvalidURL, ValueError)) and not isinstance(error, StatusListError):
        return "it could not be fetched; the service's log says why"
    return str(error)


def _origin(url: str) -> tuple[str, str, int | None]:
    """The origin of `url` as httpx fetches it (RFC 6454 §4: scheme, host, port; the scheme's default port made
    explicit); raises httpx.InvalidURL."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)


def _jwks_url(issuer: str) -> str:
    url = normal_url(issuer)
    return url if url.endswith(".json") else url + JWKS_PATH


def _kid(token: object) -> str:
    """The key id in the header of `token`, once it has the form of a credential; raises UnverifiedAgent naming what
    is wrong with it (a service's own mistakes included: bytes, or the newline of the file it was read from)."""
    if isinstance(token, bytes | bytearray):
        raise UnverifiedAgent("credential: must be text (str), not bytes")
    if not isinstance(token, str) or not token:
        raise UnverifiedAgent("credential: the caller presented no agent credential")
    if token[-1].isspace():  # refused still, not stripped: one credential, one token (node.jwt decodes strictly)
        raise UnverifiedAgent("credential: ends in whitespace (the newline of its file?): strip it")
    if len(token) > MAX_TOKEN:
        raise UnverifiedAgent(f"credential: longer than {MAX_TOKEN} characters")
    try:
        header = json.loads(b64url_decode(token.partition(".")[0], "header"))
    except (JwtError, ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise UnverifiedAgent("header: not a JWT") from None
    kid = header.get("kid") if isinstance(header, dict) else None
    if not isinstance(kid, str):
        raise UnverifiedAgent("header.kid: required, the issuing org's key id")
    return kid


def _naming_org(kid: str) -> str:
    """`kid`'s org as a refusal names it (` (a key of did:key:…)`), if `kid` is an org key's did:key URL, as a
    vouchnet credential's is; else nothing (a caller's text is not repeated)."""
    org = kid.partition("#")[0]
    try:
        canonical = did_url(did_key(public_key_from_did(org))) == kid
    except InvalidDid:
        return ""
    return f" (a key of {org})" if canonical else ""


def _jwk_keys(document: Any) -> dict[str, bytes]:
    """kid -> Ed25519 public key of each OKP/Ed25519 key in a JWK set (RFC 7517, RFC 8037) whose kid is its
    did:key URL, as vouchnet's are: a JWKS cannot claim another org's kid for a key of its own."""
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
            if len(public) == 32 and jwk.get("kid") == did_url(did_key(public)):
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
