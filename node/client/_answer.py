"""The shapes of the node's answers that the SDK and the CLI read (DESIGN §8): an answer of another shape, from a
broken or hostile node or another server at its address, is NodeApiError("bad_answer") naming the field, never a
KeyError or TypeError in the caller.

A shape is a type or a tuple of types (bool is not taken for int), a dict of fields (each required unless wrapped
in Maybe; other fields are let through), or ListOf a shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import httpx

from ._http import NodeApiError, json_of


@dataclass(frozen=True)
class ListOf:
    """A list, each item of the shape `item`."""

    item: Shape


NUMBER = (int, float)  # an integer or not: JSON does not tell them apart


@dataclass(frozen=True)
class Maybe:
    """A field that may be absent (null is a type: NoneType)."""

    shape: Shape


Shape = Union[type, tuple[type, ...], dict[str, Union["Shape", Maybe]], ListOf]
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object",
          list: "a list", type(None): "null"}


def bad_answer(path: str, problem: str, status: int = 200) -> NodeApiError:
    """The error for an answer of the wrong shape: `problem` names the field, e.g. "orgs[0].org is missing"."""
    return NodeApiError(status, "bad_answer", f"{path}: {problem}")


def shaped(answer: Any, shape: Shape, path: str, status: int = 200, where: str = "") -> Any:
    """`answer` (the JSON of `path`'s answer, of HTTP `status`, or its part at `where`) if it has `shape`, else
    bad_answer naming the first field that does not."""
    problem = _problem(answer, shape, where)
    if problem is not None:
        raise bad_answer(path, problem, status)
    return answer


def json_answer(response: httpx.Response, url: str, shape: Shape = dict) -> Any:
    """The JSON of a successful `response` of the node at `url`, of `shape` (what NodeClient and AsyncTrustClient
    return)."""
    return shaped(json_of(response, url), shape, response.request.url.path, response.status_code)


def record(answer: Any, path: str, status: int = 200, *, where: str = "", kind: str | None = None) -> dict[str, Any]:
    """A record in its JSON form, its body of the shape of `kind`, else of the kind it names (a kind this SDK
    does not know: any object)."""
    shaped(answer, RECORD, path, status, where)
    body = BODIES.get(kind or answer["kind"], dict)
    shaped(answer["body"], body, path, status, f"{where}.body" if where else "body")
    return answer


def _problem(value: Any, shape: Shape, where: str) -> str | None:
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where or 'the answer'} is not an object"
        for name, field in shape.items():
            at = f"{where}.{name}" if where else name
            if isinstance(field, Maybe):
                if name not in value:
                    continue
                field = field.shape
            elif name not in value:
                return f"{at} is missing"
            if (problem := _problem(value[name], field, at)) is not None:
                return problem
        return None
    if isinstance(shape, ListOf):
        if not isinstance(value, list):
            return f"{where or 'the answer'} is not a list"
        for i, item in enumerate(value):
            if (problem := _problem(item, shape.item, f"{where}[{i}]")) is not None:
                return problem
        return None
    types = shape if isinstance(shape, tuple) else (shape,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        named = [_NAMES[t] for t in types if not (t is int and float in types)]
        return f"{where or 'the answer'} is not {' or '.join(named)}"
    return None


# The answers NodeClient reads, as the node gives them (node/api) with the fields its callers and the CLI read.
NODE = {"did": str, "network": str}
PEER: Shape = {"peer_id": str, "org": Maybe(str), "score": Maybe(NUMBER), "serves_sync": Maybe(bool)}
PEERS = {"peers": ListOf(PEER)}
KNOWN_PEER: Shape = {"peer_id": str, "org": (str, type(None)), "addrs": ListOf(str), "connected": bool, "source": str,
                     "failures": int, "last_error": (str, type(None)), "other_network": Maybe((str, type(None))),
                     "next_dial_at": (int, type(None))}
KNOWN_PEERS = {**PEERS, "known": ListOf(KNOWN_PEER), "next": (str, type(None))}
PEER_IDS = {"peers": ListOf(str)}
OWN_RECORD: Shape = {"number": int, "id": str, "iss": str, "seq": int, "accepted_ms": int, "peer": (str, type(None)),
                     "acknowledged": bool, "stored": Maybe((bool, type(None))),
                     "conflicts_with": Maybe((str, type(None))), "bytes": Maybe((str, type(None))),
                     "conflicts_with_bytes": Maybe((str, type(None)))}
OWN_RECORDS = {"records": ListOf(OWN_RECORD), "unacknowledged": int, "conflicts_unlisted": Maybe(int),
               "ledger_unreadable": Maybe((str, type(None))), "next": (int, type(None))}
ACKNOWLEDGED = {"acknowledged": int, "unacknowledged": int}
RECORD: Shape = {"index": int, "id": str, "kind": str, "iss": str, "seq": int, "body": dict}
COUNTS: Shape = {"ok": int, "error": int, "denied": int, "timeout": int}  # a digest's counts (vouching.bodies.OUTCOMES)
BODIES: dict[str, Shape] = {  # a record's body by kind, in its JSON form (node.records_json)
    "vouch": {"subject": str, "weight": NUMBER, "basis": str, "scope": Maybe(ListOf(str)),
              "expires": Maybe((int, type(None)))},
    "revoke": {"record": str, "reason": str},
    "org": {"name": str, "network": str, "addrs": ListOf(str)},
    "digest": {"agent": str, "epoch": int, "len": int, "events": int, "outcomes": COUNTS, "high_risk": COUNTS,
               "dp": Maybe({"eps": NUMBER})},
    "equivocation": {"offender": str, "type": str},
}
RECORDS = {"records": ListOf(RECORD), "next": (int, type(None))}  # and each body by its kind
ORG: Shape = {"org": str, "reputation": NUMBER, "weight": NUMBER, "credibility": NUMBER, "accountability": NUMBER,
              "own": bool, "root": bool, "equivocator": bool, "text": ListOf(str)}
ORGS = {"orgs": ListOf(ORG), "next": (str, type(None))}
# `known`: absent from a node older than this SDK (which answered an org's did, or one it knew nothing of, alike)
SCORE: Shape = {"agent": str, "score": int, "tier": str, "confidence": NUMBER, "known": Maybe(bool)}
EXPLAINED = {"explanation": {"text": ListOf(str)}}
STATEMENT = {"statement": str}


def score_shape(statement: bool, explain: bool) -> Shape:
    """The shape of a score asked for with these flags (_http.score_query)."""
    return {**SCORE, **(EXPLAINED if explain else {}), **(STATEMENT if statement else {})}


CHECK = {"decision": str, "reason": str, "score": int, "tier": str}
EVENTS_REPLY = {"accepted": int, "rejected": ListOf(dict)}
JWKS = {"keys": ListOf(dict)}
