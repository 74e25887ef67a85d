"""Fixtures of the node tests: a fake node over a real replica, and its API served on 127.0.0.1."""

import pytest

from node.api import create_app

from .fake_node import fake_node
from .serving import serving


@pytest.fixture
def node(tmp_path):
    (tmp_path / "node").mkdir()
    with fake_node(tmp_path / "node") as node:
        yield node


@pytest.fixture
async def url(node):
    """The base URL of the node's API, served by hypercorn's trio worker as the daemon serves it."""
    async with serving(create_app(node)) as url:
        yield url
