"""Synthetic networks for the trust simulation: orgs with roles, the org→org vouch graph, and the agents each org
operates.

Roles say what an org does with the network, not what its agents do (that is the agents' `Behaviour`):
honest orgs interact and report truthfully; attackers fabricate praise for their accomplices' agents, slander
honest ones, or both; Sybils exist only to vouch and praise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from testnet.sim.behaviour import Behaviour, Honest


@dataclass(frozen=True)
class Org:
    did: str
    role: str  # honest, malicious, spy, sybil, slanderer, stuffer
    interacts: bool = True  # a client that uses other orgs' agents
    reports: str = "truthful"  # truthful | inverted (praise bad, slander good) | slander (all denied) | none
    praises: bool = False  # fabricates good digests for malicious agents every round


@dataclass
class Agent:
    did: str
    operator: str
    behaviour: Behaviour
    partner: str | None = None  # a private agent: only this org uses it


@dataclass
class Network:
    orgs: list[Org] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    vouches: list[tuple[str, str, float]] = field(default_factory=list)  # org -> org, weight
    roots: tuple[str, ...] = ()
    observer: str = ""

    def role(self, role: str) -> list[Org]:
        return [o for o in self.orgs if o.role == role]

    def add_orgs(self, role: str, count: int, *, agents_per_org: int,
                 behaviour: Callable[[int], Behaviour] = lambda _: Honest(), **org_fields: object) -> list[Org]:
        """`count` new orgs of `role`, each operating `agents_per_org` agents with `behaviour(agent number)`."""
        start = len(self.role(role))
        added = [Org(f"did:sim:{role}:{start + i}", role, **org_fields) for i in range(count)]  # type: ignore[arg-type]
        self.orgs.extend(added)
        for org in added:
            for _ in range(agents_per_org):
                self.agents.append(Agent(f"did:sim:agent:{len(self.agents)}", org.did,
                                         behaviour(len(self.agents))))
        return added

    def vouch_randomly(self, sources: list[Org], targets: list[Org], degree: int, rng: np.random.Generator,
                       weight: tuple[float, float] = (0.6, 1.0)) -> None:
        """Each source vouches for `degree` distinct random targets other than itself."""
        if not targets:
            return
        for org in sources:
            picks = rng.choice(len(targets), size=min(degree + 1, len(targets)), replace=False)
            chosen = [targets[i] for i in picks if targets[i].did != org.did][:degree]
            for target in chosen:
                self.vouches.append((org.did, target.did, float(rng.uniform(*weight))))

    def attack_edges(self, honest: list[Org], attackers: list[Org], g: int, rng: np.random.Generator) -> None:
        """`g` vouches from distinct random honest orgs to random attacker orgs (honest orgs duped or bribed)."""
        if g and attackers:
            sources = rng.choice(len(honest), size=min(g, len(honest)), replace=False)
            for s in sources:
                target = attackers[int(rng.integers(len(attackers)))]
                self.vouches.append((honest[s].did, target.did, float(rng.uniform(0.6, 1.0))))


def honest_core(n: int, *, degree: int, agents_per_org: int, roots: int, rng: np.random.Generator) -> Network:
    """`n` honest orgs vouching for `degree` random others; the first is the observing node, the next `roots`
    its trust roots."""
    network = Network()
    honest = network.add_orgs("honest", n, agents_per_org=agents_per_org)
    network.vouch_randomly(honest, honest, degree, rng)
    network.observer = honest[0].did
    network.roots = tuple(o.did for o in honest[1:1 + roots])
    return network
