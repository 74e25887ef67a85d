"""The Bitcoin OTC trust network (testnet/data/bitcoin-otc) replayed through the real `TrustEngine`: raters as
orgs, each user also as an agent, positive ratings as org vouches and good evidence, negative ratings as
violations; users rated negatively on balance are the ground truth for "distrusted". Optionally with a Sybil
attack spliced in: Sybil orgs praising the distrusted and slandering the most trusted.
"""

from __future__ import annotations

import csv
import itertools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from testnet.sim.metrics import auc
from vouching.evidence import Outcomes
from vouching.params import HOUR_MS, ScoringParams
from vouching.scoring import TrustEngine

DATA = Path(__file__).resolve().parent.parent / "data" / "bitcoin-otc" / "soc-sign-bitcoinotc.csv"
OBSERVER = "otc:observer"


@dataclass(frozen=True)
class Rating:
    source: int
    target: int
    value: int  # -10 .. 10
    ms: int


@dataclass(frozen=True)
class OtcResult:
    auc: float | None
    users: int  # users with enough ratings to be judged
    distrusted: int
    attackers: int


def load(path: Path = DATA) -> list[Rating]:
    """The ratings in time order."""
    with open(path, newline="") as f:
        rows = [Rating(int(s), int(t), int(v), int(float(ts)) * 1000) for s, t, v, ts in csv.reader(f)]
    return sorted(rows, key=lambda r: r.ms)


def replay(ratings: list[Rating], *, roots: int = 5, sybils: int = 0, attack_edges: int = 0, seed: int = 0,
           min_ratings: int = 3, params: ScoringParams | None = None) -> OtcResult:
    """Feed every rating to an engine whose roots are the `roots` users with the most positive ratings, and
    measure the AUC of the final scores (trusted users against distrusted ones)."""
    rng = np.random.default_rng(seed)
    received: dict[int, list[int]] = defaultdict(list)
    for r in ratings:
        received[r.target].append(r.value)
    positives = sorted(received, key=lambda u: -sum(v > 0 for v in received[u]))
    engine = TrustEngine(OBSERVER, [_org(u) for u in positives[:roots]], params)
    ids = itertools.count(1)

    def rid() -> bytes:
        return next(ids).to_bytes(32, "big")

    # (ms, issuer org, the org it vouches for (or None), the agent the digest is about (or None), rating)
    events: list[tuple[int, str, str | None, str | None, int]] = [
        (r.ms, _org(r.source), _org(r.target) if r.value > 0 else None, _agent(r.target), r.value) for r in ratings
    ]
    judged = [u for u, values in received.items() if len(values) >= min_ratings]
    distrusted = {u for u in judged if np.mean(received[u]) < 0}
    if sybils:
        events += _attack(ratings, sybils, attack_edges, sorted(distrusted), positives[:100], rng)
        events.sort(key=lambda e: e[0])
    for ms, issuer, vouched, agent, value in events:
        if vouched is not None and vouched != issuer:
            engine.add_org_vouch(issuer, vouched, value / 10, record_id=rid(), ts=ms)
        if agent is not None:
            outcomes = Outcomes(ok=value) if value > 0 else Outcomes(denied=max(1, -value // 3))
            engine.add_digest(issuer, agent, epoch=ms, length=HOUR_MS, outcomes=outcomes, record_id=rid(),
                              ts=ms + HOUR_MS)
    end = events[-1][0] + HOUR_MS
    table = engine.recompute(now=end)
    scores = {u: table.score(_agent(u)) for u in judged}
    value = auc([scores[u] for u in judged if u not in distrusted], [scores[u] for u in distrusted])
    return OtcResult(value, len(judged), len(distrusted), sybils)


def _attack(ratings: list[Rating], sybils: int, attack_edges: int, distrusted: list[int], trusted: list[int],
            rng: np.random.Generator) -> list[tuple[int, str, str | None, str | None, int]]:
    """Sybil orgs vouch for one another and get `attack_edges` vouches from random raters; over the second half
    of the record they rate distrusted users +10 and the most trusted users -10."""
    start, end = ratings[len(ratings) // 2].ms, ratings[-1].ms
    names = [f"otc:sybil:{i}" for i in range(sybils)]
    raters = sorted({r.source for r in ratings})
    out: list[tuple[int, str, str | None, str | None, int]] = []
    for a in names:
        for b in rng.choice(sybils, size=min(5, sybils), replace=False):
            out.append((start, a, names[b], None, 10))
    for u in rng.choice(len(raters), size=attack_edges, replace=False):
        out.append((start, _org(raters[u]), names[int(rng.integers(sybils))], None, 10))
    for a in names:
        for ms in rng.integers(start, end, size=20):
            out.append((int(ms), a, None, _agent(distrusted[int(rng.integers(len(distrusted)))]), 10))
            out.append((int(ms), a, None, _agent(trusted[int(rng.integers(len(trusted)))]), -10))
    return out


def _org(user: int) -> str:
    return f"otc:org:{user}"


def _agent(user: int) -> str:
    return f"otc:agent:{user}"
