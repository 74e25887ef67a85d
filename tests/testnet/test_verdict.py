"""Verdicts on attacks, judged on hand-made figures as results.json holds them: each kind's rule says succeeded where
the attacker got what it wanted, contained where not, and no verdict where a figure it needs is missing; praise and
slander are compared with a baseline run of the same seed and size, else with the agents no attack touched."""

import json
import os

import pytest

from testnet.verdict import CONTAINED, SUCCEEDED, UNDECIDED, Baseline, find_baseline, judge

HONEST = ["n00", "n01", "n02"]
CARRIED_OUT = {"due": 60, "answered": 60, "failed": 0, "not_sent": 0}  # the attack's batches, every one answered


def results(*attacks, final_scores=(), untouched=("good-0",), seed=1, nodes=5, name="attacked"):
    """results.json of a run on five nodes (n03, n04 attacking), with good-0 honest, bad-0 and bad-1 malicious."""
    agents = [{"name": "good-0", "group": "good", "behaviour": "honest"},
              *({"name": f"bad-{i}", "group": "bad", "behaviour": "malicious"} for i in range(2))]
    return {"scenario": {"name": name, "seed": seed, "nodes": nodes}, "agents": agents,
            "final_scores": [{"node": n, "agent": a, "score": s, "tier": t} for n, a, s, t in final_scores],
            "measurements": {"confusion": {"observers": HONEST}, "untouched_agents": list(untouched),
                             "attacks": [{"attack": i, **a} for i, a in enumerate(attacks)]}}


def praise(highest, trusted_or_better, views=6, batches=CARRIED_OUT):
    return {"type": "praise", "orgs": "colluders", "agents": "bad", "targets": 2, "views": views,
            "trusted_or_better": trusted_or_better, "untrusted": 0, "highest_final": highest,
            "lowest_final": {"score": 3, "tier": "untrusted"}, "batches": batches}


def slander(lowest, untrusted, views=3, batches=CARRIED_OUT):
    return {"type": "slander", "orgs": "liars", "agents": "good", "targets": 1, "views": views,
            "trusted_or_better": 0, "untrusted": untrusted, "lowest_final": lowest,
            "highest_final": {"score": 900, "tier": "verified"}, "batches": batches}


def test_praise_succeeds_when_a_target_ends_trusted_at_an_honest_node():
    (verdict,) = judge(results(praise({"score": 412, "tier": "provisional"}, 0)))
    assert verdict.outcome == CONTAINED
    assert verdict.line.startswith("verdict: praise of bad by colluders: contained — its 2 targets' highest final "
                                   "score at the 3 honest nodes was provisional (412), trusted or better in 0 of 6 "
                                   "views; ")
    assert verdict.line.endswith("; the attack succeeds if any target ends trusted or better at an honest node")
    (verdict,) = judge(results(praise({"score": 512, "tier": "trusted"}, 1)))
    assert verdict.outcome == SUCCEEDED
    assert "highest final score at the 3 honest nodes was trusted (512)" in verdict.figures


def test_praise_short_of_views_is_no_verdict_unless_those_it_has_show_success():
    (verdict,) = judge(results(praise({"score": 412, "tier": "provisional"}, 0, views=5)))
    assert verdict.outcome == UNDECIDED and verdict.figures.endswith("in 0 of 5 views (of 6 expected)")
    (verdict,) = judge(results(praise({"score": 612, "tier": "trusted"}, 1, views=5)))
    assert verdict.outcome == SUCCEEDED
    (verdict,) = judge(results(praise(None, 0, views=0)))
    assert verdict.outcome == UNDECIDED and verdict.figures == "no honest node scored its targets"


def test_slander_succeeds_when_a_target_ends_untrusted_at_an_honest_node():
    (verdict,) = judge(results(slander({"score": 250, "tier": "provisional"}, 0)))
    assert verdict.outcome == CONTAINED
    assert verdict.figures == ("its 1 target's lowest final score at the 3 honest nodes was provisional (250), "
                               "untrusted in 0 of 3 views")
    (verdict,) = judge(results(slander({"score": 120, "tier": "untrusted"}, 1)))
    assert verdict.outcome == SUCCEEDED
    # (it said `ended at least untrusted (120)`, true of any score, which read as the slander held off)
    assert verdict.figures.startswith("its 1 target's lowest final score at the 3 honest nodes was untrusted (120)")
    assert verdict.rule == "the attack succeeds if any target ends untrusted at an honest node"


def test_a_slander_contained_at_the_end_says_how_low_its_targets_fell_during_the_run():
    """Found by stop 45's testnet helper: a slander whose targets were untrusted for a while and recovered read
    `contained` with nothing of the dip. The rule still judges the end (README), and the figures now give the lowest
    score during the run and how many honest views were untrusted at some point; results from before it was measured
    say nothing of it."""
    dipped = {**slander({"score": 560, "tier": "trusted"}, 0), "since": 15, "untrusted_during": 2, "views_during": 3,
              "lowest_during": {"score": 149, "tier": "untrusted", "node": "n01", "agent": "good-0", "t": 22.5}}
    (verdict,) = judge(results(dipped))
    assert verdict.outcome == CONTAINED
    assert verdict.figures == ("its 1 target's lowest final score at the 3 honest nodes was trusted (560), untrusted "
                               "in 0 of 3 views; the lowest from 15 s on (the attack's start) untrusted (149) "
                               "(good-0 at n01, 22.5 s into the traffic), untrusted at some point in 2 of 3 views")
    (verdict,) = judge(results(slander({"score": 560, "tier": "trusted"}, 0)))
    assert verdict.figures.endswith("untrusted in 0 of 3 views")


def test_praise_and_slander_are_compared_with_the_untouched_agents_of_their_targets_behaviour_in_the_run():
    finals = [("n00", "good-0", 640, "trusted"), ("n01", "good-0", 580, "trusted"),
              ("n03", "good-0", 20, "untrusted"),  # an attacker's view: not the honest world's
              ("n00", "bad-1", 90, "untrusted"), ("n01", "bad-1", 150, "untrusted")]
    ran = results(slander({"score": 250, "tier": "provisional"}, 0), praise({"score": 412, "tier": "provisional"}, 0),
                  final_scores=finals, untouched=["good-0", "bad-1"])
    ran["agents"].append({"name": "good-1", "group": "slandered", "behaviour": "honest"})
    ran["measurements"]["attacks"][0]["agents"] = "slandered"
    slandered, praised = judge(ran)
    assert slandered.compared == "in this run the lowest of the honest agents no attack touched was trusted (580)"
    assert praised.compared == "in this run the highest of the malicious agents no attack touched was untrusted (150)"
    ran["measurements"]["untouched_agents"] = ["good-0"]
    assert judge(ran)[1].compared == ("nothing to compare with: no baseline run of seed 1 on 5 nodes in the testnet's "
                                      "reports, nor malicious agents no attack touched in this run")


def test_praise_is_compared_with_the_same_figure_in_a_baseline_run_when_there_is_one(tmp_path):
    baseline = results(final_scores=[("n00", "bad-0", 60, "untrusted"), ("n04", "bad-1", 130, "untrusted"),
                                     ("n04", "good-0", 700, "trusted")],
                       untouched=["good-0", "bad-0", "bad-1"], name="baseline")
    baseline["measurements"]["confusion"]["observers"] = HONEST + ["n03", "n04"]  # nobody attacks in a baseline
    ran = results(praise({"score": 412, "tier": "provisional"}, 0),
                  final_scores=[("n00", "bad-1", 150, "untrusted")], untouched=["bad-1"])
    (verdict,) = judge(ran, Baseline(tmp_path / "baseline-20261128-041500", baseline))
    assert verdict.compared == ("in the baseline run of the same seed and size (baseline-20261128-041500) the "
                                "highest of its malicious agents was untrusted (130)")


def test_a_baseline_run_whose_traffic_lasted_otherwise_is_said_to_have(tmp_path):
    """Before: a 30 s baseline stood beside a 45 s slander unsaid, though scores grow with the evidence of each
    round."""
    baseline = results(final_scores=[("n00", "good-0", 433, "provisional")], name="baseline")
    baseline["scenario"]["duration"] = 30.0
    ran = results(slander({"score": 149, "tier": "untrusted"}, 1))
    ran["scenario"]["duration"] = 45.0
    (verdict,) = judge(ran, Baseline(tmp_path / "baseline-20261129-210254", baseline))
    assert verdict.compared == ("in the baseline run of the same seed and size (baseline-20261129-210254; its traffic "
                                "30 s, this run's 45 s) the lowest of its honest agents was provisional (433)")
    ran["scenario"]["duration"] = 30.0
    (verdict,) = judge(ran, Baseline(tmp_path / "baseline-20261129-210254", baseline))
    assert "(baseline-20261129-210254) the lowest" in verdict.compared


def write(reports, name, content, mtime):
    path = reports / name / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    os.utime(path, (mtime, mtime))


def test_the_baseline_is_the_newest_readable_baseline_run_of_the_same_seed_and_size(tmp_path):
    reports = tmp_path / "reports"
    assert find_baseline(reports, seed=1, nodes=5) is None  # no reports yet
    write(reports, "baseline-old", results(name="baseline"), 1000)
    write(reports, "baseline-new", results(name="baseline"), 2000)
    write(reports, "baseline-seed-7", results(name="baseline", seed=7), 3000)
    write(reports, "baseline-ten", results(name="baseline", nodes=10), 3000)
    write(reports, "sybil", results(name="sybil-collusion"), 3000)
    write(reports, "baseline-cut-short", '{"scenario": {"name": "baseline", "seed": 1, "nodes": 5}, "agents": [', 3000)
    write(reports, "baseline-no-scores", {**results(name="baseline"), "final_scores": None}, 3000)
    assert find_baseline(reports, seed=1, nodes=5).path == reports / "baseline-new"
    assert find_baseline(reports, seed=7, nodes=5).path == reports / "baseline-seed-7"
    assert find_baseline(reports, seed=2, nodes=5) is None


def test_a_baseline_run_on_orgs_an_earlier_run_flagged_is_passed_over(tmp_path):
    """A baseline run on a reused testnet where an earlier run flagged an org (its word counted for nothing, the
    operator vouches of its agents too) was the reference of later praise and slander verdicts, its figures skewed."""
    reports = tmp_path / "reports"
    write(reports, "baseline-clean", {**results(name="baseline"), "setup": {"flagged_earlier": []}}, 1000)
    write(reports, "baseline-flagged", {**results(name="baseline"), "setup": {"flagged_earlier": ["n03"]}}, 2000)
    assert find_baseline(reports, seed=1, nodes=5).path == reports / "baseline-clean"


def equivocation(distrusted_by, weight_at):
    return {"type": "equivocation", "node": "n03", "distrusted_by": distrusted_by, "weight_at": weight_at,
            "of_others": 4}


def test_equivocation_succeeds_when_an_honest_node_does_not_count_the_offender_an_equivocator():
    weights = {"n00": 0.0, "n01": 0.0, "n02": 0.0, "n03": 1.0, "n04": 0.7}  # its own and another attacker's: no matter
    (verdict,) = judge(results(equivocation(["n00", "n01", "n02"], weights)))
    assert verdict.outcome == CONTAINED
    assert verdict.figures == ("3 of the 3 honest nodes answered, and each counts its org an equivocator at the end "
                               "(its word weighs 0 at most)")
    (verdict,) = judge(results(equivocation(["n00", "n02"], {**weights, "n01": 0.4})))
    assert verdict.outcome == SUCCEEDED
    assert verdict.figures == ("1 of the 3 honest nodes do not count its org an equivocator at the end (its word "
                               "weighs n01 0.4)")
    del weights["n02"]  # n02 did not answer
    (verdict,) = judge(results(equivocation(["n00", "n01"], weights)))
    assert verdict.outcome == UNDECIDED


def whitewash(**agents):
    return {"type": "whitewash", "group": "bad",
            "agents": {name: {"old_final_score": old, "new_final_score": new} for name, (old, new) in agents.items()}}


def test_whitewash_succeeds_when_a_fresh_identity_ends_a_tier_above_its_burned_one():
    (verdict,) = judge(results(whitewash(**{"bad-0": (12.0, 180.5), "bad-1": (40.0, 35.0)})))
    assert verdict.outcome == CONTAINED  # 180.5 scores better, but is untrusted as 12 is
    assert verdict.figures == ("the honest nodes' mean final score of each burned identity -> its fresh one: "
                               "bad-0 untrusted (12) -> untrusted (180.5), bad-1 untrusted (40) -> untrusted (35)")
    (verdict,) = judge(results(whitewash(**{"bad-0": (12.0, 230.0), "bad-1": (40.0, None)})))
    assert verdict.outcome == SUCCEEDED and "bad-0 untrusted (12) -> provisional (230)" in verdict.figures
    (verdict,) = judge(results(whitewash(**{"bad-0": (12.0, 30.0), "bad-1": (40.0, None)})))
    assert verdict.outcome == UNDECIDED and "bad-1 untrusted (40) -> unscored" in verdict.figures


def key_theft(**weights):
    return {"type": "key-theft", "victim": "n02", "nodes_flagging": 5, "of": 5,
            "thief_key": {n: {"weight": w, "voucher_weight": v} for n, (w, v) in weights.items()}}


def test_key_theft_succeeds_when_the_thief_key_weighs_anything_at_an_honest_node():
    nothing = {n: (0.0, 0.0) for n in HONEST}
    (verdict,) = judge(results(key_theft(**nothing, n03=(1.0, 1.0))))  # an attacker's view: no matter
    assert verdict.outcome == CONTAINED
    assert verdict.figures == ("the thief's key weighs nothing at the 3 of the 3 honest nodes that answered (its org "
                               "flagged at 5 of 5 nodes)")
    (verdict,) = judge(results(key_theft(**{**nothing, "n02": (0.0, 0.3)})))  # the robbed org's own node counts
    assert verdict.outcome == SUCCEEDED
    assert verdict.figures == ("the thief's key weighs something at 1 of the 3 honest nodes (n02 weight 0, as a "
                               "voucher 0.3)")
    del nothing["n01"]
    (verdict,) = judge(results(key_theft(**nothing)))
    assert verdict.outcome == UNDECIDED


def test_an_attack_of_a_kind_without_a_rule_is_refused_not_passed_over():
    with pytest.raises(ValueError, match="no rule for an attack of type 'flood'"):
        judge(results({"type": "flood"}))


@pytest.mark.parametrize("kind", [praise, slander])
def test_an_attack_whose_batches_did_not_get_through_has_no_verdict_not_contained(kind):
    """An attacking org's node that refused its batches, did not answer or was down: the network never heard the
    attack, so it did not contain it. Before: such a run read `contained`, exit 0."""
    refused = {"due": 12, "answered": 0, "failed": 9, "not_sent": 3}
    (verdict,) = judge(results(kind({"score": 412, "tier": "provisional"}, 0, batches=refused)))
    assert verdict.outcome == UNDECIDED
    assert verdict.figures.startswith("the attack was not carried out: 12 of 12 batches failed (3 of them not sent: "
                                      "their node down); its ")
    mostly = {"due": 12, "answered": 5, "failed": 7, "not_sent": 0}
    (verdict,) = judge(results(kind({"score": 412, "tier": "provisional"}, 0, batches=mostly)))
    assert verdict.outcome == UNDECIDED and "not carried out: 7 of 12 batches failed; " in verdict.figures
    (verdict,) = judge(results(kind({"score": 412, "tier": "provisional"}, 0, batches={**mostly, "answered": 6,
                                                                                        "failed": 6})))
    assert verdict.outcome == CONTAINED and verdict.figures.endswith("; 6 of 12 batches failed")
    hit = {"score": 612, "tier": "trusted"} if kind is praise else {"score": 100, "tier": "untrusted"}
    (verdict,) = judge(results(kind(hit, 1, batches=refused)))  # what got through got what it wanted
    assert verdict.outcome == SUCCEEDED


@pytest.mark.parametrize("kind", [praise, slander])
def test_an_attack_whose_slow_node_skipped_rounds_is_judged_on_the_batches_sent(kind):
    """A slow attacking node, still answering a batch when the next round came, skips that round: the network heard
    the attack through the batches it answered, so the skipped ones are shown but not judged. Before: 4 answered of
    12 due, 8 skipped, read `not carried out` (exit 4) on a loaded machine."""
    slow = {"due": 12, "answered": 4, "failed": 0, "not_sent": 0, "skipped": 8}
    (verdict,) = judge(results(kind({"score": 412, "tier": "provisional"}, 0, batches=slow)))
    assert verdict.outcome == CONTAINED
    assert verdict.figures.endswith("; 0 of 4 batches failed; 8 more skipped, their node still answering the one "
                                    "before (not judged)")
    down = {**slow, "answered": 1, "not_sent": 3}  # of the 4 judged, 3 not sent: their node down
    (verdict,) = judge(results(kind({"score": 412, "tier": "provisional"}, 0, batches=down)))
    assert verdict.outcome == UNDECIDED
    assert verdict.figures.startswith("the attack was not carried out: 3 of 4 batches failed (3 of them not sent: "
                                      "their node down); 8 more skipped, their node still answering the one before "
                                      "(not judged); its ")


def test_an_attack_no_batch_of_which_was_due_has_no_verdict():
    """A praise or slander whose time held no round of traffic (it lasts less than a round) sent nothing: the network
    did not contain it, and the verdict says so rather than `contained`."""
    none = {"due": 0, "answered": 0, "failed": 0, "not_sent": 0}
    (verdict,) = judge(results(praise({"score": 412, "tier": "provisional"}, 0, batches=none)))
    assert verdict.outcome == UNDECIDED
    assert verdict.figures.startswith("the attack was not carried out: none of its batches was due (no round of "
                                      "traffic fell within it); its ")
