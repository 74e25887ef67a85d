"""Trust policy (issue 3, item 2): may this agent do that? A score, an action and a tool in; allow, audit or block
out, with the reason in plain words."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from vouching.explanation import Score
from vouching.schema import InvalidRecord, text
from vouching.tiers import TIERS, tier_rank

Verdict = Literal["allow", "audit", "block"]
VERDICTS: tuple[Verdict, ...] = ("allow", "audit", "block")

DEFAULT_TIER_VERDICTS: Mapping[str, Verdict] = MappingProxyType(
    {"verified": "allow", "trusted": "allow", "provisional": "audit", "untrusted": "block"}
)
MAX_TOOL_NAME = 256  # characters: the longest tool name a check takes (a scope names tools of at most 128)
DEFAULT_HIGH_RISK_TOOLS = frozenset(
    {"shell", "exec", "deploy", "payments", "payment", "transfer", "email", "sms", "delete", "database-write",
     "secrets", "iam"}
)


@functools.lru_cache(maxsize=4096)  # a service names a few tools, checked on every call; bounded against a flood
def words(name: str) -> tuple[str, ...]:
    """The words of a tool or action name, case-folded: split at every character that is not a letter or a digit
    (`:` `.` `/` `_` `-` whitespace …), between letters and digits, and at camelCase boundaries (`sendEmail`,
    `HTTPRequest` → `http`, `request`)."""
    found: list[str] = []
    start = None
    for i, char in enumerate(name):
        if not char.isalnum():
            if start is not None:
                found.append(name[start:i])
            start = None
            continue
        if start is not None and _boundary(name[i - 1], char, name[i + 1] if i + 1 < len(name) else ""):
            found.append(name[start:i])
            start = i
        elif start is None:
            start = i
    if start is not None:
        found.append(name[start:])
    return tuple(word.casefold() for word in found)


def _boundary(before: str, char: str, after: str) -> bool:
    """Whether a word ends between `before` and `char` (both letters or digits)."""
    if before.isdigit() != char.isdigit():
        return True
    if char.isupper():
        # `sendEmail`: lower then upper; `HTTPRequest`: the last capital of a run starts the next word
        return not before.isupper() or after.isalpha() and not after.isupper()
    return False


@dataclass(frozen=True)
class Policy:
    """Tier → verdict, a minimum score, and the high-risk tools that need at least `high_risk_tier`.

    A tool or action is high-risk when the words of one of `high_risk_tools` appear, in order and next to each
    other, among the words of its name (`words`: case-insensitive, split at punctuation, digits and camelCase):

    ===================  ========================================  ========================================
    high_risk_tools has  name                                      high-risk
    ===================  ========================================  ========================================
    shell                shell, Shell, shell:run, run_shell        yes
    email                sendEmail, email.send, SMTP_Email         yes
    exec                 exec-command, execCommand                 yes
    payments             payments.refund, refund payments          yes
    sms                  sms2, SMSGateway                          yes
    send_email           send-email, sendEmail, gmail/send_email2  yes
    send_email           email.send, send, resend_email            no: the words in another order, or one of two
    shell                shellfish-facts, eggshell                 no: a word of its own, not a part of one
    exec                 execute_query                             no
    ===================  ========================================  ========================================

    A name in `high_risk_tools` must have at least one letter or digit.
    """

    tiers: Mapping[str, Verdict] = field(default_factory=lambda: DEFAULT_TIER_VERDICTS)
    min_score: int = 0
    high_risk_tools: frozenset[str] = DEFAULT_HIGH_RISK_TOOLS
    high_risk_tier: str = "trusted"
    # high_risk_tools by first word: a name is matched in one pass over its words
    _by_first_word: Mapping[str, list[tuple[str, tuple[str, ...]]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if set(self.tiers) != set(TIERS):
            raise ValueError(f"tiers: must give a verdict for each of {', '.join(TIERS)}; {_tiers_amiss(self.tiers)}")
        for tier, verdict in self.tiers.items():
            if verdict not in VERDICTS:
                raise ValueError(f"tiers[{tier}]: must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        if type(self.min_score) is not int or not 0 <= self.min_score <= 1000:
            raise ValueError(f"min_score: must be an integer 0..1000, got {self.min_score!r}")
        if not isinstance(self.high_risk_tier, str) or self.high_risk_tier not in TIERS:
            raise ValueError(f"high_risk_tier: must be one of {', '.join(TIERS)}, got {self.high_risk_tier!r}")
        by_first_word: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        for tool in sorted(self.high_risk_tools, key=str):  # sorted: one name, one answer, whatever the set's order
            if not isinstance(tool, str) or not (tool_words := words(tool)):
                raise ValueError(f"high_risk_tools: {tool!r} is not a tool name (it needs a letter or a digit)")
            by_first_word.setdefault(tool_words[0], []).append((tool, tool_words))
        # kept as given, not case-folded: `sendEmail` is two words, `sendemail` one
        object.__setattr__(self, "high_risk_tools", frozenset(self.high_risk_tools))
        object.__setattr__(self, "tiers", MappingProxyType(dict(self.tiers)))
        object.__setattr__(self, "_by_first_word", MappingProxyType(by_first_word))

    def high_risk_name(self, name: str | None) -> str | None:
        """The entry of `high_risk_tools` that makes `name` high-risk (see the class docstring), or None."""
        found = words(name) if name else ()
        for i, word in enumerate(found):
            for tool, tool_words in self._by_first_word.get(word, ()):
                if found[i:i + len(tool_words)] == tool_words:
                    return tool
        return None

    def is_high_risk(self, name: str | None) -> bool:
        return self.high_risk_name(name) is not None

    def as_dict(self) -> dict[str, Any]:
        """The policy as JSON values (`GET /v1/policy`, DESIGN §8), which `from_dict` reads back."""
        return {"tiers": dict(self.tiers), "min_score": self.min_score,
                "high_risk_tools": sorted(self.high_risk_tools), "high_risk_tier": self.high_risk_tier}

    @classmethod
    def from_dict(cls, value: object) -> Policy:
        """The policy `as_dict` gave; ValueError naming the field for anything else, a rule this version does not
        know included (applying the rest would be more permissive than the policy that was meant)."""
        if not isinstance(value, Mapping):
            raise ValueError("policy: must be an object")
        if unknown := sorted(set(value) - _POLICY_FIELDS, key=str):
            raise ValueError(f"policy.{unknown[0]}: a rule this version does not know")
        if missing := sorted(_POLICY_FIELDS - set(value)):
            raise ValueError(f"policy.{missing[0]}: missing")
        tiers, tools = value["tiers"], value["high_risk_tools"]
        if not isinstance(tiers, Mapping):
            raise ValueError("tiers: must be an object of tier: verdict")
        if not isinstance(tools, list):
            raise ValueError("high_risk_tools: must be a list of tool names")
        for tool in tools:
            if not isinstance(tool, str):  # before the frozenset: a list in the list is not even hashable
                raise ValueError(f"high_risk_tools: {tool!r} is not a tool name")
        return cls(tiers=tiers, min_score=value["min_score"], high_risk_tools=frozenset(tools),
                   high_risk_tier=value["high_risk_tier"])


def _tiers_amiss(tiers: Mapping[str, Verdict]) -> str:
    """What is wrong with the keys of `tiers`: those not a tier (a tier is named in lower case), the tiers missing."""
    unknown = ", ".join(sorted(repr(key) for key in set(tiers) - set(TIERS)))
    missing = ", ".join(tier for tier in TIERS if tier not in tiers)
    return "; ".join(f"{what}: {keys}" for what, keys in (("not tiers", unknown), ("missing", missing)) if keys)


_POLICY_FIELDS = frozenset({"tiers", "min_score", "high_risk_tools", "high_risk_tier"})


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
    risky = next((f"{name} is high-risk ({listed})" for name in _names(action, tool)
                  if (listed := policy.high_risk_name(name)) is not None), None)
    if risky and tier_rank(score.tier) < tier_rank(policy.high_risk_tier):
        needs = f"needs tier {policy.high_risk_tier} or better"
        return Decision("block", f"{risky} and {needs}; the agent is {score.tier} (score {score.score})")
    verdict = policy.tiers[score.tier]
    reason = f"tier {score.tier} (score {score.score}) → {verdict} for {what}"
    if risky:
        reason += f"; {risky} and the tier is high enough"
    return Decision(verdict, reason)


def tool_name_problem(tool: str | None) -> str | None:
    """Why a check cannot take `tool` (None: it can): a tool is named by printable text of 1 to MAX_TOOL_NAME
    characters, by the rule a vouch's scope names tools by (vouching.schema.text); no scope could name another,
    and a reason would echo it."""
    if tool is None:
        return None
    try:
        text(tool, "tool", MAX_TOOL_NAME)
    except InvalidRecord as error:
        return f"{error} (no control, format or surrogate characters), as the tools a vouch's scope names are"
    return None


def _names(action: str, tool: str | None) -> Iterable[str]:
    yield action
    if tool:
        yield tool
