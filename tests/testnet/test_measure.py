"""Measurements from what a run observed, on hand-made runs of tests/testnet/short.toml whose answers are known:
n00 and n01 are the honest orgs, n02 the quiet one (each test's timeline says what happened when)."""

from dataclasses import replace
from pathlib import Path

import pytest

from testnet.measure import (attacks, catch_up, checkpoints, confusion, convergence, identity_at, lowest_scores,
                             measure, observers, propagation, rotations, trust_changes, untouched_agents)
from testnet.observe import RecordInfo, ScoreSample
from testnet.plan import make_plan
from testnet.report import linking, results_json, trust_change, witnessed_summary
from testnet.runner import RunResult
from testnet.scenario import Attack, Selector, VouchChange, load_scenario, parse_scenario
from testnet.status import Checkpoint, NodeStatus
from testnet.traffic import TrafficStats
from testnet.verdict import UNDECIDED, judge

T0 = 1000.0
DIDS = {"n00": "did:a", "n01": "did:b", "n02": "did:c"}


def run(records, seen, timeline, scores=(), identities=None, keys=None, key_views=None):
    scenario = load_scenario(str(Path(__file__).with_name("short.toml")))
    plan = make_plan(scenario, ["n00", "n01", "n02"], seed=1)
    infos = {rid: RecordInfo(rid, iss, "digest", 1, ts, None) for rid, (iss, ts) in records.items()}
    held = {n: {rid for rid, at in seen.items() if n in at} for n in DIDS}
    return RunResult(scenario=scenario, plan=plan, seed=1, dids=DIDS, keys=keys or {n: [d] for n, d in DIDS.items()},
                     t0=T0, traffic_end=T0 + 16, end=T0 + 20, timeline=timeline, records=infos, seen=seen, held=held,
                     scores=list(scores), identities=identities or {"good-0": ["did:g"], "bad-0": ["did:x"]}, orgs={},
                     key_views=key_views or {}, status={}, latency_buckets={}, traffic=TrafficStats())


def test_propagation_is_the_delay_to_each_other_node_outside_fault_windows():
    result = propagation(run(
        records={"r1": ("did:a", T0 + 1), "r2": ("did:b", T0 + 12), "early": ("did:a", T0 - 5)},
        seen={"r1": {"n00": T0 + 1.0, "n01": T0 + 1.2, "n02": T0 + 1.5},
              "r2": {"n01": T0 + 12, "n00": T0 + 30},  # issued while a fault is on: not counted
              "early": {"n00": T0, "n01": T0, "n02": T0}},
        timeline=[]))
    assert result["to_each_node"]["count"] == 2 and result["to_each_node"]["max"] == pytest.approx(0.5)
    assert result["everywhere"]["count"] == 1 and result["everywhere"]["max"] == pytest.approx(0.5)
    assert result["records_in_fault_windows"] == 1


def test_catch_up_after_a_restart_and_after_a_partition():
    timeline = [
        {"at": T0 + 2, "kind": "kill", "node": "n01"},
        {"at": T0 + 5, "kind": "restarted", "node": "n01"},
        {"at": T0 + 7, "kind": "partition", "side": ["n02"], "rest": ["n00", "n01"], "crossing": []},
        {"at": T0 + 11, "kind": "heal", "side": ["n02"]},
    ]
    records = {"before": ("did:a", T0 + 1), "while-down": ("did:a", T0 + 3), "rest-side": ("did:a", T0 + 8),
               "leaked": ("did:c", T0 + 9)}
    seen = {"before": {"n00": T0 + 1, "n01": T0 + 1.5, "n02": T0 + 1.5},
            "while-down": {"n00": T0 + 3, "n02": T0 + 3.1, "n01": T0 + 6.5},
            "rest-side": {"n00": T0 + 8, "n01": T0 + 8.2, "n02": T0 + 13},
            "leaked": {"n02": T0 + 9, "n00": T0 + 10, "n01": T0 + 11.5}}
    kill, cut = catch_up(run(records, seen, timeline))
    assert kill == {"fault": "kill", "node": "n01", "down_seconds": 3.0, "backlog_records": 1, "seconds": 1.5}
    assert cut["records_crossed"] == 1  # n00 had n02's record before the heal
    assert cut["seconds_per_node"] == {"n02": 2.0, "n00": 0.0, "n01": 0.5}
    assert cut["seconds"] == 2.0 and cut["backlog_records"] == 2


def test_convergence_counts_what_each_node_lacks():
    result = convergence(run({"r1": ("did:a", T0), "r2": ("did:a", T0 + 1)},
                             {"r1": {"n00": T0, "n01": T0, "n02": T0}, "r2": {"n00": T0 + 1, "n01": T0 + 18}}, []))
    assert result["converged"] is False
    assert result["missing_per_node"] == {"n00": 0, "n01": 0, "n02": 1}
    assert result["last_arrival_after_traffic_stopped"] == 2.0


def test_a_testnet_smaller_than_the_witness_count_expects_every_other_node_to_cosign():
    """Every org's horizon holds every other here: each checkpoint is to carry both other orgs' cosignatures."""
    result = run({}, {}, [])
    assert result.scenario.settings.witnesses > 2
    result = replace(result, status={n: NodeStatus(n, d, "http://127.0.0.1:1", True, ledger_size=9,
                                                   checkpoint=Checkpoint(9, ())) for n, d in DIDS.items()})
    assert {n: row["expected"] for n, row in checkpoints(result)["nodes"].items()} == dict.fromkeys(DIDS, 2)


def test_the_confusion_matrix_counts_each_observer_and_agent_once_by_its_last_tier():
    scores = [ScoreSample(T0 + 3, n, "good-0", "did:g", 300, "provisional", 0.1) for n in DIDS]
    scores += [ScoreSample(T0 + 9, n, "good-0", "did:g", 600, "trusted", 0.5) for n in DIDS]
    scores += [ScoreSample(T0 + 9, n, "bad-0", "did:x", 50, "untrusted", 0.5) for n in DIDS]
    rows = confusion(run({}, {}, [], scores))["rows"]
    assert rows[0] == {"group": "good", "behaviour": "honest", "malicious": False,
                       "tiers": {"untrusted": 0, "provisional": 0, "trusted": 3, "verified": 0},
                       "lowest_during": {"score": 300, "tier": "provisional", "node": "n00", "agent": "good-0",
                                         "t": 3.0},
                       "since": 0.0, "untrusted_during": 0, "views_during": 3}
    assert rows[1]["tiers"]["untrusted"] == 3 and rows[1]["malicious"] is True


def test_a_whitewashed_agent_is_followed_under_the_identity_it_used_at_the_time():
    timeline = [{"at": T0 + 8, "kind": "whitewash", "agents": {"bad-0": {"old": "did:x", "new": "did:y"}}}]
    result = run({}, {}, timeline, identities={"good-0": ["did:g"], "bad-0": ["did:x", "did:y"]})
    assert identity_at(result, "bad-0", T0 + 7) == "did:x"
    assert identity_at(result, "bad-0", T0 + 9) == "did:y"
    assert identity_at(result, "good-0", T0 + 9) == "did:g"


def test_a_node_is_expected_to_hold_only_the_records_of_orgs_in_its_horizon():
    result = run({"r1": ("did:a", T0), "r2": ("did:c", T0)},
                 {"r1": {"n00": T0, "n01": T0, "n02": T0}, "r2": {"n02": T0}}, [])
    result.plan.vouches.update({"n00": {"n01": 0.9}, "n01": {"n00": 0.9}, "n02": {"n00": 0.9}})  # nobody trusts n02
    result.plan.roots.update({"n00": [], "n01": [], "n02": []})
    assert result.plan.horizon("n00") == {"n00", "n01"}
    assert convergence(result)["converged"]
    result.plan.vouches["n01"]["n02"] = 0.9  # now n02 is two hops from n00: its record is missing there
    assert convergence(result)["missing_per_node"] == {"n00": 1, "n01": 1, "n02": 0}
    assert result.plan.horizon("n00", {"n01"}) == {"n00", "n01"}  # a flagged org's vouches do not extend it


def test_a_node_is_expected_to_hold_the_records_of_an_org_a_vouch_made_mid_run_brings_into_its_horizon():
    """`[[vouches]]`: convergence is judged by the trust graph at the end, every change made; a rotation's followers
    by the graph when it rotated (the changes the timeline made before it)."""
    result = run({"r2": ("did:c", T0)}, {"r2": {"n02": T0}}, [])
    result.plan.vouches.update({"n00": {"n01": 0.9}, "n01": {"n00": 0.9}, "n02": {"n00": 0.9}})  # nobody trusts n02
    result.plan.roots.update({"n00": [], "n01": [], "n02": []})
    assert convergence(result)["converged"]
    change = VouchChange(Selector("honest", 0, 1, "honest[0]"), Selector("quiet", text="quiet"), "vouch", 5.0)
    result = replace(result, scenario=replace(result.scenario, vouch_changes=(change,)))
    result = replace(result, plan=replace(result.plan, scenario=result.scenario))
    assert convergence(result)["missing_per_node"] == {"n00": 1, "n01": 1, "n02": 0}
    rotation = [{"at": T0 + 8, "kind": "rotate", "node": "n02"},
                {"at": T0 + 11, "kind": "rotated", "node": "n02", "old": "did:c", "new": "did:c2", "rotation": "rot",
                 "first": "first", "started": T0 + 10, "answered": T0 + 10.75}]
    vouched = {"at": T0 + 5, "kind": "vouches", "change": 0, "action": "vouch", "pairs": []}
    for timeline, others in (([*rotation], 0), ([vouched, *rotation], 2)):
        (measured,) = rotations(replace(result, timeline=timeline,
                                        keys={**{n: [d] for n, d in DIDS.items()}, "n02": ["did:c", "did:c2"]}))
        assert measured["of"] == others


def test_each_revocation_and_vouch_change_is_reported_with_when_and_what_it_did():
    """Before: a run's summary and its page's summary said nothing of them; only its timeline named them."""
    change = VouchChange(Selector("honest", text="honest"), Selector("quiet", text="quiet"), "revoke", 9.0)
    timeline = [{"at": T0 + 6, "kind": "revocation", "revocation": 0,
                 "agents": {"bad-0": {"did": "did:x", "operator": "n00", "vouch": "v", "revoke": "r"}}},
                {"at": T0 + 9.25, "kind": "vouches", "change": 0, "action": "revoke",
                 "pairs": [{"from": "n00", "to": "n02", "vouch": "v0", "revoke": "r0"},
                           {"from": "n01", "to": "n02", "vouch": "v1", "revoke": "r1"}]}]
    result = run({}, {}, timeline)
    result = replace(result, scenario=replace(result.scenario, vouch_changes=(change,)))
    changes = trust_changes(result)
    assert changes == [{"kind": "revocation", "index": 0, "t": 6.0, "agents": "bad", "revoked": ["bad-0"],
                        "operators": ["n00"]},
                       {"kind": "vouches", "index": 0, "t": 9.25, "action": "revoke", "from": "honest", "to": "quiet",
                        "pairs": [["n00", "n02"], ["n01", "n02"]]}]
    assert [trust_change(c) for c in changes] == [
        ("revocations[0] at 6 s", "the operator vouches of agents bad revoked: bad-0 (by n00)"),
        ("vouches[0] at 9.25 s", "org-peer vouches revoked: n00 for n02, n01 for n02 (from honest to quiet)")]


def test_a_rotation_is_linked_at_a_node_once_it_holds_both_records_that_make_the_link():
    timeline = [{"at": T0 + 8, "kind": "rotate", "node": "n00"},
                {"at": T0 + 11, "kind": "rotated", "node": "n00", "old": "did:a", "new": "did:a2", "rotation": "rot",
                 "first": "first", "started": T0 + 10, "answered": T0 + 10.75}]
    seen = {"rot": {"n00": T0 + 11, "n01": T0 + 11.5, "n02": T0 + 11.2},
            "first": {"n00": T0 + 11, "n01": T0 + 11.3, "n02": T0 + 14}}
    views = {"did:a2": {"n00": {"org": "did:a"}, "n01": {"org": "did:a"}, "n02": {"org": "did:a2"}}}
    result = run({"rot": ("did:a", T0 + 9), "first": ("did:a2", T0 + 9)}, seen, timeline,
                 keys={**{n: [d] for n, d in DIDS.items()}, "n00": ["did:a", "did:a2"]}, key_views=views)
    (rotation,) = rotations(result)
    assert rotation == {"node": "n00", "old": "did:a", "new": "did:a2", "down_seconds": 3.0, "start_seconds": 0.75,
                        "nodes_linking": 2,
                        "of": 2, "seconds_to_link": {"n01": 1.5, "n02": 4.0}, "seconds_to_link_everywhere": 4.0,
                        "linked_at_end": ["n01"]}  # n02 counted the new key as an org of its own at the end
    del seen["first"]["n02"]  # a node holding the rotation alone has not linked the keys
    (rotation,) = rotations(result)
    assert rotation["seconds_to_link"] == {"n01": 1.5} and rotation["seconds_to_link_everywhere"] is None


def test_a_rotation_is_awaited_only_at_nodes_that_hold_its_org_without_an_earlier_run_s_flagged_org():
    """On a testnet reused, n02 holds n00's records only through n01's vouch, and an earlier run flagged n01: n02
    takes none of n00's records, its rotation neither. Before: n02 counted among the nodes to link the keys, and the
    rotation was reported linked at 1 of 2, never everywhere."""
    timeline = [{"at": T0 + 8, "kind": "rotate", "node": "n00"},
                {"at": T0 + 11, "kind": "rotated", "node": "n00", "old": "did:a", "new": "did:a2", "rotation": "rot",
                 "first": "first", "started": T0 + 10, "answered": T0 + 10.75}]
    seen = {"rot": {"n00": T0 + 11, "n01": T0 + 11.5}, "first": {"n00": T0 + 11, "n01": T0 + 12}}
    result = run({"rot": ("did:a", T0 + 9), "first": ("did:a2", T0 + 9)}, seen, timeline,
                 keys={**{n: [d] for n, d in DIDS.items()}, "n00": ["did:a", "did:a2"]})
    result.plan.roots.update({"n00": ["n00"], "n01": ["n01", "n00"], "n02": ["n02"]})  # (n01 roots n00 itself)
    result.plan.vouches.update({"n00": {}, "n01": {"n00": 0.9}, "n02": {"n01": 0.9}})
    assert result.plan.horizon("n02") == {"n00", "n01", "n02"}
    result = replace(result, plan=replace(result.plan, flagged=frozenset({"n01"})))
    (rotation,) = rotations(result)
    assert (rotation["nodes_linking"], rotation["of"], rotation["seconds_to_link_everywhere"]) == (1, 1, 2.0)


def test_a_rotation_is_awaited_only_at_nodes_that_hold_its_org_without_an_org_the_run_flagged_before_it():
    """n02 holds n00's records only through n01's vouch, and the run's key theft of n01's key flagged it before n00
    rotated: n02 takes no more of n00's records. Before: only an earlier run's flags were left out, so n02 counted
    among the nodes to link the keys, and the rotation was reported linked at 1 of 2, never everywhere."""
    theft = {"at": T0 + 5, "kind": "key-theft", "attack": 0, "node": "n01", "key": "did:b", "thief": "did:t"}
    rotation = [{"at": T0 + 8, "kind": "rotate", "node": "n00"},
                {"at": T0 + 11, "kind": "rotated", "node": "n00", "old": "did:a", "new": "did:a2", "rotation": "rot",
                 "first": "first", "started": T0 + 10, "answered": T0 + 10.75}]
    seen = {"rot": {"n00": T0 + 11, "n01": T0 + 11.5}, "first": {"n00": T0 + 11, "n01": T0 + 12}}
    for timeline, awaited in (([theft, *rotation], (1, 1, 2.0)), ([*rotation, {**theft, "at": T0 + 12}], (1, 2, None))):
        result = run({"rot": ("did:a", T0 + 9), "first": ("did:a2", T0 + 9)}, seen, timeline,
                     keys={**{n: [d] for n, d in DIDS.items()}, "n00": ["did:a", "did:a2"]})
        result.plan.roots.update({"n00": ["n00"], "n01": ["n01", "n00"], "n02": ["n02"]})  # (n01 roots n00 itself)
        result.plan.vouches.update({"n00": {}, "n01": {"n00": 0.9}, "n02": {"n01": 0.9}})
        (measured,) = rotations(result)
        assert (measured["nodes_linking"], measured["of"], measured["seconds_to_link_everywhere"]) == awaited


def test_the_report_says_how_much_of_a_rotation_s_link_time_was_the_node_s_own_start():
    rotation = {"nodes_linking": 2, "of": 2, "seconds_to_link_everywhere": 4.0, "start_seconds": 0.75}
    assert linking(rotation) == ("2 of 2, the last 4.0 s after the node started with its new key"
                                 " (its own start, until its API answered, took 0.75 s)")
    assert linking({**rotation, "nodes_linking": 1, "seconds_to_link_everywhere": None}) == "1 of 2"


def _theft_run(thief_views):
    timeline = [{"at": T0 + 5, "kind": "key-theft", "attack": 0, "node": "n01", "key": "did:b", "thief": "did:t",
                 "seq": 9, "records": ["rot", "first"], "offered_to": "n02",
                 "answers": ["accepted", "accepted"]}]
    result = run({}, {"evidence": {"n02": T0 + 5.3, "n00": T0 + 5.6}}, timeline, key_views={
        "did:b": {"n00": {"equivocator": True}, "n01": {"equivocator": False}, "n02": {"equivocator": True}},
        "did:t": thief_views})
    result.records["evidence"] = RecordInfo("evidence", "did:c", "equivocation", 20, T0 + 5.2, "did:b")
    return result


def test_a_key_theft_reports_when_each_node_flagged_the_org_and_what_the_thief_key_weighs():
    nothing = {"weight": 0.0, "voucher_weight": 0.0}
    views = {"n00": {"org": "did:t", "equivocator": False, **nothing},  # the thief's rotation lost: no org
             "n01": {"org": "did:t", "equivocator": False, **nothing},
             "n02": {"org": "did:b", "equivocator": True, **nothing}}  # linked to the org, which is flagged
    result = _theft_run(views)
    (theft,) = attacks(result)
    assert theft["flagged_everywhere"] is False and theft["nodes_flagging"] == 2 and theft["of"] == 3
    result.seen["evidence"]["n01"] = T0 + 5.8  # the robbed org's own node holds the evidence too
    (theft,) = attacks(result)
    assert theft["flagged_everywhere"] and theft["seconds_to_flag"] == {"n00": 0.6, "n01": 0.8, "n02": 0.3}
    assert theft["seconds_to_flag_everywhere"] == 0.8 and theft["distrusted_by"] == ["n00", "n02"]
    assert [v["linked_to_victim"] for v in theft["thief_key"].values()] == [False, False, True]
    assert theft["thief_counts_for_nothing"]
    views["n00"] = {"org": "did:b", "equivocator": False, "weight": 1.0, "voucher_weight": 1.0}  # taken over
    (theft,) = attacks(_theft_run(views))
    assert not theft["thief_counts_for_nothing"]


TWO_OF_EACH = """\
[[attacks]]
type = "equivocation"
orgs = "honest[0]"
at = 3

[[attacks]]
type = "equivocation"
orgs = "quiet"
at = 6

[[attacks]]
type = "whitewash"
agents = "good"
at = 9

[[attacks]]
type = "whitewash"
agents = "bad"
at = 10
"""


def test_each_equivocation_and_whitewash_reports_its_own_outcome():
    text = Path(__file__).with_name("short.toml").read_text()
    scenario = parse_scenario(text[:text.index("[[faults]]")] + TWO_OF_EACH, name="two-of-each")
    timeline = [{"at": T0 + 3, "kind": "equivocation", "attack": 0, "node": "n00", "offender": "did:a",
                 "offered_to": ["n00", "n02"], "answers": ["accepted", "accepted"]},
                {"at": T0 + 6, "kind": "equivocation", "attack": 1, "node": "n02", "offender": "did:c",
                 "offered_to": ["n02", "n01"], "answers": ["accepted", "accepted"]},
                {"at": T0 + 9, "kind": "whitewash", "attack": 2,
                 "agents": {"good-0": {"old": "did:g", "new": "did:g2"}}},
                {"at": T0 + 10, "kind": "whitewash", "attack": 3,
                 "agents": {"bad-0": {"old": "did:x", "new": "did:y"}}}]
    result = replace(run({}, {"against-c": {"n01": T0 + 6.5}}, timeline,
                         identities={"good-0": ["did:g", "did:g2"], "bad-0": ["did:x", "did:y"]}),
                     scenario=scenario, plan=make_plan(scenario, list(DIDS), seed=1))
    result.records["against-c"] = RecordInfo("against-c", "did:b", "equivocation", 30, T0 + 6.4, "did:c")
    first, second, good, bad = attacks(result)
    assert (first["offender"], first["nodes_flagging"]) == ("did:a", 0)
    assert (second["offender"], second["nodes_flagging"], second["seconds_to_flag"]) == ("did:c", 1, {"n01": 0.5})
    assert list(good["agents"]) == ["good-0"] and list(bad["agents"]) == ["bad-0"]
    assert (good["group"], bad["group"]) == ("good", "bad")


def test_an_equivocation_reports_which_nodes_count_the_offender_an_equivocator_not_only_who_holds_evidence():
    timeline = [{"at": T0 + 5, "kind": "equivocation", "attack": 0, "node": "n02", "offender": "did:c",
                 "offered_to": ["n02", "n01"], "answers": ["accepted", "accepted"]}]
    views = {"did:c": {"n00": {"equivocator": False, "weight": 0.4}, "n01": {"equivocator": True, "weight": 0.0},
                       "n02": {"equivocator": False, "weight": 1.0}}}  # its own node never distrusts its org
    result = run({}, {"evidence": {n: T0 + 5.5 for n in DIDS}}, timeline, key_views=views)
    result.records["evidence"] = RecordInfo("evidence", "did:b", "equivocation", 30, T0 + 5.2, "did:c")
    result = replace(result, scenario=replace(result.scenario, attacks=(Attack("equivocation", Selector("quiet"),
                                                                                   at=5.0),)))
    (equivocation,) = attacks(result)
    assert equivocation["nodes_flagging"] == 3  # every node holds the evidence ...
    assert equivocation["distrusted_by"] == ["n01"] and equivocation["of_others"] == 2  # ... one acts on it
    assert equivocation["weight_at"] == {"n00": 0.4, "n01": 0.0, "n02": 1.0}


def test_a_whitewashing_operator_is_no_honest_observer():
    """The operator vouches for its agents' fresh identities: its node's view of them is the attacker's."""
    text = Path(__file__).with_name("short.toml").read_text()
    text = text[:text.index("[[faults]]")].replace('malicious"\noperator = "honest"', 'malicious"\noperator = "quiet"')
    scenario = parse_scenario(text + '[[attacks]]\ntype = "whitewash"\nagents = "bad"\nat = 5\n', name="whitewash")
    result = replace(run({}, {}, []), scenario=scenario, plan=make_plan(scenario, list(DIDS), seed=1))
    assert result.plan.groups["quiet"] == ["n02"] and observers(result) == ["n00", "n01"]


def test_a_checkpoint_is_witnessed_by_its_followers_alone():
    """The quiet org roots and vouches for nobody, so no honest org's log is inside its horizon and it cosigns none
    (a witness refuses the logs of orgs outside its horizon): two honest orgs need each other's cosignature only,
    and the quiet org's checkpoint both of theirs. Fewer than that is not witnessed."""
    text = Path(__file__).with_name("short.toml").read_text()
    text = text.replace('[orgs.quiet]                # no agent works here: the org\'s node signs nothing unless '
                        'told to\nnodes = 1\nroots = ["honest"]\nvouch = ["honest"]',
                        '[orgs.quiet]\nnodes = 1\nroots = []\nvouch = []')
    scenario = parse_scenario(text, name="aloof")
    plan = make_plan(scenario, list(DIDS), seed=1)
    assert plan.followers("n00") == ["n01"] and plan.followers("n02") == ["n00", "n01"]

    def status(node, cosigners):
        return NodeStatus(node, DIDS[node], "http://127.0.0.1:1", True, ledger_size=9,
                          checkpoint=Checkpoint(9, cosigners))

    cosigned = {"n00": ("did:b",), "n01": ("did:a",), "n02": ("did:a", "did:b")}
    result = replace(run({}, {}, []), scenario=scenario, plan=plan,
                     status={n: status(n, c) for n, c in cosigned.items()})
    found = checkpoints(result)
    assert found["all_current_and_witnessed"] is True
    assert {n: row["expected"] for n, row in found["nodes"].items()} == {"n00": 1, "n01": 1, "n02": 2}
    # the summary's line gave one figure for all ("cosigned by their 2 witnesses"), true of n02 alone
    assert witnessed_summary(found) == "True (n00 1/1, n01 1/1, n02 2/2)"
    cosigned["n02"] = ("did:a",)
    result = replace(result, status={n: status(n, c) for n, c in cosigned.items()})
    assert checkpoints(result)["all_current_and_witnessed"] is False
    assert witnessed_summary(checkpoints(result)) == "False (n00 1/1, n01 1/1, n02 1/2)"
    cosigned["n01"] = ("did:a", "did:c")  # the quiet org's cosignature counts for nothing: it follows no honest log
    result = replace(result, status={n: status(n, c) for n, c in cosigned.items()})
    assert checkpoints(result)["nodes"]["n01"]["by_witnesses"] == 1



def test_a_checkpoint_is_expected_to_be_witnessed_by_the_followers_the_vouch_changes_leave():
    """`[[vouches]]`: the quiet org, which roots and vouches for nobody, vouching for the honest orgs mid-run follows
    their logs from then: each honest checkpoint is expected to have its cosignature at the end, not only the other
    honest org's."""
    text = Path(__file__).with_name("short.toml").read_text()
    text = text.replace('[orgs.quiet]                # no agent works here: the org\'s node signs nothing unless '
                        'told to\nnodes = 1\nroots = ["honest"]\nvouch = ["honest"]',
                        '[orgs.quiet]\nnodes = 1\nroots = []\nvouch = []')
    scenario = parse_scenario(text + '\n[[vouches]]\nfrom = "quiet"\nto = "honest"\naction = "vouch"\nat = 1\n',
                              name="aloof")
    plan = make_plan(scenario, list(DIDS), seed=1)
    cosigned = {"n00": ("did:b",), "n01": ("did:a",), "n02": ("did:a", "did:b")}
    status = {n: NodeStatus(n, DIDS[n], "http://127.0.0.1:1", True, ledger_size=9, checkpoint=Checkpoint(9, c))
              for n, c in cosigned.items()}
    found = checkpoints(replace(run({}, {}, []), scenario=scenario, plan=plan, status=status))
    assert {n: row["expected"] for n, row in found["nodes"].items()} == {"n00": 2, "n01": 2, "n02": 2}
    assert found["all_current_and_witnessed"] is False  # the honest checkpoints lack the quiet org's cosignature

def praised(finals):
    """A run of short.toml whose quiet org (n02) praises the bad agent, which ends with `finals` (node, score, tier)."""
    text = Path(__file__).with_name("short.toml").read_text()
    scenario = parse_scenario(text[:text.index("[[faults]]")] + '[[attacks]]\ntype = "praise"\norgs = "quiet"\n'
                              'agents = "bad"\n', name="praise")
    scores = [ScoreSample(T0 + 9, n, "bad-0", "did:x", score, tier, 0.5) for n, score, tier in finals]
    identities = {"good-0": ["did:g"], "good-1": ["did:h"], "bad-0": ["did:x"]}
    return replace(run({}, {}, [], scores=scores, identities=identities), scenario=scenario,
                   plan=make_plan(scenario, list(DIDS), seed=1))


def test_praise_is_measured_at_the_honest_nodes_beside_what_the_attackers_own_nodes_make_of_it():
    result = praised([("n00", 4, "untrusted"), ("n01", 6, "untrusted"), ("n02", 950, "verified")])
    assert attacks(result) == [{"attack": 0, "type": "praise", "orgs": "quiet", "agents": "bad", "targets": 1,
                                "mean_final_score": 5.0, "trusted_or_better": 0, "untrusted": 2, "views": 2,
                                "lowest_final": {"score": 4, "tier": "untrusted"},
                                "highest_final": {"score": 6, "tier": "untrusted"},
                                "attackers_mean_final_score": 950.0,
                                "batches": {"due": 0, "answered": 0, "failed": 0, "not_sent": 0,
                                                            "skipped": 0}}]
    assert untouched_agents(result) == ["good-0", "good-1"]  # the honest world's figures for the verdicts


def test_an_honest_agent_s_dip_to_untrusted_during_slander_is_kept_though_its_final_score_recovered():
    """Found by stop 45's testnet helper: results.json kept group means and final scores only, so whether a slandered
    honest agent was ever untrusted at an honest node during the run (T8's transient dip as slander starts) could not
    be read from it. Now each (node, agent)'s lowest score during the traffic and settling is kept, with its time, and
    the slander's entry (from its start on: before it, an honest agent's lowest is its cold start's) and each agent
    class say how many honest views were untrusted at some point."""
    text = Path(__file__).with_name("short.toml").read_text()
    scenario = parse_scenario(text[:text.index("[[faults]]")] + '[[attacks]]\ntype = "slander"\norgs = "quiet"\n'
                              'agents = "good"\nat = 4\n', name="slander")
    scores = [ScoreSample(T0 - 1, "n00", "good-0", "did:g", 10, "untrusted", 0.1),  # before the traffic: not counted
              ScoreSample(T0 + 1, "n00", "good-0", "did:g", 248, "provisional", 0.1),  # its cold start
              ScoreSample(T0 + 2, "n00", "good-0", "did:g", 520, "trusted", 0.3),
              ScoreSample(T0 + 5, "n00", "good-0", "did:g", 149, "untrusted", 0.4),  # the dip
              ScoreSample(T0 + 9, "n00", "good-0", "did:g", 610, "trusted", 0.5),
              ScoreSample(T0 + 1, "n01", "good-0", "did:g", 248, "provisional", 0.1),
              ScoreSample(T0 + 4, "n01", "good-0", "did:g", 480, "provisional", 0.4),
              ScoreSample(T0 + 9, "n01", "good-0", "did:g", 590, "trusted", 0.5),
              ScoreSample(T0 + 3, "n02", "good-0", "did:g", 0, "untrusted", 0.5)]  # the attacker's own view
    identities = {"good-0": ["did:g"], "good-1": ["did:h"], "bad-0": ["did:x"]}
    result = replace(run({}, {}, [], scores=scores, identities=identities), scenario=scenario,
                     plan=make_plan(scenario, list(DIDS), seed=1))
    [slandered] = attacks(result)
    assert (slandered["untrusted"], slandered["lowest_final"]) == (0, {"score": 590, "tier": "trusted"})
    assert slandered["lowest_during"] == {"score": 149, "tier": "untrusted", "node": "n00", "agent": "good-0",
                                          "t": 5.0}
    assert (slandered["since"], slandered["untrusted_during"], slandered["views_during"]) == (4, 1, 2)
    results = results_json(result, measure(result), {})
    assert {(f["node"], f["agent"]): (f["score"], f["tier"], f["t"]) for f in results["lowest_scores"]} == {
        ("n00", "good-0"): (149, "untrusted", 5.0), ("n01", "good-0"): (248, "provisional", 1.0),
        ("n02", "good-0"): (0, "untrusted", 3.0)}
    good = next(row for row in results["measurements"]["confusion"]["rows"] if row["group"] == "good")
    assert (good["lowest_during"]["score"], good["untrusted_during"], good["views_during"]) == (149, 1, 2)


def test_an_agent_s_lowest_score_during_the_run_is_of_the_identity_it_went_by_then():
    """A whitewashed agent's burned identity counts until its switch, its fresh one after: the burned one's low
    scores after the switch are no dip of the agent."""
    timeline = [{"at": T0 + 8, "kind": "whitewash", "agents": {"bad-0": {"old": "did:x", "new": "did:y"}}}]
    scores = [ScoreSample(T0 + 7, "n00", "bad-0", "did:x", 120, "untrusted", 0.5),
              ScoreSample(T0 + 9, "n00", "bad-0", "did:x", 40, "untrusted", 0.5),
              ScoreSample(T0 + 9, "n00", "bad-0", "did:y", 300, "provisional", 0.1)]
    result = run({}, {}, timeline, scores, identities={"good-0": ["did:g"], "bad-0": ["did:x", "did:y"]})
    assert lowest_scores(result) == {("n00", "bad-0"): (120, "untrusted", 7.0)}


def test_the_agents_a_robbed_org_operates_are_no_untouched_agents():
    """A key theft leaves its victim's word counting for nothing: its agents' scores are the attack's doing."""
    text = Path(__file__).with_name("short.toml").read_text()
    text = text[:text.index("[[faults]]")].replace('malicious"\noperator = "honest"', 'malicious"\noperator = "quiet"')
    scenario = parse_scenario(text + '[[attacks]]\ntype = "key-theft"\norgs = "quiet"\nat = 5\n', name="theft")
    result = replace(run({}, {}, []), scenario=scenario, plan=make_plan(scenario, list(DIDS), seed=1))
    assert untouched_agents(result) == ["good-0", "good-1"]


def test_the_agents_whose_operator_vouch_a_revocation_revokes_are_no_untouched_agents():
    """Their scores drop by the revocation's doing: an attack's targets compared with them would look contained."""
    text = Path(__file__).with_name("short.toml").read_text()
    scenario = parse_scenario(text[:text.index("[[faults]]")] + '[[revocations]]\nagents = "good"\nat = 5\n',
                              name="revoked")
    result = replace(run({}, {}, []), scenario=scenario, plan=make_plan(scenario, list(DIDS), seed=1))
    assert untouched_agents(result) == ["bad-0"]


_BRIDGED = """\
description = "honest orgs vouch for bridge, which vouches for partner; they un-vouch bridge at 10 s"
duration = 30

[orgs.honest]
nodes = 2
roots = ["honest"]
vouch = ["honest", "bridge"]

[orgs.bridge]
nodes = 1
vouch = ["partner"]

[orgs.partner]
nodes = 1

[orgs.aside]
nodes = 1
roots = ["honest"]

[agents.good]
count = 2
behaviour = "honest"
operator = "honest"
works_at = ["honest"]

[agents.bridged]
count = 1
behaviour = "honest"
operator = "bridge"
works_at = ["honest"]

[agents.partnered]
count = 1
behaviour = "honest"
operator = "partner"
works_at = ["honest"]

[agents.reported]
count = 1
behaviour = "honest"
operator = "honest"
works_at = ["partner"]

[agents.apart]
count = 1
behaviour = "honest"
operator = "aside"
works_at = ["aside"]
orgs_per_agent = 1

[[vouches]]
from = "honest"
to = "bridge"
action = "revoke"
at = 10
"""


def test_the_agents_of_the_orgs_a_vouch_change_reaches_are_no_untouched_agents():
    """Found by stop 45's testnet helper: the honest orgs un-vouch bridge, and with it partner, which only bridge
    vouches for, leaves their horizons (its operator vouches weigh nothing there from then on). Before, only the
    agents whose operator a change names were left out, so partner's were still counted among the untouched ones
    that verdicts compare an attack's targets with. Now left out too are the agents of the orgs the voucher reaches
    through its vouches (partner, via bridge), and those such an org reports on (it works for partner); the agents
    of the watchers' roots (the honest orgs, whose standing is 1 at every watcher whatever flows to them) and of an
    org the change cannot reach (aside, which vouches for none and no honest org vouches for) stay untouched."""
    scenario = parse_scenario(_BRIDGED, name="bridged")
    result = replace(run({}, {}, []), scenario=scenario, plan=make_plan(scenario, [f"n0{i}" for i in range(5)], seed=1))
    assert untouched_agents(result) == ["apart-0", "good-0", "good-1"]



def test_the_agents_of_an_org_a_mid_run_vouch_brings_in_are_no_untouched_agents():
    """The honest orgs vouch for aside at 10 s, which no org-peer vouch reached before: its agent apart-0 is no
    longer the honest world's (the vouch shares the honest orgs' reputation out to aside from then). Found by stop
    45's review as a mutation no test caught: the orgs a voucher reaches were taken from the file's trust graph
    alone, without the vouches the changes make."""
    vouched = _BRIDGED.replace('to = "bridge"\naction = "revoke"', 'to = "aside"\naction = "vouch"')
    scenario = parse_scenario(vouched, name="vouched")
    result = replace(run({}, {}, []), scenario=scenario, plan=make_plan(scenario, [f"n0{i}" for i in range(5)], seed=1))
    assert untouched_agents(result) == ["good-0", "good-1"]

def test_an_un_vouched_org_every_watcher_roots_keeps_its_agents_untouched():
    """short.toml's quiet org stops vouching for honest[1] (n01): every node roots n01 or is it, so its standing stays
    1 everywhere and its agent good-1 is still the honest world's. Before, any vouchee's agents were left out."""
    text = Path(__file__).with_name("short.toml").read_text()
    scenario = parse_scenario(text[:text.index("[[faults]]")] + '[[vouches]]\nfrom = "quiet"\nto = "honest[1]"\n'
                              'action = "revoke"\nat = 5\n', name="unvouched")
    result = replace(run({}, {}, []), scenario=scenario, plan=make_plan(scenario, list(DIDS), seed=1))
    assert [a.name for a in result.plan.agents if a.operator == "n01"] == ["good-1"]
    assert all("n01" in result.plan.roots[n] or n == "n01" for n in result.plan.nodes)
    assert untouched_agents(result) == ["bad-0", "good-0", "good-1"]


def test_a_node_that_gave_no_view_at_the_end_gives_no_final_score_and_leaves_praise_with_no_verdict():
    """Found by stop 43's second read: the final scores were each node's last answered, so a node that stopped
    answering early (SIGSTOPped, overloaded) and gave no view at the end (`unanswered`) gave scores of long before as
    final, and a praise whose targets rose meanwhile read `contained` on a full count of views. Its scores are left
    out, as its view of the orgs is: the praise has no verdict, and the confusion matrix and whitewash do not count
    it."""
    result = praised([("n00", 4, "untrusted"), ("n01", 6, "untrusted"), ("n02", 950, "verified")])
    result = replace(result, unanswered={"n01": "the node at http://127.0.0.1:30741 did not answer within 10.0 s"})
    results = results_json(result, measure(result), {})
    assert [(f["node"], f["agent"]) for f in results["final_scores"]] == [("n00", "bad-0"), ("n02", "bad-0")]
    assert sum(sum(row["tiers"].values()) for row in results["measurements"]["confusion"]["rows"]) == 1
    (verdict,) = judge(results)
    assert verdict.outcome == UNDECIDED and verdict.figures.endswith("trusted or better in 0 of 1 view (of 2 expected)")
