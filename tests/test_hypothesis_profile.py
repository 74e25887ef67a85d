"""Property tests run under tests/conftest.py's hypothesis profile: no deadline on an example's time."""

import time

from hypothesis import given, settings, strategies as st


@settings(max_examples=1)  # a test's own settings too
@given(st.none())
def test_an_example_slower_than_hypothesis_default_deadline_passes(_: None) -> None:
    """An example taking 0.3 s, as one did on a loaded 2-core CI box, passes: hypothesis' default deadline (200 ms,
    250 ms while generating) failed it with DeadlineExceeded."""
    time.sleep(0.3)  # the example's time on a loaded machine: no wait for anything
