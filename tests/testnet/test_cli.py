"""`vouchnet testnet up` over a directory that already holds a testnet: what it was asked must match what is there."""

import pytest

from node.cli import main
from testnet import processes
from testnet.state import NodeEntry, TestnetState, save_state


@pytest.fixture
def existing(tmp_path, monkeypatch):
    """A stopped testnet of two nodes (mesh, seed 1), whose nodes must not be started."""
    monkeypatch.setattr(processes, "spawn_node", lambda *args: pytest.fail("a node was started"))
    save_state(tmp_path, TestnetState("testnet", 1, "mesh", (NodeEntry("n00", "nodes/n00", 1, 2, "did:a", "a"),
                                                            NodeEntry("n01", "nodes/n01", 3, 4, "did:b", "b"))))
    return tmp_path


@pytest.mark.parametrize(("option", "complaint"), [
    (["--topology", "ring"], "holds a testnet of topology mesh, not ring"),
    (["--seed", "7"], "holds a testnet of seed 1, not 7"),
    (["--nodes", "3"], "holds a testnet of 2 nodes, not 3"),
])
def test_up_over_a_testnet_refuses_a_shape_it_does_not_have(existing, capsys, option, complaint):
    assert main(["testnet", "up", "--dir", str(existing), *option]) == 2
    assert complaint in capsys.readouterr().err
