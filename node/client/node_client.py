"""A small synchronous client of the node's local API (node/api): one method per endpoint, errors as exceptions
that carry the node's reason.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from . import _answer as shapes
from ._answer import bad_answer
from ._breaker import Breaker
from ._bounded import IDENTITY, bounded_transport, deadline, read_capped
from ._http import (
    DEFAULT_TIMEOUT,
    MAX_ANSWER,
    MAX_DECISION_ANSWER,
    BodyTooLarge,
    ClientError,
    NodeApiError,
    NodeUnreachable,
    agent_path,
    bearer_token,
    check_body,
    check_path,
    checked,
    events_body,
    json_of,
    key_or_fresh,
    normal_url,
    post_headers,
    query,
    score_query,
    too_large,
    unreachable,
    with_body,
)
from ._idempotent import EventsReply, SignedRecord, marked

__all__ = ["ClientError", "EventsReply", "NodeApiError", "NodeClient", "NodeUnreachable", "SignedRecord"]


def _record_id_hex(record_id: str | bytes) -> str:
    return record_id.hex() if isinstance(record_id, bytes) else record_id


def _decoded(answer: Any, path: str, field: str) -> list[bytes]:
    """The bytes of the list of standard base64 strings at `field` of a log answer; NodeApiError("bad_answer") naming
    the field if it is not one, so that what a broken or hostile node sends is neither a crash nor read leniently
    (canonical only: other strings would decode to the same bytes)."""
    values = answer.get(field) if isinstance(answer, dict) else None
    if not isinstance(values, list):
        raise bad_answer(path, f"{field} is not a list of base64 strings")
    decoded = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise bad_answer(path, f"{field}[{i}] is not a base64 string")
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raw = None
        if raw is None or base64.b64encode(raw).decode() != value:
            raise bad_answer(path, f"{field}[{i}] is not canonical base64")
        decoded.append(raw)
    return decoded


class NodeClient:
    """The local API of one node at `base_url` (e.g. "http://127.0.0.1:8700"); `token` is needed for writes (or a
    function giving it: each write carries what it gives then, as a TokenFile's `current`, node.client._token_file);
    `timeout` (seconds) bounds each request as a whole, answer included, so a node that trickles its answer fails
    the call (NodeUnreachable) within it; `transport` replaces httpx's (a proxy, a Unix socket, a test's fault
    injector), which then keeps only httpx's per-operation timeouts. An answer longer than `max_answer` bytes (1 MiB
    for a score, check or policy) fails the call as NodeUnreachable once that much is read. With a `breaker`
    (node.client._breaker), a call while the node failed recently fails at once, as NodeUnreachable."""

    def __init__(self, base_url: str, token: str | Callable[[], str] | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None,
                 max_answer: int = MAX_ANSWER, breaker: Breaker | None = None) -> None:
        self.base_url = normal_url(base_url)
        self.timeout = timeout
        self.max_answer = max_answer
        self._breaker = breaker
        self._token = token if callable(token) else bearer_token(token)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                  transport=transport if transport is not None else bounded_transport())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the node ---------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._get_json("/healthz")

    def node(self) -> dict[str, Any]:
        """The org's did and network, the node's peer id and addresses, and counts of what it holds."""
        return self._get_json("/v1/node", shape=shapes.NODE)

    def peers(self) -> list[dict[str, Any]]:
        """The peers the node is connected to now: peer id, org, GossipSub score, whether it serves sync."""
        return self._get_json("/v1/peers", shape=shapes.PEERS)["peers"]

    def known_peers(self, *, after: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """One page of the peers the node knows, in peer id order, with how dialling each goes: `{"peers": [...]
        (those connected, as peers() gives them), "known": [...], "next": cursor or None}`; pass `next` as `after` for
        the page after."""
        return self._get_json("/v1/peers", {"after": after, "limit": limit}, shape=shapes.KNOWN_PEERS)

    def iter_known_peers(self, *, page: int | None = None) -> Iterator[dict[str, Any]]:
        """Every peer the node knows, in peer id order, fetched a page at a time."""
        return _paged(lambda after: self.known_peers(after=after, limit=page), "/v1/peers", "known")

    def blocked_peers(self) -> list[str]:
        """The PeerIDs the node refuses (no connection either way) until its block list changes or it restarts."""
        return self._get_json("/v1/peers/blocked", shape=shapes.PEER_IDS)["peers"]

    def block_peers(self, peer_ids: list[str]) -> list[str]:
        """Replace the node's block list (an empty list unblocks everyone); returns the list now in force."""
        return self._json(self._write("PUT", "/v1/peers/blocked", json={"peers": peer_ids}), shapes.PEER_IDS)["peers"]

    def own_records(self, *, after: int = 0) -> dict[str, Any]:
        """A page of the records of the org's key that came from peers (number, id, iss, seq, accepted_ms, peer,
        acknowledged, stored, conflicts_with, bytes, conflicts_with_bytes), in the order listed: `{"records": [...],
        "ledger_unreadable": None or why `stored` is None (unknown), "unacknowledged": n, "conflicts_unlisted": n,
        "next": `after` of the next page or None}` (a node before conflicting records were listed gives neither
        `stored`, `conflicts_with` nor `conflicts_unlisted`; one before 2026-11-29 neither `bytes`,
        `conflicts_with_bytes` nor `ledger_unreadable`)."""
        return self._get_json("/v1/node/own-records", {"after": after}, shape=shapes.OWN_RECORDS)

    def own_record_cose(self, number: int) -> bytes:
        """The COSE_Sign1 bytes of the conflicting record listed as `number`, as the node answers them (check them
        against the row's `id`, their SHA-256, as `vouchnet own-records evidence` does); NodeApiError 404 (a row that
        conflicts with none, or none), 410 `bytes_dropped` (dropped to make room for a later conflict's, the row
        acknowledged), 503 `storage` (the node cannot read the file that holds them now)."""
        return self._get(f"/v1/node/own-records/{number}/cose").content

    def own_record_conflicts_with_cose(self, number: int) -> bytes:
        """The COSE_Sign1 bytes of the record that the conflicting record listed as `number` conflicted with: the key's
        other signature at that seq, as the node answers them (check them against the row's `conflicts_with`).
        NodeApiError as own_record_cose, or 410 `bytes_not_kept` (a row listed before own_records.db format 5, of a
        record the node held only)."""
        return self._get(f"/v1/node/own-records/{number}/conflicts-with/cose").content

    def acknowledge_own_records(self, through: int) -> dict[str, int]:
        """Acknowledge the listed records of the org's key numbered up to `through`: `{"acknowledged": newly
        acknowledged, "unacknowledged": remaining}`."""
        return self._json(self._write("POST", "/v1/node/own-records/acknowledge", json={"through": through}),
                          shapes.ACKNOWLEDGED)

    def metrics(self) -> str:
        """The node's counters in the Prometheus text format."""
        return self._get("/metrics").text

    # --- scores -----------------------------------------------------------------------------------------

    def score(self, agent: str, *, statement: bool = False, explain: bool = True) -> dict[str, Any]:
        """The agent's score, tier, confidence and explanation as this node sees it (with a signed JWT if asked;
        `explain=False` leaves out the explanation, several KB, when the score and tier are all that is needed).
        `known` false: the node holds nothing naming the agent, and the score is the cold start (absent from a node
        older than this SDK). An org's did is NodeApiError 409 `not_an_agent`."""
        return self._get_json(agent_path(agent, "score"), score_query(statement, explain),
                              shape=shapes.score_shape(statement, explain), limit=MAX_DECISION_ANSWER)

    def check(self, agent: str, action: str, tool: str | None = None, *, issuer: str | None = None
              ) -> dict[str, Any]:
        """The node's decision for `agent` doing `action` (with `tool`): {decision, reason, score, tier, ...}; with
        `issuer` (the org key that issued the caller's credential), `issuer_operates` too: whether that key's
        credentials stand for the agent, and if not, `decision` is the cold start's (`score` and `tier` stay the
        agent's; a node older than this SDK says neither, and decides on the agent's score)."""
        return self._json(self._post(check_path(agent, issuer), check_body(action, tool), limit=MAX_DECISION_ANSWER),
                          shapes.CHECK)

    def policy(self) -> dict[str, Any]:
        """The policy the node's checks apply: {tiers, min_score, high_risk_tools, high_risk_tier}
        (vouching.policy.Policy.from_dict reads it)."""
        return self._get_json("/v1/policy", limit=MAX_DECISION_ANSWER)

    def jwks(self) -> dict[str, Any]:
        """The org's public keys (`/.well-known/jwks.json`), which verify its agents' credentials."""
        return self._get_json("/.well-known/jwks.json", shape=shapes.JWKS)

    def report_events(self, events: list[dict[str, Any]], *, idempotency_key: str | None = None) -> EventsReply:
        """Report behaviour events (node/events.py); answers `{"accepted": n, "rejected": [{"index", "detail"}]}`.
        Idempotency-Key as for `vouch`: a retry with the same key is stored once, and answered with the first
        request's answer, `replayed` True."""
        return self.report_events_body(events_body(events), idempotency_key=idempotency_key)

    def report_events_body(self, body: bytes, *, idempotency_key: str | None = None) -> EventsReply:
        """`report_events` of a batch already encoded (`events_body`): for a caller that measured it."""
        response = self._write("POST", "/v1/events", idempotency_key=key_or_fresh(idempotency_key),
                               content_type="application/json", content=body)
        return marked(EventsReply, self._json(response, shapes.EVENTS_REPLY), response)

    def orgs(self, *, after: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """One page of orgs in did order: `{"orgs": [...], "next": cursor or None}`; pass `next` as `after` for the
        page after."""
        return self._get_json("/v1/orgs", {"after": after, "limit": limit}, shape=shapes.ORGS)

    def iter_orgs(self, *, page: int | None = None) -> Iterator[dict[str, Any]]:
        """Every org the node knows, in did order, fetched a page at a time."""
        return _paged(lambda after: self.orgs(after=after, limit=page), "/v1/orgs", "orgs")

    def org(self, did: str) -> dict[str, Any]:
        return self._get_json(f"/v1/orgs/{did}", shape=shapes.ORG)

    # --- records ----------------------------------------------------------------------------------------

    def vouch(
        self, subject: str, weight: float, basis: str, *, scope: list[str] | None = None, expires: int | None = None,
        idempotency_key: str | None = None,
    ) -> SignedRecord:
        """Vouch for `subject` as this org (expires: ms since the epoch); the new record in its JSON form.

        Sent with an Idempotency-Key, `idempotency_key` or a fresh one: after a NodeUnreachable (the answer lost),
        the same call with the same key (the exception's `idempotency_key`) gets the record the node signed, if it
        did, and signs no second (the answer's `replayed` is then True)."""
        body: dict[str, Any] = {"subject": subject, "weight": weight, "basis": basis}
        if scope is not None:
            body["scope"] = scope
        if expires is not None:
            body["expires"] = expires
        return self._signed(self._post("/v1/vouches", body, idempotency_key=key_or_fresh(idempotency_key)), "vouch")

    def revoke(self, record_id: str | bytes, reason: str, *, idempotency_key: str | None = None) -> SignedRecord:
        """Revoke one of this org's vouches; the revoke record in its JSON form. Idempotency-Key as for `vouch`."""
        return self._signed(self._post("/v1/revocations", {"record": _record_id_hex(record_id), "reason": reason},
                                       idempotency_key=key_or_fresh(idempotency_key)), "revoke")

    def records(
        self,
        *,
        issuer: str | None = None,
        kind: str | None = None,
        subject: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One page: `{"records": [...], "next": cursor or None}`; pass `next` as `after` for the page after."""
        params = {"issuer": issuer, "kind": kind, "subject": subject, "after": after, "limit": limit}
        page = self._get_json("/v1/records", params, shape=shapes.RECORDS)
        for i, found in enumerate(page["records"]):
            shapes.record(found, "/v1/records", where=f"records[{i}]")
        return page

    def iter_records(
        self, *, issuer: str | None = None, kind: str | None = None, subject: str | None = None, page: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every matching record, oldest first, fetched a page at a time."""
        return _paged(lambda after: self.records(issuer=issuer, kind=kind, subject=subject, after=after, limit=page),
                      "/v1/records", "records")

    def submit_record(self, raw: bytes) -> dict[str, Any]:
        """Offer a signed record (COSE_Sign1 bytes) as a peer's gossip would: its JSON form once the node holds it,
        or `{"status": "held", ...}` while it waits for the issuer's earlier records; NodeApiError (409) says why
        the node refused it (outside_horizon, unlinked, equivocation, rejected)."""
        return self._json(self._write("POST", "/v1/records", content=raw, content_type="application/cose"))

    def record(self, record_id: str | bytes) -> bytes:
        """A record's exact COSE_Sign1 bytes, checked against the id they were asked by."""
        wanted = _record_id_hex(record_id)
        raw = self._get(f"/v1/records/{wanted}").content
        if hashlib.sha256(raw).hexdigest() != wanted.lower():
            raise NodeApiError(200, "wrong_record", f"the node answered {wanted} with bytes of another id")
        return raw

    def record_json(self, record_id: str | bytes) -> dict[str, Any]:
        return self._record(self._get(f"/v1/records/{_record_id_hex(record_id)}", {"format": "json"}))

    # --- the log ----------------------------------------------------------------------------------------

    def checkpoint(self) -> bytes | None:
        """The latest signed checkpoint note with its cosignatures; None before the node has signed one."""
        try:
            return self._get("/v1/log/checkpoint").content
        except NodeApiError as e:
            if e.code == "no_checkpoint":
                return None
            raise

    def log_entries(self, start: int, end: int | None = None) -> list[bytes]:
        """Entries from `start` towards `end` (default: the log's end, the size of the node's latest checkpoint); a page
        may stop short, so ask again; from the log's end, none. A size beyond that checkpoint is refused
        (NodeApiError "out_of_range")."""
        path = "/v1/log/entries"
        return _decoded(self._get_json(path, {"start": start, "end": end}), path, "entries")

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 audit path of entry `index` in the tree of `size` (default: the latest checkpoint's size)."""
        path = "/v1/log/proof/inclusion"
        return _decoded(self._get_json(path, {"index": index, "size": size}), path, "proof")

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """RFC 9162 proof that the tree of `old` entries is a prefix of the tree of `new` (default: the latest
        checkpoint's size)."""
        path = "/v1/log/proof/consistency"
        return _decoded(self._get_json(path, {"old": old, "new": new}), path, "proof")

    def openapi(self) -> dict[str, Any]:
        return self._get_json("/openapi.json")

    # --- transport --------------------------------------------------------------------------------------

    def _get_json(self, path: str, params: dict[str, Any] | None = None, *, shape: shapes.Shape = dict,
                  limit: int | None = None) -> Any:
        return self._json(self._get(path, params, limit=limit), shape)

    def _json(self, response: httpx.Response, shape: shapes.Shape = dict) -> Any:
        """The JSON of a successful `response`, of `shape` (node.client._answer)."""
        return shapes.json_answer(response, self.base_url, shape)

    def _record(self, response: httpx.Response, kind: str | None = None) -> dict[str, Any]:
        """A record in its JSON form, answered in `response`: of `kind`, if given."""
        return shapes.record(json_of(response, self.base_url), response.request.url.path, response.status_code,
                             kind=kind)

    def _signed(self, response: httpx.Response, kind: str) -> SignedRecord:
        """The record of `kind` the node signed for a write, marked `replayed` if it had signed it before."""
        return marked(SignedRecord, self._record(response, kind), response)

    def _get(self, path: str, params: dict[str, Any] | None = None, *, limit: int | None = None) -> httpx.Response:
        return self._send(self._http.build_request("GET", path, params=query(params)), limit)

    def _post(self, path: str, body: dict[str, Any], *, idempotency_key: str | None = None,
              limit: int | None = None) -> httpx.Response:
        return self._write("POST", path, idempotency_key=idempotency_key, limit=limit, json=body)

    def _write(self, method: str, path: str, *, idempotency_key: str | None = None, content_type: str | None = None,
               limit: int | None = None, **body: Any) -> httpx.Response:
        """A request carrying the token (when the client has one); `body` is httpx's json= or content=. A
        NodeUnreachable names the `idempotency_key` sent, for a retry."""
        headers = post_headers(self._token, idempotency_key)
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            return self._send(self._http.build_request(method, path, headers=headers, **body), limit)
        except NodeUnreachable as error:
            error.idempotency_key = idempotency_key
            raise

    def _send(self, request: httpx.Request, limit: int | None = None) -> httpx.Response:
        """The node's answer, within the timeout as a whole; `limit` (default: max_answer): the most bytes of it
        read (NodeUnreachable past it); through the breaker, if the client has one."""
        if self._breaker is None:
            return self._answer(request, limit)
        with self._breaker.attempt():
            return self._answer(request, limit)

    def _answer(self, request: httpx.Request, limit: int | None) -> httpx.Response:
        try:
            with deadline(self.timeout):
                return checked(self._capped(request, self.max_answer if limit is None else limit))
        except httpx.RequestError as error:
            raise unreachable(error, self.base_url, self.timeout) from None

    def _capped(self, request: httpx.Request, limit: int) -> httpx.Response:
        request.headers.update(IDENTITY)
        response = self._http.send(request, stream=True)
        try:
            return with_body(response, read_capped(response, limit, request.url.path))
        except BodyTooLarge as error:
            raise too_large(error, self.base_url) from None
        finally:
            response.close()


def _paged(fetch: Callable[[Any], dict[str, Any]], path: str, items: str) -> Iterator[dict[str, Any]]:
    """The `items` of every page `fetch(after)` answers (from `path`), following each page's `next` cursor to the
    last."""
    after = None
    while True:
        answer = fetch(after)
        yield from answer[items]
        cursor = answer["next"]
        if cursor is None:
            return
        if after is not None and not cursor > after:  # else a node could keep the caller paging for ever
            raise bad_answer(path, f"next is {cursor!r}, not after the page's own cursor {after!r}")
        after = cursor
