"""Nodes of different networks (`vouchnet init --network`), over real libp2p on loopback: a peer of another network
holds none of the node's records, so it neither completes the node's start-up sync nor is asked to cosign its
checkpoints; each node says, once, that the other is on another network, and lets it go (dialling it, if it does,
ever less often, 30 s to an hour apart)."""

from __future__ import annotations

import logging
import re

import trio

from .in_process import ran_a_round, running


async def test_a_peer_of_another_network_neither_completes_the_start_up_sync_nor_is_asked_to_cosign(tmp_path, caplog):
    """Before: the node on othernet had its start-up sync done by the vouchnet node it dialled, and asked it to
    cosign (declined, 404). Its only peer found on another network, not dialled again for 30 s at least, the
    start-up sync (a shorter wait) ends at once, "unreachable", its WARNING naming the peer and its network (before:
    it waited the whole of startup_sync_seconds, and said only that no peer completed a round: "timed_out")."""
    with trio.fail_after(60), caplog.at_level(logging.WARNING, logger="vouchnet.node"):
        async with running(tmp_path / "a", network="vouchnet") as a:
            started = trio.current_time()
            async with running(tmp_path / "b", network="othernet", bootstrap=(a.host.listen_addrs[0],),
                               settings={"startup_sync_seconds": 25.0}) as b:  # (under APART_FIRST / 2)
                assert b.startup_sync == "unreachable" and trio.current_time() - started < 20
                assert re.search(
                    re.escape("no peer it dials could be connected for a catch-up sync: it stopped waiting after ")
                    + r"[0-9]+(\.[0-9]+)? s" + re.escape(
                        " of the 25 s it may wait ([p2p] startup_sync_seconds), as each one's last dial failed or "
                        "found it on another network, or it is connected but refused /vouchnet/sync/1, and none is "
                        f"dialled again before then ({a.host.peer_id} (bootstrap): the peer is on network 'vouchnet', "
                        "not this node's); signing without it"), caplog.text)
                published = trio.Event()
                b.witnessing.listeners.append(lambda note: published.set())
                if b.witnessing.checkpoint_note() is None:
                    await published.wait()  # its first checkpoint, once its witnesses asked answered
                assert (b.witnessing.stats.cosign_requests, dict(b.witnessing.stats.declined)) == (0, {})
                # Each heard from the other (its request or its answer) and counted it once.
                assert (a.sync.stats.peers_other_network, b.sync.stats.peers_other_network) == (1, 1)
                assert b.sync.stats.rounds == 0 and a.sync.stats.rounds == 0
                # b's bootstrap peer is shown with its network, so dialled ever less often (before: within a minute)
                [boot] = [p for p in b.peer_manager.known(after=None, limit=5) if p.peer_id == a.host.peer_id]
                assert (boot.source, boot.other_network) == ("bootstrap", "vouchnet")
    said = sorted(r.getMessage().split(": it holds")[0] for r in caplog.records
                  if r.getMessage().startswith("peer ") and "is on network" in r.getMessage())
    assert said == sorted([f"peer {b.host.peer_id} is on network 'othernet', this node on 'vouchnet'",
                           f"peer {a.host.peer_id} is on network 'vouchnet', this node on 'othernet'"])


async def test_a_peer_found_on_another_network_is_shown_on_ours_once_a_sync_round_with_it_runs_to_the_end(tmp_path):
    """Its node re-made on our network, connected again before a minute passed: the sync service tells the peer
    manager (before: shown on the other network for as long as the connection lasted)."""
    with trio.fail_after(60):
        async with running(tmp_path / "a") as a:
            async with running(tmp_path / "b", bootstrap=(a.host.listen_addrs[0],),
                               settings={"sync_interval": 0.2}) as b:
                await ran_a_round(b)
                b.peer_manager.other_network(a.host.peer_id, "othernet")  # (as its node's earlier run said)
                told = trio.Event()  # (told after the daemon's listeners)
                b.sync.same_network_listeners.append(lambda peer: told.set())
                await told.wait()
                [boot] = [p for p in b.peer_manager.known(after=None, limit=5) if p.peer_id == a.host.peer_id]
                assert (boot.connected, boot.other_network, boot.last_error) == (True, None, None)
