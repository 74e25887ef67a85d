"""The engine's outputs for random record streams (DESIGN.md §6) are those it gives with the digests fed again taken
out by a set of their ids, as it took them out before it held the ids as fingerprints (vouching.seen): every score,
tier, explanation, org standing and flag, read before and after full recomputes. The streams hold digests fed again,
this node's own digests (dropped: they repeat its first-hand observations), first-hand observations arriving late (as
our digests returning after a restore are counted, node.trust.TrustService.on_returned), DP digests, equivocation
flags, vouches and revocations. (The deviation test's reference is in test_deviation.)"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vouching.evidence import Outcomes
from vouching.params import DAY_MS, HOUR_MS
from vouching.scoring import TrustEngine

from .test_scoring_recompute import AGENTS, apply_op, operations

# (op, operation number): feed operation n of the stream again, its record id and all
again = st.tuples(st.just("again"), st.integers(0, 60))
own_digest = st.tuples(st.just("own-digest"), st.sampled_from(AGENTS), st.integers(0, 400), st.integers(0, 40),
                       st.integers(0, 5))
streams = st.lists(st.one_of(operations.map(tuple), st.lists(st.one_of(again, own_digest), max_size=20)),
                   max_size=4).map(lambda parts: [op for part in parts for op in part])


class Reference:
    """The engine as it was in what this test compares: a digest's record id counted once by a set of the ids."""

    def __init__(self) -> None:
        self.engine = TrustEngine("own", ["root"])
        self.seen: set[bytes] = set()

    def add_digest(self, issuer: str, agent: str, **kwargs) -> None:
        if issuer == "own" or kwargs["record_id"] not in self.seen:
            if issuer != "own":
                self.seen.add(kwargs["record_id"])
            self.engine.add_digest(issuer, agent, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.engine, name)


def _feed(engine: TrustEngine | Reference, ops: list, start: int, stop: int, issued: list) -> None:
    """Feed operations `start` to `stop` of `ops`; `issued` keeps the vouches given so far (apply_op)."""
    for n in range(start, stop):
        op = ops[n]
        if op[0] == "again" and ops[op[1] % len(ops)][0] not in ("again", "own-digest"):
            apply_op(engine, op[1] % len(ops), ops[op[1] % len(ops)], [])
        elif op[0] == "own-digest":
            _, agent, hour, ok, denied = op
            engine.add_digest("own", agent, epoch=hour * HOUR_MS, length=HOUR_MS,
                              outcomes=Outcomes(ok=ok, denied=denied), record_id=n.to_bytes(32, "big"),
                              ts=(hour + 1) * HOUR_MS)
        elif op[0] not in ("again", "own-digest"):
            apply_op(engine, n, op, issued)


def _outputs(engine: TrustEngine, now: int) -> tuple:
    return ([(engine.score(a, now=now), engine.explain(a, now=now), engine.scopes(a, now=now))
             for a in [*AGENTS, "unknown"]], engine.orgs(now=now), engine.reputations(now=now), engine.org_changes)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(streams, st.integers(0, 60 * DAY_MS), st.integers(0, DAY_MS), st.data())
def test_random_streams_give_what_the_engine_gave_before(ops, now, later, data):
    middle = data.draw(st.integers(0, len(ops)))
    engine, reference = TrustEngine("own", ["root"]), Reference()
    outputs = []
    for e in (engine, reference):
        issued: list = []
        _feed(e, ops, 0, middle, issued)
        first = _outputs(e, now)
        table = e.recompute(now=now)
        _feed(e, ops, middle, len(ops), issued)
        outputs.append((first, table.agents, table.scores.tolist(), table.confidence.tolist(), _outputs(e, now),
                        e.recompute(now=now + later).scores.tolist(), _outputs(e, now + later)))
    assert outputs[0] == outputs[1]
