"""A data directory or config.toml that users other than its owner may write is refused as the node starts, as
ssh's StrictModes refuses a home or ~/.ssh others can write: whoever can write them can change what the node trusts
(trust.roots), where it listens and whom it dials, or swap the org key and audit log beside them.

The mode bits are what is checked, not access(2): run as root, that answers yes to everything.
"""

from __future__ import annotations

import stat
from pathlib import Path

from .config import CONFIG_FILE


class TooOpen(Exception):
    """A path others may write; the message names it and the chmod that fixes it."""


def check_strict_modes(data_dir: Path) -> None:
    """Raise TooOpen if `data_dir` or its config.toml (loaded: both exist) is writable by group or others."""
    for path in (data_dir, data_dir / CONFIG_FILE):
        if (mode := path.stat().st_mode) & (stat.S_IWGRP | stat.S_IWOTH):
            raise TooOpen(f"{path}: writable by group or others (permissions {stat.S_IMODE(mode):04o}), so another "
                          f"user could change what the node trusts; run `chmod go-w {path}`")
