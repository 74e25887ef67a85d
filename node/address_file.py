"""`api.url` in the data directory: the address of the local API (DESIGN §8) as the running node bound it, which the
CLI reads when config.toml's `[api] bind` has port 0 (the OS picks the port as the node starts). The node writes it
once the API listens and removes it as it stops; a node killed without a clean stop leaves it behind."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledger.files import read_small, replace_file

API_URL_FILE = "api.url"
_MAX_BYTES = 1024  # a URL is far shorter: more is not a file the node wrote


class ApiUrlFileError(Exception):
    """`api.url` is there but cannot be read as one URL; the message names the file."""


@contextmanager
def published_api_url(data_dir: Path, url: str) -> Iterator[None]:
    """Write `url` to `api.url` for the block, whole and durably (ledger.files), mode 0600 as every file the node
    writes; remove it on the way out."""
    path = data_dir / API_URL_FILE
    replace_file(path, f"{url}\n".encode())
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def read_api_url(data_dir: Path) -> str | None:
    """The URL in the data directory's `api.url`, or None if there is none; raises ApiUrlFileError."""
    path = data_dir / API_URL_FILE
    try:
        data = read_small(path, _MAX_BYTES)
    except OSError as error:
        raise ApiUrlFileError(f"{path}: {error.strerror or error}") from None
    if data is None:
        return None
    lines = data.decode("utf-8", "replace").split()
    if len(data) > _MAX_BYTES or len(lines) != 1:
        raise ApiUrlFileError(f"{path}: not one URL, so not the file a node writes; remove it and start the node")
    return lines[0]
