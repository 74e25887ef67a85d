"""Orgs of another network (`vouchnet init --network`) and the peer manager (DESIGN.md §5): an `org` record of
another network has nothing dialled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gossip.host import peer_id_from_public_key
from gossip.peers import DialSchedule, PeerManager
from gossip.replica import Replica
from gossip.store import RecordStore
from vouching import org_body, vouch_body

from ..factories import Org
from .test_peers_hostile import LAN


@pytest.fixture
def replica(tmp_path) -> Iterator[Replica]:
    with RecordStore.open(tmp_path) as store:
        yield Replica(Org().key, store, roots=(), max_hops=3, held_limit=100)


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
