"""Running a scenario on a testnet (DESIGN.md §9): set the orgs' roots and vouches as the scenario says, give the
agents identities and operators, run traffic while attacks, faults, operators' revocations and orgs' vouch changes
happen on schedule, keep watching records and scores, and hand everything observed to the measurements. The testnet is
left whole: a partition in force is healed and a killed node restarted, even when the run is interrupted. A node's key
rotation is followed everywhere the run names orgs by did (the state file, roots, vouches, partitions, measurements).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from node.client import ClientError
from vouching.counts import counted

from . import faults, prometheus
from .agents import Agent, behaviour_model
from .attacks import Equivocation, KeyTheft, equivocate, steal_key
from .cluster import Cluster, ClusterError, Progress, Say
from .interrupts import interrupts_held
from .observe import RecordInfo, RecordWatch, ScoreSample, ScoreWatch, Timeline
from .plan import OPERATOR_WEIGHT, REVOCATION_ORDER, Plan, as_reused, make_plan
from .scenario import Scenario
from .status import NodeStatus, flagged_keys, followers_by_node, node_status, witnessed
from .traffic import Traffic, TrafficStats
from .workers import Worker

LATENCY_METRIC = "vouchnet_record_latency_seconds"
SETUP_TIMEOUT = 30.0  # seconds the setup's records may take to reach every node before traffic starts anyway
CUT_SETTLE = 5.0  # seconds a partition's cut may take to close every connection across it
FOLLOW_TIMEOUT = 30.0  # seconds a mid-run vouch's followers may take to hold what it brings them (_await_followers)
CHECKPOINT_TIMEOUT = 30.0  # seconds after settling for every checkpoint to cover its ledger and be witnessed
PROGRESS_SECONDS = 10.0  # how often a run says how far its traffic got
LATE_SECONDS = 1.0  # how far past its time an attack or fault step is said to be late (a rotation before it took long)

_KEYS_VIEWED = {"rotated": ("new",), "key-theft": ("key", "thief"),  # timeline entry -> its keys _key_views asks about
                "equivocation": ("offender",)}


@dataclass
class RunResult:
    """Everything a run observed; testnet.measure turns it into measurements."""

    scenario: Scenario
    plan: Plan
    seed: int
    dids: dict[str, str]  # node -> its org's did (its current key)
    keys: dict[str, list[str]]  # node -> every key of its org, first to current (key rotations)
    t0: float  # wall seconds when traffic started
    traffic_end: float
    end: float
    timeline: list[dict[str, Any]]
    records: dict[str, RecordInfo]
    seen: dict[str, dict[str, float]]
    held: dict[str, set[str]]
    scores: list[ScoreSample]
    identities: dict[str, list[str]]  # agent -> its dids, the current one last
    orgs: dict[str, list[dict[str, Any]]]  # node -> its view of every org at the end
    key_views: dict[str, dict[str, dict[str, Any]]]  # did -> node -> GET /v1/orgs/{did} at the end (rotated, stolen)
    status: dict[str, NodeStatus]
    latency_buckets: dict[str, list[tuple[float, float]]]  # node -> record-latency histogram over the run
    traffic: TrafficStats
    setup: dict[str, Any] = field(default_factory=dict)
    watch_errors: int = 0
    last_watch_error: str | None = None  # "node: the error" of the watchers' latest failed ask
    unanswered: dict[str, str] = field(default_factory=dict)  # node -> its error, asked for its views at the end
    load_average: tuple[float | None, float | None] = (None, None)  # the machine's, as traffic started and stopped


class Run:
    """One scenario on one testnet, `fresh` if `testnet run` made it for this run (what each node dials is then
    known before it starts: Plan.dials; on one reused, its rotating nodes are asked once they run); `execute()` runs
    it and returns what it observed."""

    def __init__(self, cluster: Cluster, scenario: Scenario, *, seed: int, say: Say = lambda _: None,
                 progress: Progress | None = None, fresh: bool = False) -> None:
        self.cluster = cluster
        self.progress = progress
        self.scenario = scenario
        self.seed = seed
        self.say = say
        self.plan = make_plan(scenario, cluster.names, seed, fresh=fresh)
        self.timeline = Timeline()
        self.up: frozenset[str] = frozenset()
        self.partition: faults.Partition | None = None
        self.agents = {a.name: Agent(a, behaviour_model(a.group.behaviour, scenario.traffic.round_seconds))
                       for a in self.plan.agents}
        self.setup: dict[str, Any] = {}
        self.unanswered: dict[str, str] = {}  # nodes that did not answer at the end: their views are left out
        self.operator_vouches: dict[str, str] = {}  # agent -> the id of its operator's vouch for its current did
        self.org_peer_vouches: dict[tuple[str, str], str] = {}  # (voucher, vouchee) node -> its vouch in force, by id

    @property
    def dids(self) -> dict[str, str]:
        """Node -> its org's did now (the cluster's state follows key rotations)."""
        return {entry.name: entry.did for entry in self.cluster.state.nodes}

    def is_up(self, node: str) -> bool:
        return node in self.up

    def identities(self) -> dict[str, list[str]]:
        return {name: [*agent.former, agent.did] for name, agent in self.agents.items()}

    def execute(self) -> RunResult:
        """The run; raises ScenarioError before anything on the testnet changes if, on a testnet reused, a rotation
        or an attack would fail mid-run or an attack targets an org an earlier run flagged (_check_reused), and
        ClusterError if the testnet fails it."""
        if self.plan.dials is None:
            self._check_reused()
        self._configure()
        self._say_flagged()
        self.up = frozenset(self.cluster.names)
        records = RecordWatch(self.cluster, self.is_up, self.scenario.measure.poll_seconds)
        records.start()
        scores = ScoreWatch(self.cluster, self.is_up, self.scenario.measure.score_seconds, self.identities)
        traffic = Traffic(self.cluster, self.plan, self.agents, self.is_up, self.seed)
        try:
            self._trust_graph(records)
            before = self._latency_histograms()
            scores.start()
            t0 = time.time()
            load_at_start = machine_load()
            self.timeline.add("start")
            traffic.start_at(t0)
            self.say(f"traffic: {counted(len(self.agents), 'agent')}, {self.scenario.duration:g} s")
            self._schedule(t0, traffic.stats, records)
            traffic.stop()
            traffic_end = time.time()
            load_at_end = machine_load()
            self.timeline.add("traffic stopped")
            self.say(f"settling for {self.scenario.measure.settle_seconds:g} s")
            time.sleep(self.scenario.measure.settle_seconds)
            status = self._await_checkpoints(records)
            orgs = self._org_views()
            key_views = self._key_views()
            after = self._latency_histograms()
        except BaseException:  # a Ctrl-C, or a failure, at any point: the testnet is left whole all the same
            self._leave_whole((traffic, scores, records), failing=True)
            raise
        self._leave_whole((traffic, scores, records), failing=False)
        return RunResult(
            scenario=self.scenario, plan=self.plan, seed=self.seed, dids=self.dids,
            keys={n: list(self.cluster.entry(n).keys) for n in self.cluster.names}, t0=t0, traffic_end=traffic_end,
            end=time.time(), timeline=self.timeline.events, records=records.records, seen=records.seen,
            held=records.held, scores=scores.samples, identities=self.identities(), orgs=orgs, key_views=key_views,
            status=status,
            latency_buckets={n: _difference(after.get(n, []), before.get(n, [])) for n in after},
            traffic=traffic.stats, setup=self.setup, watch_errors=records.errors + scores.errors,
            last_watch_error=scores.last_error or records.last_error,
            unanswered=dict(self.unanswered), load_average=(load_at_start, load_at_end),
        )

    # --- setup ------------------------------------------------------------------------------------------------

    def _configure(self) -> None:
        """Roots and settings into every config.toml; the nodes whose config changed restart, the others start if
        they are down. `setup.reconfigured` lists the former, `setup.restarted` those of them that were running (on a
        testnet the run made, none)."""
        started = time.monotonic()
        changed = []
        for node in self.cluster.names:
            values = {("trust", "roots"): [self.dids[m] for m in self.plan.roots[node]],
                      **self.scenario.settings.config_values()}
            if self.cluster.configure(node, values):
                changed.append(node)
        running = [n for n in changed if self.cluster.running(n)]
        if running:
            self.cluster.stop(running)
        self.cluster.start(progress=self.progress, say=self.say)
        lifted = faults.lift_leftover_blocks(self.cluster, self.cluster.names)
        if lifted:
            self.say(f"setup: lifted the peer block lists of {', '.join(lifted)} (a partition left by a run that was "
                     "killed before it healed it)")
        self.setup["reconfigured"] = changed
        self.setup["restarted"] = running
        self.setup["blocks_lifted"] = lifted
        self.say(f"setup: roots and settings of {counted(len(changed), 'node')} changed; "
                 f"{counted(len(self.cluster.names), 'node')} up ({time.monotonic() - started:.1f} s)")

    def _check_reused(self) -> None:
        """On a testnet reused, the plan checked against what its nodes say, before anything on it changes (as_reused:
        _ask_dials, _ask_flagged): the nodes that are down start as they are, to be asked, and a refusal (a failure, a
        Ctrl-C) stops them again, so the testnet is left as it was."""
        down = [n for n in self.cluster.names if not self.cluster.running(n)]
        try:
            if down:
                self.cluster.start(down, progress=self.progress, say=self.say)
                self.say(f"setup: started {', '.join(down)} (down) with {'its' if len(down) == 1 else 'their'} "
                         "config as it was, to ask the nodes whom they dial and which orgs they flagged before "
                         "anything on the testnet changes")
            self.plan = as_reused(self.plan, self._ask_dials(), self._ask_flagged())
        except BaseException:
            self.cluster.stop(down)
            raise

    def _ask_dials(self) -> dict[str, frozenset[str]]:
        """Node -> the other nodes it dials now, of those the scenario rotates: its `GET /v1/peers` known peers
        (its bootstrap peers, and the orgs whose `org` records it holds, which earlier runs or `up`'s topology may
        have left it), not those that dialled in."""
        node_of = {key: n for n in self.cluster.names for key in self.cluster.entry(n).keys}
        rotating = {n for step in self.plan.fault_steps() if step.action == "rotate" for n in step.nodes}
        dials = {}
        for node in sorted(rotating):
            with self.cluster.client(node) as client:
                dials[node] = frozenset(node_of[peer["org"]] for peer in client.iter_known_peers()
                                        if peer["source"] != "inbound" and peer["org"] in node_of)
        return dials

    def _ask_flagged(self) -> set[str]:
        """The nodes whose orgs the testnet's nodes hold equivocation evidence against (earlier runs' attacks): the
        offenders of the `equivocation` records each holds, by any of their org's keys."""
        node_of = {key: n for n in self.cluster.names for key in self.cluster.entry(n).keys}
        offenders: set[str] = set()
        for node in self.cluster.names:
            with self.cluster.client(node) as client:
                offenders |= {record["body"]["offender"] for record in client.iter_records(kind="equivocation")}
        return {node_of[offender] for offender in offenders if offender in node_of}

    def _say_flagged(self) -> None:
        """Say which orgs an earlier run flagged (none on a testnet the run made), and what that changes: their word
        counts for nothing at any node; `setup.flagged_earlier` lists them."""
        flagged = sorted(self.plan.flagged)
        self.setup["flagged_earlier"] = flagged
        if not flagged:
            return
        operated = sorted(agent.name for agent in self.plan.agents if agent.operator in self.plan.flagged)
        one = len(flagged) == 1
        self.say(f"setup: an earlier run on this testnet flagged the {'org' if one else 'orgs'} of "
                 f"{', '.join(flagged)} as {'an equivocator' if one else 'equivocators'}: every node counts "
                 f"{'its' if one else 'their'} vouches and digests for nothing, "
                 + (f"the operator vouches for {', '.join(operated)} too" if operated else
                    f"and {'it operates' if one else 'they operate'} no agent")
                 + " (a fresh testnet, another --dir, starts without)")

    def _trust_graph(self, records: RecordWatch) -> None:
        """Org-peer vouches as the plan says (missing ones made, others revoked; one held from before at another
        weight than the plan's, as an earlier run's `[[vouches]]` or `[[edges]]` left it, revoked and made again at
        the plan's), then each agent's operator vouches for it; waits until the nodes hold these records."""
        started = time.time()
        made, revoked, issued = 0, 0, {}  # record id -> the node that issued it
        reweighted: list[dict[str, Any]] = []  # the pairs vouched again at the plan's weight
        node_of = {key: n for n in self.cluster.names for key in self.cluster.entry(n).keys}
        for node in self.cluster.names:
            with self.cluster.client(node) as client:
                active = _active_org_peer_vouches(client, self.cluster.entry(node).keys)
                wanted = self.plan.vouches[node]
                for subject, held in active.items():
                    member = node_of.get(subject)
                    weight = wanted.get(member) if member is not None else None
                    kept = next((record_id for record_id, held_weight in held if held_weight == weight), None)
                    for record_id, held_weight in held:
                        if record_id != kept:
                            reason = ("not in this scenario's trust graph" if weight is None else
                                      f"this scenario's weight for it is {weight:g}, not {held_weight:g}")
                            issued[client.revoke(record_id, reason)["id"]] = node
                            revoked += 1
                    if kept is not None:
                        self.org_peer_vouches[(node, member)] = kept
                    elif weight is not None:
                        reweighted.append({"from": node, "to": member, "held": sorted(w for _, w in held),
                                           "weight": weight})
                for member, weight in wanted.items():
                    if (node, member) not in self.org_peer_vouches:
                        self.org_peer_vouches[(node, member)] = client.vouch(self.dids[member], weight,
                                                                              "org-peer")["id"]
                        issued[self.org_peer_vouches[(node, member)]] = node
                        made += 1
                for agent in self.agents.values():
                    if agent.plan.operator == node:
                        self.operator_vouches[agent.plan.name] = client.vouch(agent.did, OPERATOR_WEIGHT,
                                                                              "operator")["id"]
                        issued[self.operator_vouches[agent.plan.name]] = node
        missing = _wait_for(records, lambda: _expected(issued, self.plan, self._flagged(records)), SETUP_TIMEOUT)
        self.setup.update(vouches=made, revocations=revoked, reweighted=reweighted, operator_vouches=len(self.agents),
                          records=len(issued), propagation_seconds=round(time.time() - started, 2),
                          missing=missing)
        self.say(f"setup: {counted(made, 'org-peer vouch', 'org-peer vouches')}"
                 + (f" ({len(reweighted)} held from before at another weight, vouched again: "
                    + ", ".join(f"{r['from']} for {r['to']} {'/'.join(f'{w:g}' for w in r['held'])} -> "
                                f"{r['weight']:g}" for r in reweighted) + ")" if reweighted else "")
                 + f", {counted(revoked, 'revocation')}, "
                 f"{counted(len(self.agents), 'operator vouch', 'operator vouches')}; "
                 + (f"held everywhere after {time.time() - started:.1f} s" if not missing else
                    f"still missing after {time.time() - started:.1f} s: {missing}"))

    # --- the schedule -------------------------------------------------------------------------------------

    def _schedule(self, t0: float, stats: TrafficStats, records: RecordWatch) -> None:
        """The scenario's attacks, fault steps and revocations, each when due (at one time, attacks first, then fault
        steps, then revocations, each in the file's order), with the traffic running between; one due while the step
        before it still ran (a rotation stops, rotates and starts its node, or a `[[vouches]]` vouch waits for the
        nodes it makes follow an org, _await_followers) follows as soon as that ended, and is said to be late, as the
        traffic's end is where the last step ran past it."""
        actions: list[tuple[float, int, str, Callable[[], None]]] = []
        for i, attack in enumerate(self.scenario.attacks):
            if attack.type in ("equivocation", "key-theft"):
                # its org's node, as the fault steps and the summary name it, and the file's selector
                target = f"{self.plan.select(attack.orgs, f'attacks[{i}].orgs')[0]} ({attack.orgs.text})"
                what, act = ((f"equivocation by {target}", self._equivocate) if attack.type == "equivocation" else
                             (f"key theft from {target}", self._steal_key))
                actions.append((attack.at, i, what, lambda i=i, act=act: act(i)))
            elif attack.type == "whitewash":
                actions.append((attack.at, i, f"whitewash of {attack.agents}", lambda i=i: self._whitewash(i)))
        for i, revocation in enumerate(self.scenario.revocations):
            actions.append((revocation.at, REVOCATION_ORDER + i, f"revoke the operator vouches of {revocation.agents}",
                            lambda i=i: self._revoke_operator_vouches(i)))
        for i, change in enumerate(self.scenario.vouch_changes):
            done = "made" if change.action == "vouch" else "revoked"
            said = f"org-peer vouches {done}: {_pairs_said(self.plan.vouch_pairs(i))}"
            actions.append((*self.plan.change_due(i), f"{said} (from {change.source.text} to {change.target.text})",
                            lambda i=i: self._change_vouches(i, records)))
        said = {"kill": "SIGKILL {}", "restart": "restart {}", "rotate": "rotate the key of {}",
                "cut": "partition {} | rest", "heal": "heal the partition"}
        acts = {"kill": self._kill, "restart": self._restart, "cut": self._cut, "heal": lambda nodes: self._heal()}
        for step in self.plan.fault_steps():
            act = partial(self._rotate, due=(step.at, step.order)) if step.action == "rotate" else acts[step.action]
            actions.append((step.at, step.order, said[step.action].format(", ".join(step.nodes)),
                            lambda act=act, n=list(step.nodes): act(n)))
        for at, _, what, act in sorted(actions, key=lambda a: (a[0], a[1])):
            self._traffic_until(t0, at, stats)
            now = time.time() - t0
            late = (f" (due at {at:g} s, {now - at:.1f} s late: the steps before it took that long)"
                    if now - at >= LATE_SECONDS else "")
            self.say(f"t={now:5.1f} s  {what}{late}")
            act()
        self._traffic_until(t0, self.scenario.duration, stats)
        if (now := time.time() - t0) - self.scenario.duration >= LATE_SECONDS:
            self.say(f"t={now:5.1f} s  traffic stops, {now - self.scenario.duration:.1f} s past its "
                     f"{self.scenario.duration:g} s: the steps before it took that long")

    def _traffic_until(self, t0: float, until: float, stats: TrafficStats) -> None:
        """Wait until `until` seconds into the traffic, saying every PROGRESS_SECONDS how far it got."""
        while (now := time.time() - t0) < until:
            step = PROGRESS_SECONDS * (now // PROGRESS_SECONDS + 1)  # the next multiple
            time.sleep(min(until, step) - now)
            if step <= until:
                skipped = (f", {stats.batches_skipped} not sent, their node still answering the one before"
                           f"{_by_node(stats.skipped_at)}" if stats.batches_skipped else "")
                self.say(f"t={time.time() - t0:5.1f} s  traffic (of {self.scenario.duration:g} s): "
                         f"{counted(stats.events_accepted, 'event')} reported, {stats.events_rejected} refused, "
                         f"{counted(stats.batches_failed, 'batch', 'batches')} unanswered"
                         f"{_by_node(stats.failed_at)}{skipped}")

    def _equivocate(self, index: int) -> None:
        attack = self.scenario.attacks[index]
        offender = self.plan.select(attack.orgs, f"attacks[{index}].orgs")[0]
        peers = self.plan.attack_peers(index, self.up, self.partition)
        if not self.is_up(offender) or not peers:
            raise ClusterError(f"attacks[{index}]: the equivocation needs {offender} running (it is offered one of "
                               "the two records) and a running node outside its group whose horizon holds its org "
                               f"(offered the other), and {'it is down' if peers else 'none is running'} then")
        self._say_if_across(attack.type, offender, peers[0])
        done: Equivocation = equivocate(self.cluster, offender, peers[0], self.scenario.settings.epoch_seconds)
        self.timeline.add("equivocation", attack=index, node=offender, offender=done.offender, seq=done.seq,
                          records=list(done.records), offered_to=list(done.offered_to), answers=list(done.answers))

    def _whitewash(self, index: int) -> None:
        attack = self.scenario.attacks[index]
        switched = {}
        for agent in self.agents.values():
            if agent.plan.group.name == attack.agents:
                old = agent.did
                fresh = agent.whitewash()
                with self.cluster.client(agent.plan.operator) as client:
                    self.operator_vouches[agent.plan.name] = client.vouch(fresh, OPERATOR_WEIGHT, "operator")["id"]
                switched[agent.plan.name] = {"old": old, "new": fresh}
        self.timeline.add("whitewash", attack=index, agents=switched)

    def _revoke_operator_vouches(self, index: int) -> None:
        """revocations[index]: each agent's operator revokes its vouch for the agent's current did through its node
        (POST /v1/revocations); the timeline's entry names, per agent, its did, the vouch and the revoke record."""
        revocation = self.scenario.revocations[index]
        revoked = {}
        for agent in self.agents.values():
            if agent.plan.group.name == revocation.agents:
                vouch = self.operator_vouches[agent.plan.name]
                with self.cluster.client(agent.plan.operator) as client:
                    revoke = client.revoke(vouch, f"the scenario's revocations[{index}]")["id"]
                revoked[agent.plan.name] = {"did": agent.did, "operator": agent.plan.operator, "vouch": vouch,
                                            "revoke": revoke}
        self.timeline.add("revocation", revocation=index, agents=revoked)

    def _change_vouches(self, index: int, records: RecordWatch) -> None:
        """vouches[index]: each org of its `from` vouches for (POST /v1/vouches, org-peer) or revokes its vouch for
        (POST /v1/revocations) each org of its `to` through its node; the timeline's entry names each pair with the
        vouch and, for a revoke, the revoke record. A vouch then waits for the nodes it makes follow an org
        (_await_followers)."""
        change = self.scenario.vouch_changes[index]
        pairs = []
        for voucher, vouchee in self.plan.vouch_pairs(index):
            with self.cluster.client(voucher) as client:
                if change.action == "vouch":
                    vouch = client.vouch(self.dids[vouchee], change.weight, "org-peer")["id"]
                    self.org_peer_vouches[(voucher, vouchee)] = vouch
                    pairs.append({"from": voucher, "to": vouchee, "vouch": vouch})
                else:
                    vouch = self.org_peer_vouches.pop((voucher, vouchee))
                    revoke = client.revoke(vouch, f"the scenario's vouches[{index}]")["id"]
                    pairs.append({"from": voucher, "to": vouchee, "vouch": vouch, "revoke": revoke})
        entry = self.timeline.add("vouches", change=index, action=change.action, pairs=pairs)
        if change.action == "vouch":
            self._await_followers(index, {pair["vouch"]: pair["from"] for pair in pairs}, records, entry)

    def _await_followers(self, index: int, vouches: dict[str, str], records: RecordWatch,
                         entry: dict[str, Any]) -> None:
        """Wait (at most FOLLOW_TIMEOUT s) until each running node whose horizon `[[vouches]]` vouch `index` extends
        holds its `vouches` (id -> the node that signed it) and every record seen so far of the orgs it brings in (of
        those on the node's side of a partition in force, by the vouches of those there: the others' vouches and
        records come after the heal). The steps after it are planned on the trust graph with it made (Plan.at): a
        node lacking them refuses an attack's records of such an org (outside_horizon), or has none of its records to
        give a rotation's catch-up. The change's timeline `entry` keeps those nodes, how long they took and what they
        still lacked."""
        started = time.monotonic()
        flagged = self._flagged(records)
        before = self.plan.at(self.plan.change_due(index))
        node_of = {key: n for n in self.cluster.names for key in self.cluster.entry(n).keys}
        seen = [(info.id, node_of.get(info.iss)) for info in records.snapshot()]
        expected = {}
        for node in sorted(self.up):
            reachable = set(faults.peers_on_its_side(node, self.partition, sorted(self.up)))
            now_inside = before.with_changes([index], by=reachable | {node}).horizon(node, flagged)
            brought = (now_inside - before.horizon(node, flagged) - flagged) & reachable
            if brought:
                expected[node] = ({rid for rid, issuer in seen if issuer in brought}
                                  | {rid for rid, voucher in vouches.items() if voucher in now_inside & reachable})
        missing = _wait_for(records, lambda: expected, FOLLOW_TIMEOUT)
        waited = round(time.monotonic() - started, 2)
        entry.update(followers=sorted(expected), followed_after=waited, missing=missing)
        if expected:
            self.say(f"  {', '.join(sorted(expected))} "
                     + (f"held what it brings into their horizons after {waited:.1f} s" if not missing else
                        f"still lacked what it brings into their horizons after {waited:.1f} s: {missing} (a step "
                        "planned on it may fail)"))

    def _steal_key(self, index: int) -> None:
        attack = self.scenario.attacks[index]
        victim = self.plan.select(attack.orgs, f"attacks[{index}].orgs")[0]
        if not self.is_up(victim):
            raise ClusterError(f"attacks[{index}]: the key theft needs {victim} running (its node contests the "
                               "stolen key's rotation), and it is down then")
        peers = self.plan.attack_peers(index, self.up, self.partition)
        if not peers:
            raise ClusterError(f"attacks[{index}]: the key theft needs a running node besides {victim} whose horizon "
                               "holds its org (offered the thief's records), and none is running then")
        self._say_if_across(attack.type, victim, peers[0])
        done: KeyTheft = steal_key(self.cluster, victim, peers[0])
        self.timeline.add("key-theft", attack=index, node=victim, key=done.key, thief=done.thief, seq=done.seq,
                          records=list(done.records), offered_to=done.offered_to,
                          answers=list(done.answers))

    def _say_if_across(self, kind: str, target: str, other: str) -> None:
        """Say that an equivocation's or key theft's records go to `other`, across the partition in force from its
        `target` (Plan.attack_peers found none on its side): the attack meets its target's node only after the heal."""
        if self.partition is not None and other not in faults.peers_on_its_side(target, self.partition, [other]):
            after = ("no node holds both records until the heal" if kind == "equivocation" else
                     f"{target}'s node gets the thief's rotation, and contests it, only after the heal")
            self.say(f"  {other}, offered the {kind.replace('-', ' ')}'s records, is across the partition "
                     f"({', '.join(self.partition.side)} | rest) from {target}, as every running node whose horizon "
                     f"holds {target}'s org is: {after}")

    def _rotate(self, nodes: list[str], due: tuple[float, int]) -> None:
        """Rotate each node's key in turn (testnet.faults.rotate), a fault step `due` then (catching up with the
        nodes it dials then, Plan.catch_up_peers), saying when it runs again: its stop, `vouchnet key rotate` and its
        start take seconds (18 in a run here), in which the schedule, its progress lines too, waits."""
        for node in nodes:
            began = time.monotonic()
            self.up = self.up - {node}
            self.timeline.add("rotate", node=node)
            reached = self.plan.catch_up_peers(node, self.up, self.partition, due)
            done = faults.rotate(self.cluster, node, self.partition, sorted(self.up), self.say, catch_up=bool(reached))
            self.up = self.up | {node}
            self.timeline.add("rotated", node=node, old=done.old, new=done.new, rotation=done.rotation,
                              first=done.first, started=done.started, answered=done.answered)
            self.say(f"  {node} runs again with its new key, {time.monotonic() - began:.1f} s after it was stopped "
                     "(its stop, `vouchnet key rotate`, its start)")

    def _kill(self, nodes: list[str]) -> None:
        for node in nodes:
            self.up = self.up - {node}
            faults.kill(self.cluster, node)
            self.timeline.add("kill", node=node)

    def _restart(self, nodes: list[str]) -> None:
        for node in nodes:
            self.timeline.add("restart", node=node)
            faults.restart(self.cluster, node, self.partition, self.say)
            self.up = self.up | {node}
            self.timeline.add("restarted", node=node)

    def _cut(self, nodes: list[str]) -> None:
        """Partition the network; the timeline's entry, dated when the cut was made, lists the connections that
        still cross it CUT_SETTLE seconds later (a node drops a blocked peer's connection within its close
        timeout, and py-libp2p may list a closing connection for a moment after)."""
        self.partition = faults.Partition(tuple(nodes), tuple(n for n in self.cluster.names if n not in nodes))
        faults.cut(self.cluster, self.partition, sorted(self.up))
        entry = self.timeline.add("partition", side=list(self.partition.side), rest=list(self.partition.rest))
        settled = time.time() + CUT_SETTLE
        while (crossing := faults.crossing(self.cluster, self.partition, sorted(self.up))) and time.time() < settled:
            time.sleep(0.2)
        entry["crossing"] = crossing

    def _heal(self) -> None:
        """Lift the partition at every running node, those not counted up yet too (a node restarted or rotated inside
        the partition is cut off as soon as its API answers), with Ctrl-C held off meanwhile (faults.heal is bounded
        by HEAL_TIMEOUT); raises ClusterError naming the nodes whose block lists may still be in force and what to
        run. The timeline's entry is dated when the heal began: two nodes across the cut connect and sync as soon as
        both have emptied their lists, while a third may still be answering."""
        began = time.time()
        with interrupts_held():
            failed = faults.heal(self.cluster, [n for n in self.cluster.names if self.cluster.running(n)])
        if failed:
            raise ClusterError(faults.unhealed(failed, self.cluster.directory))
        self.timeline.add("heal", at=began, side=list(self.partition.side) if self.partition else [])
        self.partition = None

    # --- the end ------------------------------------------------------------------------------------------

    def _await_checkpoints(self, records: RecordWatch) -> dict[str, NodeStatus]:
        """Wait (boundedly) until every node's latest checkpoint covers its whole ledger and carries the
        cosignatures of its witnesses (status.witnessed), equivocators aside; the timeline says how long that took
        after traffic stopped."""
        orgs = {n: self.cluster.entry(n).keys for n in self.cluster.names}
        flagged = flagged_keys(records.snapshot(), orgs.values())
        followers = followers_by_node(self.plan.final, orgs, self.dids, flagged)
        witnesses = self.scenario.settings.witnesses
        self.say("waiting for every checkpoint to cover its ledger and be witnessed "
                 f"(at most {CHECKPOINT_TIMEOUT:g} s)")
        started = time.time()
        while True:
            status = {node: node_status(self.cluster, node) for node in self.cluster.names}
            lagging = [n for n, row in status.items() if row.did not in flagged
                       and not witnessed(row, followers[n], flagged, witnesses)]
            if not lagging or time.time() - started > CHECKPOINT_TIMEOUT:
                self.timeline.add("checkpoints agree" if not lagging else "checkpoints still disagree",
                                  waited=round(time.time() - started, 2), lagging=lagging)
                return status
            time.sleep(0.5)

    def _flagged(self, records: RecordWatch) -> set[str]:
        """The nodes whose orgs the records seen so far show to be equivocators."""
        keys = flagged_keys(records.snapshot(), [self.cluster.entry(n).keys for n in self.cluster.names])
        return {n for n in self.cluster.names if keys.intersection(self.cluster.entry(n).keys)}

    def _org_views(self) -> dict[str, list[dict[str, Any]]]:
        """Each running node's view of the orgs (GET /v1/orgs); one that does not answer (stopped, overloaded, gone)
        is left out and named in `unanswered`, so that the run's report is written all the same, without its view."""
        orgs = {}
        for node in sorted(self.up):
            try:
                with self.cluster.client(node) as client:
                    orgs[node] = list(client.iter_orgs())
            except ClientError as e:
                self.unanswered[node] = str(e)
        return orgs

    def _key_views(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Each running node's answer to GET /v1/orgs/{did} for every key a rotation made, every key a theft touched
        and every equivocator's: which org it counts the key as (its first key), whether that org is flagged, what
        its word weighs. A node that does not answer is left out, as in _org_views (one that did not answer there is
        not asked again)."""
        dids = [event[k] for event in self.timeline.events for k in _KEYS_VIEWED.get(event["kind"], ())]
        views: dict[str, dict[str, dict[str, Any]]] = {did: {} for did in dids}
        for node in sorted(self.up - self.unanswered.keys()):
            try:
                with self.cluster.client(node) as client:
                    answers = {did: client.org(did) for did in dids}
            except ClientError as e:
                self.unanswered[node] = str(e)
                continue
            for did, org in answers.items():
                views[did][node] = {k: org[k] for k in ("org", "equivocator", "weight", "voucher_weight")}
        return views

    def _latency_histograms(self) -> dict[str, list[tuple[float, float]]]:
        found = {}
        for node in sorted(self.up):
            try:
                with self.cluster.client(node) as client:
                    found[node] = prometheus.histogram(prometheus.parse(client.metrics()), LATENCY_METRIC)
            except ClientError:
                continue
        return found

    def _leave_whole(self, watchers: tuple[Worker, ...], *, failing: bool) -> None:
        """Heal a partition in force, first (the watchers may take seconds to stop), stop the `watchers`, and start
        the nodes that are down. A partition left in force is said when the run is `failing` already (interrupted,
        say), and fails the run otherwise."""
        unhealed = None
        if self.partition is not None:
            self.say(f"healing the partition {', '.join(self.partition.side)} | rest "
                     f"(Ctrl-C waits for it, at most {faults.HEAL_TIMEOUT:g} s)")
            try:
                self._heal()
            except ClusterError as e:
                unhealed = e
        if unhealed is not None and failing:
            self.say(f"error: {unhealed}")
        for watcher in watchers:  # all at once: each waits for its asks in hand (a node not answering: its timeout)
            watcher.ask_to_stop()
        for watcher in watchers:
            watcher.stop()
        down = [n for n in self.cluster.names if not self.cluster.running(n)]
        if down:
            self.say(f"starting {', '.join(down)}, down, so that the testnet is left whole (a node starts in seconds)")
            self.cluster.start(down, say=self.say)
            self.up = self.up | set(down)
        if unhealed is not None and not failing:
            raise unhealed


def machine_load() -> float | None:
    """The machine's load average over the last minute (processes running or waiting for a CPU), None where the
    system does not tell it: a run's timings grow with it, whatever the network does."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _by_node(counts: Counter[str]) -> str:
    """` (n01 3, n03 1)`: how many of a count each node had, after the count; nothing when none had any."""
    return f" ({', '.join(f'{node} {n}' for node, n in sorted(counts.items()))})" if counts else ""


def _pairs_said(pairs: list[tuple[str, str]]) -> str:
    """`n00 for n03, n01 for n03`: the (voucher, vouchee) pairs of a `[[vouches]]` change, as its line says them."""
    return ", ".join(f"{a} for {b}" for a, b in pairs)


def _active_org_peer_vouches(client: Any, keys: tuple[str, ...]) -> dict[str, list[tuple[str, float]]]:
    """Subject did -> (record id, weight) of each org-peer vouch one of the org's `keys` made and none revoked, as its
    own node holds them (more than one for a subject where an earlier run vouched for it again)."""
    revoked = {r["body"]["record"] for key in keys for r in client.iter_records(issuer=key, kind="revoke")}
    active: dict[str, list[tuple[str, float]]] = {}
    for key in keys:
        for r in client.iter_records(issuer=key, kind="vouch"):
            if r["body"]["basis"] == "org-peer" and r["id"] not in revoked:
                active.setdefault(r["body"]["subject"], []).append((r["id"], r["body"]["weight"]))
    return active


def _expected(issued: dict[str, str], plan: Plan, flagged: set[str]) -> dict[str, set[str]]:
    """Node -> the records among `issued` (id -> the node that issued it) it is to hold: those of the orgs in its
    horizon, and none of a `flagged` equivocator's (a node holding the other side of its fork takes none of its later
    records; on a testnet where an earlier run's equivocation flagged one, the setup waited for them in vain)."""
    return {n: {rid for rid, issuer in issued.items() if issuer not in flagged and issuer in plan.horizon(n, flagged)}
            for n in plan.nodes}


def _wait_for(records: RecordWatch, expected: Callable[[], dict[str, set[str]]], timeout: float) -> dict[str, int]:
    """Wait until each node holds the records `expected()` says it is to, or `timeout`; returns node -> how many
    it lacks."""
    deadline = time.monotonic() + timeout
    while True:
        missing = {n: len(ids) - records.holding(ids)[n] for n, ids in expected().items()}
        missing = {n: k for n, k in missing.items() if k}
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


def _difference(after: list[tuple[float, float]], before: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A cumulative histogram's counts gained between two scrapes (a restarted node's counters start again)."""
    earlier = dict(before)
    gained = [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]
    return after if any(count < 0 for _, count in gained) else gained
