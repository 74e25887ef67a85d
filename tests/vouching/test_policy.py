"""Trust policy: tier verdicts, a minimum score, and high-risk tools that need a trusted agent."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vouching.explanation import Score
from vouching.policy import (DEFAULT_HIGH_RISK_TOOLS, DEFAULT_POLICY, DEFAULT_TIER_VERDICTS, VERDICTS, Policy, decide,
                             words)
from vouching.tiers import TIERS, tier_of


def _score(value: int) -> Score:
    return Score("did:key:agent", value, tier_of(value), 0.5, 0)


@pytest.mark.parametrize(("value", "verdict"), [(900, "allow"), (650, "allow"), (300, "audit"), (150, "block")])
def test_default_verdicts_follow_the_tier(value, verdict):
    decision = decide(_score(value), "tool_call", "search")
    assert decision.decision == verdict
    assert tier_of(value) in decision.reason and str(value) in decision.reason


@pytest.mark.parametrize("tool", ["shell", "Shell", "deploy", "payments.refund", "email_send", "shell:run",
                                  "run_shell", "sendEmail", "exec-command", "db.delete", "IAMRoleUpdate"])
def test_high_risk_tools_need_a_trusted_agent(tool):
    assert decide(_score(450), "tool_call", tool).decision == "block"
    assert "high-risk" in decide(_score(450), "tool_call", tool).reason
    assert decide(_score(550), "tool_call", tool).decision == "allow"


def test_a_high_risk_action_without_a_tool_is_high_risk_too():
    assert decide(_score(450), "deploy").decision == "block"


@pytest.mark.parametrize("tool", ["shellfish-facts", "eggshell", "execute_query", "search", "emails"])
def test_ordinary_tools_that_merely_contain_a_risky_word_are_not_high_risk(tool):
    assert decide(_score(450), "tool_call", tool).decision == "audit"


def test_the_reason_names_the_listed_tool_that_matched():
    reason = decide(_score(450), "tool_call", "run_shell").reason
    assert reason.startswith("run_shell is high-risk (shell) and needs tier trusted")


def _table_rows() -> list[tuple[str, list[str], bool]]:
    """The rows of the table of examples in Policy's docstring: (listed name, names, high-risk?)."""
    lines = Policy.__doc__.splitlines()
    rules = [i for i, line in enumerate(lines) if line.strip().startswith("====")]
    rows = []
    for line in lines[rules[1] + 1:rules[2]]:
        listed, names, answer = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        rows.append((listed, names.split(", "), answer.startswith("yes")))
    return rows


@pytest.mark.parametrize(("listed", "names", "risky"), _table_rows())
def test_the_docstring_table_of_examples_is_true(listed, names, risky):
    policy = Policy(high_risk_tools=frozenset({listed}))
    assert [policy.is_high_risk(name) for name in names] == [risky] * len(names)


# two letters at least: camelCase cannot tell `aAA` (a, AA) from a, a, a
_WORD = st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8)
_SEPARATORS = st.sampled_from([":", ".", "/", "_", "-", " ", "\t", "::", "__"])


def _camel(parts: list[str]) -> str:
    return parts[0] + "".join(part.capitalize() for part in parts[1:])


@given(st.lists(_WORD, min_size=1, max_size=5), _SEPARATORS)
def test_words_undo_any_separator_and_camel_case(parts, separator):
    assert words(separator.join(parts)) == tuple(parts)
    assert words(_camel(parts)) == tuple(parts)
    assert words(separator.join(part.upper() for part in parts)) == tuple(parts)


@given(st.lists(_WORD, max_size=3), st.sampled_from(sorted(DEFAULT_HIGH_RISK_TOOLS)), st.lists(_WORD, max_size=3),
       _SEPARATORS, st.booleans())
def test_a_listed_name_among_other_words_is_high_risk_however_they_are_joined(before, listed, after, separator,
                                                                             camel):
    parts = [*before, *words(listed), *after]
    name = _camel(parts) if camel else separator.join(parts)
    assert DEFAULT_POLICY.high_risk_name(name) is not None


@given(st.lists(_WORD.filter(lambda w: w not in {"shell", "exec", "email"}), min_size=1, max_size=4), _SEPARATORS)
def test_a_name_without_a_listed_word_is_not_high_risk(parts, separator):
    policy = Policy(high_risk_tools=frozenset({"shell", "exec", "send_email"}))
    assert not policy.is_high_risk(separator.join(parts))


@given(st.lists(_WORD, min_size=2, max_size=3, unique=True), _SEPARATORS, _SEPARATORS)
def test_a_listed_name_of_several_words_matches_them_in_order_whatever_the_separators(parts, listed_by, named_by):
    policy = Policy(high_risk_tools=frozenset({listed_by.join(parts)}))
    assert policy.is_high_risk(_camel(parts)) and policy.is_high_risk(named_by.join(["do", *parts, "now"]))
    assert not policy.is_high_risk(named_by.join(parts[::-1]))
    assert not policy.is_high_risk(named_by.join(parts[1:]))


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
        ({"high_risk_tools": frozenset({"shell", "--"})}, "high_risk_tools: '--' is not a tool name"),
        ({"high_risk_tools": frozenset({3})}, "high_risk_tools: 3 is not a tool name"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Policy(**kwargs)


@pytest.mark.parametrize(("tiers", "said"), [
    ({"Trusted": "allow"}, "not tiers: 'Trusted'; missing: untrusted, provisional, trusted, verified"),
    ({**DEFAULT_TIER_VERDICTS, "gold": "allow", 3: "block"}, "not tiers: 'gold', 3"),
    ({"verified": "allow", "trusted": "allow"}, "missing: untrusted, provisional"),
])
def test_tiers_not_one_verdict_each_are_refused_naming_the_keys_amiss(tiers, said):
    """`tiers={"Trusted": "allow"}` was refused saying only that each tier needs a verdict: neither the key that
    is no tier (in upper case) nor the tiers missing were named."""
    with pytest.raises(ValueError) as refused:
        Policy(tiers=tiers)
    assert str(refused.value) == f"tiers: must give a verdict for each of {', '.join(TIERS)}; {said}"


def test_the_default_policy_lists_the_usual_high_risk_tools():
    assert {"shell", "deploy", "payments", "email"} <= DEFAULT_POLICY.high_risk_tools


_POLICIES = st.builds(
    Policy,
    tiers=st.fixed_dictionaries({tier: st.sampled_from(VERDICTS) for tier in TIERS}),
    min_score=st.integers(0, 1000),
    high_risk_tools=st.frozensets(st.text(min_size=1, max_size=12).filter(words), max_size=6),
    high_risk_tier=st.sampled_from(TIERS),
)


@given(_POLICIES)
def test_a_policy_as_json_reads_back_as_the_same_policy(policy):
    copy = Policy.from_dict(json.loads(json.dumps(policy.as_dict())))
    assert copy == policy
    assert all(copy.high_risk_name(tool) == policy.high_risk_name(tool) for tool in policy.high_risk_tools)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "policy: must be an object"),
        ({**DEFAULT_POLICY.as_dict(), "max_calls": 3}, "policy.max_calls: a rule this version does not know"),
        ({k: v for k, v in DEFAULT_POLICY.as_dict().items() if k != "tiers"}, "policy.tiers: missing"),
        ({**DEFAULT_POLICY.as_dict(), "tiers": ["allow"]}, "tiers: must be an object"),
        ({**DEFAULT_POLICY.as_dict(), "min_score": 3.0}, "min_score: must be an integer"),
        ({**DEFAULT_POLICY.as_dict(), "min_score": True}, "min_score: must be an integer"),
        ({**DEFAULT_POLICY.as_dict(), "high_risk_tools": "shell"}, "high_risk_tools: must be a list"),
        ({**DEFAULT_POLICY.as_dict(), "high_risk_tools": [["shell"]]}, "high_risk_tools: \\['shell'\\] is not"),
        ({**DEFAULT_POLICY.as_dict(), "high_risk_tools": [None]}, "high_risk_tools: None is not"),
        ({**DEFAULT_POLICY.as_dict(), "high_risk_tier": None}, "high_risk_tier: must be one of"),
    ],
)
def test_anything_but_a_policy_is_refused_naming_the_field(value, message):
    with pytest.raises(ValueError, match=message):
        Policy.from_dict(value)
