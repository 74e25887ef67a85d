"""The `vouchnet` command line: one subcommand per operator task."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from testnet.sim import cli as sim


def _version() -> str:
    try:
        return version("vouchnet")
    except PackageNotFoundError:  # running from a source checkout that is not installed
        return "0+source"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vouchnet",
        description="A federated, peer-to-peer trust network for AI agents.",
    )
    parser.add_argument("--version", action="version", version=f"vouchnet {_version()}")
    sim.register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
