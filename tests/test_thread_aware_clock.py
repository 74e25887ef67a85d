"""tests/conftest.py's thread_aware clocks (thread_aware_clock, loopback_clock): mock clocks that stand still while a
worker thread runs."""

import time

import anyio
import trio


async def test_a_worker_thread_taking_real_time_does_not_run_a_deadline_out(thread_aware_clock):
    """Found by stop 45's review: an autojumping MockClock jumped to a fail_after's deadline while a worker thread
    worked, longer than its threshold (a recompute, a write on a loaded machine), failing the test for nothing."""
    with trio.fail_after(1):
        await trio.to_thread.run_sync(time.sleep, 0.2)  # (real time: 20 times the threshold)
    assert trio.current_time() == 0


async def test_threads_started_by_anyio_and_trio_path_hold_the_clock_too(thread_aware_clock, tmp_path):
    """Both bind trio.to_thread.run_sync when imported: a clock that counted the threads by patching that name missed
    theirs (the SDK's identity refresh and telemetry shutdown run on anyio's)."""
    with trio.fail_after(1):
        await anyio.to_thread.run_sync(time.sleep, 0.2)
        await trio.Path(tmp_path).iterdir()
    assert trio.current_time() == 0


async def test_the_loopback_clock_stands_still_while_a_worker_thread_runs(loopback_clock):
    with trio.fail_after(1):
        await trio.to_thread.run_sync(time.sleep, 0.2)
    assert trio.current_time() == 0


async def test_it_jumps_once_every_task_waits_and_no_worker_thread_runs(thread_aware_clock):
    began = time.monotonic()
    await trio.to_thread.run_sync(time.sleep, 0.05)
    for _ in range(100):  # (as pytest-trio's autojump_clock: no wall time waited before each jump, once threads end)
        await trio.sleep(3600)
    assert trio.current_time() == 360_000 and time.monotonic() - began < 60
