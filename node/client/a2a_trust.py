"""Trust at the A2A boundary (DESIGN §8): may this agent hand us a task, and may we hand one to that agent?"""

from __future__ import annotations

from ._log import log
from .policy import TrustDecision, TrustPolicy

ACCEPT_TASK = "accept_task"
DELEGATE = "delegate"


class A2ATrust:
    """Decisions for A2A delegation under `policy` (its tiers, minimum score, fail-closed and observe rules)."""

    def __init__(self, policy: TrustPolicy) -> None:
        self.policy = policy

    async def verify_incoming(self, agent: str, task_id: str) -> TrustDecision:
        """May `agent` (a verified did) send us task `task_id`?"""
        decision = await self.policy.acheck(agent, ACCEPT_TASK)
        log.info("a2a incoming", extra={"fields": {"agent": agent, "task": task_id, "verdict": decision.verdict,
                                                   "enforced": decision.enforced}})
        return decision

    async def verify_outgoing(self, target: str, issuer: str | None = None) -> TrustDecision:
        """May we delegate work to `target` (a verified did), whose credential `issuer` issued (decided on the
        cold-start score unless that org operates it: TrustPolicy.check)?"""
        return await self.policy.acheck(target, DELEGATE, issuer=issuer)
