"""Address scopes and which of them a node dials when an `org` record names them (gossip.scopes)."""

import ipaddress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gossip.addrs import AddrError
from gossip.scopes import Scope, addr_scope, dialled_scopes, scope

# IANA's special-purpose blocks and the IPv6 ones that embed an IPv4 address: random addresses rarely fall in them.
SPECIAL = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
           "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
           "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "::/8", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48",
           "100::/64", "2001::/23", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"]
addresses = st.one_of(st.ip_addresses(), st.sampled_from(SPECIAL).flatmap(lambda net: st.ip_addresses(network=net)))
v4_addresses = st.one_of(st.ip_addresses(v=4), st.sampled_from(SPECIAL[:15]).flatmap(
    lambda net: st.ip_addresses(network=net)))


def embedded_v4(address):
    """The IPv4 address an IPv6 one reaches, if it embeds one (IPv4-mapped, NAT64's well-known prefix, 6to4)."""
    if address.version == 6:
        if address in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(address.packed[-4:])
        return address.ipv4_mapped or address.sixtofour
    return None


@given(addresses)
@example(ipaddress.ip_address("0.0.0.0"))
@example(ipaddress.ip_address("::"))
@example(ipaddress.ip_address("255.255.255.255"))
@example(ipaddress.ip_address("::ffff:0.0.0.0"))
def test_the_scope_of_an_address_is_what_ipaddress_says_it_reaches(address):
    """Loopback and link-local exactly as ipaddress says, of the IPv4 address an IPv6 one embeds where it embeds one;
    unspecified and multicast addresses never dialled; no address that is not global public."""
    reached = embedded_v4(address) or address
    found = scope(address)
    assert (found is Scope.LOOPBACK) == reached.is_loopback
    assert (found is Scope.LINK_LOCAL) == reached.is_link_local
    if reached.is_unspecified or reached.is_multicast:
        assert found is Scope.UNDIALLABLE
    if found is Scope.PUBLIC:
        assert reached.is_global and not reached.is_reserved
    if found is Scope.PRIVATE:
        assert reached.is_private or reached.is_site_local
    assert (found is Scope.SHARED) == (reached.version == 4 and not reached.is_private and not reached.is_global)


@given(v4_addresses)
def test_an_ipv6_address_embedding_an_ipv4_one_has_its_scope(address):
    """::ffff:127.0.0.1 reaches 127.0.0.1 (a dual-stack socket), 64:ff9b::a9fe:a9fe 169.254.169.254 (NAT64)."""
    embedding = [ipaddress.IPv6Address(f"::ffff:{address}"), ipaddress.IPv6Address(f"64:ff9b::{address}"),
                 ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80))]
    assert [scope(a) for a in embedding] == [scope(address)] * 3


@pytest.mark.parametrize(("address", "expected"), [
    *[(a, Scope.LOOPBACK) for a in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "2002:7f00:1::1")],
    *[(a, Scope.PRIVATE) for a in ("10.0.0.5", "172.31.255.255", "192.168.1.1", "fd12:3456::1", "fec0::1")],
    ("100.64.0.1", Scope.SHARED),
    *[(a, Scope.LINK_LOCAL) for a in ("169.254.169.254", "64:ff9b::a9fe:a9fe", "fe80::1")],
    *[(a, Scope.UNDIALLABLE) for a in ("0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0", "224.0.0.1", "ff02::1")],
    *[(a, Scope.RESERVED) for a in ("203.0.113.5", "198.18.0.1", "240.0.0.1", "2001:db8::1", "::7f00:1")],
    *[(a, Scope.PUBLIC) for a in ("8.8.8.8", "172.32.0.1", "2606:4700::1", "64:ff9b::808:808")],
])
def test_scopes_of_known_addresses(address, expected):
    assert scope(ipaddress.ip_address(address)) is expected


def test_the_scope_of_a_multiaddr_is_its_ip_addresses():
    assert addr_scope("/ip6/::ffff:10.0.0.1/tcp/4001") is Scope.PRIVATE
    assert addr_scope("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWanything") is Scope.LOOPBACK
    with pytest.raises(AddrError):
        addr_scope("/dns4/node.example/tcp/4001")


@pytest.mark.parametrize(("dial_private", "own", "expected"), [
    ("auto", ["/ip4/127.0.0.1/tcp/4001"], {Scope.PUBLIC, Scope.LOOPBACK}),  # a testnet
    ("auto", ["/ip4/10.0.0.2/tcp/4001/p2p/12D3KooWme", "/ip6/fe80::1/tcp/4001"],
     {Scope.PUBLIC, Scope.PRIVATE, Scope.LINK_LOCAL}),
    ("auto", ["/ip4/1.2.3.4/tcp/4001"], {Scope.PUBLIC}),
    ("auto", ["/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001"], {Scope.PUBLIC}),  # wildcards: no scope of their own
    ("auto", [], {Scope.PUBLIC}),
    ("always", [], set(Scope) - {Scope.UNDIALLABLE}),
    ("never", ["/ip4/127.0.0.1/tcp/4001", "/ip4/10.0.0.2/tcp/4001"], {Scope.PUBLIC}),
])
def test_the_scopes_a_node_dials_follow_the_setting_and_its_own_addresses(dial_private, own, expected):
    assert dialled_scopes(dial_private, own) == expected
