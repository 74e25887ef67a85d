"""The `vouchnet` commands: each one's module, whose `register(subparsers)` adds it, and its summary, which that
`register` gives it and `vouchnet --help` lists (node.cli builds that help from this table, importing no command's
module: they load the node's stores, an HTTP client or the testnet, 0.5 s or more); and what `vouchnet` or a command
group does given no command."""

from __future__ import annotations

import argparse
import sys
from typing import NamedTuple


class Command(NamedTuple):
    module: str
    summary: str


# In the order --help lists them
COMMANDS = {
    "init": Command("node.commands.local", "create a node's data directory: org key, API token, config.toml"),
    "run": Command("node.commands.local", "start the node and serve until SIGINT or SIGTERM"),
    "demo": Command("node.commands.local", "sign a record, log it, and prove it (no node needed)"),
    "status": Command("node.commands.status",
                      "show the running node: its org did, network, addresses and what it holds"),
    "peers": Command("node.commands.status",
                     "list the peers the node is connected to, and those it cannot reach and why"),
    "own-records": Command("node.commands.own_records",
                           "records of the org's key that came from peers, and acknowledging them"),
    "vouch": Command("node.commands.vouches", "vouch for an agent (or, with --basis org-peer, an org) as this org"),
    "revoke": Command("node.commands.vouches", "revoke one of this org's vouches"),
    "records": Command("node.commands.records", "list the records the node holds, oldest first"),
    "score": Command("node.commands.scores", "show an agent's trust score from this node's point of view, explained"),
    "orgs": Command("node.commands.scores",
                    "list the orgs this node knows, with their reputation and why, or show one"),
    "log": Command("node.commands.log",
                   "the node's records ledger as a transparency log: its checkpoint, a full re-check, a repair"),
    "agent": Command("node.commands.agents", "mint agent keys and their credentials"),
    "key": Command("node.commands.key", "the org key"),
    "audit": Command("node.commands.audit", "export an agent's raw events for an auditor, or check an export"),
    "stores": Command("node.commands.stores", "the stores of the data directory"),
    "sim": Command("testnet.sim.cli", "run the in-process trust simulation and check the scoring targets"),
    "testnet": Command("testnet.cli", "run a network of nodes on this machine, attack it, and report what happened"),
}


def summary_of(name: str) -> str:
    """The one line `vouchnet --help` says of command `name`."""
    return COMMANDS[name].summary


def no_command(parser: argparse.ArgumentParser) -> int:
    """`vouchnet` or a command group given no subcommand: its help, on stderr, and exit 2, a usage error, as argparse
    exits for a required subcommand missing and click for a group given none (its help then, too)."""
    parser.print_help(sys.stderr)
    return 2
