"""Attackers' scripts on a testnet (the scenario's `[[attacks]]`):

- praise: the orgs report every action of the target agents as `ok`, and invent such reports for targets that
  never worked for them (colluding and Sybil orgs vouching with their digests);
- slander: the orgs report the target agents' actions, real or invented, as `denied` (policy violations);
- equivocation: an org signs two different records with one sequence number, with its node's own key (org.key in
  its data directory), and gets one into its own node and the other into another org's node (`POST /v1/records`);
- whitewash: the agents discard their identities for fresh ones, which their operators vouch for again.

Sybil and colluding orgs are also made by the scenario's trust graph: orgs vouched for only by colluders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nacl.signing import SigningKey

from node.client import NodeApiError
from node.keys import load_org_key
from vouching import did_key, issue_record, vouch_body

from .agents import new_agent_did
from .cluster import Cluster
from .plan import Plan

FABRICATED = {"praise": "ok", "slander": "denied"}


def scripted_outcomes(plan: Plan, node: str, t: float) -> dict[str, str]:
    """Agent name -> the outcome `node`'s org reports for it at time `t` whatever happened, by the praise and slander
    attacks in force there (a later attack in the file overrides an earlier one for the same agent)."""
    outcomes: dict[str, str] = {}
    for i, attack in enumerate(plan.scenario.attacks):
        if attack.type not in FABRICATED or attack.orgs is None or attack.agents is None:
            continue
        until = plan.scenario.duration if attack.until is None else attack.until
        if attack.at <= t < until and node in plan.select(attack.orgs, f"attacks[{i}].orgs"):
            outcomes.update({agent.name: FABRICATED[attack.type] for agent in plan.agents_of(attack.agents)})
    return outcomes


@dataclass(frozen=True)
class Equivocation:
    """Two records of `offender` with one seq, and what the nodes they were offered to answered."""

    offender: str
    node: str
    seq: int
    records: tuple[str, str]  # ids, hex
    offered_to: tuple[str, str]  # node names
    answers: tuple[str, str]  # accepted, held, known, or the node's refusal code
    at: float  # wall-clock seconds


def equivocate(cluster: Cluster, node: str, other: str, epoch_seconds: float) -> Equivocation:
    """Sign two vouches with `node`'s org key at the seq after its node's latest record of it; offer one to the node
    itself and the other to `other`. Whichever node sees both (or one and the org's own record at that seq) signs
    `equivocation` evidence, which flags the org everywhere.

    Done mid-epoch, so that the node's own digests (issued as each epoch ends) do not take that seq first."""
    key: SigningKey = load_org_key(cluster.data_dir(node) / "org.key")
    did = did_key(bytes(key.verify_key))
    phase = time.time() % epoch_seconds
    time.sleep((epoch_seconds / 2 - phase) % epoch_seconds)
    with cluster.client(node) as client:
        head = None
        for head in client.iter_records(issuer=did, page=500):
            pass
    seq, prev = (head["seq"] + 1, bytes.fromhex(head["id"])) if head else (1, None)
    first = issue_record(key, "vouch", vouch_body(new_agent_did(), 1.0, "operator"), seq=seq, prev=prev)
    second = issue_record(key, "vouch", vouch_body(new_agent_did(), 1.0, "operator"), seq=seq, prev=prev)
    at = time.time()
    answers = (_offer(cluster, node, first.raw), _offer(cluster, other, second.raw))
    return Equivocation(did, node, seq, (first.id.hex(), second.id.hex()), (node, other), answers, at)


def _offer(cluster: Cluster, node: str, raw: bytes) -> str:
    try:
        with cluster.client(node) as client:
            answer = client.submit_record(raw)
    except NodeApiError as e:
        return e.code
    return "held" if answer.get("status") == "held" else "accepted"
