"""node.record_time: a record's time as the CLI and the node's messages print it."""

import pytest

from node.record_time import record_time


@pytest.mark.parametrize(("ms", "printed"), [
    (0, "1970-01-01T00:00:00Z"),
    (1_764_422_265_999, "2025-11-29T13:17:45Z"),  # to the second, the milliseconds left out
    (2**63 - 1, f"{2**63 - 1} ms after the epoch"),  # a valid record may name a time past year 9999
    (253_402_300_800_000, "253402300800000 ms after the epoch"),  # year 10000: past what datetime holds
])
def test_a_record_time_prints_as_utc_to_the_second_or_as_ms_past_what_a_date_holds(ms, printed):
    assert record_time(ms) == printed
