"""What a scenario run showed (DESIGN.md §9), computed from what testnet.runner observed: propagation latency
(issue to acceptance at every node), catch-up after a restart or a partition, how soon the other nodes linked a
rotated key to its org, convergence of the record sets and checkpoints, score trajectories per agent class at every
node, the tier confusion matrix, and each attack's effect.

Record times come from polling every node's `/v1/records` every `poll_seconds`, so they are late by up to that
much; each node's own `vouchnet_record_latency_seconds` histogram (exact, bucketed) is reported beside them.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Collection
from dataclasses import replace
from typing import Any

from vouching.tiers import TIERS, tier_rank

from .plan import Plan
from .runner import RunResult
from .scenario import Scenario
from .status import expected_cosigners, flagged_keys, followers_by_node, witness_cosignatures, witnessed

CATCH_UP_MARGIN = 10.0  # seconds after a fault ends during which records are not counted as undisturbed


def measure(run: RunResult) -> dict[str, Any]:
    return {
        "propagation": propagation(run),
        "catch_up": catch_up(run),
        "rotations": rotations(run),
        "convergence": convergence(run),
        "checkpoints": checkpoints(run),
        "confusion": confusion(run),
        "orgs": org_views(run),
        "attacks": attacks(run),
        "untouched_agents": untouched_agents(run),
        "trust_changes": trust_changes(run),
    }


def attacking_groups(scenario: Scenario) -> set[str]:
    """The org groups an attack uses: those that praise, slander or equivocate, and the operators of whitewashed
    agents, who vouch for their fresh identities."""
    operators = {g.name: g.operator for g in scenario.agents}
    return ({a.attackers.group for a in scenario.attacks if a.attackers is not None}
            | {operators[a.agents] for a in scenario.attacks if a.type == "whitewash" and a.agents is not None})


def untouched_agents(run: RunResult) -> list[str]:
    """The agents no attack touches: none targets them (praise, slander, whitewash), their operator's vouch for them
    stays (no `[[revocations]]`), their operator's org neither attacks nor had its key stolen, and no `[[vouches]]`
    change moves the standing of an org they work for (moved_by_vouch_changes: their operator's vouch for them, or
    an org's reports of them, would weigh otherwise from then). Their scores are the honest world's figures an
    attack's targets are compared with (testnet.verdict)."""
    scenario = run.scenario
    targeted = ({a.agents for a in scenario.attacks if a.agents is not None}
                | {r.agents for r in scenario.revocations})
    attacking = attacking_groups(scenario)
    robbed = {node for i, a in enumerate(scenario.attacks) if a.type == "key-theft" and a.orgs is not None
              for node in run.plan.select(a.orgs, f"attacks[{i}].orgs")}
    moved = moved_by_vouch_changes(run.plan, observers(run))
    return sorted(a.name for a in run.plan.agents if a.group.name not in targeted and a.operator not in robbed
                  and not moved.intersection(a.orgs) and run.plan.group_of(a.operator) not in attacking)


def moved_by_vouch_changes(plan: Plan, watchers: Collection[str]) -> set[str]:
    """The orgs (by node) whose standing at one of the `watchers` a `[[vouches]]` change may move: at a watcher whose
    horizon holds the change's voucher, each org the voucher reaches by org-peer vouches (those of the file's trust
    graph, or any change makes), the vouchee and whom it vouches for included. A voucher's reputation is shared out
    among all it vouches for and flows on from them (README "Org reputation": personalised PageRank), and a vouchee
    brings its own vouchees into horizons or takes them out. Left out at each watcher: itself and its roots, whose
    standing there is 1 whatever flows to them (a root's teleport share alone is far above r_full)."""
    edges = {node: set(theirs) for node, theirs in plan.vouches.items()}
    for i, change in enumerate(plan.scenario.vouch_changes):
        if change.action == "vouch":
            for a, b in plan.vouch_pairs(i):
                edges[a].add(b)
    ever = replace(plan, vouches={node: dict.fromkeys(theirs, 1.0) for node, theirs in edges.items()})
    horizons = {watcher: ever.horizon(watcher) for watcher in watchers}
    moved: set[str] = set()
    for voucher in {a for i in range(len(plan.scenario.vouch_changes)) for a, _ in plan.vouch_pairs(i)}:
        reached, frontier = set(), list(edges[voucher])
        while frontier:
            org = frontier.pop()
            if org not in reached:
                reached.add(org)
                frontier += edges[org]
        for watcher, horizon in horizons.items():
            if voucher in horizon:
                moved |= reached - {watcher, *plan.roots[watcher]}
    return moved


def observers(run: RunResult) -> list[str]:
    """The nodes whose view counts as the honest network's: those of org groups no attack uses (all if none)."""
    attacking = attacking_groups(run.scenario)
    honest = [n for g in run.scenario.orgs if g.name not in attacking for n in run.plan.groups[g.name]]
    return honest or list(run.plan.nodes)


def _node_of(run: RunResult) -> dict[str, str]:
    """Every key of every node's org (a rotation makes more than one) -> the node."""
    return {did: node for node, keys in run.keys.items() for did in keys}


def trust_changes(run: RunResult) -> list[dict[str, Any]]:
    """The changes of trust the run made on schedule, in the order it made them, each with when (seconds into the
    traffic): each `[[revocations]]` (the agents whose operator vouch was revoked, and their operators) and each
    `[[vouches]]` change (its action, its selectors, and the (voucher, vouchee) node pairs)."""
    found = []
    for event in run.timeline:
        t = round(event["at"] - run.t0, 2)
        if event["kind"] == "revocation":
            found.append({"kind": "revocation", "index": event["revocation"], "t": t,
                          "agents": run.scenario.revocations[event["revocation"]].agents,
                          "revoked": sorted(event["agents"]),
                          "operators": sorted({done["operator"] for done in event["agents"].values()})})
        elif event["kind"] == "vouches":
            change = run.scenario.vouch_changes[event["change"]]
            found.append({"kind": "vouches", "index": event["change"], "t": t, "action": event["action"],
                          "from": change.source.text, "to": change.target.text,
                          "pairs": [[pair["from"], pair["to"]] for pair in event["pairs"]]})
    return found


def _fault_windows(run: RunResult) -> list[tuple[float, float]]:
    windows = []
    for fault in run.scenario.faults:
        start = run.t0 + fault.at
        windows.append((start, start + fault.duration + CATCH_UP_MARGIN))
    return windows


def _summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    return {"count": len(values), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": round(ordered[-1], 3)}


# --- records ----------------------------------------------------------------------------------------------


def propagation(run: RunResult) -> dict[str, Any]:
    """Seconds from a record's issue (its `ts`) to its acceptance at each other node, for records issued during
    traffic outside fault windows; "everywhere" is the last node to accept it."""
    node_of = _node_of(run)
    windows = _fault_windows(run)
    per_node, everywhere, disturbed = [], [], 0
    for rid, info in run.records.items():
        issuer = node_of.get(info.iss)
        if issuer is None or not run.t0 <= info.ts <= run.traffic_end:
            continue
        if any(start <= info.ts <= end for start, end in windows):
            disturbed += 1
            continue
        delays = [max(0.0, at - info.ts) for node, at in run.seen[rid].items() if node != issuer]
        if delays:
            per_node += delays
            everywhere.append(max(delays))
    return {
        "method": "first seen in GET /v1/records, polled every poll_seconds (jittered)",
        "poll_seconds": run.scenario.measure.poll_seconds,
        "to_each_node": _summary(per_node),
        "everywhere": _summary(everywhere),
        "records_in_fault_windows": disturbed,
        "latencies": sorted(round(v, 3) for v in per_node),
        "histogram": _merged_histogram(run),
        "histogram_quantiles": bucket_quantiles(_merged_histogram(run)),
    }


def bucket_quantiles(histogram: list[tuple[float, float]]) -> dict[str, float | None]:
    """From a cumulative histogram: for p50, p90 and p99, the least bucket bound at or below which that share lies."""
    total = histogram[-1][1] if histogram else 0.0
    out: dict[str, float | None] = {}
    for name, share in (("p50_at_most", 0.5), ("p90_at_most", 0.9), ("p99_at_most", 0.99)):
        out[name] = next((bound for bound, count in histogram if total and count >= share * total), None)
    return out


def _merged_histogram(run: RunResult) -> list[tuple[float, float]]:
    """Every node's vouchnet_record_latency_seconds over the run, summed: (upper bound, cumulative count)."""
    merged: dict[float, float] = defaultdict(float)
    for buckets in run.latency_buckets.values():
        for bound, count in buckets:
            merged[bound] += count
    return sorted(merged.items())


def catch_up(run: RunResult) -> list[dict[str, Any]]:
    """For each restart: how long the node took to hold what it missed. For each partition: the same per node for
    the other side's records issued while cut off, and how many crossed before the heal (0 if it held)."""
    found = []
    node_of = _node_of(run)
    events = run.timeline
    for i, event in enumerate(events):
        if event["kind"] == "restarted":
            node, back = event["node"], event["at"]
            killed = max(e["at"] for e in events[:i] if e["kind"] == "kill" and e["node"] == node)
            backlog = [at[node] - back for rid, at in run.seen.items()
                       if node in at and at[node] >= back and run.records[rid].ts < back]
            found.append({"fault": "kill", "node": node, "down_seconds": round(back - killed, 2),
                          "backlog_records": len(backlog), "seconds": round(max(backlog, default=0.0), 2)})
        elif event["kind"] == "heal" and event["side"]:
            cut = max((e for e in events[:i] if e["kind"] == "partition"), key=lambda e: e["at"])
            sides = {n: cut["side"] if n in cut["rest"] else cut["rest"] for n in cut["side"] + cut["rest"]}
            per_node, crossed, backlog_total = {}, 0, 0
            for node, other in sides.items():
                delays = []
                for rid, info in run.records.items():
                    if node_of.get(info.iss) in other and cut["at"] <= info.ts < event["at"] and node in run.seen[rid]:
                        seen = run.seen[rid][node]
                        if seen < event["at"]:
                            crossed += 1
                        else:
                            delays.append(seen - event["at"])
                backlog_total += len(delays)
                per_node[node] = round(max(delays, default=0.0), 2)
            found.append({"fault": "partition", "side": cut["side"], "cut_seconds": round(event["at"] - cut["at"], 2),
                          "connections_crossing_after_cut": len(cut["crossing"]), "records_crossed": crossed,
                          "backlog_records": backlog_total, "seconds": max(per_node.values(), default=0.0),
                          "seconds_per_node": per_node})
    return found


def rotations(run: RunResult) -> list[dict[str, Any]]:
    """For each key rotation: the org's old and new key, how long its node was down (from the stop to its API
    answering again with the new key), and how soon each other node whose horizon holds the org linked the two keys,
    i.e. held both the old key's rotation record and the new key's first record (together they make the link;
    seconds after the node was started with its new key), how many of those seconds were the node's own start (until
    its API answered), and the nodes whose GET /v1/orgs/{new key} answered with the org (its first key) at the end.
    The vouches of the orgs flagged by then extend no horizon: those an earlier run on the testnet flagged
    (Plan.flagged), and the targets of the run's equivocations and key thefts before it, as the plan counts a
    rotation's followers; and the org-peer vouches are those in force then (the `[[vouches]]` changes made before)."""
    found = []
    for i, event in enumerate(run.timeline):
        if event["kind"] != "rotated":
            continue
        node, org = event["node"], run.keys[event["node"]][0]
        stopped = max(e["at"] for e in run.timeline[:i] if e["kind"] == "rotate" and e["node"] == node)
        flagged = set(run.plan.flagged) | {e["node"] for e in run.timeline[:i]
                                           if e["kind"] in ("equivocation", "key-theft")}
        then = run.plan.with_changes([e["change"] for e in run.timeline[:i] if e["kind"] == "vouches"])
        others = [n for n in run.plan.nodes if n != node and node in then.horizon(n, flagged)]
        linked = {}
        for other in others:
            held = [run.seen.get(rid, {}).get(other) for rid in (event["rotation"], event["first"])]
            if None not in held:
                linked[other] = round(max(0.0, max(held) - event["started"]), 2)
        views = run.key_views.get(event["new"], {})
        everywhere = max(linked.values(), default=None) if len(linked) == len(others) else None
        found.append({"node": node, "old": event["old"], "new": event["new"],
                      "down_seconds": round(event["at"] - stopped, 2),
                      "start_seconds": round(event["answered"] - event["started"], 2), "nodes_linking": len(linked),
                      "of": len(others), "seconds_to_link": linked, "seconds_to_link_everywhere": everywhere,
                      "linked_at_end": sorted(n for n in others if views.get(n, {}).get("org") == org)})
    return found


def convergence(run: RunResult) -> dict[str, Any]:
    """Whether every node holds every record of the orgs in its horizon at the end (the `[[vouches]]` changes made),
    and when the last one arrived.
    An equivocator's records are left out: two nodes may rightly hold two different records at one of its seqs."""
    node_of = _node_of(run)
    flagged = {node_of[r.about] for r in run.records.values() if r.kind == "equivocation" and r.about in node_of}
    union = set().union(*run.held.values())
    counted = {rid for rid in union if node_of.get(run.records[rid].iss) not in flagged}
    missing = {}
    for node, held in run.held.items():
        inside = run.plan.final.horizon(node, flagged)
        missing[node] = sum(1 for rid in counted - held if node_of.get(run.records[rid].iss) in inside)
    arrivals = [at for seen in run.seen.values() for at in seen.values()]
    return {
        "records": len(union),
        "converged": not any(missing.values()),
        "missing_per_node": missing,
        "equivocators_left_out": sorted(flagged),
        "last_arrival_after_traffic_stopped": round(max(arrivals, default=run.traffic_end) - run.traffic_end, 2),
    }


def checkpoints(run: RunResult) -> dict[str, Any]:
    """Each node's latest checkpoint: does it cover the whole ledger, how many other orgs cosigned it, how many of
    its witnesses did and how many are to (its followers, the orgs whose horizon holds it, at most `witnesses`), and
    whether it is witnessed (status.witnessed; None for an equivocator's node, which is not judged); and whether
    every honest node's is."""
    others = len(run.plan.nodes) - 1
    flagged = flagged_keys(run.records.values(), run.keys.values())
    followers = followers_by_node(run.plan.final, run.keys, run.dids, flagged)
    witnesses = run.scenario.settings.witnesses
    rows = {}
    for node, status in run.status.items():
        cp = status.checkpoint
        rows[node] = {"ledger": status.ledger_size, "checkpoint": None if cp is None else cp.size,
                      "cosigned_by": None if cp is None else len(cp.cosigned_by), "of": others,
                      "by_witnesses": witness_cosignatures(status, followers[node], flagged),
                      "expected": expected_cosigners(status, followers[node], flagged, witnesses),
                      "witnessed": None if status.did in flagged else witnessed(status, followers[node], flagged,
                                                                                witnesses),
                      "rejected": status.rejected, "flagged": status.flagged, "error": status.error}
    return {"all_current_and_witnessed": all(row["witnessed"] is not False for row in rows.values()), "nodes": rows}


# --- scores -----------------------------------------------------------------------------------------------


def identity_at(run: RunResult, agent: str, at: float) -> str:
    """The did the agent went by at wall time `at` (whitewashing switches it)."""
    dids = run.identities[agent]
    switches = [e["at"] for e in run.timeline if e["kind"] == "whitewash" and agent in e["agents"]]
    return dids[sum(1 for s in switches if s <= at)]


def trajectories(run: RunResult) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Agent group -> node -> [(seconds into the run, mean score of the group's agents)], per sampling round."""
    step = run.scenario.measure.score_seconds
    bins: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    group_of = {a.name: a.group.name for a in run.plan.agents}
    for s in run.scores:
        if s.did == identity_at(run, s.agent, s.at):
            bins[(group_of[s.agent], s.node, round((s.at - run.t0) / step))].append(s.score)
    out: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for (group, node, k), values in sorted(bins.items()):
        out[group][node].append((round(k * step, 1), round(statistics.fmean(values), 1)))
    return {g: dict(nodes) for g, nodes in out.items()}


def final_scores(run: RunResult) -> dict[tuple[str, str], tuple[int, str]]:
    """(node, agent) -> its last (score, tier) there, for the identity in use at the end; none at a node that gave no
    view of the orgs at the end (`run.unanswered`): its last answers may be from long before (stopped, overloaded), and
    a verdict short of its scores has none, as one short of its view has."""
    last: dict[tuple[str, str], tuple[float, int, str]] = {}
    for s in run.scores:
        if s.did == run.identities[s.agent][-1] and s.node not in run.unanswered:
            key = (s.node, s.agent)
            if key not in last or s.at >= last[key][0]:
                last[key] = (s.at, s.score, s.tier)
    return {key: (score, tier) for key, (_, score, tier) in last.items()}


def lowest_scores(run: RunResult, since: float = 0.0) -> dict[tuple[str, str], tuple[int, str, float]]:
    """(node, agent) -> its lowest (score, tier, seconds into the traffic) there from `since` seconds into the traffic
    to the end of the run (settling included), under the identity it went by then: a transient dip, such as an honest
    agent's when slander starts, which its final score no longer shows. Every node's samples count, one that gave no
    view at the end too (what it answered then it answered)."""
    lowest: dict[tuple[str, str], tuple[int, str, float]] = {}
    for s in run.scores:
        if s.at >= run.t0 + since and s.did == identity_at(run, s.agent, s.at):
            key = (s.node, s.agent)
            if key not in lowest or s.score < lowest[key][0]:
                lowest[key] = (s.score, s.tier, round(s.at - run.t0, 1))
    return lowest


def lowest_during(run: RunResult, agents: set[str], watchers: set[str], since: float = 0.0) -> dict[str, Any]:
    """Of `agents` at the `watchers`, from `since` seconds into the traffic (an attack's start: before it, an honest
    agent's lowest is its cold start's): the lowest score (lowest_scores; its tier, node, agent and seconds into the
    traffic, None if none was scored), and in how many of their (node, agent) views it was `untrusted` at some
    point."""
    views = {key: low for key, low in lowest_scores(run, since).items() if key[0] in watchers and key[1] in agents}
    lowest = None
    if views:
        (node, agent), (score, tier, t) = min(views.items(), key=lambda view: view[1][0])
        lowest = {"score": score, "tier": tier, "node": node, "agent": agent, "t": t}
    return {"lowest_during": lowest, "since": since,
            "untrusted_during": sum(1 for _, tier, _ in views.values() if tier == "untrusted"),
            "views_during": len(views)}


def confusion(run: RunResult) -> dict[str, Any]:
    """Agent class (group, and whether it misbehaves) x final tier, counted over (observer node, agent) pairs; with
    each class's lowest score at the observers during the run, and how many of their views were untrusted at some
    point (lowest_during)."""
    finals = final_scores(run)
    watchers = set(observers(run))
    group_of = {a.name: a.group.name for a in run.plan.agents}
    rows = []
    for group in run.scenario.agents:
        counts = dict.fromkeys(TIERS, 0)
        for (node, agent), (_, tier) in finals.items():
            if node in watchers and group_of[agent] == group.name:
                counts[tier] += 1
        rows.append({"group": group.name, "behaviour": group.behaviour.model, "malicious": group.behaviour.malicious,
                     "tiers": counts,
                     **lowest_during(run, {a.name for a in run.plan.agents_of(group.name)}, watchers)})
    return {"observers": sorted(watchers), "tiers": list(TIERS), "rows": rows}


# --- orgs and attacks -------------------------------------------------------------------------------------


def org_views(run: RunResult) -> dict[str, dict[str, float]]:
    """Org group -> the observers' mean view of its orgs: reputation, credibility, weight of its word."""
    group_of = {did: run.plan.group_of(node) for did, node in _node_of(run).items()}
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for node in observers(run):
        for org in run.orgs.get(node, []):
            group = group_of.get(org["org"])
            if group is not None and not org["own"]:
                for key in ("reputation", "credibility", "weight"):
                    values[group][key].append(org[key])
                values[group]["equivocator"].append(float(org["equivocator"]))
    return {g: {k: round(statistics.fmean(v), 4) for k, v in kv.items()} for g, kv in values.items()}


def attacks(run: RunResult) -> list[dict[str, Any]]:
    finals = final_scores(run)
    watchers = set(observers(run))
    out = []
    for i, attack in enumerate(run.scenario.attacks):
        entry: dict[str, Any] = {"attack": i, "type": attack.type}
        if attack.type in ("praise", "slander"):
            names = {a.name for a in run.plan.agents_of(attack.agents)}
            seen = [(score, tier) for (node, agent), (score, tier) in finals.items()
                    if node in watchers and agent in names]
            attackers = set(run.plan.select(attack.orgs, f"attacks[{i}].orgs"))
            theirs = [score for (node, agent), (score, _) in finals.items() if node in attackers and agent in names]
            entry.update(orgs=attack.orgs.text, agents=attack.agents, targets=len(names),
                         mean_final_score=round(statistics.fmean(s for s, _ in seen), 1) if seen else None,
                         trusted_or_better=sum(1 for _, t in seen if tier_rank(t) >= tier_rank("trusted")),
                         untrusted=sum(1 for _, t in seen if t == "untrusted"),
                         views=len(seen), lowest_final=_final(min(seen, default=None)),
                         highest_final=_final(max(seen, default=None)),
                         # what the attack made of the targets where it is believed: beside the honest nodes' view
                         attackers_mean_final_score=round(statistics.fmean(theirs), 1) if theirs else None,
                         batches=_attack_batches(run, i),
                         **(lowest_during(run, names, watchers, attack.at) if attack.type == "slander" else {}))
        elif attack.type == "equivocation":
            entry.update(_equivocation_outcome(run, i))
        elif attack.type == "whitewash":
            entry.update(group=attack.agents, **_whitewash_outcome(run, i, watchers - run.unanswered.keys()))
        elif attack.type == "key-theft":
            entry.update(_key_theft_outcome(run, i))
        out.append(entry)
    return out


def _attack_batches(run: RunResult, index: int) -> dict[str, int]:
    """How many of the event batches a praise or slander attack's scripts were due in (a round, an attacking org's
    node) its nodes answered, failed (unanswered or refused), were not sent (the node down) or skipped (the node still
    answering the one before): an attack whose batches did not get through was not carried out, skipped ones aside
    (testnet.verdict)."""
    counts = run.traffic.attack_batches.get(index, {})
    outcomes = {key: counts.get(outcome, 0) for key, outcome in
                (("answered", "answered"), ("failed", "failed"), ("not_sent", "not sent"), ("skipped", "skipped"))}
    return {"due": sum(outcomes.values()), **outcomes}


def _final(view: tuple[int, str] | None) -> dict[str, Any] | None:
    return None if view is None else {"score": view[0], "tier": view[1]}


def _done(run: RunResult, kind: str, index: int) -> dict[str, Any]:
    """The timeline's entry of the scenario's attack `index` (one of several of its kind)."""
    return next(e for e in run.timeline if e["kind"] == kind and e["attack"] == index)


def _equivocation_outcome(run: RunResult, index: int) -> dict[str, Any]:
    """How long until each node held evidence against the offender signed after the attack; and, read from the
    nodes at the end (GET /v1/orgs/{offender}), which of the others count it an equivocator (its own node never
    does) and what its word weighs at each."""
    done = _done(run, "equivocation", index)
    views = run.key_views.get(done["offender"], {})
    return {"offender": done["offender"], "node": done["node"], "offered_to": done["offered_to"],
            "answers": done["answers"], **_flagging(run, {done["offender"]}, done["at"]),
            "distrusted_by": sorted(n for n, view in views.items() if view["equivocator"]),
            "of_others": len(run.plan.nodes) - 1,
            "weight_at": {n: view["weight"] for n, view in sorted(views.items())}}


def _key_theft_outcome(run: RunResult, index: int) -> dict[str, Any]:
    """Whether and how soon every node held evidence against the org whose key was stolen (its own node included),
    which nodes' trust engines count it an equivocator at the end (never its own node's), and what the thief's key
    weighs at each node: nothing, whether a node linked it to the flagged org or to no org at all."""
    done = _done(run, "key-theft", index)
    victim = done["node"]
    flagging = _flagging(run, set(run.keys[victim]), done["at"])
    thief = {node: {"linked_to_victim": view["org"] == run.keys[victim][0], "equivocator": view["equivocator"],
                    "weight": view["weight"], "voucher_weight": view["voucher_weight"]}
             for node, view in sorted(run.key_views[done["thief"]].items())}
    return {"victim": victim, "key": done["key"], "thief": done["thief"], "seq": done["seq"],
            "offered_to": done["offered_to"], "answers": done["answers"], **flagging,
            "flagged_everywhere": flagging["nodes_flagging"] == flagging["of"],
            "distrusted_by": sorted(n for n, view in run.key_views[done["key"]].items() if view["equivocator"]),
            "thief_key": thief,
            "thief_counts_for_nothing": bool(thief) and all(v["weight"] == v["voucher_weight"] == 0
                                                            for v in thief.values())}


def _flagging(run: RunResult, offenders: set[str], since: float) -> dict[str, Any]:
    """How long after `since` each node held equivocation evidence against one of `offenders` signed after it (a
    node holding earlier evidence, from an earlier run on the same testnet, signs none: it flagged the org already)."""
    evidence = [info for info in run.records.values() if info.kind == "equivocation" and info.about in offenders]
    fresh = [info for info in evidence if info.ts >= since - 1.0]  # issuers' clocks are this machine's: ample
    flagged_at: dict[str, float] = {}
    for info in fresh:
        for node, at in run.seen[info.id].items():
            flagged_at[node] = min(flagged_at.get(node, at), at)
    delays = {node: round(max(0.0, at - since), 2) for node, at in sorted(flagged_at.items())}
    return {"flagged_before": len(evidence) > len(fresh), "nodes_flagging": len(delays), "of": len(run.plan.nodes),
            "seconds_to_flag": delays, "seconds_to_flag_everywhere": max(delays.values(), default=None)}


def _whitewash_outcome(run: RunResult, index: int, watchers: set[str]) -> dict[str, Any]:
    """Each whitewashed agent's old and new identity: the mean final score of each at the `watchers` (the observers
    that gave a view at the end: final_scores)."""
    done = _done(run, "whitewash", index)
    last: dict[tuple[str, str], tuple[float, int]] = {}
    for s in run.scores:
        key = (s.node, s.did)
        if s.node in watchers and (key not in last or s.at >= last[key][0]):
            last[key] = (s.at, s.score)

    def mean_final(did: str) -> float | None:
        scores = [score for (_, d), (_, score) in last.items() if d == did]
        return round(statistics.fmean(scores), 1) if scores else None

    return {"agents": {name: {"old_final_score": mean_final(ids["old"]), "new_final_score": mean_final(ids["new"])}
                       for name, ids in done["agents"].items()}}
