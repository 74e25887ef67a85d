"""Testnet scenarios: TOML files that say who the orgs are, whom they trust, which agents work where and how they
behave, which attacks, faults, revocations and vouch changes happen when, and what to measure. Loaded strictly: an
unknown key, a wrong type, a value out of range or a name that refers to nothing is a ScenarioError naming the file
and line, the key and the rule; so is one found later, laying it onto a testnet (testnet.plan) or shortening it
(--duration).

The format is documented in README.md ("Running a testnet") and by the files in testnet/scenarios/.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import MAX_COSIGNATURES

from .cluster import Settings
from .state import MAX_NODES

LIBRARY = Path(__file__).parent / "scenarios"
BEHAVIOURS = ("honest", "malicious", "on-off", "turned-bad", "camouflage")
ATTACKS = ("praise", "slander", "equivocation", "whitewash", "key-theft")
FAULTS = ("kill", "partition", "rotate")
VOUCH_ACTIONS = ("vouch", "revoke")
EDGE_WEIGHT = 0.9  # an org-peer vouch's weight where the file gives none (an org group's `vouch`, `[[edges]]`)
MIN_DURATION, MAX_DURATION = 1, 3600  # seconds of traffic a run may have, in its file or by --duration
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_SELECTOR = re.compile(r"([a-z][a-z0-9_-]{0,31})(?:\[(\d+)(?:(:)(\d+)?)?\])?")


class ScenarioError(ValueError):
    """A scenario that cannot run: the message is "where: key: rule"."""


@dataclass(frozen=True)
class Source:
    """Where a scenario was read from: its file (or "scenario" for text given whole) and that text, so that an error
    found when it is laid onto a testnet (testnet.plan) names its file and line as one found in reading it does."""

    where: str = "scenario"
    text: str = ""

    def locate(self, error: ScenarioError) -> ScenarioError:
        """`error` ("key: rule") prefixed with the file and the line of the key it names, or of the nearest table
        or key the key is inside (_line_of); with the file alone where no line holds it."""
        line = _line_of(self.text, str(error).split(": ", 1)[0])
        return ScenarioError(f"{self.where}{'' if line is None else f':{line}'}: {error}")

    def locate_misfit(self, error: ScenarioError) -> ScenarioError:
        """locate's error for a scenario that does not fit a testnet or a --duration as written; for one of the
        library's, whose file is installed with vouchnet (editing it changes it for every later run, and an upgrade
        undoes the edit), ending with the commands that copy it to change, and run the copy."""
        located = self.locate(error)
        path = Path(self.where)
        if path.resolve().parent != LIBRARY.resolve():
            return located
        return ScenarioError(f"{located}; {path.stem} is the library's scenario, installed with vouchnet: to change "
                             f"it, copy it first (`cp {path} ./{path.stem}.toml`) and run the copy (`vouchnet testnet "
                             f"run ./{path.stem}.toml`)")


@dataclass(frozen=True)
class Selector:
    """Orgs of one group: all of them, one (`group[i]`) or a slice (`group[i:j]`, j exclusive, open-ended `i:`)."""

    group: str
    start: int = 0
    stop: int | None = None  # None: to the end of the group
    text: str = ""

    def pick(self, members: list[str]) -> list[str]:
        return members[self.start:self.stop]


@dataclass(frozen=True)
class OrgGroup:
    name: str
    nodes: int | None  # None: every node the other groups leave
    roots: tuple[str, ...]  # groups whose orgs each org roots
    vouch: tuple[str, ...]  # groups whose orgs each org vouches for (org-peer)


@dataclass(frozen=True)
class Edge:
    """Extra org-peer vouches: `count` orgs of `source` each vouch for one org of `target` (None: all pairs)."""

    source: str
    target: str
    count: int | None
    weight: float


@dataclass(frozen=True)
class Behaviour:
    model: str
    on: float = 20.0  # on-off: seconds of good behaviour
    off: float = 10.0  # on-off: seconds of misbehaviour
    at: float = 30.0  # turned-bad: when it turns
    good_share: float = 0.5  # camouflage: share of interactions it behaves well in

    @property
    def malicious(self) -> bool:
        """Ground truth for the confusion matrix: does it ever misbehave on purpose?"""
        return self.model != "honest"


@dataclass(frozen=True)
class AgentGroup:
    name: str
    count: int
    behaviour: Behaviour
    operator: str  # the org group whose orgs operate these agents (and vouch for them, basis operator)
    works_at: tuple[str, ...]  # org groups whose orgs see (and report) the agents' actions
    orgs_per_agent: int


@dataclass(frozen=True)
class Attack:
    type: str
    orgs: Selector | None = None  # praise, slander, equivocation: the attackers; key-theft: the victim
    agents: str | None = None  # praise, slander, whitewash
    at: float = 0.0  # equivocation, whitewash and key-theft: when; praise and slander: from when
    until: float | None = None  # praise and slander: until when (None: the end of the run)

    @property
    def attackers(self) -> Selector | None:
        """The orgs that attack, if orgs do: a key thief is no org of the testnet, and its `orgs` is its victim."""
        return None if self.type == "key-theft" else self.orgs


@dataclass(frozen=True)
class Fault:
    type: str
    nodes: Selector
    at: float
    duration: float  # kill: seconds down before the restart; partition: seconds cut off before healing; rotate: 0


@dataclass(frozen=True)
class Revocation:
    """Operators revoking their vouches mid-run (`[[revocations]]`): at `at` seconds into the traffic, the org that
    operates each agent of group `agents` revokes its operator vouch for the agent's identity then."""

    agents: str
    at: float


@dataclass(frozen=True)
class VouchChange:
    """Org-peer vouches made or revoked mid-run (`[[vouches]]`): at `at` seconds into the traffic, each org of
    `source` vouches for each org of `target` with `weight` (`action` "vouch"), or revokes its vouch for it
    ("revoke"), itself aside."""

    source: Selector
    target: Selector
    action: str
    at: float
    weight: float = EDGE_WEIGHT


@dataclass(frozen=True)
class Traffic:
    round_seconds: float = 1.0
    # Per agent, per org it works at, per round. Scoring caps one org's digests about one agent at 30 good and 60
    # bad pseudo-observations per hour (vouching.params); a testnet's minutes fall in one such window, so a busy
    # honest agent's capped good evidence would be outweighed by its uncapped errors (README "Running a testnet").
    events_per_round: int = 1
    high_risk_share: float = 0.1  # of events that are high-risk tool calls


@dataclass(frozen=True)
class Measure:
    score_seconds: float = 3.0  # how often every node is asked for every agent's score
    settle_seconds: float = 10.0  # measuring goes on this long after traffic stops
    poll_seconds: float = 0.5  # how often every node is asked for the records it accepted since the last time


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    nodes: int
    duration: float
    settings: Settings
    traffic: Traffic
    measure: Measure
    orgs: tuple[OrgGroup, ...]
    edges: tuple[Edge, ...]
    agents: tuple[AgentGroup, ...]
    attacks: tuple[Attack, ...]
    faults: tuple[Fault, ...]
    revocations: tuple[Revocation, ...] = ()
    vouch_changes: tuple[VouchChange, ...] = ()  # `[[vouches]]`
    source: Source = Source()

    def with_duration(self, duration: float) -> Scenario:
        """The scenario run for `duration` seconds instead; every timed event must still fit (an event past it
        named with its file and line)."""
        duration = _number({"--duration": duration}, "", "--duration", low=MIN_DURATION, high=MAX_DURATION)
        changed = Scenario(**{**self.__dict__, "duration": duration})
        try:
            _check_times(changed, "the run's --duration")
        except ScenarioError as e:
            raise self.source.locate_misfit(e) from None
        return changed

    @property
    def min_nodes(self) -> int:
        return sum(g.nodes or 1 for g in self.orgs)


def library() -> list[str]:
    """The names of the scenarios shipped with vouchnet."""
    return sorted(p.stem for p in LIBRARY.glob("*.toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A library scenario by name (e.g. "sybil-collusion"), or a scenario file by path."""
    path = Path(name_or_path)
    if path.name == name_or_path and path.suffix == ".toml" and not path.exists() and path.stem in library():
        raise ScenarioError(f"{name_or_path}: no such scenario file; the library's {path.stem} is named without .toml "
                            f"(`vouchnet testnet run {path.stem}`)")
    if not (path.suffix == ".toml" or path.exists()):
        path = LIBRARY / f"{name_or_path}.toml"
        if not path.exists():
            raise ScenarioError(f"{name_or_path}: no such scenario file, and not one of the library's: "
                                f"{', '.join(library())}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ScenarioError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ScenarioError(f"{path}:{line}: not UTF-8 text, as a TOML file is (byte 0x{data[e.start]:02x})") from None
    return parse_scenario(text, name=path.stem, where=str(path))


def parse_scenario(text: str, *, name: str, where: str = "scenario") -> Scenario:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{where}:{_toml_error_line(text, e)}: not valid TOML: {e}") from None
    source = Source(where, text)
    try:
        return _scenario(document, name, source)
    except ScenarioError as e:
        raise source.locate(e) from None


_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)$")  # the end of a tomllib.TOMLDecodeError's message


def _toml_error_line(text: str, error: tomllib.TOMLDecodeError) -> int:
    """The line of a TOML syntax error: the one tomllib names, or the file's last for one it finds only at the end of
    the document ("at end of document": a bracket, brace or string left open)."""
    line = _TOML_LINE.search(str(error))
    return int(line[1]) if line else max(1, len(text.splitlines()))


_HEADER = re.compile(r"\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_ASSIGNMENT = re.compile(r"\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")
_PATH_PART = re.compile(r"([^.\[]+)|\[(\d+)\]")


def _line_of(text: str, path: str) -> int | None:
    """The line of the key that a ScenarioError's `path` names ("agents.good.count", "faults[1].at"), or of the
    nearest table or key it is inside (a required key that is missing: its table's header); None if none is."""
    wanted = tuple(name or int(index) for name, index in _PATH_PART.findall(path))
    best, best_length = None, 0
    table: tuple[str | int, ...] = ()
    arrays: dict[tuple[str | int, ...], int] = {}
    in_string = False
    for number, line in enumerate(text.splitlines(), 1):
        inside, in_string = in_string, in_string ^ (line.count('"""') % 2 == 1)  # a multi-line string's lines
        if inside:
            continue
        header = _HEADER.match(line)
        if header:
            keys = tuple(k.strip().strip('"\'') for k in header[2].split("."))
            if header[1] == "[[":
                arrays[keys] = arrays.get(keys, -1) + 1
                table = (*keys, arrays[keys])
            else:
                table = keys
            found = table
        elif assignment := _ASSIGNMENT.match(line):
            found = (*table, *(k.strip().strip('"\'') for k in assignment[1].split(".")))
        else:
            continue
        length = len(found)
        if found == wanted[:length] and length > best_length:
            best, best_length = number, length
    return best


# --- the document ------------------------------------------------------------------------------------------


def _scenario(doc: dict[str, Any], name: str, source: Source) -> Scenario:
    _keys(doc, "", required={"description", "duration", "orgs", "agents"},
          optional={"nodes", "settings", "traffic", "measure", "edges", "attacks", "faults", "revocations",
                    "vouches"})
    description = _text(doc, "", "description", max_length=2000)
    duration = _number(doc, "", "duration", low=MIN_DURATION, high=MAX_DURATION)
    orgs = tuple(_org_group(group, key) for key, group in _named_tables(doc, "orgs").items())
    org_names = {g.name for g in orgs}
    for group in orgs:
        for field_name in ("roots", "vouch"):
            for ref in getattr(group, field_name):
                _known(ref, org_names, f"orgs.{group.name}.{field_name}", "org group")
    rest = [g.name for g in orgs if g.nodes is None]
    if len(rest) > 1:
        raise ScenarioError(f'orgs.{rest[1]}.nodes: "rest" is taken by group {rest[0]} already: at most one group may '
                            "take the nodes the others leave")
    agents = tuple(_agent_group(group, key, org_names) for key, group in _named_tables(doc, "agents").items())
    agent_names = {g.name for g in agents}
    scenario = Scenario(
        name=name,
        description=description,
        nodes=int(_number(doc, "", "nodes", default=max(sum(g.nodes or 1 for g in orgs), 3), low=1, high=MAX_NODES,
                          integer=True)),
        duration=duration,
        settings=_settings(doc.get("settings", {})),
        traffic=_traffic(_table(doc, "", "traffic")),
        measure=_measure(_table(doc, "", "measure")),
        orgs=orgs,
        edges=tuple(_edge(e, f"edges[{i}]", org_names) for i, e in enumerate(_array(doc, "edges"))),
        agents=agents,
        attacks=tuple(_attack(a, f"attacks[{i}]", org_names, agent_names)
                      for i, a in enumerate(_array(doc, "attacks"))),
        faults=tuple(_fault(f, f"faults[{i}]", org_names) for i, f in enumerate(_array(doc, "faults"))),
        revocations=_revocations(_array(doc, "revocations"), agent_names),
        vouch_changes=tuple(_vouch_change(v, f"vouches[{i}]", org_names) for i, v in enumerate(_array(doc, "vouches"))),
        source=source,
    )
    if scenario.nodes < scenario.min_nodes:
        raise ScenarioError(f"nodes: the org groups need at least {scenario.min_nodes}, got {scenario.nodes}")
    _check_times(scenario, "the file's duration")
    return scenario


def _org_group(table: dict[str, Any], name: str) -> OrgGroup:
    where = f"orgs.{name}"
    _keys(table, where, required={"nodes"}, optional={"roots", "vouch"})
    nodes = table["nodes"]
    if nodes != "rest":
        nodes = int(_number(table, where, "nodes", low=1, high=MAX_NODES, integer=True,
                            expected='an integer or "rest"'))
    return OrgGroup(name, None if nodes == "rest" else nodes, _names(table, where, "roots"),
                    _names(table, where, "vouch"))


def _agent_group(table: dict[str, Any], name: str, org_names: set[str]) -> AgentGroup:
    where = f"agents.{name}"
    _keys(table, where, required={"count", "behaviour", "operator", "works_at"}, optional={"orgs_per_agent"})
    operator = _text(table, where, "operator")
    _known(operator, org_names, f"{where}.operator", "org group")
    works_at = _names(table, where, "works_at")
    if not works_at:
        raise ScenarioError(f"{where}.works_at: must name at least one org group")
    for ref in works_at:
        _known(ref, org_names, f"{where}.works_at", "org group")
    return AgentGroup(
        name=name,
        count=int(_number(table, where, "count", low=1, high=200, integer=True)),
        behaviour=_behaviour(table["behaviour"], f"{where}.behaviour"),
        operator=operator,
        works_at=works_at,
        orgs_per_agent=int(_number(table, where, "orgs_per_agent", default=2, low=1, high=100, integer=True)),
    )


def _behaviour(value: Any, where: str) -> Behaviour:
    if isinstance(value, str):
        value = {"model": value}
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: must be a model name or a table {{model = ..., ...}}")
    _keys(value, where, required={"model"}, optional={"on", "off", "at", "good_share"})
    model = _text(value, where, "model")
    if model not in BEHAVIOURS:
        raise ScenarioError(f"{where}.model: must be one of {', '.join(BEHAVIOURS)}, got {model!r}")
    allowed = {"on-off": {"on", "off"}, "turned-bad": {"at"}, "camouflage": {"good_share"}}.get(model, set())
    for key in sorted(set(value) - {"model"} - allowed):
        raise ScenarioError(f"{where}.{key}: not a parameter of the {model} model"
                            + (f" (it takes {', '.join(sorted(allowed))})" if allowed else ""))
    defaults = Behaviour(model)
    return Behaviour(
        model=model,
        on=_number(value, where, "on", default=defaults.on, low=0.1, high=3600),
        off=_number(value, where, "off", default=defaults.off, low=0.1, high=3600),
        at=_number(value, where, "at", default=defaults.at, low=0, high=3600),
        good_share=_number(value, where, "good_share", default=defaults.good_share, low=0, high=1),
    )


def _edge(table: Any, where: str, org_names: set[str]) -> Edge:
    table = _as_table(table, where)
    _keys(table, where, required={"from", "to"}, optional={"count", "weight"})
    source, target = _text(table, where, "from"), _text(table, where, "to")
    _known(source, org_names, f"{where}.from", "org group")
    _known(target, org_names, f"{where}.to", "org group")
    count = table.get("count")
    return Edge(source, target, None if count is None else int(_number(table, where, "count", low=1, high=10_000,
                                                                         integer=True)),
                _edge_weight(table, where))


def _edge_weight(table: dict[str, Any], where: str) -> float:
    """An org-peer vouch's `weight` (`[[edges]]`, `[[vouches]]`), as a node takes it for a vouch between orgs."""
    return _number(table, where, "weight", default=EDGE_WEIGHT, low=0.01, high=1.0)


def _vouch_change(table: Any, where: str, org_names: set[str]) -> VouchChange:
    """A `[[vouches]]` table: `from` and `to` select orgs (GROUP, GROUP[i], GROUP[i:j]); `action` is vouch (with an
    optional `weight`) or revoke (the vouch in force then: the plan checks there is one, testnet.plan)."""
    table = _as_table(table, where)
    if "action" not in table:
        raise ScenarioError(f"{where}.action: required, one of {', '.join(VOUCH_ACTIONS)}")
    action = _text(table, where, "action")
    if action not in VOUCH_ACTIONS:
        raise ScenarioError(f"{where}.action: must be one of {', '.join(VOUCH_ACTIONS)}, got {action!r}")
    if action == "revoke" and "weight" in table:
        raise ScenarioError(f"{where}.weight: a revoke takes no weight (it revokes the vouch in force then)")
    _keys(table, where, required={"from", "to", "at", "action"}, optional={"weight"})
    return VouchChange(_selector(table, where, "from", org_names), _selector(table, where, "to", org_names), action,
                       _number(table, where, "at", low=0, high=3600), _edge_weight(table, where))


def _attack(table: Any, where: str, org_names: set[str], agent_names: set[str]) -> Attack:
    table = _as_table(table, where)
    kind = _kind(table, where, ATTACKS)
    fields = {"praise": ({"orgs", "agents"}, {"at", "until"}), "slander": ({"orgs", "agents"}, {"at", "until"}),
              "equivocation": ({"orgs", "at"}, set()), "whitewash": ({"agents", "at"}, set()),
              "key-theft": ({"orgs", "at"}, set())}
    required, optional = fields[kind]
    _keys(table, where, required=required | {"type"}, optional=optional)
    agents = table.get("agents")
    if agents is not None:
        _known(_text(table, where, "agents"), agent_names, f"{where}.agents", "agent group")
    attack = Attack(
        type=kind,
        orgs=_selector(table, where, "orgs", org_names) if "orgs" in table else None,
        agents=agents,
        at=_number(table, where, "at", default=0.0, low=0, high=3600),
        until=_number(table, where, "until", low=0, high=3600) if "until" in table else None,
    )
    if attack.until is not None and attack.until <= attack.at:
        raise ScenarioError(f"{where}.until: must be after at ({attack.at:g}), got {attack.until:g}")
    return attack


def _fault(table: Any, where: str, org_names: set[str]) -> Fault:
    table = _as_table(table, where)
    kind = _kind(table, where, FAULTS)
    timed = kind != "rotate"  # a rotated node is back as soon as its new key is in place
    _keys(table, where, required={"type", "nodes", "at"} | ({"duration"} if timed else set()), optional=set())
    return Fault(kind, _selector(table, where, "nodes", org_names), _number(table, where, "at", low=0, high=3600),
                 _number(table, where, "duration", low=0.5, high=3600) if timed else 0.0)


def _revocations(tables: list[Any], agent_names: set[str]) -> tuple[Revocation, ...]:
    """The `[[revocations]]` tables: each names an agent group and a time; a group's operator vouches are revoked
    once in a run (its node refuses to revoke a revoked vouch)."""
    revocations: list[Revocation] = []
    for i, table in enumerate(tables):
        where = f"revocations[{i}]"
        table = _as_table(table, where)
        _keys(table, where, required={"agents", "at"}, optional=set())
        agents = _text(table, where, "agents")
        _known(agents, agent_names, f"{where}.agents", "agent group")
        for j, earlier in enumerate(revocations):
            if earlier.agents == agents:
                raise ScenarioError(f"{where}.agents: revocations[{j}] revokes the operator vouches of agents {agents} "
                                    f"at {earlier.at:g} s already: a run revokes a group's vouches once")
        revocations.append(Revocation(agents, _number(table, where, "at", low=0, high=3600)))
    return tuple(revocations)


def _kind(table: dict[str, Any], where: str, kinds: tuple[str, ...]) -> str:
    """The `type` of an [[attacks]] or [[faults]] table, one of `kinds` (read first: it says which keys it takes)."""
    if "type" not in table:
        raise ScenarioError(f"{where}.type: required, one of {', '.join(kinds)}")
    kind = _text(table, where, "type")
    if kind not in kinds:
        raise ScenarioError(f"{where}.type: must be one of {', '.join(kinds)}, got {kind!r}")
    return kind


def _settings(value: Any) -> Settings:
    table = _as_table(value, "settings")
    defaults = Settings()
    _keys(table, "settings", required=set(), optional=set(defaults.__dict__))
    return Settings(
        checkpoint_interval=_number(table, "settings", "checkpoint_interval", default=defaults.checkpoint_interval,
                                    low=0.1, high=3600),
        epoch_seconds=_number(table, "settings", "epoch_seconds", default=defaults.epoch_seconds, low=1, high=3600),
        sync_interval=_number(table, "settings", "sync_interval", default=defaults.sync_interval, low=0.1, high=3600),
        recompute_seconds=_number(table, "settings", "recompute_seconds", default=defaults.recompute_seconds,
                                  low=0.1, high=3600),
        witnesses=int(_number(table, "settings", "witnesses", default=defaults.witnesses, low=1,
                              high=MAX_COSIGNATURES, integer=True)),
    )


def _traffic(table: dict[str, Any]) -> Traffic:
    d = Traffic()
    _keys(table, "traffic", required=set(), optional=set(d.__dict__))
    return Traffic(_number(table, "traffic", "round_seconds", default=d.round_seconds, low=0.1, high=600),
                   int(_number(table, "traffic", "events_per_round", default=d.events_per_round, low=1, high=1000,
                               integer=True)),
                   _number(table, "traffic", "high_risk_share", default=d.high_risk_share, low=0, high=1))


def _measure(table: dict[str, Any]) -> Measure:
    d = Measure()
    _keys(table, "measure", required=set(), optional=set(d.__dict__))
    return Measure(_number(table, "measure", "score_seconds", default=d.score_seconds, low=0.5, high=600),
                   _number(table, "measure", "settle_seconds", default=d.settle_seconds, low=0, high=600),
                   _number(table, "measure", "poll_seconds", default=d.poll_seconds, low=0.1, high=60))


def _check_times(scenario: Scenario, what: str) -> None:
    """Every timed attack, fault, revocation and vouch change must fit in the run (a fault must also end, so that
    catch-up is measured), and so must the first misbehaviour of agents that turn bad (turned-bad's at, on-off's first
    on: past the run, they never misbehave, yet count as malicious in the report); `what` names the duration it is
    checked against: the file's own, or the one --duration gives the run."""
    ends: list[tuple[str, float]] = []
    for group in scenario.agents:
        turns = {"turned-bad": ("at", group.behaviour.at), "on-off": ("on", group.behaviour.on)}
        if group.behaviour.model in turns:
            key, at = turns[group.behaviour.model]
            ends.append((f"agents.{group.name}.behaviour.{key}", at))
    for i, attack in enumerate(scenario.attacks):
        ends.append((f"attacks[{i}].at", attack.at))
        if attack.until is not None:
            ends.append((f"attacks[{i}].until", attack.until))
    for i, fault in enumerate(scenario.faults):
        ends.append((f"faults[{i}].at + duration" if fault.duration else f"faults[{i}].at", fault.at + fault.duration))
    ends += [(f"revocations[{i}].at", revocation.at) for i, revocation in enumerate(scenario.revocations)]
    ends += [(f"vouches[{i}].at", change.at) for i, change in enumerate(scenario.vouch_changes)]
    for where, end in ends:
        if end >= scenario.duration:
            raise ScenarioError(f"{where}: {end:g} s is not within {what} of {scenario.duration:g} s")


# --- small validators --------------------------------------------------------------------------------------


def _keys(table: dict[str, Any], where: str, *, required: set[str], optional: set[str]) -> None:
    prefix = f"{where}." if where else ""
    for key in sorted(required - table.keys()):
        raise ScenarioError(f"{prefix}{key}: required")
    known = required | optional
    for key in sorted(table.keys() - known):
        raise ScenarioError(f"{prefix}{key}: unknown key (known: {', '.join(sorted(known))})")


def _table(doc: dict[str, Any], where: str, key: str) -> dict[str, Any]:
    return _as_table(doc.get(key, {}), f"{where}.{key}" if where else key)


def _as_table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: must be a table")
    return value


def _array(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise ScenarioError(f"{key}: must be an array of tables ([[{key}]])")
    return value


def _named_tables(doc: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    tables = _as_table(doc[key], key)
    if not tables:
        raise ScenarioError(f"{key}: needs at least one group")
    for name, table in tables.items():
        if not _NAME.fullmatch(name):
            raise ScenarioError(f"{key}.{name}: a group name must be a-z, 0-9, - or _, starting with a letter")
        _as_table(table, f"{key}.{name}")
    return tables


def _text(table: dict[str, Any], where: str, key: str, *, max_length: int = 64) -> str:
    value = table[key]
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise ScenarioError(f"{_join(where, key)}: must be a string of 1 to {max_length} characters")
    return value


def _names(table: dict[str, Any], where: str, key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(f"{_join(where, key)}: must be a list of group names")
    return tuple(value)


def _known(name: str, names: set[str], where: str, what: str) -> None:
    if name not in names:
        raise ScenarioError(f"{where}: no {what} {name!r} (there are: {', '.join(sorted(names))})")


def _selector(table: dict[str, Any], where: str, key: str, org_names: set[str]) -> Selector:
    text = _text(table, where, key)
    match = _SELECTOR.fullmatch(text)
    if match is None:
        raise ScenarioError(f"{_join(where, key)}: must be GROUP, GROUP[i] or GROUP[i:j], got {text!r}")
    group, start, colon, stop = match.groups()
    _known(group, org_names, _join(where, key), "org group")
    if start is None:
        return Selector(group, text=text)
    first = int(start)
    last = (int(stop) if stop is not None else None) if colon else first + 1
    if last is not None and last <= first:
        raise ScenarioError(f"{_join(where, key)}: {text!r} selects no org (j must be greater than i)")
    return Selector(group, first, last, text)


def _number(table: dict[str, Any], where: str, key: str, *, default: float | None = None, low: float,
            high: float, integer: bool = False, expected: str | None = None) -> float:
    if key not in table:
        if default is None:
            raise ScenarioError(f"{_join(where, key)}: required")
        return default
    value = table[key]
    kind = expected or ("an integer" if integer else "a number")
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ScenarioError(f"{_join(where, key)}: must be {kind}, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ScenarioError(f"{_join(where, key)}: must be from {low:g} to {high:g}, got {value!r}")
    return float(value) if not integer else value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key

