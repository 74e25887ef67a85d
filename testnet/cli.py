"""`vouchnet testnet`: a network of real nodes on this machine: `up`, `status`, `logs`, `down`, and `run` a scenario
(DESIGN.md §9)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from node.cli_commands import summary_of
from node.commands.common import (
    NO_ANSWER_CAUSES,
    CommandFailed,
    Subparsers,
    UsageError,
    add_command_group,
    add_local_command,
    os_error_text,
    positive_int,
    seconds_argument,
    seed_argument,
    whole_number,
)
from vouching.counts import counted

from .ports import PortError, PortRange, parse_port_range
from .state import MAX_NODES

if TYPE_CHECKING:
    from .scenario import Scenario
    from .state import TestnetState
    from .verdict import Verdict

ATTACK_SUCCEEDED = 3  # `run`'s exit status when the verdict on an attack is that it succeeded (testnet.verdict)
NO_VERDICT = 4  # ... when none succeeded but a rule lacked a figure it needs
DEFAULT_SEED = 1  # a new testnet's, `up` or `run` making it without --seed
DIR_ENV = "VOUCHNET_TESTNET_DIR"
DEFAULT_DIR = "vouchnet-testnet"
RUN_ERROR_FILE = "run-error.txt"  # where `run` keeps the traceback of an error it does not expect (a bug)


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers,
        "testnet",
        summary=summary_of("testnet"),
        description="Start N real node processes on loopback (each with its own ports and data directory), drive "
        "scenarios of honest and malicious orgs and agents through their APIs, inject faults, and report "
        "propagation, catch-up, convergence, score trajectories and how each attack fared.",
        examples=["vouchnet testnet up --nodes 10", "vouchnet testnet status",
                  "vouchnet testnet run sybil-collusion", "vouchnet testnet logs n03", "vouchnet testnet down"],
    )
    from .topology import TOPOLOGIES

    up = add_local_command(
        commands, "up", run=_one_at_a_time("up", _up),
        summary="start a testnet (or restart a stopped one with its data)",
        description="Create N node data directories with `vouchnet init` (loopback ports, fast epochs and "
        "checkpoints), bootstrap them to each other, root and vouch per the topology, start every node as a "
        "`vouchnet run` process and wait until each API answers. In a directory that already holds a testnet, start "
        "the nodes that are not running, with their data.",
        examples=["vouchnet testnet up --nodes 10", "vouchnet testnet up --nodes 5 --topology ring --dir /tmp/tn",
                  "vouchnet testnet up --ports 48000-48099",
                  "vouchnet testnet up            # restart a stopped testnet"],
    )
    _dir_option(up)
    up.add_argument("--nodes", type=_node_count, help=f"how many nodes, 1 to {MAX_NODES} (default 5 for a new testnet)")
    up.add_argument("--seed", type=seed_argument,
                    help=f"seed of the random topology and of scenario runs (default {DEFAULT_SEED} for a new testnet)")
    up.add_argument("--topology", choices=sorted(TOPOLOGIES),
                    help="who roots and vouches for whom (default mesh for a new testnet): "
                    + "; ".join(f"{k}: {v}" for k, v in TOPOLOGIES.items()))
    _ports_option(up)

    status = add_local_command(
        commands, "status", run=_status,
        summary="a table of the nodes: peers, ledger, checkpoint cosigners, rejected records, block lists",
        description="Ask every node for its peers, ledger size, latest checkpoint (verified here, with the other "
        "orgs whose cosignature it carries), records it rejected, orgs it flagged for equivocation and the nodes on "
        "its peer block list (a partition in force: a line below the table says the network is cut). A node's state "
        "is up, down (stopped), exited (gone without `down`: killed, crashed, the machine restarted), error (its API "
        "did not answer as it should) or unreadable (its api.token cannot be read), with "
        "the reason below the table; a running node whose log process is gone has `, no log` added (its lines are "
        "lost until `down` and `up` restart it).",
        examples=["vouchnet testnet status", "vouchnet testnet status --json"],
    )
    _dir_option(status)
    status.add_argument("--json", action="store_true", help="print the rows as JSON")

    logs = add_local_command(
        commands, "logs", run=_logs,
        summary="print a node's log",
        description="Print the last --lines lines of a node's log (logfmt lines from `vouchnet run`, kept across "
                    "restarts), oldest first: node.log is rotated past 10 MiB, node.log.1 to .5 kept, and the lines "
                    "are taken from the rotated files too where node.log holds fewer; --follow then goes on across "
                    "rotations.",
        examples=["vouchnet testnet logs n03", "vouchnet testnet logs n00 --lines 200", "vouchnet testnet logs n01 -f"],
    )
    _dir_option(logs)
    logs.add_argument("node", help="the node's name, e.g. n03")
    logs.add_argument("--lines", "-n", type=positive_int, default=50,
                      help="lines from the end, across node.log and its rotated files (default: %(default)s)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing lines as they come (Ctrl-C stops)")

    down = add_local_command(
        commands, "down", run=_one_at_a_time("down", _down),
        summary="stop every node (SIGTERM, then SIGKILL after a bound) and check nothing is left",
        description="Send SIGTERM to every node, SIGKILL any that still runs after the bound, then check that no "
        "node process is alive and no node port accepts connections. The data stays: `up` restarts the testnet.",
        examples=["vouchnet testnet down", "vouchnet testnet down --timeout 10"],
    )
    _dir_option(down)
    down.add_argument("--timeout", type=seconds_argument, default=5.0,
                      help="seconds before SIGKILL (default: %(default)s)")

    from .scenario import MAX_DURATION, MIN_DURATION

    run = add_local_command(
        commands, "run", run=_one_at_a_time("run", _run),
        summary="run a scenario (a library name or a TOML file) and write its report",
        description="Lay the scenario's orgs onto the testnet's nodes (restarting those whose trust roots or settings "
        "change), make its vouches, run its agents' traffic while its attacks, faults, revocations and vouch changes "
        "happen on schedule, watch records and scores at every node, and write results.json, PNG plots and "
        "report.html. The summary ends with a verdict line per attack: succeeded, contained or no verdict (a figure "
        "its rule needs was not measured, or a praise or slander most of whose event batches its attacking orgs' "
        "nodes refused, did not answer or were down for: not carried out), by the attack kind's rule (README \"Read "
        "the report\"), with the figures it was judged on and, for praise and slander, the same figure in the newest "
        "baseline run of the same seed and size in DIR/reports, else of the agents no attack touched. Exit status: 0 "
        "when no attack succeeded, "
        f"{ATTACK_SUCCEEDED} when one did, {NO_VERDICT} when none did but one has no verdict; 1 and 2 as every "
        "command (the run failed, or was asked wrong). Starts a testnet (and stops it afterwards) if the directory "
        "holds none; starts the stopped nodes of one it holds, and leaves them running; on one it holds, the orgs "
        "an earlier run flagged as equivocators stay flagged: said, and an attack or rotation of one of them, or one "
        "that needs one's vouches, is refused before any change to the testnet (its stopped nodes, started to be "
        "asked, are stopped again). Library, with the nodes each "
        f"starts (the fewest it runs on) and its seconds of traffic: {_library_sizes()}.",
        examples=["vouchnet testnet run sybil-collusion", "vouchnet testnet run faults --nodes 3 --duration 40",
                  "vouchnet testnet run ./my-scenario.toml --seed 7 --out ./report"],
    )
    _dir_option(run)
    run.add_argument("scenario", help="a library scenario's name or a scenario file's path")
    run.add_argument("--nodes", type=_node_count,
                     help=f"testnet size if one must be started, 1 to {MAX_NODES} (default: the scenario's)")
    run.add_argument("--duration", type=float,
                     help=f"seconds of traffic, {MIN_DURATION} to {MAX_DURATION} (default: the scenario's)")
    run.add_argument("--seed", type=seed_argument,
                     help="seed of the plan and the agents' behaviour (default: the testnet's)")
    _ports_option(run, " if one must be started")
    run.add_argument("--out", type=Path, help="the directory the report goes into, made before the run starts "
                     "(and removed again, if this run made it, when it writes no report; default: "
                     "DIR/reports/SCENARIO-TIME)")
    run.add_argument("--keep", action="store_true", help="leave a testnet this command started running")


def _ports_option(command: argparse.ArgumentParser, when: str = "") -> None:
    command.add_argument("--ports", type=_port_range, metavar="FIRST-LAST",
                         help=f"draw the nodes' p2p and API ports{when} from this range, as 48000-48099, two a node "
                         "(a port moved later too); default: at random from 10000 up, outside the kernel's ephemeral "
                         "range")


def _port_range(text: str) -> PortRange:
    """argparse type: --ports FIRST-LAST (testnet.ports.parse_port_range)."""
    try:
        return parse_port_range(text)
    except PortError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _ports_hold(ports: PortRange | None, nodes: int) -> None:
    """UsageError (exit 2, as every command asked wrong) for --ports of fewer ports than a new testnet of `nodes`
    needs, before anything is made (PortRange.check_holds)."""
    try:
        if ports is not None:
            ports.check_holds(nodes)
    except PortError as e:
        raise UsageError(str(e)) from None


def _node_count(text: str) -> int:
    """argparse type: a testnet's size, 1 to MAX_NODES, as a scenario file's nodes (a million took every byte of
    memory in making its topology or plan, before any node started)."""
    if (count := whole_number(text)) is None or not 1 <= count <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"expected a number of nodes, 1 to {MAX_NODES}, got {text!r}")
    return count


def _library_sizes() -> str:
    """Each library scenario with the testnet it starts, the fewest nodes it runs on (on a testnet `run` makes with
    the default seed), or that none of 1 to MAX_NODES is one, and its duration, as its file has them: an operator
    learnt the fewest only from a run's refusal."""
    from .plan import fewest_nodes
    from .scenario import library, load_scenario

    def fewest(scenario: Scenario) -> str:
        count = fewest_nodes(scenario, DEFAULT_SEED)
        return f"at least {count}" if count is not None else f"runs on no testnet of 1 to {MAX_NODES} nodes"

    sizes = ((name, load_scenario(name)) for name in library())
    return "; ".join(f"{name} {counted(s.nodes, 'node')} ({fewest(s)}), {s.duration:g} s" for name, s in sizes)


def _one_at_a_time(name: str, command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`command` run holding its testnet directory's lock (testnet.dir_lock): refused while another `up`, `run` or
    `down` runs on that directory."""

    def locked(args: argparse.Namespace) -> int:
        from .dir_lock import Busy, one_at_a_time

        try:
            with one_at_a_time(args.dir, f"testnet {name}"):
                return command(args)
        except Busy as e:
            raise UsageError(str(e)) from None

    return locked


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=_testnet_dir, default=os.environ.get(DIR_ENV) or DEFAULT_DIR,
                        help=f"the testnet's directory (default: ${DIR_ENV}, else ./{DEFAULT_DIR})")


def _testnet_dir(text: str) -> Path:
    """argparse type of --dir (and of its default, from the environment): refuses a path where something other than a
    directory is, which the commands reported as 'File exists' or '.../testnet.json: Not a directory', and a node's
    data directory (one holding config.toml, a testnet's node's or another), which `status` said held no testnet,
    to start one there with `up`: `up` made one inside it."""
    from node.config import CONFIG_FILE

    from .state import STATE_FILE

    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a directory (a testnet's is, or is made there)")
    if (path / CONFIG_FILE).is_file() and not (path / STATE_FILE).exists():
        testnet = path.parent.parent  # (a testnet's node's: DIR/nodes/nXX)
        its = (f"the testnet's is {testnet}, two levels up" if (testnet / STATE_FILE).is_file() else
               "give a testnet's directory, or one for a new testnet")
        raise argparse.ArgumentTypeError(f"{text} is a node's data directory (it holds {CONFIG_FILE}), not a "
                                         f"testnet's: {its}")
    return path


def _open(directory: Path):  # -> Cluster
    from .cluster import Cluster
    from .state import StateError

    try:
        return Cluster.open(directory)
    except StateError as e:
        raise UsageError(str(e)) from None


def _unfit(error: Exception, scenario, seed: int, reused: int | None = None) -> UsageError:  # (ScenarioError, ...)
    """The refusal of a scenario that does not fit a testnet with `seed`: its error, and the fewest nodes of a
    testnet `run` makes that it runs on with that seed (plan.fewest_nodes), or that none does, unless the error
    says it (the org groups' sizes). On a testnet reused, of `reused` nodes, whose size is fixed (`--nodes` of
    another is refused), and whose nodes may dial others than a testnet `run` makes: another --dir to run on."""
    from .plan import fewest_nodes

    fewest = fewest_nodes(scenario, seed)
    if fewest is None:
        return UsageError(f"{error} (with seed {seed}, scenario {scenario.name} runs on no testnet `run` makes, of 1 "
                          f"to {MAX_NODES} nodes)")
    if reused is not None:
        options = f"--nodes {fewest}" + (f" and --seed {seed}" if seed != DEFAULT_SEED else "")
        return UsageError(f"{error} (this testnet's {counted(reused, 'node')} stay as they are; with seed {seed}, "
                          f"scenario {scenario.name} runs on a testnet `run` makes of {counted(fewest, 'node')} at "
                          f"the fewest: give another --dir, with {options})")
    if f"at least {fewest}" not in str(error):
        return UsageError(f"{error} (with seed {seed}, scenario {scenario.name} runs on {counted(fewest, 'node')} "
                          "at the fewest)")
    return UsageError(str(error))


def _up(args: argparse.Namespace) -> int:
    from node.client import ClientError

    from .cluster import Cluster, ClusterError
    from .state import STATE_FILE

    started_at = time.monotonic()
    try:
        if (args.dir / STATE_FILE).exists():
            cluster = _open(args.dir)
            _same_shape(args, cluster.state)
        else:
            nodes = 5 if args.nodes is None else args.nodes
            seed = DEFAULT_SEED if args.seed is None else args.seed
            topology = args.topology or "mesh"
            _ports_hold(args.ports, nodes)
            within = "" if args.ports is None else f", ports {args.ports}"
            print(f"creating {counted(nodes, 'node')} in {args.dir} (topology {topology}, seed {seed}{within})")
            try:
                cluster = Cluster.create(args.dir, nodes=nodes, seed=seed, topology=topology, ports=args.ports)
            except KeyboardInterrupt:  # Cluster.create removes what it made
                print(f"interrupted: no testnet was made in {args.dir}", file=sys.stderr)
                raise
        waiting = [n for n in cluster.names if not cluster.running(n)]
        bar = ProgressBar(f"starting {counted(len(waiting), 'node')}")
        try:
            cluster.start(waiting, progress=bar, say=print)
            bar.close()
            if not cluster.state.vouched:
                made = cluster.vouch_topology()
                print(f"{counted(made, 'org-peer vouch', 'org-peer vouches')} made through the nodes' APIs")
        except (KeyboardInterrupt, ClusterError, ClientError) as failure:
            # A node that fails to start (or a vouch that fails, its node's API refusing it or not answering) stops
            # the nodes this `up` started, as a Ctrl-C does: a failed command should leave none of its processes
            # running (each holds its ports and a share of the CPU, in a testnet missing a node), and the next `up`
            # starts them all. Nodes running before are left.
            bar.close()
            stopped = cluster.stop(waiting)
            names = stopped.clean + stopped.killed
            if isinstance(failure, KeyboardInterrupt):
                print(f"interrupted: stopped the {counted(len(names), 'node')} it started; "
                      f"`vouchnet testnet up --dir {args.dir}` goes on", file=sys.stderr)
                raise
            if not names:
                raise
            stopped_said = (f"stopped the {counted(len(names), 'node')} it started ({', '.join(names)}); "
                            f"`vouchnet testnet up --dir {args.dir}` starts them again")
            raise ClusterError(f"{_failure(failure, args.dir)}\n{stopped_said}") from None
    except ClusterError as e:
        raise CommandFailed(str(e)) from None
    if not waiting:
        print(f"all {counted(len(cluster.names), 'node')} were running already: none started")
    for entry in cluster.state.nodes:
        print(f"{entry.name}  {entry.api_url}  {entry.did}")
    print(f"testnet up in {time.monotonic() - started_at:.1f} s; `vouchnet testnet status --dir {args.dir}` shows it")
    return 0


def _same_shape(args: argparse.Namespace, state: TestnetState) -> None:
    """Refuses `up --nodes/--topology/--seed` over a testnet made with others: they would be ignored. What to remove
    for a new one there is what `up` made, not the directory, which `up` may have been given holding more."""
    from .cluster import NODES_DIR
    from .state import STATE_FILE

    asked = {"nodes": args.nodes, "topology": args.topology, "seed": args.seed, "ports": args.ports}
    held = {"nodes": len(state.nodes), "topology": state.topology, "seed": state.seed, "ports": state.ports}
    for what, value in asked.items():
        if value is not None and value != held[what]:
            shape = (counted(held[what], "node") if what == "nodes" else _ports_held(state) if what == "ports" else
                     f"{what} {held[what]}")
            raise UsageError(f"{args.dir} holds a testnet of {shape}, not {value}: leave out --{what} to start it "
                             f"as it is; for a new one, give another --dir, or stop this one (`vouchnet testnet down "
                             f"--dir {args.dir}`) and remove what it made there, {args.dir / STATE_FILE} and "
                             f"{args.dir / NODES_DIR}")


def _ports_held(state: TestnetState) -> str:
    """The ports a testnet's nodes are drawn from, for a refusal of --ports it was not made with."""
    return "ports from 10000 up (no --ports)" if state.ports is None else f"ports {state.ports}"


def _status(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from .dir_lock import holder
    from .status import node_status, table

    cluster = _open(args.dir)
    with ThreadPoolExecutor(max_workers=max(1, len(cluster.names))) as pool:  # each node within its own timeout
        rows = list(pool.map(lambda name: node_status(cluster, name), cluster.names))
    if args.json:
        json.dump([asdict(row) for row in rows], sys.stdout, indent=2)
        print()
    else:
        print(table(rows, args.dir, holder(args.dir)))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from .node_log import follow, last_lines
    from .state import StateError

    cluster = _open(args.dir)
    try:
        path = cluster.log_path(args.node)
    except StateError as e:
        raise UsageError(str(e)) from None
    if not path.exists():
        raise CommandFailed(f"{args.node} has no log yet ({path})")
    log = open(path, encoding="utf-8", errors="replace")
    try:
        for line in last_lines(path, log, args.lines):  # from node.log.1 to .5 too
            sys.stdout.write(line)
        for line in follow(path, log) if args.follow else ():  # across rotations, onto node.log's next file
            sys.stdout.write(line)
            sys.stdout.flush()
    finally:
        log.close()
    return 0


def _down(args: argparse.Namespace) -> int:
    cluster = _open(args.dir)
    stopped = cluster.stop(timeout=args.timeout)
    killed = (f", {len(stopped.killed)} killed after {args.timeout:g} s ({', '.join(stopped.killed)})"
              if stopped.killed else "")
    print(f"stopped {counted(len(stopped.clean) + len(stopped.killed), 'node')} "
          f"({len(stopped.clean)} on SIGTERM{killed})")
    left = cluster.leftovers()
    if left:
        raise CommandFailed("left after down: " + "; ".join(left))
    print("no node process is alive and no node port accepts connections")
    return 0


class ProgressBar:
    """`label [#####.....] done/total` redrawn on a terminal; a line per step otherwise. On `stream`, else on
    sys.stderr as it is when the bar is made (not when this module was imported, which may be much earlier)."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.live = self.stream.isatty()
        self.drawn = False

    def __call__(self, message: str, done: int, total: int) -> None:
        if self.live:
            filled = round(20 * done / total) if total else 20
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (20 - filled)}] {done}/{total} {message:<40}")
            self.drawn = True
        else:
            self.stream.write(f"{self.label}: {done}/{total} {message}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _run(args: argparse.Namespace) -> int:
    from node.client import ClientError

    from .cluster import Cluster, ClusterError
    from .made_dirs import unmake
    from .measure import measure
    from .report import load_said, results_json, write_report
    from .runner import Run
    from .verdict import BASELINE, find_baseline, judge
    from .plan import make_plan
    from .scenario import ScenarioError, load_scenario
    from .state import STATE_FILE, node_name

    try:
        scenario = load_scenario(args.scenario)
        if args.duration is not None:
            scenario = scenario.with_duration(args.duration)
    except ScenarioError as e:
        raise UsageError(str(e)) from None
    elapsed: dict[str, float] = {}
    started_at = time.monotonic()
    fresh = not (args.dir / STATE_FILE).exists()
    if fresh:
        nodes = scenario.nodes if args.nodes is None else args.nodes
        seed = DEFAULT_SEED if args.seed is None else args.seed
        _ports_hold(args.ports, nodes)
        try:  # before making a testnet that no run of the scenario could use
            make_plan(scenario, [node_name(i) for i in range(nodes)], seed, fresh=True)
        except ScenarioError as e:
            raise _unfit(e, scenario, seed) from None
    out_made = _make_out(args.out)  # the directories of --out this run made, removed again if it writes no report
    page = None
    try:
        if fresh:
            print(f"no testnet in {args.dir}: creating {counted(nodes, 'node')}", file=sys.stderr)
            cluster = Cluster.create(args.dir, nodes=nodes, seed=seed, topology="none", settings=scenario.settings,
                                     ports=args.ports)
        else:
            cluster = _open(args.dir)
            if args.nodes is not None and args.nodes != len(cluster.names):
                raise UsageError(f"{args.dir} holds a testnet of {counted(len(cluster.names), 'node')}, not "
                                 f"{args.nodes}: leave out --nodes to run on it, or give another --dir, where a "
                                 "testnet of that size is made")
            if args.ports is not None and args.ports != cluster.state.ports:
                raise UsageError(f"{args.dir} holds a testnet of {_ports_held(cluster.state)}, not {args.ports}: "
                                 "leave out --ports to run on it, or give another --dir, where a testnet of those "
                                 "ports is made")
        seed = cluster.state.seed if args.seed is None else args.seed
        bar = ProgressBar("starting nodes")

        def say(line: str) -> None:
            bar.close()
            print(line, file=sys.stderr)

        try:
            run = Run(cluster, scenario, seed=seed, say=say, progress=bar, fresh=fresh)
        except ScenarioError as e:
            raise _unfit(e, scenario, seed, None if fresh else len(cluster.names)) from None
        print(f"running {scenario.name} on {counted(len(cluster.names), 'node')} (seed {seed})", file=sys.stderr)
        try:
            result = run.execute()
        except ScenarioError as e:  # (once the nodes of a testnet reused said whom they dial, whom they flagged)
            raise UsageError(f"{e}\nrefused before any change to the testnet in {args.dir}: its roots, settings and "
                             "vouches are as they were, and the nodes that were down are stopped again") from None
        elapsed["scenario"] = time.monotonic() - started_at
        measurements = measure(result)
        reports = args.dir / "reports"
        out = args.out or reports / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        results = results_json(result, measurements, elapsed)
        baseline = None if scenario.name == BASELINE else find_baseline(reports, seed=seed, nodes=len(cluster.names))
        verdicts = judge(results, baseline)
        results["verdicts"] = [v.as_json() for v in verdicts]
        page = write_report(result, results, out)
    except (ClusterError, ClientError, OSError) as e:  # a node's API refusing a call, the disk full: all say it
        left = _left_unfinished(args.dir, fresh=fresh, keep=args.keep)
        raise CommandFailed(f"{_failure(e, args.dir)}\nno report written; {left}") from None
    except KeyboardInterrupt:
        print(f"interrupted: no report written; {_left_unfinished(args.dir, fresh=fresh, keep=args.keep)}",
              file=sys.stderr)
        raise
    except UsageError:  # (asked wrong: a testnet of another size, a scenario that does not fit it)
        raise
    except Exception as e:  # a bug: said with what the run left, its traceback kept for the bug report
        left = _left_unfinished(args.dir, fresh=fresh, keep=args.keep)
        raise CommandFailed(f"failed on an error it does not expect, a bug: {type(e).__name__}: {e}; "
                            f"{_kept_traceback(e, args.dir)}\nno report written; {left}") from None
    finally:
        if page is None:
            unmake(out_made)
        if fresh and not args.keep and (args.dir / STATE_FILE).exists():
            _open(args.dir).stop()
    _print_summary(measurements)
    if load := load_said(results):
        print(f"the machine's load average: {load} (the timings above include waiting for a CPU where it exceeds "
              "the cores)")
    for verdict in verdicts:
        print(verdict.line)
    if not verdicts:
        print(_no_attack(scenario.name, seed, len(cluster.names), compared=out.resolve().parent == reports.resolve(),
                         flagged=result.setup.get("flagged_earlier", [])))
    if result.setup.get("missing"):
        print(_unready(result.setup, args.dir))
    if result.unanswered:
        print(_unanswered(result.unanswered, args.dir))
    if result.watch_errors:
        print(f"warning: {counted(result.watch_errors, 'ask')} of the nodes for their records and scores failed while "
              f"the run watched them (the latest, {result.last_watch_error}): the figures above lack what those would "
              "have given; the nodes' logs may say why")
    print(f"report: {page}  ({time.monotonic() - started_at:.0f} s in all)")
    print(_what_runs_on(args.dir, fresh=fresh, keep=args.keep))
    return _run_status(verdicts)


def _failure(error: Exception, directory: Path) -> str:
    """What a failed `up` or `run` on the testnet in `directory` says of `error`: its text, each node's API address in
    it followed by the node's name (the client knows only the address), and, for a node that did not answer in
    time, its causes (NO_ANSWER_CAUSES), which a failure of a node command is followed by."""
    from node.client import NodeUnreachable

    from .state import StateError, load_state

    text = os_error_text(error) if isinstance(error, OSError) else str(error)
    try:
        nodes = load_state(directory).nodes
    except (StateError, OSError):  # (none made yet, or unreadable: the addresses stay unnamed)
        nodes = ()
    for entry in nodes:
        text = re.sub(rf"{re.escape(entry.api_url)}(?!\d)", f"{entry.api_url} ({entry.name})", text)
    if isinstance(error, NodeUnreachable) and error.timed_out:
        text += f"\n{NO_ANSWER_CAUSES}"
    return text


def _kept_traceback(error: Exception, directory: Path) -> str:
    """Write `error`'s traceback to RUN_ERROR_FILE in the testnet's `directory` (printed to stderr where it cannot
    be) and say where it is."""
    import traceback

    text = "".join(traceback.format_exception(error))
    path = directory / RUN_ERROR_FILE
    try:
        path.write_text(text, encoding="utf-8")
    except OSError:
        print(text, file=sys.stderr, end="")
        return "its traceback is above"
    return f"its traceback is in {path}, for a bug report"


def _make_out(out: Path | None) -> list[Path]:
    """Make `--out` a directory before the run makes or starts anything (refused once the run is over, its report
    would be lost), and once a testnet `run` makes was found to fit the plan; returns the directories it made
    (made_dirs.missing), which made_dirs.unmake removes if the run writes no report (a plan refused on a testnet
    reused, too)."""
    from ledger.files import make_directory

    from .made_dirs import missing

    if out is None:
        return []
    made = missing(out)
    try:
        make_directory(out)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot be made a directory for the report ({e.strerror})") from None
    return made


def _run_status(verdicts: list[Verdict]) -> int:
    """`run`'s exit status once its report is written: ATTACK_SUCCEEDED if an attack succeeded, else NO_VERDICT if
    one could not be judged, else 0."""
    from .verdict import SUCCEEDED, UNDECIDED

    outcomes = {v.outcome for v in verdicts}
    return ATTACK_SUCCEEDED if SUCCEEDED in outcomes else NO_VERDICT if UNDECIDED in outcomes else 0


def _no_attack(scenario: str, seed: int, nodes: int, *, compared: bool, flagged: list[str]) -> str:
    """The verdict line of a run without attacks: for a baseline run, whether later runs will be compared with it
    (not if `flagged`, the nodes whose orgs an earlier run flagged: verdict.find_baseline passes it over)."""
    from .verdict import BASELINE

    if scenario != BASELINE:
        return "verdict: no attack ran, so none succeeded"
    later = f"later runs with seed {seed} on {counted(nodes, 'node')} compare their praise and slander verdicts"
    if flagged:
        orgs = "org" if len(flagged) == 1 else "orgs"
        return (f"verdict: no attack ran; an earlier run on this testnet flagged the {orgs} of {', '.join(flagged)}, "
                "so its figures are not the honest world's and no later run compares with it (a fresh testnet, "
                "another --dir, starts without)")
    return (f"verdict: no attack ran; {later} with this one's figures" if compared else
            "verdict: no attack ran; its report is not under the testnet's reports, so no later run compares with it")


def _unready(setup: dict, directory: Path) -> str:
    """The warning of a run whose traffic started before every node held the setup's records (runner.SETUP_TIMEOUT),
    on the testnet in `directory`."""
    lacking = ", ".join(f"{node} {counted(count, 'record')}" for node, count in setup["missing"].items())
    return (f"warning: traffic started {setup['propagation_seconds']} s into the setup with its records still missing "
            f"({lacking}), so the figures above are of a network that had not taken in the scenario's trust graph: "
            f"`vouchnet testnet status --dir {directory}` and the nodes' logs may say why")


def _unanswered(unanswered: dict[str, str], directory: Path) -> str:
    """The warning of a run some of whose nodes did not answer when asked for their views of the orgs at the end
    (runner.Run._org_views), on the testnet in `directory`: `unanswered` maps each to its error."""
    errors = "; ".join(f"{node}: {error}" for node, error in unanswered.items())
    them, their = ("it", "its") if len(unanswered) == 1 else ("them", "their")
    return (f"warning: {', '.join(unanswered)} gave no view of the orgs at the end ({errors}): the figures read from "
            f"those views (an equivocator counted, a thief's key weighed, the org groups' weight) and the agents' "
            f"final scores ({their} last may be from long before) leave {them} out, and a verdict that needs {them} "
            f"has none; `vouchnet testnet status --dir {directory}` shows the nodes")


def _left_unfinished(directory: Path, *, fresh: bool, keep: bool) -> str:
    """What a run that failed or was interrupted leaves: no testnet, where making it failed (Cluster.create removes
    what it made), the one it made stopped (as `run` finally stops it), or the testnet as it was left, which `status`
    shows (on one reused, or kept: nodes the failure left down stay down)."""
    from .state import STATE_FILE

    if fresh and not (directory / STATE_FILE).exists():
        return "no testnet was made"
    if fresh and not keep:
        return f"the testnet it made in {directory} is stopped"
    return f"`vouchnet testnet status --dir {directory}` shows the testnet as it was left"


def _what_runs_on(directory: Path, *, fresh: bool, keep: bool) -> str:
    """What a finished run leaves (README "Running a testnet"): the testnet it made stopped, or the testnet running
    on."""
    if fresh and not keep:
        return f"the testnet it made in {directory} is stopped"
    return f"the testnet in {directory} runs on: `vouchnet testnet down --dir {directory}` stops it"


def _print_summary(m: dict) -> None:
    from .report import linking, trust_change, witnessed_summary
    from .verdict import batches_missed, dip_said

    prop, conv, cps = m["propagation"], m["convergence"], m["checkpoints"]
    every = prop["everywhere"]
    if every["count"]:
        print(f"propagation to every node: p50 {every['p50']} s, p90 {every['p90']} s, max {every['max']} s "
              f"({counted(every['count'], 'record')})")
    for c in m["catch_up"]:
        where = c.get("node") or ", ".join(c["side"])
        print(f"catch-up after {c['fault']} of {where}: {c['seconds']} s ({counted(c['backlog_records'], 'record')})")
    for r in m["rotations"]:
        print(f"key rotation of {r['node']} ({r['old']} -> {r['new']}): other nodes linking its keys: {linking(r)}")
    for change in m["trust_changes"]:
        print(": ".join(trust_change(change)))
    for a in m["attacks"]:
        if a["type"] == "equivocation":
            silent = a["of_others"] - len([n for n in a["weight_at"] if n != a["node"]])
            print(f"equivocation by {a['node']}: {_evidence(a, ' its two records were offered')}; "
                  f"{len(a['distrusted_by'])} of the {counted(a['of_others'], 'other')} count it an equivocator"
                  + (f" ({silent} gave no view at the end)" if silent else ""))
        elif a["type"] in ("praise", "slander"):
            sought, hits = (("trusted or better", a["trusted_or_better"]) if a["type"] == "praise" else
                            ("untrusted", a["untrusted"]))
            print(f"{a['type']} of {a['agents']} by {a['orgs']}: at the honest nodes "
                  + (f"a mean final score of {a['mean_final_score']}, {sought} in {hits} of "
                     f"{counted(a['views'], 'view')}" if a["views"] else "no score of them")
                  + f"; at the attackers' own nodes {_or_dash(a.get('attackers_mean_final_score'))}"
                  + (f"; {dip}" if (dip := dip_said(a)) else "")  # (a slander's: praise measures none)
                  + batches_missed(a["batches"]))
        elif a["type"] == "whitewash":
            print("whitewash: mean final score at the honest nodes, old identity -> new: " + ", ".join(
                f"{name} {_or_dash(v['old_final_score'])} -> {_or_dash(v['new_final_score'])}"
                for name, v in a["agents"].items()))
        elif a["type"] == "key-theft":
            silent = a["of"] - len(a["thief_key"])
            print(f"key theft from {a['victim']}: {_evidence(a, ' the thief offered its records')}; the thief's key "
                  f"counts for nothing: {a['thief_counts_for_nothing']}"
                  + (f" (at the {counted(len(a['thief_key']), 'node')} that gave a view at the end, of {a['of']})"
                     if silent else ""))
    print(f"converged: {conv['converged']} ({counted(conv['records'], 'record')}); checkpoints current and cosigned "
          f"by their witnesses: {witnessed_summary(cps)}")
    for row in m["confusion"]["rows"]:
        views = sum(row["tiers"].values())
        tiers = ", ".join(f"{t} in {n}" for t, n in row["tiers"].items() if n)
        print(f"agents {row['group']} ({row['behaviour']}), final tier at the honest nodes: "
              + (f"{tiers} of {counted(views, 'view')} (an agent at a node)" if views else "no score of them")
              + (f"; {dip}" if (dip := dip_said(row)) else ""))


def _evidence(attack: dict, since: str) -> str:
    """How many nodes held equivocation evidence against an attack's org, and how soon after `since`."""
    last = attack["seconds_to_flag_everywhere"]
    return (f"{attack['nodes_flagging']} of {counted(attack['of'], 'node')} held the evidence"
            + (f", the last {last} s after{since}" if last is not None else "")
            + (" (it was flagged before this run)" if attack["flagged_before"] else ""))


def _or_dash(value: float | None) -> str:
    return "-" if value is None else str(value)
