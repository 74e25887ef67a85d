"""C2SP tlog-witness: cosigning a growing log with real consistency proofs, conflicts, equivocation, bad input,
a log continued under a rotated key, durable state, and the add-checkpoint request body."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
from itertools import count
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.cosignature import CosignatureSigner, cosignature_timestamp
from ledger.names import cosigner_name, log_origin
from ledger.note import Ed25519Signer, NoteError, note_signature, sign_note
from ledger.witness import (
    MAX_PROOF_LINES,
    AddCheckpointRequest,
    BadCheckpoint,
    BadProof,
    BadRequest,
    Conflict,
    Equivocation,
    UnknownOrigin,
    Witness,
    WitnessError,
    WitnessStoreError,
)

from .flip import flip_bit
from .memory_tree import MemoryTree
from .without_room import without_room

DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
ORIGIN = log_origin("main", DID, "records")
LOG = Ed25519Signer(ORIGIN, nacl.signing.SigningKey(b"\x07" * 32))
WITNESS_KEY = nacl.signing.SigningKey(b"\x09" * 32)
WITNESS_NAME = cosigner_name("did:key:z6MkWitness")

# The example request body of c2sp.org/tlog-witness.
SPEC_BODY = """old 20852014
PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=
jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=
5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=
/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=

example.com/behind-the-sofa
20852163
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=
— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=
""".encode()


class Log:
    """A log as a client of the witness: a tree, its signed checkpoints and consistency proofs."""

    def __init__(self, prefix: bytes = b"entry", signer: Ed25519Signer = LOG) -> None:
        self.tree = MemoryTree()
        self.prefix = prefix
        self.signer = signer

    def grow_to(self, size: int) -> None:
        self.tree.append([self.prefix + b" %d" % i for i in range(self.tree.size, size)])

    def checkpoint(self, size: int) -> Checkpoint:
        return Checkpoint(self.signer.name, size, merkle.root_hash(size, self.tree))

    def request(self, old: int, size: int) -> AddCheckpointRequest:
        proof = merkle.consistency_proof(old, size, self.tree)
        return AddCheckpointRequest(old, tuple(proof), self.checkpoint(size).sign([self.signer]))

    def rotated(self, signer: Ed25519Signer) -> Log:
        """The same log, its entries shared, continued under another key (and so another origin)."""
        successor = Log(self.prefix, signer)
        successor.tree = self.tree
        return successor


def _signer() -> CosignatureSigner:
    ticks = count(1_700_000_000)
    return CosignatureSigner(WITNESS_NAME, WITNESS_KEY, clock=lambda: next(ticks))


def _open(path: Path) -> Witness:
    return Witness(path, _signer(), {ORIGIN: LOG.verifier()})


@pytest.fixture
def witness(tmp_path):
    with _open(tmp_path / "witness.db") as w:
        yield w


def _assert_cosigns(witness: Witness, log: Log, old: int, size: int) -> None:
    request = log.request(old, size)
    cosignature = witness.add_checkpoint(request)
    note = request.checkpoint + cosignature.line.encode()
    checkpoint, sigs = open_checkpoint(note, [_signer().verifier()])
    assert checkpoint == log.checkpoint(size)
    assert [s.name for s in sigs] == [WITNESS_NAME]
    assert witness.cosigned(ORIGIN)[0] == checkpoint


# --- Cosigning a growing log ----------------------------------------------------------------------------


def test_cosigns_a_growing_log_step_by_step(witness):
    log = Log()
    old = 0
    for size in [0, 1, 2, 3, 4, 7, 8, 9, 16, 17, 100, 1000]:
        log.grow_to(size)
        _assert_cosigns(witness, log, old, size)
        old = size


def test_a_closed_witness_refuses_every_call(tmp_path):
    log = Log()
    log.grow_to(3)
    witness = _open(tmp_path / "witness.db")
    witness.close()  # as a node does on stopping, while a request may still be on its way from another thread
    with pytest.raises(WitnessStoreError, match="closed"):
        witness.add_checkpoint(log.request(0, 3))
    with pytest.raises(WitnessStoreError, match="closed"):
        witness.cosigned(ORIGIN)


@settings(max_examples=10)
@given(st.lists(st.integers(0, 300), min_size=1, max_size=6))
def test_cosigns_every_consistent_growth(steps):
    log = Log()
    with tempfile.TemporaryDirectory() as d, _open(Path(d) / "w.db") as witness:
        old = 0
        for step in steps:
            log.grow_to(old + step)
            _assert_cosigns(witness, log, old, old + step)
            old += step


def test_the_same_checkpoint_is_cosigned_again_at_a_later_time(witness):
    log = Log()
    log.grow_to(5)
    first = witness.add_checkpoint(log.request(0, 5))
    again = witness.add_checkpoint(log.request(5, 5))
    assert cosignature_timestamp(again) > cosignature_timestamp(first)
    assert _signer().verifier().verify(log.checkpoint(5).to_text().encode(), again.signature)


def test_only_the_log_signatures_are_kept(witness):
    log = Log()
    log.grow_to(3)
    request = log.request(0, 3)
    other = Ed25519Signer("other.example/log", nacl.signing.SigningKey(b"\x0a" * 32))
    extra = note_signature(log.checkpoint(3).to_text(), other).line.encode()
    witness.add_checkpoint(AddCheckpointRequest(0, request.proof, request.checkpoint + extra))
    assert witness.cosigned(ORIGIN)[1] == request.checkpoint


# --- Refusals -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def at_five(tmp_path_factory):
    """A witness that cosigned size 5 of a 13-entry log; refused requests leave it there."""
    log = Log()
    log.grow_to(13)
    with _open(tmp_path_factory.mktemp("at_five") / "w.db") as witness:
        witness.add_checkpoint(log.request(0, 5))
        yield witness, log


@given(st.integers(min_value=0))
def test_a_proof_with_any_flipped_bit_is_refused_and_changes_nothing(at_five, bit):
    witness, log = at_five
    good = log.request(5, 13)
    flipped = flip_bit(b"".join(good.proof), bit)
    bad = AddCheckpointRequest(5, tuple(flipped[i : i + 32] for i in range(0, len(flipped), 32)), good.checkpoint)
    with pytest.raises(BadProof, match="consistency proof from 5 to 13") as e:
        witness.add_checkpoint(bad)
    assert e.value.http_status == 422
    assert e.value.submitted == good.checkpoint
    assert witness.cosigned(ORIGIN)[0].size == 5


def test_a_proof_from_size_zero_must_be_empty(witness):
    log = Log()
    log.grow_to(4)
    request = log.request(0, 4)
    with pytest.raises(BadProof, match="must be empty from size 0"):
        witness.add_checkpoint(AddCheckpointRequest(0, (bytes(32),), request.checkpoint))


def test_a_stale_old_size_gets_a_conflict_carrying_the_witness_size(witness):
    log = Log()
    log.grow_to(20)
    witness.add_checkpoint(log.request(0, 10))
    with pytest.raises(Conflict, match="last cosigned size 10") as e:
        witness.add_checkpoint(log.request(3, 20))
    assert (e.value.size, e.value.http_status) == (10, 409)
    _assert_cosigns(witness, log, e.value.size, 20)  # the client retries from the size it was told


def test_a_client_that_knows_nothing_learns_the_size_from_old_zero(witness):
    log = Log()
    log.grow_to(20)
    witness.add_checkpoint(log.request(0, 10))
    with pytest.raises(Conflict) as e:
        witness.add_checkpoint(log.request(0, 20))
    assert e.value.size == 10


def test_a_rollback_to_a_smaller_size_is_a_conflict(witness):
    log = Log()
    log.grow_to(10)
    witness.add_checkpoint(log.request(0, 10))
    for old in (0, 5):
        with pytest.raises(Conflict) as e:
            witness.add_checkpoint(log.request(old, 5))
        assert e.value.size == 10
    assert witness.cosigned(ORIGIN)[0].size == 10


def test_a_second_root_at_a_cosigned_size_is_equivocation_with_both_signed_notes(witness):
    honest, forked = Log(b"entry"), Log(b"forked")
    honest.grow_to(5)
    forked.grow_to(5)
    witness.add_checkpoint(honest.request(0, 5))
    with pytest.raises(Equivocation) as e:
        witness.add_checkpoint(forked.request(5, 5))
    assert (e.value.origin, e.value.http_status) == (ORIGIN, 409)
    a = open_checkpoint(e.value.cosigned, [LOG.verifier()])[0]
    b = open_checkpoint(e.value.submitted, [LOG.verifier()])[0]
    assert (a.origin, a.size) == (b.origin, b.size) == (ORIGIN, 5)
    assert a.root != b.root
    assert witness.cosigned(ORIGIN)[0] == honest.checkpoint(5)


@pytest.mark.parametrize("size", [1, 4, 5, 6, 12])
def test_a_fork_of_a_cosigned_log_is_never_cosigned_at_any_size(witness, size):
    """However long after the cosigned half the other comes (gossip.forks remembers checkpoints for a window only),
    a witness cosigns it neither below its size, nor at it, nor from it with a proof, which a fork cannot give."""
    honest, forked = Log(b"entry"), Log(b"forked")
    honest.grow_to(5)
    forked.grow_to(12)
    witness.add_checkpoint(honest.request(0, 5))
    with pytest.raises((Conflict, Equivocation, BadProof)):
        witness.add_checkpoint(forked.request(min(5, size), size))
    assert witness.cosigned(ORIGIN)[0] == honest.checkpoint(5)


def test_a_non_empty_proof_between_equal_sizes_is_refused(witness):
    log = Log()
    log.grow_to(5)
    witness.add_checkpoint(log.request(0, 5))
    with pytest.raises(BadProof, match="must be empty when the sizes are equal"):
        witness.add_checkpoint(AddCheckpointRequest(5, (bytes(32),), log.checkpoint(5).sign([LOG])))


def test_an_old_size_beyond_the_checkpoint_is_a_bad_request(witness):
    log = Log()
    log.grow_to(5)
    with pytest.raises(BadRequest, match="old size 6: exceeds the checkpoint's size 5") as e:
        witness.add_checkpoint(AddCheckpointRequest(6, (), log.checkpoint(5).sign([LOG])))
    assert e.value.http_status == 400


def test_an_unknown_origin_is_refused_until_the_log_is_added(tmp_path):
    other = Ed25519Signer(log_origin("main", "did:key:z6MkOther", "records"), nacl.signing.SigningKey(b"\x0b" * 32))
    log = Log(signer=other)
    log.grow_to(2)
    logs = {ORIGIN: LOG.verifier()}
    with Witness(tmp_path / "w.db", _signer(), logs) as witness:
        with pytest.raises(UnknownOrigin, match="not a log this witness follows") as e:
            witness.add_checkpoint(log.request(0, 2))
        assert e.value.http_status == 404
        logs[other.name] = other.verifier()
        witness.add_checkpoint(log.request(0, 2))
        assert witness.cosigned(other.name)[0].size == 2


def test_a_checkpoint_not_signed_by_the_log_key_is_refused(witness):
    impostor = Log(signer=Ed25519Signer(ORIGIN, nacl.signing.SigningKey(b"\x0c" * 32)))
    impostor.grow_to(3)
    with pytest.raises(BadCheckpoint, match="none of its 1 signatures is from a known key") as e:
        witness.add_checkpoint(impostor.request(0, 3))
    assert e.value.http_status == 403
    assert witness.cosigned(ORIGIN) is None


@pytest.mark.parametrize(
    "note, message",
    [
        (b"no origin line", "must start with an origin line"),
        (f"{ORIGIN}\nnot a note\n".encode(), "must be a text, a blank line and signature lines"),
    ],
)
def test_malformed_checkpoints_are_refused(witness, note, message):
    with pytest.raises(BadCheckpoint, match=message):
        witness.add_checkpoint(AddCheckpointRequest(0, (), note))


def test_a_signed_note_that_is_not_a_checkpoint_is_refused(witness):
    with pytest.raises(BadCheckpoint, match="must have an origin, a size and a root hash line"):
        witness.add_checkpoint(AddCheckpointRequest(0, (), sign_note(f"{ORIGIN}\n", [LOG])))


# --- A log whose key was rotated continues its predecessor's ------------------------------------------------


# The org's log under its second and third keys.
B = Ed25519Signer(log_origin("main", "did:key:z6MkRotatedB", "records"), nacl.signing.SigningKey(b"\x21" * 32))
C = Ed25519Signer(log_origin("main", "did:key:z6MkRotatedC", "records"), nacl.signing.SigningKey(b"\x22" * 32))


def _rotating(path: Path, *signers: Ed25519Signer, continues: bool = True) -> Witness:
    """A witness of ORIGIN's log and its successors under `signers`, each continuing the ones before it."""
    origins = [ORIGIN, *(s.name for s in signers)]
    earlier = {origin: tuple(reversed(origins[:i])) for i, origin in enumerate(origins)}
    logs = {ORIGIN: LOG.verifier(), **{s.name: s.verifier() for s in signers}}
    return Witness(path, _signer(), logs, earlier.__getitem__) if continues else Witness(path, _signer(), logs)


def test_a_rotated_log_starts_from_the_size_cosigned_under_its_old_key(tmp_path):
    a = Log()
    a.grow_to(12)
    b = a.rotated(B)
    with _rotating(tmp_path / "w.db", B) as witness:
        witness.add_checkpoint(a.request(0, 5))
        with pytest.raises(Conflict, match=f"last cosigned size 5 of this log's predecessor {ORIGIN}") as e:
            witness.add_checkpoint(b.request(0, 9))  # as a client that knows nothing asks first
        assert e.value.size == 5
        witness.add_checkpoint(b.request(e.value.size, 9))
        assert witness.cosigned(B.name)[0] == b.checkpoint(9)
        assert witness.cosigned(ORIGIN)[0] == a.checkpoint(5)
        witness.add_checkpoint(a.request(5, 7))  # once it has a state of its own, the new log goes on from it
        witness.add_checkpoint(b.request(9, 12))
        assert witness.cosigned(B.name)[0] == b.checkpoint(12)


@pytest.mark.parametrize(
    "size, message",
    [
        (9, f"consistency proof from 5 of this log's predecessor {ORIGIN} to 9"),
        # Not an Equivocation: notes of two origins are not one log signing two roots.
        (5, f"root: differs from the one cosigned at size 5 of this log's predecessor {ORIGIN}"),
    ],
)
def test_a_rotated_log_that_rewrote_its_history_is_refused(tmp_path, size, message):
    a, rewritten = Log(b"entry"), Log(b"rewritten", B)
    a.grow_to(5)
    rewritten.grow_to(size)
    with _rotating(tmp_path / "w.db", B) as witness:
        witness.add_checkpoint(a.request(0, 5))
        with pytest.raises(BadProof, match=re.escape(message)) as e:
            witness.add_checkpoint(rewritten.request(5, size))
        assert e.value.http_status == 422
        assert e.value.cosigned == a.request(5, 5).checkpoint
        assert e.value.submitted == rewritten.request(5, size).checkpoint
        assert witness.cosigned(B.name) is None


def test_the_root_cosigned_under_the_old_key_is_the_new_keys_first_state(tmp_path):
    a = Log()
    a.grow_to(5)
    with _rotating(tmp_path / "w.db", B) as witness:
        witness.add_checkpoint(a.request(0, 5))
        witness.add_checkpoint(a.rotated(B).request(5, 5))
        assert witness.cosigned(B.name)[0] == a.rotated(B).checkpoint(5)


def test_a_rotated_log_starts_from_the_newest_earlier_key_the_witness_cosigned(tmp_path):
    a = Log()
    a.grow_to(20)
    b, c = a.rotated(B), a.rotated(C)
    with _rotating(tmp_path / "w.db", B, C) as witness:
        witness.add_checkpoint(a.request(0, 5))
        with pytest.raises(Conflict) as e:
            witness.add_checkpoint(c.request(0, 20))  # B's log never reached this witness: C goes on from A's
        assert e.value.size == 5
    with _rotating(tmp_path / "w2.db", B, C) as witness:
        witness.add_checkpoint(a.request(0, 5))
        witness.add_checkpoint(b.request(5, 9))
        with pytest.raises(Conflict) as e:
            witness.add_checkpoint(c.request(5, 20))
        assert e.value.size == 9


def test_without_continues_a_new_key_is_a_new_log(tmp_path):  # as before rotations: trust on first use
    a = Log()
    a.grow_to(9)
    with _rotating(tmp_path / "w.db", B, continues=False) as witness:
        witness.add_checkpoint(a.request(0, 5))
        witness.add_checkpoint(a.rotated(B).request(0, 9))
        assert witness.cosigned(B.name)[0].size == 9


def _first_used_then_linked(path: Path, before: Log, after: Log, old: int, first_use: int) -> Witness:
    """A witness that cosigned `before`'s log (ORIGIN's) up to `old` and, knowing nothing linking the two yet,
    `after`'s (B's) from nothing up to `first_use` (trust on first use); and then learned that B continues ORIGIN."""
    links: dict[str, tuple[str, ...]] = {}
    witness = Witness(path, _signer(), {ORIGIN: LOG.verifier(), B.name: B.verifier()}, lambda o: links.get(o, ()))
    witness.add_checkpoint(before.request(0, old))
    witness.add_checkpoint(after.request(0, first_use))
    links[B.name] = (ORIGIN,)
    return witness


def test_a_log_cosigned_before_its_rotation_was_known_is_checked_once_against_its_predecessor(tmp_path):
    a = Log()
    a.grow_to(15)
    b = a.rotated(B)
    with _first_used_then_linked(tmp_path / "w.db", a, b, 5, 9) as witness:
        message = f"old size 9: this log continues {ORIGIN}, which this witness cosigned up to size 5"
        with pytest.raises(Conflict, match=re.escape(message)) as e:
            witness.add_checkpoint(b.request(9, 12))
        assert e.value.size == 5 and witness.cosigned(B.name)[0] == b.checkpoint(9)  # not cosigned: not stored
        witness.add_checkpoint(b.request(5, 12))
        assert witness.cosigned(B.name)[0] == b.checkpoint(12)
        witness.add_checkpoint(b.request(12, 14))  # checked once: from its own state again
    reopened = Witness(tmp_path / "w.db", _signer(), {B.name: B.verifier()}, lambda o: (ORIGIN,))
    with reopened:
        reopened.add_checkpoint(b.request(14, 15))


def test_a_log_cosigned_at_its_predecessors_size_is_checked_in_one_request(tmp_path):
    a = Log()
    a.grow_to(12)
    b = a.rotated(B)
    with _first_used_then_linked(tmp_path / "w.db", a, b, 5, 5) as witness:
        witness.add_checkpoint(b.request(5, 12))
        assert witness.cosigned(B.name)[0] == b.checkpoint(12)


def test_a_log_first_cosigned_with_another_history_than_its_predecessors_is_refused_once_linked(tmp_path):
    a, rewritten = Log(b"entry"), Log(b"rewritten", B)
    a.grow_to(5)
    rewritten.grow_to(12)
    with _first_used_then_linked(tmp_path / "w.db", a, rewritten, 5, 9) as witness:
        for _ in range(2):  # and so on, at every request, as long as it shows this history
            with pytest.raises(Conflict):
                witness.add_checkpoint(rewritten.request(9, 12))
            message = f"consistency proof from 5 of this log's predecessor {ORIGIN} to 12"
            with pytest.raises(BadProof, match=re.escape(message)) as e:
                witness.add_checkpoint(rewritten.request(5, 12))
            assert e.value.cosigned == a.request(5, 5).checkpoint
            assert e.value.submitted == rewritten.request(5, 12).checkpoint
            assert witness.cosigned(B.name)[0] == rewritten.checkpoint(9)


def test_a_log_first_cosigned_at_its_predecessors_size_with_another_root_is_refused_once_linked(tmp_path):
    a, rewritten = Log(b"entry"), Log(b"rewritten", B)
    a.grow_to(5)
    rewritten.grow_to(12)
    with _first_used_then_linked(tmp_path / "w.db", a, rewritten, 5, 5) as witness:
        message = f"root at size 5: differs from the one cosigned of this log's predecessor {ORIGIN}"
        with pytest.raises(BadProof, match=re.escape(message)) as e:
            witness.add_checkpoint(rewritten.request(5, 12))
        assert (e.value.cosigned, e.value.submitted) == (a.request(5, 5).checkpoint, rewritten.request(0, 5).checkpoint)
        assert witness.cosigned(B.name)[0] == rewritten.checkpoint(5)


def test_while_it_is_checked_against_its_predecessor_a_log_gets_conflicts_naming_the_next_size_to_prove_from(
    tmp_path,
):
    a = Log()
    a.grow_to(20)
    b = a.rotated(B)
    with _first_used_then_linked(tmp_path / "w.db", a, b, 5, 9) as witness:
        for old, size, expected in [(0, 12, 9), (5, 12, 9), (9, 12, 5), (5, 14, 9), (9, 14, 5)]:
            with pytest.raises(Conflict) as e:  # a proof from 5 counts only for the checkpoint proven from 9
                witness.add_checkpoint(b.request(old, size))
            assert e.value.size == expected
        with pytest.raises(Conflict, match="cosigned size 9"):
            witness.add_checkpoint(b.request(5, 12))
        witness.add_checkpoint(b.request(5, 14))
        assert witness.cosigned(B.name)[0] == b.checkpoint(14)


def test_a_log_continuing_one_first_cosigned_before_its_rotation_was_known_must_continue_that_ones_predecessor_too(
    tmp_path,
):
    """A cosigned to 5; B, a rewritten history, cosigned on first use before the witness knew B replaced A; B then
    rotated to C at once (B, retired, never asks again). C continuing B's history is not enough: B was never shown
    to continue A, so C must be, or a rotation through a key the witness met first rewrites A's cosigned history."""
    a, rewritten = Log(b"entry"), Log(b"rewritten", B)
    a.grow_to(5)
    rewritten.grow_to(12)
    c = rewritten.rotated(C)
    links: dict[str, tuple[str, ...]] = {}
    logs = {ORIGIN: LOG.verifier(), B.name: B.verifier(), C.name: C.verifier()}
    with Witness(tmp_path / "w.db", _signer(), logs, lambda o: links.get(o, ())) as witness:
        witness.add_checkpoint(a.request(0, 5))
        witness.add_checkpoint(rewritten.request(0, 9))
        links.update({B.name: (ORIGIN,), C.name: (B.name, ORIGIN)})
        with pytest.raises(Conflict, match=re.escape("which this witness cosigned up to size 5")) as e:
            witness.add_checkpoint(c.request(9, 12))
        assert e.value.size == 5
        with pytest.raises(BadProof, match=re.escape(f"consistency proof from 5 of this log's predecessor {ORIGIN}")):
            witness.add_checkpoint(c.request(5, 12))
        assert witness.cosigned(C.name) is None
    honest = a.rotated(B)
    honest.grow_to(20)
    with Witness(tmp_path / "w2.db", _signer(), logs, lambda o: links.get(o, ())) as witness:
        links.clear()
        witness.add_checkpoint(a.request(0, 5))
        witness.add_checkpoint(honest.request(0, 9))
        links.update({B.name: (ORIGIN,), C.name: (B.name, ORIGIN)})
        with pytest.raises(Conflict) as e:
            witness.add_checkpoint(honest.rotated(C).request(9, 12))
        witness.add_checkpoint(honest.rotated(C).request(e.value.size, 12))
        witness.add_checkpoint(honest.rotated(C).request(12, 20))  # checked once: from its own state again
        assert witness.cosigned(C.name)[0] == honest.rotated(C).checkpoint(20)


# --- Durable state --------------------------------------------------------------------------------------


def test_state_survives_reopening(tmp_path):
    log = Log()
    log.grow_to(30)
    with _open(tmp_path / "w.db") as witness:
        witness.add_checkpoint(log.request(0, 12))
    with _open(tmp_path / "w.db") as witness:
        assert witness.cosigned(ORIGIN)[0] == log.checkpoint(12)
        with pytest.raises(Conflict) as e:
            witness.add_checkpoint(log.request(0, 30))
        assert e.value.size == 12
        _assert_cosigns(witness, log, 12, 30)


@settings(max_examples=25)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), st.booleans()), min_size=1, max_size=8))
def test_the_checkpoint_held_in_memory_is_the_one_the_file_holds(requests):
    """`cosigned` and `cosigned_checkpoint` answer from memory (a node checks every gossiped checkpoint against it,
    and answers peers asking what it holds of their logs while it writes): whatever was asked, cosigned or refused
    (stale sizes, forks), it is the checkpoint and note the file holds, also once reopened."""
    log, fork = Log(), Log(b"fork")
    log.grow_to(20)
    fork.grow_to(20)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "w.db"

        def in_file() -> tuple[Checkpoint, bytes] | None:
            with contextlib.closing(sqlite3.connect(path)) as db:
                row = db.execute("SELECT checkpoint, note FROM cosigned WHERE origin = ?", (ORIGIN,)).fetchone()
            return None if row is None else (Checkpoint.parse(row[0]), row[1])

        with _open(path) as witness:
            assert witness.cosigned(ORIGIN) is witness.cosigned_checkpoint(ORIGIN) is None
            for old, size, forked in requests:
                try:
                    witness.add_checkpoint((fork if forked else log).request(min(old, size), max(old, size)))
                except WitnessError:
                    pass
                held = in_file()
                assert witness.cosigned(ORIGIN) == held
                assert witness.cosigned_checkpoint(ORIGIN) == (held and held[0])
        with _open(path) as reopened:
            assert reopened.cosigned(ORIGIN) == held


def test_a_stored_checkpoint_that_cannot_be_read_is_reported_as_the_file_opens(tmp_path):
    with _open(tmp_path / "w.db"):
        pass
    with sqlite3.connect(tmp_path / "w.db") as db:
        db.execute("INSERT INTO cosigned VALUES (?, ?, ?)", (ORIGIN, "not a checkpoint", b""))
    with pytest.raises(WitnessStoreError, match="a stored checkpoint cannot be read"):
        _open(tmp_path / "w.db")


def test_two_witnesses_on_one_file_check_against_the_stored_state(tmp_path):
    log = Log()
    log.grow_to(9)
    with _open(tmp_path / "w.db") as first, _open(tmp_path / "w.db") as second:
        first.add_checkpoint(log.request(0, 5))
        with pytest.raises(Conflict) as e:
            second.add_checkpoint(log.request(0, 9))
        assert e.value.size == 5


_CHILD = """
import os, signal, sys
import nacl.signing
from ledger.witness import Witness, AddCheckpointRequest
from ledger.cosignature import CosignatureSigner
from ledger.note import Ed25519Verifier
path, origin, vkey, name, body = sys.argv[1:]
witness = Witness(path, CosignatureSigner(name, nacl.signing.SigningKey(b"\\x09" * 32)),
                  {origin: Ed25519Verifier.from_vkey(vkey)})
sig = witness.add_checkpoint(AddCheckpointRequest.parse(bytes.fromhex(body)))
sys.stdout.write(sig.line)
sys.stdout.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_the_state_is_on_disk_when_the_cosignature_is_returned(disk_path):
    log = Log()
    log.grow_to(7)
    body = log.request(0, 7).to_bytes()
    args = [str(disk_path / "w.db"), ORIGIN, LOG.verifier().vkey(), WITNESS_NAME, body.hex()]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, env=env, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout.startswith(f"— {WITNESS_NAME} ")
    with _open(disk_path / "w.db") as witness:
        assert witness.cosigned(ORIGIN)[0] == log.checkpoint(7)


def test_a_file_that_is_not_a_database_is_reported(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(WitnessStoreError, match="cannot be read as a witness state file"):
        _open(path)


def test_another_sqlite_file_is_reported_and_left_alone(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE entries (x)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(WitnessStoreError, match="not a witness state file: an SQLite database holding tables entries"):
        _open(path)
    assert path.read_bytes() == before


def test_a_state_file_whose_disk_fails_as_it_opens_is_reported_not_raised(tmp_path):
    """A node started on a full disk stopped with a traceback of sqlite3.OperationalError (disk I/O error) from
    switching its sound witness.sqlite to WAL."""
    path = tmp_path / "witness.sqlite"
    _open(path).close()
    refused = without_room(
        "from tests.ledger.test_witness import _open\nfrom ledger.witness import WitnessStoreError\n"
        "try:\n    _open(sys.argv[1])\nexcept WitnessStoreError as e:\n    print(e)", str(path))
    assert refused.startswith(f"{path}: cannot be opened, as its storage failed (disk I/O error: a full disk")
    _open(path).close()  # sound: with room again it opens


def test_a_missing_directory_is_reported(tmp_path):
    with pytest.raises(WitnessStoreError):
        _open(tmp_path / "missing" / "w.db")


# --- The add-checkpoint request body --------------------------------------------------------------------


def test_spec_example_request_body_parses_and_formats_identically():
    request = AddCheckpointRequest.parse(SPEC_BODY)
    assert request.old_size == 20852014
    assert request.proof[0] == base64.b64decode("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=")
    assert len(request.proof) == 4
    assert request.checkpoint.startswith(b"example.com/behind-the-sofa\n20852163\n")
    assert request.to_bytes() == SPEC_BODY


requests = st.builds(
    AddCheckpointRequest,
    old_size=st.integers(0, 2**64 - 1),
    proof=st.lists(st.binary(min_size=32, max_size=32), max_size=MAX_PROOF_LINES).map(tuple),
    checkpoint=st.binary(min_size=1, max_size=300),
)


@given(requests)
def test_request_parse_inverts_to_bytes(request):
    assert AddCheckpointRequest.parse(request.to_bytes()) == request


_NOTE = b"o\n1\nAAAA\n\n\xe2\x80\x94 k AAAAAAA=\n"
_HASH = base64.b64encode(bytes(32))


@pytest.mark.parametrize(
    "body, message",
    [
        (b"old 0\n" + _NOTE.replace(b"\n\n", b"\n"), "must be an old size line, proof lines, a blank line"),
        (b"old 01\n\n" + _NOTE, "must be 'old <decimal size>' without leading zeros"),
        (b"old -1\n\n" + _NOTE, "old size line 'old -1'"),
        (b"Old 1\n\n" + _NOTE, "old size line 'Old 1'"),
        (b"old 1 \n\n" + _NOTE, "old size line 'old 1 '"),
        (b"old  1\n\n" + _NOTE, "old size line"),
        (b"old 1\r\n\n" + _NOTE, "old size line"),
        (b"old " + b"9" * 21 + b"\n\n" + _NOTE, "old size line"),
        (b"old 18446744073709551616\n\n" + _NOTE, "old size: must be an integer from 0 to 2\\^64 - 1"),
        (b"old \xd9\xa1\n\n" + _NOTE, "must be ASCII"),
        (b"old 1\nnot-base64\n\n" + _NOTE, "proof line 1: not valid base64"),
        (b"old 1\n" + _HASH + b" \n\n" + _NOTE, "proof line 1: not valid base64"),
        (b"old 1\n" + _HASH + b"\n" + base64.b64encode(bytes(31)) + b"\n\n" + _NOTE, "proof line 2: must be a 32"),
        (b"old 1\n" + (_HASH + b"\n") * (MAX_PROOF_LINES + 1) + b"\n" + _NOTE, "proof: 64 lines is more than 63"),
        (b"old 1\n\n", "checkpoint: must be a non-empty signed note"),
        (b"old 1\n\n" + b"x" * 70_000, "bytes is more than"),
    ],
)
def test_malformed_request_bodies_are_rejected_with_the_rule(body, message):
    with pytest.raises(BadRequest, match=message):
        AddCheckpointRequest.parse(body)


def test_note_errors_are_not_raised_by_request_parsing():
    # Everything parse rejects is a BadRequest, never a NoteError escaping from the base64 decoder.
    with pytest.raises(BadRequest) as e:
        AddCheckpointRequest.parse(b"old 1\n====\n\n" + _NOTE)
    assert not isinstance(e.value, NoteError)
