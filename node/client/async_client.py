"""The async client of the node's local API: the calls agent frameworks make on their hot path (score, check,
events, the org's keys), on httpx.AsyncClient and anyio, so it runs on asyncio (as agent frameworks do) and on
trio alike, and needs trio only on trio."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import httpx

from . import _answer as shapes
from ._breaker import Breaker
from ._bounded import IDENTITY, aread_capped
from ._http import (
    DEFAULT_TIMEOUT,
    MAX_ANSWER,
    MAX_DECISION_ANSWER,
    BodyTooLarge,
    NodeUnreachable,
    agent_path,
    bearer_token,
    check_body,
    check_path,
    checked,
    key_or_fresh,
    normal_url,
    post_headers,
    query,
    score_query,
    too_large,
    unreachable,
    with_body,
)
from ._idempotent import EventsReply, marked
from ._token_file import TokenFile, given_token


def event_loop() -> object:
    """The event loop running this task: asyncio's loop, or trio's run (its token). An AsyncTrustClient's
    connections belong to the loop that opened them."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio (only a trio program gets here, node.client does not need trio)
        import trio

        return trio.lowlevel.current_trio_token()


async def closed_as_its_loop_ends(client: AsyncTrustClient) -> AsyncGenerator[None, None]:
    """Started (its first `asend`), closes `client` as its event loop finalizes the async generators left as it ends
    (PEP 525's hooks: asyncio.run's, after its tasks, and trio.run's do), or as it is closed (`aclose`): a client kept
    for its loop is closed in that loop, its connections with it, where one dropped once its loop had closed was left
    to the garbage collector (a ResourceWarning, an unclosed transport)."""
    try:
        yield
    finally:
        await client.aclose()


class AsyncTrustClient:
    """The local API of one node at `base_url`; `token` is needed to report events, or `token_file`, the path of the
    node's `api.token` (or a secret mounted from it), read again at each write, so that the client follows the token's
    rotation (node.client._token_file; ValueError for both). Use it from one event loop (asyncio's or trio's).
    `timeout` (seconds) bounds each request as a whole, answer included (NodeUnreachable past it); `transport`
    replaces httpx's (a proxy, a Unix socket, a test's fault injector). Every answer is checked for the fields its
    callers read, as NodeClient's are (node.client._answer): one of another shape is NodeApiError("bad_answer"); one
    longer than `max_answer` bytes (1 MiB for a score, check or policy) fails the call as NodeUnreachable once that
    much is read. With a `breaker` (node.client._breaker), a call while the node failed recently fails at once, as
    NodeUnreachable."""

    def __init__(self, base_url: str, token: str | None = None, *, token_file: str | os.PathLike[str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None,
                 max_answer: int = MAX_ANSWER, breaker: Breaker | None = None) -> None:
        self.base_url = normal_url(base_url)
        self.timeout = timeout
        self.max_answer = max_answer
        self._breaker = breaker
        source = given_token(token, token_file)
        self._token = source.current if isinstance(source, TokenFile) else bearer_token(source)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncTrustClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def health(self) -> dict[str, Any]:
        return await self._get_json("/healthz")

    async def score(self, agent: str, *, statement: bool = False, explain: bool = True) -> dict[str, Any]:
        """The agent's score, tier, confidence and explanation as this node sees it (with a signed JWT if asked;
        `explain=False` leaves out the explanation, several KB, when the score and tier are all that is needed).
        `known` false: the node holds nothing naming the agent, and the score is the cold start (absent from a node
        older than this SDK). An org's did is NodeApiError 409 `not_an_agent`."""
        return await self._get_json(agent_path(agent, "score"), score_query(statement, explain),
                                    shape=shapes.score_shape(statement, explain), limit=MAX_DECISION_ANSWER)

    async def check(self, agent: str, action: str, tool: str | None = None, *, issuer: str | None = None
                    ) -> dict[str, Any]:
        """The node's decision for `agent` doing `action` (with `tool`): {decision, reason, score, tier, ...}; with
        `issuer` (the org key that issued the caller's credential), `issuer_operates` too: whether that key's
        credentials stand for the agent, and if not, `decision` is the cold start's (`score` and `tier` stay the
        agent's; a node older than this SDK says neither, and decides on the agent's score)."""
        return await self._post_json(check_path(agent, issuer), check_body(action, tool), shape=shapes.CHECK,
                                     limit=MAX_DECISION_ANSWER)

    async def policy(self) -> dict[str, Any]:
        """The policy the node's checks apply: {tiers, min_score, high_risk_tools, high_risk_tier}
        (vouching.policy.Policy.from_dict reads it)."""
        return await self._get_json("/v1/policy", limit=MAX_DECISION_ANSWER)

    async def jwks(self) -> dict[str, Any]:
        """The org's public keys (`/.well-known/jwks.json`), which verify its agents' credentials."""
        return await self._get_json("/.well-known/jwks.json", shape=shapes.JWKS)

    async def report_events(self, events: list[dict[str, Any]], *, idempotency_key: str | None = None
                            ) -> EventsReply:
        """Report behaviour events (node/events.py); answers `{"accepted": n, "rejected": [{"index", "detail"}]}`.
        Sent with an Idempotency-Key, `idempotency_key` or a fresh one: after a NodeUnreachable (the answer lost),
        the same call with the same key (the exception's `idempotency_key`) is stored once, and answered with the
        first request's answer, `replayed` True."""
        response = await self._post("/v1/events", {"events": events}, idempotency_key=key_or_fresh(idempotency_key))
        return marked(EventsReply, shapes.json_answer(response, self.base_url, shapes.EVENTS_REPLY), response)

    async def _get_json(self, path: str, params: dict[str, Any] | None = None, *, shape: shapes.Shape = dict,
                        limit: int | None = None) -> Any:
        request = self._http.build_request("GET", path, params=query(params))
        return shapes.json_answer(await self._send(request, limit), self.base_url, shape)

    async def _post_json(self, path: str, body: dict[str, Any], *, shape: shapes.Shape = dict,
                         limit: int | None = None) -> Any:
        return shapes.json_answer(await self._post(path, body, limit=limit), self.base_url, shape)

    async def _post(self, path: str, body: dict[str, Any], *, idempotency_key: str | None = None,
                    limit: int | None = None) -> httpx.Response:
        """A POST of `body` as JSON, carrying the token (when the client has one); a NodeUnreachable names the
        `idempotency_key` sent, for a retry."""
        headers = post_headers(self._token, idempotency_key)
        try:
            return await self._send(self._http.build_request("POST", path, json=body, headers=headers), limit)
        except NodeUnreachable as error:
            error.idempotency_key = idempotency_key
            raise

    async def _send(self, request: httpx.Request, limit: int | None = None) -> httpx.Response:
        """The node's answer, within the timeout as a whole; `limit` (default: max_answer): the most bytes of it
        read (NodeUnreachable past it); through the breaker, if the client has one."""
        if self._breaker is None:
            return await self._answer(request, limit)
        with self._breaker.attempt():
            return await self._answer(request, limit)

    async def _answer(self, request: httpx.Request, limit: int | None) -> httpx.Response:
        try:
            with anyio.fail_after(self.timeout):  # httpx's timeout bounds each read, not the whole answer
                return checked(await self._capped(request, self.max_answer if limit is None else limit))
        except httpx.RequestError as error:
            raise unreachable(error, self.base_url, self.timeout) from None
        except TimeoutError:
            raise unreachable(httpx.TimeoutException("the deadline passed"), self.base_url, self.timeout) from None

    async def _capped(self, request: httpx.Request, limit: int) -> httpx.Response:
        request.headers.update(IDENTITY)
        response = await self._http.send(request, stream=True)
        try:
            return with_body(response, await aread_capped(response, limit, request.url.path))
        except BodyTooLarge as error:
            raise too_large(error, self.base_url) from None
        finally:
            await response.aclose()
