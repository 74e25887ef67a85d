"""The ports of a testnet's nodes (DESIGN.md §9): drawn at random from the ports from 10000 up outside the kernel's
ephemeral range, and checked free by binding as a node binds.

The kernel gives every outgoing connection (and every bind to port 0) a local port from its ephemeral range, so a
port chosen there may be taken by any process on the machine while the testnet is stopped; outside it, only a
process that binds that very port can take it. Drawn at random, the ports of two testnets in different directories
seldom meet, and a drawn port that is taken now is passed over.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from itertools import chain, islice
from pathlib import Path

from gossip.listen_check import bind_error

LOCAL_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")  # Linux
# Elsewhere (macOS, the BSDs, Windows) the default ephemeral range is RFC 6335's dynamic ports, 49152-65535; their
# settings (sysctl net.inet.ip.portrange.*, netsh) are not read.
DYNAMIC_PORTS = (49152, 65535)
# Below 10000 lie the ports services are configured on (PostgreSQL's 5432, 8080, 9090...): a testnet holding one
# would stop that service from starting, and one started while the testnet is down would move a node.
FIRST_PORT = 10000
LAST_PORT = 65535
SPARE_DRAWS = 100  # ports drawn beyond those wanted, for those found taken


class PortError(Exception):
    """No ports to give: the ephemeral range cannot be read, or leaves too few free ports outside it."""


def ephemeral_range(path: Path = LOCAL_PORT_RANGE) -> tuple[int, int]:
    """The kernel's ephemeral ports, first and last: Linux's `ip_local_port_range`, else the dynamic ports."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return DYNAMIC_PORTS
    except (OSError, UnicodeDecodeError) as e:
        raise PortError(f"{path}: cannot read the ephemeral port range ({e})") from None
    fields = text.split()
    if len(fields) != 2 or not all(f.isdigit() for f in fields) or not 0 < int(fields[0]) <= int(fields[1]) <= 65535:
        raise PortError(f"{path}: not an ephemeral port range (two ports, first to last): {text.strip()[:80]!r}")
    return int(fields[0]), int(fields[1])


def bindable(port: int) -> bool:
    """Whether a node could listen on 127.0.0.1:`port` now (gossip.listen_check, the node's own check)."""
    return bind_error("127.0.0.1", port) is None


def choose_ports(count: int, *, avoid: Collection[int] = (), ephemeral: tuple[int, int] | None = None,
                 rng: random.Random | None = None) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now, none in `avoid` (ports the testnet gave already) or in the
    `ephemeral` range (default: the kernel's), drawn at random."""
    low, high = ephemeral_range() if ephemeral is None else ephemeral
    pool = [p for p in chain(range(FIRST_PORT, low), range(high + 1, LAST_PORT + 1)) if p not in avoid]
    if len(pool) < count:
        raise PortError(f"the ephemeral port range {low}-{high} leaves {len(pool)} ports from {FIRST_PORT} up "
                        f"outside it for this testnet, fewer than the {count} it needs")
    draws = (rng or random.SystemRandom()).sample(pool, min(len(pool), count + SPARE_DRAWS))
    chosen = list(islice(filter(bindable, draws), count))
    if len(chosen) < count:
        raise PortError(f"found {len(chosen)} free ports of {len(draws)} drawn outside the ephemeral range "
                        f"{low}-{high}, fewer than the {count} needed")
    return chosen
