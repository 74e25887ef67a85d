"""A testnet's state file, `testnet.json` in its directory: the network, the topology, and per node its data
directory, ports, identity (the org's current key and, after key rotations, its earlier ones) and the process that
runs it (DESIGN.md §9)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ledger.files import replace_file

from .ports import PortRange

STATE_FILE = "testnet.json"
STATE_VERSION = 1


class StateError(Exception):
    """The directory holds no testnet, or its state file is not one this version wrote."""


@dataclass(frozen=True)
class NodeEntry:
    """One node: `dir` is relative to the testnet directory; `did` and `peer_id` are its org's current key,
    `former_dids` the keys it rotated away from, first first; `pid` and `started` (the process's start time as the
    kernel counts it, so a recycled pid is never mistaken for ours) are None while it is down, as are `log_pid` and
    `log_started`, its log process's (testnet.node_log; None too in a state file from before they were kept)."""

    name: str
    dir: str
    p2p_port: int
    api_port: int
    did: str
    peer_id: str
    pid: int | None = None
    started: int | None = None
    former_dids: tuple[str, ...] = ()
    log_pid: int | None = None
    log_started: int | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key of the node's org, first to current (vouching.succession)."""
        return (*self.former_dids, self.did)

    @property
    def api_url(self) -> str:
        return f"http://{api_bind(self.api_port)}"

    @property
    def p2p_addr(self) -> str:
        return f"{listen_addr(self.p2p_port)}/p2p/{self.peer_id}"


def listen_addr(p2p_port: int) -> str:
    """A node's `[p2p] listen` address (`vouchnet init --listen`): loopback only."""
    return f"/ip4/127.0.0.1/tcp/{p2p_port}"


def api_bind(api_port: int) -> str:
    """A node's `[api] bind` (`vouchnet init --api`): loopback only."""
    return f"127.0.0.1:{api_port}"


@dataclass(frozen=True)
class TestnetState:
    """`vouched`: whether the topology's org-peer vouches were made (an `up` interrupted before it made them leaves
    them to the next); `ports`: the range its nodes' ports are drawn from (`up --ports`), a port moved too, or None:
    from 10000 up outside the ephemeral range (testnet.ports)."""

    network: str
    seed: int
    topology: str
    nodes: tuple[NodeEntry, ...]
    vouched: bool = True
    ports: PortRange | None = None

    def node(self, name: str) -> NodeEntry:
        for entry in self.nodes:
            if entry.name == name:
                return entry
        raise StateError(f"no node {name!r} in this testnet (nodes: {', '.join(n.name for n in self.nodes)})")

    def with_node(self, entry: NodeEntry) -> TestnetState:
        return replace(self, nodes=tuple(entry if n.name == entry.name else n for n in self.nodes))

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "network": self.network, "seed": self.seed, "topology": self.topology,
                "vouched": self.vouched, "ports": None if self.ports is None else [self.ports.first, self.ports.last],
                "nodes": [asdict(n) for n in self.nodes]}


MAX_NODES = 100  # in a testnet (--nodes, a scenario file's nodes): node_name sorts them in start order


def node_name(index: int) -> str:
    """n00, n01, ...: sorts in start order up to MAX_NODES."""
    return f"n{index:02d}"


def save_state(directory: Path, state: TestnetState) -> None:
    """Write the state file whole and durably (ledger.files: a reader never sees half of it, and a power cut does not
    lose the nodes' pids and ports); its mode, as before, is the umask's."""
    replace_file(directory / STATE_FILE, (json.dumps(state.to_json(), indent=1) + "\n").encode(), mode=0o666)


def load_state(directory: Path) -> TestnetState:
    path = directory / STATE_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateError(
            f"{directory}: no testnet here; start one with `vouchnet testnet up --dir {directory}`") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise StateError(f"{path}: not a testnet state file ({e})") from None
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        raise StateError(f"{path}: not a version {STATE_VERSION} testnet state file")
    try:
        nodes = tuple(NodeEntry(**{**entry, "former_dids": tuple(entry.get("former_dids", ()))})
                      for entry in document["nodes"])
        ports = document.get("ports")  # (none in a state file from before `up --ports`)
        return TestnetState(document["network"], document["seed"], document["topology"], nodes,
                            document.get("vouched", True), None if ports is None else PortRange(*ports))
    except (KeyError, TypeError) as e:
        raise StateError(f"{path}: malformed ({e})") from None
