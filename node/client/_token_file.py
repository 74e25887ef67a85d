"""The node's API token as a file holds it (`api.token`, or a secret mounted from it), read again at each use, so that
a client follows the token's rotation (README "Rotating the API token": the file replaced in one rename) without a
restart, as the node itself does. Its text is taken by node.client._token's rule; no message quotes it."""

from __future__ import annotations

import os
from pathlib import Path

from ._env import TOKEN_ENV, TOKEN_FILE_ENV, default_token
from ._log import log
from ._token import api_token


class TokenFile:
    """The token `path` holds. ValueError, naming the path, if it cannot be read as one when made; a later read
    that fails (the file gone, or not a token) keeps the token last read, said once as a warning until a read
    succeeds: the node refuses a write meanwhile, or takes it with the token it held."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._token = self._read()
        except (OSError, ValueError) as error:
            raise ValueError(f"token_file: {_why(self.path, error)}") from None
        self._failing = False

    def current(self) -> str:
        """The token the file holds now, or the one last read if it cannot be read now."""
        try:
            token = self._read()
        except (OSError, ValueError) as error:
            if not self._failing:
                self._failing = True
                log.warning("the API token file cannot be read; its last token is sent until it can",
                            extra={"fields": {"error": _why(self.path, error)}})
            return self._token
        self._failing, self._token = False, token
        return token

    def renewed(self) -> bool:
        """Whether the file holds a token other than the one last read (the one a refused write carried): read it
        again, and the next write carries it."""
        before = self._token
        return self.current() != before

    def _read(self) -> str:
        return api_token(self.path.read_text(encoding="ascii", errors="replace"))


def _why(path: Path, error: Exception) -> str:
    """Why `path` gave no token, quoting none: the OS's reason, or the token rule's (node.client._token.BadToken)."""
    if isinstance(error, OSError):
        return f"cannot read {path}: {error.strerror or error}"
    return f"{path} does not hold the node's API token: the token {error}"


def given_token(token: str | TokenFile | None,
                token_file: str | os.PathLike[str] | None) -> str | TokenFile | None:
    """The API token a client is given: `token`, or the file `token_file` names; None without either. ValueError for
    both at once: the one read would hide the other, gone stale. An empty `token` is none."""
    token, token_file = token or None, token_file or None
    if token is not None and token_file is not None:
        raise ValueError("token, token_file: give one, the token or the file that holds it")
    return TokenFile(token_file) if token_file is not None else token


def api_token_source(token: str | TokenFile | None,
                     token_file: str | os.PathLike[str] | None) -> str | TokenFile | None:
    """The API token a client sends: `given_token`, or else $VOUCHNET_TOKEN or the file $VOUCHNET_TOKEN_FILE names;
    None without any. ValueError for two at once, as `given_token`; an empty $VOUCHNET_TOKEN is none."""
    if (given := given_token(token, token_file)) is not None:
        return given
    named, path = default_token(), os.environ.get(TOKEN_FILE_ENV) or None
    if named is not None and path is not None:
        raise ValueError(f"${TOKEN_ENV}, ${TOKEN_FILE_ENV}: both are set; set one, the token or the file that holds it")
    return TokenFile(path) if path is not None else named
