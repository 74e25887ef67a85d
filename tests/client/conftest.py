"""One real node for the SDK's tests (each test uses fresh agents, so they do not see each other)."""

import pytest

from .running_node import RunningNode, node_in_thread


@pytest.fixture(scope="session")
def running(tmp_path_factory) -> RunningNode:
    with node_in_thread(tmp_path_factory.mktemp("sdk-node")) as node:
        yield node
