"""What a run does before its traffic starts: it lifts a partition a killed run left, and waits for the setup's
records at the nodes whose horizon holds their issuers, an equivocator's aside."""

from pathlib import Path
from types import SimpleNamespace

from testnet.plan import make_plan
from testnet.runner import Run, _expected
from testnet.scenario import load_scenario


def test_the_setup_waits_for_no_record_of_an_org_flagged_as_an_equivocator():
    plan = make_plan(load_scenario(str(Path(__file__).with_name("short.toml"))), ["n00", "n01", "n02"], seed=1)
    issued = {"vouch-by-n00": "n00", "vouch-by-n02": "n02"}  # n02 is the quiet org, rooted by the honest ones
    assert _expected(issued, plan, set()) == {n: {"vouch-by-n00", "vouch-by-n02"} for n in plan.nodes}
    assert _expected(issued, plan, {"n02"}) == {n: {"vouch-by-n00"} for n in plan.nodes}


class _Client:
    def __init__(self, blocked: list[str]) -> None:
        self.blocked = blocked

    def __enter__(self) -> "_Client":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def blocked_peers(self) -> list[str]:
        return list(self.blocked)

    def block_peers(self, peer_ids: list[str]) -> list[str]:
        self.blocked[:] = peer_ids
        return list(self.blocked)


class _RunningCluster:
    """Three running nodes whose configs need no change, with the block lists a partition left."""

    def __init__(self, blocked: dict[str, list[str]]) -> None:
        self.names = ["n00", "n01", "n02"]
        self.state = SimpleNamespace(nodes=[SimpleNamespace(name=n, did=f"did:{n}") for n in self.names])
        self.blocked = blocked

    def configure(self, node: str, values: dict) -> bool:
        return False

    def running(self, node: str) -> bool:
        return True

    def start(self, names=None, *, progress=None, say=None) -> None:
        pass

    def client(self, node: str) -> _Client:
        return _Client(self.blocked[node])


def test_a_run_lifts_the_partition_a_killed_run_left_before_its_setup():
    blocked = {"n00": ["peer-2"], "n01": ["peer-2"], "n02": ["peer-0", "peer-1"]}
    said: list[str] = []
    scenario = load_scenario(str(Path(__file__).with_name("short.toml")))
    run = Run(_RunningCluster(blocked), scenario, seed=1, say=said.append)  # type: ignore[arg-type]
    run._configure()
    assert blocked == {"n00": [], "n01": [], "n02": []}
    assert run.setup["blocks_lifted"] == ["n00", "n01", "n02"]
    assert any("lifted the peer block lists of n00, n01, n02" in line for line in said)


class _Clock:
    """time.time and time.sleep on a clock of their own: a sleep moves it on at once."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_run_says_every_ten_seconds_how_far_its_traffic_got(monkeypatch):
    from testnet import runner

    clock = _Clock(1000.0)
    monkeypatch.setattr(runner, "time", clock)
    said: list[str] = []
    scenario = load_scenario(str(Path(__file__).with_name("short.toml")))
    run = Run(_RunningCluster({}), scenario, seed=1, say=said.append)  # type: ignore[arg-type]
    stats = runner.TrafficStats(events_accepted=40, events_rejected=1, batches_failed=2)
    run._traffic_until(1000.0, 25.0, stats)
    assert clock.now == 1025.0
    assert said == [f"t= {t:.1f} s  traffic (of 28 s): 40 events reported, 1 refused, 2 batches unanswered"
                    for t in (10, 20)]
