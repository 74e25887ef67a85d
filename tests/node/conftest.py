"""Fixtures of the node tests: a fake node over a real replica, its API served on 127.0.0.1, and `vouchnet` run in
forked processes."""

from functools import partial

import pytest
import trio

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
