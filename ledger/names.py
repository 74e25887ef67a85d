"""vouchnet's C2SP signed-note key names: log origins `vouchnet/<network>/<org did>/<log>` (also the log key's
name) and cosigner names `vouchnet/<network>/<org did>`; schema-less and URL-like, as c2sp.org/tlog-checkpoint
recommends for origins, and never resolved over the network.
"""

from __future__ import annotations

import re

from .note import NoteError

PREFIX = "vouchnet"
# Networks and log names: a letter or digit, then letters, digits, '.', '_' or '-' (no '/', space or '+').
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# W3C DID syntax: did:<method>:<method-specific-id>, where the id's characters never include '/', space or '+'.
_DID = re.compile(r"did:[a-z0-9]+:(?:[A-Za-z0-9._%-]*:)*[A-Za-z0-9._%-]+")


def _check(network: str, org_did: str) -> None:
    if not isinstance(network, str) or not _SEGMENT.fullmatch(network):
        raise NoteError(f"network {network!r}: must be letters, digits, '.', '_' or '-'")
    if not isinstance(org_did, str) or not _DID.fullmatch(org_did):
        raise NoteError(f"org did {org_did!r}: must be did:<method>:<id>")


def log_origin(network: str, org_did: str, log: str) -> str:
    """The origin line, and the log key's name, of one of an org's logs (e.g. log "records")."""
    _check(network, org_did)
    if not isinstance(log, str) or not _SEGMENT.fullmatch(log):
        raise NoteError(f"log name {log!r}: must be letters, digits, '.', '_' or '-'")
    return f"{PREFIX}/{network}/{org_did}/{log}"


def parse_log_origin(origin: str) -> tuple[str, str, str]:
    """(network, org did, log name) of a vouchnet origin; raise NoteError if it does not follow the convention."""
    parts = origin.split("/") if isinstance(origin, str) else []
    if len(parts) != 4 or parts[0] != PREFIX:
        raise NoteError(f"origin {origin!r}: must be {PREFIX}/<network>/<org did>/<log>")
    _, network, org_did, log = parts
    log_origin(network, org_did, log)  # validates each part
    return network, org_did, log


def cosigner_name(network: str, org_did: str) -> str:
    """The key name an org's witness cosigns under: the org itself, on one network."""
    _check(network, org_did)
    return f"{PREFIX}/{network}/{org_did}"
