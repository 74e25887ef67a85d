"""One real node for the SDK's tests (each test uses fresh agents, so they do not see each other), stopped when
this package's tests are done so that it costs the rest of the suite nothing; and each test's own node breakers
(node.client._breaker), so that a node one test found down is not taken for down in the next."""

import pytest

from node.client import _breaker

from .running_node import RunningNode, node_in_thread


@pytest.fixture(scope="package")
def running(tmp_path_factory) -> RunningNode:
    with node_in_thread(tmp_path_factory.mktemp("sdk-node")) as node:
        yield node


@pytest.fixture(autouse=True)
def breakers(monkeypatch) -> _breaker.Breakers:
    fresh = _breaker.Breakers()
    monkeypatch.setattr(_breaker, "BREAKERS", fresh)
    return fresh
