"""A suite: every scenario of a scale, and the Bitcoin OTC replay, run with seeds derived from one `--seed`
(paired scenarios share theirs), so that a run is reproducible."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from testnet.sim.otc import OtcResult, load, replay
from testnet.sim.runner import RunResult, Simulation
from testnet.sim.scenarios import SCALES, Scenario, scenarios
from vouching.params import DAY_MS, ScoringParams

# Each OTC user is rated a few times over five years: ratings are long-lived statements, so this replay keeps
# evidence for years rather than the node's default of weeks; the observer's roots are the 20 users with the most
# positive ratings (0.3% of the users).
OTC_PARAMS = replace(ScoringParams(), good_half_life_ms=365 * DAY_MS, bad_half_life_ms=3 * 365 * DAY_MS)
OTC_ROOTS = 20
OTC_FAMILY = "bitcoin-otc"  # the real-world trust graph replayed beside the scenarios: --scenario selects it so

# (scenario name, rounds done, rounds in all), called as a run progresses
Progress = Callable[[str, int, int], None]


@dataclass
class SuiteResult:
    scale: str
    seed: int
    runs: dict[str, RunResult] = field(default_factory=dict)
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    otc: dict[str, OtcResult] = field(default_factory=dict)


def seeds(seed: int, key: str) -> tuple[int, int]:
    """(network seed, run seed) for a scenario, from the suite seed and the scenario's pairing key."""
    sequence = np.random.SeedSequence([seed, zlib.crc32(key.encode())])
    network, run = sequence.generate_state(2)
    return int(network), int(run)


def pairing_key(scenario: Scenario) -> str:
    """Scenarios compared with each other run on the same network with the same choices of random numbers."""
    if scenario.family.startswith("slander"):
        return "slander"
    if scenario.family.startswith("sybil-x"):
        return "sybil-x"
    return scenario.name


def _baseline_script(suite: SuiteResult, scenario: Scenario) -> list[list[tuple[str, str, int]]] | None:
    """Slander is measured on the very interactions of the run without it (scenarios() orders it first)."""
    if scenario.family != "slander":
        return None
    baseline = [run for name, run in suite.runs.items() if suite.scenarios[name].family == "slander-baseline"]
    return baseline[0].script if baseline else None


def selectable(scale_name: str) -> tuple[set[str], set[str]]:
    """What `run_suite(only=...)` can select at a scale: (each scenario's name, each family, bitcoin-otc included)."""
    every = scenarios(SCALES[scale_name])
    return {s.name for s in every}, {s.family for s in every} | {OTC_FAMILY}


def run_suite(scale_name: str, seed: int, *, only: set[str] | None = None, otc: bool = True,
              progress: Progress | None = None) -> SuiteResult:
    scale = SCALES[scale_name]
    suite = SuiteResult(scale_name, seed)
    for scenario in scenarios(scale):
        if only and scenario.name not in only and scenario.family not in only:
            continue
        network_seed, run_seed = seeds(seed, pairing_key(scenario))
        network, config = scenario.build(scale, np.random.default_rng(network_seed))
        report = (lambda done, total, name=scenario.name: progress(name, done, total)) if progress else None
        script = _baseline_script(suite, scenario)
        suite.runs[scenario.name] = Simulation(scenario.name, network, config, run_seed, script).run(report)
        suite.scenarios[scenario.name] = scenario
    if otc and (not only or OTC_FAMILY in only):
        ratings = load()
        if progress:
            progress(OTC_FAMILY, 0, 2)
        suite.otc[OTC_FAMILY] = replay(ratings, roots=OTC_ROOTS, seed=seed, params=OTC_PARAMS)
        if progress:
            progress(OTC_FAMILY, 1, 2)
        suite.otc[f"{OTC_FAMILY} + sybils"] = replay(ratings, roots=OTC_ROOTS, sybils=200, attack_edges=10,
                                                   seed=seed, params=OTC_PARAMS)
        if progress:
            progress(OTC_FAMILY, 2, 2)
    return suite
