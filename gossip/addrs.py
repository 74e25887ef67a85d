"""The addresses a node listens on and dials (DESIGN.md §5): the one grammar that gossip.host dials by and node.config
checks `[p2p]` listen, announce and bootstrap with.

Pure Python, without py-libp2p or multiaddr: node.config imports it, and every CLI command reads the config.
A listen address is /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>; a peer address is such a TCP address
or, where names are allowed, /dns/<name>/tcp/<port> (A and AAAA records), /dns4 (A) or /dns6 (AAAA), followed by
/p2p/<peer id> with an org's PeerID (an Ed25519 key, 12D3KooW...). /dnsaddr, which needs TXT lookups, is refused.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from vouching.base58 import b58decode, b58encode

IP_PROTOCOLS = ("ip4", "ip6")
NAME_PROTOCOLS = ("dns", "dns4", "dns6")
LISTEN_FORM = "/ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>"
PEER_FORM = "/ip4/<address>/tcp/<port>/p2p/<peer id>"
# A PeerID that embeds an Ed25519 key: identity multihash (0x00, 36 bytes) of the libp2p PublicKey protobuf
# {Type: Ed25519, Data: 32 bytes}, 52 base58 characters.
_ED25519_PEER_ID = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
_ED25519_PEER_ID_CHARS = 52
_MULTIADDR = re.compile(r"(/[A-Za-z0-9._~:%+=-]+)+")
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_MAX_NAME = 253


class AddrError(ValueError):
    """An address the node cannot listen on or dial; the message says what it must be (callers add the address)."""


@dataclass(frozen=True)
class TcpAddr:
    """A TCP address: `host` is an IP address (protocol ip4 or ip6) or a DNS name (dns, dns4 or dns6)."""

    protocol: str
    host: str
    port: int

    @property
    def is_name(self) -> bool:
        return self.protocol in NAME_PROTOCOLS

    def __str__(self) -> str:
        return f"/{self.protocol}/{self.host}/tcp/{self.port}"


@dataclass(frozen=True)
class PeerAddr:
    """A TCP address and the PeerID of the node expected there."""

    transport: TcpAddr
    peer_id: str

    def __str__(self) -> str:
        return f"{self.transport}/p2p/{self.peer_id}"


def parse_listen_addr(value: str) -> TcpAddr:
    """/ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port> (port 0 picks one); AddrError otherwise."""
    _check_multiaddr(value, LISTEN_FORM)
    return _tcp_addr(value, IP_PROTOCOLS, f"must be {LISTEN_FORM}")


def parse_peer_addr(value: str, *, names: bool = True) -> PeerAddr:
    """A TCP address ending in /p2p/<an org's PeerID>, with `names` by DNS name too; AddrError otherwise."""
    protocols = (*IP_PROTOCOLS, *NAME_PROTOCOLS) if names else IP_PROTOCOLS
    form = f"{PEER_FORM} (or {', '.join(f'/{p}' for p in protocols[1:])})"
    _check_multiaddr(value, form)
    transport, sep, peer_id = value.rpartition("/p2p/")
    if not sep or "/" in peer_id:
        raise AddrError("a peer address must end in /p2p/<peer id>")
    check_org_peer_id(peer_id)
    if names and transport.startswith("/dnsaddr/"):
        raise AddrError("/dnsaddr is not supported (it needs DNS TXT lookups, which the node does not make): name "
                        "the peer's host with /dns4/<name>/tcp/<port>/p2p/<peer id>, or /dns (IPv4 and IPv6)")
    return PeerAddr(_tcp_addr(transport, protocols, f"the node dials TCP only: must be {form}"), peer_id)


def check_org_peer_id(peer_id: str) -> bytes:
    """AddrError unless `peer_id` is the canonical base58 PeerID of an Ed25519 key (DESIGN.md §2: an org's key);
    else the raw key, at a fraction of what py-libp2p's parsing costs (gossip.host.peer_public_key)."""
    multihash = b""
    if len(peer_id) == _ED25519_PEER_ID_CHARS:
        try:
            multihash = b58decode(peer_id)
        except ValueError:
            pass
    if not (len(multihash) == len(_ED25519_PEER_ID) + 32 and multihash.startswith(_ED25519_PEER_ID)
            and b58encode(multihash) == peer_id):
        raise AddrError(f"{peer_id!r} is not a PeerID of an org (12D3KooW..., an Ed25519 key)")
    return multihash[len(_ED25519_PEER_ID):]


def _check_multiaddr(value: object, form: str) -> None:
    """AddrError naming `form`, what the address must be, unless `value` is a multiaddr (127.0.0.1:4001 is not)."""
    if not isinstance(value, str) or not _MULTIADDR.fullmatch(value):
        raise AddrError(f"not a multiaddr: must be {form}")


def _tcp_addr(value: str, protocols: tuple[str, ...], form: str) -> TcpAddr:
    """`value` as /<one of protocols>/<host>/tcp/<port>, the host an address of its IP version or a DNS name."""
    parts = value.split("/")
    if len(parts) != 5 or parts[0] or parts[1] not in protocols or parts[3] != "tcp":
        raise AddrError(form)
    protocol, host, port = parts[1], parts[2], parts[4]
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise AddrError(f"{form} (port 0-65535)")
    if protocol in NAME_PROTOCOLS:
        if not _is_dns_name(host):
            raise AddrError(f"{form} ({host!r} is not a DNS name: labels of 1-63 letters, digits, '-' or '_', "
                            f"{_MAX_NAME} characters in all)")
        return TcpAddr(protocol, host, int(port))
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or f"ip{address.version}" != protocol or getattr(address, "scope_id", None):
        raise AddrError(f"{form} ({host!r} is not an IPv{protocol[-1]} address)")
    return TcpAddr(protocol, host, int(port))


def _is_dns_name(name: str) -> bool:
    name = name.removesuffix(".")  # (a fully qualified name's final dot)
    return len(name) <= _MAX_NAME and all(_LABEL.fullmatch(label) for label in name.split("."))
