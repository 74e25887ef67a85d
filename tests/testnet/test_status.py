"""When a testnet node's checkpoint counts as witnessed: current, and cosigned by as many honest orgs as it asks; and
what `status` shows of each node's peer block list."""

from pathlib import Path
from types import SimpleNamespace

from node.client import NodeUnreachable
from testnet.status import Checkpoint, NodeStatus, node_status, table, witnessed

ORGS = ["a", "b", "c", "d"]


def row(size: int, ledger: int, cosigners: tuple[str, ...]) -> NodeStatus:
    return NodeStatus("n00", "a", "http://127.0.0.1:1", True, ledger_size=ledger,
                      checkpoint=Checkpoint(size, cosigners))


def test_a_current_checkpoint_needs_as_many_honest_cosigners_as_the_node_asks():
    assert witnessed(row(5, 5, ("b", "c")), ORGS, set(), witnesses=2)
    assert not witnessed(row(5, 5, ("b",)), ORGS, set(), witnesses=2)
    assert not witnessed(row(4, 5, ("b", "c")), ORGS, set(), witnesses=2)  # behind its ledger


def test_with_fewer_honest_orgs_than_witnesses_all_of_them_suffice_and_equivocators_do_not_count():
    assert witnessed(row(5, 5, ("b", "c")), ORGS, {"d"}, witnesses=8)
    assert not witnessed(row(5, 5, ("b", "d")), ORGS, set(), witnesses=8)
    assert not witnessed(row(5, 5, ("b", "d")), ORGS, {"d"}, witnesses=2)


class _Client:
    """A node's API as status asks it: two peers, an empty ledger, no checkpoint, and `blocked` as its block list."""

    def __init__(self, blocked: list[str]) -> None:
        self.blocked = blocked

    def __enter__(self) -> "_Client":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def node(self) -> dict:
        return {"rejected": {}, "ledger": {"size": 0}, "flagged_total": 0}

    def peers(self) -> list[dict]:
        return [{}, {}]

    def checkpoint(self) -> None:
        return None

    def metrics(self) -> str:
        return ""

    def blocked_peers(self) -> list[str]:
        return list(self.blocked)


class _Testnet:
    """Three running nodes; n02 cut off from the others, who block it, and also blocking a PeerID no node has."""

    def __init__(self) -> None:
        self.state = SimpleNamespace(network="testnet", nodes=[
            SimpleNamespace(name=n, did=f"did:key:z6Mk{n}xxxxxxxx", api_url="http://127.0.0.1:1", peer_id=f"12D3{n}",
                            pid=1) for n in ("n00", "n01", "n02")])
        self.blocked = {"n00": ["12D3n02"], "n01": ["12D3n02"], "n02": ["12D3n00", "12D3n01", "12D3gone"]}

    def entry(self, name: str) -> SimpleNamespace:
        return next(n for n in self.state.nodes if n.name == name)

    def running(self, name: str) -> bool:
        return True

    def log_running(self, name: str) -> bool:
        return True

    def client(self, name: str, *, timeout: float) -> _Client:
        return _Client(self.blocked[name])


def test_status_shows_which_nodes_each_node_blocks_and_that_the_network_is_cut():
    """Before: nothing showed the block lists, so a partition left in force looked like a healthy network."""
    testnet = _Testnet()
    rows = [node_status(testnet, n) for n in ("n00", "n01", "n02")]  # type: ignore[arg-type]
    assert [row.blocks for row in rows] == [("n02",), ("n02",), ("n00", "n01", "12D3gone")]
    lines = table(rows, Path("/tn")).splitlines()
    assert lines[0].split()[-1] == "blocks"
    assert [line.split()[-1] for line in lines[1:4]] == ["n02", "n02", "n00,n01,12D3gone"]
    assert lines[4].startswith("the network is cut: n00 blocks n02; n01 blocks n02; n02 blocks n00, n01, 12D3gone "
                               "(peer block lists: no connection, gossip or sync crosses them")
    testnet.blocked = {n: [] for n in testnet.blocked}
    assert lines[4].endswith("or by `vouchnet testnet down --dir /tn` then `up`)")  # (it named no --dir)
    whole = table([node_status(testnet, n) for n in ("n00", "n01", "n02")], Path("/tn"))  # type: ignore[arg-type]
    assert [line.split()[-1] for line in whole.splitlines()[1:]] == ["-", "-", "-"]  # and no note


def test_status_says_why_a_running_node_may_not_have_answered_in_time():
    """Before: `n03: the node at http://127.0.0.1:1 did not answer within 5.0 s`, and nothing of a node starting, or
    stopped or overloaded, which node commands say."""
    testnet = _Testnet()

    def silent(name: str, *, timeout: float) -> _Client:
        client = _Client([])
        client.node = lambda: (_ for _ in ()).throw(  # type: ignore[method-assign]
            NodeUnreachable(f"the node at http://127.0.0.1:1 did not answer within {timeout} s", timed_out=True))
        return client

    testnet.client = silent  # type: ignore[method-assign]
    row = node_status(testnet, "n01")  # type: ignore[arg-type]
    assert row.error == ("the node at http://127.0.0.1:1 did not answer within 5.0 s: it is starting (it answers once "
                         "its catch-up sync with its peers has ended, its log then saying `node running`), or it is "
                         "stopped (SIGSTOP, a debugger) or overloaded")
    assert f"n01: {row.error}" in table([row], Path("/tn")).splitlines()
