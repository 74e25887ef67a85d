"""What a simulation run measured: shares of interactions that went to (or went wrong because of) malicious
agents, separation of honest from malicious agents (AUC), attacker reputation, and the per-agent events the
targets need."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from testnet.sim.runner import RunResult
from vouching.tiers import TRUSTED

ATTACKER_ROLES = frozenset({"malicious", "sybil", "spy", "stuffer", "equivocator", "slanderer"})


def auc(positive: Iterable[float], negative: Iterable[float]) -> float | None:
    """P(a random positive scores above a random negative), ties counting half (Mann-Whitney); None if either
    side is empty."""
    pos = np.asarray(list(positive), dtype=float)
    neg = np.asarray(list(negative), dtype=float)
    if len(pos) == 0 or len(neg) == 0:
        return None
    # Mann-Whitney's U, counted pair by pair: negatives below each positive, and half those it ties with
    ordered = np.sort(neg)
    below, at_most = np.searchsorted(ordered, pos, side="left"), np.searchsorted(ordered, pos, side="right")
    return float((below.sum() + (at_most - below).sum() / 2) / (len(pos) * len(neg)))


def separation(result: RunResult) -> float | None:
    """AUC of the final scores, honest agents against malicious ones. Honest agents count once some org reported
    on them (before, they can only have their cold-start score); malicious ones count once they were seen
    misbehaving, or if nobody ever reported on them (they were kept out). A malicious agent seen only behaving
    well (one that has not turned yet) is indistinguishable from an honest one and is left out."""
    honest = [s for did, s in result.final_scores.items() if not result.malicious[did] and did in result.reported]
    malicious = [s for did, s in result.final_scores.items()
                 if result.malicious[did] and (did in result.exposed or did not in result.reported)]
    return auc(honest, malicious)


def attacker_reputation(result: RunResult) -> float:
    return float(sum(rep for org, rep in result.reputation.items() if result.roles.get(org) in ATTACKER_ROLES))


def slander_curve(lying: RunResult, silent: RunResult) -> list[float]:
    """Per round: the share of honest agents trusted in the run where the slanderers stay silent that are below
    trusted in the run where they lie (the same interactions in both). Agents the slanderers operate are left out."""
    slanderers = {org for org, role in lying.roles.items() if role == "slanderer"}
    shares = []
    for with_lies, without in zip(lying.round_scores, silent.round_scores):
        trusted = [a for a, s in without.items()
                   if s >= TRUSTED and not silent.malicious[a] and lying.operators[a] not in slanderers]
        shares.append(sum(with_lies.get(a, 0) < TRUSTED for a in trusted) / len(trusted) if trusted else 0.0)
    return shares


def summary(result: RunResult) -> dict[str, Any]:
    """The run's headline figures, JSON-ready."""
    total = sum(result.interactions)
    honest = [s for did, s in result.final_scores.items() if not result.malicious[did]]
    return {
        "rounds": result.rounds,
        "interactions": total,
        "to_malicious": sum(result.to_malicious) / total if total else 0.0,
        "bad_from_malicious": sum(result.bad_from_malicious) / total if total else 0.0,
        "auc": separation(result),
        "max_trusted_malicious": max(result.trusted_malicious, default=0),
        "attacker_reputation": attacker_reputation(result),
        "honest_below_trusted": float(np.mean([s < TRUSTED for s in honest])) if honest else 0.0,
        "agents": len(result.final_scores),
    }
