"""`vouchnet agent new`: an agent key pair and a W3C VC 2.0 credential (`vc+jwt`) binding it to this org, made
from the org key in the data directory (no running node needed); `--vouch W` also vouches for it (basis
operator) through the running node, so the network learns of the binding. `vouchnet agent revoke` and
`vouchnet agent list`: the credentials minted, and their revocation (node.credential_registry), which the node
publishes as status lists."""

from __future__ import annotations

import argparse
import re
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from nacl.signing import SigningKey

from ledger.files import make_directory
from node.cli_commands import summary_of
from node.credential_registry import CREDENTIALS_FILE, MAX_REASON, CredentialRegistry, RegistryError
from node.credential_status import STATUS_TTL_S, NoPublicUrl, checked_public_url, status_entry
from node.client import ClientError
from node.config import CONFIG_FILE, is_loopback
from node.credentials import AGENT_CREDENTIAL_DAYS, agent_credential
from node.jwt import MAX_NUMERIC_DATE
from node.keys import KeyFileError, write_private
from node.store_manifest import StoreLost, check_listed, list_present
from vouching import did_key
from vouching.identity import meant_as_did

from .common import (
    MAX_COUNT,
    CommandFailed,
    Subparsers,
    UsageError,
    add_command_group,
    add_dir_option,
    add_local_command,
    did_argument,
    local_config,
    open_client,
    print_json,
    weight_argument,
    whole_number,
)
from .signing import signing_key

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit, got {text!r}")
    return text


def _index(text: str) -> int:
    """argparse type: a credential's index in the status lists, 0 or more (one beyond SQLite's integers ended in
    its OverflowError's traceback)."""
    if (index := whole_number(text)) is None:
        raise argparse.ArgumentTypeError(f"expected a credential's index, 0 to {MAX_COUNT} (`vouchnet agent list` "
                                         f"shows them), got {text!r}")
    return index


def _days(text: str) -> int:
    """argparse type: a credential's life in whole days, 1 or more (argparse's own said "invalid int value")."""
    if not (text.isascii() and text.isdigit() and text.strip("0")) or len(text) > 100:  # (int refuses 4,301 digits)
        raise argparse.ArgumentTypeError(f"expected whole days, 1 or more, got {text!r}")
    return int(text)  # (too many for a credential: `_new` says so)


def _agent(text: str) -> str:
    """argparse type: an agent's did or name; a mistyped did is told what is wrong with it, as `score` tells it,
    where it would name no credential."""
    return did_argument(text) if meant_as_did(text) else text


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers,
        "agent",
        summary=summary_of("agent"),
        description="Agents this org operates: their keys, the credentials that bind them to this org, and the "
        "revocation of those credentials.",
        examples=["vouchnet agent new --name alice --vouch 1", "vouchnet agent list",
                  "vouchnet agent revoke alice --reason 'key leaked'"],
    )
    new = add_local_command(
        commands,
        "new",
        run=_new,
        summary="a new agent key pair and a credential binding it to this org",
        description="Generate an agent's Ed25519 key (NAME.key: its 32-byte seed, mode 0600) and a W3C VC 2.0 "
        "credential (NAME.vc.jwt, mode 0600: vc+jwt, EdDSA, signed with the org key) binding the agent's did:key to "
        "this org; any deployment verifies it with a JWT library against the node's /.well-known/jwks.json. Reads "
        "the org key from the data directory, so the node need not run; --vouch also signs an operator vouch "
        "for the agent through the running node: other orgs' services count the agent's score for a credential of "
        "this org only while that vouch lives (without it they decide on the cold-start score; this org's own "
        "services count it either way). Refused while a `key rotate` is unfinished (run it again, or "
        "start the node, first), and while [api] bind has port 0 with no [api] public_url (the credential would "
        "name a port no verifier can reach). Prints the agent's did, the two files, its index in the status "
        "lists and the issuer as JSON.",
        examples=[
            "vouchnet agent new --name alice",
            "vouchnet agent new --name billing-bot --out ./agents --days 90 --vouch 1",
        ],
    )
    new.add_argument("--name", type=_name, help="the agent's name, also the files' (default: agent-<did suffix>)")
    new.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="where to write (default: here)")
    new.add_argument("--days", type=_days, default=AGENT_CREDENTIAL_DAYS,
                     help="how long the credential is valid, to the end of the year 9999 at most (default: "
                     "%(default)s)")
    new.add_argument("--vouch", type=weight_argument, metavar="W",
                     help="vouch for the agent with this weight, 0 < W <= 1 (basis operator)")
    add_dir_option(new)
    new.set_defaults(api=None, token_file=None)  # what open_client reads, for --vouch

    revoke = add_local_command(
        commands,
        "revoke",
        run=_revoke,
        summary="revoke agent credentials this org minted",
        description="Mark the credentials of an agent (by did or name), or the one credential at an index (see "
        "`vouchnet agent list`), as revoked. The node publishes revocations as W3C Bitstring Status Lists; "
        f"verifiers that check status (the SDK does) refuse the credential within {STATUS_TTL_S} s, when the copy "
        "of the list they cache expires. Needs no running node. The network still counts the agent's operator "
        "vouch: revoke that too with `vouchnet revoke RECORD_ID`. Prints the credentials revoked as JSON.",
        examples=["vouchnet agent revoke alice --reason 'key leaked'",
                  "vouchnet agent revoke --index 17 --reason retired"],
    )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("agent", nargs="?", metavar="AGENT", type=_agent, help="the agent's did or name")
    which.add_argument("--index", type=_index, help="one credential, by its index")
    revoke.add_argument("--reason", required=True, help=f"why, 1 to {MAX_REASON} printable characters (kept with "
                        "the revocation)")
    add_dir_option(revoke)

    listing = add_local_command(
        commands,
        "list",
        run=_list,
        summary="the agent credentials this org minted, and which are revoked",
        description="Every agent credential minted from this data directory: its index in the status lists, "
        "agent, name, when it was issued and expires (s since the epoch), and its revocation if any, as a JSON list.",
        examples=["vouchnet agent list"],
    )
    add_dir_option(listing)


def _new(args: argparse.Namespace) -> int:
    if time.time() + args.days * 86400 > MAX_NUMERIC_DATE:  # validUntil cannot say later, nor a verifier accept it
        raise UsageError("--days: the credential must expire by the end of the year 9999")
    with signing_key(args) as (config, org_key):
        try:  # before anything is minted or recorded
            public_url = checked_public_url(config.api_public_url)
        except NoPublicUrl as e:  # the node's config lacks an address, no argument is wrong: exit 1, not 2
            raise CommandFailed(f"{config.data_dir / CONFIG_FILE}: {e}") from None
        key_path, credential_path, agent = _mint(args.out, args.name)
        issued = int(time.time())
        with _registry(config.data_dir) as registry:
            index = registry.allocate(agent, name=args.name, issued_at=issued, expires_at=issued + args.days * 86400)
        credential = agent_credential(org_key, agent, name=args.name, now=issued, days=args.days,
                                      status=status_entry(public_url, index))
    try:  # a bearer credential: mode 0600, as the agent's key (it was written as the umask left it, often 0644)
        write_private(credential_path, credential.encode() + b"\n")
    except KeyFileError as e:
        raise UsageError(str(e)) from None
    if is_loopback(urllib.parse.urlsplit(public_url).hostname or ""):
        print(f"vouchnet agent new: the credential's status list is at {public_url}, on loopback; "
              "verifiers elsewhere cannot check its revocation there and will refuse it. For them, set [api] "
              "public_url in config.toml to where other orgs reach this API, then mint a new one under another "
              f"--name or --out (these files are not overwritten); `vouchnet agent revoke {agent} --dir "
              f"{config.data_dir} --reason ...` retires this one.", file=sys.stderr)
    made = {"did": agent, "key": str(key_path), "credential": str(credential_path), "index": index,
            "issuer": did_key(bytes(org_key.verify_key))}
    if args.vouch is not None:
        args.dir = config.data_dir
        try:
            with open_client(args, write=True) as client:
                made["vouch"] = client.vouch(agent, args.vouch, "operator")["id"]
        except (ClientError, CommandFailed, UsageError) as e:  # the agent exists now: say so, and how to finish
            print_json(made)
            raise CommandFailed(f"minted {agent} ({credential_path}), but the vouch failed: {e}; once the node "
                                f"runs: vouchnet vouch --dir {config.data_dir} {agent} --weight {args.vouch} "
                                "--basis operator") from None
    print_json(made)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    config = local_config(args)
    with _registry(config.data_dir) as registry:
        try:
            revoked = registry.revoke(args.agent if args.index is None else args.index, reason=args.reason,
                                      at=int(time.time()))
        except RegistryError as error:
            raise UsageError(str(error)) from None
    print_json({"revoked": [asdict(c) for c in revoked]})
    if not revoked:
        which = f"every credential of {args.agent}" if args.index is None else f"the credential at index {args.index}"
        print(f"nothing revoked now: {which} was revoked already", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    config = local_config(args)
    with _registry(config.data_dir) as registry:
        print_json([asdict(c) for c in registry.issued()])
    return 0


@contextmanager
def _registry(data_dir: Path) -> Iterator[CredentialRegistry]:
    """The registry, made if the data directory has none yet, and then listed (node.store_manifest): one it made
    and lost is refused, as the node refuses it, not made anew without the revocations it held."""
    try:
        check_listed(data_dir, [CREDENTIALS_FILE])
    except StoreLost as error:
        raise CommandFailed(str(error)) from None
    try:
        registry = CredentialRegistry.open(data_dir)
    except RegistryError as error:
        raise UsageError(str(error)) from None
    try:
        list_present(data_dir)
        yield registry
    finally:
        registry.close()


def _mint(out: Path, name: str | None) -> tuple[Path, Path, str]:
    """A new agent key in `out` as NAME.key (default: named after its did); (key file, credential file, did). Written
    under its own name (whole or not at all, ledger.files): a hidden file it was first written to was left behind,
    a private key, by a command killed before it was renamed."""
    key = SigningKey.generate()
    agent = did_key(bytes(key.verify_key))
    stem = name or f"agent-{agent[-10:]}"
    key_path, credential_path = out / f"{stem}.key", out / f"{stem}.vc.jwt"
    try:
        make_directory(out)
    except (FileExistsError, NotADirectoryError):  # (it said only `FILE: File exists`)
        raise UsageError(f"--out {out}: not a directory: give --out the directory to write the key and credential "
                         "in (made if missing)") from None
    try:
        if credential_path.exists():
            raise KeyFileError(f"{credential_path}: already exists; refusing to overwrite it")
        write_private(key_path, bytes(key))  # (refuses an existing key)
    except KeyFileError as e:
        raise UsageError(str(e)) from None
    return key_path, credential_path, agent
