"""tests/node/conftest.py's thread_aware_clock: a mock clock that stands still while a worker thread runs."""

import time

import trio


async def test_a_worker_thread_taking_real_time_does_not_run_a_deadline_out(thread_aware_clock):
    """Found by stop 45's review: an autojumping MockClock jumped to a fail_after's deadline while a worker thread
    worked, longer than its threshold (a recompute, a write on a loaded machine), failing the test for nothing."""
    with trio.fail_after(1):
        await trio.to_thread.run_sync(time.sleep, 0.2)  # (real time: 20 times the threshold)
    assert trio.current_time() == 0


async def test_it_jumps_once_every_task_waits_and_no_worker_thread_runs(thread_aware_clock):
    began = time.monotonic()
    await trio.sleep(3600)
    assert trio.current_time() == 3600 and time.monotonic() - began < 60
