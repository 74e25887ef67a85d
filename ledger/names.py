"""vouchnet's C2SP signed-note key names: log origins `vouchnet/<network>/<org did>/<log>` (also the log key's
name) and cosigner names `vouchnet/<org did>`; schema-less and URL-like, as c2sp.org/tlog-checkpoint recommends
for origins, and never resolved over the network.
"""

from __future__ import annotations

import re

from .note import NoteError

PREFIX = "vouchnet"
# Networks and log names: a letter or digit, then letters, digits, '.', '_' or '-' (no '/', space or '+').
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# W3C DID syntax: did:<method>:<method-specific-id>, where the id's characters never include '/', space or '+'.
_DID = re.compile(r"did:[a-z0-9]+:(?:[A-Za-z0-9._%-]*:)*[A-Za-z0-9._%-]+")


def _check_did(org_did: str) -> None:
    if not isinstance(org_did, str) or not _DID.fullmatch(org_did):
        raise NoteError(f"org did {org_did!r:.100}: must be did:<method>:<id>")


def _check_segment(what: str, value: str) -> None:
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
        raise NoteError(f"{what} {value!r:.100}: must be letters, digits, '.', '_' or '-'")


def log_origin(network: str, org_did: str, log: str) -> str:
    """The origin line, and the log key's name, of one of an org's logs (e.g. log "records")."""
    _check_segment("network", network)
    _check_did(org_did)
    _check_segment("log name", log)
    return f"{PREFIX}/{network}/{org_did}/{log}"


def parse_log_origin(origin: str) -> tuple[str, str, str]:
    """(network, org did, log name) of a vouchnet origin; raise NoteError if it does not follow the convention."""
    parts = origin.split("/") if isinstance(origin, str) else []
    if len(parts) != 4 or parts[0] != PREFIX:
        raise NoteError(f"origin {origin!r:.200}: must be {PREFIX}/<network>/<org did>/<log>")
    _, network, org_did, log = parts
    log_origin(network, org_did, log)  # validates each part
    return network, org_did, log


def cosigner_name(org_did: str) -> str:
    """The key name an org's witness cosigns under, on every network.

    tlog-cosignature: the Ed25519 cosigned message does not commit to the cosigner's name, so one key must not
    serve two names; an org's did is its key, so a name made from the did alone keeps one name per key.
    """
    _check_did(org_did)
    return f"{PREFIX}/{org_did}"
