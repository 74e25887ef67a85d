"""PNG plots of a suite (matplotlib, the optional `sim` extra): score trajectories by class, attacker reputation
against attack edges, AUC per scenario, the EigenTrust curves, and the slander transient."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt  # noqa: E402

from ledger.files import make_directory, replace_file  # noqa: E402
from testnet.sim.metrics import attacker_reputation, separation, slander_curve, summary  # noqa: E402
from testnet.sim.suite import SuiteResult  # noqa: E402
from vouching.tiers import PROVISIONAL, TRUSTED, VERIFIED  # noqa: E402

TRAJECTORY_FAMILIES = ("turned-bad", "on-off", "whitewash", "vouch-then-defect", "equivocation", "ballot-stuffing")


def write_all(suite: SuiteResult, directory: Path) -> list[str]:
    """Every plot the suite has data for; returns the file names written."""
    make_directory(directory)
    written = []
    for name, draw in (("trajectories.png", _trajectories), ("attacker-reputation.png", _attacker_mass),
                       ("auc.png", _auc), ("eigentrust.png", _eigentrust), ("slander.png", _slander)):
        figure = draw(suite)
        if figure is not None:
            png = BytesIO()
            figure.savefig(png, format="png", dpi=110, bbox_inches="tight")
            plt.close(figure)
            replace_file(directory / name, png.getvalue(), mode=0o666)  # whole or not at all (ledger.files)
            written.append(name)
    return written


def _trajectories(suite: SuiteResult) -> plt.Figure | None:
    runs = [(n, r) for n, r in suite.runs.items() if suite.scenarios[n].family in TRAJECTORY_FAMILIES]
    if not runs:
        return None
    figure, axes = plt.subplots(2, (len(runs) + 1) // 2, figsize=(4.2 * ((len(runs) + 1) // 2), 7), squeeze=False,
                                constrained_layout=True)
    for ax, (name, run) in zip(axes.flat, runs):
        for cls, values in sorted(run.class_scores.items()):
            ax.plot(values, label=cls)
        for line in (PROVISIONAL, TRUSTED, VERIFIED):
            ax.axhline(line, color="grey", linewidth=0.5, linestyle=":")
        ax.set_title(name)
        ax.set_ylim(0, 1000)
        ax.set_xlabel("round")
        ax.legend(fontsize=7)
    axes.flat[0].set_ylabel("mean score")
    figure.suptitle("Score trajectories by class of agent")
    return figure


def _attacker_mass(suite: SuiteResult) -> plt.Figure | None:
    runs = sorted(((suite.scenarios[n].parameter, r) for n, r in suite.runs.items()
                   if suite.scenarios[n].family == "sybil"), key=lambda p: p[0])
    if not runs:
        return None
    figure, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([g for g, _ in runs], [attacker_reputation(r) for _, r in runs], marker="o")
    ax.set_xlabel("attack edges g")
    ax.set_ylabel("attackers' total reputation")
    ax.set_title("Attacker reputation mass against attack edges")
    return figure


def _auc(suite: SuiteResult) -> plt.Figure | None:
    values = {n: separation(r) for n, r in suite.runs.items()}
    values.update({n: r.auc for n, r in suite.otc.items()})
    values = {n: v for n, v in values.items() if v is not None}
    if not values:
        return None
    figure, ax = plt.subplots(figsize=(6, 0.25 * len(values) + 1))
    ax.barh(list(values), list(values.values()))
    ax.axvline(0.95, color="red", linewidth=0.8)
    ax.set_xlim(0.5, 1.0)
    ax.set_xlabel("AUC, honest vs malicious agents")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    return figure


def _eigentrust(suite: SuiteResult) -> plt.Figure | None:
    families = {"threat-a": "to_malicious", "threat-b": "to_malicious", "threat-c": "bad_from_malicious"}
    series = {f: sorted((suite.scenarios[n].parameter, summary(r)[key]) for n, r in suite.runs.items()
                        if suite.scenarios[n].family == f) for f, key in families.items()}
    if not any(series.values()):
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for family in ("threat-a", "threat-b"):
        if series[family]:
            left.plot(*zip(*series[family]), marker="o", label=family)
    left.axhline(0.02, color="red", linewidth=0.8)
    left.set_xlabel("share of malicious orgs")
    left.set_ylabel("interactions with malicious agents")
    left.legend()
    if series["threat-c"]:
        right.plot(*zip(*series["threat-c"]), marker="o")
    right.axhline(0.05, color="red", linewidth=0.8)
    right.set_xlabel("camouflage f (share of good behaviour)")
    right.set_ylabel("interactions gone wrong")
    figure.suptitle("EigenTrust threat models")
    return figure


def _slander(suite: SuiteResult) -> plt.Figure | None:
    lying = [r for n, r in suite.runs.items() if suite.scenarios[n].family == "slander"]
    silent = [r for n, r in suite.runs.items() if suite.scenarios[n].family == "slander-baseline"]
    if not lying or not silent:
        return None
    figure, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(slander_curve(lying[0], silent[0]))
    ax.axhline(0.01, color="red", linewidth=0.8)
    ax.set_xlabel("round")
    ax.set_ylabel("honest agents pushed below trusted")
    ax.set_title("Slander by 30% of orgs")
    return figure
