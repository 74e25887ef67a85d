"""Chain time is the same whatever order records arrive in (DESIGN.md §6: the same records give every node the same
score at the same now), fed through feed_record as a node feeds what it accepts, rotations of the operator's key
included: each key's records in its chain's order, and a key that names a prior key has nothing after its first
record fed until every link back to the org's first key is (gossip.acceptor holds them). test_scoring_history's
property dates revocations by chain_time directly and has no rotations. Found by stop 45's review: a key whose first
record names both its prior and its successor dated the successor's revocations by its own first record alone where
that link came before the link to its prior."""

from hypothesis import example, given, settings
from hypothesis import strategies as st

from vouching import Record, digest_body, org_body, revoke_body, vouch_body
from vouching.feed import feed_record
from vouching.params import HOUR_MS
from vouching.scoring import TrustEngine
from vouching.succession import Succession

from tests.factories import Org, new_did

BASE = 472_222 * HOUR_MS
AGENT = new_did()

_hour = st.sampled_from([0, 1, 4, 8])
# What one key of the operator signs after its first record: a digest of another agent, or a revocation of the
# operator's vouch, at an hour.
_signed = st.lists(st.tuples(st.sampled_from(["digest", "revoke"]), _hour), max_size=3)
# Per key of the operator (one to three): the hour of its first record, what it signs after it, and, for a key after
# the first, whether its first record names its successor too (then it signs nothing more).
_keys = st.lists(st.tuples(_hour, _signed, st.booleans()), min_size=1, max_size=3)
_reports = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), max_size=4)  # the reporter's digests: hour, violations


def _signed_at(org: Org, hour: int, kind: str, body: dict) -> Record:
    org.ts = BASE + hour * HOUR_MS - 1  # (Org.sign adds one)
    return org.record(kind, body)


def _digest(org: Org, agent: str, hour: int, denied: int) -> Record:
    counts = {"ok": 4 - denied if denied < 4 else 0, "error": 0, "denied": denied, "timeout": 0}
    body = digest_body(agent, epoch=BASE + hour * HOUR_MS, length=HOUR_MS, outcomes=counts,
                       categories={"tool": sum(counts.values()), "mcp": 0, "a2a": 0, "auth": 0, "resource": 0,
                                   "other": 0},
                       high_risk={"ok": 0, "error": 0, "denied": 0, "timeout": 0}, evidence_root=b"\0" * 32)
    return _signed_at(org, hour + 1, "digest", body)


class _Streams:
    """The records of a root, a reporter and an operator whose key rotates, one stream per key, and which of them
    the acceptor holds back until the rotations before them are linked."""

    def __init__(self, keys: list[tuple[int, list, bool]], reports: list[tuple[int, int]]) -> None:
        root, reporter = Org(ts=BASE), Org(ts=BASE)
        operators = [Org(ts=BASE) for _ in keys]
        self.roots = [root.did, reporter.did, operators[0].did]
        self.operator = operators[0].did
        self.streams = [[root.vouch(reporter.did, 1.0), root.vouch(operators[0].did, 1.0)],
                        [_digest(reporter, AGENT, hour, denied) for hour, denied in sorted(reports)]]
        vouch = _signed_at(operators[0], 0, "vouch", vouch_body(AGENT, 1.0, "operator"))
        self.links_before: list[int] = [0, 0]  # per stream, how many rotations must be linked before its second record
        self.succession = Succession()
        named_next = False
        for i, (hour, signed, both) in enumerate(keys):
            key, later = operators[i], operators[i + 1] if i + 1 < len(keys) else None
            stream = [vouch] if i == 0 else []
            if i:
                named_next = both and later is not None
                stream.append(_signed_at(key, hour, "org", org_body("org", "test", prior=operators[i - 1].did,
                                                                    next=later.did if named_next else None)))
            if not named_next:
                for kind, at in signed:
                    stream.append(_signed_at(key, at, "digest", _digest_body(new_did())) if kind == "digest" else
                                  _signed_at(key, at, "revoke", revoke_body(vouch.id, "no longer trusted")))
                if later is not None:
                    stream.append(_signed_at(key, hour, "org", org_body("org", "test", next=later.did)))
            self.streams.append(stream)
            self.links_before.append(i)
        for stream in self.streams:
            for record in stream:
                self.succession.note(record)

    def order(self, picks: list[int]) -> list[Record]:
        """Every record, the next of a stream `picks` chooses among those the acceptor would take now, in turn."""
        taken = [0] * len(self.streams)
        linked = 0  # rotations of the operator's key with both records fed, in order from its first key
        fed: set[bytes] = set()
        order = []
        for n in range(sum(map(len, self.streams))):
            ready = [s for s, stream in enumerate(self.streams) if taken[s] < len(stream)
                     and (taken[s] == 0 or self.links_before[s] <= linked)]
            s = ready[picks[n % len(picks)] % len(ready)] if picks else ready[0]
            record = self.streams[s][taken[s]]
            taken[s] += 1
            fed.add(record.id)
            order.append(record)
            while linked + 2 < len(self.streams) - 1 and self._link_fed(linked, fed):
                linked += 1
        return order

    def _link_fed(self, link: int, fed: set[bytes]) -> bool:
        """Whether both records of the operator's key's rotation `link` (from its key `link` to the next) are fed."""
        prior, successor = self.streams[2 + link], self.streams[3 + link]
        return prior[-1].id in fed and successor[0].id in fed

    def outputs(self, order: list[Record], now: int) -> tuple:
        engine = TrustEngine("own", self.roots)
        for record in order:
            feed_record(engine, record, self.succession.identity)
        engine.recompute(now=now)
        return engine.org(self.operator, now=now).accountability, engine.score(AGENT, now=now).score


def _digest_body(agent: str) -> dict:
    return digest_body(agent, epoch=BASE - HOUR_MS, length=HOUR_MS, outcomes={"ok": 4, "error": 0, "denied": 0, "timeout": 0},
                       categories={"tool": 4, "mcp": 0, "a2a": 0, "auth": 0, "resource": 0, "other": 0},
                       high_risk={"ok": 0, "error": 0, "denied": 0, "timeout": 0}, evidence_root=b"\0" * 32)


@settings(max_examples=300, deadline=None)
@given(_keys, _reports, st.lists(st.integers(0, 100), max_size=30))
@example(keys=[(0, [("digest", 8)], False), (0, [], True), (0, [("revoke", 0)], False)], reports=[(2, 3), (3, 3)],
         picks=[4, 3])  # the last key's first record, then the middle key's (naming both), then the first key's
def test_chain_time_gives_the_same_outputs_whatever_order_the_operator_s_keys_and_reports_arrive_in(keys, reports,
                                                                                                   picks):
    """The operator's accountability and its agent's score are the same fed in an order the acceptor allows as fed
    each stream whole in turn, the root's, the reporter's, then the operator's keys' from its first."""
    streams = _Streams(keys, reports)
    now = BASE + 14 * HOUR_MS
    assert streams.outputs(streams.order(picks), now) == streams.outputs(streams.order([]), now)
