"""The targets T1–T9 of issue 3 (item 5), measured on a suite's runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from testnet.sim.metrics import attacker_reputation, separation, slander_curve, summary
from testnet.sim.suite import SuiteResult
from vouching.counts import counted
from vouching.tiers import TRUSTED, VERIFIED, tier_rank

GOALS = {
    "T1": "with up to 70% malicious orgs (threat models A and B), <= 2% of interactions go to malicious agents",
    "T2": "camouflage (threat model C), worst case over f: <= 5% of interactions go wrong because of malicious "
          "agents",
    "T3": "30% colluding orgs + Sybils, g <= 30: no malicious agent reaches trusted; 10x more Sybils moves the "
          "attackers' total reputation by < 1% relative",
    "T4": "AUC(honest vs malicious agents) >= 0.95 in every scenario and on Bitcoin OTC",
    "T5": "an agent that turns bad drops below trusted after one bad digest and below provisional within four "
          "(digests from orgs whose word alone can trigger the recent-misbehaviour rule)",
    "T6": "an on-off agent never reaches trusted (once its misbehaviour has been reported by an org the node "
          "can act on, or seen first-hand)",
    "T7": ">= 95% of honest agents with >= 30 interactions across >= 3 orgs reach trusted; an agent seen by one "
          "org alone never reaches verified",
    "T8": "slander by 30% of orgs pushes <= 1% of honest agents below trusted",
    "T9": "a fresh identity never scores above the trusted identity it discards",
}


@dataclass(frozen=True)
class Target:
    id: str
    goal: str
    value: dict[str, float | None]
    passed: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(suite: SuiteResult) -> list[Target]:
    """Every target the suite has the runs for."""
    out = []
    for check in (_t1, _t2, _t3, _t4, _t5, _t6, _t7, _t8, _t9):
        target = check(suite)
        if target is not None:
            out.append(target)
    return out


def _family(suite: SuiteResult, *families: str) -> dict[str, Any]:
    return {name: run for name, run in suite.runs.items() if suite.scenarios[name].family in families}


def _t1(suite: SuiteResult) -> Target | None:
    return _worst_share(suite, "T1", ("threat-a", "threat-b"), "to_malicious", 0.02)


def _t2(suite: SuiteResult) -> Target | None:
    return _worst_share(suite, "T2", ("threat-c",), "bad_from_malicious", 0.05)


def _worst_share(suite: SuiteResult, target: str, families: tuple[str, ...], figure: str, limit: float
                 ) -> Target | None:
    """The worst run of `families` by the interaction share `figure`, against `limit`."""
    shares = {name: summary(run)[figure] for name, run in _family(suite, *families).items()}
    if not shares:
        return None
    worst = max(shares, key=shares.__getitem__)
    return Target(target, GOALS[target], {"worst share": shares[worst]}, shares[worst] <= limit, f"worst: {worst}")


def _t3(suite: SuiteResult) -> Target | None:
    runs = {name: run for name, run in _family(suite, "sybil").items() if suite.scenarios[name].parameter <= 30}
    pair = _family(suite, "sybil-x1", "sybil-x10")
    if not runs or len(pair) != 2:
        return None
    trusted = max(max(run.trusted_malicious, default=0) for run in runs.values())
    x1, x10 = (attacker_reputation(pair[n]) for n in sorted(pair, key=lambda n: suite.scenarios[n].family))
    change = abs(x10 - x1) / x1 if x1 else (0.0 if x10 == x1 else None)  # None: up from nothing, no ratio to it
    return Target("T3", GOALS["T3"], {"malicious agents trusted": trusted, "reputation change x10": change},
                  trusted == 0 and change is not None and change < 0.01,
                  f"attackers' reputation {x1:.4g} -> {x10:.4g}")


def _t4(suite: SuiteResult) -> Target | None:
    values = {name: separation(run) for name, run in suite.runs.items()}
    values.update({name: result.auc for name, result in suite.otc.items()})
    values = {name: v for name, v in values.items() if v is not None}
    if not values:
        return None
    worst = min(values, key=values.__getitem__)
    return Target("T4", GOALS["T4"], {"worst auc": values[worst]}, values[worst] >= 0.95, f"worst: {worst}")


def _t5(suite: SuiteResult) -> Target | None:
    runs = _family(suite, "turned-bad", "vouch-then-defect")
    drops = [(run.drops.get(agent, (None, None)), seen) for run in runs.values()
             for agent, seen in run.bad_digests.items()]
    if not drops:
        return None
    # An agent that got n bad digests without crossing a line took more than n (n + 1 at least).
    to_trusted = max((below if below is not None else seen + 1) for (below, _), seen in drops)
    judged = [(below, seen) for (_, below), seen in drops if below is not None or seen >= 4]
    to_provisional = max(((below if below is not None else seen + 1) for below, seen in judged), default=None)
    passed = to_trusted <= 1 and (to_provisional is None or to_provisional <= 4)
    return Target("T5", GOALS["T5"], {"bad digests to below trusted": to_trusted,
                                      "bad digests to below provisional": to_provisional}, passed,
                  f"{counted(len(drops), 'agent')} turned bad; {len(judged)} got four bad digests or fell below "
                  "provisional")


def _t6(suite: SuiteResult) -> Target | None:
    runs = _family(suite, "on-off")
    values = [score for run in runs.values() for score in run.max_after_first_bad.values()]
    if not values:
        return None
    return Target("T6", GOALS["T6"], {"highest score after misbehaving": max(values)}, max(values) < TRUSTED,
                  counted(len(values), "on-off agent"))


def _t7(suite: SuiteResult) -> Target | None:
    runs = _family(suite, "private", "slander-baseline")
    if not runs:
        return None
    eligible = reached = 0
    for run in runs.values():
        for agent, score in run.final_scores.items():
            if run.malicious[agent] or run.evidence_count.get(agent, 0) < 30:
                continue
            if len(run.evidence_orgs.get(agent, ())) >= 3:
                eligible += 1
                reached += score >= TRUSTED
    share = reached / eligible if eligible else None
    one_org = [run.max_tier.get(agent, 0) for run in _family(suite, "private").values()
               for agent in run.trajectories if len(run.evidence_orgs.get(agent, ())) <= 1]
    verified = sum(rank >= tier_rank("verified") for rank in one_org)
    passed = share is not None and share >= 0.95 and verified == 0
    return Target("T7", GOALS["T7"], {"honest share trusted": share, "one-org agents verified": verified}, passed,
                  f"{counted(eligible, 'honest agent')} eligible; {counted(len(one_org), 'agent')} seen by one org "
                  f"alone (verified from {VERIFIED})")


def _t8(suite: SuiteResult) -> Target | None:
    lying, baseline = _family(suite, "slander"), _family(suite, "slander-baseline")
    if not lying or not baseline:
        return None
    shares = slander_curve(next(iter(lying.values())), next(iter(baseline.values())))
    worst = int(np.argmax(shares))
    settled = next((r for r in range(len(shares)) if max(shares[r:]) <= 0.01), len(shares))
    return Target("T8", GOALS["T8"], {"pushed below trusted (worst round)": shares[worst],
                                      "pushed below trusted (end)": shares[-1]}, shares[worst] <= 0.01,
                  f"honest agents trusted where the slanderers stay silent, below trusted where they lie, on the "
                  f"same interactions: worst in round {worst}, at most 1% from round {settled} on")


def _t9(suite: SuiteResult) -> Target | None:
    runs = _family(suite, "whitewash")
    switches = [s for run in runs.values() for s in run.switches]
    if not switches:
        return None
    trusted = [s for s in switches if s.old_score >= TRUSTED]
    misbehaved = [s for s in switches if s.old_score < TRUSTED]
    gain = max((s.fresh_score - s.old_score for s in trusted), default=None)
    after = max((s.fresh_score - s.old_score for s in misbehaved), default=None)
    return Target("T9", GOALS["T9"], {"fresh minus discarded (trusted)": gain,
                                      "fresh minus discarded (after misbehaving)": after},
                  gain is None or gain <= 0,
                  f"{len(trusted)} trusted identities discarded; {len(misbehaved)} discarded after misbehaving "
                  f"(mean fresh {np.mean([s.fresh_score for s in switches]):.0f})")
