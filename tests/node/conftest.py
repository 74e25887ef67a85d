"""Fixtures of the node tests: a fake node over a real replica, and its API served on 127.0.0.1."""

import pytest
import trio

from node.api import ApiService

from .fake_node import fake_node


@pytest.fixture
def node(tmp_path):
    (tmp_path / "node").mkdir()
    with fake_node(tmp_path / "node") as node:
        yield node


@pytest.fixture
async def url(node):
    """The base URL of the node's API, served as the daemon serves it, on a free port of 127.0.0.1."""
    async with trio.open_nursery() as nursery:
        (url,) = await nursery.start(ApiService(node, port=0).run)
        yield url
        nursery.cancel_scope.cancel()
