"""A scenario laid onto a testnet: which nodes form each org group, whom each roots and vouches for, where each
agent works and who operates it, and which nodes each attack and fault touches. Seeded, so a run repeats."""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal

from node.config import NodeConfig
from vouching.counts import counted

from .faults import Partition, peers_on_its_side
from .scenario import EDGE_WEIGHT, AgentGroup, Edge, Scenario, ScenarioError, Selector
from .state import MAX_NODES, node_name
from .topology import bootstrap_indexes

OPERATOR_WEIGHT = 0.8
REVOCATION_ORDER = 200  # a revocation's order at its time, + its index: after the attacks' and the faults' (FaultStep)
VOUCH_CHANGE_ORDER = 300  # a `[[vouches]]` change's order at its time, + its index: after the revocations
MAX_HOPS = NodeConfig.max_hops  # a testnet leaves [trust] max_hops at its default
# The attacks that are one org's, and why
_ONE_ORG = {"key-theft": "a key theft steals one org's key",
            "equivocation": "an equivocation is one org's (its key signs two records at one seq)"}


@dataclass(frozen=True)
class AgentPlan:
    """One simulated agent (its identity, a did, is made when the run starts and may change: whitewashing)."""

    name: str  # e.g. "bad-2"
    group: AgentGroup
    operator: str  # the node whose org operates it and vouches for it
    orgs: tuple[str, ...]  # the nodes whose orgs it works for, the operator first


@dataclass(frozen=True)
class FaultStep:
    """One step of the scenario's faults as a run takes them (testnet.runner): `action` on `nodes`, `at` seconds into
    the traffic; steps at one time in `order` (100 + the fault's index: after the attacks at that time)."""

    at: float
    order: int
    action: Literal["kill", "restart", "rotate", "cut", "heal"]
    nodes: tuple[str, ...]
    fault: int  # its index in the scenario's faults


@dataclass(frozen=True)
class Plan:
    scenario: Scenario
    nodes: tuple[str, ...]
    groups: dict[str, list[str]]  # org group -> its nodes, in testnet order
    roots: dict[str, list[str]]  # node -> the nodes whose orgs it roots
    vouches: dict[str, dict[str, float]]  # node -> {node: weight} of its org-peer vouches
    agents: tuple[AgentPlan, ...]
    # node -> the other nodes it dials as the run begins: its bootstrap peers and the orgs whose `org` records it
    # holds (those of the nodes it rotates at least); None until known: on a testnet reused, till its nodes are asked
    dials: Mapping[str, frozenset[str]] | None = None
    # the nodes whose orgs an earlier run on this testnet flagged as equivocators (its nodes hold the evidence, and
    # keep it): none on a testnet the run made; on one reused, known with `dials` (as_reused)
    flagged: frozenset[str] = frozenset()

    def group_of(self, node: str) -> str:
        return next(group for group, members in self.groups.items() if node in members)

    def select(self, selector: Selector, where: str) -> list[str]:
        """The nodes a selector names; ScenarioError if it names none on this testnet."""
        members = self.groups[selector.group]
        chosen = selector.pick(members)
        if not chosen:
            raise ScenarioError(f"{where}: {selector.text} selects no org: group {selector.group} has "
                                f"{len(members)} on this {len(self.nodes)}-node testnet")
        return chosen

    def agents_of(self, group: str) -> list[AgentPlan]:
        return [agent for agent in self.agents if agent.group.name == group]

    def vouch_pairs(self, index: int) -> list[tuple[str, str]]:
        """The (voucher, vouchee) nodes whose org-peer vouch `[[vouches]]` change `index` makes or revokes: each org
        of its `from` for each org of its `to`, itself aside."""
        change, where = self.scenario.vouch_changes[index], f"vouches[{index}]"
        return [(a, b) for a in self.select(change.source, f"{where}.from")
                for b in self.select(change.target, f"{where}.to") if a != b]

    def change_due(self, index: int) -> tuple[float, int]:
        """When `[[vouches]]` change `index` is taken: its time, and its order then (VOUCH_CHANGE_ORDER + index)."""
        return self.scenario.vouch_changes[index].at, VOUCH_CHANGE_ORDER + index

    def with_changes(self, indexes: Collection[int], by: Collection[str] | None = None) -> Plan:
        """The plan with the `[[vouches]]` changes `indexes` made to its org-peer vouches, in the order a run takes
        them (a revoke of a vouch not in force is refused by make_plan, _check_vouch_changes); with `by`, only the
        vouches and revokes of those orgs (the ones a node across a partition from the others can have)."""
        vouches = {node: dict(theirs) for node, theirs in self.vouches.items()}
        for index in sorted(indexes, key=self.change_due):
            change = self.scenario.vouch_changes[index]
            for a, b in self.vouch_pairs(index):
                if by is not None and a not in by:
                    continue
                if change.action == "vouch":
                    vouches[a][b] = change.weight
                else:
                    vouches[a].pop(b, None)
        return replace(self, vouches=vouches)

    def at(self, due: tuple[float, int]) -> Plan:
        """The plan as its org-peer vouches stand when a step is `due` (its time, and its order then: an attack's
        index, a fault's 100 + its index, as FaultStep.order): with the `[[vouches]]` changes before it made."""
        return self.with_changes([i for i in range(len(self.scenario.vouch_changes)) if self.change_due(i) < due])

    @property
    def final(self) -> Plan:
        """The plan as its org-peer vouches stand at the end of the run, every `[[vouches]]` change made."""
        return self.at((math.inf, 0))

    def horizon(self, node: str, flagged: Collection[str] = (), max_hops: int = MAX_HOPS) -> set[str]:
        """The nodes whose records `node` holds once the plan's trust graph is in place: within `max_hops` org-peer
        vouches of its roots and itself (vouching.horizon's rule; a flagged org's vouches do not extend it)."""
        hops = dict.fromkeys((node, *self.roots[node]), 0)
        frontier = list(hops)
        for depth in range(1, max_hops + 1):
            reached = list(dict.fromkeys(m for n in frontier if n not in flagged for m in self.vouches[n]
                                         if m not in hops))
            hops.update(dict.fromkeys(reached, depth))
            frontier = reached
        return set(hops)

    def followers(self, node: str, flagged: Collection[str] = ()) -> list[str]:
        """The other nodes whose horizon holds `node`'s org: the only ones that cosign its checkpoints (a witness
        follows the logs of the orgs inside its horizon and refuses the others, gossip.witnessing)."""
        return [n for n in self.nodes if n != node and node in self.horizon(n, flagged)]

    def holders(self, node: str, due: tuple[float, int], flagged: Collection[str] = ()) -> set[str]:
        """The other nodes that hold `node`'s org's records when a step is `due`: those that followed it (`followers`)
        as the run set the trust graph up, or after any `[[vouches]]` change before it. A node keeps what it stored
        of an org a revoke takes out of its horizon, and serves it to a catch-up."""
        return {n for stage in self._stages(due) for n in stage.followers(node, flagged)}

    def dialled(self, node: str, due: tuple[float, int]) -> set[str]:
        """The other nodes `node` dials when a step is `due` (gossip.peers.PeerManager: its bootstrap peers, and the
        orgs whose `org` records it holds): those it dialled as the run began (`dials`) and the orgs of its horizon
        as the run set the trust graph up, or after any `[[vouches]]` change before it (the run's setup, or the
        change's wait, _await_followers, brings it their records, which it keeps once a revoke takes them out)."""
        if self.dials is None:
            raise ValueError("what the nodes dial is not known yet: as_reused gives it")
        return (self.dials[node] | {n for stage in self._stages(due) for n in stage.horizon(node)}) - {node}

    def _stages(self, due: tuple[float, int]) -> list[Plan]:
        """The plan as its org-peer vouches stood as the run set them up, and after each `[[vouches]]` change before
        `due` in turn."""
        made = sorted((i for i in range(len(self.scenario.vouch_changes)) if self.change_due(i) < due),
                      key=self.change_due)
        return [self.with_changes(made[:k]) for k in range(len(made) + 1)]

    def catch_up_peers(self, node: str, up: Collection[str], partition: Partition | None,
                       due: tuple[float, int]) -> list[str]:
        """The running nodes `up` that `vouchnet key rotate` of `node`'s key, `due` then, takes the org's records
        back from: those it dials then on its side of a partition in force (none: it rotates without a catch-up,
        testnet.faults.rotate)."""
        dialled = self.dialled(node, due)
        return peers_on_its_side(node, partition, [n for n in up if n in dialled])

    def attack_peers(self, index: int, up: Collection[str], partition: Partition | None) -> list[str]:
        """The running nodes `up` that attack `index`, an equivocation or a key theft, may offer its records to (the
        second record; the thief's two), best first: other orgs' nodes whose horizon holds its target's org (any other
        refuses them, outside_horizon, and the attack would not happen), outside its group for an equivocation; those
        on its side of a partition in force first (across it, no node holds both sides' records, nor the robbed org's
        node the thief's rotation, until the heal); the testnet's later nodes first. Horizons shrink by the orgs the
        equivocations and key thefts due before it flag, and by those an earlier run flagged (flagged_before); they
        are those of the org-peer vouches in force then (at: the `[[vouches]]` changes before it made)."""
        attack = self.scenario.attacks[index]
        target = self.select(attack.orgs, f"attacks[{index}].orgs")[0]
        flagged, then = self.flagged_before((attack.at, index)), self.at((attack.at, index))
        peers = [n for n in reversed(self.nodes) if n in up and n != target and target in then.horizon(n, flagged)
                 and (attack.type != "equivocation" or self.group_of(n) != self.group_of(target))]
        near = set(peers_on_its_side(target, partition, peers))
        return sorted(peers, key=lambda n: n not in near)

    def flagged_before(self, due: tuple[float, int]) -> set[str]:
        """The orgs flagged as equivocators when an attack or fault step is `due` (its time, and its order at that
        time: an attack's index, a fault's 100 + its index, as FaultStep.order): those an earlier run on the testnet
        flagged (`flagged`), and those the run's attacks flag before it (flagging_attacks)."""
        return set(self.flagged) | set(self.flagging_attacks(due))

    def flagging_attacks(self, due: tuple[float, int]) -> dict[str, int]:
        """Org node -> the index of the first equivocation or key theft the run takes before `due` (in time order,
        attacks first at one time and then the file's order, as the runner takes them) that flags its org: the
        equivocation's offender, the key theft's victim."""
        found: dict[str, int] = {}
        for i, attack in sorted(enumerate(self.scenario.attacks), key=lambda pair: (pair[1].at, pair[0])):
            if attack.type in ("equivocation", "key-theft") and (attack.at, i) < due:
                found.setdefault(self.select(attack.orgs, f"attacks[{i}].orgs")[0], i)
        return found

    def fault_steps(self) -> list[FaultStep]:
        """The scenario's faults as steps, in the order a run takes them: a kill's restart and a partition's heal
        `duration` after it, steps at one time in the scenario's order."""
        steps = []
        for i, fault in enumerate(self.scenario.faults):
            nodes = tuple(self.select(fault.nodes, f"faults[{i}].nodes"))
            if fault.type == "kill":
                steps += [FaultStep(fault.at, 100 + i, "kill", nodes, i),
                          FaultStep(fault.at + fault.duration, 100 + i, "restart", nodes, i)]
            elif fault.type == "rotate":
                steps.append(FaultStep(fault.at, 100 + i, "rotate", nodes, i))
            else:
                steps += [FaultStep(fault.at, 100 + i, "cut", nodes, i),
                          FaultStep(fault.at + fault.duration, 100 + i, "heal", nodes, i)]
        return sorted(steps, key=lambda step: (step.at, step.order))


def make_plan(scenario: Scenario, nodes: list[str], seed: int, *, fresh: bool = False) -> Plan:
    """Lay `scenario` onto the testnet's `nodes` (in order), one `testnet run` makes for it if `fresh` (its nodes then
    dial their bootstrap peers alone as the run begins: `vouchnet init` gave each its own records only); raises
    ScenarioError if it does not fit, naming the scenario's file and the line of the key that does not
    (Source.locate_misfit, which says to copy a library scenario before changing it):
    an agent group's orgs_per_agent or an edge's count is refused, not cut down, past the orgs the testnet holds. On a
    testnet reused, what its nodes dial and which orgs an earlier run flagged are not known: its rotations and
    attacks are checked again by as_reused once they are asked."""
    if len(nodes) < scenario.min_nodes:  # (the testnet's size, not a line of the file)
        raise ScenarioError(f"nodes: scenario {scenario.name} needs at least {counted(scenario.min_nodes, 'node')} "
                            f"({', '.join(f'{g.name} {g.nodes or 1}' for g in scenario.orgs)}); the testnet has "
                            f"{len(nodes)}")
    dials = ({n: frozenset(nodes[i] for i in bootstrap_indexes(k, len(nodes))) for k, n in enumerate(nodes)}
             if fresh else None)
    try:
        return _laid_out(scenario, nodes, seed, dials)
    except ScenarioError as e:
        raise scenario.source.locate_misfit(e) from None


def as_reused(plan: Plan, dials: Mapping[str, frozenset[str]], flagged: Collection[str]) -> Plan:
    """`plan`, on a testnet reused, once its nodes said whom they dial (`dials`, of the nodes it rotates at least) and
    which nodes' orgs they hold equivocation evidence against (`flagged`, by earlier runs); raises ScenarioError,
    located as make_plan's, for a rotation or attack that would fail mid-run (_check_rotation, _check_attack) or
    target an org flagged already (_check_attack)."""
    known = replace(plan, dials=dials, flagged=frozenset(flagged))
    try:
        _check_faults(known)
    except ScenarioError as e:
        raise plan.scenario.source.locate_misfit(e) from None
    return known


def _laid_out(scenario: Scenario, nodes: list[str], seed: int, dials: Mapping[str, frozenset[str]] | None) -> Plan:
    """make_plan's plan, its errors not yet located."""
    rng = random.Random(seed)
    rest = len(nodes) - sum(g.nodes or 0 for g in scenario.orgs)
    groups: dict[str, list[str]] = {}
    taken = 0
    for group in scenario.orgs:
        size = rest if group.nodes is None else group.nodes
        groups[group.name] = nodes[taken:taken + size]
        taken += size
    if taken < len(nodes):  # no "rest" group: the remaining nodes sit the scenario out
        groups["(idle)"] = nodes[taken:]
    roots = {n: [] for n in nodes}
    vouches: dict[str, dict[str, float]] = {n: {} for n in nodes}
    for group in scenario.orgs:
        for node in groups[group.name]:
            roots[node] = [m for ref in group.roots for m in groups[ref] if m != node]
            for ref in group.vouch:
                vouches[node].update({m: EDGE_WEIGHT for m in groups[ref] if m != node})
    for i, edge in enumerate(scenario.edges):
        for a, b in _edge_pairs(edge, f"edges[{i}]", groups, len(nodes), rng,
                                _larger(scenario, (edge.source, edge.target), reused=dials is None)):
            vouches[a][b] = edge.weight
    agents = []
    for group in scenario.agents:
        operators = groups[group.operator]
        pool = [m for ref in group.works_at for m in groups[ref]]
        for k in range(group.count):
            operator = operators[k % len(operators)]
            others = [m for m in dict.fromkeys(pool) if m != operator]
            if len(others) < group.orgs_per_agent - 1:
                raise ScenarioError(
                    f"agents.{group.name}.orgs_per_agent: {group.orgs_per_agent} orgs per agent, but on this "
                    f"{len(nodes)}-node testnet an agent can work at {len(others) + 1}: its operator "
                    f"and {counted(len(others), 'other org')} of works_at ({', '.join(group.works_at)}); lower it, or "
                    f"{_larger(scenario, group.works_at, reused=dials is None)}")
            extra = rng.sample(others, group.orgs_per_agent - 1)
            agents.append(AgentPlan(f"{group.name}-{k}", group, operator, (operator, *extra)))
    plan = Plan(scenario, tuple(nodes), groups, roots, vouches, tuple(agents), dials)
    for i, attack in enumerate(scenario.attacks):
        if attack.orgs is not None:
            chosen = plan.select(attack.orgs, f"attacks[{i}].orgs")
            if attack.type in _ONE_ORG and len(chosen) != 1:
                raise ScenarioError(f"attacks[{i}].orgs: {_ONE_ORG[attack.type]}, but {attack.orgs.text} selects "
                                    f"{len(chosen)} (write GROUP[i])")
            if attack.type == "key-theft":
                if len(nodes) < 2:
                    raise ScenarioError(f"attacks[{i}]: a key theft offers the thief's records to another org's "
                                        "node, and this testnet has one node")
    for i, fault in enumerate(scenario.faults):
        chosen = plan.select(fault.nodes, f"faults[{i}].nodes")
        if fault.type == "partition" and len(chosen) == len(nodes):
            raise ScenarioError(f"faults[{i}].nodes: {fault.nodes.text} is every node; a partition needs two sides")
    _check_vouch_changes(plan)
    _check_faults(plan)
    return plan


def _check_vouch_changes(plan: Plan) -> None:
    """ScenarioError for a `[[vouches]]` change a run would not make as written, each judged by the org-peer vouches
    in force when it is due (Plan.at): one that selects no pair of orgs (one org to itself), a vouch by an org that
    vouches for the other already then (by the scenario's trust graph, or a change before it: a node keeps an org's
    second org-peer vouch for an org beside its first, vouching.vouches.VouchBook.org_edges counting the stronger, so
    it would not replace it; revoke it first), a revoke of a vouch not in force then."""
    for index, change in enumerate(plan.scenario.vouch_changes):
        where, pairs, vouches = f"vouches[{index}]", plan.vouch_pairs(index), plan.at(plan.change_due(index)).vouches
        if not pairs:
            raise ScenarioError(f"{where}: from {change.source.text} to {change.target.text} makes no vouch: an org "
                                "does not vouch for itself")
        held = [f"{a} for {b} ({vouches[a][b]:g})" for a, b in pairs if b in vouches[a]]
        lacking = [f"{a} for {b}" for a, b in pairs if b not in vouches[a]]
        if change.action == "vouch" and held:
            raise ScenarioError(f"{where}.to: at {change.at:g} s the vouch of {', '.join(held)} is in force already "
                                "(by the scenario's trust graph, or a [[vouches]] change before it), and a second "
                                "would not replace it: a node keeps both, the stronger counting, and a later revoke "
                                "would leave the other in force; to vouch at another weight, revoke it first (a "
                                "[[vouches]] revoke due before this vouch, or at its time and listed before it)")
        if change.action == "revoke" and lacking:
            raise ScenarioError(f"{where}.to: at {change.at:g} s no org-peer vouch of {', '.join(lacking)} is in "
                                "force to revoke (the scenario's trust graph and the [[vouches]] changes before it "
                                "make none)")


def _larger(scenario: Scenario, groups: Collection[str], *, reused: bool) -> str:
    """How to give the org `groups` more orgs, in a refusal of agents or edges that need more: make them larger (a
    group's `nodes`, or --nodes for the group that takes the rest); on a testnet reused, whose size stays as it is,
    where one of them takes the rest, run the scenario on a larger testnet."""
    if reused and any(g.nodes is None for g in scenario.orgs if g.name in groups):
        return "run it on a larger testnet"
    return "make those groups larger"


def _edge_pairs(edge: Edge, where: str, groups: dict[str, list[str]], testnet: int, rng: random.Random,
                more: str) -> list[tuple[str, str]]:
    """The (voucher, vouchee) pairs an `[[edges]]` table makes vouch: `count` drawn with the seed, or all; a
    ScenarioError where it makes none (one org vouching for itself) or fewer than its `count`, saying to lower it or
    `more`."""
    pairs = [(a, b) for a in groups[edge.source] for b in groups[edge.target] if a != b]
    if not pairs:
        raise ScenarioError(f"{where}: from {edge.source} to {edge.target} makes no vouch: group {edge.source} has one "
                            f"org on this {testnet}-node testnet, and an org does not vouch for itself")
    if edge.count is None:
        return pairs
    if edge.count > len(pairs):
        raise ScenarioError(f"{where}.count: {counted(edge.count, 'vouch', 'vouches')} from {edge.source} to "
                            f"{edge.target}, but on this {testnet}-node testnet there "
                            f"{'is' if len(pairs) == 1 else 'are'} {counted(len(pairs), 'pair')} of orgs to draw them "
                            f"from; lower it, or {more}")
    return rng.sample(pairs, edge.count)


def _check_faults(plan: Plan) -> None:
    """ScenarioError for faults a run would not take as written (testnet.runner): a partition while another is in
    force (a heal lifts every node's block list, so the first one's heal would end the second early), a kill of a node
    whose earlier kill's restart is still to come (that restart would start it early), and a rotation of a flagged org
    or one that would fail mid-run (_check_rotation: the latter once the plan knows what its node dials); an attack
    by a flagged org (_check_attackers); an equivocation, whitewash or key theft due while the nodes it needs are
    down (_check_attack); and a revocation or `[[vouches]]` change due while a node that signs it is down or flagged
    (_check_revocation, _check_vouch_change). A rotation of a killed
    node starts it again (testnet.faults.rotate), but its kill's restart still comes when due: `restarting` keeps it
    until then."""
    up, partition, restarting = set(plan.nodes), None, {}
    for index, attack in enumerate(plan.scenario.attacks):
        _check_attackers(plan, index)
    # (at one time: attacks first, by index; then faults, 100 + index; then revocations, REVOCATION_ORDER + index;
    # then vouch changes, VOUCH_CHANGE_ORDER + index)
    timed = sorted([(attack.at, i, partial(_check_attack, plan, i)) for i, attack in enumerate(plan.scenario.attacks)
                    if attack.type in ("equivocation", "whitewash", "key-theft")]
                   + [(revocation.at, REVOCATION_ORDER + i, partial(_check_revocation, plan, i))
                      for i, revocation in enumerate(plan.scenario.revocations)]
                   + [(*plan.change_due(i), partial(_check_vouch_change, plan, i))
                      for i in range(len(plan.scenario.vouch_changes))], key=lambda event: event[:2])
    for step in [*plan.fault_steps(), None]:  # (None: the attacks, revocations and changes due after the last fault)
        while timed and (step is None or timed[0][:2] <= (step.at, step.order)):
            timed.pop(0)[2](up)
        if step is None:
            break
        if step.action == "kill":
            for node in step.nodes:
                if node in restarting:
                    held = "has it down" if node not in up else "is still to restart it (a rotation started it early)"
                    raise ScenarioError(f"faults[{step.fault}].at: kills {node} at {step.at:g} s while "
                                        f"{_fault_span(plan, restarting[node])} {held}: a run kills a node once at a "
                                        "time (the first kill's restart would start it early); end one kill before "
                                        "the next (faults due at one time go in the file's order)")
                restarting[node] = step.fault
            up -= set(step.nodes)
        elif step.action == "restart":
            up |= set(step.nodes)
            restarting = {n: fault for n, fault in restarting.items() if n not in step.nodes}
        elif step.action == "cut":
            if partition is not None:
                raise ScenarioError(f"faults[{step.fault}].at: a partition at {step.at:g} s while "
                                    f"{_fault_span(plan, partition[0])} ({', '.join(partition[1].side)} | rest) is in "
                                    "force: a run holds one partition at a time (its heal lifts every block list, "
                                    "so the first heal would end the second early); end one before the next starts "
                                    "(faults due at one time go in the file's order)")
            partition = (step.fault, Partition(step.nodes, tuple(n for n in plan.nodes if n not in step.nodes)))
        elif step.action == "heal":
            partition = None
        else:
            for node in step.nodes:
                _check_rotation(plan, step, node, up, partition[1] if partition else None)
                up.add(node)


def _check_attackers(plan: Plan, index: int) -> None:
    """ScenarioError for a praise or slander by an org, or a whitewash of agents operated by an org, that an earlier
    run on this testnet flagged as an equivocator (`plan.flagged`): every node counts its digests and vouches for
    nothing already, so the attack would show nothing of its own, as an equivocation of such an org would not."""
    attack = plan.scenario.attacks[index]
    if attack.type in ("praise", "slander"):
        attackers, role, key = plan.select(attack.orgs, f"attacks[{index}].orgs"), "by", "orgs"
    elif attack.type == "whitewash":
        attackers = [agent.operator for agent in plan.agents_of(attack.agents)]
        role, key = f"of agents {attack.agents} operated by", "agents"
    else:
        return
    if flagged := sorted(set(attackers) & plan.flagged):
        orgs = "org" if len(flagged) == 1 else "orgs"
        raise ScenarioError(
            f"attacks[{index}].{key}: the {attack.type} is {role} the {orgs} of {', '.join(flagged)}, which an earlier "
            "run on this testnet flagged as an equivocator: every node counts its digests and vouches for nothing "
            "already, so the attack would show nothing of its own (its verdict would be the earlier run's doing); run "
            "it on a fresh testnet (another --dir), or select agents and orgs no run flagged")


def _check_attack(plan: Plan, index: int, up: set[str]) -> None:
    """ScenarioError for an equivocation, whitewash or key theft that would not happen as written (testnet.runner, as
    it is due): an equivocation or key theft needs its target running (the offender, offered one record; the robbed
    org's node, which contests the thief's rotation) and a running node to offer the others to that takes them
    (Plan.attack_peers): one whose horizon holds the target's org, outside its group for an equivocation; a whitewash
    needs the operators of its agents running."""
    attack = plan.scenario.attacks[index]
    if attack.type == "whitewash":
        _check_operators_up(plan, f"attacks[{index}]", f"the whitewash at {attack.at:g} s", attack.agents, up,
                            "each vouches for its agents' new identities")
        return
    target = plan.select(attack.orgs, f"attacks[{index}].orgs")[0]
    kind, group = attack.type.replace("-", " "), plan.group_of(target)
    outside = f" outside group {group}" if attack.type == "equivocation" else ""
    if target in plan.flagged:
        raise ScenarioError(
            f"attacks[{index}].orgs: the {kind} is of {target}'s org, which an earlier run on this testnet flagged as "
            "an equivocator: the nodes hold that evidence and count its word for nothing already, so the attack would "
            f"show nothing of its own (its verdict would be the earlier run's); run it on a fresh testnet (another "
            "--dir), or select an org no run flagged")
    if not plan.attack_peers(index, plan.nodes, None):
        aside = _flagged_aside(plan, plan.flagged_before((attack.at, index)) - plan.flagged)
        raise ScenarioError(
            f"attacks[{index}].orgs: the {kind} offers records of {target}'s org to another org's node{outside}, and "
            f"none has {target} inside its horizon (its roots, and the orgs within {MAX_HOPS} org-peer vouches of "
            f"them{aside}): each would refuse them (outside_horizon), so the attack would not happen; have a group "
            f"root or vouch for group {group}")
    if target not in up or not plan.attack_peers(index, up, None):  # (a partition in force orders them, no more)
        down = ", ".join(sorted(set(plan.nodes) - up))
        needs = (f"{target} running and a running node{outside} whose horizon holds its org (each is offered "
                 "records)" if attack.type == "equivocation" else f"{target} running (its node contests the stolen "
                 "key's rotation) and a running node whose horizon holds its org (offered the thief's records)")
        raise ScenarioError(f"attacks[{index}].at: the {kind} at {attack.at:g} s would fail mid-run: it needs {needs}, "
                            f"and the faults then have {down} down; move it, or them")


def _check_operators_up(plan: Plan, where: str, what: str, agents: str | None, up: set[str], why: str) -> None:
    """ScenarioError for a step on agents `agents` (a whitewash, a revocation) due while the faults have an operator
    of theirs down: its node makes the step's records (`why`)."""
    operators = {agent.operator for agent in plan.agents_of(agents or "")}
    _check_up(where, what, operators, up, f"the operators of agents {agents}", why)


def _check_up(where: str, what: str, needed: set[str], up: set[str], whose: str, why: str) -> None:
    """ScenarioError for a step (`what`) due while the faults have one of the nodes it `needed` down (`whose` they are,
    and `why` it needs them)."""
    if down := sorted(needed - up):
        raise ScenarioError(f"{where}.at: {what} would fail mid-run: it needs {whose} running "
                            f"({', '.join(sorted(needed))}: {why}), and the faults then have {', '.join(down)} down; "
                            "move it, or them")


def _check_revocation(plan: Plan, index: int, up: set[str]) -> None:
    """ScenarioError for a revocation (`[[revocations]]`) that would not happen as written, or show nothing of its own:
    each operator of its agents revokes through its node, which must be running then (_check_operators_up), and an
    operator flagged as an equivocator by then (by an earlier run on the testnet, or an equivocation or key theft of
    the run before it) has its vouches counted for nothing already."""
    revocation = plan.scenario.revocations[index]
    where, what = f"revocations[{index}]", f"the revocation at {revocation.at:g} s"
    operators = {agent.operator for agent in plan.agents_of(revocation.agents)}
    if flagged := sorted(operators & plan.flagged_before((revocation.at, REVOCATION_ORDER + index))):
        raise ScenarioError(
            f"{where}.agents: {what} is by the operators of agents {revocation.agents}, and {', '.join(flagged)} is "
            "flagged as an equivocator by then (by an earlier run on this testnet, or an equivocation or key theft "
            "before it): every node counts its vouches for nothing already, so the revocation would show nothing of "
            "its own; revoke before the attack, or on a fresh testnet (another --dir)")
    _check_operators_up(plan, where, what, revocation.agents, up, "each revokes its vouches through its node")


def _check_vouch_change(plan: Plan, index: int, up: set[str]) -> None:
    """ScenarioError for a `[[vouches]]` change that would not happen as written, or show nothing of its own, as
    _check_revocation's: each voucher (an org of its `from`) signs through its node, which must be running then, and
    one flagged as an equivocator by then has its vouches counted for nothing already."""
    change, where = plan.scenario.vouch_changes[index], f"vouches[{index}]"
    what = f"the {change.action} at {change.at:g} s"
    vouchers = {a for a, _ in plan.vouch_pairs(index)}
    if flagged := sorted(vouchers & plan.flagged_before(plan.change_due(index))):
        raise ScenarioError(
            f"{where}.from: {what} is by {', '.join(flagged)}, flagged as an equivocator by then (by an earlier run on "
            "this testnet, or an equivocation or key theft before it): every node counts its vouches for nothing "
            "already, so the change would show nothing of its own; make it before the attack, or on a fresh testnet "
            "(another --dir)")
    _check_up(where, what, vouchers, up, f"the orgs of {change.source.text}",
              f"each signs its {change.action} through its node")


def _flagged_aside(plan: Plan, by_attacks: Collection[str] = ()) -> str:
    """The aside of a refusal saying which flagged orgs' vouches extend no horizon: those an earlier run flagged, and
    `by_attacks`, those the run's attacks before the one refused flag; "" if none."""
    flagged = ", and of ".join(f"{', '.join(nodes)}, flagged by {what}" for nodes, what in (
        (sorted(plan.flagged), "an earlier run on this testnet"), (sorted(by_attacks), "an attack before it")) if nodes)
    return f"; the vouches of {flagged}, extend none" if flagged else ""


def _fault_span(plan: Plan, index: int) -> str:
    """faults[i] with the seconds it lasts, for an error naming another fault that overlaps it."""
    fault = plan.scenario.faults[index]
    return f"faults[{index}] (from {fault.at:g} s to {fault.at + fault.duration:g} s)"


def _check_rotation(plan: Plan, step: FaultStep, node: str, up: set[str], partition: Partition | None) -> None:
    """ScenarioError for a rotation of an org flagged as an equivocator when it is due, by an earlier run on the
    testnet or by an equivocation or key theft the run takes before it (Plan.flagging_attacks): `vouchnet key rotate`
    signs it, but every node flags the new key as it links it to the org (gossip.replica), and a node holding the
    other side of the org's fork (the equivocation's second record, or a thief's rotation) refuses every later record
    of the key, the rotation's too, so what the run measured would be that fork. Once the plan knows what its node
    dials, also for a rotation that would fail mid-run: `vouchnet key rotate` first catches up with the running nodes
    it dials on its node's side of a partition in force (Plan.catch_up_peers; none, it rotates without), and refuses
    to sign unless one of them holds its org's records, i.e. follows it or followed it (Plan.holders: by the trust
    graph once the run set it up, or after a `[[vouches]]` change before it, without the vouches of the orgs flagged
    by then)."""
    due = (step.at, step.order)
    attacks = plan.flagging_attacks(due)
    if node in plan.flagged or node in attacks:
        rotation = f"faults[{step.fault}]: the rotation of {node}'s key at {step.at:g} s is of an org"
        fork = ("every node would flag the new key as it links it to the org, and a node holding the other side of "
                "the org's fork ({}) refuses every later record of the key, the rotation's too, so the run would "
                "measure {}, not a rotation; {}")
        if node in plan.flagged:
            raise ScenarioError(f"{rotation} an earlier run on this testnet flagged as an equivocator: " + fork.format(
                "the earlier equivocation's other record, or a thief's rotation", "the earlier run's fork",
                "run it on a fresh testnet (another --dir), or rotate an org no run flagged"))
        attack = plan.scenario.attacks[attacks[node]]
        kind = attack.type.replace("-", " ")
        raise ScenarioError(f"{rotation} attacks[{attacks[node]}], the {kind} at {attack.at:g} s, flags as an "
                            "equivocator before it: " + fork.format(
                                "the equivocation's other record" if attack.type == "equivocation" else
                                "the thief's rotation", f"the {kind}'s fork",
                                "have the rotation come before the attack (attacks go first at one time), or rotate "
                                "an org no attack flags first"))
    if plan.dials is None:
        return
    flagged = plan.flagged_before(due)
    reached = plan.catch_up_peers(node, sorted(up - {node}), partition, due)
    if reached and not set(reached) & plan.holders(node, due, flagged):
        raise ScenarioError(
            f"faults[{step.fault}]: the rotation of {node}'s key at {step.at:g} s would fail mid-run: "
            "`vouchnet key rotate` first takes the org's records back from the running nodes it dials (its bootstrap "
            "peers and the orgs whose `org` records it holds: those of its horizon, and any it held as the run began): "
            f"{', '.join(reached)}, and none of them holds them (none has {node} inside its horizon: "
            f"its roots, and the orgs within {MAX_HOPS} org-peer vouches of them"
            f"{_flagged_aside(plan, flagged - plan.flagged)}), so it refuses to sign; "
            f"have a group root or vouch for group {plan.group_of(node)}, or rotate it while a partition "
            "cuts it off alone")


def fewest_nodes(scenario: Scenario, seed: int) -> int | None:
    """The fewest nodes of a testnet `testnet run` makes for `scenario` (fresh: what its nodes dial is known) that its
    plan with `seed` fits (make_plan's rules): its org groups' sizes, or more where an attack or fault selects an org
    past them (`honest[2]` of a group that takes the rest), agents or edges need more orgs (orgs_per_agent, count),
    or a rotation needs a follower among the nodes it dials (the seed draws `[[edges]]`; a larger testnet may not fit
    where a smaller one does). None if none of 1 to MAX_NODES does."""
    for count in range(scenario.min_nodes, MAX_NODES + 1):
        try:
            make_plan(scenario, [node_name(i) for i in range(count)], seed, fresh=True)
        except ScenarioError:
            continue
        return count
    return None
