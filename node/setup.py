"""`vouchnet init`: a new data directory with the org key, the API token and a commented config.toml."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ledger.files import create_file, make_directory
from vouching import did_key

from .config import CONFIG_FILE, NodeConfig, parse_api_bind, parse_config, render_template
from .keys import KeyFileError, create_org_key, create_token, load_org_key
from .strict_modes import check_strict_modes


@dataclass(frozen=True)
class Initialised:
    data_dir: Path
    did: str
    kept_key: bool  # the org key of an init cut short, not a new one


def init_data_dir(
    data_dir: Path,
    *,
    name: str = "vouchnet node",
    network: str,
    listen: tuple[str, ...],
    api: str,
    bootstrap: tuple[str, ...] = (),
    roots: tuple[str, ...] = (),
    epoch_seconds: float = NodeConfig.epoch_seconds,
) -> Initialised:
    """Create the data directory's key, token and config, durably; refuse a directory that holds a config.toml. The
    config is written last, so a directory without one is an init cut short (a kill, a power cut), which this one
    finishes: a key or token it left is kept, never replaced. A directory there already (an init cut short, or one
    made for the node) that `vouchnet run` would refuse (node.strict_modes) raises TooOpen before anything is written:
    with sudo in a service user's directory, init wrote a root-owned org.key, api.token and config.toml the node, run
    as that user, could not read."""
    parse_api_bind(api)
    text = render_template(name=name, network=network, listen=listen, api=api, bootstrap=bootstrap, roots=roots,
                           epoch_seconds=epoch_seconds)
    config_path = data_dir / CONFIG_FILE
    if config_path.exists():
        raise _holds_a_node(data_dir)
    parse_config(data_dir, text)  # what we write must load: catches a bad --listen, --root or --network now
    if data_dir.is_dir():
        check_strict_modes(data_dir)
    else:
        _refuse_a_path_through_no_directory(data_dir)
    make_directory(data_dir, mode=0o700)
    key_path, token_path = data_dir / "org.key", data_dir / "api.token"
    kept_key = key_path.exists()
    key = load_org_key(key_path, _KEPT_KEY) if kept_key else create_org_key(key_path)
    if not token_path.exists():
        create_token(token_path)
    # Not writable by group or others whatever the umask (002 is common): `vouchnet run` refuses that (strict_modes).
    try:
        create_file(config_path, text.encode(), mode=0o644)
    except FileExistsError:
        raise _holds_a_node(data_dir) from None
    return Initialised(data_dir, did_key(bytes(key.verify_key)), kept_key)


# What to do when the org.key init keeps is damaged: init takes a directory holding a key and no config.toml for an
# init cut short
_KEPT_KEY = ("init keeps the org key of a directory holding no config.toml (an init cut short): remove it and run init "
             "again to make a new org under a new key, or, if the org used this key, restore it from a backup")


def _refuse_a_path_through_no_directory(data_dir: Path) -> None:
    """KeyFileError naming what stands where a directory must be: `data_dir`, or the nearest of its parents there,
    a file or a symbolic link to nothing (init --dir FILE said only "File exists")."""
    for path in (data_dir, *data_dir.parents):
        try:
            if stat.S_ISDIR(path.stat().st_mode):  # (one look: a directory another init makes meanwhile is one)
                return
            what = "a file, not a directory"
        except (FileNotFoundError, NotADirectoryError):  # (nothing there; or a parent is a file, found next)
            if not path.is_symlink():
                continue  # (made by init)
            what = f"a symbolic link to {os.readlink(path)}, which does not exist"
        parent = "" if path == data_dir else f" (in the path of {data_dir})"
        raise KeyFileError(f"{path}{parent} is {what}; --dir names the node's data directory, made if missing")


def _holds_a_node(data_dir: Path) -> KeyFileError:
    return KeyFileError(f"{data_dir / CONFIG_FILE}: already exists; {data_dir} is already a node's data directory")
