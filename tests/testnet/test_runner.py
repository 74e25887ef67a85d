"""What a run does before its traffic starts: it lifts a partition a killed run left, and waits for the setup's
records at the nodes whose horizon holds their issuers, an equivocator's aside."""

import math
import os
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from node.client import NodeUnreachable
from testnet import faults, observe, runner
from testnet.cluster import ClusterError
from testnet.attacks import Equivocation, KeyTheft
from testnet.faults import Partition
from testnet.plan import make_plan
from testnet.runner import Run, _expected
from testnet.workers import Worker
from testnet.scenario import ScenarioError, load_scenario
from testnet.status import Checkpoint, NodeStatus
from tests.testnet.test_scenario import BRIDGED, DIALLED_QUIET, MINIMAL, VOUCHED_MID_RUN


def test_the_setup_waits_for_no_record_of_an_org_flagged_as_an_equivocator():
    plan = make_plan(load_scenario(str(Path(__file__).with_name("short.toml"))), ["n00", "n01", "n02"], seed=1)
    issued = {"vouch-by-n00": "n00", "vouch-by-n02": "n02"}  # n02 is the quiet org, rooted by the honest ones
    assert _expected(issued, plan, set()) == {n: {"vouch-by-n00", "vouch-by-n02"} for n in plan.nodes}
    assert _expected(issued, plan, {"n02"}) == {n: {"vouch-by-n00"} for n in plan.nodes}


# --- a testnet of fakes: nodes with block lists, watchers, a clock ---------------------------------------------------


class _Node:
    """A testnet node's API as far as a partition goes: its block list, and what a test makes a call to it do."""

    def __init__(self) -> None:
        self.blocked: list[str] = []
        self.on_block: Callable[[list[str]], None] = lambda peers: None  # after the list is replaced
        self.timeouts: list[float] = []
        self.known: list[dict] = []  # GET /v1/peers's known peers
        self.offenders: list[str] = []  # the offenders of the equivocation records it holds
        self.made: list[tuple[str, ...]] = []  # ("vouch", subject) and ("revoke", vouch id) records, as made
        self.weights: dict[str, float] = {}  # subject -> the weight of the vouch for it made last


class _NodeClient:
    def __init__(self, node: _Node) -> None:
        self.node = node

    def __enter__(self) -> "_NodeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def blocked_peers(self) -> list[str]:
        return list(self.node.blocked)

    def block_peers(self, peer_ids: list[str]) -> list[str]:
        self.node.blocked = list(peer_ids)
        self.node.on_block(peer_ids)
        return list(self.node.blocked)

    def peers(self) -> list[dict]:
        return []  # a cut closes its connections at once

    def iter_known_peers(self) -> Iterator[dict]:
        return iter(self.node.known)

    def vouch(self, subject: str, weight: float, basis: str) -> dict:
        self.node.made.append(("vouch", subject))
        self.node.weights[subject] = weight
        return {"id": f"vouch-for-{subject}"}

    def revoke(self, record_id: str, reason: str) -> dict:
        self.node.made.append(("revoke", record_id))
        return {"id": f"revoke-of-{record_id}"}

    def iter_records(self, *, issuer: str | None = None, kind: str | None = None) -> Iterator[dict]:
        """The node's equivocation records; or the issuer's `org` record naming its next key, as a rotation
        (_Testnet.rotate_key) leaves it."""
        if kind == "equivocation":
            return iter([{"kind": kind, "body": {"offender": offender}} for offender in self.node.offenders])
        return iter([{"id": f"org-of-{issuer}", "body": {"next": f"{issuer}+"}}])


class _Watcher:
    def __init__(self) -> None:
        self.stats = runner.TrafficStats()
        self.errors = 0
        self.stop_does: Callable[[], None] = lambda: None

    def start(self) -> None:
        pass

    def start_at(self, t0: float) -> None:
        pass

    def ask_to_stop(self) -> None:
        pass

    def stop(self) -> None:
        self.stop_does()

    def snapshot(self) -> list[observe.RecordInfo]:
        return []

    def holding(self, ids: set[str]) -> dict[str, int]:
        """As a RecordWatch's, for a record that reaches every node at once."""
        return dict.fromkeys(("n00", "n01", "n02"), len(ids))


class _Testnet:
    """`count` running nodes, each with a block list, that start, stop, are killed and rotate their keys at once."""

    def __init__(self, count: int = 3) -> None:
        self.names = [f"n{i:02d}" for i in range(count)]
        self.rotations: list[tuple[str, bool]] = []  # (node, whether `vouchnet key rotate` was to catch up)
        self.nodes = {n: _Node() for n in self.names}
        self.up = set(self.names)
        self.directory = Path("/tn")
        self.state = SimpleNamespace(nodes=[SimpleNamespace(name=n, did=f"did:{n}") for n in self.names])

    def entry(self, node: str) -> SimpleNamespace:
        return SimpleNamespace(peer_id=f"peer-{node}", keys=(f"did:{node}",))

    def configure(self, node: str, values: dict) -> bool:
        return False

    def running(self, node: str) -> bool:
        return node in self.up

    def start(self, names=None, *, progress=None, say=None) -> None:
        for node in set(self.names if names is None else names) - self.up:  # as Cluster.start: those not running
            self.up.add(node)
            self.nodes[node].blocked = []  # a node forgets its block list when it restarts

    def kill(self, node: str) -> None:
        self.up.discard(node)

    def stop(self, names: list[str]) -> None:
        self.up -= set(names)

    def rotate_key(self, node: str, *, catch_up: bool) -> tuple[str, str]:
        self.rotations.append((node, catch_up))
        return f"did:{node}", f"did:{node}+"

    def client(self, node: str, *, timeout: float = 10.0) -> _NodeClient:
        self.nodes[node].timeouts.append(timeout)
        return _NodeClient(self.nodes[node])

    def blocked(self) -> dict[str, list[str]]:
        return {n: node.blocked for n, node in self.nodes.items()}


class _Clock:
    """time.time, time.monotonic and time.sleep on a clock of their own, which a Ctrl-C interrupts `ctrl_c_at`
    seconds into the traffic if given (a sleep moves the clock on at once, and past that raises KeyboardInterrupt)."""

    def __init__(self, ctrl_c_at: float = math.inf) -> None:
        self.now = 1000.0
        self.at = 1000.0 + ctrl_c_at

    def time(self) -> float:
        return self.now

    monotonic = time

    def sleep(self, seconds: float) -> None:
        if self.now + seconds > self.at:
            self.now = self.at
            raise KeyboardInterrupt
        self.now += seconds


def test_a_run_lifts_the_partition_a_killed_run_left_before_its_setup():
    testnet = _Testnet()
    for node, blocked in {"n00": ["peer-2"], "n01": ["peer-2"], "n02": ["peer-0", "peer-1"]}.items():
        testnet.nodes[node].blocked = blocked
    said: list[str] = []
    scenario = load_scenario(str(Path(__file__).with_name("short.toml")))
    run = Run(testnet, scenario, seed=1, say=said.append)  # type: ignore[arg-type]
    run._configure()
    assert testnet.blocked() == {"n00": [], "n01": [], "n02": []}
    assert run.setup["blocks_lifted"] == ["n00", "n01", "n02"]
    assert any("lifted the peer block lists of n00, n01, n02" in line for line in said)


def test_the_setup_lists_as_restarted_only_the_nodes_it_restarted():
    """Before: `setup.restarted`, in results.json and the report's Setup table, listed every node whose config the run
    changed, so a testnet the run had just made, none of its nodes running yet, read as restarted whole."""
    testnet = _Testnet()
    testnet.up.discard("n01")
    testnet.configure = lambda node, values: node != "n02"  # type: ignore[method-assign]
    run = Run(testnet, load_scenario(str(Path(__file__).with_name("short.toml"))), seed=1)  # type: ignore[arg-type]
    run._configure()
    assert (run.setup["reconfigured"], run.setup["restarted"]) == (["n00", "n01"], ["n00"])


def test_a_run_says_every_ten_seconds_how_far_its_traffic_got(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(runner, "time", clock)
    said: list[str] = []
    scenario = load_scenario(str(Path(__file__).with_name("short.toml")))
    run = Run(_Testnet(), scenario, seed=1, say=said.append)  # type: ignore[arg-type]
    stats = runner.TrafficStats(events_accepted=40, events_rejected=1, batches_failed=2)
    run._traffic_until(1000.0, 25.0, stats)
    assert clock.now == 1025.0
    assert said == [f"t= {t:.1f} s  traffic (of 28 s): 40 events reported, 1 refused, 2 batches unanswered"
                    for t in (10, 20)]


def test_the_traffic_s_progress_names_the_nodes_that_did_not_answer_or_were_skipped(monkeypatch):
    """Before: `2 batches unanswered` alone, which node's a guess from the nodes' logs."""
    clock = _Clock()
    monkeypatch.setattr(runner, "time", clock)
    said: list[str] = []
    run = Run(_Testnet(), load_scenario(str(Path(__file__).with_name("short.toml"))), seed=1,  # type: ignore[arg-type]
              say=said.append)
    stats = runner.TrafficStats(events_accepted=40, batches_failed=3, failed_at=Counter(n03=1, n01=2),
                                batches_skipped=9, skipped_at=Counter(n01=9))
    run._traffic_until(1000.0, 10.0, stats)
    assert said == ["t= 10.0 s  traffic (of 28 s): 40 events reported, 0 refused, 3 batches unanswered (n01 2, n03 1), "
                    "9 not sent, their node still answering the one before (n01 9)"]


def test_a_run_ending_says_it_starts_the_nodes_that_are_down_before_it_does():
    """Before: a run interrupted (or ending) while a node was down, killed by hand, restarted it unsaid: a Ctrl-C took
    ten seconds to end, nothing said why."""
    testnet = _Testnet()
    testnet.up.discard("n01")
    said: list[str] = []
    run = Run(testnet, load_scenario(str(Path(__file__).with_name("short.toml"))), seed=1,  # type: ignore[arg-type]
              say=said.append)
    run._leave_whole((), failing=True)
    assert said == ["starting n01, down, so that the testnet is left whole (a node starts in seconds)"]
    assert testnet.up == {"n00", "n01", "n02"}


class _AskingToTheEnd(Worker):
    """A watcher whose asks in hand as it is stopped end only once every other watcher of `together` is stopping
    too (a node not answering: each waits out its timeout), at most 10 s on."""

    def __init__(self, together: threading.Barrier) -> None:
        cluster = SimpleNamespace(names=["n00"], client=lambda name, timeout: SimpleNamespace(close=lambda: None))
        super().__init__(cluster, timeout=10.0)  # type: ignore[arg-type]
        self.together = together
        self.waited_together = False

    def loop(self) -> None:
        self.stopping.wait()
        try:
            self.together.wait(timeout=10.0)
        except threading.BrokenBarrierError:
            return
        self.waited_together = True


def test_a_run_ending_stops_its_watchers_at_once_each_waiting_out_its_asks_beside_the_others():
    """Found by stop 43's second read: a Ctrl-C with a node SIGSTOPped waited for the traffic's batch in hand (10 s),
    then the scores' asks (5 s), then the records' (5 s), one watcher after another; now they wait at once."""
    testnet = _Testnet()
    together = threading.Barrier(3)
    watchers = tuple(_AskingToTheEnd(together) for _ in range(3))
    for watcher in watchers:
        watcher.start()
    run = Run(testnet, load_scenario(str(Path(__file__).with_name("short.toml"))), seed=1)  # type: ignore[arg-type]
    run._leave_whole(watchers, failing=True)
    assert [watcher.waited_together for watcher in watchers] == [True, True, True]


def test_a_run_reads_the_machine_s_load_as_its_traffic_stops_not_once_it_has_settled(tmp_path, monkeypatch):
    """As the summary says it (`12 as it stopped`), and as the load the traffic ran under. Before: it was read after
    the settling, a Ctrl-C during which found it unread."""
    text = Path(__file__).with_name("short.toml").read_text()
    path = tmp_path / "quiet.toml"
    path.write_text(text[:text.index("[[faults]]")])  # 28 s of traffic, then 4 s of settling; no attack nor fault
    clock = _Clock(ctrl_c_at=30.0)
    read_at: list[float] = []
    monkeypatch.setattr(runner.os, "getloadavg", lambda: read_at.append(clock.now) or (1.0, 1.0, 1.0))
    run, _ = _run_of_fakes(monkeypatch, _Testnet(), path)
    monkeypatch.setattr(runner, "time", clock)
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert [at - read_at[0] for at in read_at] == [0.0, 28.0]


def test_the_machine_s_load_is_read_where_the_system_tells_it(monkeypatch):
    monkeypatch.setattr(runner.os, "getloadavg", lambda: (3.14159, 1.0, 0.5))
    assert runner.machine_load() == 3.14

    def untold() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(runner.os, "getloadavg", untold)
    assert runner.machine_load() is None


_PARTITION = '[[faults]]\ntype = "partition"\nnodes = "honest[2]"\nat = 5\nduration = 10\n'


def _said_with_slow_rotations(tmp_path: Path, monkeypatch, text: str, ctrl_c_at: float) -> list[str]:
    """The step and progress lines of a run of the scenario `text` whose rotations take 18 s each, as on a loaded
    machine, Ctrl-C'ed `ctrl_c_at` seconds into the traffic (in the settling after it)."""
    path = tmp_path / "slow.toml"
    path.write_text(text)
    clock = _Clock(ctrl_c_at)
    testnet = _Testnet()
    rotate_key = testnet.rotate_key

    def slow_rotation(node: str, *, catch_up: bool) -> tuple[str, str]:
        clock.now += 18
        return rotate_key(node, catch_up=catch_up)

    testnet.rotate_key = slow_rotation  # type: ignore[method-assign]
    said: list[str] = []
    run, _ = _run_of_fakes(monkeypatch, testnet, path, said)
    monkeypatch.setattr(runner, "time", clock)
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    return [line for line in said if line.startswith(("t=", "  "))]


def test_a_step_due_while_a_slow_rotation_ran_is_said_to_be_late(tmp_path, monkeypatch):
    """A rotation stops, rotates and starts its node: 18 s on a loaded machine, and the kill due meanwhile runs once it
    ended. Before: said as "t= 18.5 s  SIGKILL n01" alone, so the file's 10 s seemed kept (the key theft of
    `rotation --duration 30`, due at 25 s, ran at 28.5 s, 1.5 s before the traffic ended, unsaid); and nothing said
    when the rotation ended (a run's lines stopped for 18 s, its progress lines too)."""
    rotation = '[[faults]]\ntype = "rotate"\nnodes = "honest[0]"\nat = 0.5\n'
    text = _PARTITIONED.replace(_PARTITION, rotation).replace("at = 1\nduration = 1", "at = 10\nduration = 2")
    assert _said_with_slow_rotations(tmp_path, monkeypatch, text, ctrl_c_at=24.0) == [
        "t=  0.5 s  rotate the key of n00",
        "  n00 runs again with its new key, 18.0 s after it was stopped (its stop, `vouchnet key rotate`, its start)",
        "t= 18.5 s  SIGKILL n01 (due at 10 s, 8.5 s late: the steps before it took that long)",
        "t= 18.5 s  restart n01 (due at 12 s, 6.5 s late: the steps before it took that long)",
        "t= 20.0 s  traffic (of 20 s): 0 events reported, 0 refused, 0 batches unanswered"]


def test_traffic_a_slow_rotation_ran_past_its_end_is_said_to_stop_late(tmp_path, monkeypatch):
    """The README's own scenario rotates at 40 s of 50: the traffic stopped at 57 s. Before: nothing said so, and the
    report's summary gave the file's 50 s."""
    rotation = '[[faults]]\ntype = "rotate"\nnodes = "honest[0]"\nat = 12\n'
    text = _PARTITIONED.replace(_PARTITION, rotation)
    assert _said_with_slow_rotations(tmp_path, monkeypatch, text, ctrl_c_at=34.0)[-3:] == [
        "t= 12.0 s  rotate the key of n00",
        "  n00 runs again with its new key, 18.0 s after it was stopped (its stop, `vouchnet key rotate`, its start)",
        "t= 30.0 s  traffic stops, 10.0 s past its 20 s: the steps before it took that long"]


def test_a_rotation_on_a_testnet_run_made_catches_up_only_if_a_node_it_dials_is_up():
    """n04 dials n00 and n03 (bootstrap peers; its horizon is its own org); with both killed it rotates without a
    catch-up. Before: n01 and n02 running counted, `vouchnet key rotate` was asked to catch up, found no peer it dials
    ("unreachable") and refused, failing the run mid-way."""
    testnet = _Testnet(5)
    scenario = load_scenario(str(Path(__file__).with_name("rotate_while_dialled_down.toml")))
    run = Run(testnet, scenario, seed=1, fresh=True)  # type: ignore[arg-type]
    for running in ({"n01", "n02", "n04"}, {"n01", "n02", "n03", "n04"}):  # n00 and n03 killed, then n03 back
        run.up, testnet.up = frozenset(running), set(running)
        run._rotate(["n04"], due=(5, 102))  # (faults[2])
    assert testnet.rotations == [("n04", False), ("n04", True)]


def _known(*nodes: str, source: str = "bootstrap") -> list[dict]:
    """GET /v1/peers's known peers naming `nodes` (the fake testnet's dids)."""
    return [{"org": f"did:{node}", "source": source} for node in nodes]


def test_on_a_testnet_reused_a_rotation_catches_up_only_if_a_node_its_node_says_it_dials_is_up(monkeypatch):
    """n04, on a testnet reused, says it dials n00 and n03 (n01 only dialled in); with both killed it rotates
    without a catch-up. Before: every running node counted there, `vouchnet key rotate` was asked to catch up, found
    no peer it dials ("unreachable") and refused, failing the run mid-way."""
    testnet = _Testnet(5)
    testnet.nodes["n04"].known = _known("n00", "n03") + _known("n01", source="inbound")
    run, _ = _run_of_fakes(monkeypatch, testnet, Path(__file__).with_name("rotate_while_dialled_down.toml"))
    monkeypatch.setattr(runner, "time", _Clock(ctrl_c_at=8.0))  # (after the rotation at 5 s)
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert testnet.rotations == [("n04", False)]


def test_a_rotation_catches_up_with_the_nodes_a_mid_run_vouch_brought_into_its_horizon(tmp_path, monkeypatch):
    """Found by stop 45's review: n04 vouches for the honest orgs at 1 s, so it dials n01 and n02 (followers) when
    it rotates at 5 s, n00 and n03 killed: it catches up with them. Before: the plan took what it dialled from the
    trust graph as the run set it up (n00 and n03, both down), and it rotated without a catch-up."""
    path = tmp_path / "vouched.toml"
    path.write_text(Path(__file__).with_name("rotate_while_dialled_down.toml").read_text() + VOUCHED_MID_RUN)
    testnet = _Testnet(5)
    testnet.nodes["n04"].known = _known("n00", "n03")
    run, _ = _run_of_fakes(monkeypatch, testnet, path)
    monkeypatch.setattr(Run, "_change_vouches", lambda self, index, records: None)  # (the fakes hold no records)
    monkeypatch.setattr(runner, "time", _Clock(ctrl_c_at=8.0))  # (after the rotation at 5 s)
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert testnet.rotations == [("n04", True)]

def test_on_a_testnet_reused_a_rotation_none_it_dials_would_follow_is_refused_before_the_setup(tmp_path, monkeypatch):
    """n04 says it dials n00 (killed) and n03, a quiet org that does not follow it: the run is refused, naming the
    file and line, before a vouch is made. Before: n02, which follows n04 but is not dialled, counted; the rotation
    was refused mid-run."""
    path = tmp_path / "quiet.toml"
    path.write_text(DIALLED_QUIET)
    testnet = _Testnet(5)
    testnet.nodes["n04"].known = _known("n00", "n03")
    run, _ = _run_of_fakes(monkeypatch, testnet, path)
    monkeypatch.setattr(Run, "_trust_graph", lambda self, records: pytest.fail("the setup began"))
    with pytest.raises(ScenarioError, match=rf"^{re.escape(str(path))}:33: faults\[2\]: the rotation of n04's key "
                       r"at 5 s would fail mid-run: .* it dials .*: n03, and none of them holds them"):
        run.execute()
    testnet.nodes["n04"].known = _known("n00", "n02", "n03")  # (it held n02's records from before)
    run, _ = _run_of_fakes(monkeypatch, testnet, path)
    monkeypatch.setattr(runner, "time", _Clock(ctrl_c_at=8.0))
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert testnet.rotations == [("n04", True)]


def test_on_a_testnet_reused_a_run_relying_on_an_org_an_earlier_run_flagged_is_refused_before_the_setup(
        tmp_path, monkeypatch):
    """An earlier run's key theft flagged bridge (n03), whose vouch alone brings rogue (n00) into the honest orgs'
    horizons; its nodes hold that evidence. Before: the plan knew nothing of it, so the run's equivocation of rogue was
    offered to a node that refuses rogue's records (outside_horizon), no node flagged rogue, and the verdict said the
    equivocation succeeded."""
    path = tmp_path / "bridged.toml"
    path.write_text(BRIDGED)
    testnet = _Testnet(5)
    testnet.nodes["n02"].offenders = ["did:n03"]  # (held by one node is enough: the evidence spreads)
    run, _ = _run_of_fakes(monkeypatch, testnet, path)
    with pytest.raises(ScenarioError, match=rf"^{re.escape(str(path))}:27: attacks\[0\]\.orgs: the equivocation "
                       r"offers records of n00's org .* \(its roots, and the orgs within 3 org-peer vouches of them; "
                       r"the vouches of n03, flagged by an earlier run on this testnet, extend none\)"):
        run.execute()


def test_on_a_testnet_reused_an_attack_on_an_org_an_earlier_run_flagged_is_refused_and_a_flagged_one_named(
        tmp_path, monkeypatch):
    """Before: an equivocation by rogue, which an earlier run's equivocation flagged, was run again: no node signed
    new evidence (they all held the old), and the verdict said the defence held, by the earlier run's doing."""
    path = Path(runner.__file__).with_name("scenarios") / "equivocation.toml"
    testnet = _Testnet(5)
    testnet.nodes["n00"].offenders = ["did:n04"]  # rogue, the last node
    run, _ = _run_of_fakes(monkeypatch, testnet, path)
    with pytest.raises(ScenarioError, match=rf"^{re.escape(str(path))}:\d+: attacks\[0\]\.orgs: the equivocation is "
                       r"of n04's org, which an earlier run on this testnet flagged as an equivocator: .* run it on a "
                       r"fresh testnet \(another --dir\), or select an org no run flagged; equivocation is the "
                       r"library's scenario, installed with vouchnet: to change it, copy it first .*$"):
        run.execute()
    testnet.nodes["n00"].offenders = ["did:n01"]  # an honest org, which rogue's attack does not need: said, and run
    said: list[str] = []
    run, _ = _run_of_fakes(monkeypatch, testnet, path, said)
    monkeypatch.setattr(runner, "time", _Clock(ctrl_c_at=1.0))
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    operated = ", ".join(agent.name for agent in run.plan.agents if agent.operator == "n01")
    assert run.setup["flagged_earlier"] == ["n01"] and operated
    assert (f"setup: an earlier run on this testnet flagged the org of n01 as an equivocator: every node counts its "
            f"vouches and digests for nothing, the operator vouches for {operated} too (a fresh testnet, another "
            "--dir, starts without)") in said


@pytest.mark.parametrize(("scenario", "offender", "refusal"), [
    ("whitewash", "did:n04", r"attacks\[0\]\.agents: the whitewash is of agents whitewashers operated by the org of "
                             r"n04, which"),
    ("slander", "did:n03", r"attacks\[0\]\.orgs: the slander is by the org of n03, which"),
])
def test_on_a_testnet_reused_an_attack_by_an_org_an_earlier_run_flagged_is_refused(monkeypatch, scenario, offender,
                                                                                   refusal):
    """Before: the whitewash scenario, its shady operator flagged by an earlier run's equivocation, was run and its
    verdict said `contained`: the operator's vouches for the fresh identities counted for nothing by the earlier run's
    doing, as a slanderer's reports did, which the setup said but the verdict did not."""
    path = Path(runner.__file__).with_name("scenarios") / f"{scenario}.toml"
    testnet = _Testnet(5)
    testnet.nodes["n00"].offenders = [offender]
    run, _ = _run_of_fakes(monkeypatch, testnet, path)
    with pytest.raises(ScenarioError, match=rf"^{re.escape(str(path))}:\d+: {refusal} an earlier run on this testnet "
                       r"flagged as an equivocator: .* run it on a fresh testnet \(another --dir\), or select agents "
                       rf"and orgs no run flagged; {scenario} is the library's scenario, installed with vouchnet: "
                       r"to change it, copy it first .*$"):
        run.execute()


def test_on_a_testnet_reused_a_refused_run_leaves_it_as_it_was(tmp_path, monkeypatch):
    """Every check comes before any change: n01, down, is started to be asked and stopped again; no config is
    written, no node restarted, no block list lifted. Before: the roots and settings were written into every
    config.toml, the nodes whose config changed restarted, the stopped ones started and left running, and a partition
    a killed run left lifted, all before the plan was refused."""
    path = tmp_path / "bridged.toml"
    path.write_text(BRIDGED)
    testnet = _Testnet(5)
    testnet.nodes["n02"].offenders = ["did:n03"]  # (refused: see the test above)
    testnet.up.discard("n01")
    testnet.nodes["n00"].blocked = ["peer-n04"]
    configured: list[str] = []
    testnet.configure = lambda node, values: configured.append(node) or True  # type: ignore[method-assign]
    started = testnet.start

    def start(names=None, *, progress=None, say=None) -> None:
        assert not configured, "a node was started after its config was written"
        started(names, progress=progress, say=say)

    testnet.start = start  # type: ignore[method-assign]
    said: list[str] = []
    run, _ = _run_of_fakes(monkeypatch, testnet, path, said)
    with pytest.raises(ScenarioError, match=r"attacks\[0\]\.orgs: the equivocation offers records of n00's org"):
        run.execute()
    assert said == ["setup: started n01 (down) with its config as it was, to ask the nodes whom they dial and which "
                    "orgs they flagged before anything on the testnet changes"]  # (a run going on restarts it)
    assert configured == []
    assert testnet.up == {"n00", "n02", "n03", "n04"}
    assert testnet.blocked()["n00"] == ["peer-n04"]


@pytest.mark.parametrize("path,attack", [(Path(__file__).with_name("short.toml"), "key theft"),
                                         (Path(runner.__file__).with_name("scenarios") / "equivocation.toml",
                                          "equivocation")])
def test_an_attack_with_no_other_node_running_fails_the_run_saying_why(path, attack):
    """Before: the run failed mid-way with a bare StopIteration, naming no attack and no node."""
    run = Run(_Testnet(5), load_scenario(str(path)), seed=1)  # type: ignore[arg-type]
    [target] = run.plan.select(run.scenario.attacks[0].orgs, "attacks[0].orgs")
    run.up = frozenset({target})
    with pytest.raises(ClusterError, match=rf"^attacks\[0\]: the {attack} needs .* and none is running then$"):
        (run._steal_key if attack == "key theft" else run._equivocate)(0)


@pytest.mark.parametrize("kind", ["equivocation", "key-theft"])
@pytest.mark.parametrize(("side", "offered", "across"), [
    (None, "n03", False),  # the last running node whose horizon holds rogue (BRIDGED), not n04 (quiet)
    (("n03", "n04"), "n02", False),  # on rogue's side of the partition
    (("n00",), "n03", True),  # every one across it: said
])
def test_an_equivocation_or_key_theft_goes_to_a_node_that_follows_its_org_on_its_side_of_a_partition(
        monkeypatch, tmp_path, kind, side, offered, across):
    """Before: its records went to the testnet's last running node (outside its group, for an equivocation), n04,
    which refuses the records of an org outside its horizon (the attack did not happen: no evidence, no thief's key
    anywhere), or to one across a partition in force, unsaid (no node held both sides until the heal)."""
    (tmp_path / "followed.toml").write_text(BRIDGED.replace("equivocation", kind))
    said: list[str] = []
    run = Run(_Testnet(5), load_scenario(str(tmp_path / "followed.toml")), seed=1,  # type: ignore[arg-type]
              say=said.append)
    run.up = frozenset(run.cluster.names)
    if side is not None:
        run.partition = Partition(side, tuple(n for n in run.cluster.names if n not in side))
    offers: list[tuple[str, str]] = []

    def equivocate(cluster, node: str, other: str, epoch_seconds: float) -> Equivocation:
        offers.append((node, other))
        return Equivocation("did:n00", node, 3, ("a", "b"), (node, other), ("accepted", "equivocation"), 0.0)

    def steal_key(cluster, victim: str, other: str) -> KeyTheft:
        offers.append((victim, other))
        return KeyTheft(victim, "did:n00", "did:thief", 3, ("a", "b"), other, ("accepted", "accepted"))

    monkeypatch.setattr(runner, "equivocate", equivocate)
    monkeypatch.setattr(runner, "steal_key", steal_key)
    (run._equivocate if kind == "equivocation" else run._steal_key)(0)
    assert offers == [("n00", offered)]
    assert any(f"{offered}, offered the {kind.replace('-', ' ')}'s records, is across the partition" in line
               for line in said) == across, said


@pytest.mark.parametrize(("kind", "line"), [("equivocation", "equivocation by n00 (rogue)"),
                                            ("key-theft", "key theft from n00 (rogue)")])
def test_an_equivocation_or_key_theft_is_said_with_its_org_s_node(monkeypatch, tmp_path, kind, line):
    """As the fault steps and the summary name nodes. Before: "key theft from honest[2]" as it ran, and "key theft
    from n02" in the summary, the operator left to match them."""
    (tmp_path / "named.toml").write_text(BRIDGED.replace("equivocation", kind))
    said: list[str] = []
    run = Run(_Testnet(5), load_scenario(str(tmp_path / "named.toml")), seed=1,  # type: ignore[arg-type]
              say=said.append)
    run.up = frozenset(run.cluster.names)
    monkeypatch.setattr(runner, "time", _Clock())
    monkeypatch.setattr(runner, "equivocate", lambda cluster, node, other, epoch_seconds: Equivocation(
        "did:n00", node, 3, ("a", "b"), (node, other), ("accepted", "equivocation"), 0.0))
    monkeypatch.setattr(runner, "steal_key", lambda cluster, victim, other: KeyTheft(
        victim, "did:n00", "did:thief", 3, ("a", "b"), other, ("accepted", "accepted")))
    run._schedule(1000.0, runner.TrafficStats(), _Held(_Clock(), {}))  # type: ignore[arg-type]
    assert f"t= 10.0 s  {line}" in said, said


class _Held:
    """A RecordWatch of records each node holds from a time on its `clock`: `held` is record id -> node -> since
    when."""

    def __init__(self, clock: "_Clock", held: dict[str, dict[str, float]]) -> None:
        self.clock, self.held = clock, held

    def snapshot(self) -> list[observe.RecordInfo]:
        return [observe.RecordInfo(rid, f"did:{min(at, key=at.__getitem__)}", "digest", 1, 0.0, None)
                for rid, at in self.held.items()]

    def holding(self, ids: set[str]) -> dict[str, int]:
        return {node: sum(1 for rid in ids if self.held.get(rid, {}).get(node, math.inf) <= self.clock.now)
                for node in ("n00", "n01", "n02")}


def test_an_attack_planned_on_a_vouch_made_before_it_waits_until_the_nodes_it_brings_in_hold_it(tmp_path, monkeypatch):
    """Found by stop 45's testnet helper: rogue's equivocation at 3 s is planned on n00's vouch for it at 2 s, which
    brings rogue into n01's horizon, and its second record goes to n01. Before, it was offered at 3 s, while n01 still
    lacked the vouch (it arrived 3.5 s after it was made, on a loaded machine): n01 refuses the records of an org
    outside its horizon (outside_horizon), and the equivocation did not happen. Now the vouch waits until the nodes it
    brings rogue to hold it and rogue's records, and the equivocation follows, said to be late."""
    path = tmp_path / "vouched.toml"
    path.write_text(MINIMAL + '\n[[vouches]]\nfrom = "honest[0]"\nto = "rogue"\naction = "vouch"\nat = 2\n'
                    '\n[[attacks]]\ntype = "equivocation"\norgs = "rogue"\nat = 3\n')
    said: list[str] = []
    run = Run(_Testnet(), load_scenario(str(path)), seed=1, say=said.append)  # type: ignore[arg-type]
    run.up = frozenset(run.cluster.names)
    clock = _Clock()
    monkeypatch.setattr(runner, "time", clock)
    offers: list[tuple[str, float]] = []

    def equivocate(cluster, node: str, other: str, epoch_seconds: float) -> Equivocation:
        offers.append((other, clock.now))
        return Equivocation("did:n02", node, 3, ("a", "b"), (node, other), ("accepted", "equivocation"), 0.0)

    monkeypatch.setattr(runner, "equivocate", equivocate)
    held = _Held(clock, {"rogue-record": {"n02": 0.0, "n00": 1004.0, "n01": 1006.0},
                         "vouch-for-did:n02": {"n00": 1002.0, "n01": 1005.5}})
    run._schedule(1000.0, runner.TrafficStats(), held)  # type: ignore[arg-type]
    [(offered_to, when)] = offers
    assert offered_to == "n01" and when >= 1006.0
    assert [line for line in said if line.startswith(("t=", "  "))][:3] == [
        "t=  2.0 s  org-peer vouches made: n00 for n02 (from honest[0] to rogue)",
        "  n00, n01 held what it brings into their horizons after 4.0 s",
        "t=  6.0 s  equivocation by n02 (rogue) (due at 3 s, 3.0 s late: the steps before it took that long)"]
    [entry] = [e for e in run.timeline.events if e["kind"] == "vouches"]
    assert (entry["followers"], entry["followed_after"], entry["missing"]) == (["n00", "n01"], 4.0, {})




@pytest.mark.parametrize(("cut_off", "vouch_held"), [("rogue", {"n00": 1002.0, "n01": 1002.5}),
                                                     ("honest[0]", {"n00": 1002.0})])
def test_a_vouch_made_across_a_partition_waits_for_nothing_that_comes_only_after_the_heal(
        tmp_path, monkeypatch, cut_off, vouch_held):
    """n00 vouches for rogue (n02) at 2 s while a partition (1 s to 11 s) cuts off rogue (no node on n00's side can
    hold its records before the heal) or n00 (n01 cannot have the vouch before the heal, so rogue's records do not
    come into its horizon before then either): the vouch waits for none. Found by stop 45's review (the first as a
    mutation no test caught): n01 was waited for, 30 s (FOLLOW_TIMEOUT), said to have 'still lacked' them, and the
    heal due at 11 s came at 32 s, the traffic running 2 s past its end."""
    path = tmp_path / "vouched.toml"
    path.write_text(MINIMAL + '\n[[vouches]]\nfrom = "honest[0]"\nto = "rogue"\naction = "vouch"\nat = 2\n'
                    f'\n[[faults]]\ntype = "partition"\nnodes = "{cut_off}"\nat = 1\nduration = 10\n')
    said: list[str] = []
    run = Run(_Testnet(), load_scenario(str(path)), seed=1, say=said.append)  # type: ignore[arg-type]
    run.up = frozenset(run.cluster.names)
    clock = _Clock()
    monkeypatch.setattr(runner, "time", clock)
    held = _Held(clock, {"rogue-record": {"n02": 0.0}, "vouch-for-did:n02": vouch_held})
    run._schedule(1000.0, runner.TrafficStats(), held)  # type: ignore[arg-type]
    [entry] = [e for e in run.timeline.events if e["kind"] == "vouches"]
    assert (entry["followers"], entry["missing"]) == ([], {})
    assert "t= 11.0 s  heal the partition" in said, said

# --- a partition is healed however the run ends --------------------------------------------------------------------

_PARTITIONED = """
description = "Three nodes; n01 killed at 1 s and back at 2 s; n02 cut off from 5 s to 15 s."
nodes = 3
duration = 20

[orgs.honest]
nodes = "rest"
roots = ["honest"]
vouch = ["honest"]

[agents.good]
count = 1
behaviour = "honest"
operator = "honest"
works_at = ["honest"]

[[faults]]
type = "kill"
nodes = "honest[1]"
at = 1
duration = 1

[[faults]]
type = "partition"
nodes = "honest[2]"
at = 5
duration = 10
"""


def _run_of_fakes(monkeypatch, testnet: _Testnet, path: Path, said: list[str] | None = None) -> tuple[
        Run, dict[str, _Watcher]]:
    """The scenario at `path` run on `testnet` with its watchers and setup faked: (the run, its watchers by name)."""
    watchers = {name: _Watcher() for name in ("RecordWatch", "ScoreWatch", "Traffic")}
    for name, watcher in watchers.items():
        monkeypatch.setattr(runner, name, lambda *args, watcher=watcher, **options: watcher)
    monkeypatch.setattr(Run, "_trust_graph", lambda self, records: None)
    monkeypatch.setattr(Run, "_latency_histograms", lambda self: {})
    say = (said if said is not None else []).append
    return Run(testnet, load_scenario(str(path)), seed=1, say=say), watchers  # type: ignore[arg-type]


@pytest.fixture
def partitioned(tmp_path, monkeypatch) -> tuple[_Testnet, Run, list[str], dict[str, _Watcher]]:
    """The _PARTITIONED scenario, run with its watchers and setup faked, on a testnet of _Nodes: (the testnet, the
    run, what it says, its watchers by name)."""
    (tmp_path / "partitioned.toml").write_text(_PARTITIONED)
    testnet = _Testnet()
    said: list[str] = []
    run, watchers = _run_of_fakes(monkeypatch, testnet, tmp_path / "partitioned.toml", said)
    return testnet, run, said, watchers


def test_a_ctrl_c_4_s_into_a_partition_heals_it_though_another_stops_the_watchers(partitioned, monkeypatch):
    """Before: the watchers were stopped first, and a second Ctrl-C while they stopped (a round of requests to
    finish, and nothing said meanwhile) skipped the heal: every node kept its block list."""
    testnet, run, said, watchers = partitioned
    monkeypatch.setattr(runner, "time", _Clock(ctrl_c_at=9.0))

    def second_ctrl_c() -> None:
        assert testnet.blocked() == {"n00": [], "n01": [], "n02": []}  # healed before the watchers are stopped
        raise KeyboardInterrupt

    watchers["Traffic"].stop_does = second_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert testnet.blocked() == {"n00": [], "n01": [], "n02": []}
    assert "healing the partition n02 | rest (Ctrl-C waits for it, at most 5 s)" in said


def test_a_ctrl_c_while_the_heal_is_asked_lets_it_reach_every_node_then_interrupts(partitioned, monkeypatch):
    """Before: the Ctrl-C stopped the heal at the node being asked, and the nodes after it were not asked."""
    testnet, run, said, watchers = partitioned
    monkeypatch.setattr(runner, "time", _Clock(ctrl_c_at=9.0))
    testnet.nodes["n00"].on_block = lambda peers: None if peers else os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert testnet.blocked() == {"n00": [], "n01": [], "n02": []}


def test_a_node_that_fails_the_heal_keeps_no_other_cut_and_is_named_with_what_to_run(partitioned, monkeypatch):
    """Before: n00's error stopped the heal there (n01 and n02 were not asked), and replaced the Ctrl-C."""
    testnet, run, said, watchers = partitioned
    monkeypatch.setattr(runner, "time", _Clock(ctrl_c_at=9.0))

    def unreachable(peers: list[str]) -> None:
        if not peers:
            raise NodeUnreachable("http://127.0.0.1:1: no answer within 5 s")

    testnet.nodes["n00"].on_block = unreachable
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert testnet.blocked() == {"n00": [], "n01": [], "n02": []}  # (n00 emptied its list, but did not say so)
    assert ("error: the partition may still cut off n00 (their block lists could not be emptied: n00: "
            "http://127.0.0.1:1: no answer within 5 s); `vouchnet testnet status --dir /tn` shows each node's block "
            "list, and `vouchnet testnet down --dir /tn` then `up` lifts them") in said[-1]


def test_a_ctrl_c_while_a_node_restarts_inside_the_partition_heals_that_node_too(partitioned, monkeypatch):
    """n01 is killed at 5 s with n02 cut off at 3 s, and a Ctrl-C lands as it is cut off again on its restart at
    6 s, before the run counts it up. Before: only the nodes counted up were healed, and n01 stayed cut."""
    testnet, run, said, watchers = partitioned
    monkeypatch.setattr(runner, "time", _Clock(ctrl_c_at=20.0))
    scenario = run.scenario
    kill, partition = scenario.faults
    run.scenario = replace(scenario, faults=(replace(kill, at=5.0), replace(partition, at=3.0)))

    def ctrl_c_as_it_restarts(peers: list[str]) -> None:
        if peers and run.timeline.events[-1]["kind"] == "restart":
            raise KeyboardInterrupt

    testnet.nodes["n01"].on_block = ctrl_c_as_it_restarts
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert testnet.blocked() == {"n00": [], "n01": [], "n02": []}


def test_the_heal_is_dated_when_it_began_not_when_its_last_node_answered(partitioned, monkeypatch):
    """Two nodes across the cut reconnect and sync as soon as both have emptied their block lists. Before: the heal
    was dated once the last node answered, so on a loaded machine the records two others synced meanwhile counted
    as crossing the partition while it held (the testnet test's records_crossed: 40, not 0)."""
    testnet, run, said, watchers = partitioned
    clock = _Clock(ctrl_c_at=25.0)
    monkeypatch.setattr(runner, "time", clock)
    monkeypatch.setattr(observe, "time", clock)  # (the timeline's clock)
    asked: list[float] = []

    def slow_to_answer(peers: list[str]) -> None:
        if not peers:
            asked.append(clock.now)
            clock.sleep(3.0)

    testnet.nodes["n01"].on_block = slow_to_answer
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    [heal] = [event for event in run.timeline.events if event["kind"] == "heal"]
    assert [heal["at"]] == asked and testnet.blocked() == {"n00": [], "n01": [], "n02": []}


def test_the_heal_asks_every_node_at_once_each_bounded():
    """Before: one at a time, each within the client's 10 s: a node that did not answer held up those after it."""
    testnet = _Testnet()
    met = threading.Barrier(3, timeout=5.0)
    for node in testnet.nodes.values():
        node.blocked = ["peer-x"]
        node.on_block = lambda peers: met.wait()  # only passes if the three are asked at the same time
    assert faults.heal(testnet, testnet.names) == {}  # type: ignore[arg-type]
    assert testnet.blocked() == {"n00": [], "n01": [], "n02": []}
    assert {n: node.timeouts for n, node in testnet.nodes.items()} == {n: [faults.HEAL_TIMEOUT] for n in testnet.names}


def test_a_restart_inside_a_partition_says_when_the_api_answered_not_when_the_node_was_cut_off_again(monkeypatch):
    """A rotation's `answered` (the report's "its own start, until its API answered") took in the block-list calls
    that cut it off again after its API answered."""
    testnet, clock = _Testnet(), _Clock()
    monkeypatch.setattr(faults, "time", clock)
    testnet.kill("n00")
    testnet.nodes["n00"].on_block = lambda peers: clock.sleep(2.0)
    answered = faults.restart(testnet, "n00", Partition(side=("n00",), rest=("n01", "n02")), lambda line: None)
    assert (answered, clock.now) == (1000.0, 1002.0)
    assert testnet.blocked()["n00"] != []


class _Silent(_NodeClient):
    """A node that does not answer: its views of the orgs time out."""

    def iter_orgs(self) -> Iterator[dict]:
        raise NodeUnreachable("the node at http://127.0.0.1:4 did not answer within 10.0 s", timed_out=True)

    org = iter_orgs


class _Answering(_NodeClient):
    def iter_orgs(self) -> Iterator[dict]:
        return iter([{"org": "did:n00", "own": False}])

    def org(self, did: str) -> dict:
        return {"org": did, "equivocator": True, "weight": 0.0, "voucher_weight": 0.0, "own": False}


def test_a_node_that_does_not_answer_at_the_end_is_left_out_of_the_views_and_named():
    """Before: the first node that did not answer for its view of the orgs (stopped, overloaded, exited without the
    scenario stopping it) failed the whole run after its traffic and settling, its report lost; now the run's figures
    leave that node out (a verdict that needs its view has none) and the node is named with its error; it is not
    asked again for the keys' views, each ask costing a timeout."""
    testnet = _Testnet()
    asked: list[str] = []

    def client(node: str, *, timeout: float = 10.0) -> _NodeClient:
        asked.append(node)
        return (_Silent if node == "n01" else _Answering)(testnet.nodes[node])

    testnet.client = client  # type: ignore[method-assign]
    run = Run(testnet, load_scenario(str(Path(__file__).with_name("short.toml"))), seed=1)  # type: ignore[arg-type]
    run.up = frozenset(testnet.names)
    run.timeline.add("equivocation", offender="did:n02")
    assert sorted(run._org_views()) == ["n00", "n02"]
    assert run._key_views() == {"did:n02": {n: {"org": "did:n02", "equivocator": True, "weight": 0.0,
                                                "voucher_weight": 0.0} for n in ("n00", "n02")}}
    assert run.unanswered == {"n01": "the node at http://127.0.0.1:4 did not answer within 10.0 s"}
    assert asked == ["n00", "n01", "n02", "n00", "n02"]


def test_a_revocation_has_each_operator_revoke_its_vouch_for_its_agents_current_did_when_due(tmp_path, monkeypatch):
    """`[[revocations]]`: an agent whose operator vouch is revoked mid-run. After a whitewash, the vouch revoked is
    the operator's for the fresh identity (the one its agent goes by), not the burned one's."""
    path = tmp_path / "revoked.toml"
    path.write_text(MINIMAL + '\n[[attacks]]\ntype = "whitewash"\nagents = "good"\nat = 2\n'
                    '\n[[revocations]]\nagents = "good"\nat = 5\n')
    testnet = _Testnet()
    said: list[str] = []
    run, _ = _run_of_fakes(monkeypatch, testnet, path, said)
    run.operator_vouches = {"good-0": "setup-vouch-0", "good-1": "setup-vouch-1"}  # (the setup is faked)
    monkeypatch.setattr(runner, "time", _Clock(ctrl_c_at=8.0))
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    fresh = {name: run.agents[name].did for name in ("good-0", "good-1")}
    assert [line for line in said if "revoke" in line] == ["t=  5.0 s  revoke the operator vouches of good"]
    assert testnet.nodes["n00"].made == [("vouch", fresh["good-0"]), ("revoke", f"vouch-for-{fresh['good-0']}")]
    assert testnet.nodes["n01"].made == [("vouch", fresh["good-1"]), ("revoke", f"vouch-for-{fresh['good-1']}")]
    (entry,) = [e for e in run.timeline.events if e["kind"] == "revocation"]
    assert entry["revocation"] == 0 and entry["agents"]["good-1"] == {
        "did": fresh["good-1"], "operator": "n01", "vouch": f"vouch-for-{fresh['good-1']}",
        "revoke": f"revoke-of-vouch-for-{fresh['good-1']}"}


class _FailingAfterOneKey(_Answering):
    """A node that gives its view of the orgs, then of one key, then stops answering."""

    def __init__(self, node: _Node) -> None:
        super().__init__(node)
        self.keys_answered = 0

    def org(self, did: str) -> dict:
        if self.keys_answered:
            raise NodeUnreachable("the node at http://127.0.0.1:4 did not answer within 10.0 s", timed_out=True)
        self.keys_answered += 1
        return super().org(did)


def test_a_node_that_stops_answering_midway_through_the_keys_gives_none_of_their_views():
    """A view of one key beside none of the other would count the node as answered for an equivocation verdict that
    reads the first key, from a node that did not give its view of the end whole: it is named, and gives none."""
    testnet = _Testnet()
    failing = _FailingAfterOneKey(testnet.nodes["n01"])

    def client(node: str, *, timeout: float = 10.0) -> _NodeClient:
        return failing if node == "n01" else _Answering(testnet.nodes[node])

    testnet.client = client  # type: ignore[method-assign]
    run = Run(testnet, load_scenario(str(Path(__file__).with_name("short.toml"))), seed=1)  # type: ignore[arg-type]
    run.up = frozenset(testnet.names)
    run.timeline.add("equivocation", offender="did:n02")
    run.timeline.add("equivocation", offender="did:n00")
    views = run._key_views()
    assert sorted(views["did:n02"]) == sorted(views["did:n00"]) == ["n00", "n02"]
    assert run.unanswered == {"n01": "the node at http://127.0.0.1:4 did not answer within 10.0 s"}


def test_org_peer_vouches_are_made_and_revoked_mid_run_by_the_orgs_of_from_through_their_nodes(tmp_path, monkeypatch):
    """`[[vouches]]`: an org vouching for another, or revoking its vouch for it, when due (before: the trust graph was
    set once, before the traffic). A revoke revokes the vouch in force then: the one the setup found or made, or a
    change before it made."""
    path = tmp_path / "unvouched.toml"
    path.write_text(MINIMAL + '\n[[vouches]]\nfrom = "honest"\nto = "rogue"\naction = "vouch"\nweight = 0.5\nat = 2\n'
                    '\n[[vouches]]\nfrom = "honest[1]"\nto = "honest[0]"\naction = "revoke"\nat = 5\n'
                    '\n[[vouches]]\nfrom = "honest[1]"\nto = "rogue"\naction = "revoke"\nat = 5\n')
    testnet = _Testnet()
    said: list[str] = []
    run, _ = _run_of_fakes(monkeypatch, testnet, path, said)
    run.org_peer_vouches = {("n00", "n01"): "setup-n00-n01", ("n01", "n00"): "setup-n01-n00"}  # (the setup is faked)
    monkeypatch.setattr(runner, "time", _Clock(ctrl_c_at=8.0))
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert [line for line in said if "org-peer" in line] == [
        "t=  2.0 s  org-peer vouches made: n00 for n02, n01 for n02 (from honest to rogue)",
        "t=  5.0 s  org-peer vouches revoked: n01 for n00 (from honest[1] to honest[0])",
        "t=  5.0 s  org-peer vouches revoked: n01 for n02 (from honest[1] to rogue)"]
    assert testnet.nodes["n00"].made == [("vouch", "did:n02")]
    assert testnet.nodes["n00"].weights == testnet.nodes["n01"].weights == {"did:n02": 0.5}  # the change's weight
    assert testnet.nodes["n01"].made == [("vouch", "did:n02"), ("revoke", "setup-n01-n00"),
                                         ("revoke", "vouch-for-did:n02")]
    assert run.org_peer_vouches == {("n00", "n01"): "setup-n00-n01", ("n00", "n02"): "vouch-for-did:n02"}
    entries = [e for e in run.timeline.events if e["kind"] == "vouches"]
    assert [(e["change"], e["action"]) for e in entries] == [(0, "vouch"), (1, "revoke"), (2, "revoke")]
    assert entries[2]["pairs"] == [{"from": "n01", "to": "n02", "vouch": "vouch-for-did:n02",
                                    "revoke": "revoke-of-vouch-for-did:n02"}]


def test_the_setup_keeps_the_id_of_each_org_peer_vouch_in_force_for_a_later_revoke(monkeypatch):
    """The vouch a node held from before (a testnet reused) as well as the one the setup made: a `[[vouches]]` revoke
    revokes it by its id."""
    testnet = _Testnet()
    run = Run(testnet, load_scenario(str(Path(__file__).with_name("short.toml"))), seed=1)  # type: ignore[arg-type]
    monkeypatch.setattr(runner, "_active_org_peer_vouches",
                        lambda client, keys: {"did:n00": [("held-from-before", 0.9)]} if keys == ("did:n01",) else {})
    monkeypatch.setattr(runner, "_wait_for", lambda records, expected, timeout: {})
    run._trust_graph(SimpleNamespace())  # type: ignore[arg-type]
    wanted = {(a, b) for a, theirs in run.plan.vouches.items() for b in theirs}
    assert set(run.org_peer_vouches) == wanted and run.plan.vouches["n01"]["n00"] == 0.9
    assert run.org_peer_vouches[("n01", "n00")] == "held-from-before"
    assert run.org_peer_vouches[("n00", "n01")] == "vouch-for-did:n01"


def test_the_setup_vouches_again_at_the_scenarios_weight_for_an_org_peer_vouch_held_at_another(monkeypatch):
    """A testnet reused: n01's vouch for n00 at 0.5 (an earlier run's `[[vouches]]` weight) is revoked and made
    again at the scenario's 0.9, and the run says so; a second vouch held for n02 beside one at 0.9 is revoked, the
    one at 0.9 kept. Before: any vouch held was kept, whatever its weight, and the run measured another graph."""
    testnet = _Testnet()
    said: list[str] = []
    run = Run(testnet, load_scenario(str(Path(__file__).with_name("short.toml"))), seed=1,  # type: ignore[arg-type]
              say=said.append)
    held = {"did:n00": [("at-0.5", 0.5)], "did:n02": [("second-at-0.3", 0.3), ("at-0.9", 0.9)]}
    monkeypatch.setattr(runner, "_active_org_peer_vouches",
                        lambda client, keys: held if keys == ("did:n01",) else {})
    monkeypatch.setattr(runner, "_wait_for", lambda records, expected, timeout: {})
    run._trust_graph(SimpleNamespace())  # type: ignore[arg-type]
    org_peer = [made for made in testnet.nodes["n01"].made if not made[1].startswith("did:key:")]  # (operator's)
    assert org_peer == [("revoke", "at-0.5"), ("revoke", "second-at-0.3"), ("vouch", "did:n00")]
    assert testnet.nodes["n01"].weights["did:n00"] == 0.9
    assert run.org_peer_vouches[("n01", "n00")] == "vouch-for-did:n00"
    assert run.org_peer_vouches[("n01", "n02")] == "at-0.9"
    assert run.setup["reweighted"] == [{"from": "n01", "to": "n00", "held": [0.5], "weight": 0.9}]
    assert run.setup["revocations"] == 2
    assert [line for line in said if line.startswith("setup: ")] == [
        "setup: 5 org-peer vouches (1 held from before at another weight, vouched again: n01 for n00 0.5 -> 0.9), "
        "2 revocations, 3 operator vouches; held everywhere after 0.0 s"]


def test_the_run_waits_for_the_cosignatures_of_the_orgs_a_vouch_change_made_its_followers(tmp_path, monkeypatch):
    """`[[vouches]]`: rogue, which no org follows as the run begins, is followed by the honest orgs once they vouch
    for it mid-run: the run waits for its checkpoint to carry their cosignatures, as the report judges it
    (testnet.measure.checkpoints), not for none."""
    path = tmp_path / "vouched.toml"
    path.write_text(MINIMAL + '\n[[vouches]]\nfrom = "honest"\nto = "rogue"\naction = "vouch"\nat = 2\n')
    run, _ = _run_of_fakes(monkeypatch, _Testnet(), path)
    cosigned = {"n00": ("did:n01",), "n01": ("did:n00",), "n02": ()}
    monkeypatch.setattr(runner, "node_status", lambda cluster, node: NodeStatus(
        node, f"did:{node}", "http://127.0.0.1:1", True, ledger_size=9, checkpoint=Checkpoint(9, cosigned[node])))
    monkeypatch.setattr(runner, "time", _Clock())
    run._await_checkpoints(SimpleNamespace(snapshot=lambda: []))  # type: ignore[arg-type]
    (waited,) = [e for e in run.timeline.events if e["kind"].startswith("checkpoints")]
    assert (waited["kind"], waited["lagging"]) == ("checkpoints still disagree", ["n02"])
