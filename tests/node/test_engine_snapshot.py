"""A start from engine.snapshot (node.engine_snapshot) is a full replay's: the snapshot's engine plus the records after
it give the engine state and the scores that replaying every record gives, and a snapshot that cannot stand in for
its records is not used, the start replaying every record and saying why in one log line."""

import errno
import itertools
import logging
import tempfile
import threading
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import node.trust as node_trust
from node import engine_snapshot
from node.metrics import Registry
from node.stream import Broadcaster
from node.trust import TrustService
from vouching import vouch_body
from vouching.engine_state import capture
from vouching.params import HOUR_MS
from vouching.policy import Policy

from ..factories import Org, new_did
from .fake_node import FakeNode, fake_node
from .kill_points import killed_at
from .test_trust_replay import _digest, _expiry

AGENTS = [new_did() for _ in range(3)]
ORGS = 4
END = Org.ts + 40 * HOUR_MS
_hours = st.none() | st.integers(1, 30)
operations = st.lists(st.one_of(
    st.tuples(st.just("agent-vouch"), st.integers(0, ORGS - 1), st.integers(0, 2), st.sampled_from([0.3, 1.0]),
              st.sampled_from(["operator", "audit", "developer"]), _hours),
    st.tuples(st.just("org-vouch"), st.integers(0, ORGS - 1), st.integers(0, ORGS - 1), st.sampled_from([0.3, 1.0]),
              _hours),
    st.tuples(st.just("revoke"), st.integers(0, ORGS - 1), st.integers(0, 10)),
    st.tuples(st.just("digest"), st.integers(0, ORGS - 1), st.integers(0, 2), st.integers(0, 9), st.integers(0, 30),
              st.integers(0, 3)),
    st.tuples(st.just("own-digest"), st.integers(0, 2), st.integers(0, 9), st.integers(0, 30), st.integers(0, 3)),
    st.tuples(st.just("fork"), st.integers(0, ORGS - 1)),
    st.tuples(st.just("rotate"), st.integers(0, ORGS - 1)),
    st.tuples(st.just("own-vouch"), st.integers(0, ORGS - 1), st.sampled_from([0.3, 1.0])),
), max_size=30)


def _service(node: FakeNode, snapshot_dir: Path | None = None, metrics: Registry | None = None) -> TrustService:
    metrics = metrics or Registry()
    return TrustService(node.replica, roots=(ROOT[0],), policy=Policy(), broadcaster=Broadcaster(metrics),
                        metrics=metrics, recompute_interval=60, epoch_ms=HOUR_MS, clock=lambda: END,
                        snapshot_dir=snapshot_dir)


ROOT: list[str] = [""]


def _started(node: FakeNode, snapshot_dir: Path | None = None) -> TrustService:
    trust = _service(node, snapshot_dir)
    for _ in trust.replaying(()):
        pass
    return trust


def _apply(node: FakeNode, orgs: list[Org], vouches: dict[int, list], op: tuple) -> None:
    kind = op[0]
    org = orgs[op[1]] if kind not in ("own-digest",) else None
    if kind == "agent-vouch":
        _, i, agent, weight, basis, hours = op
        vouches[i].append(org.record("vouch", vouch_body(AGENTS[agent], weight, basis, expires=_expiry(hours))))
        node.replica.accept(vouches[i][-1:])
    elif kind == "org-vouch" and op[1] != op[2]:
        _, i, subject, weight, hours = op
        vouches[i].append(org.record("vouch", vouch_body(orgs[subject].did, weight, "org-peer",
                                                         expires=_expiry(hours))))
        node.replica.accept(vouches[i][-1:])
    elif kind == "revoke" and vouches[op[1]]:
        mine = vouches[op[1]]
        node.replica.accept([org.revoke(mine[op[2] % len(mine)])])
    elif kind == "digest":
        node.replica.accept([_digest(org, AGENTS[op[2]], *op[3:])])
    elif kind == "own-digest":
        record = _digest(Org(), AGENTS[op[1]], *op[2:])
        node.replica.issue("digest", record.body.to_wire())
    elif kind == "fork" and org.seq:
        node.replica.accept([org.fork(org.seq, org.prev if org.seq > 1 else None)])
    elif kind == "rotate":
        orgs[op[1]], rotation, first = org.rotate()
        node.replica.accept([rotation, first])
    elif kind == "own-vouch":
        node.replica.issue("vouch", vouch_body(org.did, op[2], "org-peer"))


def _same_engines(a: TrustService, b: TrustService, digest_ids: list[bytes]) -> None:
    assert capture(a.engine) == capture(b.engine)
    assert len(a.engine._seen_digests) == len(b.engine._seen_digests)
    assert not any(b.engine._seen_digests.add(rid) for rid in digest_ids if a.engine._seen_digests.add(rid) is False)
    a.engine.recompute(now=END)
    b.engine.recompute(now=END)
    for agent in AGENTS:
        assert a.engine.explain(agent, now=END) == b.engine.explain(agent, now=END)
        assert a.score(agent) == b.score(agent)
    assert a.engine.orgs(now=END) == b.engine.orgs(now=END)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations, st.data())
def test_a_snapshot_and_the_records_after_it_give_a_full_replay_s_engine_and_scores(ops, data):
    at = data.draw(st.integers(0, len(ops)), label="snapshot after op")
    orgs = [Org() for _ in range(ORGS)]
    ROOT[0] = orgs[0].did
    vouches: dict[int, list] = {i: [] for i in range(ORGS)}
    with tempfile.TemporaryDirectory() as directory, fake_node(Path(directory)) as node, \
            pytest.MonkeyPatch.context() as patch:
        patch.setattr(node_trust, "SNAPSHOT_AFTER", 0)
        for org in orgs[:3]:
            node.replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
        for op in ops[:at]:
            _apply(node, orgs, vouches, op)
        _write_start_snapshot(node, Path(directory))
        covered = node.replica.store.size
        for op in ops[at:]:
            _apply(node, orgs, vouches, op)
        digests = [rid for rid, _ in node.replica.store.ids_of("digest", before=node.replica.store.size)]
        restarted = _started(node, Path(directory))
        assert restarted._snapshot_covers == covered  # (a rotation makes a fresh key: no key counted is joined)
        _same_engines(_started(node), restarted, digests)


def _write_start_snapshot(node: FakeNode, directory: Path) -> None:
    trust = _started(node, directory)
    assert trust._replayed is not None
    engine_snapshot.write(directory, trust._replayed)


def _filled(node: FakeNode, records: int) -> None:
    """`records` records in the node's ledger: its vouch for an org and that org's digests."""
    org = Org()
    node.replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
    node.replica.accept([_digest(org, AGENTS[n % 3], n % 10, 5, n % 2) for n in range(records - 1)])


def _fell_back(node: FakeNode, directory: Path, caplog: pytest.LogCaptureFixture, why: str) -> None:
    """A start from `directory` replays every record, saying `why` in its one line about the snapshot, and its
    engine is a full replay's."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="node.trust"):
        restarted = _started(node, directory)
    lines = [r.getMessage() for r in caplog.records if "engine.snapshot" in r.getMessage()]
    assert len(lines) == 1 and "replaying every record" in lines[0] and why in lines[0], lines
    assert restarted._snapshot_covers == 0
    _same_engines(_started(node), restarted, [])


@pytest.fixture
def snapshotted(tmp_path, monkeypatch):
    """A node of 8 records whose snapshot covers them, in tmp_path / "a"."""
    monkeypatch.setattr(node_trust, "SNAPSHOT_AFTER", 0)
    ROOT[0] = new_did()
    (tmp_path / "a").mkdir()
    with fake_node(tmp_path / "a") as node:
        _filled(node, 8)
        _write_start_snapshot(node, tmp_path / "a")
        yield node, tmp_path / "a" / engine_snapshot.SNAPSHOT_FILE


@pytest.mark.parametrize("damage, why", [
    (lambda data: data[:len(data) // 2], "damaged"),
    (lambda data: data[:-40] + bytes(b ^ 0xFF for b in data[-40:-20]) + data[-20:], "damaged"),
    (lambda data: b"", "not an engine snapshot"),
], ids=["truncated", "corrupt", "empty"])
def test_a_damaged_snapshot_is_replayed_past(snapshotted, caplog, damage, why):
    node, path = snapshotted
    path.write_bytes(damage(path.read_bytes()))
    _fell_back(node, path.parent, caplog, why)


def test_a_snapshot_of_another_format_is_replayed_past(snapshotted, caplog, monkeypatch):
    node, path = snapshotted
    snapshot = engine_snapshot.read(path.parent)
    with monkeypatch.context() as later:
        later.setattr(engine_snapshot, "FORMAT", 2)
        engine_snapshot.write(path.parent, snapshot)
    _fell_back(node, path.parent, caplog, "format 2")


@pytest.mark.parametrize("records, why", [(5, "the ledger holds 5"), (8, "not those it covers")],
                         ids=["shorter-ledger", "same-size-other-root"])
def test_a_snapshot_of_another_ledger_is_replayed_past(snapshotted, tmp_path, caplog, records, why):
    _, path = snapshotted
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / path.name).write_bytes(path.read_bytes())
    with fake_node(tmp_path / "b") as other:
        _filled(other, records)
        _fell_back(other, tmp_path / "b", caplog, why)


def test_other_roots_or_a_key_joined_since_are_replayed_past(snapshotted, caplog):
    node, path = snapshotted
    ROOT[0] = new_did()
    _fell_back(node, path.parent, caplog, "the own org or the roots differ")
    known, earlier = Org(), Org()
    for org in (known, earlier):
        node.replica.issue("vouch", vouch_body(org.did, 0.5, "org-peer"))
    _write_start_snapshot(node, path.parent)
    _, rotation, first = earlier.rotate(known)  # a key the snapshot counts as an org turns out to be a later key
    assert len(node.replica.accept([rotation, first]).accepted) == 2
    _fell_back(node, path.parent, caplog, "a rotation since has joined a key")


def test_a_write_killed_at_any_point_leaves_the_old_snapshot_usable(snapshotted, caplog):
    node, path = snapshotted
    old = path.read_bytes()
    _filled(node, 4)
    newer = _started(node, path.parent)._replayed
    for point in itertools.count(1):  # each point a SIGKILL can land among the write's steps (kill_points.py)
        path.write_bytes(old)
        if not killed_at(point, lambda: engine_snapshot.write(path.parent, newer)):
            break
        restarted = _started(node, path.parent)
        assert restarted._snapshot_covers in (8, node.replica.store.size), point
        assert restarted._snapshot_covers != 8 or path.read_bytes() == old, point
        _same_engines(_started(node), restarted, [])
    assert point > 3


def test_a_running_node_brings_the_snapshot_forward_as_a_start_would_have(snapshotted, caplog):
    """`_keep_snapshot`'s step: the snapshot's engine fed the records since, a chunk at a time, is written to cover
    them all, and a start from it is a full replay's."""
    node, path = snapshotted
    running = _started(node, path.parent)
    _filled(node, 5)
    trio.run(running._bring_snapshot_forward, node.replica.store.size)
    assert engine_snapshot.read(path.parent).size == running._snapshot_covers == node.replica.store.size == 13
    restarted = _started(node, path.parent)
    assert restarted._snapshot_covers == 13
    _same_engines(_started(node), restarted, [])



def test_the_records_the_snapshot_covers_and_its_failed_writes_show(snapshotted, monkeypatch):
    """For an operator's alert: a snapshot that cannot be written costs every start a longer replay."""
    def full(directory, snapshot):
        raise OSError(errno.ENOSPC, "No space left on device", str(directory))

    node, path = snapshotted
    metrics = Registry()
    running = _service(node, path.parent, metrics)
    for _ in running.replaying(()):
        pass
    _filled(node, 5)
    assert metrics.value("engine_snapshot_records") == 8
    with monkeypatch.context() as disk:
        disk.setattr(engine_snapshot, "write", full)
        trio.run(running._bring_snapshot_forward, node.replica.store.size)
    assert (metrics.value("engine_snapshot_write_failures_total"), metrics.value("engine_snapshot_records")) == (1, 8)
    trio.run(running._bring_snapshot_forward, node.replica.store.size)
    assert (metrics.value("engine_snapshot_write_failures_total"), metrics.value("engine_snapshot_records")) == (1, 13)
    path.write_bytes(b"")
    metrics = Registry()
    for _ in _service(node, path.parent, metrics).replaying(()):
        pass
    assert metrics.value("engine_snapshot_records") == 0  # not usable: every record replayed


async def test_a_start_loads_the_snapshot_off_the_event_loop(snapshotted, monkeypatch):
    """Decoding engine.snapshot takes seconds at 10^6 records: on the loop, a SIGTERM waited for it (a node stops
    within 2 s)."""
    node, path = snapshotted
    threads = {}
    for name in ("read", "install"):  # decoding the file, and building the engine from it
        step = getattr(engine_snapshot, name)
        monkeypatch.setattr(engine_snapshot, name, lambda *a, step=step, name=name, **k: (
            threads.setdefault(name, threading.current_thread()), step(*a, **k))[1])
    trust = _service(node, path.parent)
    await trust.load_snapshot()
    for _ in trust.replaying(()):
        pass
    assert trust._snapshot_covers == node.replica.store.size
    assert len(threads) == 2 and threading.main_thread() not in threads.values()
