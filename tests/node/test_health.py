"""The health gauges: each degraded state of a running node shows in GET /metrics, for an alert rule."""

import pytest

from node.health import add_health_gauges
from node.metrics import Registry

from ..factories import Org
from .fake_node import fake_node, report_own_equivocation


@pytest.fixture
def partner():
    return Org()


@pytest.fixture
def cheat():
    return Org()


@pytest.fixture
def node(tmp_path, partner, cheat):
    with fake_node(tmp_path, roots=(partner.did, cheat.did)) as node:
        yield node


def test_the_org_flagged_as_an_equivocator_shows(node, partner, cheat):
    metrics = Registry()
    add_health_gauges(metrics, replica=node.replica)
    assert metrics.value("own_org_flagged") == 0
    node.replica.accept([cheat.record()])
    node.replica.accept([cheat.fork(1, None)])
    assert cheat.did in node.replica.flagged and metrics.value("own_org_flagged") == 0  # another org's
    report_own_equivocation(node, partner)
    assert metrics.value("own_org_flagged") == 1
