"""The node's time (node.node_time): never below the floor, never ahead of both the clock and the floor, and a
clock that stays right for the hold is taken, whatever came before (steps either way, a clock oscillating about the
day's threshold, an empty log, a seal)."""

import itertools
import random
import sys
import threading
from collections.abc import Callable

from hypothesis import example, given
from hypothesis import strategies as st

from node.clock_hold import CLOCK_HOLD_FILE, Hold, read_hold, write_hold
from node.node_time import CLOCK_HOLD_SECONDS, DAY_MS, NodeTime

from .kill_points import killed_at
from .telemetry_node import Clock

YEAR_MS = 365 * DAY_MS
STEPS = st.lists(st.one_of(
    st.tuples(st.just("step"), st.integers(-YEAR_MS, YEAR_MS)),  # NTP, a VM resumed, an operator
    st.tuples(st.just("step"), st.sampled_from([DAY_MS - 1, DAY_MS, DAY_MS + 1, -DAY_MS - 1])),  # about the threshold
    st.tuples(st.just("run"), st.integers(0, 2 * DAY_MS)),
    st.tuples(st.just("seal"), st.integers(0, DAY_MS)),  # the end of an epoch closed by the node's time
    st.tuples(st.just("read"), st.booleans()),  # True: a batch accepted at the time read, the new floor
), max_size=40)


@given(STEPS, st.integers(0, YEAR_MS))
@example([("read", True), ("step", DAY_MS + 1), ("read", True), ("run", 1), ("step", -DAY_MS - 1), ("read", False),
          ("step", DAY_MS - 1), ("read", False)], 0)  # held at the floor, put back below it, then about the threshold
# a day of monotonic time read as 86399.99999999999 s
@example([("run", 29564199), ("seal", 0), ("step", DAY_MS - 1), ("run", 29564199)], 2)
def test_the_node_s_time_keeps_to_the_floor_and_the_clock_and_takes_a_clock_right_for_the_hold(steps, right):
    clock = Clock(now=YEAR_MS * 50)
    node_time, floor = NodeTime(clock, clock.monotonic), 0
    for kind, value in steps:
        if kind == "step":
            clock.now = max(0, clock.now + value)
        elif kind == "run":
            clock.run(value)
        elif kind == "seal":
            floor = max(floor, node_time.now(floor) - value)
        else:
            now = node_time.now(floor)
            assert floor <= now <= max(clock.now, floor)
            if value:
                floor = now
    clock.now = max(clock.now, floor) + right  # the clock put right, wherever it was
    node_time.now(floor)
    clock.run(int(CLOCK_HOLD_SECONDS * 1000))
    assert node_time.now(floor) == clock.now
    assert not node_time.held


HOUR_MS = 3600 * 1000


def test_a_node_restarted_every_6_hours_after_a_3_day_stop_takes_its_clock_after_a_day_of_hold_in_all(tmp_path):
    """A crash loop (or a daily deploy) after a stop of over a day: each run goes on with the hold the last saved
    (clock.hold), its time running on from where the last left it, and the clock is taken after a day of hold in
    all. Each run reads the node's time every half hour, saving the hold after each (node.hold_saver saves it more
    often), the last at its end, and is killed: nothing is saved as it stops."""
    clock = Clock(now=YEAR_MS * 50)
    stopped, hold_file = clock.now, tmp_path / CLOCK_HOLD_FILE
    clock.now += 3 * DAY_MS
    floor = stopped
    for run in range(4):
        clock.mono = 1e6 * run  # a new process, whose monotonic clock reads anything
        node_time = NodeTime(clock, clock.monotonic, hold_file)
        for half_hours in range(13):
            floor = node_time.now(floor)  # a batch accepted at the node's time
            node_time.save()
            held = run * 6 * HOUR_MS + half_hours * HOUR_MS // 2
            if held < DAY_MS:
                assert node_time.held and floor == stopped + held
            if half_hours < 12:
                clock.run(HOUR_MS // 2)
    assert floor == clock.now and not node_time.held
    assert not hold_file.exists()  # the hold is over: no later start goes on with it


def test_a_start_with_a_damaged_hold_file_logs_it_and_holds_the_clock_a_day_anew(tmp_path, caplog):
    hold_file = tmp_path / CLOCK_HOLD_FILE
    good = Hold(3600.0, YEAR_MS * 50)
    write_hold(hold_file, good)
    valid = hold_file.read_bytes()
    damaged = [b"", valid[:-9], b"\xff" + valid, valid.replace(b'"version": 1', b'"version": 2'),
               valid.replace(b'"version": 1', b'"version": true'), valid.replace(b"3600.0", b"-1"),
               valid.replace(b"3600.0", str(CLOCK_HOLD_SECONDS + 1).encode()), valid.replace(b"3600.0", b"NaN"),
               valid.replace(b"3600.0", b'"3600"'), valid.replace(b"3600.0", b"3600.0, \"x\": 1"),
               b"[]", b" " * 2000 + valid]
    for data in damaged:
        caplog.clear()
        hold_file.write_bytes(data)
        clock = Clock(now=good.seen_ms + 3 * DAY_MS)
        node_time = NodeTime(clock, clock.monotonic, hold_file)
        assert node_time.now(good.seen_ms - HOUR_MS) == good.seen_ms - HOUR_MS, data  # a new hold, from the floor
        assert f"{hold_file}: not a clock hold of version 1" in caplog.text, data
        node_time.save()
        assert read_hold(hold_file, CLOCK_HOLD_SECONDS) == Hold(0.0, good.seen_ms - HOUR_MS), data  # replaced
        clock.run(int(CLOCK_HOLD_SECONDS * 1000) - 1)
        assert node_time.held, data
    hold_file.write_bytes(b"garbage")
    clock = Clock(now=good.seen_ms)
    node_time = NodeTime(clock, clock.monotonic, hold_file)
    assert node_time.now(good.seen_ms) == good.seen_ms  # the clock is right
    node_time.save()
    assert not hold_file.exists()  # removed: the next start does not log it again


def test_a_hold_saved_in_a_write_killed_at_any_point_is_the_old_or_the_new(tmp_path):
    """Each point a SIGKILL can land among the write's steps (kill_points.py): the file holds the last hold saved,
    or the one being saved, never a part that starts the hold anew."""
    hold_file = tmp_path / CLOCK_HOLD_FILE
    old, new = Hold(3600.0, YEAR_MS * 50), Hold(7200.5, YEAR_MS * 50 + HOUR_MS)
    for point in itertools.count(1):
        write_hold(hold_file, old)
        if not killed_at(point, lambda: write_hold(hold_file, new)):
            break
        assert read_hold(hold_file, CLOCK_HOLD_SECONDS) in (old, new), point
    assert point > 3
    assert read_hold(hold_file, CLOCK_HOLD_SECONDS) == new


def test_a_hold_that_cannot_be_saved_is_logged_and_goes_on(tmp_path, caplog):
    hold_file = tmp_path / "gone" / CLOCK_HOLD_FILE  # a directory that is not there: every write fails
    clock = Clock(now=YEAR_MS * 50 + 3 * DAY_MS)
    node_time = NodeTime(clock, clock.monotonic, hold_file)
    assert node_time.now(YEAR_MS * 50) == YEAR_MS * 50
    node_time.save()
    assert node_time.held and f"{hold_file}: the hold of the clock not saved" in caplog.text
    clock.run(int(CLOCK_HOLD_SECONDS * 1000))
    assert node_time.now(YEAR_MS * 50) == clock.now


def test_a_reading_writes_nothing_and_a_save_before_the_first_reading_keeps_an_earlier_run_s_hold(tmp_path):
    """A reading may be on the trio thread: it never waits on the disk (node.hold_saver writes the hold). A save
    before the first reading, which reads the earlier run's hold, would have removed it as a hold that is over."""
    hold_file, seen = tmp_path / CLOCK_HOLD_FILE, YEAR_MS * 50
    clock = Clock(now=seen + 3 * DAY_MS)
    node_time = NodeTime(clock, clock.monotonic, hold_file)
    assert node_time.now(seen) == seen and node_time.held
    assert not hold_file.exists()
    node_time.save()
    assert read_hold(hold_file, CLOCK_HOLD_SECONDS) == Hold(0.0, seen)
    clock.run(HOUR_MS)
    restarted = NodeTime(clock, clock.monotonic, hold_file)
    restarted.save()
    assert read_hold(hold_file, CLOCK_HOLD_SECONDS) == Hold(0.0, seen)
    assert restarted.now(seen) == seen  # the hold goes on from the time seen saved


SAVES = st.lists(st.sampled_from(["run", "step ahead", "put right", "take"]), max_size=12)


@given(SAVES, st.randoms(use_true_random=False))
def test_saves_written_in_any_order_leave_the_file_as_the_last_taken_left_it(tmp_path_factory, steps, random):
    """Saves are taken on the trio thread and written on worker threads (node.hold_saver), or on the closing thread:
    whatever order they are written in, an earlier never lands over a later, neither a hold over a later one nor over
    the file's removal (which would hold a clock that is right for up to a day after a restart)."""
    hold_file = tmp_path_factory.mktemp("hold") / CLOCK_HOLD_FILE
    clock, floor = Clock(now=YEAR_MS * 50), YEAR_MS * 50
    node_time, taken = NodeTime(clock, clock.monotonic, hold_file), []
    node_time.now(floor)
    for step in steps:
        if step == "run":
            clock.run(HOUR_MS)
        elif step == "step ahead":
            clock.now += 3 * DAY_MS
        elif step == "put right":
            clock.now = node_time.now(floor)
        else:
            node_time.now(floor)
            if (save := node_time.to_save()) is not None:
                taken.append(save)
    last = max(taken, key=lambda save: save.order, default=None)
    random.shuffle(taken)
    for save in taken:
        node_time.write(save)
    assert read_hold(hold_file, CLOCK_HOLD_SECONDS) == (None if last is None else last.hold)


def test_readings_and_saves_on_many_threads_at_once_neither_deadlock_nor_leave_a_stale_file(tmp_path):
    """The ingest reads the node's time on worker threads, the digest service on the trio thread, the saver writes
    on another and the audit log as it closes, while the clock steps ahead, is put right and steps again: no reading
    waits on another lock than the node time's own (none is taken while it is held), none fails or falls below the
    floor, and the save after them all leaves the file as the hold stands (no hold over a hold that ended, no removal
    under one that goes on)."""
    hold_file, floor = tmp_path / CLOCK_HOLD_FILE, YEAR_MS * 50
    clock = Clock(now=floor)
    node_time = NodeTime(clock, clock.monotonic, hold_file)
    node_time.now(floor)
    stop, read_since_step, failures, readings = threading.Event(), threading.Event(), [], [0]

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                while not stop.is_set():
                    work()
            except BaseException as error:  # (reported by the test's thread)
                failures.append(error)
        return run

    def read() -> None:
        assert node_time.now(floor) >= floor
        readings[0] += 1
        read_since_step.set()

    def save() -> None:
        if (taken := node_time.to_save()) is not None:
            node_time.write(taken)

    threads = [threading.Thread(target=guarded(work)) for work in (read, read, read, save, save)]
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between about any two bytecodes (a race shows in a few runs)
    try:
        for thread in threads:
            thread.start()
        steps = random.Random(7)
        for _ in range(300):
            read_since_step.clear()
            match steps.choice(["step ahead", "put right", "run"]):
                case "step ahead":
                    clock.now += 3 * DAY_MS
                case "put right":
                    clock.now = floor + round(clock.mono * 1000)
                case "run":
                    clock.run(HOUR_MS)
            assert read_since_step.wait(timeout=30), "deadlocked"  # (each state of the clock is read at least once)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        sys.setswitchinterval(switch_interval)
    assert not any(thread.is_alive() for thread in threads), "deadlocked"
    assert failures == [] and readings[0] > 0
    node_time.now(floor)
    node_time.save()
    assert (read_hold(hold_file, CLOCK_HOLD_SECONDS) is not None) == node_time.held
