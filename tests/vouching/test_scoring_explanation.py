"""Every score explains itself: each org's and vouch's part, the counts, the decay, and every rule that bit."""

import json
from dataclasses import asdict

from hypothesis import example, given, settings
from hypothesis import strategies as st

from vouching.evidence import Outcomes
from vouching.explanation import MAX_LISTED_PARTS, _beside
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
    for hour in range(20):  # own good counts C/2 a window: twenty of them make it trusted but for the reports
        w.engine.add_first_hand("a", ts=hour * HOUR_MS, outcomes=Outcomes(ok=100))
    w.digest("org1", "a", 0, ok=500)
    w.digest("org1", "a", 1, ok=4, denied=1)
    w.digest("org2", "a", 1, ok=2, error=1)
    w.digest("org1", "a", 0, ok=3)
    w.now = 20 * HOUR_MS
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
                  "vouch", "revoked", "expired", "out of scope", "scope search",
                  "half-lives: good 30 days, bad 180 days", "lower quantile", "Rule: "]:
        assert words in text


def test_one_event_and_a_one_day_half_life_read_in_the_singular():
    """As `vouchnet score` printed them after one event: "1 events in 1 batches", "bad reports 1 days". The node's
    own observations count by epoch (EvidenceStore.add), a digest's by batch."""
    w = World()
    w.engine.add_first_hand("a", ts=0, outcomes=Outcomes(denied=1))
    text = "\n".join(w.engine.explain("a", now=w.now).lines())
    assert "this node's own observations: weight 1.00; 1 event in 1 epoch; after decay" in text
    assert "bad reports 1 day." in text


def test_rules_that_bit_once_read_in_the_singular():
    """`vouchnet score` printed "Rule: good evidence from 1 orgs is held at 3.32 each", "1 digests were scaled
    down", "1 digests ... were ignored"."""
    w = _explained_world()
    said = {r.code: r.text for r in w.engine.explain("a", now=w.now).rules}
    assert said["org-cap"].startswith("good evidence from 1 org is held at 3.32 each")
    assert said["window-cap"].startswith("1 digest was scaled down")
    assert said["out-of-order"] == "1 digest for a window older than one already counted from the same org was ignored"


def test_the_org_cap_claims_no_more_than_it_holds_an_operator_to():
    """`vouchnet score` at a peer showed an agent `trusted` (613) on its operator's vouch and digests alone, under
    the rule "one org's word alone never lifts an agent above provisional"."""
    w = World()
    w.engine.add_agent_vouch("org0", "a", 1.0, "operator", record_id=rid(), ts=0)
    w.history("a", range(10), ["org0"], ok=30)
    assert w.tier("a") == "trusted"
    said = {r.code: r.text for r in w.engine.explain("a", now=w.now).rules}["org-cap"]
    assert "one org's word alone" not in said
    assert said.endswith("an org's digests alone never lift an agent above provisional (its vouch for the agent "
                         "lifts the prior apart from them)")


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


def test_an_org_that_is_no_independent_witness_says_why():
    """`vouchnet score` said "not an independent witness" and no more, of an org whose weight showed as 0.30: an
    untested org's credibility (2/3)³ = 0.296 rounded onto the 0.3 a witness needs."""
    w = World(orgs=3)
    w.engine.add_agent_vouch("org0", "a", 1.0, "operator", record_id=rid(), ts=0)
    w.history("a", range(10), ["org0", "org1"])
    w.digest("org2", "a", 9, error=1)
    unchecked = World(orgs=1, rooted=False)
    unchecked.history("a", range(10), ["org0"])
    text = "\n".join([*w.engine.explain("a", now=w.now).lines(), *unchecked.engine.explain("a", now=w.now).lines()])
    assert "digests from org0: weight 1.00;" in text and \
        "not an independent witness: its group (org0) holds the agent's operator" in text
    assert "digests from org1: weight 1.00;" in text and "; an independent witness" in text
    assert "after decay 0.00 good and 0.50 bad" in text and "not an independent witness: good below 0.5" in text
    assert "digests from org0: weight 0.296;" in text and "not an independent witness: weight below 0.3" in text
    org = "\n".join(unchecked.engine.org("org0", now=w.now).lines())
    assert "org0: an org; weight 0.296." in org and "Credibility 0.296, the starting credibility" in org
    assert "its digests 0.296, below the 0.3 an independent witness needs." in org


@given(st.floats(0, 2), st.floats(0.01, 1))
def test_a_value_compared_with_a_bar_never_reads_as_on_its_other_side(value, bar):
    shown = float(_beside(value, bar))
    assert (shown < bar) == (value < bar)
    assert abs(shown - value) <= 0.005


def test_a_witness_counted_with_its_voucher_says_in_which_group():
    w = World(rooted=False)
    w.engine.add_org_vouch("org0", "minted", 1.0, record_id=rid(), ts=0)
    w.engine.add_org_vouch("org1", "minted", 1.0, record_id=rid(), ts=0)
    for hour in range(10):
        w.engine.add_first_hand("a", ts=hour * HOUR_MS, outcomes=Outcomes(ok=5))
    w.history("a", range(10), ["org0", "org1", "minted"])
    w.engine.recompute(now=w.now)  # the first-hand evidence makes the orgs credible witnesses, all alike
    e = w.engine.explain("a", now=w.now)
    text = "\n".join(e.lines())
    assert {o.org: o.group for o in e.orgs if o.independent} == {"own": "own", "org0": "org0", "org1": "org1",
                                                                  "minted": "org0"}
    assert "digests from minted: weight" in text and "; a witness in the group of org0, which counts once" in text
    assert "Independent orgs with good evidence: 3 (one per group)." in text
    assert "Not independent: it witnesses in the group of org0." in "\n".join(w.engine.org("minted", now=w.now).lines())


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
    listed = {"vouches_complete": True, "orgs_complete": True}
    assert e.as_dict() == {**asdict(e), "orgs": orgs, **listed, "mean": e.mean, "text": e.lines()}
    org = w.engine.org("org1", now=w.now)
    assert org.vouched_by
    assert org.as_dict() == {**asdict(org), "vouched_by_complete": True, "text": org.lines()}


_KEY = st.tuples(st.sampled_from([0.1, 0.5, 1.0]), st.sampled_from(["developer", "audit", "operator"]), st.booleans(),
                 st.integers(0, 3))  # a key's vouch weight and basis, whether it revokes it, its digest's bad outcomes


@settings(max_examples=20)
@given(st.integers(0, 2 * MAX_LISTED_PARTS + 10).flatmap(lambda n: st.lists(_KEY, min_size=n, max_size=n)))
@example([(0.5, "developer", False, 0)] * (MAX_LISTED_PARTS + 1))  # all alike: ties only
def test_an_answer_lists_the_heaviest_parts_of_any_number_and_counts_them_all(keys):
    """An org inside the horizon mints keys that each vouch for an agent (some revoke theirs), sign a digest of
    it and vouch for another org: the answers list the first MAX_LISTED_PARTS in the documented order (the
    heaviest first, ties by did), say whether that is all, and count every one."""
    w = World(orgs=1)
    for i, (weight, basis, revoked, bad) in enumerate(keys):
        key = f"key{i:03}"
        w.engine.add_org_vouch("org0", key, weight, record_id=rid(), ts=0)
        vouch = rid()
        w.engine.add_agent_vouch(key, "a", weight, basis, record_id=vouch, ts=0)
        if revoked:
            w.engine.revoke(key, vouch, ts=1)
        w.digest(key, "a", i % 3, ok=3, denied=bad)
        w.engine.add_org_vouch(key, "target", weight, record_id=rid(), ts=0)
    w.engine.recompute(now=w.now)
    answer = w.engine.explain("a", now=w.now).as_dict()
    org_answer = w.engine.org("target", now=w.now).as_dict()
    e, org = w.engine.explain("a", now=w.now, listed=None), w.engine.org("target", now=w.now, listed=None)  # all
    n, complete = len(keys), len(keys) <= MAX_LISTED_PARTS
    assert len(e.vouches) == len(e.orgs) == len(org.vouched_by) == n
    vouches = sorted(map(asdict, e.vouches),
                     key=lambda v: (-v["lift"], -v["voucher_weight"], v["issuer"], v["basis"], v["record_id"]))
    orgs = sorted(e.orgs, key=lambda o: (-(o.counted_good + o.counted_bad), -o.weight, o.org))
    vouched_by = sorted(map(asdict, org.vouched_by), key=lambda v: (-v["inflow"], -v["weight"], v["issuer"]))
    assert list(answer["vouches"]) == vouches[:MAX_LISTED_PARTS]
    assert (answer["vouches_total"], answer["vouches_complete"]) == (n, complete)
    assert list(answer["orgs"]) == [o.as_dict() for o in orgs[:MAX_LISTED_PARTS]]
    assert (answer["orgs_total"], answer["orgs_complete"]) == (n, complete)
    assert list(org_answer["vouched_by"]) == vouched_by[:MAX_LISTED_PARTS]
    assert (org_answer["vouched_by_total"], org_answer["vouched_by_complete"]) == (n, complete)
    listed = min(n, MAX_LISTED_PARTS)
    assert sum(line.startswith("  vouch ") for line in answer["text"]) == listed
    assert sum(line.startswith("  digests from ") for line in answer["text"]) == listed
    assert sum(line.startswith("  vouched for by ") for line in org_answer["text"]) == listed
    more = [line for line in answer["text"] + org_answer["text"] if line.startswith("  ... and ")]
    assert len(more) == (0 if complete else 3) and all(f" {n - MAX_LISTED_PARTS} more " in line for line in more)
