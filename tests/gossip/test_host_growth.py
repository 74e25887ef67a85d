"""What a long-running host keeps per message it routes and per peer it met stays bounded (gossip.host quirks 41
and 42), over real connections on loopback."""

import os

import pytest
import trio

from gossip.host import HostConfig, open_host
from tests.gossip.test_host import LOOPBACK, TOPIC, accept_all

QUIET = HostConfig(heartbeat_interval=30)  # the tests run the heartbeats they need


@pytest.mark.slow
async def test_a_host_keeps_no_time_per_message_routed_past_a_heartbeat() -> None:
    """Quirk 41: every message published or relayed left a float in recent_message_deliveries for ever."""
    with trio.fail_after(30):
        async with open_host(os.urandom(32), LOOPBACK, config=QUIET) as a, \
                open_host(os.urandom(32), LOOPBACK, config=QUIET) as b:
            await a.subscribe(TOPIC, accept_all)
            inbox = await b.subscribe(TOPIC, accept_all)
            await a.connect(b.listen_addrs[0])
            await a.wait_for_mesh(TOPIC, b.peer_id)
            for n in range(50):
                await a.publish(TOPIC, b"message %d" % n)
            for _ in range(50):
                await inbox.receive()
            for host in (a, b):
                host._router.mesh_heartbeat()
                assert not any(host._router.recent_message_deliveries.values())
