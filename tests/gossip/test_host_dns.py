"""Dialling a peer by DNS name (gossip/host.py quirk 33): /dns4, /dns6 and /dns resolved through trio's getaddrinfo,
within the dial timeout, the addresses tried in the resolver's order. Loopback only: `localhost` resolves from
/etc/hosts, `nonexistent.invalid` never resolves (RFC 6761), and a stand-in resolver answers other names."""

import os
import socket

import pytest
import trio

from gossip.host import HostConfig, HostError, dialable, open_host, peer_id_from_public_key

pytestmark = pytest.mark.slow

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
STRANGER = peer_id_from_public_key(b"\x02" * 32)


class Resolver(trio.abc.HostnameResolver):
    """Answers every name with `addresses` (IPv4 ones), recording each question; or never, if `hang`."""

    def __init__(self, addresses: list[str], *, hang: bool = False) -> None:
        self.addresses, self.hang = addresses, hang
        self.asked: list[tuple[bytes, int]] = []

    async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        self.asked.append((host, family))
        if self.hang:
            await trio.sleep_forever()
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in self.addresses]

    async def getnameinfo(self, sockaddr, flags):
        raise NotImplementedError


def port_of(listen_addr: str) -> str:
    return listen_addr.split("/")[4]


async def test_a_peer_is_dialled_by_a_dns_name_that_resolves_from_etc_hosts() -> None:
    """py-libp2p's own resolver reads no /etc/hosts, and dialled the unresolved name ("IP address not found in
    multiaddr"); connect() refused /dns4 outright."""
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as a, open_host(os.urandom(32), LOOPBACK) as b:
            port = port_of(b.listen_addrs[0])
            for protocol in ("dns4", "dns"):
                addr = f"/{protocol}/localhost/tcp/{port}/p2p/{b.peer_id}"
                assert dialable(addr)
                assert await a.connect(addr) == b.peer_id
                assert a.connected_peers() == [b.peer_id]
                await a.disconnect(b.peer_id)


async def test_each_name_protocol_asks_for_its_own_records() -> None:
    """/dns4 resolves A records only, /dns6 AAAA only, /dns both (multiaddr's protocol table)."""
    resolver = Resolver(["127.0.0.1"])
    trio.socket.set_custom_hostname_resolver(resolver)
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as a:
            for protocol in ("dns4", "dns6", "dns"):
                with pytest.raises(HostError):
                    await a.connect(f"/{protocol}/peer.example/tcp/1/p2p/{STRANGER}")
    assert resolver.asked == [(b"peer.example", socket.AF_INET), (b"peer.example", socket.AF_INET6),
                              (b"peer.example", socket.AF_UNSPEC)]


async def test_the_resolved_addresses_are_dialled_in_order_until_one_connects() -> None:
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as a, open_host(os.urandom(32), LOOPBACK) as b:
            port = port_of(b.listen_addrs[0])
            addr = f"/dns4/peer.example/tcp/{port}/p2p/{b.peer_id}"
            trio.socket.set_custom_hostname_resolver(Resolver(["127.0.0.2", "127.0.0.3", "127.0.0.1"]))
            assert await a.connect(addr) == b.peer_id  # (nothing listens on the first two: refused at once)
            await a.disconnect(b.peer_id)
            trio.socket.set_custom_hostname_resolver(Resolver(["127.0.0.3", "127.0.0.2"]))
            with pytest.raises(HostError) as refused:
                await a.connect(addr)
    assert str(refused.value).startswith(f"dial {addr}: /ip4/127.0.0.3/tcp/{port}: ")
    assert f"; /ip4/127.0.0.2/tcp/{port}: " in str(refused.value)


async def test_a_name_that_does_not_resolve_is_a_host_error_naming_it_and_the_resolver_s_reason() -> None:
    addr = f"/dns4/nonexistent.invalid/tcp/4001/p2p/{STRANGER}"
    reason = ""
    try:
        socket.getaddrinfo("nonexistent.invalid", 4001, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as error:
        reason = error.strerror
    assert reason, "nonexistent.invalid resolved here (RFC 6761 says it never does)"
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as a:
            with pytest.raises(HostError) as refused:
                await a.connect(addr)
    assert str(refused.value) == f"dial {addr}: cannot resolve 'nonexistent.invalid' (A records): {reason}"


async def test_a_resolver_that_never_answers_fails_the_dial_at_its_timeout() -> None:
    trio.socket.set_custom_hostname_resolver(Resolver([], hang=True))
    addr = f"/dns/peer.example/tcp/4001/p2p/{STRANGER}"
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK, config=HostConfig(dial_timeout=0.2)) as a:
            with pytest.raises(HostError) as refused:
                await a.connect(addr)
    assert str(refused.value) == f"dial {addr}: no answer from the resolver for 'peer.example' within 0.2 s"


async def test_a_dnsaddr_address_is_refused_before_any_lookup() -> None:
    resolver = Resolver(["127.0.0.1"])
    trio.socket.set_custom_hostname_resolver(resolver)
    addr = f"/dnsaddr/bootstrap.example/p2p/{STRANGER}"
    with trio.fail_after(20):
        async with open_host(os.urandom(32), LOOPBACK) as a:
            with pytest.raises(HostError, match="/dnsaddr is not supported"):
                await a.connect(addr)
    assert not dialable(addr) and resolver.asked == []
