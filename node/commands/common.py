"""What every node command shares: how it is declared (help that teaches by example), how it finds the node
(`--dir` or `--api` with `--token-file`), how it fails (exit 2 for usage, 1 for the node), and JSON output.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from node.address_file import API_URL_FILE, ApiUrlFileError, read_api_url
from node.cli_commands import no_command
from node.client import NodeClient
from node.client._http import normal_url
from node.config import (DIR_ENV, ConfigError, NodeConfig, connectable_host, default_data_dir, host_fault,
                         load_config)
from node.keys import KeyFileError, load_org_key, load_token
from node.strict_modes import TooOpen, check_strict_modes
from vouching import InvalidDid, did_key, public_key_from_did
from vouching.identity import is_compact_jwt, meant_as_did

_WIDTH = 100  # of a command's description in its --help
_RECORD_ID = re.compile(r"[0-9a-fA-F]{64}")  # as the API takes one (node.api.records)

Subparsers = argparse._SubParsersAction  # what `add_subparsers` returns; argparse names it privately

# Said after a node's answer that did not come in time, its two causes (README, What `run` runs): the client cannot
# tell a node starting, which answers once its catch-up sync ended, from one that is running but does not answer.
NO_ANSWER_CAUSES = ("  a node starting answers once its catch-up sync with its peers has ended, up to [p2p] "
                    "startup_sync_seconds after it began (its log says `node running` then); try again then\n"
                    "  a node running (its log said `node running`) that does not answer is stopped (SIGSTOP, a "
                    "debugger) or overloaded")


def refused_token_hint(args: argparse.Namespace) -> str | None:
    """Said after the node refused the token a write sent (401): where that token came from, and what to do; None for
    a command given no token (--token-file) nor a node's data directory to take it from (`testnet`, whose nodes'
    tokens it keeps itself)."""
    if not hasattr(args, "token_file"):
        return None
    if args.token_file is not None:
        return (f"  {args.token_file} holds another token than the node's: give --token-file the api.token in the "
                "node's data directory (or --dir that directory, on the node's machine)")
    token_file = (args.dir or default_data_dir()) / "api.token"
    return (f"  {token_file} holds another token than the node answering takes: it was replaced just then (run the "
            "command again), or another node of this org, with a data directory of its own, answers at its address")


class UsageError(Exception):
    """The command cannot run as invoked: a bad argument, or no usable data directory or token (exit 2)."""


class CommandFailed(Exception):
    """The node answered and the answer fails the command, e.g. a log that does not verify (exit 1)."""


def add_local_command(
    subparsers: Subparsers,
    name: str,
    *,
    summary: str,
    description: str,
    examples: list[str],
    run: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does and shows examples; `run(args)` returns the exit code."""
    parser = _add_parser(subparsers, name, summary=summary, description=description, examples=examples)
    parser.set_defaults(func=run, command_name=parser.prog)  # "vouchnet key rotate": what an error names
    return parser


def add_command_group(
    subparsers: Subparsers, name: str, *, summary: str, description: str, examples: list[str]
) -> Subparsers:
    """A command made of subcommands (`vouchnet key rotate`), whose --help lists them and shows examples, and which,
    given none, prints that help as a usage error (no_command); returns the subparsers to add them to."""
    parser = _add_parser(subparsers, name, summary=summary, description=description, examples=examples)
    commands = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    # (a subcommand's defaults replace these)
    parser.set_defaults(func=lambda args: no_command(parser), command_name=parser.prog)
    return commands


def _add_parser(
    subparsers: Subparsers, name: str, *, summary: str, description: str, examples: list[str]
) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, _WIDTH, break_on_hyphens=False),  # (a name, sybil-collusion, whole)
        epilog="examples:\n" + "\n".join(f"  {example}" for example in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the examples' lines as written
    )


def add_command(
    subparsers: Subparsers,
    name: str,
    *,
    summary: str,
    description: str,
    examples: list[str],
    run: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """A subcommand that talks to a running node (`--dir`, or `--api` with `--token-file`)."""
    parser = add_local_command(subparsers, name, summary=summary, description=description, examples=examples, run=run)
    _add_connection_options(parser)
    return parser


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("finding the node")
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--dir",
        type=Path,
        help=f"the node's data directory: its config.toml gives the API address, api.token the token "
        f"(default: ${DIR_ENV}, else ~/.vouchnet)",
    )
    where.add_argument("--api", metavar="URL", type=api_url,
                       help="the node's API address (no endpoint's path), e.g. http://127.0.0.1:8700")
    group.add_argument("--token-file", type=Path, metavar="FILE", help="the API token, for commands that write")


def add_dir_option(parser: argparse.ArgumentParser) -> None:
    """`--dir`, for commands that work on a node's data directory on this machine rather than through its API."""
    parser.add_argument("--dir", type=Path, help=f"the node's data directory (default: ${DIR_ENV}, else ~/.vouchnet)")


def local_config(args: argparse.Namespace) -> NodeConfig:
    """The config of the data directory `--dir` names (or the default one), for a command that works on it on this
    machine (it writes there, or signs with its key); raises UsageError, also for a directory `vouchnet run` refuses,
    in its words (node.strict_modes): run as root in a user's directory, `agent list` left a credentials.db and a
    stores.list the node, run as that user, could not write or read."""
    try:
        config = load_config(args.dir or default_data_dir())
        check_strict_modes(config.data_dir)
    except (ConfigError, TooOpen) as e:
        raise UsageError(str(e)) from None
    return config


def os_error_text(error: OSError) -> str:
    """What the file system refused, as one line naming the path: `alice: Is a directory`."""
    if error.filename is None:
        return error.strerror or str(error)
    return f"{error.filename}: {error.strerror}"


def is_record_id(text: str) -> bool:
    """Whether `text` is a record id, 64 hex digits in either case, as the API takes one."""
    return _RECORD_ID.fullmatch(text) is not None


# The API's paths by their first segment, each with the second segments that follow it (tests/node/
# test_cli_commands.py holds them to README's API table, which tests/node/test_readme.py holds to the paths served)
_API_PATHS = {
    "v1": frozenset({"agents", "credentials", "events", "log", "node", "orgs", "peers", "policy", "records",
                     "revocations", "stream", "traces", "vouches"}),
    "healthz": frozenset(), "metrics": frozenset(), "openapi.json": frozenset(),
    ".well-known": frozenset({"jwks.json"}),
}


def _names_endpoint(path: str) -> bool:
    """Whether a URL's `path` names one of the API's endpoints, or the start of one (`/v1`), behind a proxy's path
    prefix or not: from one of its segments on, it begins as an API path does. A prefix that holds one of the API's
    first segments but goes on otherwise (`/api/v1/vouchnet`, `/metrics/vouchnet`) names none."""
    segments = [segment for segment in path.split("/") if segment]
    return any(segment in _API_PATHS and (i + 1 == len(segments) or segments[i + 1] in _API_PATHS[segment])
               for i, segment in enumerate(segments))


def api_url(text: str) -> str:
    """argparse type: a node's API address, an http(s) URL or HOST:PORT, with no endpoint's path in it (the commands
    add the endpoint's: `http://host:port/v1` was asked for /v1/v1/..., which the node answered 404 'no such
    endpoint'); a proxy's path prefix (`https://proxy/vouchnet`) is kept, as the client joins the endpoint's to it."""
    try:
        url = httpx.URL(normal_url(text))
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host or not 0 < (url.port or 80) < 65536:
        raise argparse.ArgumentTypeError(f"expected the node's API address, e.g. http://127.0.0.1:8700, got {text!r}")
    host = url.raw_host.decode("ascii")  # (an IPv6 address, which httpx checked, without its brackets)
    if ":" not in host and (fault := host_fault(host)) is not None:
        raise argparse.ArgumentTypeError(f"{fault}, in {text!r}")
    if url.query or url.fragment or _names_endpoint(url.path):
        raise argparse.ArgumentTypeError(f"expected the node's API address, not one of its endpoints, e.g. "
                                         f"http://127.0.0.1:8700 (each command adds the endpoint's path; a proxy's "
                                         f"path prefix may stay), got {text!r}")
    return text


def did_argument(text: str) -> str:
    """argparse type: an agent's (or any) Ed25519 did:key; an agent's credential given instead (a JWT) is named as
    such, and so is what is no did at all (an agent's name, as `agent new --name` gave it), with where its did is
    listed."""
    return _did(text, "`vouchnet agent list` lists the dids of this org's agents by name")


def org_did_argument(text: str) -> str:
    """argparse type: an org's Ed25519 did:key, refused as did_argument refuses one, but for where an org's did is
    listed (an agent list is no help there)."""
    return _did(text, "an org's did is what `vouchnet status` shows on its node, and `vouchnet orgs` lists those this "
                "node knows")


def _did(text: str, listed: str) -> str:
    if is_compact_jwt(text):
        raise argparse.ArgumentTypeError("a credential (a JWT), not a did: give its subject, credentialSubject.id "
                                         "(`vouchnet agent list` lists the dids of this org's agents)")
    if not meant_as_did(text):
        raise argparse.ArgumentTypeError(f"expected a did (did:key:z6Mk...), got {text!r} ({listed})")
    try:
        public_key_from_did(text)
    except InvalidDid as e:
        raise argparse.ArgumentTypeError(f"not an Ed25519 did:key: {e}") from None
    return text


MAX_COUNT = 2**63 - 1  # the most a node's API takes (a signed 64-bit integer), SQLite's, and islice's on 64 bits


def whole_number(text: str) -> int | None:
    """`text` as a whole number from 0 to MAX_COUNT written in ASCII digits, else None (str.isdigit takes "²", which
    int refuses, and int refuses 4,301 digits and more)."""
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > len(str(MAX_COUNT)):
        return None
    number = int(text)
    return number if number <= MAX_COUNT else None


def positive_int(text: str) -> int:
    """argparse type: a count, 1 to MAX_COUNT."""
    if not (text.isascii() and text.isdigit()) or not text.strip("0"):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if (count := whole_number(text)) is None:
        raise argparse.ArgumentTypeError(f"expected a positive integer up to {MAX_COUNT}, got {text!r}")
    return count


def seed_argument(text: str) -> int:
    """argparse type: a random seed, 0 to MAX_COUNT (numpy's generators refuse a negative one, with a traceback)."""
    if (seed := whole_number(text)) is None:
        raise argparse.ArgumentTypeError(f"expected a seed, a whole number from 0 to {MAX_COUNT}, got {text!r}")
    return seed


def seconds_argument(text: str) -> float:
    """argparse type: a wait in seconds, 0 or more (so not nan or inf)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError(f"expected seconds, 0 or more, got {text!r}")
    return seconds


def weight_argument(text: str) -> float:
    """argparse type: a vouch weight, a number in (0, 1] (so not nan or inf, which JSON cannot carry)."""
    try:
        weight = float(text)
    except ValueError:
        weight = 0.0
    if not 0 < weight <= 1:
        raise argparse.ArgumentTypeError(f"a weight in (0, 1], got {text!r}")
    return weight


def import_httpcore_without_event_loops() -> None:
    """Import httpcore, which the command's synchronous client runs on, as if trio and anyio were not installed:
    it imports both whenever they are, as beside a node (trio 0.2 s of CPU in every command that asks the node;
    encode/httpcore#946), for locks only an async client takes, and it takes a failed import as "not installed".
    Only in a process that imported none of the three yet (a command's own; a test's has trio, and its httpcore
    must have it too); a later httpcore that fails without them is imported with them by the client."""
    if not {"trio", "anyio", "httpcore"}.isdisjoint(sys.modules):
        return
    sys.modules.update(trio=None, anyio=None)  # None: an import of either raises ImportError
    try:
        importlib.import_module("httpcore")
    except ImportError:
        pass
    finally:
        del sys.modules["trio"], sys.modules["anyio"]


def open_client(args: argparse.Namespace, *, write: bool = False) -> NodeClient:
    """A client of the node `args` point at; with `write`, carrying its token. Raises UsageError, and, when a data
    directory names the node, ClientError or CommandFailed unless the node answering is that directory's org."""
    token_file = args.token_file
    if token_file is not None and not token_file.exists():
        raise UsageError(f"--token-file {token_file}: no such file")
    config = None
    source = ""
    if args.api is not None:
        url = args.api
    else:
        data_dir = args.dir or default_data_dir()
        try:
            config = load_config(data_dir)
        except ConfigError as e:
            raise UsageError(str(e)) from None
        url, source = _node_url(config)
        token_file = token_file or config.token_path
    token = None
    if write:
        if token_file is None:
            raise UsageError("this command writes, so it needs the node's token: add --token-file FILE")
        try:
            token = load_token(token_file)
        except KeyFileError as e:
            raise UsageError(str(e)) from None
    import_httpcore_without_event_loops()
    client = NodeClient(url, token)
    if config is not None:
        try:
            _expect_org(client, config, source)
        except BaseException:
            client.close()
            raise
    return client


def _node_url(config: NodeConfig) -> tuple[str, str]:
    """The URL of the data directory's node, and where it came from (for _expect_org's refusal): config.toml's
    `[api] bind`, or, when its port is 0 (the OS picks one as the node starts), the `api.url` the running node
    writes (node.address_file). Raises CommandFailed when there is none: the node is not running."""
    if config.api_port:
        return f"http://{connectable_host(config.api_host)}:{config.api_port}", "the API address in its config.toml"
    path = config.data_dir / API_URL_FILE
    try:
        url = read_api_url(config.data_dir)
    except ApiUrlFileError as e:
        raise CommandFailed(str(e)) from None
    if url is None:
        raise CommandFailed(f"the node of {config.data_dir} is not running: its [api] bind has port 0, so its "
                            f"address is in {path}, which the node writes once it listens and removes as it stops; "
                            f"start it with `vouchnet run --dir {config.data_dir}`")
    return url, f"the address in {path}, left by its node if that was killed rather than stopped"


def _expect_org(client: NodeClient, config: NodeConfig, source: str) -> None:
    """Refuse the node at the data directory's API address unless it is the directory's org: with this node stopped,
    another one configured with the same address would answer for it (reads silently, writes with a token error), or
    one that took the port a killed node had picked (`source` says where the address came from)."""
    try:
        expected = did_key(bytes(load_org_key(config.key_path).verify_key))
    except KeyFileError:
        return  # an operator who may not read the key still reads through the API: there is nothing to compare
    answering = client.node()["did"]
    if answering != expected:
        raise CommandFailed(f"the node at {client.base_url} is {answering}, not {expected}, the org of "
                            f"{config.data_dir}: another node uses {source} (is this one running?)")


def data_dir_of(args: argparse.Namespace) -> Path | None:
    """The data directory the command uses, or None when it was pointed at an API address instead."""
    return None if args.api is not None else args.dir or default_data_dir()


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    print()


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """`rows` of cells (a header first, if any) as lines, each cell padded to its column's width, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


class StderrProgress:
    """Entries checked so far, on stderr: rewritten in place on a terminal, every tenth of the way otherwise."""

    def __init__(self) -> None:
        self._shown = -1

    def __call__(self, done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\rchecked {done}/{total} entries", end="\n" if done == total else "", file=sys.stderr, flush=True)
            return
        tenth = done * 10 // total
        if tenth > self._shown:
            self._shown = tenth
            print(f"checked {done}/{total} entries", file=sys.stderr, flush=True)
