"""Whether each attack of a scenario run succeeded (README "Read the report"): one rule per attack kind, from what its
attacker wanted the honest nodes to believe, judged on the run's measurements (testnet.measure, as results.json
holds them) and, for praise and slander, compared with the same figure in a baseline run of the same seed and size,
else with the agents no attack touched in the same run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vouching.counts import counted
from vouching.tiers import tier_of, tier_rank

SUCCEEDED, CONTAINED, UNDECIDED = "succeeded", "contained", "no verdict"
BASELINE = "baseline"  # the library scenario whose runs the others are compared with

RULES = {
    "praise": "the attack succeeds if any target ends trusted or better at an honest node",
    "slander": "the attack succeeds if any target ends untrusted at an honest node",
    "equivocation": "the attack succeeds if any honest node does not count the offender an equivocator at the end",
    "whitewash": "the attack succeeds if any fresh identity ends a tier above its burned one, by the honest nodes' "
                 "mean final score of each",
    "key-theft": "the attack succeeds if the thief's key weighs anything (as an org or as a voucher) at any honest "
                 "node at the end, the robbed org's own included",
}


@dataclass(frozen=True)
class Verdict:
    """One attack's outcome, the figures it was judged on, and the rule that judged it."""

    attack: int  # its index in the scenario's [[attacks]]
    type: str
    subject: str  # e.g. "praise of bad by colluders"
    outcome: str  # SUCCEEDED, CONTAINED or UNDECIDED (a figure the rule needs was not measured)
    figures: str
    rule: str
    compared: str = ""  # the same figure in a baseline run, or of the agents no attack touched in this run

    @property
    def line(self) -> str:
        compared = f"; {self.compared}" if self.compared else ""
        return f"verdict: {self.subject}: {self.outcome} — {self.figures}{compared}; {self.rule}"

    def as_json(self) -> dict[str, Any]:
        return {"attack": self.attack, "type": self.type, "subject": self.subject, "outcome": self.outcome,
                "figures": self.figures, "compared": self.compared, "rule": self.rule, "line": self.line}


@dataclass(frozen=True)
class Baseline:
    """A baseline run's report: where it is, and its results.json."""

    path: Path
    results: dict[str, Any]


def judge(results: dict[str, Any], baseline: Baseline | None = None) -> list[Verdict]:
    """A verdict on each attack in `results` (results.json's content), in the scenario's order."""
    honest = results["measurements"]["confusion"]["observers"]
    verdicts = []
    for entry in results["measurements"]["attacks"]:
        kind = entry["type"]
        if kind in ("praise", "slander"):
            verdicts.append(_praise_or_slander(entry, honest, results, baseline))
        elif kind == "equivocation":
            verdicts.append(_equivocation(entry, honest))
        elif kind == "whitewash":
            verdicts.append(_whitewash(entry))
        elif kind == "key-theft":
            verdicts.append(_key_theft(entry, honest))
        else:
            raise ValueError(f"no rule for an attack of type {kind!r}")
    return verdicts


def _outcome(succeeded: bool, complete: bool) -> str:
    """What is found succeeded stands; short of that, a figure missing leaves the rule undecided."""
    return SUCCEEDED if succeeded else CONTAINED if complete else UNDECIDED


def _score(final: dict[str, Any]) -> str:
    return f"{final['tier']} ({final['score']})"


def _praise_or_slander(entry: dict[str, Any], honest: list[str], results: dict[str, Any],
                       baseline: Baseline | None) -> Verdict:
    praise = entry["type"] == "praise"
    subject = f"{entry['type']} of {entry['agents']} by {entry['orgs']}"
    expected = entry["targets"] * len(honest)
    views = entry["views"]
    if not views:
        return Verdict(entry["attack"], entry["type"], subject, UNDECIDED, "no honest node scored its targets"
                       + batches_missed(entry["batches"]), RULES[entry["type"]])
    hits, extreme = ((entry["trusted_or_better"], entry["highest_final"]) if praise else
                     (entry["untrusted"], entry["lowest_final"]))
    lacking = "" if views >= expected else f" (of {expected} expected)"
    targets = counted(entry["targets"], "target") + ("'s" if entry["targets"] == 1 else "'")
    figures = (f"its {targets} {_extreme_said(praise)} final score at the {counted(len(honest), 'honest node')} was "
               f"{_score(extreme)}, {'trusted or better' if praise else 'untrusted'} in {hits} of "
               f"{counted(views, 'view')}{lacking}")
    behaviour = {a["behaviour"] for a in results["agents"] if a["group"] == entry["agents"]}
    compared = _compared(behaviour.pop() if len(behaviour) == 1 else None, praise, results, baseline)
    if not hits and not carried_out(entry["batches"]):
        return Verdict(entry["attack"], entry["type"], subject, UNDECIDED,
                       f"the attack was not carried out: {missed_batches(entry['batches'])}; {figures}",
                       RULES[entry["type"]], compared)
    dip = f"; {said}" if (said := dip_said(entry)) else ""  # (a slander's: praise measures none)
    return Verdict(entry["attack"], entry["type"], subject, _outcome(hits > 0, views >= expected),
                   figures + dip + batches_missed(entry["batches"]), RULES[entry["type"]], compared)


def carried_out(batches: dict[str, int]) -> bool:
    """Whether a praise or slander attack was carried out: its attacking orgs' nodes answered at least half of the
    event batches its scripts were due in (measure._attack_batches) but those skipped, their node still answering the
    one before (a slow node's; the rounds it was busy with one it was sent). One whose nodes refused them, did not
    answer or were down is not contained by the network: the network never heard it."""
    return batches["answered"] > 0 and 2 * batches["answered"] >= _judged(batches)


def _judged(batches: dict[str, int]) -> int:
    """The batches an attack's verdict judges: those due but the skipped (results before these were counted apart
    have none)."""
    return batches["due"] - batches.get("skipped", 0)


def missed_batches(batches: dict[str, int]) -> str:
    """`12 of 12 batches failed (3 of them not sent: ...); 5 more skipped, ...`: the batches of a praise or slander
    attack (its measurement's `batches`) that did not get through, and those skipped, which are not judged."""
    if not batches["due"]:
        return "none of its batches was due (no round of traffic fell within it)"
    skipped = batches.get("skipped", 0)
    unsent = f" ({batches['not_sent']} of them not sent: their node down)" if batches["not_sent"] else ""
    skips = (f"; {skipped} more skipped, their node still answering the one before (not judged)"
             if skipped else "")
    judged = _judged(batches)
    return f"{judged - batches['answered']} of {counted(judged, 'batch', 'batches')} failed{unsent}{skips}"


def batches_missed(batches: dict[str, int]) -> str:
    """`; 3 of its 40 batches failed`, where any of a praise or slander attack's batches did not get through or was
    skipped; nothing where every one was answered."""
    return f"; {missed_batches(batches)}" if batches["answered"] < batches["due"] else ""


def dip_said(entry: dict[str, Any]) -> str:
    """`the lowest during the run untrusted (149) (good-2 at n01, 22.5 s into the traffic), untrusted at some point in
    3 of 16 views` (`from 15 s on (the attack's start)` for a slander's targets): what measure.lowest_during found of
    an agent class or an attack's targets at the honest nodes; nothing where no score of them was sampled (or the
    results are from before it was measured)."""
    lowest = entry.get("lowest_during")
    if lowest is None:
        return ""
    since = entry.get("since", 0.0)
    during = f"from {since:g} s on (the attack's start)" if since else "during the run"
    return (f"the lowest {during} {_score(lowest)} ({lowest['agent']} at {lowest['node']}, {lowest['t']:g} s "
            f"into the traffic), untrusted at some point in {entry['untrusted_during']} of "
            f"{counted(entry['views_during'], 'view')}")


def _compared(behaviour: str | None, praise: bool, results: dict[str, Any], baseline: Baseline | None) -> str:
    """The targets' figure for agents of their behaviour that no attack touched: in the baseline run if there is
    one, else in this run."""
    if behaviour is None:
        return ""
    if baseline is not None:
        extreme = _extreme(baseline.results, behaviour, praise)
        if extreme is not None:
            aside = _traffic_aside(baseline, results)
            return (f"in the baseline run of the same seed and size ({baseline.path.name}{aside}) the "
                    f"{_extreme_said(praise)} of its {behaviour} agents was {_score(extreme)}")
    extreme = _extreme(results, behaviour, praise)
    if extreme is not None:
        return (f"in this run the {_extreme_said(praise)} of the {behaviour} agents no attack touched was "
                f"{_score(extreme)}")
    scenario = results["scenario"]
    return (f"nothing to compare with: no baseline run of seed {scenario['seed']} on "
            f"{counted(scenario['nodes'], 'node')} in the testnet's reports, nor {behaviour} agents no attack touched "
            "in this run")


def _traffic_aside(baseline: Baseline, results: dict[str, Any]) -> str:
    """`; its traffic 30 s, this run's 45 s` where the baseline run's traffic lasted otherwise than this run's (scores
    grow with the evidence of each round), else nothing."""
    theirs, ours = baseline.results["scenario"].get("duration"), results["scenario"].get("duration")
    return f"; its traffic {theirs:g} s, this run's {ours:g} s" if None not in (theirs, ours) and theirs != ours else ""


def _extreme_said(praise: bool) -> str:
    """Which final score a praise (the highest: did any target rise?) or slander (the lowest) verdict gives."""
    return "highest" if praise else "lowest"


def _extreme(results: dict[str, Any], behaviour: str, highest: bool) -> dict[str, Any] | None:
    """The highest (else lowest) final score at a run's honest nodes of its untouched agents of `behaviour`."""
    honest = set(results["measurements"]["confusion"]["observers"])
    untouched = set(results["measurements"].get("untouched_agents", [a["name"] for a in results["agents"]]))
    agents = {a["name"] for a in results["agents"] if a["behaviour"] == behaviour and a["name"] in untouched}
    finals = [(f["score"], f["tier"]) for f in results["final_scores"] if f["node"] in honest and f["agent"] in agents]
    if not finals:
        return None
    score, tier = max(finals) if highest else min(finals)
    return {"score": score, "tier": tier}


def _equivocation(entry: dict[str, Any], honest: list[str]) -> Verdict:
    subject = f"equivocation by {entry['node']}"
    others = [n for n in honest if n != entry["node"]]
    answered = [n for n in others if n in entry["weight_at"]]
    believing = [n for n in answered if n not in entry["distrusted_by"]]
    if believing:
        weights = ", ".join(f"{n} {entry['weight_at'][n]:g}" for n in believing)
        figures = (f"{len(believing)} of the {counted(len(others), 'honest node')} do not count its org an equivocator "
                   f"at the end (its word weighs {weights})")
    elif not others:
        figures = "no honest node but its own to judge by"
    else:
        most = max((entry["weight_at"][n] for n in answered), default=0.0)
        figures = (f"{len(answered)} of the {counted(len(others), 'honest node')} answered, and each counts its org an "
                   f"equivocator at the end (its word weighs {most:g} at most)")
    return Verdict(entry["attack"], entry["type"], subject, _outcome(bool(believing), bool(others) and
                                                                     len(answered) == len(others)),
                   figures, RULES["equivocation"])


def _whitewash(entry: dict[str, Any]) -> Verdict:
    subject = f"whitewash of {entry['group']}"
    changes, better, complete = [], False, bool(entry["agents"])
    for name, scores in entry["agents"].items():
        old, new = scores["old_final_score"], scores["new_final_score"]
        changes.append(f"{name} {_mean(old)} -> {_mean(new)}")
        if old is None or new is None:
            complete = False
        else:
            better |= tier_rank(tier_of(round(new))) > tier_rank(tier_of(round(old)))
    figures = ("the honest nodes' mean final score of each burned identity -> its fresh one: " + ", ".join(changes)
               if changes else "no agent took a fresh identity")
    return Verdict(entry["attack"], entry["type"], subject, _outcome(better, complete), figures, RULES["whitewash"])


def _mean(score: float | None) -> str:
    return "unscored" if score is None else f"{tier_of(round(score))} ({score:g})"


def _key_theft(entry: dict[str, Any], honest: list[str]) -> Verdict:
    subject = f"key theft from {entry['victim']}"
    views = {n: v for n, v in entry["thief_key"].items() if n in honest}
    weighing = {n: v for n, v in views.items() if v["weight"] > 0 or v["voucher_weight"] > 0}
    if weighing:
        figures = (f"the thief's key weighs something at {len(weighing)} of the "
                   f"{counted(len(honest), 'honest node')} (" + ", ".join(
                       f"{n} weight {v['weight']:g}, as a voucher {v['voucher_weight']:g}" for n, v in weighing.items())
                   + ")")
    else:
        figures = (f"the thief's key weighs nothing at the {len(views)} of the {counted(len(honest), 'honest node')} "
                   f"that answered (its org flagged at {entry['nodes_flagging']} of {counted(entry['of'], 'node')})")
    return Verdict(entry["attack"], entry["type"], subject, _outcome(bool(weighing), len(views) == len(honest) > 0),
                   figures, RULES["key-theft"])


def find_baseline(reports: Path, *, seed: int, nodes: int) -> Baseline | None:
    """The newest report under `reports` (the testnet's DIR/reports) of a baseline run with this seed and this many
    nodes; reports that cannot be read, or of another seed, size or scenario, are passed over, as are those of a
    baseline run on orgs an earlier run flagged (`setup.flagged_earlier`; their word counted for nothing, its figures
    are not the honest world's)."""
    found: list[tuple[float, Baseline]] = []
    for path in reports.glob("*/results.json"):
        try:
            results = json.loads(path.read_text())
            scenario = results["scenario"]
            if (scenario["name"], scenario["seed"], scenario["nodes"]) != (BASELINE, seed, nodes) \
                    or results.get("setup", {}).get("flagged_earlier"):
                continue
            for behaviour in {a["behaviour"] for a in results["agents"]}:  # what a comparison reads is there
                _extreme(results, behaviour, True)
            found.append((path.stat().st_mtime, Baseline(path.parent, results)))
        except (OSError, ValueError, LookupError, TypeError, AttributeError):
            continue
    return max(found, key=lambda f: f[0])[1] if found else None
