"""Scores and decisions from this node's point of view (DESIGN.md §6, §8): an agent's score with its explanation
(and, on request, a signed statement), a policy check for an action, the policy itself, and the orgs' reputations.

An unknown agent is not an error: it gets the cold-start score. An org's did is refused (409 `not_an_agent`): an
org has a reputation (`GET /v1/orgs/{did}`), not an agent's score. `POST .../check` changes nothing, so it needs no
token (node.api.app lists it among the open paths).

`GET .../score` is what services ask most, so ScoreFastPath answers its plain requests before FastAPI sees them,
with the same function and the same bytes as the route (tests compare the two); FastAPI's layers (routing over
every route, validation, serialisation) cost more than the answer itself.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Query
from nacl.signing import SigningKey
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from starlette.types import ASGIApp, Receive, Scope, Send

from vouching import InvalidDid, public_key_from_did
from vouching.policy import MAX_TOOL_NAME, tool_name_problem

from ..credentials import score_statement
from ..trust import TrustService, listed_issuers, listed_scopes
from .errors import ApiError, ErrorBody, checked_did, error_responses, read_responses
from .json_body import StrictJsonRoute
from .parameters import BOOLEANS
from .records import DEFAULT_PAGE, PageLimit

CHECK_PATH = "/v1/agents/{did}/check"
MAX_DID = 64
_NOT_AN_AGENT = {409: {"model": ErrorBody, "description": "`not_an_agent`: the did is an org's, and nothing this node "
                       "holds names it as an agent; `GET /v1/orgs/{did}` shows the org"}}


# No max_length: checked_did refuses what is not a did:key, an agent's credential passed by mistake by name (a
# length limit would answer first, and name only the length).
Did = Annotated[str, Path(min_length=1, description="The agent's did:key")]


class CheckRequest(BaseModel):
    """What the agent wants to do: an action (e.g. `tool_call`, `delegate`) and, for tool calls, the tool."""

    model_config = ConfigDict(extra="forbid", strict=True)
    action: str = Field(min_length=1, max_length=128)
    tool: str | None = Field(default=None, min_length=1, max_length=MAX_TOOL_NAME,
                             description="The tool's name, as a vouch's scope names it: printable text")


def agent_did(trust: TrustService, did: str) -> str:
    """`did` (valid) if the node may score it as an agent, else a 409 saying why it is taken for an org (nothing
    names it as an agent, TrustService.org_not_agent): an org scored as an agent nobody knows was given the cold
    start, as if the node knew nothing of it."""
    if (why := trust.org_not_agent(did)) is not None:
        raise ApiError(409, "not_an_agent", f"path.did: {did} is an org ({why}), not an agent; GET /v1/orgs/{did} "
                       "shows it")
    return did


def score_answer(trust: TrustService, key: SigningKey, did: str, *, explain: bool, statement: bool) -> dict[str, Any]:
    """The body of `GET /v1/agents/{did}/score` for a valid did: the score, whether the node knows the agent, its
    scoped tools and its explanation, all of the one instant the score was computed at."""
    score, scopes = trust.score(did)
    answer: dict[str, Any] = {
        "agent": did,
        "score": score.score,
        "tier": score.tier,
        "confidence": score.confidence,
        "known": trust.engine.holds(did),
        "computed_at": score.computed_at,
        **listed_scopes(scopes),
    }
    if explain:
        answer["explanation"] = trust.explain(score)
    if statement:
        answer["statement"] = score_statement(key, agent=did, score=score.score, tier=score.tier)
    return answer


def scores_router(trust: TrustService, key: SigningKey) -> APIRouter:
    """The score, check and org endpoints over `trust`; statements are signed with the org key `key`."""
    router = APIRouter(route_class=StrictJsonRoute, tags=["scores"])

    @router.get("/v1/agents/{did}/score", responses={**read_responses(422), **_NOT_AN_AGENT})
    async def agent_score(
        did: Did,
        statement: Annotated[bool, Query(description="add a short-lived signed JWT of the score")] = False,
        explain: Annotated[bool, Query(description="add the explanation (several KB); false for the score alone")]
        = True,
    ) -> dict[str, Any]:
        """The agent's score 0–1000 and tier as this node sees it, how much evidence stands behind it, and why, all
        of one instant, `computed_at` (ms). `known`: whether the node holds anything naming the agent (a vouch, an
        org's digest or its own observations, whether they count or not); false, the score is the cold start of a
        did it knows nothing of, which a known agent's low score is not. The explanation lists the 64 vouches that
        lift it most and the 64 orgs whose evidence counts most (heaviest first, ties by did), with
        `vouches_complete`/`orgs_complete` false and `vouches_total`/`orgs_total` counting them all if there are
        more. Each org part carries what it counts (`counted_good`, `counted_bad`, `counted_reports`), which alpha,
        beta (less `uncorroborated_bad`: the bad of orgs below the witness weight that others do not corroborate) and
        the recent bad reports sum exactly when every part is listed. An org's did (one nothing names as an agent) is
        409 `not_an_agent`."""
        agent_did(trust, checked_did(did, "path.did"))
        return score_answer(trust, key, did, explain=explain, statement=statement)

    @router.post(CHECK_PATH, responses={**error_responses(), **_NOT_AN_AGENT})
    async def check(did: Did, body: CheckRequest, issuer: Annotated[str | None, Query(
            min_length=1, description="The org key (did:key) that issued the caller's credential")] = None,
    ) -> dict[str, Any]:
        """May this agent do this? `allow`, `audit` (allow and log) or `block`, with the reason, under this node's
        policy: tier verdicts, a minimum score, and high-risk tools that need `trusted`. The score is the agent's,
        with the vouches whose scope names `tool` (a tool in `scopes`, the tools the agent holds scoped vouches
        for; its general score, `GET .../score`, counts none of them). `issuers`: the org keys whose agent
        credentials stand for the agent (this node's org's, then those of each org with a live operator vouch for it,
        but an org proven to equivocate, the orgs this node weighs most first, ties by did: keys no one vouches for,
        which anyone can make, come last; the first 64, `issuers_complete` false if there are more); a caller
        presenting another issuer's credential for it is decided on `cold_start`, the score of an agent nothing
        names, by the node when the check names the credential's `issuer`: `issuer_operates` says whether that key
        is among them all, listed or not, and, false, `decision` and `reason` are the cold start's (the reason says
        so first), while `score` and `tier` stay the agent's (a node before 2026-11-30 decided on the agent's score
        whatever the issuer). An org's did (one nothing names as an agent) is 409 `not_an_agent`."""
        agent_did(trust, checked_did(did, "path.did"))
        if (problem := tool_name_problem(body.tool)) is not None:
            raise ApiError(422, "invalid_request", f"body.{problem}")
        if issuer is not None:
            checked_did(issuer, "query.issuer")
        decision, score, scopes, issuers = trust.check(did, body.action, body.tool, issuer)
        return {"decision": decision.decision, "reason": decision.reason, "score": score.score, "tier": score.tier,
                **listed_scopes(scopes), **listed_issuers(issuers), "cold_start": trust.engine.cold_score,
                **({} if issuer is None else {"issuer_operates": issuer in issuers})}

    @router.get("/v1/policy")
    async def policy() -> dict[str, Any]:
        """The policy `POST /v1/agents/{did}/check` applies (tier verdicts, `[scoring] min_score` and
        `high_risk_tools`, the tier high-risk tools need): the SDK's TrustPolicy applies it as a floor, on cached
        scores too."""
        return trust.policy.as_dict()

    @router.get("/v1/orgs", responses=read_responses(422))
    async def orgs(
        after: Annotated[str | None, Query(max_length=MAX_DID, description="The `next` of the previous page")] = None,
        limit: PageLimit = DEFAULT_PAGE,
    ) -> dict[str, Any]:
        """The orgs this node knows, in did order, with their reputation, credibility, accountability and who
        vouches for them (`vouched_by`: the 64 vouches bringing most reputation, with `vouched_by_complete` and
        `vouched_by_total`); `next` is the cursor of the following page (the last org's did), null on the last. An
        org heard of while paging appears if its did sorts after the page being read."""
        if after is not None:
            checked_did(after, "query.after")
        page = trust.orgs(after=after, limit=limit + 1)
        return {"orgs": page[:limit], "next": page[limit - 1]["org"] if len(page) > limit else None}

    @router.get("/v1/orgs/{did}", responses=read_responses(422))
    async def org(did: Annotated[str, Path(min_length=1, description="The org's did:key")]) -> dict[str, Any]:
        """One org as this node sees it, explained (`vouched_by` as in `GET /v1/orgs`)."""
        checked_did(did, "path.did")
        return trust.org(did)

    return router


_ANSWER = TypeAdapter(dict[str, Any])
_SCORE_PATH = re.compile(r"/v1/agents/([^/]{1,%d})/score" % MAX_DID)
_FLAGS = {"explain": True, "statement": False}  # the query flags and their defaults


class ScoreFastPath:
    """ASGI middleware: answers `GET /v1/agents/{did}/score` with a valid did and flags given as `true` or
    `false` (or not at all) as the route would: score_answer, serialised as FastAPI does (pydantic's JSON, with
    non-finite floats as null). Every other request, these with anything unusual included, goes to the app,
    which answers or refuses it as documented."""

    def __init__(self, app: ASGIApp, trust: TrustService, key: SigningKey) -> None:
        self.app = app
        self.trust = trust
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self._answer(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        body = _ANSWER.dump_json(answer, by_alias=True)  # as FastAPI serialises a dict[str, Any] it returns
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    def _answer(self, scope: Scope) -> dict[str, Any] | None:
        match = _SCORE_PATH.fullmatch(scope["path"])
        if match is None:
            return None
        flags = dict(_FLAGS)
        given = set()
        for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            if name not in flags or name in given or value not in BOOLEANS:
                return None  # unknown, repeated or not plainly true/false: the route decides
            given.add(name)
            flags[name] = BOOLEANS[value]
        did = match.group(1)
        try:
            public_key_from_did(did)
        except InvalidDid:
            return None  # the route's 422
        if self.trust.org_not_agent(did) is not None:
            return None  # the route's 409
        return score_answer(self.trust, self.key, did, **flags)
