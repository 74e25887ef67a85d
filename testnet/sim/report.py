"""A suite's results as data and words: the metrics JSON, the targets table for the terminal, and the Markdown
summary."""

from __future__ import annotations

from typing import Any

from testnet.sim.metrics import slander_curve, summary
from testnet.sim.suite import SuiteResult
from testnet.sim.targets import Target
from vouching.counts import counted


def metrics(suite: SuiteResult, targets: list[Target]) -> dict[str, Any]:
    """Everything measured, JSON-ready: per scenario its headline figures and per-round curves."""
    scenarios = {}
    for name, run in suite.runs.items():
        total = [max(1, n) for n in run.interactions]
        scenarios[name] = {
            "family": suite.scenarios[name].family,
            "parameter": suite.scenarios[name].parameter,
            **summary(run),
            "blocked": run.blocked,
            "per_round": {
                "to_malicious": [m / n for m, n in zip(run.to_malicious, total)],
                "trusted_malicious": run.trusted_malicious,
                "class_mean_score": dict(run.class_scores),
            },
        }
    lying = [r for n, r in suite.runs.items() if suite.scenarios[n].family == "slander"]
    silent = [r for n, r in suite.runs.items() if suite.scenarios[n].family == "slander-baseline"]
    out: dict[str, Any] = {"suite": suite.scale, "seed": suite.seed, "scenarios": scenarios}
    if lying and silent:
        out["slander_pushed_per_round"] = slander_curve(lying[0], silent[0])
    out["bitcoin_otc"] = {name: vars(result) for name, result in suite.otc.items()}
    out["targets"] = [t.as_dict() for t in targets]
    return out


def targets_json(targets: list[Target]) -> dict[str, Any]:
    """The `--json` file: {"targets": [{"id", "goal", "value", "passed"}, ...]} (and the detail)."""
    return {"targets": [t.as_dict() for t in targets]}


def table(targets: list[Target]) -> str:
    """The targets as a plain-text table."""
    lines = [f"{'id':<4} {'result':<6} value", f"{'-' * 4} {'-' * 6} {'-' * 60}"]
    for t in targets:
        lines.append(f"{t.id:<4} {'pass' if t.passed else 'FAIL':<6} {_figures(t.value)}")
        lines.append(f"{'':<11} {t.goal}")
        if t.detail:
            lines.append(f"{'':<11} ({t.detail})")
    passed = sum(t.passed for t in targets)
    lines.append(f"{passed} of {counted(len(targets), 'target')} met.")
    return "\n".join(lines)


def markdown(suite: SuiteResult, targets: list[Target], plots: list[str]) -> str:
    """A short summary: the targets, the scenarios' headline figures, and the plots."""
    out = [f"# Trust simulation: suite `{suite.scale}`, seed {suite.seed}", "", "## Targets", "",
           "| id | result | value | goal |", "| --- | --- | --- | --- |"]
    for t in targets:
        out.append(f"| {t.id} | {'pass' if t.passed else '**FAIL**'} | {_figures(t.value)} | {t.goal} |")
    misses = [t for t in targets if not t.passed]
    if misses:
        out += ["", "Missed targets, with what was measured:", ""]
        out += [f"- **{t.id}**: {t.detail}." for t in misses]
    out += ["", "## Scenarios", "",
            "| scenario | interactions | to malicious | went wrong | AUC | malicious trusted (max) | blocked |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, run in suite.runs.items():
        m = summary(run)
        auc = "n/a" if m["auc"] is None else f"{m['auc']:.3f}"
        out.append(f"| {name} | {m['interactions']} | {m['to_malicious']:.2%} | {m['bad_from_malicious']:.2%} | "
                   f"{auc} | {m['max_trusted_malicious']} | {run.blocked} |")
    for name, result in suite.otc.items():
        out.append(f"| {name} | {counted(result.users, 'user')} judged, {result.distrusted} distrusted | | | "
                   f"{result.auc:.3f} | | |")
    if plots:
        out += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(out) + "\n"


def _figures(value: dict[str, float | None]) -> str:
    parts = []
    for name, v in value.items():
        text = "n/a" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
        parts.append(f"{name} {text}")
    return "; ".join(parts)
