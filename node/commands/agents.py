"""`vouchnet agent new`: an agent key pair and a W3C VC 2.0 credential (`vc+jwt`) binding it to this org, made
from the org key in the data directory (no running node needed); `--vouch W` also vouches for it (basis
operator) through the running node, so the network learns of the binding."""

from __future__ import annotations

import argparse
import os
import re
import uuid
from pathlib import Path

from node.credentials import AGENT_CREDENTIAL_DAYS, agent_credential
from node.keys import KeyFileError, create_org_key
from vouching import did_key

from .common import (
    Subparsers,
    UsageError,
    add_dir_option,
    add_local_command,
    local_config_and_key,
    open_client,
    print_json,
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit, got {text!r}")
    return text


def _weight(text: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = 0.0
    if not 0 < weight <= 1:
        raise argparse.ArgumentTypeError(f"a weight in (0, 1], got {text!r}")
    return weight


def register(subparsers: Subparsers) -> None:
    agent = subparsers.add_parser("agent", help="mint agent keys and their credentials",
                                  description="Agents this org operates.")
    commands = agent.add_subparsers(dest="agent_command", metavar="COMMAND", required=True)
    new = add_local_command(
        commands,
        "new",
        run=_new,
        summary="a new agent key pair and a credential binding it to this org",
        description="Generate an agent's Ed25519 key (NAME.key: its 32-byte seed, mode 0600) and a W3C VC 2.0 "
        "credential (NAME.vc.jwt: vc+jwt, EdDSA, signed with the org key) binding the agent's did:key to this "
        "org; any deployment verifies it with a JWT library against the node's /.well-known/jwks.json. Reads "
        "the org key from the data directory, so the node need not run; --vouch also signs an operator vouch "
        "for the agent through the running node.",
        examples=[
            "vouchnet agent new --name alice",
            "vouchnet agent new --name billing-bot --out ./agents --days 90 --vouch 1",
        ],
    )
    new.add_argument("--name", type=_name, help="the agent's name, also the files' (default: agent-<did suffix>)")
    new.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="where to write (default: here)")
    new.add_argument("--days", type=int, default=AGENT_CREDENTIAL_DAYS,
                     help="how long the credential is valid (default: %(default)s)")
    new.add_argument("--vouch", type=_weight, metavar="W", help="vouch for the agent with this weight (basis operator)")
    add_dir_option(new)
    new.set_defaults(api=None, token_file=None)  # what open_client reads, for --vouch


def _new(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise UsageError("--days: must be at least 1")
    config, org_key = local_config_and_key(args)
    key_path, credential_path, agent = _mint(args.out, args.name)
    credential_path.write_text(agent_credential(org_key, agent, name=args.name, days=args.days) + "\n",
                               encoding="utf-8")
    made = {"did": agent, "key": str(key_path), "credential": str(credential_path),
            "issuer": did_key(bytes(org_key.verify_key))}
    if args.vouch is not None:
        args.dir = config.data_dir
        with open_client(args, write=True) as client:
            made["vouch"] = client.vouch(agent, args.vouch, "operator")["id"]
    print_json(made)
    return 0


def _mint(out: Path, name: str | None) -> tuple[Path, Path, str]:
    """A new agent key in `out` as NAME.key (default: named after its did); (key file, credential file, did)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fresh = out / f".agent-{uuid.uuid4().hex}.key"
        key = create_org_key(fresh)  # the same file as the org key: a 0600 32-byte seed
    except (KeyFileError, OSError) as e:
        raise UsageError(str(e)) from None
    agent = did_key(bytes(key.verify_key))
    stem = name or f"agent-{agent[-10:]}"
    key_path, credential_path = out / f"{stem}.key", out / f"{stem}.vc.jwt"
    try:
        if credential_path.exists():
            raise FileExistsError
        os.link(fresh, key_path)  # unlike a rename, never replaces an existing key
    except FileExistsError:
        raise UsageError(f"{key_path} or {credential_path}: already exists; refusing to overwrite") from None
    finally:
        fresh.unlink()
    return key_path, credential_path, agent
