"""Attackers' scripts on a testnet (the scenario's `[[attacks]]`):

- praise: the orgs report every action of the target agents as `ok`, and invent such reports for targets that
  never worked for them (colluding and Sybil orgs vouching with their digests);
- slander: the orgs report the target agents' actions, real or invented, as `denied` (policy violations);
- equivocation: an org signs two different records with one sequence number, with its node's own key (org.key in
  its data directory), and gets one into its own node and the other into another org's node (`POST /v1/records`);
- whitewash: the agents discard their identities for fresh ones, which their operators vouch for again;
- key-theft: a thief who copied an org's key signs with it a rotation to a key of the thief's own, and with that key
  its first record, and gets both into another org's node, while the org's own node signs on at the same seq.

Sybil and colluding orgs are also made by the scenario's trust graph: orgs vouched for only by colluders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nacl.signing import SigningKey

from node.client import NodeApiError, NodeClient
from node.keys import load_org_key
from vouching import did_key, issue_record, org_body, vouch_body

from .agents import new_agent_did
from .cluster import Cluster
from .plan import Plan

FABRICATED = {"praise": "ok", "slander": "denied"}


def attacks_in_force(plan: Plan, node: str, t: float) -> list[int]:
    """The indexes of the praise and slander attacks `node`'s org makes at time `t`, in the file's order: those whose
    orgs it is one of, from their `at` until their `until` (the end of the run if none)."""
    found = []
    for i, attack in enumerate(plan.scenario.attacks):
        if attack.type not in FABRICATED or attack.orgs is None or attack.agents is None:
            continue
        until = plan.scenario.duration if attack.until is None else attack.until
        if attack.at <= t < until and node in plan.select(attack.orgs, f"attacks[{i}].orgs"):
            found.append(i)
    return found


def scripted_outcomes(plan: Plan, node: str, t: float) -> dict[str, str]:
    """Agent name -> the outcome `node`'s org reports for it at time `t` whatever happened, by the praise and slander
    attacks in force there (a later attack in the file overrides an earlier one for the same agent)."""
    outcomes: dict[str, str] = {}
    for i in attacks_in_force(plan, node, t):
        attack = plan.scenario.attacks[i]
        outcomes.update({agent.name: FABRICATED[attack.type] for agent in plan.agents_of(attack.agents or "")})
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
        chain = _chain(client, did)
    head = chain[-1] if chain else None
    seq, prev = (head["seq"] + 1, bytes.fromhex(head["id"])) if head else (1, None)
    first = issue_record(key, "vouch", vouch_body(new_agent_did(), 1.0, "operator"), seq=seq, prev=prev)
    second = issue_record(key, "vouch", vouch_body(new_agent_did(), 1.0, "operator"), seq=seq, prev=prev)
    at = time.time()
    answers = (_offer(cluster, node, first.raw), _offer(cluster, other, second.raw))
    return Equivocation(did, node, seq, (first.id.hex(), second.id.hex()), (node, other), answers, at)


@dataclass(frozen=True)
class KeyTheft:
    """A stolen key's rotation to a thief's key, and what the node the thief's records were offered to answered."""

    victim: str  # the node whose org key was copied
    key: str  # the stolen key: the org's did then
    thief: str  # the thief's key, named by the rotation
    seq: int
    records: tuple[str, str]  # the stolen key's rotation and the thief key's first record (ids, hex)
    offered_to: str  # node name
    answers: tuple[str, str]  # accepted, held, or the node's refusal code


def steal_key(cluster: Cluster, victim: str, other: str) -> KeyTheft:
    """Copy `victim`'s org key; sign with it an `org` record naming a fresh key of the thief's in `next`, at the seq
    after its node's latest record of it, and with the thief's key a first record naming the stolen one in `prior`;
    offer both to `other`'s node, before the org signs anything more. When the rotation reaches the org's own node
    (by sync), that node refuses it and signs its own record at that seq (gossip.replica, `_contest`): whichever node
    sees both records at that seq signs `equivocation` evidence, which flags the org, and the thief's key linked to
    it, everywhere."""
    key: SigningKey = load_org_key(cluster.data_dir(victim) / "org.key")
    did = did_key(bytes(key.verify_key))
    thief = SigningKey.generate()
    thief_did = did_key(bytes(thief.verify_key))
    with cluster.client(victim) as client:
        chain = _chain(client, did)
    name = next(r for r in reversed(chain) if r["kind"] == "org")["body"]["name"]
    seq = chain[-1]["seq"] + 1
    rotation = issue_record(key, "org", org_body(name, cluster.state.network, next=thief_did), seq=seq,
                            prev=bytes.fromhex(chain[-1]["id"]))
    first = issue_record(thief, "org", org_body(name, cluster.state.network, prior=did), seq=1, prev=None)
    answers = (_offer(cluster, other, rotation.raw), _offer(cluster, other, first.raw))
    return KeyTheft(victim, did, thief_did, seq, (rotation.id.hex(), first.id.hex()), other, answers)


def _chain(client: NodeClient, did: str) -> list[dict]:
    """Every record of `did` that the client's node holds, in chain order."""
    return list(client.iter_records(issuer=did, page=500))


def _offer(cluster: Cluster, node: str, raw: bytes) -> str:
    try:
        with cluster.client(node) as client:
            answer = client.submit_record(raw)
    except NodeApiError as e:
        return e.code
    return "held" if answer.get("status") == "held" else "accepted"
