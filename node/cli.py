"""The `vouchnet` command line: one subcommand per operator task.

cli.py is the parser and the dispatch; each command lives in a module with `register(subparsers)` (cli_commands.py
lists them), imported only when that command runs, so that a command that asks the node's API, run every few
seconds by a health check, does not load the node, py-libp2p or the testnet; `vouchnet --help` (or a mistyped
command) imports none of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
import typing
import warnings

from node.cli_commands import COMMANDS, no_command

# The first steps --help shows: the README's quick start.
_FIRST_STEPS = [
    "vouchnet demo                  # a record signed, logged and proved, without a node",
    "vouchnet init --name 'Acme Agents' && vouchnet run",
    "vouchnet status",
    "vouchnet vouch did:key:z6Mk... --weight 0.9 --basis operator",
    "vouchnet score did:key:z6Mk...",
]


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked (importlib.metadata is slow to
    import and read)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("vouchnet")
        except PackageNotFoundError:  # running from a source checkout that is not installed
            found = "0+source"
        print(f"vouchnet {found}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser (and, through add_subparsers, each command's) whose help, usage and version, written to
    stdout, are flushed there and fail as any command's output does when they cannot be (a full disk, a closed
    pipe): argparse drops the OSError, so `vouchnet --help > /dev/full` wrote nothing and exited 0. On stderr,
    where nothing could say that it failed, they are dropped as before."""

    def _print_message(self, message: str, file: typing.IO[str] | None = None) -> None:
        if file not in (None, sys.stdout):
            super()._print_message(message, file)
        elif message:
            sys.stdout.write(message)
            sys.stdout.flush()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of `command` alone when it is one of COMMANDS (the other commands' modules are not imported), else
    of every command."""
    parser, subparsers = _program_parser()
    modules = [COMMANDS[command].module] if command in COMMANDS else dict.fromkeys(c.module for c in COMMANDS.values())
    for module in modules:
        importlib.import_module(module).register(subparsers)
    return parser


def _listing_parser() -> argparse.ArgumentParser:
    """`vouchnet`'s parser, its commands listed as build_parser lists them but none of their modules imported (0.5 s
    or more): each command a parser of no options, not even -h, which takes whatever follows it. Enough for
    `vouchnet --help`, `--version`, no command or a mistyped one; a command it parses is to be parsed again by its
    own parser."""
    parser, subparsers = _program_parser()
    for name, command in COMMANDS.items():
        subparsers.add_parser(name, help=command.summary, add_help=False)
    return parser


def _program_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """`vouchnet`'s parser, and the subparsers its commands are to be added to."""
    parser = _Parser(
        prog="vouchnet",
        description="A federated, peer-to-peer trust network for AI agents.",
        epilog="examples (a node in ~/.vouchnet, or --dir DIR, or $VOUCHNET_DIR):\n"
        + "\n".join(f"  {example}" for example in _FIRST_STEPS) + "\n\n"
        + textwrap.fill("Exit status: 0 done, 1 the node failed or refused, 2 a usage error (a bad argument, no "
                        "command, which prints the help, or a file or directory that cannot be read or written, the "
                        "output included). "
                        "`vouchnet COMMAND --help` explains each command, with examples.", 80),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the examples' lines as written
    )
    parser.add_argument("--version", action=_Version)
    return parser, parser.add_subparsers(dest="command", metavar="COMMAND")


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # Ctrl-C, also while the command's modules load (a traceback of an import, before)
        # Tasks an interrupted trio run had yet to start are collected as Python exits, each with a "coroutine ...
        # was never awaited" warning, after the command said what the interruption left
        warnings.filterwarnings("ignore", message=r"coroutine .* was never awaited", category=RuntimeWarning)
        return 130


def _run(argv: list[str]) -> int:
    try:
        parser, args = _parsed(argv)
    except SystemExit as stop:  # argparse exits 2 on a usage error, 0 after --help or --version
        return _finished("vouchnet", stop.code if isinstance(stop.code, int) else 2)
    except OSError as e:  # --help or --version written to a full disk, or to a pipe its reader closed
        return _stdout_failed("vouchnet", e)
    if args.command is None:
        return no_command(parser)
    from node.client import ClientError, NodeApiError, NodeUnreachable  # here: a Ctrl-C while these load is main's
    from node.commands.common import NO_ANSWER_CAUSES, CommandFailed, UsageError, os_error_text, refused_token_hint

    name = getattr(args, "command_name", f"vouchnet {args.command}")
    try:
        return _finished(name, args.func(args))
    except UsageError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except (ClientError, CommandFailed) as e:
        print(f"{name}: {_shown(e)}", file=sys.stderr)
        if isinstance(e, NodeUnreachable) and e.timed_out:
            print(NO_ANSWER_CAUSES, file=sys.stderr)
        elif isinstance(e, NodeApiError) and e.status == 401 and (hint := refused_token_hint(args)) is not None:
            print(hint, file=sys.stderr)
        return 1
    except BrokenPipeError as e:  # `vouchnet records | head`: the reader has all it wants
        return _stdout_failed(name, e)
    except OSError as e:  # a --dir, --out, --cache or --token-file the file system refuses, or stdout: name it
        print(f"{name}: {os_error_text(e)}", file=sys.stderr)
        _flush_or_drop_stdout()
        return 2


def _parsed(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser of the command `argv` names, and the arguments it parsed; SystemExit as argparse exits. Words after
    the command unknown to it are refused by the (sub)command they were given to, with its usage, not by
    `vouchnet`'s."""
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(command) if command is not None else _listing_parser()
    args, unrecognized = parser.parse_known_args(argv)
    if command is None and args.command is not None:  # a command after words `vouchnet` refuses (`vouchnet -x key`)
        parser = build_parser(args.command)
        args, unrecognized = parser.parse_known_args(argv)
    if unrecognized:
        _command_parser(parser, argv).error(f"unrecognized arguments: {' '.join(unrecognized)}")
    return parser, args


def _finished(name: str, code: int) -> int:
    """`code`, the exit status of `name`, once what it wrote to stdout and is still buffered is written; else as
    _stdout_failed says, keeping a failure's status."""
    error = _flush_or_drop_stdout()
    return code if error is None else _stdout_failed(name, error, code)


def _stdout_failed(name: str, error: OSError, code: int = 0) -> int:
    """The exit status of `name` when stdout could not be written: 141 if its reader closed it (128 + SIGPIPE, as a
    shell reports a command that SIGPIPE stopped: `vouchnet records | head`, the reader has all it wants), else 2
    (or the failure's `code`), saying why on stderr, as for any file (a full disk). What stdout holds is dropped."""
    from node.commands.common import os_error_text

    _drop_stdout()
    if isinstance(error, BrokenPipeError):
        return 141
    print(f"{name}: {os_error_text(error)}", file=sys.stderr)
    return code or 2


def _flush_or_drop_stdout() -> OSError | None:
    """Flush stdout; if it cannot be, drop what it holds (else Python's exit flushes it again, fails, says so in a
    line of its own and exits 120) and return why."""
    try:
        sys.stdout.flush()
    except OSError as error:
        _drop_stdout()
        return error
    return None


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that nothing more, Python's flush at exit included, is written where it failed."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the innermost command `argv` names (`log verify`'s for `vouchnet log verify ...`)."""
    for word in argv:
        commands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        if commands and word in commands[0].choices:
            parser = commands[0].choices[word]
    return parser


def _shown(error: Exception) -> str:
    """The error's text, each line's unprintable characters escaped: it may quote whatever answered at the node's
    address, and a terminal obeys escape sequences (clear the screen, retitle the window)."""
    from vouching.schema import escaped

    return "\n".join(escaped(line) for line in str(error).split("\n"))


if __name__ == "__main__":
    sys.exit(main())
