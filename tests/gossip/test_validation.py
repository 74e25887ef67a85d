"""Checkpoint equivocation evidence: accepted only when it really is two contradicting signed checkpoints; batches
checked on worker threads, in order, naming the first invalid record."""

import threading

import pytest
from nacl.signing import SigningKey

from gossip.validation import ThreadedChecker, check_record, check_records
from ledger import Checkpoint, Ed25519Signer, log_origin, tree_hash
from vouching import InvalidRecord, did_key, equivocation_body, sign_record

from ..factories import Org


def _checkpoint(key: SigningKey, size: int, entry: bytes, *, log: str = "records") -> bytes:
    origin = log_origin("test", did_key(bytes(key.verify_key)), log)
    return Checkpoint(origin, size, tree_hash([entry] * size)).sign([Ed25519Signer(origin, key)])


def _evidence(reporter: Org, offender: SigningKey, a: bytes, b: bytes) -> bytes:
    body = equivocation_body("checkpoint", did_key(bytes(offender.verify_key)), a, b)
    return sign_record(reporter.key, "equivocation", body, seq=1, prev=None)


def test_two_roots_at_one_size_are_accepted_as_evidence():
    cheat = SigningKey.generate()
    record = check_record(_evidence(Org(), cheat, _checkpoint(cheat, 3, b"x"), _checkpoint(cheat, 3, b"y")))
    assert record.body.offender == did_key(bytes(cheat.verify_key))


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda k, o: (_checkpoint(k, 3, b"x"), _checkpoint(k, 4, b"y")), "same size"),
        (lambda k, o: (_checkpoint(k, 3, b"x"), _checkpoint(k, 3, b"y", log="other")), "same log"),
        (lambda k, o: (_checkpoint(k, 3, b"x"), _checkpoint(o, 3, b"y")), "not of the offender"),
        (lambda k, o: (_checkpoint(k, 3, b"x"), b"junk\n"), "not a checkpoint signed by the offender"),
    ],
)
def test_anything_else_is_rejected_with_a_reason(make, message):
    cheat, other = SigningKey.generate(), SigningKey.generate()
    a, b = make(cheat, other)
    with pytest.raises(InvalidRecord, match=message):
        check_record(_evidence(Org(), cheat, a, b))


def test_a_forged_signature_is_rejected():
    cheat, forger = SigningKey.generate(), SigningKey.generate()
    origin = log_origin("test", did_key(bytes(cheat.verify_key)), "records")
    forged = Checkpoint(origin, 3, tree_hash([b"y"] * 3)).sign([Ed25519Signer(origin, forger)])
    with pytest.raises(InvalidRecord, match="not a checkpoint signed by the offender"):
        check_record(_evidence(Org(), cheat, _checkpoint(cheat, 3, b"x"), forged))


def _chain(count: int) -> list[bytes]:
    org = Org()
    return [org.record().raw for _ in range(count)]


@pytest.mark.parametrize("threads", [1, 3])
def test_a_batch_checked_on_threads_comes_back_in_order(threads):
    raws = _chain(10)
    with ThreadedChecker(threads) as checker:
        assert [r.raw for r in checker.submit(raws).result()] == raws
        assert checker.submit([]).result() == []


def test_the_first_invalid_record_of_a_batch_is_named_whichever_thread_checked_it():
    raws = _chain(10)
    for bad in (4, 8):  # in the second and third of three slices
        raws[bad] = raws[bad][:-1] + bytes([raws[bad][-1] ^ 1])
    with ThreadedChecker(3) as checker, pytest.raises(InvalidRecord, match=r"^records\[4\]: signature"):
        checker.submit(raws).result()
    with pytest.raises(InvalidRecord, match=r"^records\[8\]: signature"):
        check_records(raws, 5)


def test_a_closed_checker_leaves_no_thread_behind():
    with ThreadedChecker(2) as checker:
        checker.submit(_chain(4)).result()
    assert not [t for t in threading.enumerate() if t.name.startswith("check_records")]
