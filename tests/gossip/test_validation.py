"""Checkpoint equivocation evidence: accepted only when it really is two contradicting signed checkpoints; batches
checked on worker threads or with their signatures in worker processes, in order, naming the first invalid record,
and a worker process that dies costs no check."""

import multiprocessing
import os
import signal
import threading
import time

import pytest
from nacl.signing import SigningKey

import gossip.validation
from gossip.validation import MAX_KEPT_ANSWERS, ProcessChecker, ThreadedChecker, check_record, check_records
from ledger import Checkpoint, Ed25519Signer, log_origin, tree_hash
from vouching import InvalidRecord, did_key, equivocation_body, sign_record

from ..factories import Org


@pytest.fixture(scope="module")
def processes():
    """One ProcessChecker for the module's tests: starting worker processes takes a good part of a second."""
    with ProcessChecker(2) as checker:
        yield checker


def _checkpoint(key: SigningKey, size: int, entry: bytes, *, log: str = "records", network: str = "test") -> bytes:
    origin = log_origin(network, did_key(bytes(key.verify_key)), log)
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
        (lambda k, o: (_checkpoint(k, 3, b"x"), _checkpoint(k, 3, b"y", network="other")), "same log"),
        (lambda k, o: (_checkpoint(k, 3, b"x"), _checkpoint(k, 3, b"y", log="audit")), "offender's records log"),
        (lambda k, o: (_checkpoint(k, 3, b"x"), _checkpoint(o, 3, b"y")), "not of the offender"),
        (lambda k, o: (_checkpoint(k, 3, b"x"), b"junk\n"), "not a checkpoint signed by the offender"),
    ],
)
def test_anything_else_is_rejected_with_a_reason(make, message):
    cheat, other = SigningKey.generate(), SigningKey.generate()
    a, b = make(cheat, other)
    with pytest.raises(InvalidRecord, match=message):
        check_record(_evidence(Org(), cheat, a, b))


def test_two_roots_of_the_private_audit_log_at_one_size_are_not_evidence():
    """The audit log (node.audit_log) is never gossiped nor witnessed, and an org whose audit.ledger was restored from
    an older copy signs, at `vouchnet audit export`, a second root at a size it exported before: whoever holds both
    exports (an auditor) can get the org flagged as an equivocator everywhere. Its records log is protected from
    just that (gossip.witnessing: a diverged log signs no checkpoint again)."""
    honest = SigningKey.generate()
    with pytest.raises(InvalidRecord, match="records log"):
        check_record(_evidence(Org(), honest, _checkpoint(honest, 3, b"x", log="audit"),
                               _checkpoint(honest, 3, b"y", log="audit")))


def test_a_forged_signature_is_rejected():
    cheat, forger = SigningKey.generate(), SigningKey.generate()
    origin = log_origin("test", did_key(bytes(cheat.verify_key)), "records")
    forged = Checkpoint(origin, 3, tree_hash([b"y"] * 3)).sign([Ed25519Signer(origin, forger)])
    with pytest.raises(InvalidRecord, match="not a checkpoint signed by the offender"):
        check_record(_evidence(Org(), cheat, _checkpoint(cheat, 3, b"x"), forged))


def _chain(count: int) -> list[bytes]:
    org = Org()
    return [org.record().raw for _ in range(count)]


@pytest.fixture(params=["1 thread", "3 threads", "2 processes"])
def checker(request, processes):
    if request.param == "2 processes":
        yield processes
    else:
        with ThreadedChecker(int(request.param[0])) as threads:
            yield threads


def test_a_batch_comes_back_in_order(checker):
    cheat = SigningKey.generate()
    raws = _chain(10) + [_evidence(Org(), cheat, _checkpoint(cheat, 3, b"x"), _checkpoint(cheat, 3, b"y"))]
    assert [r.raw for r in checker.submit(raws).result()] == raws
    assert checker.submit([]).result() == []


def _forge(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


def test_the_first_invalid_record_of_a_batch_is_named_whichever_worker_checked_it(checker):
    raws = _chain(10)
    for bad in (4, 8):  # in the second and third of three slices
        raws[bad] = _forge(raws[bad])
    with pytest.raises(InvalidRecord, match=r"^records\[4\]: signature"):
        checker.submit(raws).result()
    with pytest.raises(InvalidRecord, match=r"^records\[8\]: signature"):
        check_records(raws, 5)


@pytest.mark.parametrize("forged,named", [(2, r"^records\[2\]: signature"), (8, r"^records\[6\]: COSE_Sign1")])
def test_a_bad_signature_and_a_malformed_record_are_told_apart_in_batch_order(checker, forged, named):
    raws = _chain(10)
    raws[forged] = _forge(raws[forged])
    raws[6] = b"\x00" * 10
    with pytest.raises(InvalidRecord, match=named):
        checker.submit(raws).result()


def _kill(process):
    os.kill(process.pid, signal.SIGKILL)
    process.join()


def test_a_worker_process_that_dies_costs_no_check():
    raws = _chain(6)
    forged = raws[:3] + [_forge(raws[3])] + raws[4:]
    others = set(multiprocessing.active_children())
    with ProcessChecker(1) as checker:
        for batch, outcome in ((raws, None), (forged, r"^records\[3\]: signature")):
            checker.submit(raws).result()  # a worker is up
            (worker,) = set(multiprocessing.active_children()) - others
            checking = checker.submit(batch)
            _kill(worker)  # most likely before it answers; the outcome must not depend on it
            if outcome is None:
                assert [r.raw for r in checking.result()] == raws  # checked by the caller instead
            else:
                with pytest.raises(InvalidRecord, match=outcome):
                    checking.result()
            assert [r.raw for r in checker.submit(raws).result()] == raws  # by a new worker
            (replacement,) = set(multiprocessing.active_children()) - others
            assert replacement is not worker


def test_a_closed_checker_leaves_no_thread_behind():
    with ThreadedChecker(2) as checker:
        checker.submit(_chain(4)).result()
    assert not [t for t in threading.enumerate() if t.name.startswith("check_records")]


def test_batches_whose_result_nobody_reads_are_not_kept_forever():
    raws = _chain(3)
    with ProcessChecker(1) as checker:
        first = checker.submit(raws)  # its reader comes back only at the end
        for _ in range(MAX_KEPT_ANSWERS + 10):
            checker.submit(raws)  # abandoned
        checker.submit(raws).result()  # reads every answer before its own
        assert len(checker._workers[0]._answers) <= MAX_KEPT_ANSWERS
        assert [r.raw for r in first.result()] == raws  # its answer was dropped: checked by the reader
        forged = raws[:1] + [_forge(raws[1])] + raws[2:]
        late = checker.submit(forged)
        for _ in range(MAX_KEPT_ANSWERS + 10):
            checker.submit(raws)
        checker.submit(raws).result()
        with pytest.raises(InvalidRecord, match=r"^records\[1\]: signature"):
            late.result()


def test_a_closed_process_checker_leaves_no_process_behind():
    before = set(multiprocessing.active_children())
    with ProcessChecker(2) as checker:
        checker.submit(_chain(4)).result()
    assert set(multiprocessing.active_children()) <= before


def test_closing_a_process_checker_does_not_wait_for_a_worker_that_holds_no_checks(monkeypatch):
    """A worker with nothing to answer was waited for up to STOP_GRACE_S: all of it in each shutdown of a node whose
    worker was still starting (spawn imports the node first) or, on a loaded CPU, slow to exit (0.5 s of the 2 s)."""
    monkeypatch.setattr(gossip.validation, "STOP_GRACE_S", 10.0)
    before = set(multiprocessing.active_children())
    with ProcessChecker(1) as checker:
        checker.submit(_chain(2)).result()  # a worker is up, and was read every answer it gave
        (worker,) = set(multiprocessing.active_children()) - before
        os.kill(worker.pid, signal.SIGSTOP)  # as one busy elsewhere: it reads no request to stop
        start = time.monotonic()
    assert time.monotonic() - start < 5.0
    assert not worker.is_alive()
