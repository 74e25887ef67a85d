"""A2ATrust (DESIGN §8) against a real node: a task's sender is decided on its own standing only when the org that
issued its credential operates it."""

from __future__ import annotations

from node.client import A2ATrust, TrustPolicy
from vouching import did_key

from ..factories import new_did
from .running_node import on_asyncio


@on_asyncio
async def test_an_incoming_task_on_a_credential_of_an_org_not_operating_the_agent_is_decided_on_the_cold_start(
        running):
    """Any accepted org may sign a credential naming any did: a partner's credential for this org's trusted agent
    was decided on that agent's score, and its task accepted, where `Vouchnet.authorize` refused it. Given the
    issuer, as `verify_outgoing` is, the task is decided on the cold-start score; the operator's own credential
    still stands for the agent."""
    agent, _ = running.new_agent(trusted=True)
    policy = TrustPolicy(running.url, listen=False)
    trust = A2ATrust(policy)
    try:
        borrowed = await trust.verify_incoming(agent, "task-1", issuer=new_did())
        own = await trust.verify_incoming(agent, "task-2", issuer=did_key(bytes(running.node.key.verify_key)))
    finally:
        await policy.aclose()
    assert (borrowed.verdict, borrowed.operated, borrowed.tier) == ("block", False, "untrusted")
    assert "does not operate" in borrowed.reason
    assert (own.verdict, own.operated, own.tier) == ("allow", True, "trusted")
