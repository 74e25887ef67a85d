"""The health gauges: each degraded state of a running node shows in GET /metrics, for an alert rule."""

import shutil

import pytest

from node.health import add_health_gauges
from node.keys import TokenFile, create_token
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


@pytest.fixture
def metrics(node, tmp_path):
    create_token(tmp_path / "api.token")
    metrics = Registry()
    add_health_gauges(metrics, replica=node.replica, token_file=TokenFile(tmp_path / "api.token"), data_dir=tmp_path)
    return metrics


def test_the_org_flagged_as_an_equivocator_shows(node, partner, cheat, metrics):
    assert metrics.value("own_org_flagged") == 0
    node.replica.accept([cheat.record()])
    node.replica.accept([cheat.fork(1, None)])
    assert cheat.did in node.replica.flagged and metrics.value("own_org_flagged") == 0  # another org's
    report_own_equivocation(node, partner)
    assert metrics.value("own_org_flagged") == 1


def test_writes_refused_for_want_of_a_readable_token_show_until_it_is_back(metrics, tmp_path):
    assert metrics.value("api_writes_refused") == 0
    (tmp_path / "api.token").rename(tmp_path / "moved")
    assert metrics.value("api_writes_refused") == 1
    (tmp_path / "moved").rename(tmp_path / "api.token")
    assert metrics.value("api_writes_refused") == 0


def test_the_free_space_shown_is_that_of_the_data_directory_s_file_system(metrics, tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr("node.health.shutil.disk_usage",
                        lambda path: asked.append(path) or shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    assert metrics.value("data_dir_free_bytes") == 4096 and asked == [tmp_path]
