"""A testnet on this machine (DESIGN.md §9): N `vouchnet run` processes on loopback, each with its own ports and
data directory made by `vouchnet init`, brought to fast settings by editing its config.toml, and driven only
through its HTTP API, as an operator drives a node.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from node.client import NodeClient
from node.config import ConfigError, NodeConfig
from node.credential_registry import CREDENTIALS_FILE, CredentialRegistry, RegistryError
from node.keys import load_org_key, load_token
from node.stop_deadline import STOP_CUT_SECONDS
from vouching import did_key
from vouching.counts import counted

from . import processes
from .config_edit import Value, edit_config
from .ports import PortError, PortRange, bindable, choose_ports
from .state import NodeEntry, TestnetState, api_bind, listen_addr, load_state, node_name, save_state
from .topology import bootstrap_indexes, trust_edges

NETWORK = "testnet"
NODES_DIR = "nodes"
LOG_FILE = "node.log"
START_TIMEOUT = 90.0  # ten nodes starting at once share two cores
# A node stops within 2 s of SIGTERM, or cuts its own stop short at STOP_CUT_SECONDS, saying which store's write held
# it (its last log line); past this it is killed.
STOP_TIMEOUT = STOP_CUT_SECONDS + 2.0
ROTATE_TIMEOUT = 60.0  # s: `key rotate` opens the node (replaying its records), then catches up (startup_sync_seconds)
ORG_PEER_WEIGHT = 0.9

Progress = Callable[[str, int, int], None]  # (what happened, done, total)
Say = Callable[[str], None]  # a line for the operator


class ClusterError(Exception):
    """The testnet cannot do what was asked; the message says which node and why (with its last log lines)."""


@dataclass(frozen=True)
class Settings:
    """Node settings that make a testnet's minutes show what production shows in hours."""

    # Ten nodes share two cores: a checkpoint (cosigned by `witnesses` peers) every 2 s and a full recompute every
    # 3 s leave them room to gossip; at 1 s and 2 s they saturate the CPU and propagation slows (see README).
    checkpoint_interval: float = 2.0  # [witness]
    witnesses: int = NodeConfig.witnesses  # [witness]
    epoch_seconds: float = 2.0  # [telemetry]: digests every 2 s
    sync_interval: float = 3.0  # [p2p]
    recompute_seconds: float = 3.0  # [scoring]

    def config_values(self) -> dict[tuple[str, str], Value]:
        return {
            ("witness", "checkpoint_interval"): self.checkpoint_interval,
            ("witness", "witnesses"): self.witnesses,
            ("telemetry", "epoch_seconds"): self.epoch_seconds,
            ("p2p", "sync_interval"): self.sync_interval,
            ("scoring", "recompute_seconds"): self.recompute_seconds,
        }


@dataclass(frozen=True)
class Stopped:
    clean: list[str]  # stopped on SIGTERM
    killed: list[str]  # needed SIGKILL


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Cluster:
    """The testnet in `directory`; its state lives in `directory/testnet.json` and is saved after every change."""

    def __init__(self, directory: Path, state: TestnetState) -> None:
        self.directory = directory
        self.state = state

    # --- making and finding a testnet ---------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path) -> Cluster:
        """The testnet already in `directory` (raises StateError if there is none)."""
        return cls(directory, load_state(directory))

    @classmethod
    def create(cls, directory: Path, *, nodes: int, seed: int, topology: str, settings: Settings = Settings(),
               network: str = NETWORK, ports: PortRange | None = None) -> Cluster:
        """Make `nodes` data directories with `vouchnet init`, bootstrap lists and roots per `topology`, and fast
        `settings`, their ports drawn from `ports` if given (testnet.ports); nothing is started. Refuses a directory
        that already holds a testnet or node directories, and a range of fewer ports than the nodes need; one that
        fails or is interrupted leaves nothing it made."""
        if nodes < 1:
            raise ClusterError(f"--nodes: must be at least 1, got {nodes}")
        if ports is not None:
            try:
                ports.check_holds(nodes)
            except PortError as e:
                raise ClusterError(str(e)) from None
        if (directory / "testnet.json").exists():
            raise ClusterError(f"{directory}: already holds a testnet")
        if (directory / NODES_DIR).exists():
            raise ClusterError(f"{directory}: holds {NODES_DIR}/ but no testnet.json (a testnet not made by this "
                               "command, or one whose making failed); remove it or use another --dir")
        edges = trust_edges(topology, nodes, seed)
        made = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        try:
            return cls._create(directory, nodes, seed, topology, settings, network, edges, ports)
        except BaseException:  # a failed `vouchnet init` or a Ctrl-C: nothing half made is left to trip the next `up`
            shutil.rmtree(directory / NODES_DIR, ignore_errors=True)
            if made:
                shutil.rmtree(directory, ignore_errors=True)
            raise

    @classmethod
    def _create(cls, directory: Path, nodes: int, seed: int, topology: str, settings: Settings, network: str,
                edges: dict[int, list[int]], port_range: PortRange | None) -> Cluster:
        ports = _draw_ports(2 * nodes, within=port_range)
        names = [node_name(i) for i in range(nodes)]
        _init_all(directory, names, network, ports)
        from gossip.host import peer_id_from_public_key  # py-libp2p takes a second to import; only needed here

        entries = []
        for i, name in enumerate(names):
            public = bytes(load_org_key(directory / NODES_DIR / name / "org.key").verify_key)
            entries.append(NodeEntry(name=name, dir=f"{NODES_DIR}/{name}", p2p_port=ports[2 * i],
                                     api_port=ports[2 * i + 1], did=did_key(public),
                                     peer_id=peer_id_from_public_key(public)))
        # (a topology with no vouch to make, `run`'s "none", has made them all: `up` makes and says none)
        cluster = cls(directory, TestnetState(network=network, seed=seed, topology=topology, nodes=tuple(entries),
                                              vouched=not any(edges.values()), ports=port_range))
        for i, entry in enumerate(entries):
            cluster.configure(entry.name, {
                ("p2p", "bootstrap"): cluster._bootstrap(i),
                ("trust", "roots"): [entries[j].did for j in edges[i]],
                **settings.config_values(),
            })
        save_state(directory, cluster.state)
        return cluster

    # --- one node -----------------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.state.nodes]

    def entry(self, name: str) -> NodeEntry:
        return self.state.node(name)

    def data_dir(self, name: str) -> Path:
        return self.directory / self.entry(name).dir

    def log_path(self, name: str) -> Path:
        return self.data_dir(name) / LOG_FILE

    def client(self, name: str, *, timeout: float = 10.0) -> NodeClient:
        """A client of the node's API carrying its token (close it, or use it in a `with`)."""
        return NodeClient(self.entry(name).api_url, load_token(self.data_dir(name) / "api.token"), timeout=timeout)

    def running(self, name: str) -> bool:
        entry = self.entry(name)
        return processes.alive(entry.pid, entry.started)

    def log_running(self, name: str) -> bool | None:
        """Whether the process writing the node's log (testnet.node_log) runs; None if it was not recorded (the node
        is down, or was started by a testnet from before it was)."""
        entry = self.entry(name)
        if entry.log_pid is None:
            return None
        return processes.alive(entry.log_pid, entry.log_started)

    def configure(self, name: str, values: dict[tuple[str, str], Value]) -> bool:
        """Edit the node's config.toml (it takes effect at the next start); True if anything changed."""
        try:
            return edit_config(self.data_dir(name), values)
        except ConfigError as e:
            raise ClusterError(f"{name}: {e}") from None

    def log_tail(self, name: str, lines: int = 20) -> list[str]:
        try:
            text = self.log_path(name).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return text.splitlines()[-lines:]

    # --- starting and stopping ----------------------------------------------------------------------------

    def start(self, names: Iterable[str] | None = None, *, progress: Progress | None = None, say: Say | None = None,
              timeout: float = START_TIMEOUT) -> list[str]:
        """Start those of `names` (default: all) that are not running, with their data, and wait until each API
        answers /healthz; returns the names started. A port of theirs that another process took is moved first
        (move_taken_ports; each move said in a line to `say`). A node that exits or stays silent raises
        ClusterError."""
        wanted = [n for n in (self.names if names is None else list(names)) if not self.running(n)]
        for line in self.move_taken_ports(wanted):
            if say is not None:
                say(line)
        for name in wanted:
            entry = self.entry(name)
            process, writer = processes.spawn_node(self.data_dir(name), self.log_path(name))
            self._set(replace(entry, pid=process.pid, started=processes.start_time(process.pid), log_pid=writer.pid,
                              log_started=processes.start_time(writer.pid)))
        self._wait_healthy(wanted, progress, timeout)
        return wanted

    def move_taken_ports(self, names: Iterable[str]) -> list[str]:
        """Give each port of the stopped nodes `names` that no node could listen on now (another process took it
        while the testnet was down) a fresh one, from the testnet's range if it has one (`up --ports`): in the node's
        config.toml, in the bootstrap lists of the nodes that dial it (read at their next start) and, last, in
        testnet.json, so that a move cut short is made again.
        Returns a line per move. The node announces its new address in a new `org` record as it starts.

        The API port of a node that minted agent credentials (`vouchnet agent new --dir`) is not moved: each names
        the API's URL for its status list, and a signed credential cannot be rewritten, nor one re-issued reach
        its agent, so a move would leave every one unverifiable. ClusterError names the port to free instead."""
        moves = []
        for name in names:
            entry = self.entry(name)
            ports = {"p2p": entry.p2p_port, "api": entry.api_port}
            taken = [kind for kind, port in ports.items() if not bindable(port)]
            if not taken:
                continue
            if "api" in taken and (minted := self._minted_credentials(name)):
                raise ClusterError(f"{name}'s api port {entry.api_port} is taken by another process, and cannot "
                                   f"move: {name} minted {counted(minted, 'agent credential')} (`vouchnet agent "
                                   "list`), each naming the API's URL for its status list; stop the process holding "
                                   "the port and start again")
            fresh = dict(zip(taken, _draw_ports(len(taken), avoid=self._given_ports(), within=self.state.ports)))
            moved = replace(entry, p2p_port=fresh.get("p2p", entry.p2p_port), api_port=fresh.get("api", entry.api_port))
            saved, self.state = self.state, self.state.with_node(moved)
            try:
                self.configure(name, {("p2p", "listen"): [listen_addr(moved.p2p_port)],
                                      ("api", "bind"): api_bind(moved.api_port)})
                if "p2p" in fresh:
                    self._write_bootstrap_of_dialers(name)
            except BaseException:  # (a stop's save must not record a move its config files do not all carry)
                self.state = saved
                raise
            save_state(self.directory, self.state)
            moves += [f"{name}'s {kind} port {ports[kind]} is taken by another process; moved to {port}"
                      for kind, port in fresh.items()]
        return moves

    def stop(self, names: Iterable[str] | None = None, *, timeout: float = STOP_TIMEOUT) -> Stopped:
        """SIGTERM the running nodes among `names` (default: all), SIGKILL any still running after `timeout` s, and
        return once every one is gone."""
        targets = [self.entry(n) for n in (self.names if names is None else names)]
        live = [e for e in targets if processes.alive(e.pid, e.started)]
        clean, killed = processes.stop([(e.pid, e.started) for e in live], timeout=timeout)  # type: ignore[misc]
        by_pid = {e.pid: e.name for e in live}
        for entry in targets:  # (a log process ends with its node)
            self._set(replace(self.entry(entry.name), pid=None, started=None, log_pid=None, log_started=None))
        return Stopped([by_pid[p] for p in clean], [by_pid[p] for p in killed])

    def rotate_key(self, name: str, *, catch_up: bool = True) -> tuple[str, str]:
        """`vouchnet key rotate` on the node's data directory (the node must be stopped: the command refuses a
        running node's), then its new key into the state file (the old one joins `former_dids`) and into the
        bootstrap lists of the nodes that dial it (config.toml, read at their next start); returns (old, new did).
        Without `catch_up` (no running peer it may reach: its catch-up would time out, and the command refuse), with
        --without-catch-up: the testnet stopped the node itself, so its data directory is current."""
        flags = () if catch_up else ("--without-catch-up",)
        try:
            run = subprocess.run(processes.vouchnet_command("key", "rotate", "--dir", str(self.data_dir(name)), *flags),
                                 capture_output=True, text=True, env=processes.child_env(), timeout=ROTATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{name}: `vouchnet key rotate` did not finish in {ROTATE_TIMEOUT} s") from None
        if run.returncode != 0:
            raise ClusterError(f"{name}: `vouchnet key rotate` failed ({run.returncode}): {run.stderr.strip()}")
        rotated = json.loads(run.stdout)
        entry = self.entry(name)
        self._set(replace(entry, did=rotated["new"], peer_id=rotated["peer_id"],
                          former_dids=(*entry.former_dids, entry.did)))
        self._write_bootstrap_of_dialers(name)
        return entry.did, rotated["new"]

    def kill(self, name: str) -> None:
        """SIGKILL the node (no clean shutdown), and return once it is gone."""
        entry = self.entry(name)
        if entry.pid is not None and entry.started is not None:
            processes.kill(entry.pid, entry.started)
        self._set(replace(entry, pid=None, started=None, log_pid=None, log_started=None))

    def leftovers(self) -> list[str]:
        """What is still alive or listening of a testnet that should be down: empty when it is."""
        found = []
        for entry in self.state.nodes:
            running = processes.alive(entry.pid, entry.started)
            if running:
                found.append(f"{entry.name}: process {entry.pid} runs")
            for port in (entry.p2p_port, entry.api_port):
                if port_open(port):
                    found.append(f"{entry.name}: port {port} accepts connections" + (
                        "" if running else ", though the node's process is gone: another process listens there"))
        return found

    # --- the topology's vouches ---------------------------------------------------------------------------

    def vouch_topology(self) -> int:
        """Each org vouches (`org-peer`) for the orgs its topology says it trusts, through its API, unless it did
        already (an interrupted call's); returns how many vouches were made. The state then says it was done."""
        edges = trust_edges(self.state.topology, len(self.state.nodes), self.state.seed)
        made = 0
        for i, entry in enumerate(self.state.nodes):
            with self.client(entry.name) as client:
                done = {r["body"]["subject"] for r in client.iter_records(issuer=entry.did, kind="vouch")
                        if r["body"]["basis"] == "org-peer"}
                for j in edges[i]:
                    if self.state.nodes[j].did not in done:
                        client.vouch(self.state.nodes[j].did, ORG_PEER_WEIGHT, "org-peer")
                        made += 1
        self.state = replace(self.state, vouched=True)
        save_state(self.directory, self.state)
        return made

    # --- internals ----------------------------------------------------------------------------------------

    def _bootstrap(self, index: int) -> list[str]:
        """The addresses the node at `index` dials at start (topology.bootstrap_indexes), with their current keys."""
        return [self.state.nodes[j].p2p_addr for j in bootstrap_indexes(index, len(self.state.nodes))]

    def _write_bootstrap_of_dialers(self, name: str) -> None:
        """The bootstrap lists of the nodes that dial `name` at start, written again with its current address."""
        count = len(self.names)
        index = self.names.index(name)
        for i, other in enumerate(self.names):
            if index in bootstrap_indexes(i, count):
                self.configure(other, {("p2p", "bootstrap"): self._bootstrap(i)})

    def _minted_credentials(self, name: str) -> int:
        """How many agent credentials the node minted (node.credential_registry, read while it is stopped)."""
        if not (self.data_dir(name) / CREDENTIALS_FILE).exists():
            return 0
        try:
            registry = CredentialRegistry.open(self.data_dir(name))
        except RegistryError as e:
            raise ClusterError(f"{name}: {e}") from None
        try:
            return len(registry.issued())
        finally:
            registry.close()

    def _given_ports(self) -> set[int]:
        """Every port the testnet's nodes have."""
        return {port for entry in self.state.nodes for port in (entry.p2p_port, entry.api_port)}

    def _set(self, entry: NodeEntry) -> None:
        self.state = self.state.with_node(entry)
        save_state(self.directory, self.state)

    def _wait_healthy(self, names: Sequence[str], progress: Progress | None, timeout: float) -> None:
        """Wait until each of `names` answers /healthz, asking all those still starting at once, each a second at
        most: a start binds its API's port before its catch-up sync, so a node starting holds each request until it
        serves, and asked one after another, N nodes starting took N seconds a round, each node's answer and the
        deadline seen that late."""
        pending = list(names)
        deadline = time.monotonic() + timeout
        at_once = max(1, len(names))  # (httpx's default pool holds 100 connections: more would wait for one)
        with httpx.Client(timeout=1.0, limits=httpx.Limits(max_connections=at_once)) as http, \
                ThreadPoolExecutor(max_workers=at_once) as pool:
            while pending:
                for name in pending:
                    if not self.running(name):
                        tail = "\n    ".join(self.log_tail(name))
                        raise ClusterError(f"{name}: exited while starting; its log ends:\n    {tail}")
                healthy = list(pool.map(lambda name: self._answers_healthz(http, name), pending))
                for name in [name for name, up in zip(pending, healthy) if up]:
                    pending.remove(name)
                    if progress is not None:
                        progress(f"{name} up at {self.entry(name).api_url}", len(names) - len(pending), len(names))
                if pending and time.monotonic() > deadline:
                    raise ClusterError(f"{', '.join(pending)}: no answer on /healthz within {timeout:.0f} s; see "
                                       f"`vouchnet testnet logs {pending[0]} --dir {self.directory}`")
                if pending:
                    time.sleep(0.1)

    def _answers_healthz(self, http: httpx.Client, name: str) -> bool:
        """Whether `name`'s API answers /healthz with 200 (within `http`'s timeout)."""
        try:
            return http.get(f"{self.entry(name).api_url}/healthz").status_code == 200
        except httpx.HTTPError:
            return False


def _init_all(directory: Path, names: list[str], network: str, ports: list[int]) -> None:
    """`vouchnet init` for every node, as concurrent processes."""
    runs = []
    for i, name in enumerate(names):
        command = processes.vouchnet_command(
            "init", "--dir", str(directory / NODES_DIR / name), "--name", name, "--network", network,
            "--listen", listen_addr(ports[2 * i]), "--api", api_bind(ports[2 * i + 1]))
        runs.append((name, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                            env=processes.child_env())))
    failures = []
    for name, run in runs:
        _, err = run.communicate()
        if run.returncode != 0:
            failures.append(f"{name}: `vouchnet init` failed ({run.returncode}): {err.strip()}")
    if failures:
        raise ClusterError("\n".join(failures))




def _draw_ports(count: int, avoid: Collection[int] = (), within: PortRange | None = None) -> list[int]:
    """testnet.ports.choose_ports, its PortError a ClusterError."""
    try:
        return choose_ports(count, avoid=avoid, within=within)
    except PortError as e:
        raise ClusterError(str(e)) from None
