"""The node's time (node.node_time): never below the floor, never ahead of both the clock and the floor, and a
clock that stays right for the hold is taken, whatever came before (steps either way, a clock oscillating about the
day's threshold, an empty log, a seal)."""

from hypothesis import example, given
from hypothesis import strategies as st

from node.node_time import CLOCK_HOLD_SECONDS, DAY_MS, NodeTime

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
