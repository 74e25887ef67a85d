"""A loopback port where connections are refused, for tests of a node that is not running."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 bound and never listened on while the block runs: a connection to it is refused at once,
    and no other process can listen on it meanwhile (a port found free and closed again could be taken by one)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]
