"""A whole node run in the test's own trio loop, from a fresh data directory, and waits on what it accepts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from node.config import load_config
from node.daemon import Node, serve_node
from node.setup import init_data_dir
from vouching import Record

LOOPBACK = ("/ip4/127.0.0.1/tcp/0",)


@asynccontextmanager
async def running(path: Path, *, settings: dict[str, Any] | None = None, **init: Any) -> AsyncIterator[Node]:
    """A node started in-process from a fresh data directory (network "test" unless `init` names another, config
    `settings` overridden); yields the Node."""
    made = init_data_dir(path, **{"network": "test", "listen": LOOPBACK, "api": "127.0.0.1:0", **init})
    config = replace(load_config(made.data_dir),
                     **{"checkpoint_interval": 0.2, "epoch_seconds": 1.0, **(settings or {})})
    async with trio.open_nursery() as nursery:
        node: Node = await nursery.start(serve_node, config)
        yield node
        nursery.cancel_scope.cancel()


async def records_of(node: Node, predicate: Callable[[Record], bool]) -> list[Record]:
    """Wait until the node accepts a record matching `predicate`; return the batch it came in."""
    arrived = trio.Event()
    found: list[Record] = []

    def listen(records: list[Record]) -> None:
        found.extend(r for r in records if predicate(r))
        if found:
            arrived.set()

    node.replica.listeners.append(listen)
    try:
        await arrived.wait()
    finally:
        node.replica.listeners.remove(listen)
    return found


async def ran_a_round(node: Node) -> None:
    """Wait until a full sync round of `node`'s with some peer has run to the end (before the call, or after), not
    a fetch of gaps."""
    if not node.sync.stats.full_rounds:
        ran = trio.Event()

        def told(peer: str) -> None:
            ran.set()

        node.sync.same_network_listeners.append(told)
        try:
            await ran.wait()
        finally:
            node.sync.same_network_listeners.remove(told)


async def holds(node: Node, record_id: bytes) -> None:
    """Wait until `node` holds the record `record_id`, arrived before the call or after: records_of waits for a batch
    still to come, and a peer's records signed as it starts may arrive before its start returns."""
    if not node.replica.store.has(record_id):
        with accepting(node, {record_id}) as arrived:
            await arrived.wait()


@contextmanager
def accepting(node: Node, ids: set[bytes]) -> Iterator[trio.Event]:
    """An event set once the node has accepted every record of `ids` (listening from now on, while the block runs:
    enter it before the records can arrive)."""
    missing, done = set(ids), trio.Event()

    def listen(records: list[Record]) -> None:
        missing.difference_update(r.id for r in records)
        if not missing:
            done.set()

    if not missing:
        done.set()  # nothing to wait for
    node.replica.listeners.append(listen)
    try:
        yield done
    finally:
        node.replica.listeners.remove(listen)
