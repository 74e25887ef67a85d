"""Cosigning without a network: a log and a real ledger.Witness exchange sync messages; stale beliefs are
corrected by one retry, forks come back as evidence, and hostile replies are the witness's fault."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from gossip.cosigning import CosignClient, Witnessed, answer
from gossip.sync import Send
from gossip.sync_messages import (
    Cosigned,
    CosignRequest,
    ErrorReply,
    HeadsPage,
    Refused,
    RemoteProtocolError,
    decode_request,
    encode_message,
)
from ledger import (
    Checkpoint,
    CosignatureSigner,
    Ed25519Signer,
    Equivocation,
    Witness,
    cosigner_name,
    log_origin,
    merkle,
    note_signature,
    open_checkpoint,
)
from vouching import did_key

from ..ledger.memory_tree import MemoryTree

LOG_KEY = SigningKey(b"\x01" * 32)
ORIGIN = log_origin("test", did_key(bytes(LOG_KEY.verify_key)), "records")
LOG = Ed25519Signer(ORIGIN, LOG_KEY)
WITNESS_KEY = SigningKey(b"\x02" * 32)
WITNESS_DID = did_key(bytes(WITNESS_KEY.verify_key))
MEMORY_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None  # fsyncs cost nothing there


def _cosigner() -> CosignatureSigner:
    ticks = count(1_700_000_000)
    return CosignatureSigner(cosigner_name(WITNESS_DID), WITNESS_KEY, clock=lambda: next(ticks))


WITNESS = _cosigner().verifier()


@contextmanager
def witness() -> Iterator[Witness]:
    with tempfile.TemporaryDirectory(dir=MEMORY_DIR) as d, Witness(Path(d) / "w", _cosigner(), {ORIGIN: LOG.verifier()}) as w:
        yield w


class Log:
    def __init__(self, prefix: bytes = b"entry") -> None:
        self.tree = MemoryTree()
        self.prefix = prefix

    def grow_to(self, size: int) -> None:
        self.tree.append([self.prefix + b" %d" % i for i in range(self.tree.size, size)])

    def client(self, believed: int) -> tuple[CosignClient, Checkpoint]:
        checkpoint = Checkpoint(ORIGIN, self.tree.size, merkle.root_hash(self.tree.size, self.tree))
        note = checkpoint.sign([LOG])
        proof = lambda old, new: merkle.consistency_proof(old, new, self.tree)  # noqa: E731
        return CosignClient(note, checkpoint, believed, proof, WITNESS), checkpoint


def exchange(client: CosignClient, w: Witness, *, origin: str = ORIGIN) -> tuple[Witnessed | Refused, list[Equivocation]]:
    evidence = []
    event = client.start()
    while isinstance(event, Send):
        reply, found = answer(w, decode_request(event.payload), origin=origin)
        if found is not None:
            evidence.append(found)
        event = client.receive(encode_message(reply))
    return event, evidence


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["right", "zero", "stale"])), min_size=1, max_size=5))
def test_a_growing_log_is_cosigned_whatever_the_log_believes_the_witness_last_cosigned(steps):
    log = Log()
    cosigned = 0
    with witness() as w:
        for growth, belief in steps:
            log.grow_to(log.tree.size + growth)
            believed = {"right": cosigned, "zero": 0, "stale": cosigned // 2}[belief]
            client, checkpoint = log.client(believed)
            outcome, evidence = exchange(client, w)
            assert isinstance(outcome, Witnessed) and not evidence
            assert WITNESS.verify(checkpoint.to_text().encode(), outcome.signature.signature)
            assert w.cosigned(ORIGIN)[0] == checkpoint
            cosigned = checkpoint.size


def test_a_second_root_at_a_cosigned_size_is_declined_and_handed_back_as_evidence():
    honest, forked = Log(b"honest"), Log(b"forked")
    honest.grow_to(6)
    forked.grow_to(6)
    with witness() as w:
        assert isinstance(exchange(honest.client(0)[0], w)[0], Witnessed)
        outcome, evidence = exchange(forked.client(6)[0], w)
        assert isinstance(outcome, Refused) and outcome.status == 409
        (found,) = evidence
        a, _ = open_checkpoint(found.cosigned, [LOG.verifier()])
        b, signatures = open_checkpoint(found.submitted, [LOG.verifier()])
        assert a.size == b.size == 6 and a.root != b.root
        assert [s.name for s in signatures] == [ORIGIN]  # the log's own signature only


def test_a_conflict_is_retried_once_only():
    log = Log()
    log.grow_to(3)
    client, _ = log.client(0)
    client.start()
    retry = client.receive(encode_message(Refused(409, "last cosigned 2", 2)))
    assert isinstance(retry, Send)
    request = decode_request(retry.payload)
    assert request.body.startswith(b"old 2\n")
    assert client.receive(encode_message(Refused(409, "last cosigned 1", 1))) == Refused(409, "last cosigned 1", 1)


def test_a_conflict_beyond_our_size_is_declined_not_retried():
    log = Log()
    log.grow_to(3)
    client, _ = log.client(0)
    client.start()
    assert client.receive(encode_message(Refused(409, "cosigned 9", 9))) == Refused(409, "cosigned 9", 9)


def test_a_peer_may_only_ask_to_cosign_its_own_log():
    log = Log()
    log.grow_to(2)
    with witness() as w:
        outcome, _ = exchange(log.client(0)[0], w, origin=log_origin("test", WITNESS_DID, "records"))
        assert isinstance(outcome, Refused) and outcome.status == 403


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"not a request", 400), (b"old 0\n\nnot a checkpoint\n", 403)],
)
def test_malformed_requests_are_refused_with_the_witness_status(body, status):
    with witness() as w:
        reply, evidence = answer(w, CosignRequest(body), origin=ORIGIN)
        assert isinstance(reply, Refused) and reply.status == status and evidence is None


def _bad_cosignature(checkpoint: Checkpoint) -> str:
    impostor = CosignatureSigner(WITNESS.name, SigningKey(b"\x03" * 32))
    return note_signature(checkpoint.to_text(), impostor).line


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (lambda cp: Cosigned(_bad_cosignature(cp)), "bad_cosignature"),
        (lambda cp: Cosigned(note_signature(cp.to_text(), _cosigner()).line.rstrip("\n")), "bad_cosignature"),
        (lambda cp: Cosigned(note_signature(cp.to_text(), LOG).line), "bad_cosignature"),
        (lambda cp: Cosigned("— garbage\n"), "bad_cosignature"),
        (lambda cp: HeadsPage((), more=False), "unexpected"),
        (lambda cp: ErrorReply("no"), "refused"),
    ],
)
def test_replies_that_are_not_the_witness_cosigning_our_checkpoint_are_its_fault(reply, reason):
    log = Log()
    log.grow_to(4)
    client, checkpoint = log.client(0)
    client.start()
    with pytest.raises(RemoteProtocolError) as caught:
        client.receive(encode_message(reply(checkpoint)))
    assert caught.value.reason == reason


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.builds(lambda text: encode_message(Cosigned(text)), st.text(max_size=200))
       | st.builds(lambda reason: encode_message(ErrorReply(reason)), st.text(max_size=100)))
def test_any_bytes_from_a_witness_give_a_result_or_its_fault(frame):
    """Random bytes, and well-formed replies with arbitrary contents: a result, or the witness's fault, never
    another exception."""
    log = Log()
    log.grow_to(4)
    client, _ = log.client(0)
    client.start()
    try:
        outcome = client.receive(frame)
    except RemoteProtocolError:
        return
    assert isinstance(outcome, (Send, Witnessed, Refused))
