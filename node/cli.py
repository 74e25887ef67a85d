"""The `vouchnet` command line: one subcommand per operator task."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version


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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="sign a record, log it, and prove it (no node needed)",
        description="Sign a vouch, append it to a throwaway ledger, sign a checkpoint, and verify an inclusion "
        "proof and a consistency proof against it. Touches nothing outside a temporary directory.",
    )
    demo.set_defaults(func=_demo)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
