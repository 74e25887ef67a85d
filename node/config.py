"""The node's configuration: `config.toml` in the data directory, its commented template, and strict loading."""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import urllib.parse
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

from gossip.addrs import AddrError, parse_listen_addr, parse_peer_addr
from gossip.batch import MAX_GOSSIP_MESSAGE
from gossip.checkpoints import PEER_CHECKPOINTS_PER_S
from gossip.forks import FORK_WINDOW
from gossip.scopes import DIAL_PRIVATE, DialPrivate
from ledger import MAX_COSIGNATURES
from vouching import InvalidDid, public_key_from_did
from vouching.bodies import NETWORK_PATTERN, NETWORK_RULE
from vouching.policy import words
from vouching.schema import MAX_UINT

from .dp import EPSILON_RULE, geometric_alpha

CONFIG_FILE = "config.toml"
# config.toml's `format`: a later vouchnet that changes what a key means, or drops one, writes a higher one, which this
# one refuses; a file without it is format 1. (Keys added are refused by name, in any format.)
CONFIG_FORMAT = 1
DIR_ENV = "VOUCHNET_DIR"
DEFAULT_LISTEN = "/ip4/0.0.0.0/tcp/4001"
DEFAULT_API = "127.0.0.1:8700"
MAX_VERIFY_PROCESSES = 64
MAX_SYNC_PEERS = 1024
# Times the node keeps in ms as integers of at most 2^53 - 1 (vouching.schema.MAX_UINT), as records carry them.
MAX_EPOCH_SECONDS = MAX_UINT // 1000
MAX_RETENTION_DAYS = MAX_UINT // 86_400_000


def default_data_dir() -> Path:
    """Where a node keeps its key, token, config and ledgers unless told: $VOUCHNET_DIR, else ~/.vouchnet."""
    return Path(os.environ.get(DIR_ENV) or Path.home() / ".vouchnet")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file, the key and the rule."""


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a hostile peer from exhausting the node."""

    max_peers: int = 50
    gossip_batch_bytes: int = 65536
    peer_messages_per_second: float = 200.0
    peer_bytes_per_second: float = 2097152.0
    org_records_per_second: float = 500.0
    peer_checkpoints_per_second: float = PEER_CHECKPOINTS_PER_S
    held_records: int = 10000
    sync_page_records: int = 500


@dataclass(frozen=True)
class NodeConfig:
    """Everything `vouchnet run` needs, read from `config.toml` (see `render_template`)."""

    data_dir: Path
    name: str = "vouchnet node"
    network: str = "vouchnet"
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    announce: tuple[str, ...] = ()
    bootstrap: tuple[str, ...] = ()
    dial_private: DialPrivate = "auto"
    roots: tuple[str, ...] = ()
    max_hops: int = 3
    api_host: str = "127.0.0.1"
    api_port: int = 8700
    public_url: str = ""  # where other orgs reach this API; "" means the bind address
    hosts: tuple[str, ...] = ()  # further names the API answers to (node.api.hosts); ("*",): any
    traces_need_token: bool = True
    checkpoint_interval: float = 1.0
    checkpoint_gossip_interval: float = 10.0
    fork_window: float = FORK_WINDOW
    witnesses: int = 8
    sync_interval: float = 30.0
    sync_peers: int = 3
    startup_sync_seconds: float = 10.0
    verify_processes: int = 0
    epoch_seconds: float = 3600.0
    retention_days: float = 180.0
    dp_epsilon: float | None = None
    recompute_seconds: float = 60.0
    min_score: int = 0
    high_risk_tools: tuple[str, ...] | None = None  # None: vouching.policy's default list
    limits: Limits = field(default_factory=Limits)

    @property
    def key_path(self) -> Path:
        return self.data_dir / "org.key"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "api.token"

    @property
    def any_host(self) -> bool:
        """Whether the API answers a request naming any host ([api] hosts = ["*"]: no DNS rebinding defence)."""
        return self.hosts == ("*",)

    @property
    def api_public_url(self) -> str:
        """The API's URL as other orgs reach it: [api] public_url, else the bind address (with a bind's port 0, a
        URL no credential may name: node.credential_status.checked_public_url)."""
        return self.public_url or self.local_api_url(self.api_port)

    def local_api_url(self, port: int) -> str:
        """The API's URL on this machine once it listens on `port` (for a bind's port 0, the one the OS picked)."""
        return f"http://{connectable_host(self.api_host)}:{port}"


# A DNS name as the API takes one: labels of letters, digits, '-' and '_', at most 254 characters with a final dot.
_HOST_NAME = re.compile(r"(?=.{1,254}\Z)(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?")
HOST_NAME_RULE = "letters, digits, '-' and '_' in labels of 1-63 between dots"


def parse_api_bind(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) -> (host, port); raises ConfigError."""
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", value)  # (no int() of 5,000 digits)
    if not match:
        raise ConfigError(f"api.bind: expected HOST:PORT, got {value!r}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 <= port <= 65535:
        raise ConfigError(f"api.bind: port must be 0-65535, got {port}")
    if match.group(1) is not None and not _is_ipv6(host):
        raise ConfigError(f"api.bind: [{host}] is not an IPv6 address")
    if match.group(3) is not None and (fault := host_fault(host)) is not None:
        raise ConfigError(f"api.bind: {fault}")
    return host, port


def host_fault(host: str) -> str | None:
    """Why `host`, of an API address without brackets, is neither an IPv4 address nor a host name, or None. A host
    whose last label is all digits is an IPv4 address, as no top-level domain is (RFC 3696 §2), and must be written
    in full, four decimal numbers 0-255: the resolver reads `127.1`, `0` or `0x7f.0.0.1` as an address that the
    node's checks (loopback or not, the hosts it answers to) do not, and `999.1.1.1` as a name it fails to find
    only when the node binds it or a command calls it."""
    if _is_ipv4_form(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return (f"{host!r} is not an IP address: an IPv4 address is four decimal numbers 0-255 between dots, "
                    "without leading zeros, such as 127.0.0.1")
        return None
    if not _HOST_NAME.fullmatch(host):
        return f"{host!r} is not a host name ({HOST_NAME_RULE}), such as localhost"
    return None


def _is_ipv4_form(host: str) -> bool:
    """Whether a host's last label is all digits, which only an IPv4 address's is (RFC 3696 §2)."""
    return host.rstrip(".").rpartition(".")[2].isdecimal()


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def connectable_host(host: str) -> str:
    """An API bind host as a URL host: a wildcard bind is reached on loopback, IPv6 goes in brackets."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"[{address}]" if address.version == 6 else str(address)


def _check_public_url(value: str) -> str:
    """[api] public_url: an http(s) URL with a host, a port if any of 1-65535, no user or password and nothing after
    the path; returned without a final '/'."""
    parts = urllib.parse.urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment or port == 0:
        raise ConfigError(
            f"api.public_url: expected an http(s) URL such as https://vouchnet.example.org, got {value!r}")
    if parts.username is not None or parts.password is not None:  # not quoted: it may hold a password
        raise ConfigError("api.public_url: must not hold a user or password: it is written into every credential this "
                          "org issues, for anyone to read")
    return value.rstrip("/")


def _check_host(value: object) -> str:
    """One name of [api] hosts: a DNS name (letters, digits, '-', '_', dots; its last label not all digits, the
    rule of host_fault), without scheme, port or path; an IP address is refused as needless (every one is
    answered), so that no one takes the list for an allow-list of addresses, and `999.1.1.1` or `127.1` as neither
    name nor address."""
    if not isinstance(value, str):
        raise ConfigError(f"api.hosts: each must be a string, got {value!r}")
    if "://" in value:
        raise ConfigError(f"api.hosts: {value!r} is a URL: give its host name only, such as vouchnet.example.org")
    if "/" in value:
        raise ConfigError(f"api.hosts: {value!r} has a path: give a host name only, such as vouchnet.example.org")
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        pass
    else:
        raise ConfigError(f"api.hosts: {value!r} is an IP address: a request naming any IP address is answered "
                          "already (a DNS rebinding page cannot send one); list host names only")
    if ":" in value:
        raise ConfigError(f"api.hosts: {value!r} has a port: give the host name without it (the API answers to a "
                          "name on any port)")
    if "*" in value:
        raise ConfigError(f'api.hosts: {value!r}: "*" stands alone, as hosts = ["*"] (any host); a name cannot hold '
                          "it")
    if _is_ipv4_form(value):
        raise ConfigError(f"api.hosts: {value!r} is not a host name: its last label is all digits, as no top-level "
                          "domain's is (RFC 3696 §2), nor is it an IP address; list host names only, such as "
                          "vouchnet.example.org")
    if not _HOST_NAME.fullmatch(value):
        raise ConfigError(f"api.hosts: {value!r} is not a host name ({HOST_NAME_RULE}), such as vouchnet.example.org")
    return value


def _check_hosts(values: list[object]) -> tuple[str, ...]:
    """[api] hosts: ["*"], or host names (_check_host)."""
    if "*" in values and len(values) > 1:
        raise ConfigError('api.hosts: "*" answers any host, so it stands alone: hosts = ["*"]')
    return ("*",) if values == ["*"] else tuple(_check_host(value) for value in values)


def is_loopback(host: str) -> bool:
    """Whether an API host name or address is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_announce_addr(value: Any) -> str:
    """[p2p] announce: an address other orgs' nodes dial, which is one by IP address (they resolve no DNS name an
    `org` record names, gossip.peers.org_dial_addrs) and not a wildcard; the node adds /p2p/<its peer id>."""
    try:
        address = parse_listen_addr(value)
    except AddrError as e:
        raise ConfigError(f"p2p.announce: {e} (other orgs' nodes dial only IP addresses from org records, and the "
                          f"node adds /p2p/<its peer id>), got {value!r}") from None
    if ipaddress.ip_address(address.host).is_unspecified:
        raise ConfigError(f"p2p.announce: {address.host} is a wildcard, not an address other orgs can reach: give the "
                          f"address they dial, got {value!r}")
    return value


def _check_addr(key: str, value: Any, parse: Callable[[str], object]) -> str:
    """An address `parse` takes: [p2p] listen's, what the host listens on (gossip.addrs.parse_listen_addr, as
    gossip.host requires), or [p2p] bootstrap's, a peer the node dials (gossip.addrs.parse_peer_addr: by IP address
    or DNS name, an org's PeerID)."""
    try:
        parse(value)
    except AddrError as e:
        raise ConfigError(f"{key}: {e}, got {value!r}") from None
    return value


def _check_dial_private(value: str) -> DialPrivate:
    """[p2p] dial_private: which of the addresses other orgs' `org` records name the node dials (gossip.scopes)."""
    if value in DIAL_PRIVATE:
        return cast(DialPrivate, value)
    raise ConfigError(f"p2p.dial_private: must be {', '.join(map(repr, DIAL_PRIVATE[:-1]))} or {DIAL_PRIVATE[-1]!r} "
                      f"(which loopback, private and link-local addresses that org records name the node dials), "
                      f"got {value!r}")


def _check_did(key: str, value: Any) -> str:
    try:
        public_key_from_did(value)
    except InvalidDid as e:
        raise ConfigError(f"{key}: not an Ed25519 did:key: {value!r} ({e})") from None
    return value


def _table(doc: dict[str, Any], name: str) -> dict[str, Any]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: must be a table")
    return table


_KINDS: dict[str, tuple[type, ...]] = {"a string": (str,), "an integer": (int,), "a number": (int, float),
                                       "a list": (list,)}


def _get(table: dict[str, Any], section: str, key: str, kind: str, default: Any) -> Any:
    """`table[key]` if present and of `kind` (a key of _KINDS), else `default`; TOML booleans never qualify."""
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, _KINDS[kind]):
        raise ConfigError(f"{section}.{key}: must be {kind}, got {type(value).__name__}")
    return value


def _positive(section: str, key: str, value: float) -> float:
    _finite(section, key, value)
    if value <= 0:
        raise ConfigError(f"{section}.{key}: must be positive, got {value}")
    return value


def _finite(section: str, key: str, value: float) -> None:
    """TOML has nan and inf; no interval, rate or retention means either (a long retention is a large number)."""
    if not math.isfinite(value):
        raise ConfigError(f"{section}.{key}: must be a finite number, got {value}")


def _in_range(section: str, key: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ConfigError(f"{section}.{key}: must be {low}-{high}, got {value}")
    return value


def _known_keys(section: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{section}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def _check_format(found: int) -> None:
    if found > CONFIG_FORMAT:
        raise ConfigError(f"format: {found}: written for a later vouchnet (this one reads format {CONFIG_FORMAT}); run "
                          "that version, or restore a config.toml this one wrote")
    if found < 1:
        raise ConfigError(f"format: must be 1-{CONFIG_FORMAT}, got {found}")


def load_config(data_dir: Path) -> NodeConfig:
    """Read and validate `data_dir/config.toml`; every error names the key and the rule."""
    path = data_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8-sig")  # the BOM some editors write failed at line 1
    except FileNotFoundError:
        if not data_dir.exists():  # a typo more often than a node to create: init would make a new org key
            raise ConfigError(f"{data_dir}: no such directory: give --dir (or ${DIR_ENV}) the node's data directory, "
                              f"where `vouchnet init` wrote config.toml (`vouchnet init --dir {data_dir}` creates a "
                              "new node)") from None
        if nodes := sorted(d for d in data_dir.glob(f"nodes/*/{CONFIG_FILE}")):  # (a testnet's: DIR/nodes/nXX)
            raise ConfigError(f"{data_dir}: no configuration here, but nodes' data directories below it "
                              f"({', '.join(d.parent.name for d in nodes)}, in {data_dir / 'nodes'}): give --dir one "
                              f"of them ({nodes[0].parent})") from None
        raise ConfigError(f"{path}: no configuration here; create one with `vouchnet init --dir {data_dir}`") from None
    except NotADirectoryError:
        if not data_dir.is_file():  # a file further up the path: the file system's words name it
            raise
        raise ConfigError(f"{data_dir}: a file, not a directory: give --dir (or ${DIR_ENV}) the node's data "
                          "directory, the one that holds config.toml"
                          f"{f' ({data_dir.parent})' if data_dir.name == CONFIG_FILE else ''}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_config(data_dir, text)


def parse_config(data_dir: Path, text: str) -> NodeConfig:
    """Validate `text` as `data_dir/config.toml` would be (before writing it); errors as load_config's."""
    path = data_dir / CONFIG_FILE
    try:
        doc = tomllib.loads(text)
    except ValueError as e:  # TOMLDecodeError, and tomllib's int() of an over-long integer
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return _from_document(data_dir, doc)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _from_document(data_dir: Path, doc: dict[str, Any]) -> NodeConfig:
    _check_format(_get(doc, "config", "format", "an integer", 1))  # first: a later format may have other keys
    _known_keys("config", doc, {"format", "name", "network", "p2p", "trust", "api", "witness", "telemetry", "scoring",
                                "limits"})
    name = _get(doc, "config", "name", "a string", NodeConfig.name)
    if not 1 <= len(name) <= 128 or not name.isprintable():
        raise ConfigError(f"name: must be 1-128 printable characters, got {name!r}")
    network = _get(doc, "config", "network", "a string", NodeConfig.network)
    if not NETWORK_PATTERN.fullmatch(network):  # as an `org` record names it
        raise ConfigError(f"network: must be {NETWORK_RULE}, got {network!r}")

    p2p = _table(doc, "p2p")
    _known_keys("p2p", p2p, {"listen", "announce", "bootstrap", "dial_private", "sync_interval", "sync_peers",
                             "startup_sync_seconds", "verify_processes"})
    listen = tuple(_check_addr("p2p.listen", a, parse_listen_addr)
                   for a in _get(p2p, "p2p", "listen", "a list", [DEFAULT_LISTEN]))
    if not listen:
        raise ConfigError("p2p.listen: needs at least one address")
    announce = tuple(_check_announce_addr(a) for a in _get(p2p, "p2p", "announce", "a list", []))
    bootstrap = tuple(_check_addr("p2p.bootstrap", a, parse_peer_addr)
                      for a in _get(p2p, "p2p", "bootstrap", "a list", []))
    dial_private = _check_dial_private(_get(p2p, "p2p", "dial_private", "a string", NodeConfig.dial_private))
    sync_interval = _positive("p2p", "sync_interval",
                              _get(p2p, "p2p", "sync_interval", "a number", NodeConfig.sync_interval))
    sync_peers = _in_range("p2p", "sync_peers", _get(p2p, "p2p", "sync_peers", "an integer", NodeConfig.sync_peers),
                           1, MAX_SYNC_PEERS)
    startup_sync = _positive("p2p", "startup_sync_seconds", _get(p2p, "p2p", "startup_sync_seconds", "a number",
                                                                  NodeConfig.startup_sync_seconds))
    verify_processes = _in_range(
        "p2p", "verify_processes", _get(p2p, "p2p", "verify_processes", "an integer", NodeConfig.verify_processes),
        0, MAX_VERIFY_PROCESSES,
    )

    trust = _table(doc, "trust")
    _known_keys("trust", trust, {"roots", "max_hops"})
    roots = tuple(_check_did("trust.roots", d) for d in _get(trust, "trust", "roots", "a list", []))
    max_hops = _in_range("trust", "max_hops", _get(trust, "trust", "max_hops", "an integer", NodeConfig.max_hops),
                         1, 10)

    api = _table(doc, "api")
    _known_keys("api", api, {"bind", "public_url", "hosts", "traces_need_token"})
    api_host, api_port = parse_api_bind(_get(api, "api", "bind", "a string", DEFAULT_API))
    public_url = _get(api, "api", "public_url", "a string", "")
    public_url = public_url and _check_public_url(public_url)
    hosts = _check_hosts(_get(api, "api", "hosts", "a list", []))
    traces_need_token = api.get("traces_need_token", True)
    if type(traces_need_token) is not bool:
        raise ConfigError(f"api.traces_need_token: must be true or false, got {traces_need_token!r}")

    witness = _table(doc, "witness")
    _known_keys("witness", witness, {"checkpoint_interval", "gossip_interval", "witnesses", "fork_window"})
    checkpoint_interval = _positive(
        "witness", "checkpoint_interval",
        _get(witness, "witness", "checkpoint_interval", "a number", NodeConfig.checkpoint_interval),
    )
    gossip_interval = _positive(
        "witness", "gossip_interval",
        _get(witness, "witness", "gossip_interval", "a number", NodeConfig.checkpoint_gossip_interval),
    )
    fork_window = _positive(
        "witness", "fork_window", _get(witness, "witness", "fork_window", "a number", NodeConfig.fork_window),
    )
    witnesses = _in_range(
        "witness", "witnesses", _get(witness, "witness", "witnesses", "an integer", NodeConfig.witnesses),
        1, MAX_COSIGNATURES,
    )

    telemetry = _table(doc, "telemetry")
    _known_keys("telemetry", telemetry, {"epoch_seconds", "retention_days", "dp_epsilon"})
    epoch_seconds = _get(telemetry, "telemetry", "epoch_seconds", "a number", NodeConfig.epoch_seconds)
    _finite("telemetry", "epoch_seconds", epoch_seconds)
    if epoch_seconds < 1:
        raise ConfigError(f"telemetry.epoch_seconds: must be at least 1, got {epoch_seconds}")
    if epoch_seconds > MAX_EPOCH_SECONDS:  # (in ms, a float past this overflowed to inf at start: OverflowError)
        raise ConfigError(f"telemetry.epoch_seconds: must be at most {MAX_EPOCH_SECONDS} (2^53 - 1 ms, the longest "
                          f"epoch a digest can declare), got {epoch_seconds}")
    retention_days = _positive(
        "telemetry", "retention_days",
        _get(telemetry, "telemetry", "retention_days", "a number", NodeConfig.retention_days)
    )
    if retention_days > MAX_RETENTION_DAYS:
        raise ConfigError(f"telemetry.retention_days: must be at most {MAX_RETENTION_DAYS} (2^53 - 1 ms), got "
                          f"{retention_days}")
    dp_epsilon = _get(telemetry, "telemetry", "dp_epsilon", "a number", None)
    if dp_epsilon is not None:
        try:
            geometric_alpha(dp_epsilon)
        except ValueError:  # the node would fail to issue its first digests, and again at every start
            raise ConfigError(f"telemetry.dp_epsilon: {EPSILON_RULE}, got {dp_epsilon}") from None

    scoring = _table(doc, "scoring")
    _known_keys("scoring", scoring, {"recompute_seconds", "min_score", "high_risk_tools"})
    recompute_seconds = _positive(
        "scoring", "recompute_seconds", _get(scoring, "scoring", "recompute_seconds", "a number", 60.0)
    )
    min_score = _in_range("scoring", "min_score", _get(scoring, "scoring", "min_score", "an integer", 0), 0, 1000)
    tools = _get(scoring, "scoring", "high_risk_tools", "a list", None)
    if tools is not None and not all(isinstance(t, str) and words(t) for t in tools):
        raise ConfigError("scoring.high_risk_tools: must be a list of tool names, each with a letter or a digit")

    limits_table = _table(doc, "limits")
    defaults = Limits()
    _known_keys("limits", limits_table, {f.name for f in fields(Limits)})
    limit_values = {}
    for f in fields(Limits):
        kind = "a number" if isinstance(getattr(defaults, f.name), float) else "an integer"
        limit_values[f.name] = _positive("limits", f.name,
                                         _get(limits_table, "limits", f.name, kind, getattr(defaults, f.name)))
    if limit_values["gossip_batch_bytes"] > MAX_GOSSIP_MESSAGE:  # the publish of such a batch failed, stopping the node
        raise ConfigError(f"limits.gossip_batch_bytes: must be at most {MAX_GOSSIP_MESSAGE}, the largest gossip "
                          "message a node takes (its peers reject larger ones), "
                          f"got {limit_values['gossip_batch_bytes']}")

    return NodeConfig(
        data_dir=data_dir,
        name=name,
        network=network,
        listen=listen,
        announce=announce,
        bootstrap=bootstrap,
        dial_private=dial_private,
        roots=roots,
        max_hops=max_hops,
        api_host=api_host,
        api_port=api_port,
        public_url=public_url,
        hosts=hosts,
        traces_need_token=traces_need_token,
        checkpoint_interval=float(checkpoint_interval),
        checkpoint_gossip_interval=float(gossip_interval),
        fork_window=float(fork_window),
        witnesses=witnesses,
        sync_interval=float(sync_interval),
        sync_peers=sync_peers,
        startup_sync_seconds=float(startup_sync),
        verify_processes=verify_processes,
        epoch_seconds=float(epoch_seconds),
        retention_days=float(retention_days),
        dp_epsilon=None if dp_epsilon is None else float(dp_epsilon),
        recompute_seconds=float(recompute_seconds),
        min_score=min_score,
        high_risk_tools=None if tools is None else tuple(tools),
        limits=Limits(**limit_values),
    )


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def _toml_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(_toml_string(v) for v in values) + "]"


def render_template(
    *,
    name: str = NodeConfig.name,
    network: str,
    listen: tuple[str, ...],
    api: str,
    bootstrap: tuple[str, ...],
    roots: tuple[str, ...],
    epoch_seconds: float = NodeConfig.epoch_seconds,
) -> str:
    """The commented `config.toml` that `vouchnet init` writes."""
    host, _ = parse_api_bind(api)
    exposure = "" if is_loopback(host) else "# WARNING: this API address is reachable from other machines.\n"
    d, lim = NodeConfig(data_dir=Path(".")), Limits()
    return f"""\
# vouchnet node configuration. Edit, then restart the node (`vouchnet run --dir DIR`).
# The org key (org.key) and the API token (api.token) live beside this file; keep both private.

# The format of this file, for the vouchnet reading it: keep it as written.
format = {CONFIG_FORMAT}

# Your org's display name, published in its `org` record.
name = {_toml_string(name)}
# Which vouchnet network to join: gossip topics and sync are per network.
network = "{network}"

[p2p]
# libp2p multiaddrs to listen on (TCP; peers connect with Noise + yamux).
listen = {_toml_list(listen)}
# Addresses other orgs should dial, published in the `org` record (default: the listen addresses that are
# not wildcards such as 0.0.0.0). Set this to your public address when behind NAT or listening on 0.0.0.0:
# /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>. Not a DNS name: nodes do not resolve names that org
# records give (any org could have every node look up names of its choosing).
announce = []
# Peers to dial at start, e.g. "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW..." (or /ip6) or, by name,
# "/dns4/boot.example.org/tcp/4001/p2p/12D3KooW...". A name is looked up through the system's resolver at every
# dial: /dns4 takes its IPv4 addresses, /dns6 its IPv6 ones, /dns both; /dnsaddr (TXT records) is not supported.
bootstrap = {_toml_list(bootstrap)}
# Which of the addresses that are not public, named by other orgs' `org` records, the node dials: loopback,
# private (10/8, 172.16/12, 192.168/16, fc00::/7), shared (100.64/10), link-local (169.254/16, fe80::/10) and
# reserved ones (any org may name your SSH port on 127.0.0.1, or a cloud's metadata service at 169.254.169.254).
# "auto": those of the kinds this node's own `org` record names (the announce addresses, else the listen addresses
# but wildcards) or its bootstrap peers' IP addresses are: a testnet on loopback dials loopback, a node announcing
# a LAN address or bootstrapped from one private ones, a node announcing a public address (or none) with public
# bootstrap peers none of them. "always": all; "never": none. Public addresses are always dialled, and so are
# bootstrap peers.
dial_private = "{d.dial_private}"
# Seconds (give or take a quarter) between anti-entropy rounds, each a catch-up sync with `sync_peers`
# connected peers picked at random, not one whose log (as its gossiped checkpoints show) did not grow since the
# last round with it, until 20 intervals passed. A node also syncs with a peer as soon as it connects, unless a
# round with it started less than sync_interval ago. A node that gossiped no checkpoint for sync_interval gossips
# its latest again, unchanged (3 times at most after each new one), so a peer that missed it (and a record) learns
# its size within an interval and pulls the record at its next round.
sync_interval = {d.sync_interval}
sync_peers = {d.sync_peers}
# At start, before it signs anything, the node waits up to this many seconds for a catch-up sync with one of the
# peers it dials that holds the org's records to bring them in (if it has any to dial; a peer that dialled in unasked
# does not count, nor one whose horizon leaves the org out: a peer whose org vouches for this one holds them): a node
# whose data directory was restored from an older copy must learn the records it signed since, or it would sign a
# second record at one seq and be flagged as an equivocator. A round asks for the org's records first and the wait
# ends once they are in, the rest of the round going on after. A new org (its data directory holds none of its
# records) waits for the heads of any peer it dials to name none of its keys. It waits less once none of those peers
# can be connected for a sync before then (each one's last dial failed or found it on another network, and none is
# dialled again in time, or it is connected but refused /vouchnet/sync/1, a gossip-only node: unreachable, its log
# naming each with why and saying how long it waited), or once each has completed a round holding none of the org's
# records, or cannot be connected (unheld). If none does in time it signs without it, saying why
# (GET /v1/node's startup_sync is timed_out or unreachable, vouchnet_startup_sync_timed_out 1; or unheld,
# vouchnet_startup_sync_unheld 1, if the peers whose rounds ended hold none of the org's records, as for an org no
# other org vouches for yet), until a later round ends it as it would have ended the start's (timed_out and
# unreachable turn unheld at a round with a peer that holds none of them); `vouchnet key rotate` waits as long, and
# then refuses to sign.
startup_sync_seconds = {d.startup_sync_seconds}
# Worker processes that check the signatures of records fetched by catch-up sync; 0 checks them on the node's
# own thread. On a machine with a core to spare, 1 takes half the catch-up work off the node (benchmarks/sync.py).
verify_processes = {d.verify_processes}

[trust]
# Orgs this node trusts directly (their did:key); your own org is always a root.
roots = {_toml_list(roots)}
# Replicate and count records of orgs at most this many vouch hops from the roots.
max_hops = {d.max_hops}

[api]
# The local HTTP API. Writes need the bearer token in api.token.
{exposure}bind = "{api}"
# The URL other orgs reach this API at (through your proxy, say), written into the agent and vouch credentials
# this org issues so that verifiers can fetch its revocation lists (/v1/credentials/status/N and
# /v1/credentials/vouch-status/DID/N). Empty: the bind address.
public_url = ""
# Host names the API answers to besides an IP address, localhost, bind's name and public_url's host, such as
# ["vouchnet.internal"]: a request whose Host names another is refused (403 forbidden_host), whatever address it
# reached (in a container too), so that a web page on a name its owner points at this node (DNS rebinding) reads
# nothing and sends nothing. Names only (no scheme, port or path). ["*"] answers any Host: UNSAFE, any web page
# its visitor's browser can reach this node from can then read it and send it open writes.
hosts = []
# OTLP trace export (POST /v1/traces) is a write like any other: exporters send the token with
# OTEL_EXPORTER_OTLP_TRACES_HEADERS="Authorization=Bearer <api.token>". Set this to false to take spans from any
# process that reaches the API (then any of them can report behaviour, denials included, for any agent).
traces_need_token = true

[witness]
# Seconds between checkpoints of the ledger (published only when it changed).
checkpoint_interval = {d.checkpoint_interval}
# Peers asked to cosign each checkpoint (1-{MAX_COSIGNATURES}): the trust roots first, then others in an order
# of this node's own. Every node still checks every gossiped checkpoint for forks; each witness costs CPU.
witnesses = {d.witnesses}
# Least seconds between publications of our checkpoint to every node (gossip; each costs every node CPU). In a
# network of more orgs than this many, the period stretches to one second per org heard from. An unchanged one is
# gossiped again each [p2p] sync_interval, 3 times at most (nodes holding it ignore it and relay nothing).
gossip_interval = {d.checkpoint_gossip_interval}
# Seconds each gossiped checkpoint of another org is remembered, to catch a second root at its size (a fork). An
# org's checkpoints are taken in at most one a second, about 120 bytes each: up to 73 KB an org at 600 s. A fork
# whose halves come further apart is left to the witnesses, which cosign nothing inconsistent with what they did.
fork_window = {d.fork_window}

[telemetry]
# Length of a behaviour-digest epoch in seconds (at least 1). The node's own observations of an agent in an epoch
# also make at most one bad report, as its digest of the epoch does at its peers (of epochs shorter than an hour, the
# scoring's cap window, those in one hour make one together).
epoch_seconds = {epoch_seconds!r}
# Raw telemetry events older than this are pruned to their hashes (by the time the node has seen while its clock is
# over a day ahead of it, for a day across restarts, in case it is a wrong step; vouchnet_clock_held is 1 meanwhile;
# by the clock while it is behind the latest event's time).
retention_days = {d.retention_days}
# Differential-privacy epsilon for digest counts (about 1.2e-16 to 1490; smaller hides more); leave unset for exact
# counts.
# dp_epsilon = 1.0

[scoring]
# Seconds between full recomputes of org reputation, credibility and every agent's score.
recompute_seconds = {d.recompute_seconds}
# Checks (POST /v1/agents/DID/check) block any agent scoring below this, whatever its tier.
min_score = {d.min_score}
# Tools that need an agent of tier `trusted` or better, matched by words: "shell" makes run_shell, shell:run and
# runShell high-risk, "send_email" makes sendEmail so (vouching.policy.Policy); unset: shell, exec, deploy,
# payment, payments, transfer, email, sms, delete, database-write, secrets, iam. Services using the SDK apply these
# too.
# high_risk_tools = ["shell", "deploy", "payments", "email"]

[limits]
# Peers this node dials and stays connected to, at most (a quarter of them at most of the orgs one org brought into
# the horizon, bootstrap peers aside); as many again (4 at least) may dial in. A peer that dials in and within 10 s
# neither subscribes to gossip nor opens a vouchnet stream is disconnected, sooner if another peer dials in to a full
# node (not a bootstrap peer, nor an org whose org record this node holds or inside its
# horizon): peers that connect and idle hold no place.
max_peers = {lim.max_peers}
# Largest gossip message in bytes, at most {MAX_GOSSIP_MESSAGE} (records are batched up to this size).
gossip_batch_bytes = {lim.gossip_batch_bytes}
# Gossip messages a peer may forward to this node per second; beyond it they are dropped, without a penalty.
peer_messages_per_second = {lim.peer_messages_per_second}
# Gossip bytes a peer may forward to this node per second; beyond it they are dropped, without a penalty.
peer_bytes_per_second = {lim.peer_bytes_per_second}
# Records of one org per second; beyond it they are dropped, and the org's own node is penalised for sending them.
org_records_per_second = {lim.org_records_per_second}
# Checkpoints a peer may forward to this node per second (the whole network gossips about one a second); beyond
# it they are dropped unread, without a penalty.
peer_checkpoints_per_second = {lim.peer_checkpoints_per_second}
# Records waiting for a missing predecessor, at most, shared evenly among their issuers once full.
held_records = {lim.held_records}
# Records per page of catch-up sync, at most: in the pages this node asks its peers for and in those it serves.
sync_page_records = {lim.sync_page_records}
"""
