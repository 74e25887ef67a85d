"""Cosigning without a network: a log and a real ledger.Witness exchange sync messages; stale beliefs are
corrected by a retry (two for a log the witness must check against its predecessor's), forks come back as
evidence, and hostile replies are the witness's fault."""

from __future__ import annotations

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


def _cosigner() -> CosignatureSigner:
    ticks = count(1_700_000_000)
    return CosignatureSigner(cosigner_name(WITNESS_DID), WITNESS_KEY, clock=lambda: next(ticks))


WITNESS = _cosigner().verifier()


@contextmanager
def witness() -> Iterator[Witness]:
    with tempfile.TemporaryDirectory() as d, Witness(Path(d) / "w", _cosigner(), {ORIGIN: LOG.verifier()}) as w:
        yield w


ROTATED_KEY = SigningKey(b"\x04" * 32)  # the log's key after a rotation
ROTATED = Ed25519Signer(log_origin("test", did_key(bytes(ROTATED_KEY.verify_key)), "records"), ROTATED_KEY)


class Log:
    def __init__(self, prefix: bytes = b"entry", signer: Ed25519Signer = LOG) -> None:
        self.tree = MemoryTree()
        self.prefix = prefix
        self.signer = signer

    def grow_to(self, size: int) -> None:
        self.tree.append([self.prefix + b" %d" % i for i in range(self.tree.size, size)])

    def client(self, believed: int) -> tuple[CosignClient, Checkpoint]:
        checkpoint = Checkpoint(self.signer.name, self.tree.size, merkle.root_hash(self.tree.size, self.tree))
        note = checkpoint.sign([self.signer])
        proof = lambda old, new: merkle.consistency_proof(old, new, self.tree)  # noqa: E731
        return CosignClient(note, checkpoint, believed, proof, WITNESS), checkpoint


def exchange(client: CosignClient, w: Witness, *,
             origin: str = ORIGIN) -> tuple[Witnessed | Refused, list[Equivocation]]:
    evidence = []
    event = client.start()
    while isinstance(event, Send):
        reply, found = answer(w, decode_request(event.payload), origin=origin)
        if found is not None:
            evidence.append(found)
        event = client.receive(encode_message(reply))
    return event, evidence


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
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


def test_a_conflict_is_retried_four_times_only():
    log = Log()
    log.grow_to(5)
    client, _ = log.client(0)
    client.start()
    for size in (4, 3, 2, 1):
        retry = client.receive(encode_message(Refused(409, f"last cosigned {size}", size)))
        assert isinstance(retry, Send)
        assert decode_request(retry.payload).body.startswith(b"old %d\n" % size)
    assert client.receive(encode_message(Refused(409, "last cosigned 2", 2))) == Refused(409, "last cosigned 2", 2)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    old=st.integers(1, 12),
    more=st.integers(0, 6),
    growth=st.integers(0, 6),
    belief=st.sampled_from(["zero", "right", "old key's", "stale"]),
    honest=st.booleans(),
)
def test_a_log_cosigned_before_its_witness_knew_its_rotation_is_checked_in_one_exchange(
    old, more, growth, belief, honest
):
    """The witness cosigned the log under its new key before it knew that key replaced the old one (trust on first
    use); once it knows, one exchange gets the next checkpoint cosigned if the log continues what the witness
    cosigned under the old key, and refused with a bad proof (422) if not, whatever the log believes."""
    before, after = Log(), Log(b"entry" if honest else b"rewritten", ROTATED)
    links: dict[str, tuple[str, ...]] = {}
    with tempfile.TemporaryDirectory() as d:
        logs = {ORIGIN: LOG.verifier(), ROTATED.name: ROTATED.verifier()}
        with Witness(Path(d) / "w", _cosigner(), logs, lambda origin: links.get(origin, ())) as w:
            before.grow_to(old)
            assert isinstance(exchange(before.client(0)[0], w)[0], Witnessed)
            if honest:
                after.tree = before.tree
            after.grow_to(old + more)
            assert isinstance(exchange(after.client(0)[0], w, origin=ROTATED.name)[0], Witnessed)
            links[ROTATED.name] = (ORIGIN,)
            first = after.tree.size
            after.grow_to(first + growth)
            believed = {"zero": 0, "right": first, "old key's": old, "stale": first // 2}[belief]
            client, checkpoint = after.client(believed)
            outcome, evidence = exchange(client, w, origin=ROTATED.name)
            assert not evidence
            if honest:
                assert isinstance(outcome, Witnessed) and w.cosigned(ROTATED.name)[0] == checkpoint
            else:
                assert isinstance(outcome, Refused) and outcome.status == 422
                assert w.cosigned(ROTATED.name)[0].size == first


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


@settings(max_examples=150)
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
