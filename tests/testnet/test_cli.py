"""`vouchnet testnet up` over a directory that already holds a testnet: what it was asked must match what is there;
and a Ctrl-C, or a node failing, while it starts one leaves no node running and nothing undone that the next `up`
does not do."""

import errno
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from node.cli import main
from node.client import NodeApiError, NodeUnreachable
from testnet import scenario as scenario_module
from testnet import processes
from testnet.cli import ProgressBar
from testnet.cluster import Cluster, ClusterError
from testnet.plan import make_plan
from testnet.ports import PortRange
from testnet.scenario import ScenarioError, library, load_scenario
from testnet import state
from testnet.state import NodeEntry, node_name, save_state

from ..fsyncs import recorded_fsyncs
from .test_scenario import MINIMAL


@pytest.fixture
def existing(tmp_path, monkeypatch):
    """A stopped testnet of two nodes (mesh, seed 1), whose nodes must not be started."""
    monkeypatch.setattr(processes, "spawn_node", lambda *args: pytest.fail("a node was started"))
    nodes = (NodeEntry("n00", "nodes/n00", 1, 2, "did:a", "a"), NodeEntry("n01", "nodes/n01", 3, 4, "did:b", "b"))
    save_state(tmp_path, state.TestnetState("testnet", 1, "mesh", nodes))
    return tmp_path


def test_the_state_file_is_synced_before_it_replaces_the_one_before_and_its_directory_after(tmp_path, monkeypatch):
    """Before: written and renamed unsynced, a power cut could leave testnet.json empty (the testnet's nodes then
    unknown to `status` and `down`)."""
    synced = recorded_fsyncs(monkeypatch)
    save_state(tmp_path, state.TestnetState("testnet", 1, "mesh", ()))
    assert synced == [str(tmp_path.resolve() / f".{state.STATE_FILE}.partial"), str(tmp_path.resolve())]


@pytest.mark.parametrize(("option", "complaint"), [
    (["--topology", "ring"], "holds a testnet of topology mesh, not ring"),
    (["--seed", "7"], "holds a testnet of seed 1, not 7"),
    (["--nodes", "3"], "holds a testnet of 2 nodes, not 3"),
])
def test_up_over_a_testnet_refuses_a_shape_it_does_not_have(existing, capsys, option, complaint):
    """And says what to do, naming the directory in the command it gives (it said `vouchnet testnet down`, which,
    run as given, stops the testnet in ./vouchnet-testnet), and what to remove there: what `up` made, not the
    directory (it said to remove that, which `up` may have been given holding more: --dir .)."""
    assert main(["testnet", "up", "--dir", str(existing), *option]) == 2
    assert capsys.readouterr().err == (
        f"vouchnet testnet up: {existing} {complaint}: leave out {option[0]} to start it as it is; for a new one, give "
        f"another --dir, or stop this one (`vouchnet testnet down --dir {existing}`) and remove what it made there, "
        f"{existing}/testnet.json and {existing}/nodes\n")


@pytest.mark.parametrize(("held", "asked", "said"), [
    (None, "48000-48099", "holds a testnet of ports from 10000 up (no --ports), not 48000-48099"),
    ((48000, 48099), "49000-49099", "holds a testnet of ports 48000-48099, not 49000-49099"),
])
@pytest.mark.parametrize("command", [["up"], ["run", "baseline"]], ids=["up", "run"])
def test_ports_other_than_a_testnet_s_own_are_refused_over_it(existing, capsys, held, asked, said, command):
    """Its nodes' ports are drawn already: --ports would be ignored (and a port moved later drawn from the range the
    testnet was made with)."""
    if held is not None:
        state.save_state(existing, replace(state.load_state(existing), ports=PortRange(*held)))
    assert main(["testnet", *command, "--dir", str(existing), "--ports", asked]) == 2
    assert said in capsys.readouterr().err
    assert state.load_state(existing).ports == (None if held is None else PortRange(*held))


def test_up_over_a_testnet_takes_the_ports_it_was_made_with(existing, capsys, monkeypatch):
    state.save_state(existing, replace(state.load_state(existing), ports=PortRange(48000, 48099)))
    monkeypatch.setattr(Cluster, "start", lambda self, *args, **kwargs: [])
    assert main(["testnet", "up", "--dir", str(existing), "--ports", "48000-48099"]) == 0


def test_run_on_a_testnet_of_another_size_says_what_to_do(existing, capsys):
    """It said only that the testnet had 2 nodes, not 3."""
    assert main(["testnet", "run", "baseline", "--dir", str(existing), "--nodes", "3"]) == 2
    assert capsys.readouterr().err.endswith(
        f"vouchnet testnet run: {existing} holds a testnet of 2 nodes, not 3: leave out --nodes to run on it, or give "
        "another --dir, where a testnet of that size is made\n")


@pytest.mark.parametrize("command", [["up"], ["run", "baseline"]], ids=["up", "run"])
@pytest.mark.parametrize("nodes", ["101", "1000000000"])
def test_a_testnet_of_more_nodes_than_a_scenario_may_have_is_refused_before_anything_is_made(tmp_path, monkeypatch,
                                                                                           capsys, command, nodes):
    """As a scenario file's `nodes` is, 1 to 100 (node_name's n00-n99 sort in start order): before, 10^9 took every
    byte of memory in making the mesh topology (up) or the plan's node names (run), and ended in MemoryError."""
    monkeypatch.setattr(Cluster, "create", lambda *args, **kwargs: pytest.fail("a testnet was made"))
    assert main(["testnet", *command, "--nodes", nodes, "--dir", str(tmp_path / "tn")]) == 2
    assert capsys.readouterr().err.endswith(f"vouchnet testnet {command[0]}: error: argument --nodes: expected a "
                                            f"number of nodes, 1 to 100, got '{nodes}'\n")
    assert not (tmp_path / "tn").exists()


@pytest.mark.parametrize("command", [["up"], ["run", "baseline"]], ids=["up", "run"])
def test_a_port_range_too_small_for_a_new_testnet_is_a_usage_error(tmp_path, monkeypatch, capsys, command):
    """Exit 2, as every command asked wrong (README "Read the report": 1 is a run that failed). Before: `up` and `run`
    said it as a failure, exit 1, once Cluster.create refused it."""
    monkeypatch.setattr(Cluster, "create", lambda *args, **kwargs: pytest.fail("a testnet was made"))
    assert main(["testnet", *command, "--nodes", "3", "--ports", "48000-48004", "--dir", str(tmp_path / "tn")]) == 2
    assert capsys.readouterr().err.endswith(
        f"vouchnet testnet {command[0]}: --ports 48000-48004: 5 ports, fewer than the 6 a testnet of 3 nodes needs (a "
        "p2p and an API port each)\n")
    assert not (tmp_path / "tn").exists()


def _sleepers(self, names=None, *, progress=None, say=None, timeout=None):
    """Cluster.start with a sleeping process for each node: interrupted (Ctrl-C) while waiting for their APIs."""
    _sleep(self, [n for n in (self.names if names is None else names) if not self.running(n)])
    raise KeyboardInterrupt


def _sleep(cluster, names):
    for name in names:
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        cluster._set(replace(cluster.entry(name), pid=process.pid, started=processes.start_time(process.pid)))


def _last_exits(self, names=None, *, progress=None, say=None, timeout=None):
    """Cluster.start with a sleeping process for each node but the last, which exits while starting."""
    *sleeping, last = [n for n in (self.names if names is None else names) if not self.running(n)]
    _sleep(self, sleeping)
    raise ClusterError(f"{last}: exited while starting; its log ends:\n    error: bad config")


def _up_leaving_no_node_running(directory, *, nodes: int) -> int:
    """`vouchnet testnet up --nodes N` in `directory`, checked to leave no node running; its exit code."""
    try:
        code = main(["testnet", "up", "--nodes", str(nodes), "--dir", str(directory)])
        cluster = Cluster.open(directory)
        assert not any(cluster.running(name) for name in cluster.names)
    finally:
        Cluster.open(directory).stop(timeout=0)
    return code


def test_a_ctrl_c_while_up_starts_a_testnet_stops_its_nodes_and_the_next_up_makes_the_topology_vouches(
        tmp_path, monkeypatch, capsys):
    directory = tmp_path / "testnet"
    monkeypatch.setattr(Cluster, "start", _sleepers)
    assert _up_leaving_no_node_running(directory, nodes=2) == 130
    assert f"`vouchnet testnet up --dir {directory}` goes on" in capsys.readouterr().err

    vouched = []
    monkeypatch.setattr(Cluster, "start", lambda self, names=None, progress=None, say=None: [])
    monkeypatch.setattr(Cluster, "vouch_topology", lambda self: vouched.append(self.state.topology) or 2)
    assert main(["testnet", "up", "--dir", str(directory)]) == 0
    assert vouched == ["mesh"]  # left undone by the interrupted `up`, made by this one


def test_the_summary_says_who_held_the_evidence_and_who_acts_on_it(capsys):
    from testnet.cli import _print_summary

    evidence = {"nodes_flagging": 3, "of": 3, "seconds_to_flag_everywhere": 0.4, "flagged_before": False}
    _print_summary({"propagation": {"everywhere": {"count": 0}}, "catch_up": [], "rotations": [], "trust_changes": [],
                    "convergence": {"converged": True, "records": 9},
                    "checkpoints": {"all_current_and_witnessed": True, "nodes": {}}, "confusion": {"rows": []},
                    "attacks": [{"type": "equivocation", "node": "n02", "distrusted_by": ["n01"], "of_others": 2,
                                 "weight_at": {"n00": 0.5, "n01": 0.0, "n02": 1.0}, **evidence},
                                {"type": "key-theft", "victim": "n01", "thief_counts_for_nothing": True,
                                 "thief_key": dict.fromkeys(("n00", "n01", "n02"), {}), **evidence,
                                 "flagged_before": True}]})
    out = capsys.readouterr().out.splitlines()
    # (it ended "the last 0.4 s after;", after nothing)
    assert out[0] == ("equivocation by n02: 3 of 3 nodes held the evidence, the last 0.4 s after its two records "
                      "were offered; 1 of the 2 others count it an equivocator")
    assert out[1] == ("key theft from n01: 3 of 3 nodes held the evidence, the last 0.4 s after the thief offered its "
                      "records (it was flagged before this run); the thief's key counts for nothing: True")


def test_the_summary_counts_apart_the_nodes_that_gave_no_view_at_the_end(capsys):
    """Before: `3 of the 4 others count it an equivocator` where the fourth had not answered, which read as a node
    that did not count it one, and a thief's key `counts for nothing: True` over the nodes that answered alone."""
    from testnet.cli import _print_summary

    evidence = {"nodes_flagging": 4, "of": 4, "seconds_to_flag_everywhere": 0.4, "flagged_before": False}
    _print_summary({"propagation": {"everywhere": {"count": 0}}, "catch_up": [], "rotations": [], "trust_changes": [],
                    "convergence": {"converged": True, "records": 9},
                    "checkpoints": {"all_current_and_witnessed": True, "nodes": {}}, "confusion": {"rows": []},
                    "attacks": [{"type": "equivocation", "node": "n03", "distrusted_by": ["n00", "n02"],
                                 "of_others": 3, "weight_at": {"n00": 0.0, "n02": 0.0, "n03": 1.0}, **evidence},
                                {"type": "key-theft", "victim": "n02", "thief_counts_for_nothing": True,
                                 "thief_key": dict.fromkeys(("n00", "n02", "n03"), {}), **evidence}]})
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("; 2 of the 3 others count it an equivocator (1 gave no view at the end)")
    assert out[1].endswith("the thief's key counts for nothing: True (at the 3 nodes that gave a view at the end, "
                           "of 4)")


def test_the_summary_gives_each_node_its_own_witnesses_cosignatures(capsys):
    """Each node's checkpoint is to carry the cosignatures of the orgs whose horizon holds it, which differ by node:
    the summary said "cosigned by their 4 witnesses", one figure for all."""
    from testnet.cli import _print_summary

    def row(checkpoint, by_witnesses, expected, witnessed):
        return {"ledger": 52, "checkpoint": checkpoint, "by_witnesses": by_witnesses, "expected": expected,
                "witnessed": witnessed}

    nodes = {"n00": row(52, 4, 4, True), "n01": row(52, 5, 5, True), "n02": row(40, 2, 2, False),
             "n03": row(None, 0, 3, False), "n04": row(52, 0, 4, None)}
    _print_summary({"propagation": {"everywhere": {"count": 0}}, "catch_up": [], "rotations": [], "trust_changes": [],
                    "convergence": {"converged": True, "records": 52}, "attacks": [], "confusion": {"rows": []},
                    "checkpoints": {"all_current_and_witnessed": False, "nodes": nodes}})
    assert capsys.readouterr().out.splitlines()[0] == (
        "converged: True (52 records); checkpoints current and cosigned by their witnesses: False (n00 4/4, n01 5/5, "
        "n02 2/2 but its checkpoint covers 40 of 52 records, n03 no checkpoint, n04 not judged (an equivocator's))")


def test_the_summary_says_how_praise_slander_and_whitewash_fared(capsys):
    from testnet.cli import _print_summary

    _print_summary({"propagation": {"everywhere": {"count": 0}}, "catch_up": [], "rotations": [], "trust_changes": [],
                    "convergence": {"converged": True, "records": 9},
                    "checkpoints": {"all_current_and_witnessed": True, "nodes": {}}, "confusion": {"rows": []},
                    "attacks": [{"type": "slander", "orgs": "liars", "agents": "good", "mean_final_score": 612.5,
                                 "trusted_or_better": 5, "untrusted": 1, "views": 8,
                                 "attackers_mean_final_score": 41.0,
                                 "batches": {"due": 40, "answered": 40, "failed": 0, "not_sent": 0}},
                                {"type": "praise", "orgs": "colluders", "agents": "bad", "mean_final_score": None,
                                 "trusted_or_better": 0, "views": 0, "attackers_mean_final_score": None,
                                 "batches": {"due": 40, "answered": 0, "failed": 40, "not_sent": 0}},
                                {"type": "whitewash",
                                 "agents": {"w-0": {"old_final_score": 4.0, "new_final_score": 2.0},
                                            "w-1": {"old_final_score": None, "new_final_score": 5.5}}}]})
    out = capsys.readouterr().out.splitlines()
    # (a slander's line gave how many views were trusted or better, which its verdict does not ask)
    assert out[:3] == ["slander of good by liars: at the honest nodes a mean final score of 612.5, untrusted in 1 of 8 "
                       "views; at the attackers' own nodes 41.0",
                       "praise of bad by colluders: at the honest nodes no score of them; at the attackers' own "
                       "nodes -; 40 of 40 batches failed",
                       "whitewash: mean final score at the honest nodes, old identity -> new: w-0 4.0 -> 2.0, "
                       "w-1 - -> 5.5"]


def test_the_summary_has_a_line_for_each_revocation_and_vouch_change(capsys):
    """Before: the run's summary said nothing of them, though they change what the scores show."""
    from testnet.cli import _print_summary

    _print_summary({"propagation": {"everywhere": {"count": 0}}, "catch_up": [], "rotations": [], "attacks": [],
                    "trust_changes": [{"kind": "revocation", "index": 1, "t": 30.0, "agents": "bad",
                                       "revoked": ["bad-0", "bad-1"], "operators": ["n00", "n01"]},
                                      {"kind": "vouches", "index": 0, "t": 35.5, "action": "vouch", "from": "honest",
                                       "to": "rogue[0]", "pairs": [["n00", "n03"]]}],
                    "convergence": {"converged": True, "records": 9},
                    "checkpoints": {"all_current_and_witnessed": True, "nodes": {}}, "confusion": {"rows": []}})
    assert capsys.readouterr().out.splitlines()[:2] == [
        "revocations[1] at 30 s: the operator vouches of agents bad revoked: bad-0, bad-1 (by n00, n01)",
        "vouches[0] at 35.5 s: org-peer vouches made: n00 for n03 (from honest to rogue[0])"]


def test_the_summary_counts_each_agent_group_s_final_tiers_in_views_of_an_agent_at_a_node(capsys):
    """The line read `agents good (honest) at the honest nodes: trusted 15`, a count that looked like a score."""
    from testnet.cli import _print_summary

    tiers = ("untrusted", "provisional", "trusted", "verified")
    _print_summary({"propagation": {"everywhere": {"count": 0}}, "catch_up": [], "rotations": [], "trust_changes": [],
                    "attacks": [],
                    "convergence": {"converged": True, "records": 9},
                    "checkpoints": {"all_current_and_witnessed": True, "nodes": {}},
                    "confusion": {"rows": [
                        {"group": "good", "behaviour": "honest", "tiers": dict(zip(tiers, (0, 1, 14, 0)))},
                        {"group": "bad", "behaviour": "malicious", "tiers": dict.fromkeys(tiers, 0)}]}})
    assert capsys.readouterr().out.splitlines()[1:] == [
        "agents good (honest), final tier at the honest nodes: provisional in 1, trusted in 14 of 15 views (an agent "
        "at a node)",
        "agents bad (malicious), final tier at the honest nodes: no score of them"]


def test_the_summary_says_how_low_slandered_agents_and_each_agent_group_fell_during_the_run(capsys):
    """Found by stop 45's testnet helper: an honest agent untrusted for a while as slander started, and trusted again
    at the end, showed nowhere in the summary."""
    from testnet.cli import _print_summary

    dip = {"lowest_during": {"score": 149, "tier": "untrusted", "node": "n01", "agent": "good-2", "t": 22.5},
           "untrusted_during": 3, "views_during": 16}
    tiers = ("untrusted", "provisional", "trusted", "verified")
    _print_summary({"propagation": {"everywhere": {"count": 0}}, "catch_up": [], "rotations": [], "trust_changes": [],
                    "convergence": {"converged": True, "records": 9},
                    "checkpoints": {"all_current_and_witnessed": True, "nodes": {}},
                    "attacks": [{"type": "slander", "orgs": "liars", "agents": "good", "mean_final_score": 612.5,
                                 "trusted_or_better": 16, "untrusted": 0, "views": 16,
                                 "attackers_mean_final_score": 41.0,
                                 "batches": {"due": 40, "answered": 40, "failed": 0, "not_sent": 0}, **dip}],
                    "confusion": {"rows": [{"group": "good", "behaviour": "honest",
                                            "tiers": dict(zip(tiers, (0, 0, 16, 0))), **dip}]}})
    out = capsys.readouterr().out.splitlines()
    said = ("the lowest during the run untrusted (149) (good-2 at n01, 22.5 s into the traffic), untrusted at some "
            "point in 3 of 16 views")
    assert out[0] == ("slander of good by liars: at the honest nodes a mean final score of 612.5, untrusted in 0 of 16 "
                      f"views; at the attackers' own nodes 41.0; {said}")
    assert out[2] == ("agents good (honest), final tier at the honest nodes: trusted in 16 of 16 views (an agent at a "
                      f"node); {said}")


class _Interrupted:
    """A scenario run that a Ctrl-C stops."""

    def __init__(self, cluster, scenario, **options):
        pass

    def execute(self):
        raise KeyboardInterrupt


def test_a_ctrl_c_during_a_run_says_what_it_left(existing, capsys, monkeypatch):
    from testnet import runner

    monkeypatch.setattr(runner, "Run", _Interrupted)
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 130
    assert (f"interrupted: no report written; `vouchnet testnet status --dir {existing}` shows the testnet as it was "
            "left") in capsys.readouterr().err


def test_a_run_lays_its_scenario_onto_a_testnet_it_made_knowing_whom_each_node_dials(existing, tmp_path, capsys,
                                                                                      monkeypatch):
    """On a testnet it made (topology none), a run knows which nodes each node dials, and a rotation catches up only
    with those (testnet.plan.Plan.dialled); on one it found, earlier runs may have left any org's records."""
    from testnet import runner

    runs = []

    class Recorded(_Interrupted):
        def __init__(self, cluster, scenario, **options):
            runs.append(options["fresh"])

    made = SimpleNamespace(names=[node_name(i) for i in range(3)], state=SimpleNamespace(seed=1))
    monkeypatch.setattr(runner, "Run", Recorded)
    monkeypatch.setattr(Cluster, "create", lambda *args, **options: made)
    assert main(["testnet", "run", "baseline", "--dir", str(tmp_path / "new"), "--nodes", "3"]) == 130
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 130
    assert runs == [True, False]


@pytest.mark.parametrize(("fresh", "keep", "said"), [
    (True, False, "the testnet it made in DIR is stopped"),
    (True, True, "the testnet in DIR runs on: `vouchnet testnet down --dir DIR` stops it"),
    (False, False, "the testnet in DIR runs on: `vouchnet testnet down --dir DIR` stops it"),
])
def test_a_finished_run_says_whether_its_testnet_runs_on(fresh, keep, said):
    from testnet.cli import _what_runs_on

    assert _what_runs_on(Path("DIR"), fresh=fresh, keep=keep) == said


def test_a_ctrl_c_while_a_run_makes_its_testnet_says_none_was_made(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(Cluster, "create", interrupted)
    assert main(["testnet", "run", "baseline", "--dir", str(tmp_path / "testnet")]) == 130
    assert "interrupted: no report written; no testnet was made" in capsys.readouterr().err


def test_a_run_that_fails_says_what_it_left(existing, tmp_path, capsys, monkeypatch):
    """As an interrupted one does. Before: a node that exited while the run restarted it (its roots changed) ended the
    run with the node's log alone, nothing saying that the testnet reused ran on without it and no report was
    written."""
    from testnet import runner

    def failing() -> None:
        raise ClusterError("n01: exited while starting; its log ends:\n    error: bad config")

    monkeypatch.setattr(runner, "Run", lambda *args, **options: SimpleNamespace(execute=failing))
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 1
    assert capsys.readouterr().err.endswith(
        "vouchnet testnet run: n01: exited while starting; its log ends:\n    error: bad config\nno report written; "
        f"`vouchnet testnet status --dir {existing}` shows the testnet as it was left\n")

    def not_made(*args, **options):
        raise ClusterError("n00: `vouchnet init` failed (1): no space left")

    monkeypatch.setattr(Cluster, "create", not_made)
    assert main(["testnet", "run", "baseline", "--dir", str(tmp_path / "new")]) == 1
    assert capsys.readouterr().err.endswith("no space left\nno report written; no testnet was made\n")


@pytest.mark.parametrize(("failure", "said"), [
    (NodeApiError(503, "unavailable", "the log is being repaired"), "the log is being repaired (503 unavailable)"),
    (NodeUnreachable("cannot reach the node at http://127.0.0.1:4: is `vouchnet run` running?"),
     "cannot reach the node at http://127.0.0.1:4 (n01): is `vouchnet run` running?"),
    (OSError(errno.ENOSPC, "No space left on device", "nodes/n01/config.toml"),
     "nodes/n01/config.toml: No space left on device"),
])
def test_a_run_that_a_node_api_or_the_disk_fails_says_what_it_left(existing, capsys, monkeypatch, failure, said):
    """As one a ClusterError ends does. Before: a node's API refusing a vouch of the setup (or not answering), or the
    file system refusing a node's config, ended the run with that error alone, nothing saying that no report was
    written or what became of the testnet (and the file system's with exit status 2, as a command asked wrong)."""
    from testnet import runner

    def failing() -> None:
        raise failure

    monkeypatch.setattr(runner, "Run", lambda *args, **options: SimpleNamespace(execute=failing))
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 1
    assert capsys.readouterr().err.endswith(f"vouchnet testnet run: {said}\nno report written; `vouchnet testnet "
                                            f"status --dir {existing}` shows the testnet as it was left\n")


def test_a_run_whose_node_did_not_answer_in_time_names_the_node_and_the_causes(existing, capsys, monkeypatch):
    """As a node command does after a node that did not answer in time (a node starting, or one stopped or
    overloaded). Before: `run` said only `the node at http://127.0.0.1:4 did not answer within 10.0 s`, leaving the
    reader to find which node has that address in testnet.json, and nothing of why a node may not answer."""
    from testnet import runner

    def failing() -> None:
        raise NodeUnreachable("the node at http://127.0.0.1:4 did not answer within 10.0 s", timed_out=True)

    monkeypatch.setattr(runner, "Run", lambda *args, **options: SimpleNamespace(execute=failing))
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 1
    assert capsys.readouterr().err.endswith(
        "vouchnet testnet run: the node at http://127.0.0.1:4 (n01) did not answer within 10.0 s\n"
        "  a node starting answers once its catch-up sync with its peers has ended, up to [p2p] startup_sync_seconds "
        "after it began (its log says `node running` then); try again then\n"
        "  a node running (its log said `node running`) that does not answer is stopped (SIGSTOP, a debugger) or "
        f"overloaded\nno report written; `vouchnet testnet status --dir {existing}` shows the testnet as it was left\n")


def test_a_run_that_an_error_it_does_not_expect_ends_says_so_and_what_it_left_and_keeps_the_traceback(
        existing, capsys, monkeypatch):
    """Before: any error but a node's, the API's or the file system's (a bug in the run, its measurements or its
    report) ended the run in a Python traceback alone, nothing saying that no report was written or what became of
    the testnet."""
    from testnet import runner

    def failing() -> None:
        raise ValueError("bad math in the propagation figures")

    monkeypatch.setattr(runner, "Run", lambda *args, **options: SimpleNamespace(execute=failing))
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.endswith(
        "vouchnet testnet run: failed on an error it does not expect, a bug: ValueError: bad math in the propagation "
        f"figures; its traceback is in {existing / 'run-error.txt'}, for a bug report\nno report written; `vouchnet "
        f"testnet status --dir {existing}` shows the testnet as it was left\n")
    kept = (existing / "run-error.txt").read_text()
    assert kept.startswith("Traceback") and "in failing" in kept and kept.endswith(
        "ValueError: bad math in the propagation figures\n")


def test_a_node_that_fails_to_start_stops_those_up_started_and_says_so(tmp_path, monkeypatch, capsys):
    """They were left running, unsaid: a failed `up` leaves what a Ctrl-C leaves, and the next `up` starts them all."""
    directory = tmp_path / "testnet"
    monkeypatch.setattr(Cluster, "start", _last_exits)
    assert _up_leaving_no_node_running(directory, nodes=3) == 1
    err = capsys.readouterr().err
    assert "n02: exited while starting; its log ends:\n    error: bad config\n" in err
    assert (f"stopped the 2 nodes it started (n00, n01); `vouchnet testnet up --dir {directory}` starts them "
            "again") in err


def test_a_topology_vouch_the_node_refuses_stops_the_nodes_up_started_and_says_so(tmp_path, monkeypatch, capsys):
    """As a node failing to start does. Before: a node's API refusing a vouch (or not answering) ended `up` with its
    error alone, the nodes it had started left running, unsaid."""
    def refused(self) -> int:
        raise NodeApiError(503, "unavailable", "the log is being repaired")

    directory = tmp_path / "testnet"
    monkeypatch.setattr(Cluster, "start", lambda self, names, **options: _sleep(self, names))
    monkeypatch.setattr(Cluster, "vouch_topology", refused)
    assert _up_leaving_no_node_running(directory, nodes=2) == 1
    assert capsys.readouterr().err == (
        "vouchnet testnet up: the log is being repaired (503 unavailable)\nstopped the 2 nodes it started (n00, "
        f"n01); `vouchnet testnet up --dir {directory}` starts them again\n")


def test_a_topology_vouch_refused_for_its_token_on_a_running_testnet_is_said_as_the_node_said_it(
        existing, monkeypatch, capsys):
    """`up` over a testnet whose nodes run, its vouches not made yet, a node answering that the token is not its own
    (another process took its API port, say): the node's error, exit 1. Before: an AttributeError traceback, as the
    hint for a refused token looked for the --token-file that `testnet` takes none of."""
    def refused(self) -> int:
        raise NodeApiError(401, "unauthorized", "Authorization: the bearer token is not this node's")

    save_state(existing, replace(state.load_state(existing), vouched=False))
    monkeypatch.setattr(Cluster, "running", lambda self, name: True)
    monkeypatch.setattr(Cluster, "vouch_topology", refused)
    assert main(["testnet", "up", "--dir", str(existing)]) == 1
    assert capsys.readouterr().err == ("vouchnet testnet up: Authorization: the bearer token is not this node's (401 "
                                       "unauthorized)\n")


def test_a_progress_bar_draws_on_the_standard_error_of_when_it_is_made(monkeypatch):
    """`vouchnet testnet` imports testnet.cli when it runs, in a process (or a test) whose stderr may have been
    replaced since: a bar bound to the stderr of an earlier time wrote into a closed file."""
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    ProgressBar("starting")("node-0", 1, 2)
    assert now.getvalue() == "starting: 1/2 node-0\n"


def test_logs_prints_the_last_lines_from_the_rotated_files_too_oldest_first(existing, capsys):
    """Before: only node.log's, so just after a rotation `logs` printed a line or none."""
    directory = existing / "nodes" / "n00"
    directory.mkdir(parents=True)
    for name, lines in [("node.log.2", "a\nb\n"), ("node.log.1", "c\nd\n"), ("node.log", "e\n")]:
        (directory / name).write_text(lines)
    assert main(["testnet", "logs", "n00", "--lines", "4", "--dir", str(existing)]) == 0
    assert capsys.readouterr().out == "b\nc\nd\ne\n"
    assert main(["testnet", "logs", "n00", "--dir", str(existing)]) == 0
    assert capsys.readouterr().out == "a\nb\nc\nd\ne\n"


def _status(existing, capsys) -> tuple[str, list[dict]]:
    """What `testnet status` prints, as a table and as --json."""
    assert main(["testnet", "status", "--dir", str(existing)]) == 0
    out = capsys.readouterr().out
    assert main(["testnet", "status", "--json", "--dir", str(existing)]) == 0
    return out, json.loads(capsys.readouterr().out)


def test_status_shows_a_running_node_whose_log_process_is_gone(existing, capsys):
    """Before: it showed `up`, and the node's lines went nowhere unseen."""
    cluster = Cluster.open(existing)
    (existing / "nodes" / "n00").mkdir(parents=True)
    (existing / "nodes" / "n00" / "api.token").write_text("t" * 43 + "\n")
    (existing / "nodes" / "n00" / "api.token").chmod(0o600)
    node, writer = processes.spawn_logged([sys.executable, "-c", "import time; time.sleep(60)"],
                                          existing / "n00.log")
    try:
        cluster._set(replace(cluster.entry("n00"), pid=node.pid, started=processes.start_time(node.pid),
                             log_pid=writer.pid, log_started=processes.start_time(writer.pid)))
        assert Cluster.open(existing).log_running("n00") is True
        writer.kill()
        writer.wait()
        out, rows = _status(existing, capsys)
    finally:
        node.kill()
        node.wait()
    n00 = out.splitlines()[1].split()
    assert n00[:1] + n00[2:5] == ["n00", "error,", "no", "log"]  # (its API does not answer: no node listens there)
    assert (f"n00: its log process is gone: what it writes is lost, and `vouchnet testnet logs n00 --dir {existing}` "
            f"shows nothing new (`vouchnet testnet down --dir {existing}`, then `up`, restarts it with its log)") in out
    assert [(row["name"], row["running"], row["log_running"]) for row in rows] == [("n00", True, False),
                                                                                   ("n01", False, None)]


def test_status_shows_a_running_node_whose_token_is_missing_as_unreadable_saying_why(existing, capsys):
    """Before: `status` stopped with a KeyFileError traceback, showing no node."""
    (existing / "nodes" / "n00").mkdir(parents=True)
    node = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cluster = Cluster.open(existing)
        cluster._set(replace(cluster.entry("n00"), pid=node.pid, started=processes.start_time(node.pid)))
        out, rows = _status(existing, capsys)
    finally:
        node.kill()
        node.wait()
    lines = out.splitlines()
    assert [line.split()[2] for line in lines[1:3]] == ["unreadable", "down"]
    token = existing / "nodes" / "n00" / "api.token"
    assert lines[3].startswith(f"n00: {token}: missing; restore it, or make a new one: ") and len(lines) == 4
    assert [(row["name"], row["unreadable"], row["error"] is not None) for row in rows] == [("n00", True, True),
                                                                                             ("n01", False, False)]


@pytest.mark.parametrize("command", [["up"], ["down"], ["run", "baseline"]])
def test_a_command_that_changes_a_testnet_is_refused_while_another_runs_on_it_naming_it(existing, capsys, command):
    """Before: two `up`s at once each started the nodes the other was starting and both failed, blaming a node; a
    second `run` rewrote the roots of the first's nodes mid-traffic."""
    from testnet.dir_lock import one_at_a_time

    with one_at_a_time(existing, "testnet run faults"):
        assert main(["testnet", *command, "--dir", str(existing)]) == 2
    assert (f"{existing} is in use by another command (pid {os.getpid()}: vouchnet testnet run faults): wait for it to "
            "end") in capsys.readouterr().err
    assert main(["testnet", "down", "--dir", str(existing)]) == 0  # once it ended


@pytest.mark.parametrize("directory", ["none", "no/such/testnet", "none/../other"])
def test_a_lock_in_a_directory_that_held_no_testnet_is_not_left_behind(tmp_path, capsys, monkeypatch, directory):
    """Nor the directories made for it on the way. Before: `--dir no/such/testnet` left `no/such` behind."""
    monkeypatch.chdir(tmp_path)
    assert main(["testnet", "down", "--dir", directory]) == 2
    assert "no testnet here" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
    assert main(["testnet", "run", "sybil-collusion", "--nodes", "2", "--dir", directory]) == 2
    assert "needs at least 5 nodes" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["up"], ["down"], ["status"], ["logs", "n00"], ["run", "baseline"]])
def test_a_node_s_data_directory_given_as_the_testnet_s_is_refused_naming_the_testnet_s(existing, capsys, command):
    """Before: `status --dir DIR/nodes/n00` said `no testnet here; start one with vouchnet testnet up --dir
    DIR/nodes/n00`, and `up` did so, making a testnet inside the node's data directory."""
    node = existing / "nodes" / "n00"
    node.mkdir(parents=True)
    (node / "config.toml").write_text("format = 1\n")
    assert main(["testnet", *command, "--dir", str(node)]) == 2
    assert capsys.readouterr().err.endswith(
        f"vouchnet testnet {command[0]}: error: argument --dir: {node} is a node's data directory (it holds "
        f"config.toml), not a testnet's: the testnet's is {existing}, two levels up\n")
    assert sorted(p.name for p in node.iterdir()) == ["config.toml"]


@pytest.mark.parametrize("command", [["up"], ["down"], ["status"], ["logs", "n00"], ["run", "baseline"]])
@pytest.mark.parametrize("given", ["option", "environment"])
def test_a_testnet_directory_that_is_a_file_is_refused_as_one(tmp_path, capsys, monkeypatch, command, given):
    """Before: `up`, `run` and `down` said 'DIR: File exists', `status` and `logs` 'DIR/testnet.json: Not a
    directory'."""
    taken = tmp_path / "notes.txt"
    taken.write_text("the user's")
    monkeypatch.setenv("VOUCHNET_TESTNET_DIR", str(taken))
    option = ["--dir", str(taken)] if given == "option" else []
    assert main(["testnet", *command, *option]) == 2
    assert capsys.readouterr().err.endswith(f"vouchnet testnet {command[0]}: error: argument --dir: {taken} is not a "
                                            "directory (a testnet's is, or is made there)\n")
    assert taken.read_text() == "the user's"


NO_ATTACK = {"scenario": {"name": "baseline", "seed": 1, "nodes": 2}, "agents": [], "final_scores": [],
             "measurements": {"confusion": {"observers": ["n00", "n01"]}, "attacks": []}}


def _finished_run(monkeypatch, results: dict, setup: dict | None = None,
                  unanswered: dict[str, str] | None = None, watch_errors: tuple[int, str | None] = (0, None)
                  ) -> list[dict]:
    """`run` with its scenario's run, measurements and report faked: the run ends with `setup` and the nodes that did
    not answer at the end (`unanswered`), its results are `results`, and its summary is the line "the summary";
    returns the results each report is written with."""
    from testnet import cli, measure, report, runner

    written: list[dict] = []
    monkeypatch.setattr(runner, "Run", lambda cluster, scenario, **options: SimpleNamespace(
        execute=lambda: SimpleNamespace(setup=setup or {}, unanswered=unanswered or {}, watch_errors=watch_errors[0],
                                        last_watch_error=watch_errors[1])))
    monkeypatch.setattr(measure, "measure", lambda result: {})
    monkeypatch.setattr(report, "results_json", lambda *args: results)
    monkeypatch.setattr(report, "write_report", lambda run, results, out: written.append(results) or out / "r.html")
    monkeypatch.setattr(cli, "_print_summary", lambda measurements: print("the summary"))
    return written


@pytest.mark.parametrize(("trusted", "views", "outcome", "status"), [
    (0, 2, "contained", 0), (1, 2, "succeeded", 3), (0, 1, "no verdict", 4)])
def test_a_run_ends_its_summary_with_a_verdict_per_attack_and_exits_by_them(existing, capsys, monkeypatch, trusted,
                                                                            views, outcome, status):
    """Before: the summary gave each attack's figures, never whether it succeeded, and a run exited 0 either way."""
    praise = {"attack": 0, "type": "praise", "orgs": "sybils", "agents": "bad", "targets": 1, "views": views,
              "trusted_or_better": trusted, "untrusted": 0,
              "highest_final": {"score": 400 + 200 * trusted, "tier": ["provisional", "trusted"][trusted]},
              "batches": {"due": 30, "answered": 30, "failed": 0, "not_sent": 0}}
    results = {**NO_ATTACK, "scenario": {"name": "sybil-collusion", "seed": 1, "nodes": 2},
               "measurements": {**NO_ATTACK["measurements"], "attacks": [praise]}}
    written = _finished_run(monkeypatch, results)
    assert main(["testnet", "run", "sybil-collusion", "--dir", str(existing)]) == status
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "the summary" and out[2].startswith("report: ")
    assert out[1].startswith(f"verdict: praise of bad by sybils: {outcome} — its 1 target's highest final score ")
    assert out[1].endswith("; the attack succeeds if any target ends trusted or better at an honest node")
    assert [v["line"] for v in written[0]["verdicts"]] == [out[1]]  # results.json and report.html say the same


def test_a_baseline_run_says_later_runs_of_its_seed_and_size_compare_with_it(existing, capsys, monkeypatch):
    _finished_run(monkeypatch, NO_ATTACK)
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == ("verdict: no attack ran; later runs with seed 1 on 2 nodes "
                                                       "compare their praise and slander verdicts with this one's "
                                                       "figures")
    assert main(["testnet", "run", "baseline", "--dir", str(existing), "--out", str(existing / "elsewhere")]) == 0
    assert capsys.readouterr().out.splitlines()[1] == ("verdict: no attack ran; its report is not under the "
                                                       "testnet's reports, so no later run compares with it")


def test_a_baseline_run_on_orgs_an_earlier_run_flagged_says_no_later_run_compares_with_it(existing, capsys,
                                                                                            monkeypatch):
    _finished_run(monkeypatch, NO_ATTACK, setup={"flagged_earlier": ["n01"]})
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "verdict: no attack ran; an earlier run on this testnet flagged the org of n01, so its figures are not the "
        "honest world's and no later run compares with it (a fresh testnet, another --dir, starts without)")


def test_an_out_that_cannot_be_a_directory_is_refused_before_the_run(existing, capsys, monkeypatch):
    """Before: the whole run was made (setup, traffic, settling), then writing its report failed ("File exists"), the
    report lost."""
    from testnet import runner

    monkeypatch.setattr(runner, "Run", lambda *args, **options: pytest.fail("the run started"))
    taken = existing / "taken"
    taken.write_text("a file")
    assert main(["testnet", "run", "baseline", "--dir", str(existing), "--out", str(taken / "report")]) == 2
    assert capsys.readouterr().err == (f"vouchnet testnet run: --out {taken / 'report'}: cannot be made a directory "
                                       "for the report (Not a directory)\n")
    _finished_run(monkeypatch, NO_ATTACK)
    assert main(["testnet", "run", "baseline", "--dir", str(existing), "--out", str(existing / "new" / "report")]) == 0
    assert (existing / "new" / "report").is_dir()


def test_a_refused_run_leaves_no_out_directory_it_made_behind(tmp_path, existing, capsys, monkeypatch):
    """--out is made once the plan was checked, and what the run made of it is removed when it writes no report: a
    refusal on a testnet reused, before any change to it, too. Before: made first, a refused plan left it behind,
    empty."""
    from testnet import runner

    out = tmp_path / "kept" / "mine" / "report"
    assert main(["testnet", "run", "sybil-collusion", "--nodes", "2", "--dir", str(tmp_path / "tn"), "--out",
                 str(out)]) == 2  # (a testnet run would make: too small)
    assert main(["testnet", "run", "sybil-collusion", "--dir", str(existing), "--out", str(out)]) == 2  # (reused)
    assert "needs at least 5 nodes" in capsys.readouterr().err
    assert not (tmp_path / "kept").exists()

    def refused_before_any_change() -> None:
        raise ScenarioError("faults[0]: refused")

    monkeypatch.setattr(runner, "Run", lambda *args, **options: SimpleNamespace(execute=refused_before_any_change))
    (tmp_path / "kept").mkdir()  # the user's: stays, empty or not
    assert main(["testnet", "run", "baseline", "--dir", str(existing), "--out", str(out)]) == 2
    assert (f"vouchnet testnet run: faults[0]: refused\nrefused before any change to the testnet in {existing}: its "
            "roots, settings and vouches are as they were, and the nodes that were down are stopped again\n") in (
        capsys.readouterr().err)
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "mine").exists()
    (tmp_path / "kept" / "mine").mkdir()
    (tmp_path / "kept" / "mine" / "notes").write_text("the user's")
    assert main(["testnet", "run", "baseline", "--dir", str(existing), "--out", str(out)]) == 2
    assert list((tmp_path / "kept" / "mine").iterdir()) == [tmp_path / "kept" / "mine" / "notes"]


@pytest.mark.parametrize("out", ["a/../b", "a/../b/c", "a/x/../../a/y", "a/./b/..", "a/../a"])
def test_a_refused_run_leaves_no_directory_its_out_passed_through_behind(tmp_path, existing, capsys, monkeypatch, out):
    """`--out a/../b` makes `a` on the way to `b`. Before: a refused run removed `b` and stopped at `a/..`, which it
    had counted missing, leaving `a` behind."""
    from testnet import runner

    def refused() -> None:
        raise ScenarioError("faults[0]: refused")

    monkeypatch.setattr(runner, "Run", lambda *args, **options: SimpleNamespace(execute=refused))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["testnet", "run", "baseline", "--dir", str(existing), "--out", out]) == 2
    assert "refused before any change" in capsys.readouterr().err
    assert list(work.iterdir()) == []


def test_a_run_whose_setup_records_were_still_missing_when_traffic_started_says_so(existing, capsys, monkeypatch):
    """Before: the setup's 'still missing after 30.2 s' scrolled away and the summary's figures read as any run's."""
    _finished_run(monkeypatch, NO_ATTACK, setup={"missing": {"n00": 1, "n02": 4}, "propagation_seconds": 30.2})
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 0
    out = capsys.readouterr().out
    assert ("warning: traffic started 30.2 s into the setup with its records still missing (n00 1 record, n02 4 "
            "records), so the figures above") in out
    assert f"trust graph: `vouchnet testnet status --dir {existing}` and the nodes' logs may say why" in out


def test_a_run_whose_node_gave_no_view_at_the_end_says_so_with_its_report(existing, capsys, monkeypatch):
    """A node that did not answer at the end (runner.Run._org_views) no longer fails the run: the report is written
    without its view, and the summary names it and what that leaves out."""
    _finished_run(monkeypatch, NO_ATTACK, unanswered={"n01": "the node at http://127.0.0.1:4 did not answer within "
                                                               "10.0 s"})
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 0
    assert ("warning: n01 gave no view of the orgs at the end (n01: the node at http://127.0.0.1:4 did not answer "
            "within 10.0 s): the figures read from those views (an equivocator counted, a thief's key weighed, the "
            "org groups' weight) and the agents' final scores (its last may be from long before) leave it out, "
            "and a verdict that needs it has none; `vouchnet testnet status --dir "
            f"{existing}` shows the nodes") in capsys.readouterr().out


def test_a_run_whose_watchers_asks_failed_says_how_many_and_the_latest(existing, capsys, monkeypatch):
    """Before: every score ask answered 500 (a node's scoring failing) and the summary said only `no honest node
    scored its targets`, the count of failed asks in results.json alone and no error anywhere but the nodes' logs."""
    _finished_run(monkeypatch, NO_ATTACK, watch_errors=(133, "n00: the API failed (500 internal)"))
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 0
    assert ("warning: 133 asks of the nodes for their records and scores failed while the run watched them (the "
            "latest, n00: the API failed (500 internal)): the figures above lack what those would have given; the "
            "nodes' logs may say why") in capsys.readouterr().out


def test_status_asks_every_node_at_once(existing, capsys, monkeypatch):
    """Before: one node after another, each up to its 5 s timeout, so a testnet of ten overloaded (or SIGSTOPped)
    nodes took nearly a minute to show. Each node's ask here waits until every node is being asked."""
    import threading

    from testnet import cli
    from testnet import status as status_module

    cluster = Cluster.open(existing)
    asked = threading.Barrier(len(cluster.names), timeout=10.0)

    def node_status(cluster, name):
        asked.wait()
        return status_module.NodeStatus(name, cluster.entry(name).did, cluster.entry(name).api_url, False)

    monkeypatch.setattr(status_module, "node_status", node_status)
    monkeypatch.setattr(cli, "_open", lambda directory: cluster)
    assert main(["testnet", "status", "--dir", str(existing)]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:3]] == ["n00", "n01"]


def test_a_run_says_the_machine_s_load_average_beside_its_timings(existing, capsys, monkeypatch):
    """Before: a run on a machine loaded by other work (load 12 on 2 cores) reported a node's start of 10 s and
    propagation p90 of 10 s as the network's, nothing saying the CPU was shared."""
    load = {"traffic_start": 0.3, "traffic_end": 12.0, "cores": 2}
    _finished_run(monkeypatch, {**NO_ATTACK, "load_average": load})
    assert main(["testnet", "run", "baseline", "--dir", str(existing)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "the machine's load average: 0.3 as traffic started, 12 as it stopped, on 2 cores (the timings above include "
        "waiting for a CPU where it exceeds the cores)")


def test_status_tells_a_node_that_exited_by_itself_from_one_stopped_by_down(existing, capsys):
    """Before: both were `down`, and nothing said the node had been killed or had crashed."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    started = processes.start_time(gone.pid)
    gone.wait()
    cluster = Cluster.open(existing)
    cluster._set(replace(cluster.entry("n00"), pid=gone.pid, started=started or 1))
    out, rows = _status(existing, capsys)
    assert [line.split()[2] for line in out.splitlines()[1:3]] == ["exited", "down"]
    assert (f"n00: exited without `vouchnet testnet down` (killed, crashed, or the machine restarted): `vouchnet "
            f"testnet logs n00 --dir {existing}` shows its last lines, `vouchnet testnet up --dir {existing}` starts "
            "it again") in out  # (the commands it gave named no --dir: run as given, they took ./vouchnet-testnet)
    assert [(row["name"], row["exited"]) for row in rows] == [("n00", True), ("n01", False)]


def test_status_says_an_exited_node_starts_again_once_the_command_holding_the_testnet_ends(existing, capsys):
    """Before: while a `run` held the directory, status told to start the node with `up`, which was refused at once
    (`in use by another command`). Status takes no lock: it reads who holds it."""
    from testnet.dir_lock import holder, one_at_a_time

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    started = processes.start_time(gone.pid)
    gone.wait()
    cluster = Cluster.open(existing)
    cluster._set(replace(cluster.entry("n00"), pid=gone.pid, started=started or 1))
    assert holder(existing) is None
    with one_at_a_time(existing, "testnet run"):
        assert holder(existing) == f"{os.getpid()}: vouchnet testnet run"
        out, _ = _status(existing, capsys)
    assert (f"`vouchnet testnet up --dir {existing}` starts it again once the command that holds the directory now "
            f"ends ({os.getpid()}: vouchnet testnet run)") in out
    assert holder(existing) is None  # (released: the lock file's words stay, and are not taken for a holder)


@pytest.mark.parametrize("made_by", ["up", "run"])
def test_up_over_a_running_testnet_says_it_started_none(existing, capsys, made_by):
    """Before: it said 'testnet up in 0.1 s', as if it had started it; and over a testnet `run` made (topology none:
    no org-peer vouch for `up` to make), it began '0 org-peer vouches made through the nodes' APIs'."""
    directory = existing / "made-by-run" if made_by == "run" else existing
    cluster = (Cluster.create(directory, nodes=2, seed=1, topology="none") if made_by == "run" else
               Cluster.open(existing))
    _sleep(cluster, cluster.names)
    try:
        assert main(["testnet", "up", "--dir", str(directory)]) == 0
    finally:
        Cluster.open(directory).stop(timeout=0)
    assert capsys.readouterr().out.startswith("all 2 nodes were running already: none started\nn00  ")


def test_a_ctrl_c_while_up_makes_a_testnet_says_none_was_made(tmp_path, capsys, monkeypatch):
    """Before: it ended saying nothing."""
    def interrupted(*args, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(Cluster, "create", interrupted)
    assert main(["testnet", "up", "--dir", str(tmp_path / "testnet")]) == 130
    assert f"interrupted: no testnet was made in {tmp_path / 'testnet'}" in capsys.readouterr().err


def _run_help(capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "10000")  # argparse wraps at a name's hyphen (on-off)
    assert main(["testnet", "run", "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


def test_run_help_gives_each_library_scenario_its_nodes_fewest_nodes_and_duration(capsys, monkeypatch):
    """An operator learnt a scenario's size only from a run's refusal; the fewest shown is one the scenario runs on,
    and one fewer is refused (faults and rotation select orgs past their groups' sizes)."""
    said = _run_help(capsys, monkeypatch)
    for name in library():
        scenario = load_scenario(name)
        shown = re.search(rf"\b{re.escape(name)} (\d+) nodes \(at least (\d+)\), ([\d.]+) s\b", said)
        assert shown is not None, name
        nodes, fewest, duration = int(shown[1]), int(shown[2]), float(shown[3])
        assert (nodes, duration) == (scenario.nodes, scenario.duration), name
        make_plan(scenario, [node_name(i) for i in range(fewest)], seed=1, fresh=True)
        with pytest.raises(ScenarioError):
            make_plan(scenario, [node_name(i) for i in range(fewest - 1)], seed=1, fresh=True)
    assert "faults 3 nodes (at least 3), 45 s" in said


def test_run_help_reads_the_sizes_from_the_library_s_files(tmp_path, monkeypatch, capsys):
    text = (Path(__file__).parent / "short.toml").read_text()
    (tmp_path / "quick.toml").write_text(text.replace("duration = 28", "duration = 31\nnodes = 7"))
    monkeypatch.setattr(scenario_module, "LIBRARY", tmp_path)
    # at least 3: the org groups take 2 nodes, but a fault cuts off honest[1], a second honest org
    assert "Library, with the nodes each starts (the fewest it runs on) and its seconds of traffic: quick 7 nodes " \
        "(at least 3), 31 s." in _run_help(capsys, monkeypatch)


@pytest.mark.parametrize(("nodes", "faults", "hint"), [
    (4, [("honest[0]", 2), ("rogue", 5)],  # two partitions at once: no testnet fits it
     " (with seed 1, scenario mine runs on no testnet `run` makes, of 1 to 100 nodes)"),
    (3, [("honest[3]", 2)], " (with seed 1, scenario mine runs on 5 nodes at the fewest)"),  # more than its own nodes
])
def test_a_scenario_refused_says_the_fewest_nodes_it_runs_on_only_if_some_testnet_fits_it(tmp_path, monkeypatch,
                                                                                         capsys, nodes, faults, hint):
    """The refusal said the scenario ran on its own `nodes` or more whenever a smaller testnet did not fit it: of one
    that fits none (its partitions overlap), and of one needing more than its `nodes`, a size it does not run on."""
    monkeypatch.setattr(Cluster, "create", lambda *args, **kwargs: pytest.fail("a testnet was made"))
    path = tmp_path / "mine.toml"
    path.write_text(MINIMAL.replace("duration = 30\n", f"duration = 30\nnodes = {nodes}\n") + "".join(
        f'[[faults]]\ntype = "partition"\nnodes = "{side}"\nat = {at}\nduration = 10\n' for side, at in faults))
    assert main(["testnet", "run", str(path), "--nodes", "3", "--dir", str(tmp_path / "testnet")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vouchnet testnet run: {path}:") and err.endswith(f"{hint}\n"), err
    assert "runs on" not in err.removesuffix(f"{hint}\n")


def test_run_help_says_a_library_scenario_that_fits_no_testnet_runs_on_none(tmp_path, monkeypatch, capsys):
    """Before: it said "(at least None)"."""
    text = (Path(__file__).parent / "short.toml").read_text()
    # the quiet org vouching for itself: an edge that makes no vouch, on any size
    (tmp_path / "quick.toml").write_text(text + '\n[[edges]]\nfrom = "quiet"\nto = "quiet"\n')
    monkeypatch.setattr(scenario_module, "LIBRARY", tmp_path)
    assert "traffic: quick 3 nodes (runs on no testnet of 1 to 100 nodes), 28 s." in _run_help(capsys, monkeypatch)


@pytest.mark.parametrize("name", ["faults", "rotation"])
def test_a_scenario_too_big_for_the_testnet_asked_says_the_fewest_nodes_it_runs_on(tmp_path, capsys, name):
    """A scenario whose attack or fault selects an org past its groups' sizes (honest[2]) needs more nodes than its
    groups: run on too few is refused naming the selector and the fewest nodes it runs on (it named the selector
    alone, so an operator learnt the size by trying), and no testnet is made."""
    directory = tmp_path / "testnet"
    assert main(["testnet", "run", name, "--nodes", "2", "--dir", str(directory)]) == 2
    err = capsys.readouterr().err
    assert "selects no org" in err and f"(with seed 1, scenario {name} runs on 3 nodes at the fewest)" in err
    assert not (directory / state.STATE_FILE).exists()


@pytest.mark.parametrize(("name", "seed", "error", "fewest", "options"), [
    ("faults", [], "honest[2] selects no org: group honest has 2 on this 2-node testnet", 3, "--nodes 3"),
    # (seed 7 draws edges that 5 or 6 nodes do not hold)
    ("sybil-collusion", ["--seed", "7"], "needs at least 5 nodes", 7, "--nodes 7 and --seed 7"),
])
def test_a_scenario_too_big_for_a_testnet_reused_says_to_run_it_in_another_directory(existing, capsys, name, seed,
                                                                                      error, fewest, options):
    """A testnet reused keeps its size (`--nodes` of another is refused): the fewest nodes a refusal names is that of
    a testnet `run` makes in another --dir, with the seed it would need given there. Before: "runs on 3 nodes at the
    fewest", as if --nodes 3 would do here, and nothing at all where the error named the size."""
    assert main(["testnet", "run", name, "--dir", str(existing), *seed]) == 2
    err = capsys.readouterr().err
    assert error in err and err.endswith(
        f" (this testnet's 2 nodes stay as they are; with seed {seed[-1] if seed else 1}, scenario {name} runs on a "
        f"testnet `run` makes of {fewest} nodes at the fewest: give another --dir, with {options})\n"), err


_TWO_ONE_ORG_GROUPS = MINIMAL.replace('nodes = "rest"', "nodes = 1")  # (larger testnets leave idle nodes alone)


@pytest.mark.parametrize(("text", "error", "hint"), [
    (MINIMAL + "orgs_per_agent = 3\n", "agents.good.orgs_per_agent: 3 orgs per agent, but on this 2-node testnet an "
     "agent can work at 1: its operator and 0 other orgs of works_at (honest); lower it, or run it on a larger "
     "testnet", "(this testnet's 2 nodes stay as they are; with seed 1, scenario mine runs on a testnet `run` makes "
     "of 4 nodes at the fewest: give another --dir, with --nodes 4)"),
    (MINIMAL + '\n[[edges]]\nfrom = "honest"\nto = "rogue"\ncount = 2\n', "edges[0].count: 2 vouches from honest "
     "to rogue, but on this 2-node testnet there is 1 pair of orgs to draw them from; lower it, or run it on a larger "
     "testnet", "(this testnet's 2 nodes stay as they are; with seed 1, scenario mine runs on a testnet `run` makes "
     "of 3 nodes at the fewest: give another --dir, with --nodes 3)"),
    (_TWO_ONE_ORG_GROUPS + "orgs_per_agent = 3\n", "agents.good.orgs_per_agent: 3 orgs per agent, but on this "
     "2-node testnet an agent can work at 1: its operator and 0 other orgs of works_at (honest); lower it, or make "
     "those groups larger", "(with seed 1, scenario mine runs on no testnet `run` makes, of 1 to 100 nodes)"),
])
def test_agents_or_edges_needing_more_orgs_than_a_testnet_reused_has_are_refused_saying_what_gives_them_more(
        existing, capsys, text, error, hint):
    """A testnet reused keeps its size (--nodes of another is refused), and with it the group that takes the rest: a
    larger testnet, in another --dir, gives that one more orgs; a group of a size the file gives grows only there.
    Before: "lower it, or make those groups larger" alone, as for a testnet `run` makes, where --nodes does that (and
    "there are 1 pair")."""
    mine = existing / "mine.toml"
    mine.write_text(text)
    assert main(["testnet", "run", str(mine), "--dir", str(existing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vouchnet testnet run: {mine}:") and err.endswith(f"{error} {hint}\n"), err


# rogue rotates; the honest org the seed draws to vouch for it is its only follower (honest roots no one)
_DRAWN_FOLLOWER = MINIMAL.replace('roots = ["honest"]\nvouch = ["honest"]\n', "") + """
[[edges]]
from = "honest"
to = "rogue"
count = 1

[[faults]]
type = "rotate"
nodes = "rogue"
at = 5

[[faults]]
type = "kill"
nodes = "honest[2]"
at = 10
duration = 2
"""


@pytest.mark.parametrize(("seed", "text", "hint"), [
    # seed 0 draws n01 to follow rogue, which on 4 nodes dials n00 and n02 only; on 5, n00 and n03 (n03 follows)
    ("0", _DRAWN_FOLLOWER, "(with seed 0, scenario mine runs on 5 nodes at the fewest)"),
    # rogue, the last node, dials n00, killed, and the quiet org, on any size: no testnet fits it
    ("1", _DRAWN_FOLLOWER.replace("[orgs.rogue]", "[orgs.quiet]\nnodes = 1\n\n[orgs.rogue]").replace(
        "at = 10\nduration = 2", "at = 2\nduration = 10").replace("honest[2]", "honest[0]"),
     "(with seed 1, scenario mine runs on no testnet `run` makes, of 1 to 100 nodes)"),
])
def test_a_refused_run_names_the_fewest_nodes_a_run_of_its_seed_would_need(tmp_path, capsys, seed, text, hint):
    """The fewest nodes a refusal names is that of a testnet `run` makes, with the run's seed: its rotations are checked
    against the nodes each dials, and the seed draws [[edges]]. Before: it was found with seed 0, every running node
    counting as dialled, so it named 4 (no hint: the 4 asked for) where seed 0 needs 5, and "5 nodes or more" for a
    scenario no size fits."""
    mine = tmp_path / "mine.toml"
    mine.write_text(text)
    directory = tmp_path / "testnet"
    assert main(["testnet", "run", str(mine), "--nodes", "4", "--seed", seed, "--dir", str(directory)]) == 2
    err = capsys.readouterr().err
    assert "would fail mid-run" in err and err.rstrip().endswith(hint), err
    assert not (directory / state.STATE_FILE).exists()
    scenario = load_scenario(str(mine))
    if "no testnet" not in hint:
        make_plan(scenario, [node_name(i) for i in range(5)], seed=int(seed), fresh=True)


@pytest.mark.parametrize(("options", "error"), [
    (["--nodes", "2"], "agents.good.orgs_per_agent: 3 orgs per agent, but on this 2-node testnet an agent can work at "
     "2: its operator and 1 other org of works_at (honest); lower it, or make those groups larger"),
    (["--duration", "20"], "faults[1].at + duration: 35 s is not within the run's --duration of 20 s"),
])
def test_a_library_scenario_refused_says_to_copy_its_file_before_changing_it(tmp_path, capsys, options, error):
    """A library scenario's file is vouchnet's installed one: "lower it" or "move it" meant editing that (for every
    later run, and undone by an upgrade). The refusal ends with the commands that copy it and run the copy."""
    directory = tmp_path / "testnet"
    name = "baseline" if "--nodes" in options else "faults"
    assert main(["testnet", "run", name, *options, "--dir", str(directory)]) == 2
    err = capsys.readouterr().err
    library_file = scenario_module.LIBRARY / f"{name}.toml"
    assert f"{library_file}:" in err and error in err, err
    assert (f"; {name} is the library's scenario, installed with vouchnet: to change it, copy it first (`cp "
            f"{library_file} ./{name}.toml`) and run the copy (`vouchnet testnet run ./{name}.toml`)") in err, err
    assert not (directory / state.STATE_FILE).exists()


def test_a_scenario_file_of_one_s_own_refused_is_not_told_to_be_copied(tmp_path, capsys):
    mine = tmp_path / "mine.toml"
    mine.write_text(MINIMAL + "orgs_per_agent = 3\n")
    assert main(["testnet", "run", str(mine), "--nodes", "2", "--dir", str(tmp_path / "testnet")]) == 2
    err = capsys.readouterr().err
    assert "lower it" in err and "copy" not in err, err


def test_the_holder_of_a_testnet_is_read_from_its_own_lock_alone_and_is_none_where_locks_cannot_be_read(
        existing, monkeypatch, tmp_path):
    """The kernel's table of locks (Linux) holds every lock of the machine: a POSIX lock on the lock file (which an
    flock does not wait for), a lock on a file whose inode number begins with the lock file's, a line of another shape
    name no holder; where the table cannot be read (another system) nothing is said, and status runs as before."""
    from testnet import dir_lock

    (existing / dir_lock.LOCK_FILE).write_text("4242: vouchnet testnet run\n")
    stat = (existing / dir_lock.LOCK_FILE).stat()
    key = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    table = tmp_path / "locks"
    monkeypatch.setattr(dir_lock, "KERNEL_LOCKS", table)
    assert dir_lock.holder(existing) is None  # (no table)
    others = (f"1: POSIX  ADVISORY  WRITE 4242 {key} 0 EOF\n2: FLOCK  ADVISORY  WRITE 4242 {key}7 0 EOF\n"
              f"3: DELEG  ACTIVE    READ  4242 {key}\n\n\xff an odd line\n")
    table.write_bytes(others.encode("latin-1"))
    assert dir_lock.holder(existing) is None
    table.write_bytes(f"{others}4: FLOCK  ADVISORY  WRITE 4242 {key} 0 EOF\n".encode("latin-1"))
    assert dir_lock.holder(existing) == "4242: vouchnet testnet run"
