"""A data directory, config.toml or org.key that users other than the node's may change is refused as the node
starts, as ssh's StrictModes refuses a home or ~/.ssh others can write, and as PostgreSQL refuses a data directory
another user owns: whoever can write them can change what the node trusts (trust.roots), where it listens and whom
it dials, or swap the org key and audit log beside them.

Refused: the directory or config.toml writable by group or others (by the mode bits, not access(2): run as root,
that answers yes to everything), and any of the three owned by a user other than the one the node runs as and root
(a node run as root on a directory a user owns would sign with whatever key that user puts there, and write where
the user's symlinks point). `vouchnet run` checks as it starts (node.commands.node_code), and so does every read of
the org key to sign with it (node.keys.load_signing_key: the node's, `key rotate`, `key adopt`, `key contest`,
`agent new`, `audit export`) and every command that works on a data directory on this machine, signing or writing
there (node.commands.common.local_config: also `agent list`, `agent revoke`, `log repair`, `stores accept-loss`, and
`log verify` keeping its verified.checkpoint there), and `vouchnet init` in a directory there already
(node.setup.init_data_dir, before it writes); a command that asks the node's API does not: `sudo vouchnet vouch
--dir` on a service user's directory reads its token and writes nothing there.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from .config import CONFIG_FILE


class TooOpen(Exception):
    """A path others may write or own; the message names it and the command that fixes it."""


def check_strict_modes(data_dir: Path) -> None:
    """Raise TooOpen if `data_dir`, its config.toml (loaded: both exist) or its org.key (if any) is owned by another
    user than the node's and root, or if the directory or config.toml is writable by group or others."""
    me = os.geteuid()
    for path in (data_dir, data_dir / CONFIG_FILE, data_dir / "org.key"):
        try:
            status = path.stat()
        except FileNotFoundError:  # only org.key may be missing: loading it says what to do
            continue
        if status.st_uid not in (me, 0):
            raise TooOpen(f"{path}: owned by {_user(status.st_uid)}, not by {_user(me)} vouchnet runs as, so "
                          f"that user could replace it; run vouchnet as {_user(status.st_uid)}, or, if {_name(me)} "
                          f"is to run the node, `chown {_name(me)} {path}`")
        if path.name != "org.key" and status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise TooOpen(f"{path}: writable by group or others (permissions {stat.S_IMODE(status.st_mode):04o}), so "
                          f"another user could change what the node trusts; run `chmod go-w {path}`")


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # no such user in the passwd database: a container's volume, a deleted account
        return str(uid)


def _user(uid: int) -> str:
    name = _name(uid)
    return f"uid {uid}" if name == str(uid) else f"{name} (uid {uid})"
