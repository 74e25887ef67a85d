"""The ports of a testnet's nodes (DESIGN.md §9): drawn at random from the ports from 10000 up outside the kernel's
ephemeral range, or from the range the testnet is confined to (`testnet up --ports FIRST-LAST`), and checked free by
binding as a node binds.

The kernel gives every outgoing connection (and every bind to port 0) a local port from its ephemeral range, so a
port chosen there may be taken by any process on the machine while the testnet is stopped; outside it, only a
process that binds that very port can take it. Drawn at random, the ports of two testnets in different directories
seldom meet, and a drawn port that is taken now is passed over.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

from gossip.listen_check import bind_error
from vouching.counts import counted

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
    """No ports to give: the ephemeral range cannot be read, or leaves too few free ports outside it; or the range a
    testnet is confined to holds too few free ones."""


@dataclass(frozen=True)
class PortRange:
    """The ports a testnet's nodes are confined to, `first` to `last` (`testnet up --ports FIRST-LAST`)."""

    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    def check_holds(self, nodes: int) -> None:
        """PortError if the range has fewer ports than a testnet of `nodes` needs, a p2p and an API port each (an
        operator's asking wrong, refused before anything is made: not a shortage of free ports found later)."""
        if self.size < 2 * nodes:
            raise PortError(f"--ports {self}: {counted(self.size, 'port')}, fewer than the {2 * nodes} a testnet of "
                            f"{counted(nodes, 'node')} needs (a p2p and an API port each)")


def parse_port_range(text: str) -> PortRange:
    """`FIRST-LAST`, two ports from 1 to 65535, the first not past the last; PortError naming the rule otherwise."""
    first, dash, last = text.strip().partition("-")
    if not (dash and first.isdigit() and last.isdigit() and 0 < int(first) <= int(last) <= LAST_PORT):
        raise PortError(f"expected a port range FIRST-LAST (ports 1 to {LAST_PORT}, the first not past the last, as "
                        f"48000-48999), got {text!r}")
    return PortRange(int(first), int(last))


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
                 rng: random.Random | None = None, within: PortRange | None = None) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now, none in `avoid` (ports the testnet gave already), drawn at random:
    from `within`, the range the testnet is confined to, where it has one (the ephemeral range included: its
    operator chose it); else outside the `ephemeral` range (default: the kernel's)."""
    if within is not None:
        return _choose_within(count, avoid, within, rng or random.SystemRandom())
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


def _choose_within(count: int, avoid: Collection[int], within: PortRange, rng: random.Random) -> list[int]:
    """choose_ports from the testnet's range: every port of it is tried, in a random order, until `count` are free."""
    pool = [p for p in range(within.first, within.last + 1) if p not in avoid]
    given = f", {within.size - len(pool)} of them the testnet's nodes' already" if len(pool) < within.size else ""
    if len(pool) < count:
        raise PortError(f"the testnet's port range {within} holds {counted(within.size, 'port')}{given}, fewer than "
                        f"the {count} needed")
    chosen = list(islice(filter(bindable, rng.sample(pool, len(pool))), count))
    if len(chosen) < count:
        besides = " besides its nodes' own" if given else ""
        raise PortError(f"the testnet's port range {within}: {len(chosen)} of the {len(pool)} ports it holds{besides} "
                        f"are free on 127.0.0.1 now, fewer than the {count} needed (other processes hold the rest)")
    return chosen
