"""Scores and decisions from this node's point of view (DESIGN.md §6, §8): an agent's score with its explanation
(and, on request, a signed statement), a policy check for an action, and the orgs' reputations.

An unknown agent is not an error: it gets the cold-start score. `POST .../check` changes nothing, so it needs no
token (node.api.app lists it among the open paths).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from nacl.signing import SigningKey
from pydantic import BaseModel, ConfigDict, Field

from vouching import InvalidDid, public_key_from_did

from ..credentials import score_statement
from ..trust import TrustService
from .errors import ApiError

CHECK_PATH = "/v1/agents/{did}/check"


Did = Annotated[str, Path(min_length=1, max_length=64, description="The agent's did:key")]


def _checked(did: str, field: str) -> str:
    try:
        public_key_from_did(did)
    except InvalidDid as e:
        raise ApiError(422, "invalid_request", f"{field}: not an Ed25519 did:key ({e})") from None
    return did


class CheckRequest(BaseModel):
    """What the agent wants to do: an action (e.g. `tool_call`, `delegate`) and, for tool calls, the tool."""

    model_config = ConfigDict(extra="forbid", strict=True)
    action: str = Field(min_length=1, max_length=128)
    tool: str | None = Field(default=None, min_length=1, max_length=256)


def scores_router(trust: TrustService, key: SigningKey) -> APIRouter:
    """The score, check and org endpoints over `trust`; statements are signed with the org key `key`."""
    router = APIRouter(tags=["scores"])

    @router.get("/v1/agents/{did}/score")
    async def agent_score(
        did: Did,
        statement: Annotated[bool, Query(description="add a short-lived signed JWT of the score")] = False,
        explain: Annotated[bool, Query(description="add the explanation (several KB); false for the score alone")]
        = True,
    ) -> dict[str, Any]:
        """The agent's score 0–1000 and tier as this node sees it, how much evidence stands behind it, and why."""
        _checked(did, "path.did")
        score = trust.score(did)
        answer: dict[str, Any] = {
            "agent": did,
            "score": score.score,
            "tier": score.tier,
            "confidence": score.confidence,
            "computed_at": score.computed_at,
        }
        if explain:
            answer["explanation"] = trust.explain(did)
        if statement:
            answer["statement"] = score_statement(key, agent=did, score=score.score, tier=score.tier)
        return answer

    @router.post(CHECK_PATH)
    async def check(did: Did, body: CheckRequest) -> dict[str, Any]:
        """May this agent do this? `allow`, `audit` (allow and log) or `block`, with the reason, under this node's
        policy: tier verdicts, a minimum score, and high-risk tools that need `trusted`."""
        _checked(did, "path.did")
        decision, score = trust.check(did, body.action, body.tool)
        return {"decision": decision.decision, "reason": decision.reason, "score": score.score, "tier": score.tier}

    @router.get("/v1/orgs")
    async def orgs() -> dict[str, list[dict[str, Any]]]:
        """Every org this node knows, with its reputation, credibility, accountability and who vouches for it."""
        return {"orgs": trust.orgs()}

    @router.get("/v1/orgs/{did}")
    async def org(did: Did) -> dict[str, Any]:
        """One org as this node sees it, explained."""
        _checked(did, "path.did")
        return trust.org(did)

    return router
