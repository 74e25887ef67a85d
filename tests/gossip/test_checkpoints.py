"""Checkpoints on the checkpoints topic: only an org's own signed records-log checkpoints pass, then only those its
admission accepts; the validator never raises; our own checkpoints' pace."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gossip import checkpoints
from gossip.checkpoints import (
    MAX_CHECKPOINT_NOTE,
    CheckpointPace,
    CheckpointValidator,
    open_org_checkpoint,
)
from gossip.verdict import Verdict
from ledger import (
    Checkpoint,
    CosignatureSigner,
    Ed25519Signer,
    NoteError,
    cosigner_name,
    log_origin,
    note_signature,
    open_checkpoint,
    tree_hash,
)
from vouching import did_key

KEY = SigningKey(b"\x05" * 32)
DID = did_key(bytes(KEY.verify_key))


def signed(size: int, entry: bytes = b"e", *, network: str = "test", log: str = "records", key: SigningKey = KEY,
           did: str = DID, extensions: tuple[str, ...] = ()) -> bytes:
    origin = log_origin(network, did, log)
    return Checkpoint(origin, size, tree_hash([entry] * size), extensions).sign([Ed25519Signer(origin, key)])


def test_an_orgs_checkpoint_opens_with_its_log_signature_only():
    witness_key = SigningKey(b"\x06" * 32)
    note = signed(3)
    text = note[: note.rfind(b"\n\n") + 1].decode()
    cosigner = CosignatureSigner(cosigner_name(did_key(bytes(witness_key.verify_key))), witness_key)
    cosigned = note + note_signature(text, cosigner).line.encode()
    seen = open_org_checkpoint(cosigned, "test")
    assert seen.org == DID and seen.checkpoint.size == 3
    assert seen.note == note  # evidence carries the log's signature alone
    assert CheckpointValidator("test")("peer", cosigned) is Verdict.ACCEPT


@pytest.mark.parametrize(
    ("note", "rule"),
    [
        (signed(3, network="other"), "not a records log of network test"),
        (signed(3, log="telemetry"), "not a records log"),
        (signed(3, key=SigningKey(b"\x07" * 32)), "none of its 1 signatures is from a known key"),
        (signed(3, did="did:key:z6MkNotAKey"), "did"),
        (signed(3, extensions=("x" * MAX_CHECKPOINT_NOTE,)), "is more than"),
        (b"example.com/log\n3\n", "must be vouchnet/"),
    ],
)
def test_anything_else_is_not_an_org_checkpoint(note, rule):
    with pytest.raises(NoteError, match=rule):
        open_org_checkpoint(note, "test")
    assert CheckpointValidator("test")("peer", note) is Verdict.REJECT


@settings(max_examples=300)
@given(st.one_of(
    st.binary(max_size=400),
    st.builds(lambda note, i, b: note[:i] + bytes([b]) + note[i + 1:], st.just(signed(5)), st.integers(0, 200),
              st.integers(0, 255)),
))
def test_the_validator_never_raises(data):
    assert CheckpointValidator("test")("peer", data) in (Verdict.ACCEPT, Verdict.REJECT)


def test_a_checkpoint_the_validator_passed_is_opened_once(monkeypatch):
    """The subscriber takes the checkpoint the validator opened: its signature is checked once per gossiped note."""
    note = signed(3)
    expected = open_org_checkpoint(note, "test")
    opened = []
    monkeypatch.setattr(checkpoints, "open_checkpoint",
                        lambda data, verifiers: opened.append(data) or open_checkpoint(data, verifiers))
    validator = CheckpointValidator("test")
    assert validator("peer", note) is Verdict.ACCEPT
    assert validator.opened(note) == expected
    assert opened == [note]
    validator.opened(note)  # taken: a note delivered again is opened again
    assert opened == [note, note]


def test_the_validator_keeps_the_last_notes_it_passed_only(monkeypatch):
    validator = CheckpointValidator("test", keep=2)
    notes = [signed(size) for size in (1, 2, 3)]
    for note in notes:
        assert validator("peer", note) is Verdict.ACCEPT
    assert validator("peer", b"not a note") is Verdict.REJECT
    opened = []
    monkeypatch.setattr(checkpoints, "open_checkpoint",
                        lambda data, verifiers: opened.append(data) or open_checkpoint(data, verifiers))
    assert [validator.opened(note).checkpoint.size for note in notes] == [1, 2, 3]
    assert opened == [notes[0]]  # forgotten: opened again
    with pytest.raises(NoteError):
        validator.opened(b"not a note")


def test_a_checkpoint_its_admission_does_not_accept_is_not_kept(monkeypatch):
    """What `admit` ignores or rejects (gossip.forks: a repeat, one over its origin's pace) is never delivered."""
    note = signed(3)
    validator = CheckpointValidator("test", admit=lambda seen: Verdict.IGNORE)
    assert validator("peer", note) is Verdict.IGNORE
    assert CheckpointValidator("test", admit=lambda seen: Verdict.REJECT)("peer", note) is Verdict.REJECT
    opened = []
    monkeypatch.setattr(checkpoints, "open_checkpoint",
                        lambda data, verifiers: opened.append(data) or open_checkpoint(data, verifiers))
    validator.opened(note)
    assert opened == [note]  # not kept: opened again


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def counting_opens(monkeypatch) -> list[bytes]:
    opened: list[bytes] = []
    monkeypatch.setattr(checkpoints, "open_checkpoint",
                        lambda data, verifiers: opened.append(data) or open_checkpoint(data, verifiers))
    return opened


def test_a_peer_over_its_checkpoint_rate_is_ignored_unread_and_not_penalised(monkeypatch):
    """One peer relaying many orgs' checkpoints (or garbage) costs a node at most its rate of signature checks; the
    rest are ignored, not rejected: an honest relay cannot shape what the network gossips."""
    clock = Clock()
    validator = CheckpointValidator("test", peer_rate=2.0, clock=clock)  # a burst of 4
    opened = counting_opens(monkeypatch)
    notes = [signed(size) for size in range(1, 101)]
    assert [validator("relay", note) for note in notes] == [Verdict.ACCEPT] * 4 + [Verdict.IGNORE] * 96
    assert opened == notes[:4]
    assert validator.ignored == {"peer_rate": 96, "origin": 0} and validator.rejected == {"oversized": 0, "invalid": 0}
    assert validator("another relay", notes[4]) is Verdict.ACCEPT  # a bucket per peer
    assert validator("relay", b"garbage") is Verdict.IGNORE  # not even looked at
    clock.now = 0.5
    assert validator("relay", b"garbage") is Verdict.REJECT  # within its rate, judged
    assert validator.rejected == {"oversized": 0, "invalid": 1}
    assert validator("relay", b"x" * (MAX_CHECKPOINT_NOTE + 1)) is Verdict.REJECT  # oversized: invalid at any rate
    assert validator.rejected == {"oversized": 1, "invalid": 1}


def test_our_own_checkpoints_are_not_rated():
    validator = CheckpointValidator("test", own_peer="us", peer_rate=1.0, clock=Clock())
    assert all(validator("us", signed(size)) is Verdict.ACCEPT for size in range(1, 20))


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.floats(0, 2), st.booleans()), max_size=60))
def test_each_peer_gets_at_most_its_rate_of_checkpoints_judged_and_only_invalid_ones_are_rejected(messages):
    clock, rate = Clock(), 2.0
    validator = CheckpointValidator("test", peer_rate=rate, clock=clock)
    note, judged = signed(3), {"a": 0, "b": 0}
    for peer, wait, valid in messages:
        clock.now += wait
        verdict = validator(peer, note if valid else b"garbage")
        assert verdict is (Verdict.ACCEPT if valid else Verdict.REJECT) or verdict is Verdict.IGNORE
        judged[peer] += verdict is not Verdict.IGNORE
        assert judged[peer] <= 2 * rate + clock.now * rate
    assert sum(judged.values()) + validator.ignored["peer_rate"] == len(messages)


def test_a_small_network_gossips_checkpoints_every_minimum_period():
    pace = CheckpointPace(10.0, network_rate=1.0)
    for second in range(100):
        pace.heard(f"org{second % 9}", float(second))  # nine others, each every 9 s: ten orgs, one a second
    assert pace.period(100.0) == 10.0


def test_a_large_network_stretches_the_period_to_keep_its_checkpoint_rate():
    pace = CheckpointPace(10.0, network_rate=1.0)
    now = 0.0
    for _ in range(20):  # 39 others, each gossiping every period, as this node will
        period = pace.period(now)
        for org in range(39):
            pace.heard(f"org{org}", now + period * org / 39)
        now += period
    assert pace.period(now) == 40.0  # 40 orgs, one checkpoint a second between them


def test_orgs_not_heard_from_for_two_periods_stop_counting():
    pace = CheckpointPace(10.0, network_rate=1.0)
    for org in range(29):
        pace.heard(f"org{org}", 0.0)
    assert pace.period(1.0) == 30.0
    assert pace.period(59.0) == 30.0  # within two periods: still counted
    assert pace.period(61.0) == 10.0  # gone quiet: the network shrank
    pace.heard("org0", 62.0)
    pace.heard("org0", 63.0)  # one org heard twice counts once
    assert pace.period(64.0) == 10.0


@pytest.mark.parametrize("minimum, rate", [(0.0, 1.0), (10.0, 0.0), (-1.0, 1.0)])
def test_a_pace_needs_positive_settings(minimum, rate):
    with pytest.raises(ValueError, match="positive"):
        CheckpointPace(minimum, network_rate=rate)
