"""Accepted records into the trust engine: one function that maps each record kind onto `TrustEngine` inputs, each
org key as the org it belongs to (DESIGN.md §2 key rotation, vouching.succession)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .bodies import DigestBody, EquivocationBody, OrgBody, RevokeBody, VouchBody
from .evidence import Outcomes
from .records import Record
from .scoring import TrustEngine


def outcomes_of(counts: Mapping[str, int]) -> Outcomes:
    """A digest's outcome counts (its `outcomes` or `high_risk` map) as the engine's Outcomes."""
    return Outcomes(ok=counts["ok"], error=counts["error"], denied=counts["denied"], timeout=counts["timeout"])


def feed_record(engine: TrustEngine, record: Record, identity: Callable[[str], str]) -> str | None:
    """Give the engine what an accepted record says (DESIGN.md §6); the agent whose evidence or vouches it changed,
    if any (org-level changes are counted in `engine.org_changes` instead). `org` records carry nothing to score;
    the node's own digests add nothing (the engine holds what they count as first-hand evidence, and drops them:
    they are skipped here before their inputs are built).

    `identity` names the org of a key (Succession.identity): issuers, org-peer subjects and offenders are fed as
    their org, so that the engine counts linked keys as one org; agents are not keys and are fed as they are. An
    org-peer vouch between two keys of one org says nothing and is skipped.

    A revocation is dated by its key's chain (TrustEngine.chain_time), every record of another org's keys moving that
    clock on, and a rotation's two records carrying it to the org's next key (TrustEngine.chain_rotation); this node's
    own org's are not clocked (the node counts its own digests apart, and its own org's accountability is 1 at the
    node whatever it vouched for)."""
    body = record.body
    issuer = identity(record.iss)
    at = record.ts
    if issuer != engine.own_org:
        at = engine.chain_time(record.iss, record.ts)
        if isinstance(body, OrgBody) and body.next is not None:
            engine.chain_rotation(record.iss, body.next, by=record.iss)
        if isinstance(body, OrgBody) and body.prior is not None:
            engine.chain_rotation(body.prior, record.iss, by=record.iss)
    if isinstance(body, VouchBody):
        if body.basis == "org-peer":
            subject = identity(body.subject)
            if subject != issuer:
                engine.add_org_vouch(issuer, subject, body.weight, record_id=record.id, ts=record.ts,
                                     expires=body.expires)
            return None
        engine.add_agent_vouch(issuer, body.subject, body.weight, body.basis, record_id=record.id,
                               ts=record.ts, expires=body.expires, scope=body.scope)
        return body.subject
    if isinstance(body, RevokeBody):
        return engine.revoke(issuer, body.record, ts=at)
    if isinstance(body, DigestBody) and issuer != engine.own_org:
        engine.add_digest(issuer, body.agent, epoch=body.epoch, length=body.length,
                          outcomes=outcomes_of(body.outcomes), high_risk=outcomes_of(body.high_risk),
                          record_id=record.id, ts=record.ts, dp_epsilon=body.dp_epsilon)
        return body.agent
    if isinstance(body, EquivocationBody) and (offender := identity(body.offender)) != engine.own_org:
        engine.flag_equivocator(offender)
    return None
