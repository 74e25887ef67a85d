"""Commands that run here rather than ask a running node: `init`, `run` and `demo`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from node.cli_commands import summary_of
from node.config import CONFIG_FILE, DEFAULT_API, DEFAULT_LISTEN, ConfigError, NodeConfig, default_data_dir
from node.keys import KeyFileError
from node.strict_modes import TooOpen
from vouching.bodies import NETWORK_RULE

from .common import Subparsers, UsageError, add_dir_option, add_local_command, local_config, org_did_argument
from .node_code import run_node_code


def register(subparsers: Subparsers) -> None:
    init = add_local_command(
        subparsers,
        "init",
        run=_init,
        summary=summary_of("init"),
        description="Create a data directory for a new node: the org's Ed25519 key (org.key, mode 0600; the "
        "org's did:key is derived from it), the local API's bearer token (api.token, mode 0600) and a commented "
        "config.toml, written last. Refuses to touch a directory that already holds a node (a config.toml), or one "
        "there already that `vouchnet run` would refuse: writable by group or others, or owned by a user other than "
        "the one it runs as and root (`sudo vouchnet init` in a service user's directory). One an init cut short "
        "(killed, a power cut) is finished, with the key it made.",
        examples=[
            "vouchnet init",
            "vouchnet init --dir ./alice --network demo --listen /ip4/127.0.0.1/tcp/4001 --api 127.0.0.1:8701 \\\n"
            "      --epoch-seconds 30",
            "vouchnet init --dir ./bob --network demo --listen /ip4/127.0.0.1/tcp/4002 --api 127.0.0.1:8702 \\\n"
            "      --epoch-seconds 30 --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW... --root did:key:z6Mk...",
        ],
    )
    add_dir_option(init)
    init.add_argument("--name", default="vouchnet node", help="your org's display name (default: %(default)s)")
    init.add_argument("--network", default="vouchnet",
                      help="the name of the network to join: gossip topics and checkpoints are per network, so the "
                      f"orgs that mean to trust each other agree on one name: {NETWORK_RULE} (default: %(default)s)")
    init.add_argument("--listen", action="append", metavar="MULTIADDR",
                      help=f"libp2p address to listen on, repeatable (default: {DEFAULT_LISTEN})")
    init.add_argument("--api", default=DEFAULT_API, metavar="HOST:PORT",
                      help="where the local HTTP API listens: HOST an IP address in full (127.0.0.1, [::1]) or a host "
                      "name, one the API then answers to (as [api] hosts in config.toml) (default: %(default)s)")
    init.add_argument("--bootstrap", action="append", default=[], metavar="MULTIADDR",
                      help="a peer to dial at start, ending in /p2p/<peer id>; repeatable")
    init.add_argument("--root", action="append", default=[], metavar="DID", type=org_did_argument,
                      help="an org you trust directly (its did:key); repeatable")
    init.add_argument("--epoch-seconds", type=float, default=NodeConfig.epoch_seconds, metavar="SECONDS",
                      help="the length of a behaviour-digest epoch ([telemetry] epoch_seconds): at the end of each the "
                      "node signs a digest of each agent its services reported, and only then do other orgs learn of "
                      "it; at least 1: 30, say, for a demo whose digests reach peers within a minute "
                      "(default: %(default)g)")

    run = add_local_command(
        subparsers,
        "run",
        run=_run,
        summary=summary_of("run"),
        description="Start the node in a data directory made by `vouchnet init`: the libp2p host, gossip, "
        "catch-up sync, witnessing, peer management and the local HTTP API. Logs (logfmt) go to stderr. "
        "SIGINT or SIGTERM shuts it down cleanly within 2 seconds. A start that takes back from its peers a "
        "rotation of the org key (the org's own, from before its data directory was restored from an older copy, or "
        "a thief's) signs nothing and stops, naming it, until `vouchnet key adopt` or `key contest` decides it.",
        examples=["vouchnet run", "vouchnet run --dir ./alice --log-level debug"],
    )
    add_dir_option(run)
    run.add_argument("--log-level", default="info", choices=["debug", "debug:all", "info", "warning", "error"],
                     help="the least severe log level to print: debug is vouchnet's own debug lines, the libraries' "
                     "from info (debug:all: theirs too, py-multiaddr's for every address it parses; py-libp2p's "
                     "stay at warning) (default: %(default)s)")

    add_local_command(
        subparsers,
        "demo",
        run=_demo,
        summary=summary_of("demo"),
        description="Sign a vouch, append it to a throwaway ledger, sign a checkpoint, and verify an inclusion "
        "proof and a consistency proof against it. Touches nothing outside a temporary directory.",
        examples=["vouchnet demo"],
    )


def _init(args: argparse.Namespace) -> int:
    from node.setup import init_data_dir

    data_dir = args.dir or default_data_dir()
    try:
        made = init_data_dir(
            data_dir, name=args.name, network=args.network, listen=tuple(args.listen or [DEFAULT_LISTEN]),
            api=args.api, bootstrap=tuple(args.bootstrap), roots=tuple(args.root), epoch_seconds=args.epoch_seconds,
        )
    except ConfigError as e:
        raise UsageError(_by_option(e, data_dir / CONFIG_FILE)) from None
    except (KeyFileError, TooOpen) as e:
        raise UsageError(str(e)) from None
    if made.kept_key:
        print(f"finished {made.data_dir}, an init cut short: it keeps the org key that init made")
    else:
        print(f"created {made.data_dir}")
    print(f"org did  {made.did}")
    print(f"start it with: vouchnet run --dir {made.data_dir}")
    return 0


# The config.toml keys that init's options give, by which its refusals name them: that file is not written yet.
_INIT_OPTIONS = {"name": "--name", "network": "--network", "p2p.listen": "--listen", "api.bind": "--api",
                 "p2p.bootstrap": "--bootstrap", "trust.roots": "--root", "telemetry.epoch_seconds": "--epoch-seconds"}


def _by_option(error: ConfigError, config_path: Path) -> str:
    """`error`, of the config init would write, naming the option that gave the value rather than config.toml."""
    message = str(error).removeprefix(f"{config_path}: ")
    key, colon, rule = message.partition(": ")
    return f"{_INIT_OPTIONS[key]}: {rule}" if colon and key in _INIT_OPTIONS else message


def _run(args: argparse.Namespace) -> int:
    from node.logs import configure_logging

    config = local_config(args)

    def setup() -> None:
        level, _, libraries = args.log_level.partition(":")
        configure_logging(getattr(logging, level.upper()), libraries_debug=libraries == "all")
        # Said before py-libp2p and FastAPI load (_until_signalled's imports): 3 s on an idle machine, 10-20 s on a
        # loaded one, in which a start that printed nothing looked hung.
        logging.getLogger("vouchnet.node").info("starting: loading the node's libraries",
                                                extra={"fields": {"dir": config.data_dir}})

    run_node_code(config, _until_signalled, setup=setup)
    return 0


async def _until_signalled(config: NodeConfig) -> None:
    """node.daemon.run_until_signalled, its limit on open files raised first, its stop bounded (node.stop_deadline:
    this process is the node's); imported once `run` has said that it starts."""
    from node.daemon import run_until_signalled
    from node.open_files import raise_open_files_limit
    from node.stop_deadline import STOP_CUT_SECONDS, StopDeadline

    raise_open_files_limit(config.limits.max_peers)
    await run_until_signalled(config, stop_deadline=StopDeadline(STOP_CUT_SECONDS))


def _demo(args: argparse.Namespace) -> int:
    from node.demo import run_demo

    run_demo()
    return 0
