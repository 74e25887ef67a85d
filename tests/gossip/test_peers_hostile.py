"""Peer management against hostile orgs and peers (DESIGN.md §5): what an `org` record or a stream of connections
can make a node dial, how often, and whether it can starve the node of its honest peers. A stand-in host counts
what PeerManager asks of it; trio's mock clock stands in for time."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
import trio

from gossip.host import HostError, PeerEvent, peer_id_from_public_key
from gossip.peers import MAX_DIAL_BURST, MAX_DIAL_RATE, MAX_DIALS, DialSchedule, PeerManager
from gossip.replica import Replica
from gossip.store import RecordStore
from vouching import org_body, vouch_body

from ..factories import Org

LOOPS_ALLOWED = 10_000  # calls of connected_peers() a test may take: a manager past it is spinning
# Where a node on a private network (its org record names this address) and one on loopback (a testnet's) listen: the
# first dials the private addresses org records name, the second the loopback ones (gossip.scopes).
LAN = ["/ip4/10.0.0.2/tcp/4001"]
LOOPBACK = ["/ip4/127.0.0.1/tcp/4001/p2p/me"]


def addr(peer: str) -> str:
    return f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}"


class DialCountingHost:
    """What PeerManager asks of a host: `connected` peers, and dials that fail (saying `refusal`) unless the peer is
    in `reachable` (slowly, at a tarpit's address: one that accepts TCP and never answers)."""

    def __init__(self, *, connected: set[str] = frozenset(), reachable: set[str] = frozenset(),
                 tarpits: set[str] = frozenset(), refusal: str = "connection refused") -> None:
        self.connected, self.reachable, self.tarpits = set(connected), set(reachable), set(tarpits)
        self.refusal = refusal  # why a dial fails, after the address
        self.dialled: list[str] = []
        self.dialling = self.most_dialling = 0
        self.listen_addrs: list[str] = []
        self.loops = 0
        self._events_send, self._events = trio.open_memory_channel[PeerEvent](100)

    def connected_peers(self) -> list[str]:
        self.loops += 1
        assert self.loops <= LOOPS_ALLOWED, "the manager loops without waiting"
        return sorted(self.connected)

    def peer_events(self) -> trio.MemoryReceiveChannel[PeerEvent]:
        return self._events

    def set_protected(self, is_protected: Callable[[str], bool]) -> None:
        self.protected = is_protected

    def drop(self, peer: str) -> None:
        """The peer's connection closed."""
        self.connected.discard(peer)
        self._events_send.send_nowait(PeerEvent(peer, connected=False))

    async def connect(self, address: str) -> str:
        """Fails unless the peer is reachable, at once; after the dial timeout (10 s) at a tarpit's address."""
        self.dialled.append(address)
        peer = address.rpartition("/p2p/")[2]
        self.dialling += 1
        self.most_dialling = max(self.most_dialling, self.dialling)
        try:
            await trio.sleep(10 if address.rpartition("/p2p/")[0] in self.tarpits else 0.1)
        finally:
            self.dialling -= 1
        if peer not in self.reachable:
            raise HostError(f"dial {address}: {self.refusal}")
        self.connected.add(peer)
        self._events_send.send_nowait(PeerEvent(peer, connected=True))
        return peer


@asynccontextmanager
async def running(host: DialCountingHost, replica: Replica, **kwargs: object) -> AsyncIterator[PeerManager]:
    manager = PeerManager(host, replica, network="test", **kwargs)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        yield manager
        nursery.cancel_scope.cancel()


@pytest.fixture
def replica(tmp_path) -> Iterator[Replica]:
    with RecordStore.open(tmp_path) as store:
        yield Replica(Org().key, store, roots=(), max_hops=3, held_limit=100)


async def test_a_full_dial_budget_waits_instead_of_spinning(replica, autojump_clock):
    """With its `max_peers` connected, a peer due to be dialled made the manager's loop wake at once, again and
    again (it woke at the due time, already past, with no budget to dial): a node spun a CPU core for as long as
    it knew one org more than it may connect to."""
    host = DialCountingHost(connected={"a"})
    async with running(host, replica, bootstrap=[addr("a"), addr("b")], max_peers=1):
        await trio.sleep(60)
        assert host.dialled == []
        assert host.loops < 10
        host.drop("a")  # a slot is free: the peer waiting longest is dialled
        await trio.sleep(0.5)
    assert host.dialled == [addr("b")]


async def test_peers_that_dialled_in_do_not_use_the_budget_for_the_peers_it_keeps(replica, autojump_clock):
    """Every connected peer counted against `max_peers`, those that dialled in too: peers of fresh keys connecting
    in (a node's host admits max_peers of them) left no budget to dial the bootstrap peers."""
    host = DialCountingHost(connected={"stranger1", "stranger2"}, reachable={"a"})
    async with running(host, replica, bootstrap=[addr("a")], max_peers=2):
        await trio.sleep(1)
    assert host.dialled == [addr("a")]
    assert host.connected == {"stranger1", "stranger2", "a"}


def test_an_org_claiming_to_rotate_to_another_org_does_not_lend_it_its_addresses(replica):
    """An org's rotation record moved its addresses to the key it named, though that key never named it back (a
    claim alone links nothing, vouching.succession): an org inside the horizon, naming an honest bootstrap peer,
    had the node dial that peer first at 16 addresses of its choosing (tarpits, say: 10 s each)."""
    honest, hostile = Org(), Org()
    honest_peer = peer_id_from_public_key(bytes(honest.key.verify_key))
    replica.issue("vouch", vouch_body(hostile.did, 0.9, "org-peer"))
    schedule = DialSchedule()
    PeerManager(object(), replica, network="test", bootstrap=[addr(honest_peer)], max_peers=5,  # type: ignore[arg-type]
                schedule=schedule, own_addrs=LAN)
    replica.accept([hostile.record("org", org_body("h", "test", [f"/ip4/10.9.0.{i}/tcp/1" for i in range(16)]))])
    replica.accept([hostile.record("org", org_body("h", "test", next=honest.did))])
    assert dict(schedule.due(now=0, connected=(), budget=5))[honest_peer] == [addr(honest_peer)]


def test_an_org_records_addresses_that_no_node_can_dial_are_not_kept(replica):
    """Every address an org record named was kept and tried at each dial, whatever it was; and one that was only
    "/p2p/<its peer id>" made following the org's rotation raise in the middle (a listener error, logged): the new
    key was left without the addresses the old one announced."""
    org = Org()
    peer = peer_id_from_public_key(bytes(org.key.verify_key))
    replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
    schedule = DialSchedule()
    PeerManager(object(), replica, network="test", bootstrap=[], max_peers=5,  # type: ignore[arg-type]
                schedule=schedule, own_addrs=LAN)
    replica.accept([org.record("org", org_body("o", "test", [
        f"/p2p/{peer}", "/dns/victim.example/tcp/80", "/ip4/10.0.0.1/udp/4001/quic", "/ip4/10.0.0.1/tcp/4001/ws",
        "/ip4/10.0.0.1/tcp/99999", "/ip4/10.0.0.1/tcp/4002"]))])
    assert schedule.due(now=0, connected=(), budget=5) == [(peer, [f"/ip4/10.0.0.1/tcp/4002/p2p/{peer}"])]
    new, rotation, first = org.rotate()
    replica.accept([rotation, first])
    new_peer = peer_id_from_public_key(bytes(new.key.verify_key))
    assert schedule.due(now=0, connected=(), budget=5) == [(new_peer, [f"/ip4/10.0.0.1/tcp/4002/p2p/{new_peer}"])]
    assert replica.listener_errors == 0


def test_an_org_cannot_have_the_node_keep_peer_ids_other_than_its_own(replica):
    """Stop 43's brief asked whether one org could mint peers the node dials, whose gap reports each count as a share
    of the gap queue and which a gap fetch asks first (gossip.gap_queue, SyncService.dialled): its `org` records may
    name any number of addresses, but each naming another peer id is passed over, so the node keeps the org's own
    peer id alone, however many records it signs."""
    org = Org()
    peer = peer_id_from_public_key(bytes(org.key.verify_key))
    minted = [peer_id_from_public_key(bytes(Org().key.verify_key)) for _ in range(3)]
    replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
    schedule = DialSchedule()
    manager = PeerManager(object(), replica, network="test", bootstrap=[], max_peers=5,  # type: ignore[arg-type]
                          schedule=schedule, own_addrs=LAN)
    for i, other in enumerate(minted):
        replica.accept([org.record("org", org_body("o", "test", [f"/ip4/10.0.0.{i + 1}/tcp/4001/p2p/{other}",
                                                                  f"/ip4/10.0.0.{i + 1}/tcp/4002"]))])
    assert [manager.keeps(each) for each in (peer, *minted)] == [True, False, False, False]
    assert schedule.due(now=0, connected=(), budget=5) == [(peer, [f"/ip4/10.0.0.3/tcp/4002/p2p/{peer}"])]


async def test_a_peer_that_hangs_up_at_once_is_redialled_with_growing_backoff(replica, autojump_clock):
    """A dial that connected forgot the peer's failures, and a dropped connection was redialled after the minimum
    backoff (1 s): a peer that accepts and hangs up at once was dialled every second for ever, by every node."""
    host = DialCountingHost(reachable={"a"})
    async with running(host, replica, bootstrap=[addr("a")], max_peers=5):
        for _ in range(600):  # the peer hangs up whenever it is connected; ten minutes of it
            if "a" in host.connected:
                host.drop("a")
            await trio.sleep(1)
    assert len(host.dialled) < 30  # 60 s backoff at most, jittered (0.5-1): about 14 in ten minutes; 300 before


async def test_orgs_naming_tarpits_neither_fill_the_hosts_dials_nor_delay_a_bootstrap_peer(replica, autojump_clock):
    """40 orgs in the horizon naming addresses that accept TCP and never answer: the manager dialled up to max_peers
    (50) of them at once, each dial waiting out the host's 10 s dial timeout, while py-libp2p runs 32 dials at a
    time and queues the rest, the host's own timeout running (40 such dials delayed a dial to a live peer on loopback
    by 9.7 s); and a bootstrap peer waited its turn behind them."""
    tarpit = "/ip4/127.0.0.1/tcp/9"
    host = DialCountingHost(reachable={"boot"}, tarpits={tarpit})
    host.listen_addrs = LOOPBACK
    for _ in range(40):
        org = Org()
        replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
        replica.accept([org.record("org", org_body("o", "test", [tarpit]))])
    async with running(host, replica, bootstrap=[addr("boot")], max_peers=50):
        await trio.sleep(0.5)
        assert "boot" in host.connected
        await trio.sleep(600)
    assert host.most_dialling <= MAX_DIALS < 32


async def test_many_orgs_naming_one_victim_get_it_dialled_at_a_bounded_rate(replica, autojump_clock):
    """Each org's dials are bounded (its 16 addresses an attempt, attempts 60 s apart at most), but not all orgs'
    together: 100 orgs in the horizon naming 16 ports of one victim had every node dial it about 36 times a second."""
    victim = "/ip4/10.0.0.1/tcp/"
    host = DialCountingHost()
    host.listen_addrs = LAN
    for _ in range(100):
        org = Org()
        replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
        replica.accept([org.record("org", org_body("o", "test", [f"{victim}{port}" for port in range(16)]))])
    async with running(host, replica, bootstrap=[], max_peers=50):
        await trio.sleep(600)
    assert len(host.dialled) <= MAX_DIAL_RATE * 600 + MAX_DIAL_BURST


def test_a_rotation_does_not_reset_the_backoff_of_an_unreachable_org():
    """A rotated org's node was dialled at once as its successor, its backoff forgotten: an org that keeps rotating
    its key (two records a rotation) had every node dial its addresses after each rotation, whatever its backoff."""
    schedule = DialSchedule(min_backoff=1, max_backoff=60, rng=random.Random(1))
    schedule.announce("old", [addr("old")])
    for _ in range(8):
        schedule.failed("old", now=0, error="refused")
    schedule.moved("old", "new")
    assert schedule.due(now=29, connected=(), budget=5) == []
    assert schedule.due(now=60, connected=(), budget=5) == [("new", [addr("new")])]


def test_a_node_on_a_public_address_does_not_dial_other_orgs_loopback_or_private_addresses(replica):
    """An org record may name any address, and every node of a network dialled the loopback, private and link-local
    addresses an org named (its own SSH port, a Redis on its LAN, a cloud's metadata service), each with a
    multistream-select header: a request forgery by every node at once. A node dials such an address only if its
    own addresses are of that scope (gossip.scopes)."""
    org = Org()
    replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
    host = DialCountingHost()
    host.listen_addrs = ["/ip4/203.0.113.5/tcp/4001/p2p/me"]
    schedule = DialSchedule()
    PeerManager(host, replica, network="test", bootstrap=[], max_peers=5, schedule=schedule)  # type: ignore[arg-type]
    replica.accept([org.record("org", org_body("o", "test", [
        "/ip4/127.0.0.1/tcp/22", "/ip4/10.0.0.5/tcp/6379", "/ip4/169.254.169.254/tcp/80", "/ip6/::1/tcp/8700"]))])
    assert schedule.due(now=0, connected=(), budget=5) == []


# Addresses of every scope, as an org record names them (the node dials the first six or fewer).
NAMED = ["8.8.8.8", "10.0.0.5", "192.168.1.5", "::ffff:10.0.0.5", "127.0.0.1", "169.254.169.254", "0.0.0.0",
         "224.0.0.1"]


@pytest.mark.parametrize(("dial_private", "own", "boot_ip", "dialled"), [
    ("auto", "/ip4/127.0.0.1/tcp/4001", "1.2.3.5", ["8.8.8.8", "127.0.0.1"]),  # a testnet
    ("auto", "/ip4/10.0.0.2/tcp/4001", "1.2.3.5", ["8.8.8.8", "10.0.0.5", "192.168.1.5", "::ffff:10.0.0.5"]),
    ("auto", "/ip4/0.0.0.0/tcp/4001", "1.2.3.5", ["8.8.8.8"]),  # a wildcard is of no scope
    # announcing nothing, but bootstrapped from the LAN: it is on the LAN
    ("auto", "/ip4/0.0.0.0/tcp/4001", "10.9.9.9", ["8.8.8.8", "10.0.0.5", "192.168.1.5", "::ffff:10.0.0.5"]),
    ("always", "/ip4/1.2.3.4/tcp/4001", "1.2.3.5", NAMED[:-2]),
    ("never", "/ip4/10.0.0.2/tcp/4001", "10.9.9.9", ["8.8.8.8"]),
])
def test_the_addresses_of_org_records_a_node_dials_follow_dial_private(replica, dial_private, own, boot_ip, dialled):
    """An org record naming addresses of every scope: "auto" dials those of the node's own scopes and its bootstrap
    peers', "always" all, "never" public ones; an unspecified or multicast address none of them. A bootstrap peer,
    the operator's choice, is dialled wherever it is."""
    org, boot = Org(), Org()
    peer, boot_peer = (peer_id_from_public_key(bytes(o.key.verify_key)) for o in (org, boot))
    replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
    schedule = DialSchedule()
    boot_addr = f"/ip4/{boot_ip}/tcp/4001/p2p/{boot_peer}"
    PeerManager(DialCountingHost(), replica, network="test",  # type: ignore[arg-type]
                bootstrap=[boot_addr], max_peers=5, schedule=schedule, dial_private=dial_private, own_addrs=[own])
    replica.accept([org.record("org", org_body("o", "test", [
        f"/ip{6 if ':' in a else 4}/{a}/tcp/4001" for a in NAMED]))])
    due = dict(schedule.due(now=0, connected=(), budget=5))
    assert [a.split("/")[2] for a in due[peer]] == dialled
    assert due[boot_peer] == [boot_addr]


def _listening(replica: Replica, voucher: Org | None, orgs: list[Org], port: int) -> set[str]:
    """`orgs` vouched into the horizon (by `voucher`, or by the node's own org), each `org` record naming where it
    listens on loopback, from `port` on; their peer ids."""
    for n, org in enumerate(orgs):
        vouch = vouch_body(org.did, 0.9, "org-peer")
        replica.issue("vouch", vouch) if voucher is None else replica.accept([voucher.record("vouch", vouch)])
        replica.accept([org.record("org", org_body("org", "test", [f"/ip4/127.0.0.1/tcp/{port + n}"]))])
    return {peer_id_from_public_key(bytes(org.key.verify_key)) for org in orgs}


async def test_one_org_vouching_fresh_keys_in_takes_a_quarter_of_the_peers_it_dials_at_most(replica, autojump_clock):
    """Found by stop 44's brief: an org inside the horizon vouched 50 fresh keys in, each one's `org` record naming
    where it listens, and the node dialled each as an org of its own: they took all 50 of its `max_peers`, and the
    orgs whose records came after them were never dialled (an eclipse of the peers the node dials, for one vouch of
    its partner's each). The keys an org vouches in are in its group, and a group holds a quarter of them at most."""
    host = DialCountingHost()
    partner = Org()
    replica.issue("vouch", vouch_body(partner.did, 0.9, "org-peer"))
    fresh = _listening(replica, partner, [Org() for _ in range(50)], 5000)
    host.reachable = {*fresh}
    async with running(host, replica, bootstrap=[], max_peers=50, own_addrs=LOOPBACK):
        await trio.sleep(10)
        assert len(host.connected) == 50 // 4
        honest = _listening(replica, None, [Org() for _ in range(5)], 6000)
        host.reachable |= honest
        await trio.sleep(10)
        assert honest <= host.connected  # each an org the node's own org vouches for: a group of its own
        assert len(host.connected & fresh) == 50 // 4
        assert host.loops < 100  # (the keys left undialled wake no loop)
