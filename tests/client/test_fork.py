"""The SDK made before a fork and used in the forked child (node.client._fork): a pre-fork server's worker, as
gunicorn --preload forks them after the service made its Vouchnet at import."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time

import pytest

from node.client import LOG_LIMIT, TelemetryCollector, TrustPolicy, Vouchnet
from node.client._log import log

from .running_node import GOOD_EVENTS


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_service_made_before_a_fork_decides_reports_and_follows_the_stream_in_the_forked_worker(running):
    """The worker had none of the parent's threads: its events were never sent by its sender, and those waiting in
    the parent as it forked went twice when flushed (the parent sent them too); its policy never followed the stream
    again. The worker starts afresh: its own events once, its own stream (a reset as it connects)."""
    agent, credential = running.new_agent(trusted=True)
    reset = threading.Event()
    vouchnet = Vouchnet(running.url, policy=TrustPolicy(running.url, on_reset=reset.set),
                        telemetry=TelemetryCollector(running.url, running.token, flush_interval=3600))
    assert vouchnet.authorize_sync(credential, "tool_call", "search").allowed
    assert vouchnet.policy.stream_connected.wait(10) and reset.wait(10)
    vouchnet.telemetry.record_tool_call(agent, "search")  # waiting in the parent as it forks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: it reports back through the pipe, and never returns into pytest
        try:
            reset.clear()
            decision = vouchnet.authorize_sync(credential, "tool_call", "search")
            vouchnet.telemetry.record_tool_call(agent, "search")
            flushed = vouchnet.telemetry.flush(timeout=10)
            said = [decision.verdict, flushed, vouchnet.telemetry.stats.sent, reset.wait(10)]
        except BaseException as error:  # noqa: BLE001 - said to the parent, whatever it is
            said = [repr(error)]
        os.write(write, json.dumps(said).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = json.loads(pipe.read())
    os.waitpid(pid, 0)
    vouchnet.close()
    assert said == ["allow", True, 1, True]
    assert running.first_hand_events(agent) == GOOD_EVENTS + 2  # the parent's event and the worker's, once each


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_line_logged_in_a_forked_worker_is_written_though_a_thread_was_inside_the_log_limit_as_it_forked(
        monkeypatch):
    """The SDK's log limit (node.client.LOG_LIMIT) kept its lock across the fork: held by a thread of the parent
    inside the filter at that instant, it stayed held in the worker, whose first line of the SDK's logger waited for
    ever. The worker's limit gets a lock of its own."""
    parent, inside, leave = os.getpid(), threading.Event(), threading.Event()

    def clock() -> float:  # the filter reads it holding its lock: the parent's logging thread waits here
        if os.getpid() == parent and threading.current_thread().name == "logging-as-it-forks":
            inside.set()
            leave.wait(10)
        return time.monotonic()

    monkeypatch.setattr(LOG_LIMIT, "_clock", clock)
    logging_thread = threading.Thread(target=log.warning, args=("in the parent as it forks",),
                                      name="logging-as-it-forks")
    logging_thread.start()
    assert inside.wait(10)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: it says it logged, and never returns into pytest
        log.warning("in the worker")
        os.write(write, b"logged")
        os._exit(0)
    os.close(write)
    try:
        said = os.read(read, 16) if select.select([read], [], [], 10)[0] else b""
    finally:
        leave.set()
        logging_thread.join(10)
        os.close(read)
        if not said:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert said == b"logged"
