"""Fixtures of the node tests: a fake node over a real replica, its API served on 127.0.0.1, and a mock clock that
stands still while a worker thread runs."""

from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from node.api import create_app
from node.api.http_server import serve

from .fake_node import fake_node
from .forked_cli import ForkedCli


@pytest.fixture
def node(tmp_path):
    (tmp_path / "node").mkdir()
    with fake_node(tmp_path / "node") as node:
        yield node


@pytest.fixture
async def url(node):
    """The base URL of the node's API, served as the daemon serves it, on a free port of 127.0.0.1."""
    async with trio.open_nursery() as nursery:
        (url,) = await nursery.start(partial(serve, create_app(node), "127.0.0.1", 0,
                                                     refused=lambda status, code: None, dropped=lambda reason: None))
        yield url
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="session")
def forked_cli(tmp_path_factory):
    """`vouchnet` runs, each in a process forked from one that imported the node once: those that end by themselves,
    and `vouchnet run`s spawned for a test to signal (a start that imports the node took 20-30 s on a loaded
    machine)."""
    with ForkedCli(tmp_path_factory.mktemp("forked_cli")) as cli:
        yield cli


@pytest.fixture(scope="session")
def local_cli(tmp_path_factory):
    """A ForkedCli for commands that run without a node (init, audit export...), started once: the tests that kill a
    command at each point of its writes run it dozens of times."""
    with ForkedCli(tmp_path_factory.mktemp("local_cli"), preload=("node.cli", "node.commands.audit",
                                                                  "node.audit_export")) as cli:
        yield cli


IDLE_POLL_S = 0.01  # real seconds every task waits before a thread_aware_clock jumps (checked again so meanwhile)


@pytest.fixture
def thread_aware_clock(monkeypatch) -> trio.testing.MockClock:
    """The test's clock (pytest-trio takes a fixture that is a clock as the run's): trio's MockClock, autojumping, but
    not while a worker thread (trio.to_thread.run_sync) runs. MockClock counts a task waiting for a thread as idle
    (python-trio/trio#456), so it jumped to the next deadline (a test's fail_after, a service's timer) while the
    thread worked, and a test whose thread took longer than the threshold on a loaded machine failed for nothing it
    did. (MockClock cannot be subclassed: its hook for the run loop, _autojump, is wrapped on the instance.)"""
    clock = trio.testing.MockClock(autojump_threshold=IDLE_POLL_S)
    threads = [0]  # worker threads waited for
    jump, run_sync = clock._autojump, trio.to_thread.run_sync

    def autojump() -> None:  # (called by trio's run loop once every task waited IDLE_POLL_S)
        if not threads[0]:
            jump()

    async def counted(*args: Any, **kwargs: Any) -> Any:
        threads[0] += 1
        try:
            return await run_sync(*args, **kwargs)
        finally:
            threads[0] -= 1

    clock._autojump = autojump  # type: ignore[method-assign]
    monkeypatch.setattr(trio.to_thread, "run_sync", counted)
    return clock
