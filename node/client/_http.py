"""What the sync and async clients share: request building, and turning an answer or a transport failure into a
result or one of the client's exceptions (node/api/errors.py gives every error as {error, detail})."""

from __future__ import annotations

import json
import re
import socket
import ssl
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from ._token import BadToken, api_token

DEFAULT_TIMEOUT = 10.0
# Bytes of an answer to the calls a decision waits on (score, check, policy): an explained score takes a few KB.
# A longer answer fails the call as NodeUnreachable, so a check fails closed (or open, if so configured), not out of
# memory.
MAX_DECISION_ANSWER = 1024 * 1024
# Bytes of any other answer (NodeClient's max_answer): above the longest a node gives, a page of 500 records of
# 64 KiB in JSON (bytes as hex, a control character escaped as \u00XX at worst: under 188 MiB), so that a broken or
# hostile node sending an endless body fails the call rather than filling the memory of the process asking.
MAX_ANSWER = 256 * 1024 * 1024


# The code of a refusal whose answer is not in the node's error format: whatever answered, the node may never have
# seen the request.
NOT_THE_NODES = "http_error"


class BodyTooLarge(httpx.HTTPError):
    """A server's answer is longer than the caller's cap (an httpx.HTTPError, so callers treat it as a failed
    request; and a failure to the breaker of its address, node.client._breaker)."""


class ClientError(Exception):
    """A call to the node did not succeed."""


class NodeUnreachable(ClientError):
    """Nothing answered at the node's address, it did not answer in time (`timed_out`: connected to, as a node
    starting is, not one whose connection was not made in time), or its answer could not be read.
    `idempotency_key`: for a write sent with one (vouch, revoke, report_events), the key it carried, the one to call
    it again with: the node may have done it, its answer lost."""

    idempotency_key: str | None = None

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class NodeApiError(ClientError):
    """The node refused the call: HTTP status, its error code and its reason (which names the field). `rejected`:
    for a batch of events none of which is valid (422 invalid_events), the node's `{index, detail}` for each, the
    first one's given in the message too. `challenge`: the answer's WWW-Authenticate, which the node sends with a
    refusal of the request's credentials alone (RFC 6750 §3: 401; 400 `invalid_request` for a malformed
    Authorization header), None without one. `retry_after`: the seconds a 429 or 503 asks the caller to wait before
    trying again (RFC 9110 §10.2.3 Retry-After, in seconds), None without one."""

    def __init__(self, status: int, code: str, detail: str, *, rejected: list[dict[str, Any]] | None = None,
                 challenge: str | None = None, retry_after: float | None = None) -> None:
        self.rejected = rejected or []
        self.challenge = challenge
        self.retry_after = retry_after
        first = f": the first, event {self.rejected[0]['index']}: {self.rejected[0]['detail']}" if self.rejected else ""
        super().__init__(f"{detail} ({status} {code}){first}")
        self.status = status
        self.code = code
        self.detail = detail


def normal_url(url: str) -> str:
    """`host:port` or a URL, as the base URL httpx wants."""
    return (url if "://" in url else f"http://{url}").rstrip("/")


_URL_PASSWORD = re.compile(r"(://[^/?#@\s:']*):[^/?#@\s']*@")  # scheme://user:password@: the user kept


def without_passwords(text: str) -> str:
    """`text` with the password of every URL's userinfo in it left out (`http://user@host`): a refusal's reason or a
    node's URL goes to the caller and the service's log, and a URL may carry one (RFC 3986 §3.2.1: not to be
    shown)."""
    return _URL_PASSWORD.sub(r"\1@", text)


def query(params: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None}


def bearer_token(token: str | None) -> str | None:
    """The node's API token as a header carries it, by node.client._token's rule: without the newline of api.token,
    read by a script (httpx refused it in an error that quoted the token, so that it reached logs). ValueError, not
    quoting it, for what is not a token (DESIGN §8)."""
    if token is None:
        return None
    try:
        return api_token(token)
    except BadToken as e:
        raise ValueError(f"token: must be the text the node's api.token holds; this one {e}") from None


def key_or_fresh(key: str | None) -> str:
    """`key`, or a fresh Idempotency-Key: one per logical write, sent again with each retry of it."""
    return uuid.uuid4().hex if key is None else key


def events_body(events: list[dict[str, Any]]) -> bytes:
    """`POST /v1/events`'s body for `events`: compact JSON in UTF-8, as httpx 0.28 sends json= (the collector sizes
    its batches by it). ValueError for a NaN or an infinity, TypeError for a value JSON has no form for."""
    return json.dumps({"events": events}, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def post_headers(token: str | Callable[[], str] | None, idempotency_key: str | None = None) -> dict[str, str]:
    """A write's headers: the token (or what a function giving it gives now: a TokenFile's `current`,
    node.client._token_file) and the Idempotency-Key, each if there is one."""
    if callable(token):
        token = token()
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def unreachable(error: httpx.RequestError, url: str, timeout: float) -> NodeUnreachable:
    """The exception for a request that never got an answer, or one httpx could not read (a broken encoding); it
    names `url` without its password."""
    url = without_passwords(url)
    if isinstance(error, httpx.ConnectError):
        cause = _cause(error)
        if isinstance(cause, ssl.SSLError):  # https:// at the node's own API, or a proxy's TLS that fails
            return NodeUnreachable(f"cannot talk to the node at {url} over TLS ({error}): the node's API serves plain "
                                   "HTTP (http://), TLS only through a proxy in front of it")
        if isinstance(cause, socket.gaierror):
            return NodeUnreachable(f"cannot reach the node at {url}: its host name does not resolve ({error})")
        return NodeUnreachable(f"cannot reach the node at {url}: is `vouchnet run` running?")
    if isinstance(error, httpx.ConnectTimeout):  # (a node starting has bound its API's port: connected to at once)
        return NodeUnreachable(f"cannot reach the node at {url}: no connection made within {timeout} s (its host name "
                               "not resolved in time, or nothing answering at its address: a wrong one, or one a "
                               "firewall drops)")
    if isinstance(error, httpx.TimeoutException):
        return NodeUnreachable(f"the node at {url} did not answer within {timeout} s", timed_out=True)
    if isinstance(error, httpx.NetworkError) and isinstance(_cause(error), ConnectionResetError):
        # (a node binds its API's port before its catch-up sync: stopped before it serves, it resets those waiting)
        return NodeUnreachable(f"the node at {url} dropped the connection unanswered ({error}): it stopped, or "
                               "stopped as it started (its log says why), or something on the way resets connections")
    if isinstance(error, httpx.RemoteProtocolError):  # e.g. the node's libp2p port, given for its API's
        return NodeUnreachable(f"cannot talk to the node at {url}: the answer is not HTTP ({error}): is {url} a "
                               "vouchnet node's API address (its [api] bind), not its libp2p port?")
    return NodeUnreachable(f"cannot talk to the node at {url}: {error}")


def _cause(error: BaseException) -> BaseException:
    """The first exception of the chain behind `error` (httpx's, then httpcore's, then the socket's or ssl's)."""
    seen = [error]
    while (behind := seen[-1].__cause__ or seen[-1].__context__) is not None and behind not in seen:
        seen.append(behind)
    return seen[-1]


def checked(response: httpx.Response) -> httpx.Response:
    """The response if it succeeded; else its `refusal`."""
    if response.is_success:
        return response
    raise refusal(response)


def refusal(response: httpx.Response) -> NodeApiError:
    """A refusal (its body read) as NodeApiError with the node's code and reason, or, for an answer not in the
    node's error format (a proxy's page, another server at its address), with the code NOT_THE_NODES."""
    try:
        error = response.json()
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
        error = None
    if isinstance(error, dict) and isinstance(error.get("error"), str) and isinstance(error.get("detail"), str):
        return NodeApiError(response.status_code, error["error"], error["detail"], rejected=_rejected(error),
                            challenge=response.headers.get("www-authenticate"), retry_after=_retry_after(response))
    said = " ".join(response.text[:200].split())  # one line: a web server's HTML page is many
    return NodeApiError(response.status_code, NOT_THE_NODES,
                        f"{response.reason_phrase}, not in a vouchnet node's error format (another server at the "
                        f"node's address, or a proxy in front of it, answered): {said}",
                        retry_after=_retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    """A 429's or 503's Retry-After in seconds (the node sends seconds; an HTTP-date, which it never sends, is none)."""
    after = response.headers.get("retry-after", "")
    return float(after) if response.status_code in (429, 503) and after.isascii() and after.isdigit() else None


def _rejected(error: dict[str, Any]) -> list[dict[str, Any]]:
    """The `{index, detail}` entries of a refusal's `rejected` list (422 invalid_events), each as the node gives it
    (an integer index, a text reason); none if the list is missing or any entry is of another shape."""
    rejected = error.get("rejected")
    if not isinstance(rejected, list) or not all(
            isinstance(entry, dict) and type(entry.get("index")) is int and isinstance(entry.get("detail"), str)
            for entry in rejected):
        return []
    return [{"index": entry["index"], "detail": entry["detail"]} for entry in rejected]


def too_large(error: httpx.HTTPError, url: str) -> NodeUnreachable:
    """The exception for an answer over its cap (error: the cap's BodyTooLarge, naming the path and the cap)."""
    return NodeUnreachable(f"cannot talk to the node at {without_passwords(url)}: {error}")


def with_body(response: httpx.Response, body: bytes) -> httpx.Response:
    """A streamed `response`, read as `body`, as the plain response the rest of the client takes."""
    return httpx.Response(response.status_code, headers=response.headers, content=body, request=response.request)


def json_of(response: httpx.Response, url: str) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
        raise NodeApiError(response.status_code, "not_json",
                           f"the answer is not JSON: is {without_passwords(url)} a vouchnet node?") from None


def agent_path(agent: str, tail: str) -> str:
    """`/v1/agents/{agent}/{tail}` with the agent id as one path segment: an id holding `/../`, `?` or `#` would
    otherwise ask about another agent, whose verdict would then be cached and applied under this id."""
    return f"/v1/agents/{quote(agent, safe=':')}/{tail}"


def score_query(statement: bool, explain: bool) -> dict[str, str | None]:
    """`GET /v1/agents/{did}/score`'s query: the signed statement only when asked, the explanation unless declined."""
    return {"statement": "true" if statement else None, "explain": None if explain else "false"}


def check_path(agent: str, issuer: str | None) -> str:
    """`POST /v1/agents/{agent}/check`'s path, naming the caller's credential's `issuer` in its query if given: the
    node then says whether that key's credentials stand for the agent (`issuer_operates`), of every key, where
    `issuers` lists only the first 64. A node older than that ignores the query and does not say."""
    path = agent_path(agent, "check")
    return path if issuer is None else f"{path}?{urlencode({'issuer': issuer})}"


def check_body(action: str, tool: str | None) -> dict[str, Any]:
    return {"action": action} if tool is None else {"action": action, "tool": tool}
