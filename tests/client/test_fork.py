"""The SDK made before a fork and used in the forked child (node.client._fork): a pre-fork server's worker, as
gunicorn --preload forks them after the service made its Vouchnet at import."""

from __future__ import annotations

import json
import os
import threading

import pytest

from node.client import TelemetryCollector, TrustPolicy, Vouchnet

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
