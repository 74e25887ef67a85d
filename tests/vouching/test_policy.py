"""Trust policy: tier verdicts, a minimum score, and high-risk tools that need a trusted agent."""

import pytest

from vouching.explanation import Score
from vouching.policy import DEFAULT_POLICY, Policy, decide
from vouching.tiers import tier_of


def _score(value: int) -> Score:
    return Score("did:key:agent", value, tier_of(value), 0.5, 0)


@pytest.mark.parametrize(("value", "verdict"), [(900, "allow"), (650, "allow"), (300, "audit"), (150, "block")])
def test_default_verdicts_follow_the_tier(value, verdict):
    decision = decide(_score(value), "tool_call", "search")
    assert decision.decision == verdict
    assert tier_of(value) in decision.reason and str(value) in decision.reason


@pytest.mark.parametrize("tool", ["shell", "Shell", "deploy", "payments.refund", "email_send", "shell:run"])
def test_high_risk_tools_need_a_trusted_agent(tool):
    assert decide(_score(450), "tool_call", tool).decision == "block"
    assert "high-risk" in decide(_score(450), "tool_call", tool).reason
    assert decide(_score(550), "tool_call", tool).decision == "allow"


def test_a_high_risk_action_without_a_tool_is_high_risk_too():
    assert decide(_score(450), "deploy").decision == "block"


def test_ordinary_tools_that_merely_contain_a_risky_word_are_not_high_risk():
    assert decide(_score(450), "tool_call", "shellfish-facts").decision == "audit"


def test_a_minimum_score_blocks_even_a_tier_that_would_allow():
    policy = Policy(min_score=700)
    decision = decide(_score(650), "tool_call", "search", policy)
    assert decision.decision == "block" and "minimum 700" in decision.reason


def test_a_policy_can_raise_the_tier_high_risk_tools_need_and_name_its_own_tools():
    policy = Policy(high_risk_tools=frozenset({"Wire"}), high_risk_tier="verified")
    assert decide(_score(750), "tool_call", "wire.send", policy).decision == "block"
    assert decide(_score(850), "tool_call", "wire.send", policy).decision == "allow"
    assert decide(_score(750), "tool_call", "shell", policy).decision == "allow"


def test_a_policy_can_map_tiers_to_other_verdicts():
    strict = Policy(tiers={"verified": "allow", "trusted": "audit", "provisional": "block", "untrusted": "block"})
    assert decide(_score(650), "tool_call", "search", strict).decision == "audit"
    assert decide(_score(300), "tool_call", "search", strict).decision == "block"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tiers": {"verified": "allow"}}, "tiers"),
        ({"tiers": {"verified": "yes", "trusted": "allow", "provisional": "audit", "untrusted": "block"}},
         "tiers\\[verified\\]"),
        ({"min_score": 1001}, "min_score"),
        ({"high_risk_tier": "gold"}, "tier"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Policy(**kwargs)


def test_the_default_policy_lists_the_usual_high_risk_tools():
    assert {"shell", "deploy", "payments", "email"} <= DEFAULT_POLICY.high_risk_tools
