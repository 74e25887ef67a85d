"""The addresses a node listens on and dials (gossip.addrs): what each form takes, and that nothing else gets in."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossip.addrs import AddrError, TcpAddr, check_org_peer_id, parse_listen_addr, parse_peer_addr
from gossip.host import InvalidPeerId, dialable, peer_id_from_public_key, peer_public_key

PEER = peer_id_from_public_key(b"\x01" * 32)

peer_ids = st.binary(min_size=32, max_size=32).map(peer_id_from_public_key)
ports = st.integers(0, 65535)
ip_hosts = st.ip_addresses().map(lambda a: (f"ip{a.version}", str(a)))
labels = st.from_regex(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?", fullmatch=True)
dns_names = st.lists(labels, min_size=1, max_size=4).map(".".join).filter(lambda name: len(name) <= 253)
name_hosts = st.tuples(st.sampled_from(["dns", "dns4", "dns6"]), dns_names)


@given(ip_hosts, ports, peer_ids)
def test_an_address_by_ip_is_taken_everywhere_and_reads_back_the_same(host, port, peer_id):
    protocol, address = host
    transport = f"/{protocol}/{address}/tcp/{port}"
    assert parse_listen_addr(transport) == TcpAddr(protocol, address, port)
    for names in (True, False):
        parsed = parse_peer_addr(f"{transport}/p2p/{peer_id}", names=names)
        assert (str(parsed), parsed.peer_id, parsed.transport.is_name) == (f"{transport}/p2p/{peer_id}", peer_id, False)


@given(name_hosts, ports, peer_ids)
def test_an_address_by_dns_name_is_dialled_only_where_names_are_taken(host, port, peer_id):
    """A bootstrap address may name its host (the host resolves it); one in an org record, or one to listen on,
    may not."""
    addr = f"/{host[0]}/{host[1]}/tcp/{port}/p2p/{peer_id}"
    parsed = parse_peer_addr(addr)
    assert (str(parsed), parsed.transport.is_name) == (addr, True)
    assert dialable(addr) and not dialable(addr, names=False)
    with pytest.raises(AddrError, match="the node dials TCP only: must be /ip4/<address>/tcp/<port>/p2p/<peer id> "
                                        r"\(or /ip6\)"):
        parse_peer_addr(addr, names=False)
    with pytest.raises(AddrError, match=r"must be /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>$"):
        parse_listen_addr(addr.rpartition("/p2p/")[0])


@given(st.text(max_size=300) | st.from_regex(r"/(ip4|ip6|dns|dns4|dns6|dnsaddr)/[^/]{0,300}/tcp/[0-9+-]{0,8}"
                                             r"(/p2p/[1-9A-Za-z]{0,60})?", fullmatch=True))
def test_any_text_is_an_address_or_an_addr_error_never_another_exception(text):
    """An org record names any text up to 256 characters as an address: parsing it must not raise anything else."""
    for parse in (parse_listen_addr, parse_peer_addr):
        try:
            parse(text)
        except AddrError:
            pass


@pytest.mark.parametrize(("addr", "message"), [
    (f"/dnsaddr/bootstrap.libp2p.io/p2p/{PEER}", "/dnsaddr is not supported (it needs DNS TXT lookups, which the node "
     "does not make): name the peer's host with /dns4/<name>/tcp/<port>/p2p/<peer id>, or /dns (IPv4 and IPv6)"),
    (f"/dnsaddr/bootstrap.libp2p.io/tcp/4001/p2p/{PEER}", "/dnsaddr is not supported"),
    (f"/dns4/-boot.example/tcp/4001/p2p/{PEER}", "('-boot.example' is not a DNS name: labels of 1-63 letters, digits, "
     "'-' or '_', 253 characters in all)"),
    (f"/dns4/boot..example/tcp/4001/p2p/{PEER}", "'boot..example' is not a DNS name"),
    (f"/dns/{'a' * 64}.example/tcp/4001/p2p/{PEER}", "is not a DNS name"),
    (f"/dns/{'a.' * 127}a/tcp/4001/p2p/{PEER}", "is not a DNS name"),  # 255 characters
    (f"/dns4/boot example/tcp/4001/p2p/{PEER}", "not a multiaddr: must be /ip4/<address>/tcp/<port>/p2p/<peer id> "
     "(or /ip6, /dns, /dns4, /dns6)"),  # (it said /ip4 alone, to a peer named by DNS)
    (f"/ip4/::1/tcp/4001/p2p/{PEER}", "('::1' is not an IPv4 address)"),
    (f"/ip6/fe80::1%eth0/tcp/4001/p2p/{PEER}", "('fe80::1%eth0' is not an IPv6 address)"),  # (a zone is /ip6zone)
    (f"/ip4/127.0.0.1/tcp/65536/p2p/{PEER}", "(port 0-65535)"),
    (f"/ip4/127.0.0.1/tcp/+1/p2p/{PEER}", "(port 0-65535)"),
    (f"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{PEER}", "the node dials TCP only"),
    (f"/p2p/{PEER}", "the node dials TCP only"),
    ("/ip4/127.0.0.1/tcp/4001", "a peer address must end in /p2p/<peer id>"),
    (f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}/ws", "a peer address must end in /p2p/<peer id>"),
    ("/ip4/127.0.0.1/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "is not a PeerID of an org"),
    (f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER[:-1]}0", "is not a PeerID of an org"),
])
def test_an_address_the_node_cannot_dial_is_refused_saying_why(addr, message):
    with pytest.raises(AddrError) as refused:
        parse_peer_addr(addr)
    assert message in str(refused.value)
    assert not dialable(addr)


def test_the_largest_name_and_port_and_a_final_dot_are_taken():
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
    assert parse_peer_addr(f"/dns/{name}./tcp/65535/p2p/{PEER}").transport == TcpAddr("dns", f"{name}.", 65535)


def test_a_listen_address_is_by_ip_address_and_tcp():
    assert parse_listen_addr("/ip6/::/tcp/0") == TcpAddr("ip6", "::", 0)
    assert ipaddress.ip_address(parse_listen_addr("/ip4/0.0.0.0/tcp/4001").host).is_unspecified
    for bad in ("/dns4/localhost/tcp/4001", f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}", "/ip4/127.0.0.1"):
        with pytest.raises(AddrError, match="must be /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>"):
            parse_listen_addr(bad)


@given(st.binary(min_size=32, max_size=32))
def test_an_org_peer_id_is_checked_for_the_key_it_names(key):
    assert check_org_peer_id(peer_id_from_public_key(key)) == key


@given(st.one_of(st.text(max_size=60), peer_ids, peer_ids.map(lambda p: p[:-1] + "1"), peer_ids.map(lambda p: p + "1")))
def test_an_org_peer_id_is_what_py_libp2p_reads_as_an_ed25519_peer_id_and_nothing_else(text):
    """As gossip.host.peer_public_key reads it (the GET /v1/peers org of each peer), at a fraction of its cost."""
    try:
        expected = peer_public_key(text)
    except InvalidPeerId:
        expected = None
    try:
        assert check_org_peer_id(text) == expected
    except AddrError:
        assert expected is None
