"""Trust policy (issue 3, item 2): may this agent do that? A score, an action and a tool in; allow, audit or block
out, with the reason in plain words."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from vouching.explanation import Score
from vouching.tiers import TIERS, tier_rank

Verdict = Literal["allow", "audit", "block"]
VERDICTS: tuple[Verdict, ...] = ("allow", "audit", "block")

DEFAULT_TIER_VERDICTS: Mapping[str, Verdict] = MappingProxyType(
    {"verified": "allow", "trusted": "allow", "provisional": "audit", "untrusted": "block"}
)
DEFAULT_HIGH_RISK_TOOLS = frozenset(
    {"shell", "exec", "deploy", "payments", "payment", "transfer", "email", "sms", "delete", "database-write",
     "secrets", "iam"}
)
_SEGMENT = re.compile(r"[./:_\-\s]+")


@dataclass(frozen=True)
class Policy:
    """Tier → verdict, a minimum score, and the high-risk tools that need at least `high_risk_tier`.

    A tool or action is high-risk when its name, or its first segment (`payments.refund`, `shell:run`,
    `email_send`), is in `high_risk_tools`, case-insensitively.
    """

    tiers: Mapping[str, Verdict] = field(default_factory=lambda: DEFAULT_TIER_VERDICTS)
    min_score: int = 0
    high_risk_tools: frozenset[str] = DEFAULT_HIGH_RISK_TOOLS
    high_risk_tier: str = "trusted"

    def __post_init__(self) -> None:
        if set(self.tiers) != set(TIERS):
            raise ValueError(f"tiers: must give a verdict for each of {', '.join(TIERS)}")
        for tier, verdict in self.tiers.items():
            if verdict not in VERDICTS:
                raise ValueError(f"tiers[{tier}]: must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        if type(self.min_score) is not int or not 0 <= self.min_score <= 1000:
            raise ValueError(f"min_score: must be an integer 0..1000, got {self.min_score!r}")
        tier_rank(self.high_risk_tier)
        object.__setattr__(self, "high_risk_tools", frozenset(t.lower() for t in self.high_risk_tools))
        object.__setattr__(self, "tiers", MappingProxyType(dict(self.tiers)))

    def is_high_risk(self, name: str | None) -> bool:
        if not name:
            return False
        lowered = name.strip().lower()
        return lowered in self.high_risk_tools or _SEGMENT.split(lowered, maxsplit=1)[0] in self.high_risk_tools


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Decision:
    decision: Verdict
    reason: str


def decide(score: Score, action: str, tool: str | None = None, policy: Policy = DEFAULT_POLICY) -> Decision:
    """The verdict for `score.agent` doing `action` (with `tool`, if any) under `policy`, strictest rule first."""
    what = f"{action} with {tool}" if tool else action
    if score.score < policy.min_score:
        return Decision("block", f"score {score.score} is below this policy's minimum {policy.min_score}")
    risky = [name for name in _names(action, tool) if policy.is_high_risk(name)]
    if risky and tier_rank(score.tier) < tier_rank(policy.high_risk_tier):
        return Decision(
            "block",
            f"{risky[0]} is high-risk and needs tier {policy.high_risk_tier} or better; the agent is "
            f"{score.tier} (score {score.score})",
        )
    verdict = policy.tiers[score.tier]
    reason = f"tier {score.tier} (score {score.score}) → {verdict} for {what}"
    if risky:
        reason += f"; {risky[0]} is high-risk and the tier is high enough"
    return Decision(verdict, reason)


def _names(action: str, tool: str | None) -> Iterable[str]:
    yield action
    if tool:
        yield tool
