"""The report of a scenario run: `results.json` (the plan, the timeline, every measurement), PNG plots (score
trajectories per agent class at every node, the propagation latency CDF, the tier confusion matrix) and
`report.html`, one self-contained page showing them (the plots inlined as base64)."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from ledger.files import make_directory, replace_file
from vouching.counts import counted
from vouching.tiers import PROVISIONAL, TRUSTED, VERIFIED

from .measure import attacking_groups, final_scores, lowest_scores, trajectories
from .runner import LATE_SECONDS, RunResult
from .verdict import dip_said

REPORT_MODE = 0o666  # less the umask, as an ordinary file: a report is no secret
_MARKS = {"kill": "SIGKILL", "restarted": "restarted", "partition": "partition", "heal": "heal",
          "equivocation": "equivocation", "whitewash": "whitewash", "rotated": "key rotated",
          "key-theft": "key theft", "revocation": "operator vouches revoked", "vouches": "org-peer vouches changed",
          "traffic stopped": "traffic stops"}


def results_json(run: RunResult, measurements: dict[str, Any], elapsed: dict[str, float]) -> dict[str, Any]:
    scenario = run.scenario
    return {
        "scenario": {"name": scenario.name, "description": scenario.description, "duration": scenario.duration,
                     "nodes": len(run.plan.nodes), "seed": run.seed},
        "elapsed_seconds": elapsed,
        "orgs": {group: [{"node": n, "did": run.dids[n], "keys": run.keys[n]} for n in nodes]
                 for group, nodes in run.plan.groups.items()},
        "agents": [{"name": a.name, "group": a.group.name, "behaviour": a.group.behaviour.model,
                    "operator": a.operator, "works_at": list(a.orgs), "dids": run.identities[a.name]}
                   for a in run.plan.agents],
        "setup": run.setup,
        "traffic": run.traffic.__dict__,
        "timeline": [{**e, "t": round(e["at"] - run.t0, 2)} for e in run.timeline],
        "measurements": measurements,
        "score_trajectories": trajectories(run),
        "final_scores": [{"node": node, "agent": agent, "score": score, "tier": tier}
                         for (node, agent), (score, tier) in sorted(final_scores(run).items())],
        "lowest_scores": [{"node": node, "agent": agent, "score": score, "tier": tier, "t": t}
                          for (node, agent), (score, tier, t) in sorted(lowest_scores(run).items())],
        "watch_errors": run.watch_errors,
        "last_watch_error": run.last_watch_error,
        "unanswered": run.unanswered,
        "load_average": {"traffic_start": run.load_average[0], "traffic_end": run.load_average[1],
                         "cores": os.cpu_count()},
    }


def write_report(run: RunResult, results: dict[str, Any], out: Path) -> Path:
    """Write `results` (results_json's, with the verdicts) as results.json, the plots and report.html into `out`,
    each whole or not at all (ledger.files: a kill mid-write leaves no truncated file); returns the HTML page's
    path."""
    make_directory(out)
    measurements = results["measurements"]
    replace_file(out / "results.json", (json.dumps(results, indent=1, default=_jsonable) + "\n").encode(),
                 mode=REPORT_MODE)
    plots = {"scores.png": _plot_scores(run, results), "latency.png": _plot_latency(measurements),
             "confusion.png": _plot_confusion(measurements)}
    for name, png in plots.items():
        replace_file(out / name, png, mode=REPORT_MODE)
    page = out / "report.html"
    replace_file(page, _html(results, plots).encode(), mode=REPORT_MODE)
    return page


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "__dict__"):
        return value.__dict__
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# --- plots ------------------------------------------------------------------------------------------------


def _pyplot():  # matplotlib's import is slow and only the report needs it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _plot_scores(run: RunResult, results: dict[str, Any]) -> bytes:
    plt = _pyplot()
    paths = results["score_trajectories"]
    groups = [g.name for g in run.scenario.agents]
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 3.0 * len(groups)), sharex=True, squeeze=False)
    attacking = attacking_groups(run.scenario)
    colours = {node: plt.get_cmap("tab20")(i % 20) for i, node in enumerate(run.plan.nodes)}
    marks = [(e["t"], _MARKS[e["kind"]]) for e in results["timeline"] if e["kind"] in _MARKS]
    for ax, group in zip(axes[:, 0], groups):
        for node, points in sorted(paths.get(group, {}).items()):
            org_group = run.plan.group_of(node)
            xs, ys = zip(*points)
            ax.plot(xs, ys, color=colours[node], linewidth=1.3, linestyle="--" if org_group in attacking else "-",
                    label=f"{node} ({org_group})")
        for level in (PROVISIONAL, TRUSTED, VERIFIED):
            ax.axhline(level, color="grey", linestyle=":", linewidth=0.8)
        for t, label in marks:
            ax.axvline(t, color="dimgrey", linestyle="-", linewidth=0.7)
            ax.text(t, 985, f" {label}", rotation=90, fontsize=7, va="top", ha="left")
        behaviour = next(g.behaviour.model for g in run.scenario.agents if g.name == group)
        ax.set_title(f"agents {group} ({behaviour}): mean score as each node sees them", fontsize=10, loc="left")
        ax.set_ylim(0, 1000)
        ax.set_ylabel("score")
        if paths.get(group):
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        else:
            ax.text(0.5, 0.5, "no node scored these agents", transform=ax.transAxes, ha="center", va="center")
    axes[-1, 0].set_xlabel(_scores_key(bool(attacking)))
    return _png(fig)


def _scores_key(attacked: bool) -> str:
    """The scores plot's x-axis label, with what its kinds of line show: the tier bounds, the timeline's events, and
    if `attacked`, the attacking orgs' views (dashed), which a plot without attacks has none of."""
    lines = [f"dotted: tier bounds {PROVISIONAL}, {TRUSTED}, {VERIFIED}", "grey: events",
             *(["dashed: the attacking orgs' views"] if attacked else [])]
    return f"seconds into the traffic ({'; '.join(lines)})"


def _plot_latency(measurements: dict[str, Any]) -> bytes:
    plt = _pyplot()
    prop = measurements["propagation"]
    fig, ax = plt.subplots(figsize=(7, 4))
    latencies = prop["latencies"]
    if latencies:
        ax.step(latencies, [(i + 1) / len(latencies) for i in range(len(latencies))], where="post",
                label="records outside fault windows: first seen in /v1/records\n"
                      f"(polled every ~{measurements['propagation']['poll_seconds']:g} s, so late by up to that)")
    buckets = [(b, c) for b, c in prop["histogram"] if b != float("inf")]
    total = prop["histogram"][-1][1] if prop["histogram"] else 0
    if total:
        ax.plot([b for b, _ in buckets], [c / total for _, c in buckets], "o--", markersize=4,
                label="every record accepted, catch-up included: the nodes' own\n"
                      "vouchnet_record_latency_seconds (exact, bucketed)")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("seconds from issue to acceptance at a node")
    ax.set_ylabel("share of (record, node) pairs")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("propagation latency CDF", fontsize=10, loc="left")
    return _png(fig)


def _plot_confusion(measurements: dict[str, Any]) -> bytes:
    plt = _pyplot()
    matrix = measurements["confusion"]
    rows = matrix["rows"]
    tiers = matrix["tiers"]
    values = [[row["tiers"][t] for t in tiers] for row in rows]
    fig, ax = plt.subplots(figsize=(6.5, 0.6 * len(rows) + 1.6))
    ax.imshow(values, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(tiers)), tiers)
    ax.set_yticks(range(len(rows)), [f"{r['group']} ({r['behaviour']})" for r in rows])
    top = max((max(row) for row in values), default=0)
    for i, row in enumerate(values):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=10,
                    color="white" if top and count > top / 2 else "black")
    ax.set_xlabel("final tier at the honest nodes")
    ax.set_title("agent class x tier (one count per honest node and agent)", fontsize=10, loc="left")
    return _png(fig)


# --- the page ---------------------------------------------------------------------------------------------


def _traffic_seconds(results: dict[str, Any]) -> str:
    """The scenario's seconds of traffic, and how long the traffic ran where a step ran past its end (a rotation takes
    seconds, testnet.runner)."""
    asked = results["scenario"]["duration"]
    ran = next((e["t"] for e in results["timeline"] if e["kind"] == "traffic stopped"), asked)
    if ran - asked < LATE_SECONDS:
        return f"{asked:g} s"
    return f"{asked:g} s, run for {ran:g} s: a step ran past its end"


def load_said(results: dict[str, Any]) -> str | None:
    """`0.3 as traffic started, 12.0 as it stopped, on 2 cores`: the machine's load average over the minute before
    each, from results.json; None where the system did not tell it."""
    load = results.get("load_average") or {}
    start, end = load.get("traffic_start"), load.get("traffic_end")
    if start is None or end is None:
        return None
    return f"{start:g} as traffic started, {end:g} as it stopped, on {counted(load['cores'], 'core')}"


def _shortfalls(results: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary's rows of what the run asked of the nodes and did not get, where there is any (as `run`'s summary
    says it): batches of events unanswered or not sent, by node; nodes that gave no view of the orgs at the end; the
    watchers' failed asks, with the latest."""
    traffic, rows = results["traffic"], []
    for key, what in (("failed_at", "event batches unanswered"), ("skipped_at", "event batches not sent, their node "
                                                                               "still answering the one before")):
        if by_node := traffic.get(key):
            rows.append((what, ", ".join(f"{node} {n}" for node, n in sorted(by_node.items()))))
    if unanswered := results.get("unanswered"):
        rows.append(("gave no view of the orgs at the end", "; ".join(f"{n}: {e}" for n, e in unanswered.items())))
    if results.get("watch_errors"):
        rows.append(("asks for records and scores that failed",
                     f"{results['watch_errors']} (the latest, {results.get('last_watch_error')})"))
    return rows


def _html(results: dict[str, Any], plots: dict[str, bytes]) -> str:
    scenario = results["scenario"]
    m = results["measurements"]
    prop, conv, cps = m["propagation"], m["convergence"], m["checkpoints"]
    summary = [
        ("nodes", scenario["nodes"]), ("duration", _traffic_seconds(results)), ("seed", scenario["seed"]),
        ("events reported", results["traffic"]["events_accepted"]),
        *_shortfalls(results),
        ("latency to each node p50 / p90 / max", _triple(prop["to_each_node"])),
        ("latency to every node p50 / p90 / max", _triple(prop["everywhere"])),
        ("record sets converged", f"{conv['converged']} ({counted(conv['records'], 'record')})"),
        ("checkpoints current and cosigned by their witnesses", witnessed_summary(cps)),
        *((f"catch-up after {c['fault']} ({c.get('node') or ', '.join(c['side'])})", f"{c['seconds']} s, "
           f"{counted(c['backlog_records'], 'record')}") for c in m["catch_up"]),
        *((f"key rotation of {r['node']}: nodes linking its keys", linking(r)) for r in m["rotations"]),
        *(trust_change(change) for change in m["trust_changes"]),
        *(("elapsed: " + k, f"{v:.1f} s") for k, v in results["elapsed_seconds"].items()),
        *((("the machine's load average", load),) if (load := load_said(results)) else ()),
    ]
    images = "".join(f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                     f"<figcaption>{name}</figcaption></figure>" for name, png in plots.items())
    verdicts = (_table(["attack", "verdict", "figures", "compared with", "rule"],
                       [(v["subject"], v["outcome"], v["figures"], v["compared"] or "-", v["rule"])
                        for v in results["verdicts"]])
                if results["verdicts"] else "<p>No attack ran in this scenario.</p>")
    sections = [
        ("Verdicts", verdicts),
        ("Summary", _table(["", ""], summary)),
        ("Timeline", _table(["t (s)", "what", "details"],
                            [(e["t"], e["kind"], _details(e)) for e in results["timeline"]])),
        ("Plots", images),
        ("Agent class x final tier at the honest nodes",
         _table(["agents", "behaviour", *m["confusion"]["tiers"], "during the run"],
                [(r["group"], r["behaviour"], *r["tiers"].values(), dip_said(r) or "-")
                 for r in m["confusion"]["rows"]])),
        ("Attacks", _table(["#", "type", "outcome"], [(a["attack"], a["type"], _details(a)) for a in m["attacks"]])),
        ("Orgs as the honest nodes see them (means)",
         _table(["org group", "reputation", "credibility", "weight", "flagged"],
                [(g, v.get("reputation"), v.get("credibility"), v.get("weight"), v.get("equivocator"))
                 for g, v in m["orgs"].items()])),
        ("Catch-up", _table(["fault", "details"], [(c["fault"], _details(c)) for c in m["catch_up"]])),
        ("Key rotations", _table(["node", "other nodes linking its keys", "details"],
                                 [(r["node"], linking(r), _details(r)) for r in m["rotations"]])),
        ("Checkpoints and ledgers", _table(["node", "ledger", "checkpoint", "cosigned by", "to be cosigned by",
                                            "rejected", "flagged"],
                                           [(n, r["ledger"], r["checkpoint"], f"{r['cosigned_by']}/{r['of']}",
                                             r["expected"], r["rejected"], r["flagged"])
                                            for n, r in cps["nodes"].items()])),
        ("Setup", _table(["", ""], [(k, v) for k, v in results["setup"].items()])),
    ]
    body = "".join(f"<h2>{html.escape(title)}</h2>{content}" for title, content in sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vouchnet testnet: {html.escape(scenario['name'])}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222 }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em }} td, th {{ border: 1px solid #ccc; padding: 3px 8px;
text-align: left; vertical-align: top }} th {{ background: #f4f4f4 }} img {{ max-width: 100% }}
figure {{ margin: 1em 0 }} figcaption {{ color: #666; font-size: 12px }} code {{ font-size: 12px }}
</style></head><body>
<h1>vouchnet testnet: {html.escape(scenario['name'])}</h1>
<p>{html.escape(scenario['description'])}</p>
{body}
<p>Everything above, with the score trajectories and final scores behind the plots, is in
<code>results.json</code> beside this page.</p>
</body></html>
"""


def witnessed_summary(checkpoints: dict[str, Any]) -> str:
    """Whether every honest node's checkpoint is current and witnessed, and each node's cosignatures by its witnesses
    of those it is to carry (`n01 4/4`): each node has its own witnesses, the orgs whose horizon holds it."""
    nodes = ", ".join(_witnessed_node(node, row) for node, row in checkpoints["nodes"].items())
    return f"{checkpoints['all_current_and_witnessed']}" + (f" ({nodes})" if nodes else "")


def _witnessed_node(node: str, row: dict[str, Any]) -> str:
    if row["witnessed"] is None:
        return f"{node} not judged (an equivocator's)"
    if row["checkpoint"] is None:
        return f"{node} no checkpoint"
    behind = (f" but its checkpoint covers {row['checkpoint']} of {row['ledger']} records"
              if row["checkpoint"] != row["ledger"] else "")
    return f"{node} {row['by_witnesses']}/{row['expected']}{behind}"


def linking(rotation: dict[str, Any]) -> str:
    """How many of the other nodes linked a rotated key to its org, and when the last did: after the node was
    started with its new key, and how much of that was the node's own start."""
    everywhere = rotation["seconds_to_link_everywhere"]
    return (f"{rotation['nodes_linking']} of {rotation['of']}"
            + (f", the last {everywhere} s after the node started with its new key"
               f" (its own start, until its API answered, took {rotation['start_seconds']} s)"
               if everywhere is not None else ""))


def trust_change(change: dict[str, Any]) -> tuple[str, str]:
    """A change of trust the run made (measure.trust_changes), as the summary and the page say it: what it was, and
    what it did."""
    if change["kind"] == "revocation":
        return (f"revocations[{change['index']}] at {change['t']:g} s",
                f"the operator vouches of agents {change['agents']} revoked: {', '.join(change['revoked'])} (by "
                f"{', '.join(change['operators'])})")
    done = "made" if change["action"] == "vouch" else "revoked"
    pairs = ", ".join(f"{voucher} for {vouchee}" for voucher, vouchee in change["pairs"])
    return (f"vouches[{change['index']}] at {change['t']:g} s",
            f"org-peer vouches {done}: {pairs} (from {change['from']} to {change['to']})")


def _triple(summary: dict[str, Any]) -> str:
    if not summary["count"]:
        return "no records"
    return f"{summary['p50']} / {summary['p90']} / {summary['max']} s ({summary['count']})"


def _details(entry: dict[str, Any]) -> str:
    skip = {"at", "t", "kind", "attack", "type", "fault"}
    return "; ".join(f"{k}: {json.dumps(v, default=str)}" for k, v in entry.items() if k not in skip)


def _table(header: list[str], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
