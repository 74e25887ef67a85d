"""The trust simulation at reduced scale: the targets of issue 3 hold, a seed reproduces a run, the CLI reports."""

import json

import numpy as np
import pytest
from hypothesis import given, strategies as st

from node.cli import main
from testnet.sim.metrics import auc
from testnet.sim.otc import load, replay
from testnet.sim.runner import Simulation
from testnet.sim.scenarios import QUICK, scenarios
from testnet.sim.suite import pairing_key, run_suite, seeds
from testnet.sim.report import table
from testnet.sim.targets import Target, evaluate

from ..fsyncs import recorded_fsyncs


@pytest.fixture(scope="module")
def suite():
    return run_suite("quick", seed=1)


@pytest.fixture(scope="module")
def targets(suite):
    return {t.id: t for t in evaluate(suite)}


@pytest.mark.parametrize("target", ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T9"])
def test_the_target_holds_at_reduced_scale(targets, target):
    assert targets[target].passed, targets[target]


def test_slander_is_undone_once_the_slanderers_are_discredited(targets):
    # While the slanderers are still unchecked their lies do push agents down (T8 is missed: see the README);
    # once the deviation test has caught them, none of their victims stays below trusted.
    assert targets["T8"].value["pushed below trusted (end)"] <= 0.01


def test_a_seed_reproduces_a_run(suite):
    """A run again with the seeds the suite's run had: the same interactions, the same scores every round."""
    scenario = next(s for s in scenarios(QUICK) if s.name == "turned-bad")
    network_seed, run_seed = seeds(1, pairing_key(scenario))
    network, config = scenario.build(QUICK, np.random.default_rng(network_seed))
    run, before = Simulation(scenario.name, network, config, run_seed).run(), suite.runs[scenario.name]
    assert run.script == before.script and run.round_scores == before.round_scores


def test_vouchnet_sim_prints_the_targets_and_writes_json_metrics_plots_and_a_summary(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    synced = recorded_fsyncs(monkeypatch)
    code = main(["sim", "--suite", "quick", "--scenario", "on-off", "--no-otc", "--out", str(out),
                 "--json", str(tmp_path / "targets.json")])
    printed = capsys.readouterr().out
    written = json.loads((tmp_path / "targets.json").read_text())
    assert code == 0 and "T6" in printed and "pass" in printed
    assert all(set(t) >= {"id", "goal", "value", "passed"} for t in written["targets"])
    assert {t["id"] for t in written["targets"]} == {"T4", "T6"}  # the targets an on-off run measures
    assert {"metrics.json", "summary.md", "trajectories.png"} <= {p.name for p in out.iterdir()}
    assert "on-off" in json.loads((out / "metrics.json").read_text())["scenarios"]
    written = [out.resolve() / name for name in ("metrics.json", "summary.md", "trajectories.png")]
    assert {str(p.with_name(f".{p.name}.partial")) for p in written} <= set(synced)  # whole, by ledger.files


def test_auc_counts_ties_as_half():
    assert auc([3, 2], [1]) == 1.0
    assert auc([1, 2], [1]) == 0.75
    assert auc([], [1]) is None


_scores = st.lists(st.integers(0, 6).map(lambda n: n / 6), max_size=30)  # few values: many ties


@given(_scores, _scores)
def test_auc_is_the_share_of_pairs_a_positive_wins_ties_counting_half(positive, negative):
    pairs = [(p > n) + (p == n) / 2 for p in positive for n in negative]
    assert auc(positive, negative) == (sum(pairs) / len(pairs) if pairs else None)


def test_a_rating_network_replay_separates_the_distrusted(tmp_path):
    path = tmp_path / "ratings.csv"
    rows = []
    for t in range(60):  # users 1-6 trade and rate one another well; 7 and 8 get bad ratings
        source, target = 1 + t % 6, 1 + (t * 5 + 1) % 6
        rows.append(f"{source},{target},{5 + t % 5},{1_300_000_000 + 3600 * t}")
        rows.append(f"{source},{7 + t % 2},-{3 + t % 7},{1_300_000_000 + 3600 * t + 1}")
    path.write_text("\n".join(rows) + "\n")
    result = replay(load(path), roots=2)
    assert result.distrusted == 2 and result.auc == 1.0


def test_vouchnet_sim_refuses_a_scenario_it_does_not_have(tmp_path, capsys):
    """It ran nothing and said '0 of 0 targets met', exit status 0, for a misspelt family."""
    code = main(["sim", "--suite", "quick", "--scenario", "sybil", "--scenario", "sybils", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and not any(tmp_path.iterdir())
    assert "--scenario 'sybils': no scenario or family of the quick suite has this name; families: " in err
    assert "sybil, sybil-x1" in err and "bitcoin-otc" in err


def test_the_table_of_one_target_says_so():
    assert table([Target("T1", "a goal", {"x": 1.0}, True)]).splitlines()[-1] == "1 of 1 target met."


def test_sybils_that_give_the_attackers_reputation_they_lacked_miss_t3():
    """A relative change from nothing is no change of 0%: ten times the Sybils lifting the attackers from a
    reputation of 0 to 0.2 passed T3 ('< 1% relative')."""
    from types import SimpleNamespace

    from testnet.sim.scenarios import Scenario
    from testnet.sim.suite import SuiteResult
    from testnet.sim.targets import _t3

    def run(reputation):
        return SimpleNamespace(trusted_malicious=[0], reputation={"org": reputation}, roles={"org": "sybil"})

    families = {"g=30": "sybil", "x1": "sybil-x1", "x10": "sybil-x10"}
    suite = SuiteResult("quick", 1, runs={"g=30": run(0.0), "x1": run(0.0), "x10": run(0.2)},
                        scenarios={name: Scenario(name, family, None, 30) for name, family in families.items()})
    assert not _t3(suite).passed
    suite.runs["x10"] = run(0.0)
    assert _t3(suite).passed


def test_vouchnet_sim_refuses_a_negative_seed_naming_what_it_takes(tmp_path, capsys):
    """It ended in numpy's traceback ("expected non-negative integer") once the first scenario began."""
    code = main(["sim", "--suite", "quick", "--scenario", "sybil", "--seed", "-1", "--out", str(tmp_path)])
    assert code == 2 and not any(tmp_path.iterdir())
    said = capsys.readouterr().err
    assert f"argument --seed: expected a seed, a whole number from 0 to {2**63 - 1}, got '-1'" in said
