"""Peers and orgs of another network (`vouchnet init --network`) and the peer manager (DESIGN.md §5): a peer the sync
handshake finds on another network is dialled ever less often (a minute after the first finding, doubling up to an
hour) and shown with that network, not redialled every minute;
an `org` record of another network has nothing dialled. A stand-in host counts the dials; trio's mock clock stands in
for time."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import trio

from gossip.host import peer_id_from_public_key
from gossip.peers import APART_BACKOFF, APART_FIRST, DialSchedule, PeerManager, apart_error
from gossip.replica import Replica
from gossip.store import RecordStore
from vouching import org_body, vouch_body

from ..factories import Org
from .test_peers_hostile import LAN, DialCountingHost, addr, running

APART = "the peer is on network 'othernet', not this node's"


@pytest.fixture
def replica(tmp_path) -> Iterator[Replica]:
    with RecordStore.open(tmp_path) as store:
        yield Replica(Org().key, store, roots=(), max_hops=3, held_limit=100)


@pytest.mark.parametrize("heard_first", [True, False], ids=["heard-then-disconnected", "disconnected-then-heard"])
def test_a_peer_found_on_another_network_is_dialled_a_minute_later_and_shown_with_it(heard_first):
    """The sync service hears it (its answer, or its request) around when the connection drops, in either order."""
    schedule = DialSchedule(min_backoff=1, max_backoff=60, stable_after=60, rng=random.Random(1))
    schedule.add("p", [addr("p")])
    schedule.connected("p", now=0)
    if heard_first:
        schedule.other_network("p", "othernet", now=0.5)
    schedule.disconnected("p", now=0.6)
    if not heard_first:
        schedule.other_network("p", "othernet", now=0.7)
    [peer] = schedule.known([], after=None, limit=1, now=1)
    assert (peer.source, peer.other_network, peer.last_error) == ("bootstrap", "othernet", APART)
    assert APART_FIRST / 2 - 1 <= peer.next_dial_in <= APART_FIRST
    assert schedule.due(now=APART_FIRST / 2 - 1, connected=(), budget=5) == []
    assert schedule.due(now=APART_FIRST + 1, connected=(), budget=5) == [("p", [addr("p")])]


def test_each_connection_found_on_another_network_doubles_the_wait_up_to_an_hour():
    """A node misconfigured for a moment (a bootstrap node started on another network, then mended) was not dialled
    for an hour by those that found it so, unless it dialled them. The sync service tells each connection's finding
    twice (the answer to our request, and the peer's own request): it counts once (before, the wait quadrupled)."""
    schedule = DialSchedule(min_backoff=1, max_backoff=60, stable_after=60, rng=random.Random(1))
    schedule.add("p", [addr("p")])
    now, waits = 0.0, []
    for _ in range(9):
        schedule.connected("p", now)
        schedule.other_network("p", "othernet", now)
        schedule.disconnected("p", now)
        schedule.other_network("p", "othernet", now)
        [peer] = schedule.known([], after=None, limit=1, now=now)
        waits.append(peer.next_dial_in)
        now += peer.next_dial_in
    nominal = [min(APART_FIRST * 2 ** i, APART_BACKOFF) for i in range(9)]
    assert all(limit / 2 <= wait <= limit for wait, limit in zip(waits, nominal)), waits
    assert nominal[-1] == APART_BACKOFF
    schedule.same_network("p")  # its node re-made on ours: a sync round with it ran to the end
    schedule.other_network("p", "othernet", now)
    [peer] = schedule.known([], after=None, limit=1, now=now)
    assert peer.next_dial_in <= APART_FIRST


def test_a_peer_on_another_network_that_then_cannot_be_reached_is_still_dialled_as_far_apart():
    schedule = DialSchedule(min_backoff=1, max_backoff=1, stable_after=60, rng=random.Random(1))
    schedule.add("p", [addr("p")])
    for _ in range(3):
        schedule.connected("p", now=0)
        schedule.other_network("p", "othernet", now=0)
        schedule.disconnected("p", now=0)
    assert 4 * APART_FIRST / 2 <= schedule.failed("p", now=1000, error="dial: connection refused") <= 4 * APART_FIRST
    [peer] = schedule.known([], after=None, limit=1, now=1000)
    assert (peer.other_network, peer.last_error) == ("othernet", "dial: connection refused")


def test_a_peer_found_on_another_network_is_forgotten_so_once_a_connection_to_it_lasts_or_it_is_retried():
    """Its node re-made on our network, or its address mended (the connection lasts), or unblocked by the
    operator: dialled at the usual backoff again."""
    schedule = DialSchedule(min_backoff=1, max_backoff=60, stable_after=60, rng=random.Random(1))
    schedule.add("p", [addr("p")])
    schedule.other_network("p", "othernet", now=0)
    schedule.connected("p", now=APART_BACKOFF)
    schedule.disconnected("p", now=APART_BACKOFF + 100)
    [peer] = schedule.known([], after=None, limit=1, now=APART_BACKOFF + 100)
    assert (peer.other_network, peer.failures, peer.last_error, peer.next_dial_in) == (None, 0, None, 1)
    schedule.other_network("p", "othernet", now=APART_BACKOFF + 100)
    schedule.retry_now("p")
    [peer] = schedule.known([], after=None, limit=1, now=APART_BACKOFF + 100)
    assert (peer.other_network, peer.next_dial_in) == (None, 0)


def test_a_rotated_peer_found_on_another_network_stays_so():
    schedule = DialSchedule(rng=random.Random(1))
    schedule.announce("old", [addr("old")])
    schedule.other_network("old", "othernet", now=0)
    schedule.disconnected("old", now=0)  # (found so on a connection that did not last: a failure)
    schedule.moved("old", "new")
    [moved] = schedule.known([], after=None, limit=1, now=0)
    assert (moved.peer_id, moved.other_network, moved.last_error) == ("new", "othernet", apart_error("othernet"))
    assert APART_FIRST / 2 <= moved.next_dial_in <= APART_FIRST
    schedule.same_network("new")  # (its node re-made on ours: the error, its node's, goes with it)
    [back] = schedule.known([], after=None, limit=1, now=0)
    assert (back.other_network, back.last_error, back.failures) == (None, None, 1)


def test_a_peer_not_dialled_is_not_kept_for_being_on_another_network():
    """An inbound peer of another network (or a fresh key of it, by the thousand) is not made a target."""
    schedule = DialSchedule()
    schedule.other_network("stranger", "othernet", now=0)
    assert schedule.size == 0 and schedule.known([], after=None, limit=5, now=0) == []


async def test_a_bootstrap_peer_on_another_network_is_dialled_ever_less_often_not_every_minute(replica,
                                                                                              autojump_clock):
    """Before: a bootstrap peer of another network, disconnected by the sync service each time it answered, was
    dialled again at the usual backoff (a minute at most), for ever: about 70 dials an hour."""
    host = DialCountingHost(reachable={"boot"})
    dialled_at = []
    async with running(host, replica, bootstrap=[addr("boot")], max_peers=5) as manager:
        for _ in range(6 * 3600):  # six hours: the sync service finds it on othernet at each connection
            if "boot" in host.connected:
                dialled_at.append(trio.current_time())
                manager.other_network("boot", "othernet")  # (its answer to our request, and its own request)
                manager.other_network("boot", "othernet")
                host.drop("boot")
            await trio.sleep(1)
        [known] = manager.known(after=None, limit=5)
    gaps = [later - earlier for earlier, later in zip(dialled_at, dialled_at[1:])]
    # waits of 1, 2, 4 ... 32 minutes, then an hour, each jittered down to half at most: 7 dials before the waits
    # reach the hour, then one each half hour at most (it was some 420 in six hours)
    assert len(host.dialled) == len(dialled_at) <= 7 + 12, gaps
    assert gaps[0] <= APART_FIRST + 2 and APART_BACKOFF / 2 <= gaps[-1] <= APART_BACKOFF + 2, gaps
    assert (known.connected, known.other_network, known.last_error) == (False, "othernet", APART)


def test_an_org_record_of_another_network_has_none_of_its_addresses_dialled(replica):
    """Before: its addresses were dialled as any org's, so an org in the horizon could have the node dial
    addresses of its choosing in another network's name."""
    schedule = DialSchedule()
    PeerManager(object(), replica, network="test", bootstrap=[], max_peers=5,  # type: ignore[arg-type]
                schedule=schedule, own_addrs=LAN)
    org = Org()
    replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
    replica.accept([org.record("org", org_body("o", "othernet", ["/ip4/10.0.0.1/tcp/4001"]))])
    assert (schedule.size, schedule.due(now=0, connected=(), budget=5)) == (0, [])


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "restarted"])
def test_an_org_that_moved_to_another_network_has_its_earlier_addresses_withdrawn(replica, restarted):
    """An org's latest `org` record names its addresses; one naming another network names none for us. A bootstrap
    peer whose org moved keeps the address the config names."""
    moved, bootstrapped = Org(), Org()
    moved_peer, boot_peer = (peer_id_from_public_key(bytes(o.key.verify_key)) for o in (moved, bootstrapped))
    boot_addr = f"/ip4/10.0.0.3/tcp/4001/p2p/{boot_peer}"
    schedule = DialSchedule()
    PeerManager(object(), replica, network="test", bootstrap=[boot_addr], max_peers=5,  # type: ignore[arg-type]
                schedule=schedule, own_addrs=LAN)
    for org, ip in ((moved, "10.0.0.1"), (bootstrapped, "10.0.0.2")):
        replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
        replica.accept([org.record("org", org_body("o", "test", [f"/ip4/{ip}/tcp/4001"]))])
    assert dict(schedule.due(now=0, connected=(), budget=5)) == {
        moved_peer: [f"/ip4/10.0.0.1/tcp/4001/p2p/{moved_peer}"],
        boot_peer: [f"/ip4/10.0.0.2/tcp/4001/p2p/{boot_peer}", boot_addr]}
    for org in (moved, bootstrapped):
        replica.accept([org.record("org", org_body("o", "othernet", ["/ip4/10.0.0.9/tcp/4001"]))])
    if restarted:  # (the manager reads the org records the store holds, in the order accepted)
        schedule = DialSchedule()
        PeerManager(object(), replica, network="test", bootstrap=[boot_addr], max_peers=5,  # type: ignore[arg-type]
                    schedule=schedule, own_addrs=LAN)
    assert schedule.due(now=0, connected=(), budget=5) == [(boot_peer, [boot_addr])]
    assert [p.peer_id for p in schedule.known([], after=None, limit=5, now=0)] == [boot_peer]


def test_a_peer_found_on_another_network_is_dialled_as_any_once_a_sync_round_shows_it_on_ours():
    """Its node re-made on our network and connected again within the minute a connection must last: before, it was
    shown on the other network while connected, and dialled an hour after that connection dropped early."""
    schedule = DialSchedule(min_backoff=1, max_backoff=60, stable_after=60, rng=random.Random(1))
    schedule.add("p", [addr("p")])
    schedule.other_network("p", "othernet", now=0)
    schedule.connected("p", now=10)
    schedule.same_network("p")
    [peer] = schedule.known(["p"], after=None, limit=1, now=20)
    assert (peer.connected, peer.other_network, peer.last_error) == (True, None, None)
    schedule.disconnected("p", now=30)  # within the minute: a failed dial, at the usual backoff
    [peer] = schedule.known([], after=None, limit=1, now=30)
    assert peer.other_network is None and peer.next_dial_in <= 1
    schedule.same_network("stranger")  # (an inbound peer, not dialled: nothing to mend)
    assert schedule.size == 1


@pytest.mark.parametrize("moved_with", ["its first record", "a later record", "its first record, then a rotation"])
def test_an_org_that_rotated_then_moved_to_another_network_is_not_dialled_after_a_restart_either(replica, moved_with):
    """Its old key's addresses, moved to the new key by the rotation, are withdrawn by the new key's record of
    another network. Before: so while running, but a restart learned the org records before following the
    rotation, which carried the old key's addresses over again: they were dialled. The new key's own rotation record
    is an aside (as `_learn` has it): one naming our network does not have them dialled after a restart either."""
    old = Org()
    replica.issue("vouch", vouch_body(old.did, 0.9, "org-peer"))
    replica.accept([old.record("org", org_body("o", "test", ["/ip4/10.0.0.1/tcp/4001"]))])
    schedule = DialSchedule()
    PeerManager(object(), replica, network="test", bootstrap=[], max_peers=5,  # type: ignore[arg-type]
                schedule=schedule, own_addrs=LAN)
    new = Org(ts=old.ts)
    replica.accept([old.record("org", org_body("o", "test", next=new.did))])
    first_network = "test" if moved_with == "a later record" else "othernet"
    replica.accept([new.record("org", org_body("o", first_network, prior=old.did))])
    if moved_with == "a later record":
        replica.accept([new.record("org", org_body("o", "othernet", ["/ip4/10.0.0.7/tcp/4001"]))])
    if moved_with == "its first record, then a rotation":
        replica.accept([new.record("org", org_body("o", "test", next=Org().did))])
    restarted = DialSchedule()
    PeerManager(object(), replica, network="test", bootstrap=[], max_peers=5,  # type: ignore[arg-type]
                schedule=restarted, own_addrs=LAN)
    for dials in (schedule, restarted):
        assert (dials.size, dials.due(now=0, connected=(), budget=5)) == (0, [])



def test_an_org_record_of_another_network_withdraws_only_its_issuers_addresses(replica):
    """A hostile org in the horizon signs records of another network naming a victim org's addresses and peer id:
    the victim is dialled as before: withdrawal follows the record's signer, its iss (a record naming the victim's iss
    must bear its signature, verified before any record is accepted)."""
    victim, hostile = Org(), Org()
    victim_peer = peer_id_from_public_key(bytes(victim.key.verify_key))
    for org in (victim, hostile):
        replica.issue("vouch", vouch_body(org.did, 0.9, "org-peer"))
    replica.accept([victim.record("org", org_body("v", "test", ["/ip4/10.0.0.1/tcp/4001"]))])
    schedule = DialSchedule()
    PeerManager(object(), replica, network="test", bootstrap=[], max_peers=5,  # type: ignore[arg-type]
                schedule=schedule, own_addrs=LAN)
    victim_dials = [(victim_peer, [f"/ip4/10.0.0.1/tcp/4001/p2p/{victim_peer}"])]
    assert replica.accept([hostile.record("org", org_body(
        "v", "othernet", [f"/ip4/10.0.0.1/tcp/4001/p2p/{victim_peer}"]))]).accepted
    assert schedule.due(now=0, connected=(), budget=5) == victim_dials
