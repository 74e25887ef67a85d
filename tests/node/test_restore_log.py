"""A node whose data directory was restored from an older copy holds a records ledger that grew again in another
order than the one it published checkpoints of (DESIGN §4): it must never sign a checkpoint contradicting one it
published (a witness, or any peer's fork detector, would turn the pair into equivocation evidence and flag the org
everywhere). A copy taken after its last published checkpoint is consistent with it and goes on as before."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import trio

from gossip.checkpoints import open_signed_checkpoint
from gossip.store import RecordStore
from ledger import cosigner_name
from node.config import NodeConfig, load_config
from node.daemon import Node, serve_node
from node.setup import init_data_dir
from vouching import vouch_body

from ..factories import new_did
from .in_process import holds, records_of, running

pytestmark = pytest.mark.slow
_NOWHERE = "/ip4/127.0.0.1/tcp/9"  # the discard port, a privileged one: nothing listens there
# b's sync interval. A record of a restarted a that gossip lost reaches b by b's anti-entropy, which pulls from a
# peer whose log shows no growth (a diverged node gossips no checkpoint) every 20 intervals: 2 s at this interval,
# 10 s at 0.5. (a's restarts went unheard by gossip in 5 of 8 runs before gossip.host quirks 53 and 54 were handled.)
B_SYNC_INTERVAL = 0.1


@asynccontextmanager
async def _serving(config: NodeConfig) -> AsyncIterator[Node]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_node, config)
        nursery.cancel_scope.cancel()


async def _cosigned_by(node: Node, witness: Node) -> int:
    """Wait until `witness` has cosigned `node`'s checkpoint of its whole ledger as it is now; that size."""
    size, done = node.replica.store.size, trio.Event()

    def check(note: bytes | None) -> None:
        if note is not None and cosigner_name(witness.did).encode() in note:
            if open_signed_checkpoint(note).checkpoint.size == size:
                done.set()

    node.witnessing.listeners.append(check)
    try:
        check(node.witnessing.checkpoint_note())
        await done.wait()
    finally:
        node.witnessing.listeners.remove(check)
    return size


async def _node_a(tmp_path: Path, b: Node) -> NodeConfig:
    """A node trusting b, witnessed by b. It listens on ports the OS picks at each start (a port found free, or one
    it freed as it stopped, could be taken by another process before it listened again), and announces one address
    that does not change, where none listens, so a restart signs no new org record (b need not dial a: a dials b)."""
    made = init_data_dir(tmp_path / "a", network="test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0",
                         roots=(b.did,))
    b.replica.issue("vouch", vouch_body(made.did, 0.9, "org-peer"))  # a inside b's horizon: b witnesses its log
    return replace(load_config(made.data_dir), bootstrap=(b.host.listen_addrs[0],), announce=(_NOWHERE,),
                   checkpoint_interval=0.2, sync_interval=0.5)  # a fetches what gossip misses while its mesh forms


async def test_a_restored_node_never_signs_a_checkpoint_contradicting_one_it_published(tmp_path, caplog):
    async with running(tmp_path / "b", settings={"sync_interval": B_SYNC_INTERVAL}) as b:
        config = await _node_a(tmp_path, b)
        with trio.fail_after(60):
            async with _serving(config) as a:
                await holds(b, a.replica.store.head(a.did).id)  # its org record, signed as it started
                await holds(a, b.replica.store.head(b.did).id)  # b's vouch for a, maybe taken at start-up
                backed_up = await _cosigned_by(a, b)
            shutil.copytree(config.data_dir, tmp_path / "backup")
            async with _serving(config) as a:
                after_copy = []  # two records of two orgs, made after the copy
                for issuer in (b, a):
                    after_copy.append(issuer.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator")))
                    await holds(a, after_copy[-1].id)
                published = await _cosigned_by(a, b)
                assert published == backed_up + 2
                published_root = a.replica.store.ledger.root(published)
            shutil.rmtree(config.data_dir)
            shutil.copytree(tmp_path / "backup", config.data_dir)
            # The restored ledger grows again with the same records in the other order, as a catch-up sync may bring
            # them (which order it takes is its own: appended here, the test does not depend on it).
            with RecordStore.open(config.data_dir) as restored:
                restored.append(after_copy[::-1])
            with caplog.at_level(logging.CRITICAL, logger="gossip.witnessing"):
                async with _serving(config) as a:
                    assert a.replica.store.size == published
                    assert a.replica.store.ledger.root(published) != published_root
                    await a.witnessing.checked.wait()
                    vouch = a.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
                    await records_of(b, lambda r: r.id == vouch.id)  # b goes on counting a's records
                    async with httpx.AsyncClient(base_url=a.api_url) as api:
                        log = (await api.get("/v1/node")).json()["log"]
                    metrics = a.metrics.render().splitlines()
                    ledger_root = a.replica.store.ledger.root(published)
                    stats = a.witnessing.stats
                    assert (stats.checkpoints_gossiped, stats.cosign_requests) == (0, 0)
        assert a.did not in b.replica.flagged
        assert log == {"state": "diverged", "published": {"size": published, "root": published_root.hex()},
                       "ledger_root": ledger_root.hex()}
        assert "vouchnet_witness_log_diverged 1" in metrics
        said = [r.message for r in caplog.records if r.name == "gossip.witnessing" and r.levelno == logging.CRITICAL]
        assert len(said) == 1 and "diverged" in said[0] and "restore a copy" in said[0]


async def test_a_node_restored_from_a_copy_taken_after_its_last_checkpoint_goes_on_being_witnessed(tmp_path):
    async with running(tmp_path / "b", settings={"sync_interval": B_SYNC_INTERVAL}) as b:
        config = await _node_a(tmp_path, b)
        with trio.fail_after(60):
            async with _serving(config) as a:
                await holds(b, a.replica.store.head(a.did).id)
                await _cosigned_by(a, b)
            shutil.copytree(config.data_dir, tmp_path / "backup")
            shutil.rmtree(config.data_dir)
            shutil.copytree(tmp_path / "backup", config.data_dir)
            async with _serving(config) as a:
                await a.witnessing.checked.wait()
                vouch = a.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
                await records_of(b, lambda r: r.id == vouch.id)
                await _cosigned_by(a, b)
                async with httpx.AsyncClient(base_url=a.api_url) as api:
                    log = (await api.get("/v1/node")).json()["log"]
                assert log["state"] == "ok"
                assert "vouchnet_witness_log_diverged 0" in a.metrics.render().splitlines()
        assert a.did not in b.replica.flagged
