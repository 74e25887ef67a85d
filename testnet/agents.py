"""Simulated agents on a testnet: their identities (fresh did:keys, which whitewashing replaces), how they behave
over time (the trust simulator's behaviour models, with rounds of `round_seconds`), and the behaviour events an org
reports about them (`POST /v1/events`, node/events.py's schema).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from nacl.signing import SigningKey

from testnet.sim.behaviour import OUTCOMES, Behaviour, Camouflage, Honest, Malicious, OnOff, TurnedBad
from vouching import did_key

from .plan import AgentPlan
from .scenario import Behaviour as BehaviourSpec
from .scenario import Traffic

HIGH_RISK_TOOL = "shell"  # in vouching.policy's default high-risk list
TOOL = "search"


def new_agent_did() -> str:
    """A fresh agent identity: the did:key of a new Ed25519 key (the testnet never signs as an agent)."""
    return did_key(bytes(SigningKey.generate().verify_key))


def behaviour_model(spec: BehaviourSpec, round_seconds: float) -> Behaviour:
    """The simulator's model for a scenario's behaviour, its seconds turned into rounds."""
    def rounds(seconds: float) -> int:
        return max(1, round(seconds / round_seconds))

    if spec.model == "honest":
        return Honest()
    if spec.model == "malicious":
        return Malicious()
    if spec.model == "on-off":
        return OnOff(on=rounds(spec.on), off=rounds(spec.off))
    if spec.model == "turned-bad":
        return TurnedBad(at=round(spec.at / round_seconds))
    return Camouflage(f=spec.good_share)


@dataclass
class Agent:
    """One agent while the run goes on: its current identity, and the ones it discarded."""

    plan: AgentPlan
    model: Behaviour
    did: str = field(default_factory=new_agent_did)
    former: list[str] = field(default_factory=list)

    def whitewash(self) -> str:
        """Discard the identity for a fresh one; returns the new did."""
        self.former.append(self.did)
        self.did = new_agent_did()
        return self.did


def event(agent: str, outcome: str, ts_ms: int, high_risk: bool, rng: np.random.Generator) -> dict:
    return {"agent": agent, "ts": ts_ms, "category": "tool", "name": HIGH_RISK_TOOL if high_risk else TOOL,
            "outcome": outcome, "high_risk": high_risk, "duration_ms": round(float(rng.gamma(2.0, 40.0)), 1)}


def observed(agent: Agent, round_: int, ts_ms: int, traffic: Traffic, rng: np.random.Generator) -> list[dict]:
    """What the agent did at one org in one round, as that org's honest operator reports it."""
    return [event(agent.did, OUTCOMES[agent.model.outcome(round_, rng)], ts_ms,
                  bool(rng.random() < traffic.high_risk_share), rng) for _ in range(traffic.events_per_round)]


def fabricated(agent: Agent, outcome: str, ts_ms: int, traffic: Traffic, rng: np.random.Generator) -> list[dict]:
    """Events an attacking org invents about the agent: praise (all `ok`) or slander (all `denied`)."""
    return [event(agent.did, outcome, ts_ms, bool(rng.random() < traffic.high_risk_share), rng)
            for _ in range(traffic.events_per_round)]
