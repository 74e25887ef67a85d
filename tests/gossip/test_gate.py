"""The records topic's validator as a pure function over bytes: every rejection reason, and garbage never raises."""

import tracemalloc
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gossip.gate
from gossip.batch import pack
from gossip.gate import RecordGate
from gossip.validation import check_record_deferred
from gossip.verdict import Verdict
from node.config import Limits
from vouching import Record, SignatureCheck, failed_signatures, vouch_body
from vouching.bodies import SCOPE_ITEM_MAX, SCOPE_MAX
from vouching.cbor import encode

from ..factories import Org, new_did

ALICE = "12D3KooWAlice"
BOB = "12D3KooWBob"
CAROL = "12D3KooWCarol"
ME = "12D3KooWMe"


ACCEPT, IGNORE, REJECT = Verdict.ACCEPT, Verdict.IGNORE, Verdict.REJECT


def make_gate(stored: set[bytes] | None = None, cache_records: int = 16384, orgs: dict[str, str] | None = None,
              cache_bytes: int = gossip.gate.CACHE_BYTES, **limits: float) -> RecordGate:
    """A gate over `stored` record ids, where peer p is org orgs[p]."""
    held = stored if stored is not None else set()
    return RecordGate(replace(Limits(), **limits), own_peer=ME, known=lambda record: record.id in held,
                      org_of=(orgs or {}).get,
                      cache_records=cache_records, cache_bytes=cache_bytes)


def message(records: list[Record]) -> bytes:
    (data,) = pack([r.raw for r in records], 1 << 20)
    return data


def rejected(gate: RecordGate) -> dict[str, int]:
    return {reason: count for reason, count in gate.stats().rejected.items() if count}


def ignored(gate: RecordGate) -> dict[str, int]:
    return {reason: count for reason, count in gate.stats().ignored.items() if count}


@pytest.fixture(scope="module")
def chain() -> list[Record]:
    org = Org()
    return [org.record() for _ in range(30)]


def count_checks(monkeypatch: pytest.MonkeyPatch) -> tuple[list[bytes], list[SignatureCheck]]:
    """The records the gate decodes and the signatures it checks, from now on."""
    decoded: list[bytes] = []
    signatures: list[SignatureCheck] = []
    monkeypatch.setattr(gossip.gate, "check_record_deferred",
                        lambda raw: decoded.append(raw) or check_record_deferred(raw))
    monkeypatch.setattr(gossip.gate, "failed_signatures",
                        lambda checks: signatures.extend(checks) or failed_signatures(checks))
    return decoded, signatures


def test_a_batch_of_valid_records_is_accepted_and_delivered_without_a_second_check(chain, monkeypatch):
    decoded, signatures = count_checks(monkeypatch)
    gate = make_gate()
    data = message(chain[:10])
    assert gate.check(ALICE, data, now=0.0) is ACCEPT
    assert gate.records(data) == chain[:10]
    assert (len(decoded), len(signatures)) == (10, 10)
    stats = gate.stats()
    assert (stats.accepted, stats.records_verified, stats.records_reverified, rejected(gate)) == (1, 10, 0, {})


def test_our_own_publishes_pass_unchecked():
    gate = make_gate()
    assert gate.check(ME, b"anything our publisher packed", now=0.0) is ACCEPT
    assert gate.stats().accepted == 0


def test_messages_over_the_batch_limit_are_rejected(chain):
    gate = make_gate(gossip_batch_bytes=1000)
    assert gate.check(ALICE, message(chain[:4]), now=0.0) is REJECT  # four records of ~266 bytes
    assert gate.check(ALICE, bytes(70_000), now=0.0) is REJECT  # beyond any message size
    assert gate.check(ALICE, message(chain[:3]), now=0.0) is ACCEPT
    assert rejected(gate) == {"oversized": 2}


def test_a_peer_over_its_message_rate_is_ignored_until_it_slows_down(chain):
    # Ignored, not rejected: an honest relayer forwards whatever its mesh brings, and the message is not even decoded.
    gate = make_gate(peer_messages_per_second=1.0)  # a burst of 2
    verdicts = [gate.check(ALICE, message([r]), now=0.0) for r in chain[:3]]
    assert verdicts == [ACCEPT, ACCEPT, IGNORE]
    assert gate.check(BOB, message(chain[2:3]), now=0.0) is ACCEPT
    assert gate.check(ALICE, message(chain[3:4]), now=1.0) is ACCEPT
    assert (ignored(gate), rejected(gate)) == ({"peer_rate": 1}, {})


def test_a_peer_over_its_byte_rate_is_ignored(chain):
    gate = make_gate(peer_bytes_per_second=40_000.0)  # a burst of 80,000 bytes, at least one message
    big = message(chain[:30])  # 30 records, ~8 KB
    verdicts = [gate.check(ALICE, big, now=0.0) for _ in range(12)]
    assert verdicts.count(ACCEPT) == 80_000 // len(big)
    assert (ignored(gate), rejected(gate)) == ({"peer_rate": 12 - 80_000 // len(big)}, {})


@pytest.mark.parametrize("data", [b"", b"\xff", encode({"r": 1}), encode([]), encode([b"r", b"r"]), encode(["r"])])
def test_a_message_that_is_not_a_batch_is_malformed(data):
    gate = make_gate()
    assert gate.check(ALICE, data, now=0.0) is REJECT
    assert rejected(gate) == {"malformed": 1}


def test_one_invalid_record_rejects_the_whole_message(chain):
    gate = make_gate()
    tampered = bytearray(chain[1].raw)
    tampered[-1] ^= 1  # the signature's last byte
    assert gate.check(ALICE, encode([chain[0].raw, bytes(tampered)]), now=0.0) is REJECT
    assert gate.check(ALICE, encode([chain[0].raw, b"not a record"]), now=0.0) is REJECT
    assert rejected(gate) == {"invalid_record": 2}
    assert gate.check(ALICE, message(chain[:1]), now=0.0) is ACCEPT
    assert gate.stats().records_verified == 1  # records of rejected messages count for nothing


def test_an_org_over_its_record_rate_is_ignored_from_relayers_and_other_orgs_are_not(chain):
    gate = make_gate(org_records_per_second=10.0)  # a burst of 20 records
    assert gate.check(ALICE, message(chain[:21]), now=0.0) is IGNORE
    assert gate.check(ALICE, message(chain[:20]), now=0.0) is ACCEPT
    assert gate.check(BOB, message(chain[20:21]), now=0.0) is IGNORE
    other = Org()
    assert gate.check(BOB, message([other.record()]), now=0.0) is ACCEPT
    assert gate.check(BOB, message(chain[20:21]), now=0.1) is ACCEPT
    assert (ignored(gate), rejected(gate)) == ({"org_rate": 2}, {})


def test_an_org_over_its_record_rate_is_rejected_from_the_org_itself_and_ignored_from_a_relayer():
    origin, other = Org(), Org()
    flood = [origin.record() for _ in range(25)]
    gate = make_gate(org_records_per_second=10.0, orgs={ALICE: origin.did, BOB: other.did})  # a burst of 20
    assert gate.check(ALICE, message(flood[:20]), now=0.0) is ACCEPT
    assert gate.check(ALICE, message(flood[20:21]), now=0.0) is REJECT  # its own records beyond its own rate
    assert gate.check(BOB, message(flood[20:21]), now=0.0) is IGNORE  # relaying the same: not its offence
    assert gate.check(CAROL, message(flood[21:22]), now=0.0) is IGNORE  # a peer whose org is unknown
    # A batch mixing orgs: the forwarder is at fault only if its own org is over the rate.
    mixed = message([other.record(), flood[22]])
    assert gate.check(BOB, mixed, now=0.0) is IGNORE
    assert (ignored(gate), rejected(gate)) == ({"org_rate": 3}, {"org_rate": 1})
    assert gate.check(ALICE, message(flood[20:21]), now=0.1) is ACCEPT  # the rate refilled one record
    assert gate.stats().accepted == 2


def test_records_seen_or_stored_already_are_neither_verified_nor_counted_again(chain, monkeypatch):
    _, signatures = count_checks(monkeypatch)
    stored = {r.id for r in chain[:10]}
    gate = make_gate(stored, org_records_per_second=5.0)  # a burst of 10
    assert gate.check(ALICE, message(chain[:10]), now=0.0) is ACCEPT  # all stored: costs the org nothing
    assert gate.check(ALICE, message(chain[10:20]), now=0.0) is ACCEPT
    assert gate.check(BOB, message(chain[5:20]), now=0.0) is ACCEPT  # replayed: nothing new
    assert gate.check(BOB, message(chain[20:21]), now=0.0) is IGNORE
    stats = gate.stats()
    assert (stats.records_verified, stats.records_known) == (10, 10 + 15)
    assert len(signatures) == 10 + 1  # chain[10:20], then chain[20] (ignored for the org's rate)
    assert gate.records(message(chain[5:20])) == chain[10:20]  # the stored ones are not offered again


def test_records_the_cache_forgot_are_verified_again_at_delivery(chain):
    gate = make_gate(cache_records=5)
    first, second = message(chain[:5]), message(chain[5:10])
    assert gate.check(ALICE, first, now=0.0) is ACCEPT and gate.check(ALICE, second, now=0.0) is ACCEPT
    assert gate.records(first) == chain[:5]
    assert gate.records(second) == chain[5:10]
    assert gate.stats().records_reverified == 5


@given(st.binary(max_size=2000))
def test_garbage_delivered_without_being_checked_gives_no_records_and_never_raises(data):
    """Only a pubsub that delivers messages its validator never passed brings one here (host quirk 27): the node
    must not stop on it."""
    gate = make_gate()
    if gate.check(ALICE, data, now=0.0) is not ACCEPT:
        assert gate.records(data) == [] and gate.stats().delivered_invalid == 1


@given(st.binary(max_size=2000), st.sampled_from([ALICE, BOB, "", "not a peer id"]))
def test_garbage_never_raises(data, peer):
    gate = make_gate()
    assert gate.check(peer, data, now=0.0) in (ACCEPT, REJECT)  # no rate is reached


def _mutations(chain: list[Record]) -> st.SearchStrategy[bytes]:
    def flip(raw: bytes, position: int, bit: int) -> bytes:
        position %= len(raw)
        return raw[:position] + bytes([raw[position] ^ (1 << bit)]) + raw[position + 1:]

    record = st.sampled_from([r.raw for r in chain[:5]])
    return st.one_of(record, st.builds(flip, record, st.integers(0, 10_000), st.integers(0, 7)),
                     record.map(lambda raw: raw[:-1]), st.binary(max_size=50))


@given(st.data())
def test_batches_of_mutated_records_never_raise_and_pass_only_when_intact(chain, data):
    items = data.draw(st.lists(_mutations(chain), min_size=1, max_size=6, unique=True))
    gate = make_gate()
    intact = all(raw in {r.raw for r in chain} for raw in items)
    assert (gate.check(ALICE, encode(items), now=0.0) is ACCEPT) == intact


def test_verified_records_kept_for_delivery_are_bounded_in_bytes_too():
    # Fresh keys cost nothing and records outside the horizon are valid: 16384 records of 64 KiB would be GiBs. The
    # bound is an eighth of the node's (CACHE_BYTES), and so are the records: what is kept is bounded alike.
    cache_bytes = gossip.gate.CACHE_BYTES // 8
    gate = make_gate(cache_bytes=cache_bytes)
    scope = [chr(0x1F600 + i) * SCOPE_ITEM_MAX for i in range(SCOPE_MAX)]  # 4 UTF-8 bytes a character
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(125):
            record = Org().record("vouch", vouch_body(new_did(), 0.5, "operator", scope=scope))
            assert len(record.raw) > 32 * 1024
            assert gate.check(ALICE, message([record]), now=float(i)) is ACCEPT
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert gate.stats().accepted == 125
    # 4 MiB of records, 12.5 MiB decoded (a record of long texts takes about 3x its size): the newest are kept
    assert kept < 4 * cache_bytes
