"""A vouch's `scope` (DESIGN.md §3): a scoped vouch counts only in the check of a tool its scope names, never in the
agent's general score (which the stream, the full recompute and signed statements carry)."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vouching.evidence import Outcomes
from vouching.policy import decide
from vouching.scoring import TrustEngine

from tests.vouching.test_scoring_recompute import (AGENTS, ORGS, _fresh, agent_vouch, apply_op, digest, equivocate,
                                                   first_hand, org_vouch, revoke)
from tests.vouching.trust_world import rid

TOOLS = ["search", "run_shell", "Search"]


def _provisional_agent_with(scope: list[str] | None, *, expires: int | None = None) -> tuple[TrustEngine, bytes]:
    """An agent provisional on this node's own observations, and a root's full audit vouch for it with `scope`."""
    engine = TrustEngine("own", ["root"])
    engine.add_first_hand("agent", ts=1, outcomes=Outcomes(ok=3))
    record = rid()
    engine.add_agent_vouch("root", "agent", 1.0, "audit", record_id=record, ts=1, scope=scope, expires=expires)
    return engine, record


def test_a_vouch_scoped_to_other_tools_does_not_open_a_high_risk_tool():
    engine = TrustEngine("own", ["root"])
    engine.add_first_hand("agent", ts=1, outcomes=Outcomes(ok=3))  # provisional on its own
    assert decide(engine.score("agent", now=1), "call", "run_shell").decision == "block"
    engine.add_agent_vouch("root", "agent", 1.0, "audit", record_id=rid(), ts=1, scope=["search"])
    assert decide(engine.score("agent", now=1), "call", "run_shell").decision == "block"
    assert decide(engine.score("agent", now=1, tool="run_shell"), "call", "run_shell").decision == "block"


def test_a_scoped_vouch_counts_in_its_tools_check_only():
    unscoped, _ = _provisional_agent_with(None)
    engine, _ = _provisional_agent_with(["search", "run_shell"])
    lifted = unscoped.score("agent", now=1)
    assert lifted.tier == "trusted"
    assert engine.score("agent", now=1, tool="search") == lifted
    assert decide(engine.score("agent", now=1, tool="run_shell"), "call", "run_shell").decision == "allow"
    general = engine.score("agent", now=1)
    assert general.tier == "provisional"
    for tool in ("Search", "search:web", "shell", "web_search"):  # a scope is a grant: names, not words
        assert engine.score("agent", now=1, tool=tool) == general
    assert engine.scopes("agent", now=1) == ("run_shell", "search")
    assert unscoped.scopes("agent", now=1) == () == engine.scopes("nobody", now=1)


def test_the_general_score_and_the_full_recompute_leave_a_scoped_vouch_out():
    engine, _ = _provisional_agent_with(["search"])
    without = TrustEngine("own", ["root"])
    without.add_first_hand("agent", ts=1, outcomes=Outcomes(ok=3))
    assert engine.score("agent", now=1) == without.score("agent", now=1)
    assert engine.recompute(now=1).score("agent") == without.recompute(now=1).score("agent")
    assert engine.score("agent", now=1) == without.score("agent", now=1)  # after the install too
    assert engine.score("agent", now=1, tool="search").tier == "trusted"


def test_a_revoked_or_expired_scoped_vouch_stops_counting_in_its_tools_check():
    engine, record = _provisional_agent_with(["search"])
    engine.revoke("root", record, ts=2)
    assert engine.score("agent", now=2, tool="search") == engine.score("agent", now=2)
    assert engine.scopes("agent", now=2) == ()
    expiring, _ = _provisional_agent_with(["search"], expires=10)
    assert expiring.score("agent", now=9, tool="search").tier == "trusted"
    assert expiring.score("agent", now=10, tool="search") == expiring.score("agent", now=10)
    assert expiring.scopes("agent", now=10) == ()


def test_a_scoped_vouch_replaces_its_issuers_earlier_vouch_of_its_basis():
    """The issuer narrowed its word: the earlier unscoped vouch no longer counts, in the engine or the recompute."""
    engine, _ = _provisional_agent_with(None)
    engine.add_agent_vouch("root", "agent", 1.0, "audit", record_id=rid(), ts=2, scope=["search"])
    assert engine.score("agent", now=2).tier == "provisional" == engine.recompute(now=2).tier("agent")
    assert engine.score("agent", now=2, tool="search").tier == "trusted"


scoped_vouch = st.tuples(st.just("scoped-vouch"), st.sampled_from(ORGS), st.sampled_from(AGENTS),
                         st.floats(0.05, 1.0), st.sampled_from(["operator", "audit", "developer", "interaction"]),
                         st.none() | st.integers(1, 30 * 86_400_000),
                         st.lists(st.sampled_from(TOOLS), min_size=1, max_size=2, unique=True))
with_scoped = st.lists(st.one_of(org_vouch, agent_vouch, scoped_vouch, digest, first_hand, revoke, equivocate),
                       max_size=60)


def _apply(engine: TrustEngine, ops: list) -> None:
    issued: list[tuple[str, bytes]] = []
    for n, op in enumerate(ops):
        if op[0] == "scoped-vouch":
            record = n.to_bytes(32, "big")
            engine.add_agent_vouch(op[1], op[2], op[3], op[4], record_id=record, ts=0, expires=op[5], scope=op[6])
            issued.append((op[1], record))
        else:
            apply_op(engine, n, op, issued)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(with_scoped, st.integers(0, 60 * 86_400_000))
def test_with_scoped_vouches_the_per_agent_score_matches_the_full_recompute(ops, now):
    """The per-agent sums and the full recompute agree on the general score (to the point a sum's order may move
    it); a tool's check never scores below it, and equals it for a tool no live scope names."""
    engine = TrustEngine("own", ["root"])
    _apply(engine, ops)
    table = engine.recompute(now=now)
    for agent in engine.agents():
        general = engine.score(agent, now=now)
        assert general.score == table.score(agent)
        assert abs(_fresh(engine, agent, now)[0] - general.score) <= 1
        for tool in TOOLS:
            assert engine.score(agent, now=now, tool=tool).score >= general.score
            if tool not in engine.scopes(agent, now=now):
                assert engine.score(agent, now=now, tool=tool) == general


def test_a_scoped_vouch_of_an_org_without_voucher_weight_lists_no_tool():
    """Any key may sign scoped vouches: one whose voucher has no weight opens nothing, and its tools are not listed
    (32 such keys' 64-name scopes made every score and check answer about an agent over the SDK's 1 MiB, so that
    its checks failed closed everywhere); once the org has weight they are."""
    engine, _ = _provisional_agent_with(["search"])
    engine.add_agent_vouch("stranger", "agent", 1.0, "audit", record_id=rid(), ts=1, scope=["run_shell"])
    assert engine.scopes("agent", now=1) == ("search",)
    assert engine.score("agent", now=1, tool="run_shell") == engine.score("agent", now=1)
    engine.add_org_vouch("root", "stranger", 1.0, record_id=rid(), ts=1)
    assert engine.scopes("agent", now=1) == ("run_shell", "search")
    assert engine.score("agent", now=1, tool="run_shell").score > engine.score("agent", now=1).score
