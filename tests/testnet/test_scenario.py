"""Scenario files: every shipped one (and the README's) loads and fits its testnet; a broken one is refused with the
key and the rule."""

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testnet.plan import as_reused, make_plan
from testnet.scenario import ScenarioError, library, load_scenario, parse_scenario
from testnet.state import node_name

MINIMAL = """\
description = "two groups"
duration = 30

[orgs.honest]
nodes = "rest"
roots = ["honest"]
vouch = ["honest"]

[orgs.rogue]
nodes = 1

[agents.good]
count = 2
behaviour = "honest"
operator = "honest"
works_at = ["honest"]
"""

# MINIMAL with each group following the other: an equivocation's or key theft's records go to a node whose horizon
# holds its target's org (any other refuses them)
FOLLOWED = MINIMAL.replace('vouch = ["honest"]', 'vouch = ["honest", "rogue"]').replace(
    "[orgs.rogue]\nnodes = 1\n", '[orgs.rogue]\nnodes = 1\nroots = ["honest"]\n')


def nodes(n: int) -> list[str]:
    return [node_name(i) for i in range(n)]


def _refusal(path: Path, text: str, testnet: int = 3, *, fresh: bool = False) -> str:
    """What make_plan refuses `text` for, written to `path` (errors name it and the line), on a testnet of `testnet`
    nodes, seed 1."""
    path.write_text(text)
    with pytest.raises(ScenarioError) as refused:
        make_plan(load_scenario(str(path)), nodes(testnet), seed=1, fresh=fresh)
    return str(refused.value)


def test_the_library_holds_a_scenario_for_each_attack_and_fault():
    scenarios = [load_scenario(name) for name in library()]
    attacks = {a.type for s in scenarios for a in s.attacks}
    faults = {f.type for s in scenarios for f in s.faults}
    models = {g.behaviour.model for s in scenarios for g in s.agents}
    assert attacks == {"praise", "slander", "equivocation", "whitewash", "key-theft"}
    assert faults == {"kill", "partition", "rotate"}
    assert models == {"honest", "malicious", "on-off", "turned-bad", "camouflage"}
    assert "sybil-collusion" in library()


@pytest.mark.parametrize("name", library())
def test_every_shipped_scenario_validates_and_fits_its_testnet(name):
    scenario = load_scenario(name)
    plan = make_plan(scenario, nodes(scenario.nodes), seed=1)
    assert sorted(n for members in plan.groups.values() for n in members) == nodes(scenario.nodes)
    assert all(agent.operator == agent.orgs[0] for agent in plan.agents)


def readme_scenario() -> str:
    """The scenario file README's "Write your own scenario" shows."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    return re.search(r"```toml\n(.*?)```", text[text.index("### Write your own scenario"):], re.DOTALL).group(1)


@pytest.mark.parametrize("seed", [1, 7])  # `up`'s default, and the README's `--seed 7`
def test_the_readme_s_scenario_rotates_only_orgs_another_org_follows(seed):
    """`vouchnet key rotate` first takes the org's records back from a peer that holds them, and fails where none
    does: a node it rotates must be in another node's horizon, or its run stops at the rotation."""
    scenario = parse_scenario(readme_scenario(), name="my-scenario")
    plan = make_plan(scenario, nodes(scenario.nodes), seed)
    rotated = [n for fault in scenario.faults if fault.type == "rotate" for n in plan.select(fault.nodes, "")]
    assert rotated and all(plan.followers(n) for n in rotated)


def test_the_sybil_collusion_scenario_lets_the_sybils_in_only_through_the_colluders():
    plan = make_plan(load_scenario("sybil-collusion"), nodes(10), seed=1)
    honest, colluders, sybils = plan.groups["honest"], plan.groups["colluders"], plan.groups["sybils"]
    into_sybils = {a for a in plan.nodes for b in plan.vouches[a] if b in sybils}
    into_colluders = {a for a in honest for b in plan.vouches[a] if b in colluders}
    assert into_sybils <= set(colluders + sybils)
    assert len(into_colluders) == 1  # the one attack edge
    assert all(set(plan.roots[n]) <= set(honest) for n in honest)


def test_groups_take_nodes_in_file_order_and_rest_takes_what_is_left():
    plan = make_plan(parse_scenario(MINIMAL, name="m"), nodes(5), seed=1)
    assert plan.groups == {"honest": nodes(4), "rogue": ["n04"]}
    assert plan.roots["n00"] == ["n01", "n02", "n03"]
    assert plan.vouches["n04"] == {}


def test_a_seed_repeats_the_plan():
    scenario = load_scenario("sybil-collusion")
    assert make_plan(scenario, nodes(10), seed=3) == make_plan(scenario, nodes(10), seed=3)


def _edit(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new, 1)


@pytest.mark.parametrize(("text", "error"), [
    (_edit('duration = 30', 'duration = 30\nspeed = 2'), "speed: unknown key (known: agents, attacks, "),
    (_edit('description = "two groups"\n', ""), "description: required"),
    (_edit("duration = 30", 'duration = "30"'), "duration: must be a number, got str '30'"),
    (_edit("duration = 30", "duration = 0"), "duration: must be from 1 to 3600, got 0"),
    (_edit('roots = ["honest"]', 'roots = ["honst"]'), "orgs.honest.roots: no org group 'honst' (there are: "),
    (_edit("nodes = 1", 'nodes = "some"'), 'orgs.rogue.nodes: must be an integer or "rest", got str'),
    (_edit("nodes = 1", 'nodes = "rest"'), 'orgs.rogue.nodes: "rest" is taken by group honest already: at most one '
     "group may take the nodes the others leave"),
    (_edit("count = 2", "count = 2.5"), "agents.good.count: must be an integer, got float 2.5"),
    (_edit('behaviour = "honest"', 'behaviour = "sneaky"'), "agents.good.behaviour.model: must be one of honest, "),
    (_edit('behaviour = "honest"', 'behaviour = { model = "malicious", on = 3 }'),
     "agents.good.behaviour.on: not a parameter of the malicious model"),
    (_edit('behaviour = "honest"', 'behaviour = { model = "on-off", at = 3 }'),
     "agents.good.behaviour.at: not a parameter of the on-off model (it takes off, on)"),
    (_edit('works_at = ["honest"]', "works_at = []"), "agents.good.works_at: must name at least one org group"),
    (MINIMAL + '[[attacks]]\ntype = "praise"\norgs = "rogue"\nagents = "bad"\n',
     "attacks[0].agents: no agent group 'bad' (there are: good)"),
    (MINIMAL + '[[attacks]]\ntype = "bribe"\n', "attacks[0].type: must be one of praise, slander, equivocation, "),
    # (a table without its type failed with a bare KeyError: 'type', a traceback from `testnet run`)
    (MINIMAL + '[[attacks]]\norgs = "rogue"\nat = 5\n', "attacks[0].type: required, one of praise, slander, "),
    (MINIMAL + '[[faults]]\nnodes = "rogue"\nat = 5\n', "faults[0].type: required, one of kill, partition, rotate"),
    (MINIMAL + '[[attacks]]\ntype = "whitewash"\nagents = "good"\n', "attacks[0].at: required"),
    (MINIMAL + '[[attacks]]\ntype = "slander"\norgs = "rogue"\nagents = "good"\nat = 10\nuntil = 5\n',
     "attacks[0].until: must be after at (10), got 5"),
    (MINIMAL + '[[faults]]\ntype = "kill"\nnodes = "honest[2:1]"\nat = 1\nduration = 2\n',
     "faults[0].nodes: 'honest[2:1]' selects no org (j must be greater than i)"),
    (MINIMAL + '[[faults]]\ntype = "kill"\nnodes = "honest(1)"\nat = 1\nduration = 2\n',
     "faults[0].nodes: must be GROUP, GROUP[i] or GROUP[i:j], got 'honest(1)'"),
    (MINIMAL + '[[faults]]\ntype = "partition"\nnodes = "honest"\nat = 25\nduration = 10\n',
     "faults[0].at + duration: 35 s is not within the file's duration of 30 s"),
    (MINIMAL + "[[faults]]\ntype = \"kill\"\nnodes = \"honest\"\nat = 1\n", "faults[0].duration: required"),
    (MINIMAL + '[[faults]]\ntype = "rotate"\nnodes = "honest[0]"\nat = 1\nduration = 2\n',
     "faults[0].duration: unknown key (known: at, nodes, type)"),
    (MINIMAL + '[[faults]]\ntype = "rotate"\nnodes = "honest[0]"\n', "faults[0].at: required"),
    (MINIMAL + '[[faults]]\ntype = "rotate"\nnodes = "honset[0]"\nat = 1\n',
     "faults[0].nodes: no org group 'honset' (there are: honest, rogue)"),
    (MINIMAL + '[[faults]]\ntype = "rotate"\nnodes = "rogue"\nat = 30\n',
     "faults[0].at: 30 s is not within the file's duration of 30 s"),
    (MINIMAL + '[[faults]]\ntype = "rekey"\nnodes = "rogue"\nat = 3\n',
     "faults[0].type: must be one of kill, partition, rotate, got 'rekey'"),
    (MINIMAL + '[[attacks]]\ntype = "key-theft"\norgs = "rogue"\n', "attacks[0].at: required"),
    (MINIMAL + '[[attacks]]\ntype = "key-theft"\nat = 5\n', "attacks[0].orgs: required"),
    (MINIMAL + '[[attacks]]\ntype = "key-theft"\norgs = "rogue"\nat = 5\nagents = "good"\n',
     "attacks[0].agents: unknown key (known: at, orgs, type)"),
    (MINIMAL + '[[attacks]]\ntype = "key-theft"\norgs = "rogue"\nat = -1\n',
     "attacks[0].at: must be from 0 to 3600, got -1"),
    (MINIMAL + "[settings]\nepoch_seconds = 0.5\n", "settings.epoch_seconds: must be from 1 to 3600, got 0.5"),
    (_edit("duration = 30", "duration = 30\nnodes = 1"), "nodes: the org groups need at least 2, got 1"),
    ("description = \"x\"\nduration = [", "not valid TOML"),
])
def test_a_broken_scenario_is_refused_naming_the_key_and_the_rule(text, error):
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(text, name="broken", where="broken.toml")
    assert re.match(r"broken\.toml(:\d+)?: ", str(refused.value)), str(refused.value)
    assert error in str(refused.value), str(refused.value)


@pytest.mark.parametrize(("text", "line", "error"), [
    (_edit("duration = 30", "duration = 30\nspeed = 2"), 3, "speed: unknown key"),
    (_edit("count = 2", "count = 2.5"), 13, "agents.good.count: must be an integer"),
    (_edit('behaviour = "honest"', 'behaviour = { model = "malicious", on = 3 }'), 14,
     "agents.good.behaviour.on: not a parameter"),
    (_edit("nodes = 1", 'nodes = "some"'), 10, "orgs.rogue.nodes: must be an integer"),
    (_edit('roots = ["honest"]', '  roots = ["honst"]   # a typo'), 6, "orgs.honest.roots: no org group 'honst'"),
    (MINIMAL + '[[faults]]\ntype = "kill"\nnodes = "honest"\nat = 1\nduration = 2\n\n'
     '[[faults]]\ntype = "kill"\nat = 1\n'
     'nods = "honest"\nduration = 2\nnodes = "honest"\n', 26, "faults[1].nods: unknown key"),
    (MINIMAL + "[[faults]]\ntype = \"kill\"\nnodes = \"honest\"\nat = 1\n", 17, "faults[0].duration: required"),
    (MINIMAL + '[[faults]]\nnodes = "rogue"\nat = 5\n', 17, "faults[0].type: required"),
    # (it named the file alone, "orgs: at most one group ...", with no line to look at)
    (_edit("nodes = 1", 'nodes = "rest"'), 10, 'orgs.rogue.nodes: "rest" is taken by group honest already'),
])
def test_an_error_names_the_line_of_the_key_or_of_its_table(text, line, error):
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(text, name="broken", where="broken.toml")
    assert str(refused.value).startswith(f"broken.toml:{line}: {error}"), str(refused.value)


ROTATE_ROGUE = MINIMAL + '\n[[faults]]\ntype = "rotate"\nnodes = "rogue"\nat = 5\n'  # (no node follows rogue)


@pytest.mark.parametrize(("text", "testnet", "line", "error"), [
    (MINIMAL + '\n[[faults]]\ntype = "kill"\nnodes = "honest"\nat = 1\nduration = 2\n\n[[faults]]\ntype = "kill"\n'
     'at = 1\nnodes = "rogue[1]"\nduration = 2\n', 3, 27, "faults[1].nodes: rogue[1] selects no org"),
    (ROTATE_ROGUE, 3, 18, "faults[0]: the rotation of n02's key at 5 s would fail mid-run"),
    (MINIMAL + '\n[[attacks]]\ntype = "key-theft"\norgs = "honest"\nat = 5\n', 3, 20,
     "attacks[0].orgs: a key theft steals one org's key"),
])
def test_an_error_in_laying_a_scenario_onto_a_testnet_names_its_file_and_line(tmp_path, text, testnet, line, error):
    """An error found in making the plan (a selector past its group, a rotation no node follows) named the key alone
    (`faults[1].nodes: ...`), not the file, nor which of its [[faults]] tables: as one found in reading it does."""
    path = tmp_path / "mine.toml"
    refused = _refusal(path, text, testnet, fresh=True)
    assert refused.startswith(f"{path}:{line}: {error}"), refused


_EDGE = '\n[[edges]]\nfrom = "honest"\nto = "rogue"\ncount = 3\n'


@pytest.mark.parametrize(("text", "testnet", "line", "error"), [
    (MINIMAL + "orgs_per_agent = 3\n", 3, 17, "agents.good.orgs_per_agent: 3 orgs per agent, but on this 3-node "
     "testnet an agent can work at 2: its operator and 1 other org of works_at (honest); lower it, or make those "
     "groups larger"),
    (MINIMAL, 2, 12, "agents.good.orgs_per_agent: 2 orgs per agent, but on this 2-node testnet an agent can work at "
     "1: its operator and 0 other orgs of works_at (honest)"),  # (the default, 2: the table's line)
    (MINIMAL + _EDGE, 3, 21, "edges[0].count: 3 vouches from honest to rogue, but on this 3-node testnet there are 2 "
     "pairs of orgs to draw them from; lower it, or make those groups larger"),
    (MINIMAL + _EDGE.replace('"rogue"', '"honest"').replace("count = 3\n", ""), 2, 18,
     "edges[0]: from honest to honest makes no vouch: group honest has one org on this 2-node testnet, and an org "
     "does not vouch for itself"),
])
def test_agents_or_edges_asking_more_orgs_than_the_testnet_has_are_refused_naming_the_line(tmp_path, text, testnet,
                                                                                          line, error):
    """A scenario whose agents work at more orgs, or whose [[edges]] make more vouches, than the testnet's groups hold
    measures something else than it says. Before: it was cut down quietly (each agent worked at the orgs there were,
    the edge made the pairs there were, none for one org to itself) and the run went on."""
    path = tmp_path / "mine.toml"
    refused = _refusal(path, text, testnet, fresh=True)
    assert refused.startswith(f"{path}:{line}: {error}"), refused
    make_plan(load_scenario(str(path)), nodes(testnet + 2), seed=1, fresh=True)  # larger groups: as written


def test_a_duration_too_short_for_a_timed_event_names_its_file_and_line(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(ROTATE_ROGUE)
    with pytest.raises(ScenarioError) as refused:
        load_scenario(str(path)).with_duration(5)
    assert str(refused.value) == f"{path}:21: faults[0].at: 5 s is not within the run's --duration of 5 s"


def test_a_toml_syntax_error_names_the_line_the_parser_gives():
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(MINIMAL.replace("nodes = 1", "nodes = one"), name="broken", where="broken.toml")
    assert str(refused.value) == "broken.toml:10: not valid TOML: Invalid value (at line 10, column 9)"


@pytest.mark.parametrize("end", ["", "\n"])
def test_a_toml_syntax_error_found_at_the_end_of_the_file_names_its_last_line(end):
    """tomllib names no line for a bracket or string left open ("at end of document"): an operator was told the file
    alone, with nothing to say where in it to look."""
    text = MINIMAL.rstrip("\n") + '\n[orgs.more]\nroots = ["honest"' + end
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(text, name="broken", where="broken.toml")
    last = len(MINIMAL.rstrip("\n").splitlines()) + 2
    assert str(refused.value) == f"broken.toml:{last}: not valid TOML: Unclosed array (at end of document)"


def test_a_shorter_duration_must_still_hold_every_timed_event():
    scenario = load_scenario("faults")
    with pytest.raises(ScenarioError, match=re.escape("faults[1].at + duration: 35 s is not within the run's "
                                                      "--duration of 30 s")):
        scenario.with_duration(30)
    assert scenario.with_duration(60).duration == 60


@pytest.mark.parametrize(("behaviour", "line", "error"), [
    ('{ model = "turned-bad", at = 40 }', 14, "agents.good.behaviour.at: 40 s is not within the file's duration"),
    ('"turned-bad"', 14, "agents.good.behaviour.at: 30 s is not within the file's duration"),  # (at's default)
    ('{ model = "on-off", on = 30, off = 5 }', 14, "agents.good.behaviour.on: 30 s is not within the file's duration"),
])
def test_agents_that_would_turn_bad_only_after_the_run_are_refused(behaviour, line, error):
    """Before: accepted; the agents behaved well throughout, and the report counted them malicious (its confusion
    matrix, the praise and slander baselines), as `run on-off --duration 30` did with its turned-bad agents (at
    40 s)."""
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(_edit('behaviour = "honest"', f"behaviour = {behaviour}"), name="m", where="m.toml")
    assert str(refused.value).startswith(f"m.toml:{line}: {error} of 30 s"), str(refused.value)
    with pytest.raises(ScenarioError, match=re.escape("agents.turned-bad.behaviour.at: 40 s is not within the run's "
                                                      "--duration of 30 s")):
        load_scenario("on-off").with_duration(30)
    assert load_scenario("on-off").with_duration(45).duration == 45


def test_a_plan_that_does_not_fit_the_testnet_says_why():
    with pytest.raises(ScenarioError, match="needs at least 5 nodes .*honest 1, colluders 2, sybils 2.*has 4"):
        make_plan(load_scenario("sybil-collusion"), nodes(4), seed=1)
    text = MINIMAL + '[[faults]]\ntype = "kill"\nnodes = "rogue[1]"\nat = 1\nduration = 2\n'
    with pytest.raises(ScenarioError, match=re.escape("faults[0].nodes: rogue[1] selects no org: group rogue has 1 "
                                                      "on this 3-node testnet")):
        make_plan(parse_scenario(text, name="m"), nodes(3), seed=1)


def test_a_rotation_and_a_key_theft_are_read_with_their_targets_and_times():
    text = (FOLLOWED + '[[faults]]\ntype = "rotate"\nnodes = "honest[1:3]"\nat = 10\n'
            '[[attacks]]\ntype = "key-theft"\norgs = "rogue"\nat = 20\n')
    scenario = parse_scenario(text, name="m")
    (rotate,), (theft,) = scenario.faults, scenario.attacks
    assert (rotate.type, rotate.at, rotate.duration) == ("rotate", 10, 0)
    assert (theft.type, theft.at, theft.orgs.text, theft.attackers) == ("key-theft", 20, "rogue", None)
    plan = make_plan(scenario, nodes(5), seed=1)
    assert plan.select(rotate.nodes, "faults[0].nodes") == ["n01", "n02"]
    assert plan.select(theft.orgs, "attacks[0].orgs") == ["n04"]


def test_a_rotation_no_running_node_it_reaches_follows_is_refused_before_the_run():
    """`vouchnet key rotate` takes the org's records back first, from the running nodes it reaches, and refuses to
    sign if none holds them. Before: found only as the rotation came, mid-run (exit 1, no report). (Three nodes: each
    dials the two others, its bootstrap peers.)"""
    rotate_rogue = MINIMAL + '[[faults]]\ntype = "rotate"\nnodes = "rogue"\nat = 5\n'
    with pytest.raises(ScenarioError, match=re.escape(
            "faults[0]: the rotation of n02's key at 5 s would fail mid-run: `vouchnet key rotate` first takes the "
            "org's records back from the running nodes it dials (its bootstrap peers and the orgs whose `org` records "
            "it holds: those of its horizon, and any it held as the run began): n00, n01, and none of them holds them "
            "(none has n02 inside its horizon")):
        make_plan(parse_scenario(rotate_rogue, name="m"), nodes(3), seed=1, fresh=True)
    # one of the honest group follows honest[0] (roots it); rogue cut off alone rotates without a catch-up
    make_plan(parse_scenario(rotate_rogue.replace('"rogue"', '"honest[0]"'), name="m"), nodes(3), seed=1, fresh=True)
    alone = rotate_rogue + '[[faults]]\ntype = "partition"\nnodes = "rogue"\nat = 2\nduration = 10\n'
    make_plan(parse_scenario(alone, name="m"), nodes(3), seed=1, fresh=True)
    # ... but not once the partition is healed, nor on the honest side while the rest of it is down
    healed = alone.replace("duration = 10", "duration = 2")
    with pytest.raises(ScenarioError, match=re.escape("faults[0]: the rotation of n02's key at 5 s")):
        make_plan(parse_scenario(healed, name="m"), nodes(3), seed=1, fresh=True)
    honest_alone = (MINIMAL + '[[faults]]\ntype = "rotate"\nnodes = "honest[0]"\nat = 5\n'
                    '[[faults]]\ntype = "kill"\nnodes = "honest[1]"\nat = 4\nduration = 3\n')
    with pytest.raises(ScenarioError, match=re.escape("began): n02, and none of them holds them")):
        make_plan(parse_scenario(honest_alone, name="m"), nodes(3), seed=1, fresh=True)
    restarted = honest_alone.replace("at = 4\nduration = 3", "at = 3\nduration = 1")  # (back at 4 s)
    make_plan(parse_scenario(restarted, name="m"), nodes(3), seed=1, fresh=True)


def test_a_node_killed_then_rotated_runs_again_for_the_rotations_after_it():
    """A rotation starts its node again (testnet.faults.rotate), also one killed before: a later rotation may take
    the org's records back from it, before its kill's restart is due."""
    rotated_back = (MINIMAL + '[[faults]]\ntype = "kill"\nnodes = "honest[1]"\nat = 1\nduration = 10\n'
                    '[[faults]]\ntype = "rotate"\nnodes = "honest[1]"\nat = 3\n'
                    '[[faults]]\ntype = "rotate"\nnodes = "honest[0]"\nat = 5\n')
    plan = make_plan(parse_scenario(rotated_back, name="m"), nodes(3), seed=1)
    assert [(step.at, step.action, step.nodes) for step in plan.fault_steps()] == [
        (1, "kill", ("n01",)), (3, "rotate", ("n01",)), (5, "rotate", ("n00",)), (11, "restart", ("n01",))]


def test_a_kill_of_a_node_a_rotation_started_again_before_its_kill_ended_is_refused():
    """A rotation starts a killed node again, but its kill's restart still comes when due (a no-op on a running node):
    a second kill before then ends at that restart, not at its own end. Before: accepted, as the rotation had taken the
    node off the kills holding it, and the second kill (5 s to 15 s) ended at 11 s, mid-run and unsaid."""
    killed_again = (MINIMAL + '[[faults]]\ntype = "kill"\nnodes = "honest[1]"\nat = 1\nduration = 10\n'
                    '[[faults]]\ntype = "rotate"\nnodes = "honest[1]"\nat = 3\n'
                    '[[faults]]\ntype = "kill"\nnodes = "honest[1]"\nat = 5\nduration = 10\n')
    with pytest.raises(ScenarioError, match=re.escape(
            "faults[2].at: kills n01 at 5 s while faults[0] (from 1 s to 11 s) is still to restart it (a rotation "
            "started it early): a run kills a node once at a time")):
        make_plan(parse_scenario(killed_again, name="m"), nodes(3), seed=1)
    # killed again once that restart came: run as written
    plan = make_plan(parse_scenario(killed_again.replace("at = 5\n", "at = 11\n"), name="m"), nodes(3), seed=1)
    assert [(step.at, step.action) for step in plan.fault_steps()] == [
        (1, "kill"), (3, "rotate"), (11, "restart"), (11, "kill"), (21, "restart")]


DIALLED_DOWN = Path(__file__).with_name("rotate_while_dialled_down.toml").read_text()
# n00 and n01 killed: n04 dials n00 and n03, now a quiet org that follows no one; n02 follows n04, but is not dialled
DIALLED_QUIET = DIALLED_DOWN.replace("[orgs.rogue]", "[orgs.quiet]\nnodes = 1\n\n[orgs.rogue]").replace(
    '"honest[3]"\nat = 2', '"honest[1]"\nat = 2')
ROTATION_DUE = (5, 102)  # (their rotation of n04: at 5 s, faults[2])


def test_on_a_testnet_run_made_a_rotation_catches_up_with_the_nodes_it_dials_only():
    """`vouchnet key rotate` takes the org's records back from the peers it dials (its bootstrap peers, the orgs whose
    `org` records it holds), not from any running node. Before: n04 was taken to catch up with n01 and n02 (they
    follow it), so the plan was accepted and its rotation refused mid-run, none it dials being up ("unreachable")."""
    scenario = parse_scenario(DIALLED_DOWN, name="m")
    fresh = make_plan(scenario, nodes(5), seed=1, fresh=True)
    assert fresh.dialled("n04", ROTATION_DUE) == {"n00", "n03"}  # (its horizon: its own org, rooting none)
    assert fresh.catch_up_peers("n04", ["n01", "n02"], None, ROTATION_DUE) == []  # none it dials is up: no catch-up
    assert fresh.dialled("n01", ROTATION_DUE) == {"n00", "n02", "n03", "n04"}  # bootstrap n00, n02; vouches n03, n04
    # a node it dials that is up but does not follow it: refused, though n02 (not dialled) follows it
    with pytest.raises(ScenarioError, match=re.escape(
            "faults[2]: the rotation of n04's key at 5 s would fail mid-run: `vouchnet key rotate` first takes the "
            "org's records back from the running nodes it dials (its bootstrap peers and the orgs whose `org` records "
            "it holds: those of its horizon, and any it held as the run began): n03, and none of them holds them")):
        make_plan(parse_scenario(DIALLED_QUIET, name="m"), nodes(5), seed=1, fresh=True)


# n04 (rogue) vouches for every honest org at 1 s: they come into its horizon, and it dials them from then on
VOUCHED_MID_RUN = '\n[[vouches]]\nfrom = "rogue"\nto = "honest"\naction = "vouch"\nat = 1\n'


def test_a_rotation_catches_up_with_the_nodes_a_mid_run_vouch_brought_into_its_horizon():
    """Found by stop 45's review: what a rotating node dials was its horizon as the run set the trust graph up, not
    after a `[[vouches]]` vouch before the rotation that brings orgs into it (their `org` records, which the vouch's
    wait brings it, are what it dials): n04, which then dials n02, a follower, was refused as catching up with n03
    alone (and with n00 and n03 down it was taken to rotate without a catch-up, none it dials running)."""
    quiet = make_plan(parse_scenario(DIALLED_QUIET + VOUCHED_MID_RUN, name="m"), nodes(5), seed=1, fresh=True)
    assert quiet.dialled("n04", (1, 0)) == {"n00", "n03"}  # (as the vouch is due: not made yet)
    assert quiet.dialled("n04", ROTATION_DUE) == {"n00", "n01", "n02", "n03"}
    assert quiet.catch_up_peers("n04", ["n02", "n03"], None, ROTATION_DUE) == ["n02", "n03"]
    down = make_plan(parse_scenario(DIALLED_DOWN + VOUCHED_MID_RUN, name="m"), nodes(5), seed=1, fresh=True)
    assert down.catch_up_peers("n04", ["n01", "n02"], None, ROTATION_DUE) == ["n01", "n02"]


def test_on_a_testnet_reused_a_rotation_is_checked_against_the_nodes_its_node_says_it_dials():
    """On a testnet reused, a node may hold any org's records from earlier runs or `up`'s topology: the plan leaves
    its rotations to be checked once the node says whom it dials (as_reused, with its horizon's orgs added). Before:
    every running node counted, so n04, dialling n00 and n03 alone, was taken to catch up with n01 and n02; the plan
    was accepted and the rotation refused mid-run ("unreachable"), its dialled nodes being down or not following."""
    quiet = make_plan(parse_scenario(DIALLED_QUIET, name="m"), nodes(5), seed=1)  # (rotation unchecked yet)
    with pytest.raises(ScenarioError, match=re.escape("would fail mid-run: `vouchnet key rotate` first takes the "
                                                      "org's records back from the running nodes it dials")):
        as_reused(quiet, {"n04": frozenset({"n00", "n03"})}, ())
    held_every_org = frozenset({"n00", "n01", "n02", "n03"})
    assert as_reused(quiet, {"n04": held_every_org}, ()).catch_up_peers("n04", ["n02", "n03"], None,
                                                                          ROTATION_DUE) == ["n02", "n03"]
    down = as_reused(make_plan(parse_scenario(DIALLED_DOWN, name="m"), nodes(5), seed=1),
                     {"n04": frozenset({"n00", "n03"})}, ())
    assert down.catch_up_peers("n04", ["n01", "n02"], None, ROTATION_DUE) == []  # none it dials is up: no catch-up


def _faults(*faults: tuple[str, str, float, float]) -> str:
    """MINIMAL with [[faults]] tables of (type, nodes, at, duration), in that order."""
    return MINIMAL + "".join(f'\n[[faults]]\ntype = "{kind}"\nnodes = "{nodes}"\nat = {at:g}\nduration = {duration:g}\n'
                             for kind, nodes, at, duration in faults)


def test_overlapping_partitions_or_kills_of_one_node_are_refused_naming_the_file_and_line(tmp_path):
    """A run holds one partition at a time and its heal empties every block list; a node's restart ends every kill of
    it. Before: both were accepted, and the second partition (or kill) ended with the first, mid-run and unsaid."""
    path = tmp_path / "mine.toml"
    refused = _refusal(path, _faults(("partition", "honest[0]", 2, 10), ("partition", "rogue", 5, 10)))
    assert refused.startswith(
        f"{path}:27: faults[1].at: a partition at 5 s while faults[0] (from 2 s to 12 s) (n00 | rest) is in force: "
        "a run holds one partition at a time"), refused
    refused = _refusal(path, _faults(("kill", "honest", 2, 10), ("kill", "honest[1]", 5, 2)))
    assert refused.startswith(
        f"{path}:27: faults[1].at: kills n01 at 5 s while faults[0] (from 2 s to 12 s) has it down"), refused
    # one after the other, a partition and a kill at once, and a kill of another node are run as written
    for text in (_faults(("partition", "honest[0]", 2, 3), ("partition", "rogue", 5, 10)),
                 _faults(("kill", "honest[1]", 2, 3), ("kill", "honest[1]", 5, 2)),
                 _faults(("partition", "honest[0]", 2, 10), ("kill", "honest[0]", 5, 2), ("kill", "honest[1]", 3, 9))):
        make_plan(parse_scenario(text, name="m"), nodes(3), seed=1)
    # at one time, faults go in the file's order: a partition listed before the one whose heal is due then overlaps it
    with pytest.raises(ScenarioError, match=re.escape("faults[0].at: a partition at 5 s while faults[1] (from 2 s to "
                                                      "5 s)")):
        make_plan(parse_scenario(_faults(("partition", "rogue", 5, 10), ("partition", "honest[0]", 2, 3)), name="m"),
                  nodes(3), seed=1)


def test_an_equivocation_or_key_theft_due_while_the_nodes_it_needs_are_down_is_refused_before_the_run(tmp_path):
    """The runner fails such an attack as it comes (its offender or victim down, or no other node running to offer its
    records to). Before: the plan accepted it, and the run failed mid-way, after the testnet was made and the traffic
    ran, with no report."""
    path = tmp_path / "mine.toml"
    equivocation = FOLLOWED + '[[attacks]]\ntype = "equivocation"\norgs = "rogue"\nat = 5\n'
    refused = _refusal(path, _faults(("kill", "rogue", 2, 10)).replace(MINIMAL, equivocation))
    assert refused == (
        f"{path}:21: attacks[0].at: the equivocation at 5 s would fail mid-run: it needs n02 running and a running "
        "node outside group rogue whose horizon holds its org (each is offered records), and the faults then have "
        "n02 down; move it, or them")
    with pytest.raises(ScenarioError, match=re.escape("it needs n02 running and a running node outside group rogue "
                                                      "whose horizon holds its org (each is offered records), and the "
                                                      "faults then have n00, n01 down")):
        make_plan(parse_scenario(equivocation + _faults(("kill", "honest", 4, 2)).replace(MINIMAL, ""), name="m"),
                  nodes(3), seed=1)
    theft = FOLLOWED + '[[attacks]]\ntype = "key-theft"\norgs = "honest[0]"\nat = 5\n'
    with pytest.raises(ScenarioError, match=re.escape("attacks[0].at: the key theft at 5 s would fail mid-run: it "
                                                      "needs n00 running (its node contests the stolen key's rotation) "
                                                      "and a running node whose horizon holds its org (offered the "
                                                      "thief's records), and the faults then have n01, n02 down")):
        make_plan(parse_scenario(theft + _faults(("kill", "honest[1]", 2, 10), ("kill", "rogue", 4, 2))
                                 .replace(MINIMAL, ""), name="m"), nodes(3), seed=1)
    two_rogues = equivocation.replace("[orgs.rogue]\nnodes = 1", "[orgs.rogue]\nnodes = 2").replace(
        'orgs = "rogue"', 'orgs = "rogue[0]"')
    with pytest.raises(ScenarioError, match=re.escape("the faults then have n00, n01 down")):  # (n03: rogue too)
        make_plan(parse_scenario(two_rogues + _faults(("kill", "honest", 4, 2)).replace(MINIMAL, ""), name="m"),
                  nodes(4), seed=1)
    # with a node it needs back, or killed at the attack's time (the attack comes first), it is run as written
    for text in (theft + _faults(("kill", "honest[1]", 2, 10), ("kill", "rogue", 3, 1)).replace(MINIMAL, ""),
                 equivocation + _faults(("kill", "rogue", 5, 10)).replace(MINIMAL, ""),
                 equivocation + _faults(("kill", "honest[0]", 2, 10)).replace(MINIMAL, "")):
        make_plan(parse_scenario(text, name="m"), nodes(3), seed=1)


@pytest.mark.parametrize(("kind", "outside"), [("equivocation", " outside group rogue"), ("key-theft", "")])
def test_an_equivocation_or_key_theft_no_other_node_would_take_is_refused_naming_its_line(tmp_path, kind, outside):
    """A node refuses the records of an org outside its horizon (outside_horizon), so an attack on an org no other
    node follows does not happen. Before: the run offered them to the testnet's last running node whatever its
    horizon, the attack never happened, and the verdict judged it all the same (an equivocation "succeeded", a key
    theft was "contained")."""
    path = tmp_path / "mine.toml"
    refused = _refusal(path, MINIMAL + f'[[attacks]]\ntype = "{kind}"\norgs = "rogue"\nat = 5\n')
    assert refused == (
        f"{path}:19: attacks[0].orgs: the {kind.replace('-', ' ')} offers records of n02's org to another org's "
        f"node{outside}, and none has n02 inside its horizon (its roots, and the orgs within 3 org-peer vouches of "
        "them): each would refuse them (outside_horizon), so the attack would not happen; have a group root or vouch "
        "for group rogue")
    path.write_text(FOLLOWED + f'[[attacks]]\ntype = "{kind}"\norgs = "rogue"\nat = 5\n')
    assert make_plan(load_scenario(str(path)), nodes(3), seed=1).attack_peers(0, nodes(3), None) == ["n01", "n00"]


# rogue, n00, is inside the horizons of bridge, n03, which vouches for it, and of the honest orgs, n01 and n02, through
# bridge's vouch alone; quiet, n04, follows no one
BRIDGED = """\
description = "rogue equivocates at 10 s"
duration = 20

[orgs.rogue]
nodes = 1

[orgs.honest]
nodes = 2
roots = ["honest", "bridge"]
vouch = ["honest"]

[orgs.bridge]
nodes = 1
vouch = ["rogue"]

[orgs.quiet]
nodes = "rest"

[agents.good]
count = 1
behaviour = "honest"
operator = "honest"
works_at = ["honest"]

[[attacks]]
type = "equivocation"
orgs = "rogue"
at = 10
"""


def test_an_equivocation_no_node_follows_once_an_earlier_attack_flagged_its_way_in_is_refused():
    """A flagged org's vouches extend no horizon (vouching.horizon): once bridge's key is stolen and the theft
    flags it, no node takes rogue's records."""
    theft = '\n[[attacks]]\ntype = "key-theft"\norgs = "bridge"\nat = {}\n'
    make_plan(parse_scenario(BRIDGED, name="m"), nodes(5), seed=1)
    make_plan(parse_scenario(BRIDGED + theft.format(15), name="m"), nodes(5), seed=1)  # (after it: as written)
    with pytest.raises(ScenarioError, match=r"^scenario:27: attacks\[0\]\.orgs: the equivocation offers records of "
                       r"n00's org to another org's node outside group rogue, and none has n00 inside its horizon "
                       r"\(its roots, and the orgs within 3 org-peer vouches of them; the vouches of n03, flagged by "
                       r"an attack before it, extend none\)"):
        make_plan(parse_scenario(BRIDGED + theft.format(5), name="m"), nodes(5), seed=1)
    # at one time, a run takes the attacks in the file's order: the theft written first flags bridge before it
    make_plan(parse_scenario(BRIDGED + theft.format(10), name="m"), nodes(5), seed=1)
    theft_first = BRIDGED.replace('[[attacks]]\ntype = "equivocation"',
                                  theft.format(10).lstrip() + '\n[[attacks]]\ntype = "equivocation"')
    with pytest.raises(ScenarioError, match=r"attacks\[1\]\.orgs: the equivocation .* the vouches of n03, flagged "
                       r"by an attack before it, extend none"):
        make_plan(parse_scenario(theft_first, name="m"), nodes(5), seed=1)


def test_on_a_testnet_reused_a_rotation_followed_only_through_an_org_an_earlier_run_flagged_is_refused():
    """rogue's followers, the honest orgs, hold its records through bridge's vouch alone: once an earlier run flagged
    bridge, none does, and `vouchnet key rotate` of rogue's key would refuse to sign. Before: the plan counted them."""
    rotation = BRIDGED.split("[[attacks]]")[0] + '[[faults]]\ntype = "rotate"\nnodes = "rogue"\nat = 5\n'
    plan = make_plan(parse_scenario(rotation, name="m"), nodes(5), seed=1)
    dials = {"n00": frozenset({"n01", "n02", "n03"})}
    assert as_reused(plan, dials, ()).flagged == frozenset()
    with pytest.raises(ScenarioError, match=r"^scenario:\d+: faults\[0\]: the rotation of n00's key at 5 s would fail "
                       r"mid-run: .*none has n00 inside its horizon: its roots, and the orgs within 3 org-peer vouches "
                       r"of them; the vouches of n03, flagged by an earlier run on this testnet, extend none\)"):
        as_reused(plan, dials, {"n03"})


def test_on_a_testnet_reused_a_rotation_of_an_org_an_earlier_run_flagged_is_refused():
    """`vouchnet key rotate` of a flagged org signs, but every node flags the new key as it links it, and a node
    holding the other side of the earlier fork refuses the rotation (prev or retired key). Before: the plan was
    neither checked nor refused, and the run measured the earlier run's fork as the rotation's."""
    rotation = BRIDGED.split("[[attacks]]")[0] + '[[faults]]\ntype = "rotate"\nnodes = "rogue"\nat = 5\n'
    plan = make_plan(parse_scenario(rotation, name="m"), nodes(5), seed=1)
    dials = {"n00": frozenset({"n01", "n02", "n03"})}
    with pytest.raises(ScenarioError, match=r"^scenario:\d+: faults\[0\]: the rotation of n00's key at 5 s is of an "
                       r"org an earlier run on this testnet flagged as an equivocator: .* run it on a fresh testnet"):
        as_reused(plan, dials, {"n00"})
    as_reused(plan, dials, {"n04"})  # (another org flagged: its followers still hold n00's records)


def test_a_rotation_of_an_org_the_run_s_own_attack_flags_before_it_is_refused(tmp_path):
    """An equivocation (or a key theft) due before a rotation of its org flags it as it does an earlier run's: every
    node would flag the new key, and a node holding the fork's other side refuses the rotation. Before: the plan
    accepted it (only an earlier run's flag was checked), and the run measured the attack's fork as the rotation."""
    rotate = '\n[[faults]]\ntype = "rotate"\nnodes = "{}"\nat = {}\n'
    make_plan(parse_scenario(BRIDGED + rotate.format("rogue", 5), name="m"), nodes(5), seed=1, fresh=True)
    assert _refusal(tmp_path / "mine.toml", BRIDGED + rotate.format("rogue", 15), 5, fresh=True) == (
        f"{tmp_path / 'mine.toml'}:30: faults[0]: the rotation of n00's key at 15 s is of an org attacks[0], the "
        "equivocation at 10 s, flags as an equivocator before it: every node would flag the new key as it links it to "
        "the org, and a node holding the other side of the org's fork (the equivocation's other record) refuses every "
        "later record of the key, the rotation's too, so the run would measure the equivocation's fork, not a "
        "rotation; have the rotation come before the attack (attacks go first at one time), or rotate an org no "
        "attack flags first")
    at_one_time = r"faults\[0\]: the rotation of n00's key at 10 s is of an org attacks\[0\], the equivocation at 10 s"
    with pytest.raises(ScenarioError, match=at_one_time):
        make_plan(parse_scenario(BRIDGED + rotate.format("rogue", 10), name="m"), nodes(5), seed=1)  # (not fresh)
    theft = BRIDGED + '\n[[attacks]]\ntype = "key-theft"\norgs = "bridge"\nat = 12\n'
    with pytest.raises(ScenarioError, match=re.escape(
            "faults[0]: the rotation of n03's key at 14 s is of an org attacks[1], the key theft at 12 s, flags as an "
            "equivocator before it: every node would flag the new key as it links it to the org, and a node holding "
            "the other side of the org's fork (the thief's rotation) refuses")):
        make_plan(parse_scenario(theft + rotate.format("bridge", 14), name="m"), nodes(5), seed=1)


def test_a_rotation_followed_only_through_an_org_an_attack_before_it_flags_is_refused():
    """rogue's followers hold its records through bridge's vouch alone, and a key theft flags bridge before rogue's
    rotation: no follower is left, and `vouchnet key rotate` would refuse to sign mid-run. Before: the plan counted
    bridge's vouch (only an earlier run's flags were taken out)."""
    quiet = BRIDGED.split("[[attacks]]")[0]
    theft = ('[[attacks]]\ntype = "key-theft"\norgs = "bridge"\nat = {}\n\n'
             '[[faults]]\ntype = "rotate"\nnodes = "rogue"\nat = 8\n')
    make_plan(parse_scenario(quiet + theft.format(9), name="m"), nodes(5), seed=1, fresh=True)
    with pytest.raises(ScenarioError, match=r"faults\[0\]: the rotation of n00's key at 8 s would fail mid-run: .*"
                       r"the vouches of n03, flagged by an attack before it, extend none\)"):
        make_plan(parse_scenario(quiet + theft.format(5), name="m"), nodes(5), seed=1, fresh=True)


def test_an_equivocation_must_be_one_org_s():
    """A run has the first org selected equivocate (testnet.runner); before, a selector naming more was accepted and
    the others, counted as attackers, did nothing, unsaid (the summary named the one that did)."""
    two = FOLLOWED + '[[attacks]]\ntype = "equivocation"\norgs = "honest"\nat = 5\n'
    refused = ("attacks[0].orgs: an equivocation is one org's (its key signs two records at one seq), but honest "
               "selects 2 (write GROUP[i])")
    with pytest.raises(ScenarioError, match=re.escape(refused)):
        make_plan(parse_scenario(two, name="m"), nodes(3), seed=1)
    make_plan(parse_scenario(two.replace('"honest"\nat', '"honest[1]"\nat'), name="m"), nodes(3), seed=1)


def test_a_whitewash_due_while_an_operator_of_its_agents_is_down_is_refused_before_the_run(tmp_path):
    """The operator of each whitewashed agent vouches for its new identity through its node's API. Before: the plan
    accepted it, and the run failed mid-way (the node unreachable), after the traffic ran, with no report."""
    path = tmp_path / "mine.toml"
    whitewash = MINIMAL + '[[attacks]]\ntype = "whitewash"\nagents = "good"\nat = 5\n'
    refused = _refusal(path, whitewash + _faults(("kill", "honest[1]", 2, 10)).replace(MINIMAL, ""))
    assert refused == (
        f"{path}:20: attacks[0].at: the whitewash at 5 s would fail mid-run: it needs the operators of agents good "
        "running (n00, n01: each vouches for its agents' new identities), and the faults then have n01 down; move it, "
        "or them")
    # with its operators running (a node of another group down, or its operator back by then), it is run as written
    for faults in (_faults(("kill", "rogue", 2, 10)), _faults(("kill", "honest[1]", 2, 2))):
        make_plan(parse_scenario(whitewash + faults.replace(MINIMAL, ""), name="m"), nodes(3), seed=1)


def test_a_key_theft_must_rob_one_org_and_have_another_node_to_offer_to():
    two = MINIMAL + '[[attacks]]\ntype = "key-theft"\norgs = "honest"\nat = 5\n'
    with pytest.raises(ScenarioError, match=re.escape("attacks[0].orgs: a key theft steals one org's key, but honest "
                                                      "selects 2 (write GROUP[i])")):
        make_plan(parse_scenario(two, name="m"), nodes(3), seed=1)
    alone = two.replace("[orgs.rogue]\nnodes = 1\n", "").replace('orgs = "honest"', 'orgs = "honest[0]"').replace(
        'works_at = ["honest"]', 'works_at = ["honest"]\norgs_per_agent = 1')
    with pytest.raises(ScenarioError, match=re.escape("attacks[0]: a key theft offers the thief's records to another "
                                                      "org's node, and this testnet has one node")):
        make_plan(parse_scenario(alone, name="m"), nodes(1), seed=1)


def test_an_unknown_scenario_name_lists_the_library():
    with pytest.raises(ScenarioError, match="no-such: no such scenario file, and not one of the library's: .*baseline"):
        load_scenario("no-such")


def test_a_library_scenario_named_as_a_file_says_how_to_name_it(tmp_path, monkeypatch):
    """Before: `testnet run baseline.toml` said only 'baseline.toml: cannot be read (No such file or directory)'."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ScenarioError, match=re.escape("baseline.toml: no such scenario file; the library's baseline "
                                                      "is named without .toml (`vouchnet testnet run baseline`)")):
        load_scenario("baseline.toml")
    (tmp_path / "baseline.toml").write_text(MINIMAL)  # (a file of that name is read)
    assert load_scenario("baseline.toml").description == "two groups"


def test_the_cli_refuses_a_broken_scenario_before_starting_anything(tmp_path, capsys):
    from node.cli import main

    broken = tmp_path / "broken.toml"
    broken.write_text(MINIMAL.replace("duration = 30", "duration = -1"))
    assert main(["testnet", "run", str(broken), "--dir", str(tmp_path / "testnet")]) == 2
    assert f"vouchnet testnet run: {broken}:2: duration: must be from 1 to 3600, got -1" in capsys.readouterr().err
    assert not (tmp_path / "testnet").exists()


def test_the_cli_refuses_a_scenario_that_does_not_fit_its_testnet_naming_the_file_and_line(tmp_path, capsys):
    from node.cli import main

    mine = tmp_path / "mine.toml"
    mine.write_text(ROTATE_ROGUE)
    assert main(["testnet", "run", str(mine), "--nodes", "3", "--dir", str(tmp_path / "testnet")]) == 2
    assert (f"vouchnet testnet run: {mine}:18: faults[0]: the rotation of n02's key at 5 s would fail mid-run"
            in capsys.readouterr().err)
    assert not (tmp_path / "testnet").exists()


def test_the_cli_refuses_a_rotation_that_would_catch_up_with_no_follower_before_making_a_testnet(tmp_path, capsys):
    """A testnet `run` makes is one whose nodes dial their bootstrap peers and their horizons' orgs only: the plan
    checked before making it knows that (here n04 dials n00, killed, and n03, which does not follow it)."""
    from node.cli import main

    mine = tmp_path / "mine.toml"
    mine.write_text(DIALLED_QUIET)
    assert main(["testnet", "run", str(mine), "--dir", str(tmp_path / "testnet")]) == 2
    assert (f"vouchnet testnet run: {mine}:33: faults[2]: the rotation of n04's key at 5 s would fail mid-run: "
            "`vouchnet key rotate` first takes the org's records back from the running nodes it dials (its bootstrap "
            "peers and the orgs whose `org` records it holds: those of its horizon, and any it held as the run began): "
            "n03, and none") in capsys.readouterr().err
    assert not (tmp_path / "testnet").exists()


@pytest.mark.parametrize(("argv", "complaint"), [
    (["up", "--nodes", "0"], "argument --nodes: expected a number of nodes, 1 to 100, got '0'"),
    (["run", "baseline", "--nodes", "0"], "argument --nodes: expected a number of nodes, 1 to 100, got '0'"),
    (["run", "baseline", "--duration", "0"], "--duration: must be from 1 to 3600, got 0.0"),
    (["run", "baseline", "--duration", "nan"], "--duration: must be from 1 to 3600, got nan"),
    (["logs", "n00", "--lines", "-5"], "argument --lines/-n: expected a positive integer, got '-5'"),
    (["down", "--timeout", "nan"], "argument --timeout: expected seconds, 0 or more, got 'nan'"),
    # (a negative seed ended a run in numpy's traceback, its nodes started)
    (["up", "--seed", "-1"], f"argument --seed: expected a seed, a whole number from 0 to {2**63 - 1}, got '-1'"),
    (["run", "baseline", "--seed", "-1"], "argument --seed: expected a seed, a whole number from 0 to"),
])
def test_the_cli_refuses_a_bad_number_before_starting_anything(tmp_path, capsys, argv, complaint):
    """A usage error (2) naming the option: not a run of no traffic, a testnet of no node, or no output at all."""
    from node.cli import main

    assert main(["testnet", *argv, "--dir", str(tmp_path / "testnet")]) == 2
    assert complaint in capsys.readouterr().err
    assert not (tmp_path / "testnet").exists()


def test_a_multi_line_string_hides_no_key_and_shows_none():
    text = MINIMAL.replace('description = "two groups"', 'description = """two\ncount = 3\ngroups"""\nnodes = 0')
    with pytest.raises(ScenarioError, match=r"^broken.toml:4: nodes: must be from 1 to 100, got 0"):
        parse_scenario(text, name="broken", where="broken.toml")
    with pytest.raises(ScenarioError, match=r"^broken.toml:1: description: must be a string"):
        parse_scenario(text.replace('"""two', '"""' + "x" * 2001), name="broken", where="broken.toml")


def test_the_cli_makes_no_testnet_too_small_for_the_scenario(tmp_path, capsys):
    """Left behind, it failed every later run of the scenario in that directory, --nodes or not."""
    from node.cli import main

    assert main(["testnet", "run", "sybil-collusion", "--nodes", "2", "--dir", str(tmp_path / "testnet")]) == 2
    assert "scenario sybil-collusion needs at least 5 nodes" in capsys.readouterr().err
    assert not (tmp_path / "testnet").exists()


@pytest.mark.parametrize(("data", "line", "byte"), [(b"\xff\xfe", 1, "0xff"),
                                                     (b'description = "x"\n# caf\xe9\n', 2, "0xe9")])
def test_a_scenario_file_that_is_not_utf8_is_refused_naming_its_line(tmp_path, data, line, byte):
    """Before: `testnet run` ended in a UnicodeDecodeError's traceback."""
    path = tmp_path / "latin.toml"
    path.write_bytes(data)
    with pytest.raises(ScenarioError, match=rf"^{re.escape(str(path))}:{line}: not UTF-8 text, as a TOML file is "
                       rf"\(byte {byte}\)$"):
        load_scenario(str(path))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 st.builds(lambda cut, junk: MINIMAL.encode()[:cut] + junk, st.integers(0, len(MINIMAL)),
                           st.binary(max_size=20))))
def test_any_scenario_file_loads_or_is_refused_with_a_scenario_error(tmp_path, data):
    """Whatever a scenario file holds, `testnet run` gets a scenario or a ScenarioError naming the file, never
    another exception (a traceback)."""
    path = tmp_path / "any.toml"
    path.write_bytes(data)
    try:
        load_scenario(str(path))
    except ScenarioError as e:
        assert str(e).startswith(str(path)), e


_REVOKED = MINIMAL + '\n[[revocations]]\nagents = "good"\nat = 5\n'


def test_a_revocation_is_read_with_its_agents_and_time_and_the_library_plays_one():
    """`[[revocations]]`: an operator revoking its vouch for its agents mid-run, which `[[edges]]` and the operator
    vouches made before the traffic could not say."""
    scenario = parse_scenario(_REVOKED, name="m")
    assert [(r.agents, r.at) for r in scenario.revocations] == [("good", 5.0)]
    assert {r.agents for r in load_scenario("revoked-operator").revocations} == {"disowned", "bad"}


@pytest.mark.parametrize(("text", "error"), [
    (_REVOKED.replace('agents = "good"\nat', 'agents = "bad"\nat'),
     "m:19: revocations[0].agents: no agent group 'bad' (there are: good)"),
    (_REVOKED.replace("at = 5", "at = 30"), "m:20: revocations[0].at: 30 s is not within the file's duration of 30 s"),
    (_REVOKED.replace("at = 5\n", ""), "m:18: revocations[0].at: required"),
    (_REVOKED + 'type = "vouch"\n', "m:21: revocations[0].type: unknown key (known: agents, at)"),
    (_REVOKED + '\n[[revocations]]\nagents = "good"\nat = 9\n', "m:23: revocations[1].agents: revocations[0] "
     "revokes the operator vouches of agents good at 5 s already: a run revokes a group's vouches once"),
    ('revocations = "good"\n' + MINIMAL, "m:1: revocations: must be an array of tables ([[revocations]])"),
])
def test_a_broken_revocation_is_refused_naming_its_line_key_and_rule(text, error):
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(text, name="m", where="m")
    assert str(refused.value) == error


def test_a_revocation_due_while_an_operator_of_its_agents_is_down_or_flagged_is_refused_before_the_run(tmp_path):
    """Each operator revokes through its node's API: down then, the run would fail mid-way; flagged as an equivocator
    by then, its vouch counts for nothing at any node already, and the revocation would show nothing of its own."""
    path = tmp_path / "mine.toml"
    down = _REVOKED + _faults(("kill", "honest[1]", 2, 10)).replace(MINIMAL, "")
    assert _refusal(path, down) == (
        f"{path}:20: revocations[0].at: the revocation at 5 s would fail mid-run: it needs the operators of agents "
        "good running (n00, n01: each revokes its vouches through its node), and the faults then have n01 down; move "
        "it, or them")
    # at one time, a revocation comes after the faults: a restart at 5 s has its operator back
    make_plan(parse_scenario(_REVOKED + _faults(("kill", "honest[1]", 2, 3)).replace(MINIMAL, ""), name="m"),
              nodes(3), seed=1)
    equivocated = FOLLOWED + '\n[[attacks]]\ntype = "equivocation"\norgs = "honest[1]"\nat = 5\n' + \
        '\n[[revocations]]\nagents = "good"\nat = 5\n'
    assert _refusal(path, equivocated).startswith(
        f"{path}:25: revocations[0].agents: the revocation at 5 s is by the operators of agents good, and n01 is "
        "flagged as an equivocator by then")
    plan = make_plan(parse_scenario(_REVOKED, name="m"), nodes(3), seed=1)
    with pytest.raises(ScenarioError, match="n00 is flagged as an equivocator by then"):
        as_reused(plan, {}, {"n00"})


_UNVOUCHED = MINIMAL + ('\n[[vouches]]\nfrom = "honest"\nto = "rogue"\naction = "vouch"\nweight = 0.5\nat = 5\n'
                        '\n[[vouches]]\nfrom = "honest[1]"\nto = "rogue"\naction = "revoke"\nat = 12\n')


def test_org_peer_vouches_made_and_revoked_mid_run_change_the_horizons_from_their_time_on():
    """`[[vouches]]`: orgs vouching for another org, or revoking their vouch, mid-run (before: only the operators'
    vouches for agents could be revoked, `[[revocations]]`); the plan's trust graph at any time is the file's with the
    changes due before it made, which is what the attacks and rotations due then are planned by."""
    plan = make_plan(parse_scenario(_UNVOUCHED, name="m"), nodes(3), seed=1)
    assert [plan.vouch_pairs(i) for i in (0, 1)] == [[("n00", "n02"), ("n01", "n02")], [("n01", "n02")]]
    assert plan.vouches["n00"] == {"n01": 0.9}
    assert plan.at((5, 0)).vouches["n00"] == {"n01": 0.9}  # due at 5 s, after the attacks and faults then
    assert plan.at((5, 301)).vouches["n01"] == {"n00": 0.9, "n02": 0.5}
    assert plan.final.vouches == {"n00": {"n01": 0.9, "n02": 0.5}, "n01": {"n00": 0.9}, "n02": {}}
    assert "n02" not in plan.horizon("n00") and "n02" in plan.final.horizon("n00")


def test_the_library_plays_a_partner_turning_bad_and_its_partners_un_vouching_it():
    scenario = load_scenario("turncoat")
    plan = make_plan(scenario, nodes(scenario.nodes), seed=1)
    [change] = scenario.vouch_changes
    turncoat = plan.groups["turncoat"]
    assert change.action == "revoke" and {b for _, b in plan.vouch_pairs(0)} == set(turncoat)
    assert all(turncoat[0] in plan.horizon(n) for n in plan.groups["honest"])
    assert not any(turncoat[0] in plan.final.horizon(n) for n in plan.groups["honest"])
    assert {a.type for a in scenario.attacks} == {"slander"} and scenario.attacks[0].at < change.at


_VOUCH = MINIMAL + '\n[[vouches]]\nfrom = "honest"\nto = "rogue"\naction = "vouch"\nat = 5\n'


@pytest.mark.parametrize(("text", "error"), [
    (_VOUCH.replace('to = "rogue"', 'to = "bad"'),
     "m:20: vouches[0].to: no org group 'bad' (there are: honest, rogue)"),
    (_VOUCH.replace('from = "honest"', 'from = "honest[x]"'),
     "m:19: vouches[0].from: must be GROUP, GROUP[i] or GROUP[i:j], got 'honest[x]'"),
    (_VOUCH.replace("at = 5", "at = 30"), "m:22: vouches[0].at: 30 s is not within the file's duration of 30 s"),
    (_VOUCH + "weight = 1.5\n", "m:23: vouches[0].weight: must be from 0.01 to 1, got 1.5"),
    (_VOUCH + "weight = 0\n", "m:23: vouches[0].weight: must be from 0.01 to 1, got 0"),
    (_VOUCH.replace('"vouch"', '"unvouch"'), "m:21: vouches[0].action: must be one of vouch, revoke, got 'unvouch'"),
    (_VOUCH.replace('action = "vouch"\n', ""), "m:18: vouches[0].action: required, one of vouch, revoke"),
    (_VOUCH.replace('"vouch"', '"revoke"') + "weight = 0.5\n",
     "m:23: vouches[0].weight: a revoke takes no weight (it revokes the vouch in force then)"),
    (_VOUCH + "count = 1\n", "m:23: vouches[0].count: unknown key (known: action, at, from, to, weight)"),
    ('vouches = 1\n' + MINIMAL, "m:1: vouches: must be an array of tables ([[vouches]])"),
])
def test_a_broken_vouch_change_is_refused_naming_its_line_key_and_rule(text, error):
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(text, name="m", where="m")
    assert str(refused.value) == error


def test_a_vouch_change_that_would_not_happen_as_written_is_refused_before_the_run(tmp_path):
    """Each voucher signs through its node: a vouch in force already, a revoke of one not in force, no pair at all, a
    voucher down or flagged as an equivocator then, would each fail mid-run or show nothing of its own."""
    path = tmp_path / "mine.toml"
    assert _refusal(path, _VOUCH.replace('to = "rogue"', 'to = "honest[1]"')) == (
        f"{path}:20: vouches[0].to: at 5 s the vouch of n00 for n01 (0.9) is in force already (by the scenario's "
        "trust graph, or a [[vouches]] change before it), and a second would not replace it: a node keeps both, the "
        "stronger counting, and a later revoke would leave the other in force; to vouch at another weight, revoke it "
        "first (a [[vouches]] revoke due before this vouch, or at its time and listed before it)")
    assert _refusal(path, _VOUCH.replace('"vouch"', '"revoke"')) == (
        f"{path}:20: vouches[0].to: at 5 s no org-peer vouch of n00 for n02, n01 for n02 is in force to revoke (the "
        "scenario's trust graph and the [[vouches]] changes before it make none)")
    assert _refusal(path, _VOUCH.replace('from = "honest"', 'from = "rogue"')) == (
        f"{path}:18: vouches[0]: from rogue to rogue makes no vouch: an org does not vouch for itself")
    down = _VOUCH + _faults(("kill", "honest[1]", 2, 10)).replace(MINIMAL, "")
    assert _refusal(path, down) == (
        f"{path}:22: vouches[0].at: the vouch at 5 s would fail mid-run: it needs the orgs of honest running (n00, "
        "n01: each signs its vouch through its node), and the faults then have n01 down; move it, or them")
    equivocated = FOLLOWED + '\n[[attacks]]\ntype = "equivocation"\norgs = "honest[1]"\nat = 5\n' + \
        '\n[[vouches]]\nfrom = "honest"\nto = "rogue"\naction = "revoke"\nat = 5\n'
    assert _refusal(path, equivocated).startswith(
        f"{path}:25: vouches[0].from: the revoke at 5 s is by n01, flagged as an equivocator by then")
    # revoked at 5 s and made again at 5 s, in the file's order: the second is checked against what the first left
    make_plan(parse_scenario(FOLLOWED + '\n[[vouches]]\nfrom = "honest"\nto = "rogue"\naction = "revoke"\nat = 5\n'
                             '\n[[vouches]]\nfrom = "honest"\nto = "rogue"\naction = "vouch"\nat = 5\n', name="m"),
              nodes(3), seed=1)


def test_a_vouch_at_another_weight_for_a_pair_vouched_already_is_refused_and_one_revoked_first_is_made(tmp_path):
    """A scenario that vouches again for a pair to change its weight: a node would keep both vouches (the stronger
    counting, so a lower weight changes nothing) and a later revoke would revoke the newer alone, leaving the older in
    force; the run refuses it naming the line and the weight in force, and takes a revoke listed before it at the same
    time, after which the pair stands at the new weight."""
    path = tmp_path / "mine.toml"
    again = FOLLOWED + '\n[[vouches]]\nfrom = "honest[0]"\nto = "rogue"\naction = "vouch"\nweight = 0.3\nat = 5\n'
    assert _refusal(path, again).startswith(
        f"{path}:21: vouches[0].to: at 5 s the vouch of n00 for n02 (0.9) is in force already")
    revoked_first = FOLLOWED + ('\n[[vouches]]\nfrom = "honest[0]"\nto = "rogue"\naction = "revoke"\nat = 5\n'
                                '\n[[vouches]]\nfrom = "honest[0]"\nto = "rogue"\naction = "vouch"\nweight = 0.3\n'
                                'at = 5\n')
    plan = make_plan(parse_scenario(revoked_first, name="m"), nodes(3), seed=1)
    assert plan.final.vouches["n00"]["n02"] == 0.3


def test_a_vouch_change_due_with_a_fault_step_is_taken_after_it_as_the_run_takes_them(tmp_path):
    """At one time a run takes the fault steps first, then the revocations, then the `[[vouches]]` changes
    (VOUCH_CHANGE_ORDER): a vouch due as its voucher is killed would fail mid-run, and one due as its voucher restarts
    is made once it runs."""
    path = tmp_path / "mine.toml"
    killed_then = _VOUCH + _faults(("kill", "honest[1]", 5, 10)).replace(MINIMAL, "")
    assert "vouches[0].at: the vouch at 5 s would fail mid-run" in _refusal(path, killed_then)
    restarted_then = _VOUCH + _faults(("kill", "honest[1]", 1, 4)).replace(MINIMAL, "")
    make_plan(parse_scenario(restarted_then, name="m"), nodes(3), seed=1)


def test_the_vouch_changes_are_made_in_time_order_not_the_files():
    """The trust graph at the end (what convergence and the witnesses are judged by) and at any time takes the
    changes in the order the run makes them: a revoke at 10 s listed after a vouch again at 20 s leaves the vouch."""
    plan = make_plan(parse_scenario(FOLLOWED + '\n[[vouches]]\nfrom = "honest[0]"\nto = "rogue"\naction = "vouch"\n'
                                    'at = 20\n\n[[vouches]]\nfrom = "honest[0]"\nto = "rogue"\naction = "revoke"\n'
                                    'at = 10\n', name="m"), nodes(3), seed=1)
    assert plan.at((15, 0)).vouches["n00"] == {"n01": 0.9}
    assert plan.final.vouches["n00"] == {"n01": 0.9, "n02": 0.9}


def test_a_rotation_after_its_followers_un_vouched_it_catches_up_with_them_all_the_same():
    """A node keeps the records it stored of an org a `[[vouches]]` revoke takes out of its horizon, and serves them
    to the org's catch-up: the rotation of an org its partners un-vouched is planned. Before: refused, "none of them
    holds them", with the advice to have a group vouch for it, which the file did until the revoke."""
    text = FOLLOWED + ('\n[[vouches]]\nfrom = "honest"\nto = "rogue"\naction = "revoke"\nat = 5\n'
                       '\n[[faults]]\ntype = "rotate"\nnodes = "rogue"\nat = 10\n')
    plan = make_plan(parse_scenario(text, name="m"), nodes(3), seed=1, fresh=True)
    assert plan.at((10, 100)).followers("n02") == [] and plan.holders("n02", (10, 100)) == {"n00", "n01"}


def test_an_attack_is_planned_by_the_org_peer_vouches_in_force_when_it_is_due(tmp_path):
    """An equivocation of rogue, which no org follows until the honest orgs vouch for it mid-run: its records find a
    node that takes them once that vouch is made, not before."""
    path = tmp_path / "mine.toml"
    equivocation = '\n[[attacks]]\ntype = "equivocation"\norgs = "rogue"\nat = 10\n'
    vouch = '\n[[vouches]]\nfrom = "honest"\nto = "rogue"\naction = "vouch"\nat = {}\n'
    make_plan(parse_scenario(MINIMAL + equivocation + vouch.format(5), name="m"), nodes(3), seed=1)
    assert "none has n02 inside its horizon" in _refusal(path, MINIMAL + equivocation + vouch.format(15))
