"""Revocation of credentials as W3C Bitstring Status Lists v1.0 (w3.org/TR/vc-bitstring-status-list): the format,
shared by the node that publishes its lists and the verifiers (node/client/identity.py) that read them.

Every agent credential this org mints gets a position (its index, from 0) in the org's status lists: list
`index // LIST_ENTRIES`, entry `index % LIST_ENTRIES`, one bit each, 1 when revoked. A list is served at
`{public_url}/v1/credentials/status/{list}` as a `BitstringStatusListCredential` secured as `vc+jwt` with the org
key, so a verifier checks it against the same JWKS as the credential itself.

A vouch's credential has its place in lists of its own, one numbering per key of the org, by the vouch record's
`seq` (unique and dense per issuing key, DESIGN §3), in lists of the same size: list `seq // LIST_ENTRIES` of the
vouches of `issuer` is at `{public_url}/v1/credentials/vouch-status/{issuer}/{list}`, its bit 1 once the vouch is
revoked.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import operator
import re
import urllib.parse
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

LIST_ENTRIES = 131_072  # bits per list: the spec's minimum of 16 KiB, so a list does not reveal how many exist
STATUS_PATH = "/v1/credentials/status"
VOUCH_STATUS_PATH = "/v1/credentials/vouch-status"
STATUS_TTL_S = 300  # how long a published list is valid; verifiers refetch after this at the latest
MAX_ENCODED_BITS = 16 * 1024 * 1024 * 8  # a list we decode inflates to at most 16 MiB (no gzip bombs)
ENTRY_TYPE = "BitstringStatusListEntry"
LIST_CREDENTIAL_TYPE = "BitstringStatusListCredential"
LIST_TYPE = "BitstringStatusList"
PURPOSE = "revocation"
_MULTIBASE_BASE64URL = re.compile(r"u[A-Za-z0-9_-]*")  # RFC 4648 §5 alphabet only, no padding


class StatusListError(ValueError):
    """A status entry or list that is not what the spec says; the message names the field and the rule."""


class NoPublicUrl(ValueError):
    """The API's URL names port 0, where no verifier can fetch a status list: no credential may carry it."""


def checked_public_url(public_url: str) -> str:
    """`public_url` if a credential may name it (its status entry); NoPublicUrl if its port is 0, as it is when
    `[api] bind` has port 0 and no `[api] public_url` is set (node.config.NodeConfig.api_public_url): the OS picks
    the port anew at each start, so no verifier could ever check the credential's revocation (DESIGN §2)."""
    if urllib.parse.urlsplit(public_url).port == 0:
        raise NoPublicUrl("[api] bind has port 0 and no [api] public_url is set: the OS picks the API's port anew at "
                          "each start, so a credential naming it (its status list's URL) could never be checked by "
                          "any verifier; set [api] public_url in config.toml to where other orgs reach this API")
    return public_url


def list_url(public_url: str, list_number: int) -> str:
    return f"{public_url.rstrip('/')}{STATUS_PATH}/{list_number}"


def vouch_list_url(public_url: str, issuer: str, list_number: int) -> str:
    return f"{public_url.rstrip('/')}{VOUCH_STATUS_PATH}/{issuer}/{list_number}"


def status_entry(public_url: str, index: int) -> dict[str, str]:
    """The `credentialStatus` of the agent credential at `index` (spec §2.1, BitstringStatusListEntry); NoPublicUrl
    if `public_url` names port 0."""
    return _entry(list_url(checked_public_url(public_url), index // LIST_ENTRIES), index % LIST_ENTRIES)


def vouch_status_entry(public_url: str, issuer: str, seq: int) -> dict[str, str]:
    """The `credentialStatus` of the credential of `issuer`'s vouch at `seq`; NoPublicUrl if `public_url` names port
    0."""
    return _entry(vouch_list_url(checked_public_url(public_url), issuer, seq // LIST_ENTRIES), seq % LIST_ENTRIES)


def _entry(url: str, position: int) -> dict[str, str]:
    return {"id": f"{url}#{position}", "type": ENTRY_TYPE, "statusPurpose": PURPOSE, "statusListIndex": str(position),
            "statusListCredential": url}


def encode_list(revoked: Iterable[int], entries: int = LIST_ENTRIES) -> str:
    """`encodedList` (spec §3.1 Bitstring Generation): the bits of `revoked` positions set, the first position
    being the most significant bit of the first byte; GZIP; multibase base64url without padding ('u'). In numpy: a
    bit at a time in Python took 24 ms at 20,000 positions, holding the GIL in the worker thread that signs a list
    (node.signed_lists), and so the event loop. (Imported here: `vouchnet agent new` and the SDK read this module's
    other functions, and a client command loads no numpy, 0.15 s.)"""
    import numpy as np

    try:
        positions = np.fromiter(map(operator.index, revoked), dtype=np.int64)
    except (OverflowError, TypeError):
        raise ValueError(f"positions must be integers within a list of {entries}") from None
    if (outside := positions[(positions < 0) | (positions >= entries)]).size:
        raise ValueError(f"position {outside[0]} is outside a list of {entries}")
    bits = np.zeros(entries, dtype=bool)
    bits[positions] = True
    compressed = gzip.compress(np.packbits(bits).tobytes(), mtime=0)  # packbits: the first bit is the high one
    return "u" + base64.urlsafe_b64encode(compressed).rstrip(b"=").decode()


def decode_list(encoded: object) -> bytes:
    """The bitstring of an `encodedList` (spec §3.2 Bitstring Expansion). Raises StatusListError."""
    if not isinstance(encoded, str) or not _MULTIBASE_BASE64URL.fullmatch(encoded):
        raise StatusListError("credentialSubject.encodedList: must be multibase base64url without padding ('u...')")
    try:
        compressed = base64.urlsafe_b64decode(encoded[1:] + "=" * (-(len(encoded) - 1) % 4))
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
        bits = inflater.decompress(compressed, MAX_ENCODED_BITS // 8 + 1)
    except (binascii.Error, ValueError, zlib.error):
        raise StatusListError("credentialSubject.encodedList: not base64url of GZIP data") from None
    if len(bits) > MAX_ENCODED_BITS // 8:
        raise StatusListError(f"credentialSubject.encodedList: inflates beyond {MAX_ENCODED_BITS // 8} bytes")
    if not inflater.eof:
        raise StatusListError("credentialSubject.encodedList: truncated GZIP data")
    return bits


def bit(bits: bytes, position: int) -> bool:
    """Whether the status at `position` is set; StatusListError if the list is shorter (spec §3.2: an error)."""
    if position >= len(bits) * 8:
        raise StatusListError(f"statusListIndex: {position} is beyond the list's {len(bits) * 8} entries")
    return bool(bits[position // 8] & (0x80 >> (position % 8)))


@dataclass(frozen=True)
class StatusEntry:
    """A credential's revocation entry, checked: where its list is and which bit is its own."""

    list_url: str
    position: int


def parse_entry(status: Any) -> StatusEntry | None:
    """The revocation entry among a credential's `credentialStatus` (one entry or a list of them), None if it has
    none. Raises StatusListError for an entry that is malformed."""
    if status is None:
        return None
    entries = status if isinstance(status, list) else [status]
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") != ENTRY_TYPE:
            raise StatusListError(f"credentialStatus: each entry must be an object of type {ENTRY_TYPE}")
        if entry.get("statusPurpose") != PURPOSE:
            continue  # suspension, messages: not ours to judge
        position, url = entry.get("statusListIndex"), entry.get("statusListCredential")
        if not isinstance(position, str) or not position.isdigit() or not position.isascii():
            raise StatusListError("credentialStatus.statusListIndex: must be a string of decimal digits")
        if len(position) > len(str(MAX_ENCODED_BITS)) or int(position) >= MAX_ENCODED_BITS:  # int() takes 4,300
            raise StatusListError(f"credentialStatus.statusListIndex: beyond the longest list decoded, "
                                  f"{MAX_ENCODED_BITS} entries")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise StatusListError("credentialStatus.statusListCredential: must be an http(s) URL")
        return StatusEntry(url, int(position))
    return None
