"""The `vouchnet` command line: one subcommand per operator task.

cli.py is the parser and the dispatch; each command lives in a module with `register(subparsers)`.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, version

from node.client import ClientError
from node.commands import agents, audit, key, local, log, records, scores, status, vouches
from node.commands.common import CommandFailed, UsageError, os_error_text
from testnet import cli as testnet
from testnet.sim import cli as sim

# Modules with `register(subparsers)`, in the order --help lists them.
COMMANDS = [local, status, vouches, records, scores, log, agents, key, audit, sim, testnet]
# The first steps --help shows: the README's quick start.
_FIRST_STEPS = [
    "vouchnet demo                  # a record signed, logged and proved, without a node",
    "vouchnet init --name 'Acme Agents' && vouchnet run",
    "vouchnet status",
    "vouchnet vouch did:key:z6Mk... --weight 0.9 --basis operator",
    "vouchnet score did:key:z6Mk...",
]


def _version() -> str:
    try:
        return version("vouchnet")
    except PackageNotFoundError:  # running from a source checkout that is not installed
        return "0+source"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vouchnet",
        description="A federated, peer-to-peer trust network for AI agents.",
        epilog="examples (a node in ~/.vouchnet, or --dir DIR, or $VOUCHNET_DIR):\n"
        + "\n".join(f"  {example}" for example in _FIRST_STEPS) + "\n\n"
        + textwrap.fill("Exit status: 0 done, 1 the node failed or refused, 2 a usage error (a bad argument, or a "
                        "file or directory that cannot be read or written). `vouchnet COMMAND --help` explains "
                        "each command, with examples.", 80),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the examples' lines as written
    )
    parser.add_argument("--version", action="version", version=f"vouchnet {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse exits 2 on a usage error, 0 after --help
        return stop.code if isinstance(stop.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 0
    name = getattr(args, "command_name", f"vouchnet {args.command}")
    try:
        return args.func(args)
    except UsageError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except (ClientError, CommandFailed) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `vouchnet records | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that exit does not flush into it
        return 141  # 128 + SIGPIPE, as a shell reports a command that SIGPIPE stopped
    except OSError as e:  # a --dir, --out, --cache or --token-file the file system refuses: name it, no traceback
        print(f"{name}: {os_error_text(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
