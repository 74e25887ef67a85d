"""Every score explains itself: each org's and vouch's part, the counts, the decay, and every rule that bit."""

import json
from dataclasses import asdict

from vouching.evidence import Outcomes
from vouching.grid import on_grid
from vouching.params import HOUR_MS

from tests.vouching.trust_world import World, rid


def _explained_world():
    w = World()
    w.engine.add_agent_vouch("org0", "a", 1.0, "operator", record_id=rid(), ts=0, scope=["search"])
    gone = rid()
    w.engine.add_agent_vouch("org1", "a", 0.5, "audit", record_id=gone, ts=0)
    w.engine.revoke("org1", gone, ts=1)
    w.engine.add_agent_vouch("org2", "a", 1.0, "developer", record_id=rid(), ts=0, expires=HOUR_MS)
    for hour in range(2):
        w.engine.add_first_hand("a", ts=hour * HOUR_MS, outcomes=Outcomes(ok=100))
    w.digest("org1", "a", 0, ok=500)
    w.digest("org1", "a", 1, ok=4, denied=1)
    w.digest("org2", "a", 1, ok=2, error=1)
    w.digest("org1", "a", 0, ok=3)
    return w


def test_the_explanation_lists_each_org_and_vouch_with_its_part():
    w = _explained_world()
    e = w.engine.explain("a", now=w.now)
    assert {o.org for o in e.orgs} == {"own", "org1", "org2"}
    org1 = next(o for o in e.orgs if o.org == "org1")
    assert (org1.batches, org1.events, org1.capped, org1.ignored) == (3, 508, 1, 1)
    assert org1.counted_good == org1.weight * org1.good_cap < org1.weight * org1.good
    own = next(o for o in e.orgs if o.first_hand)
    assert own.counted_good == on_grid(own.good) > org1.good_cap  # first-hand: all of it counts, on the grid
    status = {v.issuer: v.status for v in e.vouches}
    assert status == {"org0": "out of scope", "org1": "revoked", "org2": "expired"}  # org0's: scope search only
    assert e.vouch_lift == sum(v.lift for v in e.vouches) == 0
    assert e.alpha == e.prior_good + e.vouch_lift + sum(o.counted_good for o in e.orgs)
    in_check = w.engine.explain("a", now=w.now, tool="search")
    assert {v.issuer: v.status for v in in_check.vouches}["org0"] == "counted" and in_check.tool == "search"
    assert in_check.vouch_lift == sum(v.lift for v in in_check.vouches) > 0
    assert in_check.alpha == in_check.prior_good + in_check.vouch_lift + sum(o.counted_good for o in in_check.orgs)


def test_the_explanation_names_every_rule_that_bit_in_plain_words():
    w = _explained_world()
    e = w.engine.explain("a", now=w.now)
    codes = {r.code for r in e.rules}
    assert {"window-cap", "out-of-order", "recent-bad-reports", "org-cap"} <= codes
    assert "recent-bad-reports" in e.score.caps and e.score.score < e.uncapped_score
    text = "\n".join(e.lines())
    for words in ["digests from org1", "this node's own observations", "capped", "ignored as out of order",
                  "vouch", "revoked", "expired", "out of scope", "scope search", "half-lives: good 30 days, bad 180 days",
                  "lower quantile", "Rule: "]:
        assert words in text


def test_a_capped_vouch_lift_and_missing_independence_are_explained():
    w = World()
    for org in w.orgs:
        w.engine.add_agent_vouch(org, "b", 1.0, "audit", record_id=rid(), ts=0)
    for hour in range(100):
        w.engine.add_first_hand("b", ts=hour * HOUR_MS, outcomes=Outcomes(ok=30))
    e = w.engine.explain("b", now=100 * HOUR_MS)
    codes = {r.code for r in e.rules}
    assert {"vouch-cap", "needs-independent-orgs"} <= codes
    assert e.independent_orgs == 1


def test_an_operator_is_not_an_independent_witness_of_its_own_agent():
    w = World()
    w.engine.add_agent_vouch("org0", "mine", 1.0, "operator", record_id=rid(), ts=0)
    w.history("mine", range(10), ["org0", "org1"])
    e = w.engine.explain("mine", now=w.now)
    assert {o.org: o.independent for o in e.orgs} == {"org0": False, "org1": True}
    assert e.independent_orgs == 1


def test_the_explanation_is_json_ready():
    w = _explained_world()
    data = w.engine.explain("a", now=w.now).as_dict()
    decoded = json.loads(json.dumps(data))
    assert decoded["score"]["agent"] == "a" and decoded["text"][0].startswith("a: score")


def test_the_plain_structures_hold_every_field_as_asdict_would():
    w = _explained_world()
    e = w.engine.explain("a", now=w.now)
    assert e.vouches and e.orgs and e.rules and e.score.caps
    orgs = tuple({**asdict(o), "counted_good": o.counted_good, "counted_bad": o.counted_bad,
                  "counted_reports": o.counted_reports} for o in e.orgs)
    assert e.as_dict() == {**asdict(e), "orgs": orgs, "mean": e.mean, "text": e.lines()}
    org = w.engine.org("org1", now=w.now)
    assert org.vouched_by
    assert org.as_dict() == {**asdict(org), "text": org.lines()}
