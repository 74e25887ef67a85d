"""A small trust network to test the engine against: a node, its roots, orgs vouched for by the roots."""

from __future__ import annotations

import itertools

from vouching.evidence import Outcomes
from vouching.params import HOUR_MS, ScoringParams
from vouching.scoring import TrustEngine

_ids = itertools.count(1)


def rid() -> bytes:
    """A fresh, unique record id."""
    return next(_ids).to_bytes(32, "big")


class World:
    """The node `own` with root `root`, and `orgs` vouched for by the root. With `rooted` the orgs are trust roots
    too: their word counts fully from the start. Otherwise they are members nobody could check yet, whose
    digests count at the untested credibility until they agree or disagree with what the node saw."""

    def __init__(self, orgs: int = 4, params: ScoringParams | None = None, *, rooted: bool = True) -> None:
        self.orgs = [f"org{i}" for i in range(orgs)]
        self.roots = ["root", *(self.orgs if rooted else [])]
        self.engine = TrustEngine("own", self.roots, params)
        for org in self.orgs:
            self.engine.add_org_vouch("root", org, 1.0, record_id=rid(), ts=0)
        self.now = 0

    def digest(self, org: str, agent: str, epoch: int, dp_epsilon: float | None = None, **counts: int) -> bytes:
        """`org`'s digest of `agent` for hour `epoch` (declaring `dp_epsilon`, if given); advances the clock to the
        epoch's end."""
        high_risk = {k[len("hr_"):]: v for k, v in counts.items() if k.startswith("hr_")}
        plain = {k: v for k, v in counts.items() if not k.startswith("hr_")}
        record = rid()
        self.now = max(self.now, (epoch + 1) * HOUR_MS)
        self.engine.add_digest(org, agent, epoch=epoch * HOUR_MS, length=HOUR_MS, outcomes=Outcomes(**plain),
                               high_risk=Outcomes(**high_risk), record_id=record, ts=(epoch + 1) * HOUR_MS,
                               dp_epsilon=dp_epsilon)
        return record

    def history(self, agent: str, epochs: range, orgs: list[str] | None = None, ok: int = 5) -> None:
        """A clean history: each org reports `ok` good outcomes in every epoch."""
        for epoch in epochs:
            for org in orgs or self.orgs:
                self.digest(org, agent, epoch, ok=ok)

    def score(self, agent: str, at: int | None = None) -> int:
        return self.engine.score(agent, now=self.now if at is None else at).score

    def tier(self, agent: str) -> str:
        return self.engine.score(agent, now=self.now).tier
