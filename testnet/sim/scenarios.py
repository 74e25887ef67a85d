"""The attack scenarios of issue 3 (item 4), each a network plus a run configuration, at two scales: `standard`
(the suite's figures) and `quick` (the tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from testnet.sim.behaviour import Behaviour, Camouflage, Malicious, OnOff, TurnedBad, Whitewasher
from testnet.sim.network import Network, honest_core
from testnet.sim.runner import SimConfig


@dataclass(frozen=True)
class Scale:
    orgs: int  # EigenTrust-style scenarios: honest plus malicious
    honest: int  # Sybil and attack scenarios: the honest region
    degree: int  # org vouches per honest org
    agents_per_org: int
    roots: int
    rounds: int
    threat_rounds: int  # EigenTrust threat models: long enough for a steady state after learning
    malicious_shares: tuple[float, ...]  # threat models A and B
    camouflage: tuple[float, ...]  # threat model C: the share f of good behaviour
    sybils: tuple[int, int]  # the Sybil scenario, and its 10x variant


STANDARD = Scale(orgs=100, honest=400, degree=8, agents_per_org=2, roots=4, rounds=40, threat_rounds=100,
                 malicious_shares=(0.1, 0.3, 0.5, 0.7), camouflage=(0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95),
                 sybils=(1_000, 10_000))
QUICK = Scale(orgs=40, honest=80, degree=6, agents_per_org=2, roots=3, rounds=16, threat_rounds=80,
              malicious_shares=(0.3, 0.7), camouflage=(0.2, 0.6, 0.9), sybils=(100, 1_000))
SCALES = {"standard": STANDARD, "quick": QUICK}

Build = Callable[[Scale, np.random.Generator], tuple[Network, SimConfig]]


@dataclass(frozen=True)
class Scenario:
    name: str  # unique, with its parameters (e.g. "threat-b m=0.7")
    family: str  # threat-a, threat-b, ..., sybil, slander, ...
    build: Build
    parameter: float | None = None


def _config(scale: Scale, **changes: object) -> SimConfig:
    return replace(SimConfig(rounds=scale.rounds), **changes)  # type: ignore[arg-type]


def threat(model: str, malicious_share: float, f: float = 0.0) -> Build:
    """EigenTrust threat models: A independent malicious orgs, B collectives, C camouflaged collectives (their
    agents behave well with probability f), D collectives helped by spies (half the attackers)."""

    def build(scale: Scale, rng: np.random.Generator) -> tuple[Network, SimConfig]:
        n_bad = round(scale.orgs * malicious_share)
        net = honest_core(scale.orgs - n_bad, degree=scale.degree, agents_per_org=scale.agents_per_org,
                          roots=scale.roots, rng=rng)
        collective = model != "A"
        n_spies = n_bad // 2 if model == "D" else 0
        behaviour = (lambda _: Camouflage(f=f)) if model == "C" else (lambda _: Malicious())
        bad = net.add_orgs("malicious", n_bad - n_spies, agents_per_org=scale.agents_per_org, behaviour=behaviour,
                           reports="inverted", praises=collective)
        if collective:
            net.vouch_randomly(bad, bad, scale.degree, rng)
        if model == "D":
            spies = net.add_orgs("spy", n_spies, agents_per_org=scale.agents_per_org, praises=True)
            net.vouch_randomly(spies, bad, scale.degree, rng)
        return net, _config(scale, rounds=scale.threat_rounds, dynamic_vouching=True)

    return build


def sybil(g: int, sybils: int, *, colluder_share: float = 0.3, rounds: int | None = None) -> Build:
    """An honest region and an attacker region (30% colluding orgs and `sybils` Sybil orgs vouching for one
    another) joined by `g` attack edges; colluders operate malicious agents and praise them. The Sybils are
    drawn from their own random stream, so runs that differ only in the number of Sybils are otherwise equal."""

    def build(scale: Scale, rng: np.random.Generator) -> tuple[Network, SimConfig]:
        sybil_rng = np.random.default_rng(int(rng.integers(2**63)))
        net = honest_core(scale.honest, degree=scale.degree, agents_per_org=scale.agents_per_org,
                          roots=scale.roots, rng=rng)
        honest = net.role("honest")
        colluders = net.add_orgs("malicious", round(scale.honest * colluder_share / (1 - colluder_share)),
                                 agents_per_org=scale.agents_per_org, behaviour=lambda _: Malicious(),
                                 reports="inverted", praises=True)
        net.vouch_randomly(colluders, colluders, scale.degree, rng)
        net.attack_edges(honest, colluders, g, rng)
        fakes = net.add_orgs("sybil", sybils, agents_per_org=0, interacts=False, reports="none")
        net.vouch_randomly(fakes, colluders + fakes, scale.degree, sybil_rng)
        net.vouch_randomly(colluders, fakes, scale.degree, sybil_rng)
        return net, _config(scale, rounds=scale.rounds if rounds is None else rounds)

    return build


def _embedded(role: str, share: float, **org_fields: object) -> Build:
    """Honest core plus `share` of orgs with `role`, vouched for and vouching like honest ones."""

    def build(scale: Scale, rng: np.random.Generator) -> tuple[Network, SimConfig]:
        n_other = round(scale.orgs * share)
        net = honest_core(scale.orgs - n_other, degree=scale.degree, agents_per_org=scale.agents_per_org,
                          roots=scale.roots, rng=rng)
        others = net.add_orgs(role, n_other, agents_per_org=scale.agents_per_org, **org_fields)  # type: ignore
        everyone = net.orgs
        net.vouch_randomly(others, everyone, scale.degree, rng)
        net.vouch_randomly(net.role("honest"), others, max(1, round(scale.degree * share)), rng)
        return net, _config(scale)

    return build


def slander(share: float = 0.3, *, lying: bool = True) -> Build:
    """`share` of orgs, established like honest ones, report every interaction with an honest agent as a
    violation. With `lying=False`, the paired baseline: the same network, in which those orgs stay silent (so
    that the comparison measures the lies, not the loss of their truthful reports)."""
    return _embedded("slanderer", share, reports="slander" if lying else "none")


def ballot_stuffing(share: float = 0.1) -> Build:
    """Orgs, established like honest ones, whose own agents misbehave and who praise them every round."""
    return _embedded("stuffer", share, behaviour=lambda _: Malicious(), praises=True)


def with_agents(behaviour_of: Callable[[int, int], Behaviour | None], *, whitewash_after: int = 0) -> Build:
    """Honest orgs where agent i of n gets `behaviour_of(i, n)` (None keeps it honest)."""

    def build(scale: Scale, rng: np.random.Generator) -> tuple[Network, SimConfig]:
        net = honest_core(scale.orgs, degree=scale.degree, agents_per_org=scale.agents_per_org,
                          roots=scale.roots, rng=rng)
        for i, agent in enumerate(net.agents):
            special = behaviour_of(i, len(net.agents))
            if special is not None:
                agent.behaviour = special
        return net, _config(scale, whitewash_after=whitewash_after)

    return build


def private_agents(scale: Scale, rng: np.random.Generator) -> tuple[Network, SimConfig]:
    """An honest network in which every tenth agent is used by one partner org alone."""
    net, config = with_agents(lambda i, n: None)(scale, rng)
    honest = net.role("honest")
    for i, agent in enumerate(net.agents):
        if i % 10 == 5:
            partners = [o for o in honest if o.did != agent.operator]
            agent.partner = partners[int(rng.integers(len(partners)))].did
    return net, config


def vouch_then_defect(share: float = 0.1) -> Build:
    """Orgs established like honest ones vouch for agents that behave well for half the run, then all defect."""

    def build(scale: Scale, rng: np.random.Generator) -> tuple[Network, SimConfig]:
        return _embedded("defector", share, behaviour=lambda _: TurnedBad(at=scale.rounds // 2))(scale, rng)

    return build


def equivocation(share: float = 0.1) -> Build:
    """Established orgs praise malicious agents (operating them); halfway they are caught equivocating."""

    def build(scale: Scale, rng: np.random.Generator) -> tuple[Network, SimConfig]:
        net, config = _embedded("equivocator", share, behaviour=lambda _: Malicious(), praises=True,
                                reports="inverted")(scale, rng)
        return net, replace(config, equivocation_round=scale.rounds // 2)

    return build


def scenarios(scale: Scale) -> list[Scenario]:
    """Every scenario of the standard suite."""
    out = []
    for m in scale.malicious_shares:
        out.append(Scenario(f"threat-a m={m}", "threat-a", threat("A", m), m))
        out.append(Scenario(f"threat-b m={m}", "threat-b", threat("B", m), m))
    for f in scale.camouflage:
        out.append(Scenario(f"threat-c f={f}", "threat-c", threat("C", 0.4, f), f))
    out.append(Scenario("threat-d", "threat-d", threat("D", 0.4)))
    for g in (0, 10, 30, 100):
        out.append(Scenario(f"sybil g={g}", "sybil", sybil(g, scale.sybils[0]), g))
    out.append(Scenario("sybil g=30 x1", "sybil-x1", sybil(30, scale.sybils[0], rounds=1), 30))
    out.append(Scenario("sybil g=30 x10", "sybil-x10", sybil(30, scale.sybils[1], rounds=1), 30))
    out.append(Scenario("whitewash", "whitewash",
                        with_agents(lambda i, n: Whitewasher(exploit=i // 10 % 2 * 2) if i % 10 == 3 else None,
                                    whitewash_after=3)))
    out.append(Scenario("on-off", "on-off",
                        with_agents(lambda i, n: OnOff(on=5, off=2, phase=i % 7) if i % 10 == 1 else None)))
    out.append(Scenario("turned-bad", "turned-bad",
                        with_agents(lambda i, n: TurnedBad(at=scale.rounds // 2) if i % 10 == 2 else None)))
    out.append(Scenario("slander baseline", "slander-baseline", slander(0.3, lying=False)))
    out.append(Scenario("slander", "slander", slander(0.3)))
    out.append(Scenario("ballot-stuffing", "ballot-stuffing", ballot_stuffing(0.1)))
    out.append(Scenario("vouch-then-defect", "vouch-then-defect", vouch_then_defect(0.1)))
    out.append(Scenario("equivocation", "equivocation", equivocation(0.1)))
    out.append(Scenario("private agents", "private", private_agents))
    return out

