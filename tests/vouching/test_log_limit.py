"""A log rate-limited per call site (vouching.log_limit)."""

import itertools
import logging
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vouching.log_limit import RateLimit


def _record(line: int, fields: dict[str, object] | None = None) -> logging.LogRecord:
    record = logging.LogRecord("gossip.sync_service", logging.INFO, "/x/sync_service.py", line,
                               "sync request from %s refused", ("peer",), None)
    if fields is not None:
        record.fields = fields
    return record


@given(st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.floats(0, 5)), max_size=300),
       st.integers(1, 5), st.floats(0.5, 10))
def test_each_call_site_writes_at_most_burst_lines_a_window_and_counts_the_rest(events, burst, window):
    """Every record is either written or counted in the `suppressed` of its site's next written line (or still
    pending), and no span shorter than `window` holds more than 2 x `burst` written lines of a site (its windows
    are fixed: one starts at the first line after the last ended)."""
    now = [0.0]
    limit = RateLimit(burst, window, clock=lambda: now[0])
    written: dict[int, list[float]] = {}
    reported = 0
    for line, step in events:
        now[0] += step
        record = _record(line)
        if limit.filter(record):
            written.setdefault(line, []).append(now[0])
            reported += getattr(record, "fields", {}).get("suppressed", 0)
    pending = sum(site.suppressed for site in limit._sites.values())
    assert sum(map(len, written.values())) + reported + pending == len(events)
    for times in written.values():
        assert all(times[i + 2 * burst] - times[i] >= window for i in range(len(times) - 2 * burst))


def test_a_flood_from_one_call_site_leaves_another_written_and_says_what_it_suppressed():
    now = [0.0]
    limit = RateLimit(3, 10, clock=lambda: now[0])
    assert [limit.filter(_record(1)) for _ in range(1000)] == [True] * 3 + [False] * 997
    assert limit.filter(_record(2))
    now[0] = 9.9
    assert not limit.filter(_record(1))
    now[0] = 10.0
    first = _record(1, {"peer": "p"})
    assert limit.filter(first)
    assert first.fields == {"peer": "p", "suppressed": 998}
    second = _record(1)
    assert limit.filter(second) and not hasattr(second, "fields")


def test_a_limit_needs_a_burst_and_a_window():
    with pytest.raises(ValueError, match="burst >= 1 and window > 0"):
        RateLimit(0, 10)
    with pytest.raises(ValueError, match="burst >= 1 and window > 0"):
        RateLimit(1, float("nan"))


def test_records_logged_from_many_threads_at_once_are_each_written_or_counted_once():
    """The SDK's logger (node.client._log.LIMIT) filters a sync client's calls from its caller's threads; before,
    two threads counting at once lost counts and wrote more than `burst` lines. The windows roll over meanwhile."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a thread switch between any two bytecodes, as a loaded host's may be
    ticks = itertools.count()
    limit = RateLimit(5, 20.0, clock=lambda: next(ticks))  # a new window every 20 records
    written = []
    start = threading.Barrier(8)

    def log() -> None:
        start.wait()
        for _ in range(5_000):
            record = _record(1)
            if limit.filter(record):
                written.append(getattr(record, "fields", {}).get("suppressed", 0))

    try:
        threads = [threading.Thread(target=log) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    windows = next(ticks) // 20
    assert len(written) <= 5 * (windows + 1)
    assert len(written) + sum(written) + limit._sites["/x/sync_service.py", 1].suppressed == 40_000
