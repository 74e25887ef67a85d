"""The clock hold's saver (node.hold_saver): a held node saves its hold every HOLD_SAVE_SECONDS, off the trio thread,
so that a crash loop still takes its clock after a day of hold in all."""

import json
import math
import threading

import trio
import trio.testing

import node.node_time as node_time_module
from node.clock_hold import CLOCK_HOLD_FILE, read_hold
from node.digests import DigestService
from node.hold_saver import HoldSaver
from node.node_time import CLOCK_HOLD_SECONDS, DAY_MS, HOLD_SAVE_SECONDS

from ..factories import new_did
from .telemetry_node import Clock, telemetry_node

T0 = 1_700_000_040_000
HOUR_MS = 3600 * 1000


def _stopped_three_days(tmp_path):
    """A node that accepted one event at T0, stopped; the key, and the wall clock of its next start: three days on,
    running with trio's clock."""
    with telemetry_node(tmp_path, clock=Clock(T0), epoch_ms=HOUR_MS) as node:
        event = {"agent": new_did(), "ts": T0, "category": "tool", "name": "n", "outcome": "ok"}
        assert node.ingestor.submit_json(json.dumps({"events": [event]}).encode()).body["accepted"] == 1
        key = node.key
    start = trio.current_time()

    def now() -> int:
        return T0 + 3 * DAY_MS + round((trio.current_time() - start) * 1000)

    return key, now


async def _settled() -> None:
    """Every task has done what it can at this time, its writes on worker threads included."""
    await trio.testing.wait_all_tasks_blocked()
    await trio.testing.wait_all_threads_completed()
    await trio.testing.wait_all_tasks_blocked()


async def test_an_idle_held_node_saves_its_hold_every_few_seconds(tmp_path, mock_clock):
    """A node started three days after it stopped, idle: the hold is saved as the node starts and every
    HOLD_SAVE_SECONDS after, so a crash loses that much of it at most (it was a minute, and after each restart the
    first save came a minute in), and the time the node has seen runs on with it."""
    key, now = _stopped_three_days(tmp_path)
    hold_file = tmp_path / CLOCK_HOLD_FILE
    with telemetry_node(tmp_path, key=key, clock=now, monotonic=trio.current_time, epoch_ms=HOUR_MS) as node:
        assert node.audit.time.held
        async with trio.open_nursery() as nursery:
            await nursery.start(DigestService(node.digester, node.ingestor.write_lock, clock=now).run)
            await nursery.start(HoldSaver(node.audit.time).run)
            await _settled()
            assert read_hold(hold_file, CLOCK_HOLD_SECONDS).held_seconds == 0
            for step in range(1, 200):
                mock_clock.jump(HOLD_SAVE_SECONDS / 4)
                await _settled()
                held = read_hold(hold_file, CLOCK_HOLD_SECONDS)
                ran = step * HOLD_SAVE_SECONDS / 4
                assert ran - HOLD_SAVE_SECONDS < held.held_seconds <= ran + 0.001  # (saved to the ms)
                assert held.seen_ms == T0 + round(held.held_seconds * 1000)
            nursery.cancel_scope.cancel()


async def test_a_slow_disk_does_not_stall_the_node_while_the_hold_is_saved(tmp_path, monkeypatch, mock_clock):
    """An fsync may take a second on a loaded disk: the save is written on a worker thread, and the node's other
    tasks run meanwhile (it was written on the trio thread, which waited on it)."""
    key, now = _stopped_three_days(tmp_path)
    disk_done, writing = threading.Event(), threading.Event()
    write_hold = node_time_module.write_hold

    def slow_write_hold(path, hold):
        writing.set()
        assert disk_done.wait(10), "the loop waited on the write"
        write_hold(path, hold)

    monkeypatch.setattr(node_time_module, "write_hold", slow_write_hold)
    with telemetry_node(tmp_path, key=key, clock=now, monotonic=trio.current_time, epoch_ms=HOUR_MS) as node:
        async with trio.open_nursery() as nursery:
            await nursery.start(HoldSaver(node.audit.time).run)
            assert await trio.to_thread.run_sync(writing.wait, 10)
            assert node.audit.now() == T0  # the loop reads the node's time while the write waits on the disk
            assert not (tmp_path / CLOCK_HOLD_FILE).exists()
            disk_done.set()
            await _settled()
            assert read_hold(tmp_path / CLOCK_HOLD_FILE, CLOCK_HOLD_SECONDS).held_seconds == 0
            nursery.cancel_scope.cancel()


async def test_a_node_killed_every_30_s_of_hold_takes_its_clock_after_the_hold_in_all(tmp_path, monkeypatch,
                                                                                        mock_clock):
    """A crash loop after a stop of three days: each start is killed 30 s in, just before a save, nothing saved as it
    stops. Each run goes on with the hold the last saved, and the clock is taken after the hold in all, each run
    losing HOLD_SAVE_SECONDS of it at most. It never was: a restart saved first a minute in, so a run shorter than
    that saved nothing of it, and the node held its clock for ever. The hold is an hour here, not a day, so that the
    loop is 180 starts, not 4,320 (nothing in a run depends on the hold's length)."""
    hold_seconds = 3600.0
    monkeypatch.setattr(node_time_module, "CLOCK_HOLD_SECONDS", hold_seconds)
    key, now = _stopped_three_days(tmp_path)
    run_seconds = 30
    saves_in_a_run = math.ceil(run_seconds / HOLD_SAVE_SECONDS)  # the one as it starts, and those due before the kill
    assert saves_in_a_run > 1, "a run of 30 s would save nothing of its hold"
    most_runs = int(hold_seconds // (run_seconds - HOLD_SAVE_SECONDS)) + 1
    for runs in range(most_runs + 1):
        with telemetry_node(tmp_path, key=key, clock=now, monotonic=trio.current_time, epoch_ms=HOUR_MS) as node:
            if not node.audit.time.held:
                break
            async with trio.open_nursery() as nursery:
                await nursery.start(DigestService(node.digester, node.ingestor.write_lock, clock=now).run)
                await nursery.start(HoldSaver(node.audit.time).run)
                await _settled()
                for _ in range(saves_in_a_run - 1):
                    mock_clock.jump(HOLD_SAVE_SECONDS)
                    await _settled()
                mock_clock.jump(run_seconds - (saves_in_a_run - 1) * HOLD_SAVE_SECONDS)
                nursery.cancel_scope.cancel()  # killed as the next save falls due
            monkeypatch.setattr(node.audit.time, "save", lambda: None)  # a kill saves nothing as it stops
    else:
        raise AssertionError(f"the clock still held after {runs} runs of {run_seconds} s")
    assert (runs - 1) * (run_seconds - HOLD_SAVE_SECONDS) < hold_seconds <= runs * run_seconds
    assert node.audit.now() == now()  # the clock taken
    assert not (tmp_path / CLOCK_HOLD_FILE).exists()  # and the hold's file removed: no later start goes on with it
