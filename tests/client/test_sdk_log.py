"""The SDK's log bounded per call site (node.client._log.LIMIT, DESIGN §8): a caller's flood of requests writes a
burst of lines into the service's log, and counts the rest."""

from __future__ import annotations

import logging

import pytest

from node.client import LOG_LIMIT, A2ATrust, TrustPolicy
from vouching.log_limit import BURST, WINDOW_S

from .running_node import on_asyncio


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """The SDK limit's clock, moved by the test."""
    now = [0.0]
    monkeypatch.setattr(LOG_LIMIT, "_clock", lambda: now[0])
    return now


def _lines(caplog, start: str) -> list[str]:
    return [logging.Formatter("%(message)s").format(r) for r in caplog.records if r.getMessage().startswith(start)]


def test_a_flood_of_blocked_decisions_writes_a_burst_and_counts_the_rest(running, clock, caplog):
    """10,000 callers refused (their credentials did not verify) write BURST `trust decision` lines in the
    service's own log format; the first line of the next window says how many were left out."""
    policy = TrustPolicy(running.url, listen=False)
    try:
        with caplog.at_level(logging.WARNING, logger="vouchnet.client"):
            for _ in range(10_000):
                policy.unverified("tool_call", "search", "bad signature")
            assert len(_lines(caplog, "trust decision")) == BURST
            clock[0] = WINDOW_S
            policy.unverified("tool_call", "search", "bad signature")
    finally:
        policy.close()
    lines = _lines(caplog, "trust decision")
    assert len(lines) == BURST + 1
    assert lines[-1].endswith(f" suppressed={10_000 - BURST}")
    assert caplog.records[-1].fields["suppressed"] == 10_000 - BURST


@on_asyncio
async def test_a_flood_of_a2a_tasks_writes_a_burst_of_each_line(running, clock, caplog):
    """An untrusted agent sending 1,000 A2A tasks: BURST `a2a incoming` lines and BURST `trust decision` lines."""
    stranger, _ = running.new_agent(trusted=False)
    policy = TrustPolicy(running.url, listen=False)
    trust = A2ATrust(policy)
    with caplog.at_level(logging.INFO, logger="vouchnet.client"):
        for task in range(1_000):
            assert (await trust.verify_incoming(stranger, f"task-{task}")).verdict == "block"
    await policy.aclose()
    assert (len(_lines(caplog, "a2a incoming")), len(_lines(caplog, "trust decision"))) == (BURST, BURST)


def test_the_limit_is_on_the_sdks_logger_only():
    """The service's other loggers, its handlers and the root logger are left as they were."""
    assert LOG_LIMIT in logging.getLogger("vouchnet.client").filters
    assert LOG_LIMIT not in logging.getLogger().filters
    assert not any(LOG_LIMIT in handler.filters for handler in logging.getLogger().handlers)
