"""When a testnet node's checkpoint counts as witnessed: current, and cosigned by as many honest orgs as it asks."""

from testnet.status import Checkpoint, NodeStatus, witnessed

ORGS = ["a", "b", "c", "d"]


def row(size: int, ledger: int, cosigners: tuple[str, ...]) -> NodeStatus:
    return NodeStatus("n00", "a", "http://127.0.0.1:1", True, ledger_size=ledger, checkpoint=Checkpoint(size, cosigners))


def test_a_current_checkpoint_needs_as_many_honest_cosigners_as_the_node_asks():
    assert witnessed(row(5, 5, ("b", "c")), ORGS, set(), witnesses=2)
    assert not witnessed(row(5, 5, ("b",)), ORGS, set(), witnesses=2)
    assert not witnessed(row(4, 5, ("b", "c")), ORGS, set(), witnesses=2)  # behind its ledger


def test_with_fewer_honest_orgs_than_witnesses_all_of_them_suffice_and_equivocators_do_not_count():
    assert witnessed(row(5, 5, ("b", "c")), ORGS, {"d"}, witnesses=8)
    assert not witnessed(row(5, 5, ("b", "d")), ORGS, set(), witnesses=8)
    assert not witnessed(row(5, 5, ("b", "d")), ORGS, {"d"}, witnesses=2)
