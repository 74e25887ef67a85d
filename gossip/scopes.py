"""Which addresses that other orgs' `org` records name a node dials (DESIGN.md §5, peer exchange): an address's
scope, and the scopes `[p2p] dial_private` lets through.

An org record may name any address, so an org inside the horizon could have every node of a network open TCP
connections, each with a multistream-select header, to services only a node can reach: its own loopback (an SSH
port, a local Redis), its LAN, a cloud's metadata service at 169.254.169.254. Public addresses are always dialled.
With "auto" (the default) an address of another scope is dialled only if the node's own org record names an address
of that scope: a testnet on loopback dials loopback, a node announcing a LAN address dials the LAN, a node on a
public address dials no private one (go-libp2p's identify keeps a peer's loopback and private addresses only when
it reached the peer over such an address; kubo's "server" profile filters them). "always" dials every scope,
"never" public addresses only. Unspecified and multicast addresses are never dialled (0.0.0.0 reaches loopback).
Bootstrap addresses, the operator's choice, are not filtered.

Pure Python (node.config reads the setting's values).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from typing import Literal, get_args

from .addrs import parse_listen_addr

DialPrivate = Literal["auto", "always", "never"]
DIAL_PRIVATE: tuple[DialPrivate, ...] = get_args(DialPrivate)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598), and Tailscale's addresses
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # RFC 1122: never a destination (Linux sends 0.0.0.0 to loopback)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: the IPv4 address in its last 32 bits


class Scope(enum.Enum):
    """Where an address reaches (IANA's special-purpose address registries, by ipaddress's properties)."""

    PUBLIC = "public"
    LOOPBACK = "loopback"
    PRIVATE = "private"  # RFC 1918, RFC 4193 unique local, deprecated IPv6 site-local
    SHARED = "shared"  # 100.64.0.0/10
    LINK_LOCAL = "link-local"  # 169.254.0.0/16 (cloud metadata services), fe80::/10
    RESERVED = "reserved"  # not global, none of the above: documentation, benchmarking, 240.0.0.0/4, ...
    UNDIALLABLE = "undiallable"  # unspecified, multicast, 0.0.0.0/8: no peer's address


def scope(address: IPAddress) -> Scope:
    """The scope of `address`; an IPv6 address that embeds an IPv4 one (IPv4-mapped, NAT64's well-known prefix,
    6to4) has the IPv4 address's scope, since dialling it reaches that address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return scope(address.ipv4_mapped)
        if address in _NAT64:
            return scope(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            return scope(address.sixtofour)
    if address.is_unspecified or address.is_multicast or address in _THIS_NETWORK:
        return Scope.UNDIALLABLE
    if address.is_loopback:
        return Scope.LOOPBACK
    if address.is_link_local:
        return Scope.LINK_LOCAL
    if any(address in network for network in _PRIVATE) or getattr(address, "is_site_local", False):
        return Scope.PRIVATE
    if address in _SHARED:
        return Scope.SHARED
    if address.is_private or address.is_reserved:
        return Scope.RESERVED
    return Scope.PUBLIC


def addr_scope(addr: str) -> Scope:
    """The scope of a TCP multiaddr by IP address, /p2p/<peer id> or not; AddrError for any other."""
    return scope(ipaddress.ip_address(parse_listen_addr(addr.split("/p2p/", 1)[0]).host))


def dialled_scopes(dial_private: DialPrivate, own_addrs: Iterable[str]) -> frozenset[Scope]:
    """The scopes of org records' addresses a node dials: with "auto", public ones and those of `own_addrs`, the
    addresses its own org record names."""
    if dial_private == "always":
        return frozenset(Scope) - {Scope.UNDIALLABLE}
    own = {addr_scope(a) for a in own_addrs} if dial_private == "auto" else set()
    return frozenset({Scope.PUBLIC, *own} - {Scope.UNDIALLABLE})
