"""A revocation is dated by its issuer's chain (TrustEngine.chain_time, README "How scores are computed", 3): no earlier
than any record its key signed before it, so that an operator whose agent others reported cannot shed the accountability
penalty by revoking its vouch dated a minute after it gave it, once it signed anything dated later. Found by stop 45's
review: every record's date is its issuer's word, and such a revocation took the operator from 0.11 to 1.0."""

import itertools
from collections.abc import Callable

import pytest

from vouching import Record, digest_body, engine_state, org_body, vouch_body
from vouching.feed import feed_record
from vouching.params import HOUR_MS, ScoringParams
from vouching.scoring import TrustEngine
from vouching.succession import Succession

from tests.factories import Org, new_did
from tests.vouching.test_scoring_reputation import _accountability_of

BASE = 472_222 * HOUR_MS  # an hour's start, near the factories' clock
UNLINKED = Succession().identity
AGENT = new_did()
PENALISED = 1 / (1 + ScoringParams().accountability_penalty * 2.0)  # one misbehaving agent's operator vouch


def _signed_at(org: Org, ts: int, sign: Callable[[], Record]) -> Record:
    """The record `sign` makes of `org`'s chain, dated `ts`."""
    org.ts = ts - 1  # (Org.sign adds one)
    return sign()


class _Network:
    """An operator and a reporter, both vouched for by a root and trust roots themselves (as World's rooted orgs are);
    what they sign is fed through feed_record, as a node feeds what it accepts."""

    def __init__(self) -> None:
        self.root, self.reporter, self.operator = Org(ts=BASE), Org(ts=BASE), Org(ts=BASE)
        self.roots = [self.root.did, self.reporter.did, self.operator.did]
        self.engine = TrustEngine("own", self.roots)
        self.identity = UNLINKED
        self.now = BASE
        for org in (self.reporter, self.operator):
            self.feed(self.root.vouch(org.did, 1.0))
        self.vouch = _signed_at(self.operator, BASE, lambda: self.operator.record("vouch", vouch_body(AGENT, 1.0,
                                                                                                      "operator")))
        self.feed(self.vouch)

    def feed(self, record: Record) -> None:
        feed_record(self.engine, record, self.identity)

    def digest(self, org: Org, agent: str, hour: int, *, ok: int = 0, denied: int = 0) -> Record:
        """`org`'s digest of `agent` for hour `hour`, signed as it ends."""
        end = BASE + (hour + 1) * HOUR_MS
        self.now = max(self.now, end)
        counts = {"ok": ok, "error": 0, "denied": denied, "timeout": 0}
        body = digest_body(agent, epoch=end - HOUR_MS, length=HOUR_MS, outcomes=counts,
                           categories={"tool": ok + denied, "mcp": 0, "a2a": 0, "auth": 0, "resource": 0, "other": 0},
                           high_risk={"ok": 0, "error": 0, "denied": 0, "timeout": 0}, evidence_root=b"\0" * 32)
        return _signed_at(org, end, lambda: org.record("digest", body))

    def reports(self) -> list[Record]:
        """The reporter's digests of the agent violating policy, hours 2 to 6."""
        return [self.digest(self.reporter, AGENT, hour, denied=3) for hour in range(2, 7)]

    def revocation(self, ts: int) -> Record:
        return _signed_at(self.operator, ts, lambda: self.operator.revoke(self.vouch))


def _signed_later(net: _Network, kind: str) -> Record:
    """What the operator signs at hour 7, after the reports came, of `kind`: a digest of another agent of its, an `org`
    record, a vouch for another agent."""
    if kind == "digest":
        return net.digest(net.operator, new_did(), 6, ok=4)
    body = org_body("org", "test") if kind == "org" else vouch_body(new_did(), 0.5, "audit")
    return _signed_at(net.operator, BASE + 7 * HOUR_MS, lambda: net.operator.record(kind, body))


@pytest.mark.parametrize("path", ["recompute", "snapshot", "restored"])
@pytest.mark.parametrize("later", ["digest", "org", "vouch"])
def test_a_revocation_dated_before_what_its_issuer_signed_earlier_still_answers_for_the_reports(later, path):
    """The operator signs a record at hour 7, after another org's reports of its agent's violations (hours 2-6), then
    revokes its vouch dated a minute after it gave it: the revocation counts as of hour 7, and the vouch answers for
    the violations as one standing does, whichever order the reports and the revocation reach the node in. Before,
    the backdated revocation shed the whole penalty (1.0 in place of 0.11)."""
    for reports_first in (True, False):
        net = _Network()
        reports, signed = net.reports(), _signed_later(net, later)
        revocation = net.revocation(BASE + 60_000)
        for record in [*reports, signed, revocation] if reports_first else [signed, revocation, *reports]:
            net.feed(record)
        assert _accountability_of(net, net.operator.did, path) == pytest.approx(PENALISED)


@pytest.mark.parametrize("path", ["recompute", "snapshot", "restored"])
def test_a_revocation_signed_before_the_reports_still_answers_for_none(path):
    """An operator that revokes its vouch before the reports, having signed only records dated before them (its
    agent's digest of hour 0 here), answers for none of them, however late the reports reach the node."""
    net = _Network()
    net.feed(net.digest(net.operator, new_did(), 0, ok=4))
    net.feed(net.revocation(BASE + HOUR_MS + 60_000))
    for record in net.reports():
        net.feed(record)
    assert _accountability_of(net, net.operator.did, path) == 1.0


def test_a_restored_engine_dates_a_revocation_by_the_records_signed_before_its_capture():
    """The chain's latest date is part of what engine.snapshot holds: a backdated revocation fed to an engine restored
    from a capture taken after the operator signed a later record dates as it does in the engine captured."""
    net = _Network()
    for record in net.reports():
        net.feed(record)
    net.feed(_signed_later(net, "org"))
    restored = TrustEngine("own", net.roots)
    engine_state.restore(engine_state.capture(net.engine), restored, ())
    net.engine = restored
    net.feed(net.revocation(BASE + 60_000))
    net.engine.recompute(now=net.now)
    assert net.engine.org(net.operator.did, now=net.now).accountability == pytest.approx(PENALISED)


@pytest.mark.parametrize("path", ["recompute", "snapshot", "restored"])
def test_a_rotated_org_s_later_key_dates_a_revocation_no_earlier_than_what_its_earlier_key_signed(path):
    """The operator's key signs a digest after the reports, then rotates to a key whose first record is dated at the
    vouch: a revocation by the later key, dated a minute after the vouch, counts as of the earlier key's last record,
    whichever of the rotation's two records reaches the node first."""
    for rotation_first in (True, False):
        net = _Network()
        reports, signed = net.reports(), _signed_later(net, "digest")
        successor, rotation, first = net.operator.rotate(Org(ts=BASE))
        revocation = _signed_at(successor, BASE + 60_000, lambda: successor.revoke(net.vouch))
        succession = Succession()
        for record in (rotation, first):
            succession.note(record)
        net.identity = succession.identity
        for record in [*reports, signed, *((rotation, first) if rotation_first else (first, rotation)), revocation]:
            net.feed(record)
        assert _accountability_of(net, net.operator.did, path) == pytest.approx(PENALISED)


def test_one_half_of_a_rotation_does_not_move_another_key_s_dates():
    """A key naming the operator's key as its successor in a record dated far ahead, with no record of the operator's
    naming it back, leaves the operator's revocation dated as it signed it: it answers for none of the reports that
    came after."""
    net = _Network()
    stranger = Org(ts=BASE + 1_000 * HOUR_MS)
    net.feed(stranger.record("org", org_body("org", "test", next=net.operator.did)))
    net.feed(net.revocation(BASE + 60_000))
    for record in net.reports():
        net.feed(record)
    net.engine.recompute(now=net.now)
    assert net.engine.org(net.operator.did, now=net.now).accountability == 1.0


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_a_key_rotated_twice_dates_a_revocation_by_the_first_key_whichever_link_came_first(order):
    """The operator's key signs a digest after the reports and rotates to a key whose first record (dated at the vouch)
    names the operator's key as its prior and a third key as its successor; the third key revokes the vouch dated a
    minute after it. The revocation counts as of the first key's last record whichever order the three rotation
    records reach the node in. Found by stop 45's review: where the second link was made before the first (the first
    key's rotation record came last), the third key's dates missed the first key's, and the revocation shed the whole
    penalty (1.0 in place of 0.11) at that node alone."""
    net = _Network()
    reports, signed = net.reports(), _signed_later(net, "digest")
    middle, last = Org(ts=BASE), Org(ts=BASE)
    rotation = net.operator.record("org", org_body("org", "test", next=middle.did))
    middle_first = middle.record("org", org_body("org", "test", prior=net.operator.did, next=last.did))
    last_first = last.record("org", org_body("org", "test", prior=middle.did))
    revocation = _signed_at(last, BASE + 60_000, lambda: last.revoke(net.vouch))
    links = [rotation, middle_first, last_first]
    succession = Succession()
    for record in links:
        succession.note(record)
    net.identity = succession.identity
    for record in [*reports, signed, *(links[i] for i in order), revocation]:
        net.feed(record)
    assert _accountability_of(net, net.operator.did, "recompute") == pytest.approx(PENALISED)
