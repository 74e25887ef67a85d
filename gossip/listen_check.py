"""Whether a TCP port can be listened on now, tried as a node's listeners bind (DESIGN.md §5, gossip.host quirk 15):
the check gossip.host makes before py-libp2p listens, and the testnet's when it gives or moves ports. Pure Python,
without py-libp2p: the testnet's commands import it, and py-libp2p takes a second to import."""

from __future__ import annotations

import socket


def bind_error(ip: str, port: int) -> OSError | None:
    """Why `ip`:`port` cannot be listened on now (EADDRINUSE: another process holds it), None if it can. Bound with
    SO_REUSEADDR, as trio binds the node's listeners, so a connection of an earlier run in TIME_WAIT is no conflict."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError as error:
            return error
    return None
