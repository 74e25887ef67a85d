"""Trust at the A2A boundary (DESIGN §8): may this agent hand us a task, and may we hand one to that agent?"""

from __future__ import annotations

from ._log import log
from .policy import TrustDecision, TrustPolicy

ACCEPT_TASK = "accept_task"
DELEGATE = "delegate"


class A2ATrust:
    """Decisions for A2A delegation under `policy` (its tiers, minimum score, fail-closed and observe rules).

    `issuer` is the org key that issued the other agent's credential (AgentIdentity.org): unless that org operates
    the agent, the decision is made on the cold-start score (TrustPolicy.check), as any org may sign a credential
    naming any did. Leave it out only for an agent proven by other means than a vouchnet credential."""

    def __init__(self, policy: TrustPolicy) -> None:
        self.policy = policy

    async def verify_incoming(self, agent: str, task_id: str, issuer: str | None = None) -> TrustDecision:
        """May `agent` (a verified did), whose credential `issuer` issued, send us task `task_id`?"""
        decision = await self.policy.acheck(agent, ACCEPT_TASK, issuer=issuer)
        log.info("a2a incoming", extra={"fields": {"agent": agent, "task": task_id, "verdict": decision.verdict,
                                                   "enforced": decision.enforced}})
        return decision

    async def verify_outgoing(self, target: str, issuer: str | None = None) -> TrustDecision:
        """May we delegate work to `target` (a verified did), whose credential `issuer` issued?"""
        return await self.policy.acheck(target, DELEGATE, issuer=issuer)
