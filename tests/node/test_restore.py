"""A node whose data directory was restored from an older copy takes back, from its peers, the records it signed
since, before it signs again: otherwise its next record would be a second one at a seq it already used, and its
org would be flagged as an equivocator everywhere."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace

import pytest
import trio

from node.config import load_config
from node.daemon import serve_node
from node.keys import load_org_key
from node.setup import init_data_dir
from vouching import did_key, vouch_body

from ..factories import new_did
from .in_process import LOOPBACK, records_of, running

pytestmark = pytest.mark.slow


async def test_a_node_restored_from_an_older_copy_signs_after_what_it_signed_since(tmp_path, caplog):
    async with running(tmp_path / "b", settings={"sync_interval": 0.5}) as b:  # b fetches what gossip misses
        made = init_data_dir(tmp_path / "a", network="test", listen=LOOPBACK, api="127.0.0.1:0")
        config = replace(load_config(made.data_dir), bootstrap=(b.host.listen_addrs[0],))
        org = did_key(bytes(load_org_key(config.key_path).verify_key))
        b.replica.issue("vouch", vouch_body(org, 0.9, "org-peer"))  # the org inside b's horizon
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)
                await records_of(b, lambda r: r.iss == org)  # its org record, signed at start
                nursery.cancel_scope.cancel()
            shutil.copytree(config.data_dir, tmp_path / "backup")
            async with trio.open_nursery() as nursery:
                a = await nursery.start(serve_node, config)  # on another port: a new org record at start
                for _ in range(2):
                    a.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
                signed = a.replica.store.head(org).seq
                await records_of(b, lambda r: r.iss == org and r.seq == signed)
                nursery.cancel_scope.cancel()
            shutil.rmtree(config.data_dir)
            shutil.copytree(tmp_path / "backup", config.data_dir)
            with caplog.at_level(logging.CRITICAL, logger="gossip.replica"):
                async with trio.open_nursery() as nursery:
                    a = await nursery.start(serve_node, config)  # and again a new org record, signed after them
                    assert a.replica.own_from_peers == signed - 1 and a.replica.listener_errors == 0
                    assert f"vouchnet_own_records_from_peers {signed - 1}" in a.metrics.render().splitlines()
                    assert a.replica.store.head(org).seq == signed + 1
                    vouch = a.replica.issue("vouch", vouch_body(new_did(), 0.5, "operator"))
                    await records_of(b, lambda r: r.id == vouch.id)
                    nursery.cancel_scope.cancel()
        assert org not in b.replica.flagged and b.replica.store.head(org).seq == signed + 2
        assert "restored from an older copy" in caplog.text
