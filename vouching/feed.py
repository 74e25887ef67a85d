"""Accepted records into the trust engine: one function that maps each record kind onto `TrustEngine` inputs."""

from __future__ import annotations

from collections.abc import Mapping

from .bodies import DigestBody, EquivocationBody, RevokeBody, VouchBody
from .evidence import Outcomes
from .records import Record
from .scoring import TrustEngine


def outcomes_of(counts: Mapping[str, int]) -> Outcomes:
    """A digest's outcome counts (its `outcomes` or `high_risk` map) as the engine's Outcomes."""
    return Outcomes(ok=counts["ok"], error=counts["error"], denied=counts["denied"], timeout=counts["timeout"])


def feed_record(engine: TrustEngine, record: Record) -> str | None:
    """Give the engine what an accepted record says (DESIGN.md §6); the agent whose evidence or vouches it changed,
    if any (org-level changes are counted in `engine.org_changes` instead). `org` records carry nothing to score;
    the node's own digests add nothing (the engine holds what they count as first-hand evidence, and drops them:
    they are skipped here before their inputs are built)."""
    body = record.body
    if isinstance(body, VouchBody):
        if body.basis == "org-peer":
            engine.add_org_vouch(record.iss, body.subject, body.weight, record_id=record.id, ts=record.ts,
                                 expires=body.expires)
            return None
        engine.add_agent_vouch(record.iss, body.subject, body.weight, body.basis, record_id=record.id,
                               ts=record.ts, expires=body.expires, scope=body.scope)
        return body.subject
    if isinstance(body, RevokeBody):
        return engine.revoke(record.iss, body.record, ts=record.ts)
    if isinstance(body, DigestBody) and record.iss != engine.own_org:
        engine.add_digest(record.iss, body.agent, epoch=body.epoch, length=body.length,
                          outcomes=outcomes_of(body.outcomes), high_risk=outcomes_of(body.high_risk),
                          record_id=record.id, ts=record.ts)
        return body.agent
    if isinstance(body, EquivocationBody) and body.offender != engine.own_org:
        engine.flag_equivocator(body.offender)
    return None
