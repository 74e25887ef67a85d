"""The threads that watch a testnet's nodes keep what failed their asks, to be said with the run's summary, and the
scores a node gave before one failed."""

from types import SimpleNamespace

from node.client import NodeApiError, NodeUnreachable
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


class _RefusingOne:
    """A node that refuses one identity's score (an error of its own) and answers the others'."""

    base_url = "http://127.0.0.1:1"

    def score(self, did: str) -> dict:
        if did == "did:key:z6Mkbad":
            raise NodeApiError(500, "internal", "the API failed")
        return {"score": 612, "tier": "trusted", "confidence": 0.5}

    def close(self) -> None:
        pass


def test_a_score_the_node_refuses_loses_none_of_the_others_of_its_round():
    """Before: the first refusal ended the node's round and dropped the scores it had answered in it, so one agent
    whose explanation failed at a node left every agent unscored there."""
    cluster = SimpleNamespace(names=["n00"], entry=lambda node: SimpleNamespace(api_url=_RefusingOne.base_url),
                              client=lambda node, timeout: _RefusingOne())
    identities = {"bad-0": ["did:key:z6Mkbad"], "good-0": ["did:key:z6Mkgood"], "good-1": ["did:key:z6Mkgood1"]}
    watch = ScoreWatch(cluster, lambda node: True, 1.0, lambda: identities)
    watch.sample_all()
    watch.stop()
    assert [(s.agent, s.score) for s in watch.samples] == [("good-0", 612), ("good-1", 612)]
    assert watch.errors == 1 and watch.last_error is not None and watch.last_error.startswith("n00: ")


class _StoppingMidRound:
    """A node that answers the first score asked of it, then stops answering (SIGSTOPped, overloaded)."""

    base_url = "http://127.0.0.1:1"

    def __init__(self) -> None:
        self.asked = 0

    def score(self, did: str) -> dict:
        self.asked += 1
        if self.asked > 1:
            raise NodeUnreachable(f"the node at {self.base_url} did not answer within 5.0 s", timed_out=True)
        return {"score": 612, "tier": "trusted", "confidence": 0.5}

    def close(self) -> None:
        pass


def test_a_node_that_stops_answering_mid_round_keeps_the_scores_it_answered_and_is_asked_no_more_in_it():
    """Before: a node's round was dropped whole at its first failure, the scores it gave before with it."""
    node = _StoppingMidRound()
    cluster = SimpleNamespace(names=["n00"], entry=lambda name: SimpleNamespace(api_url=node.base_url),
                              client=lambda name, timeout: node)
    identities = {"good-0": ["did:key:z6Mkgood"], "good-1": ["did:key:z6Mkgood1"], "bad-0": ["did:key:z6Mkbad"]}
    watch = ScoreWatch(cluster, lambda name: True, 1.0, lambda: identities)
    watch.sample_all()
    watch.stop()
    assert [(s.agent, s.score) for s in watch.samples] == [("good-0", 612)] and node.asked == 2
    assert watch.errors == 1 and watch.last_error is not None and "did not answer within 5.0 s" in watch.last_error
