"""The threads that watch a testnet's nodes keep what failed their asks, to be said with the run's summary."""

from types import SimpleNamespace

from node.client import NodeApiError
from testnet.observe import ScoreWatch


class _Failing:
    """A node whose score answers fail as a node's scoring that raises does: 500."""

    base_url = "http://127.0.0.1:1"

    def score(self, did: str) -> dict:
        raise NodeApiError(500, "internal", "the API failed")

    def close(self) -> None:
        pass


def test_a_watch_counts_its_failed_asks_and_keeps_the_latest_naming_its_node():
    """Before: only their count was kept, so a run whose every score ask failed said no more than that no node
    scored the agents."""
    cluster = SimpleNamespace(names=["n00", "n01"], entry=lambda node: SimpleNamespace(api_url=_Failing.base_url),
                              client=lambda node, timeout: _Failing())
    watch = ScoreWatch(cluster, lambda node: node == "n01", 1.0, lambda: {"good-0": ["did:key:z6Mkgood"]})
    watch.sample_all()
    watch.stop()
    assert (watch.errors, watch.samples) == (1, [])
    assert watch.last_error == f"n01: {NodeApiError(500, 'internal', 'the API failed')}"
