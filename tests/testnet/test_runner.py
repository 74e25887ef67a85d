"""What a run waits for before its traffic starts: the setup's records, at the nodes whose horizon holds their
issuers, an equivocator's aside."""

from pathlib import Path

from testnet.plan import make_plan
from testnet.runner import _expected
from testnet.scenario import load_scenario


def test_the_setup_waits_for_no_record_of_an_org_flagged_as_an_equivocator():
    plan = make_plan(load_scenario(str(Path(__file__).with_name("short.toml"))), ["n00", "n01", "n02"], seed=1)
    issued = {"vouch-by-n00": "n00", "vouch-by-n02": "n02"}  # n02 is the quiet org, rooted by the honest ones
    assert _expected(issued, plan, set()) == {n: {"vouch-by-n00", "vouch-by-n02"} for n in plan.nodes}
    assert _expected(issued, plan, {"n02"}) == {n: {"vouch-by-n00"} for n in plan.nodes}
