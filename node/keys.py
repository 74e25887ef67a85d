"""The org key and the API token: files in the data directory, created with mode 0600, written whole or not at
all, never overwritten."""

from __future__ import annotations

import logging
import secrets
import shlex
import stat
from pathlib import Path

from nacl.signing import SigningKey

from ledger.files import create_file

from .client._token import BadToken, api_token
from .config import NodeConfig
from .strict_modes import TooOpen, check_strict_modes

SEED_BYTES = 32

log = logging.getLogger(__name__)


class KeyFileError(Exception):
    """A key or token file is missing, unsafe or malformed; the message names the file and what to do."""


def write_private(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 and `data`, durably, whole or not at all (ledger.files); refuse if it exists: an
    empty `org.key.next`, left by a `vouchnet key rotate` killed mid-write, stopped the node from starting and the
    rotation from running again."""
    try:
        create_file(path, data)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite it") from None


def _read_private(path: Path, missing: str) -> bytes:
    """Read a secret file, refusing one that other users can read (as ssh does); `missing` says what to do if there
    is none (not `vouchnet init`, which refuses a directory that holds a config.toml)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: missing; {missing}") from None
    if not stat.S_ISREG(mode):  # a directory failed the read with a traceback; a FIFO blocked the start for good
        raise KeyFileError(f"{path}: not a regular file (a directory, a pipe or a device); put the file itself there")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: permissions {stat.S_IMODE(mode):04o} are too open; run `chmod 600 {path}`")
    return path.read_bytes()


def create_org_key(path: Path) -> SigningKey:
    """Generate the org's Ed25519 key and store its 32-byte seed at `path` (mode 0600)."""
    key = SigningKey.generate()
    write_private(path, bytes(key))
    return key


# What to do when a data directory's org.key is missing or damaged
RESTORE_ORG_KEY = ("restore it from a backup of this data directory: it is the org's identity (a new key would be a "
                   "new org, made by `vouchnet init` in a new directory)")


def load_org_key(path: Path, way_forward: str = RESTORE_ORG_KEY) -> SigningKey:
    """Load the org key written by `create_org_key`. KeyFileError for a file missing or damaged (not a 32-byte
    seed) ends with `way_forward`, what the caller's operator can do about it: for a data directory's org.key,
    restore it; for another file (`key adopt FILE`, org.key.next), what that file is for."""
    seed = _read_private(path, way_forward)
    if len(seed) != SEED_BYTES:
        raise KeyFileError(f"{path}: damaged: an org key is a {SEED_BYTES}-byte Ed25519 seed, and it holds "
                           f"{len(seed)} bytes; {way_forward}")
    return SigningKey(seed)


def load_signing_key(config: NodeConfig) -> SigningKey:
    """The org key of `config`'s data directory, read to sign with: by the node, and by every command that signs
    with it (`key rotate`, `key adopt`, `key contest`, `agent new`, `audit export`). Refused (KeyFileError, with the
    message `vouchnet run` gives) if users other than the node's may change the directory, its config.toml or the
    key (node.strict_modes), or read the key (load_org_key)."""
    try:
        check_strict_modes(config.data_dir)
    except TooOpen as error:
        raise KeyFileError(str(error)) from None
    return load_org_key(config.key_path)


def create_token(path: Path) -> str:
    """Generate the API bearer token and store it at `path` (mode 0600)."""
    token = secrets.token_urlsafe(32)
    write_private(path, token.encode() + b"\n")
    return token


def load_token(path: Path) -> str:
    """Load the API bearer token written by `create_token` (node.client._token's rule)."""
    new = f"(umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > {shlex.quote(str(path))})"
    text = _read_private(path, f"restore it, or make a new one: `{new}` (a running node reads it again when it "
                               "changes; its clients need the new one)").decode("ascii", errors="replace")
    try:
        return api_token(text)  # the rule the SDK's clients apply to the token they send
    except BadToken as e:
        raise KeyFileError(f"{path}: the token {e}; make a new one: `{new}`") from None


class TokenFile:
    """The API token as `api.token` holds it now: read again whenever the file changes (its inode, size or times),
    so a token rotated after a leak takes writes at once and the old one none, as Prometheus reads its
    bearer_token_file. While the file cannot be read as a token (missing, too open, half-written) there is no token,
    and writes are refused: an operator who deletes it means to stop them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen = self._signature()  # before the read: a change during it is read again at the next write
        self._token: str | None = load_token(path)  # KeyFileError at start, as before

    def current(self) -> str | None:
        """The token writes must present now; None while the file is not a token (DESIGN §8)."""
        signature = self._signature()
        if signature != self._seen:
            self._seen = signature
            try:
                self._token = load_token(self.path)
            except (KeyFileError, OSError) as error:
                self._token = None
                log.warning("api.token cannot be read: writes are refused until it is restored",
                            extra={"fields": {"error": str(error)}})
            else:
                log.info("api.token changed: writes take the token it holds now")
        return self._token

    def _signature(self) -> tuple[int, ...] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode
