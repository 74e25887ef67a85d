"""A real node for the SDK's tests, served by its own trio loop in a background thread (the SDK runs on asyncio
or plain threads in the test's thread), and the ways to give it agents of known standing."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio
from nacl.signing import SigningKey

from node.client import NodeClient, TelemetryCollector, TrustPolicy, Vouchnet
from node.config import load_config
from node.credential_registry import CredentialRegistry
from node.credential_status import status_entry
from node.credentials import agent_credential
from node.daemon import Node, serve_node
from node.setup import init_data_dir
from vouching import Record, did_key

# First-hand ok events that, with this node's org's audit vouch, make an unknown agent `trusted` at once: events of
# one burst alone leave it `provisional` (their good counts C/2 a window: README "How scores are computed", 4).
GOOD_EVENTS = 10


@dataclass(frozen=True)
class RunningNode:
    node: Node
    url: str
    token: str
    data_dir: Path
    trio_token: trio.lowlevel.TrioToken

    def accept(self, records: list[Record]) -> None:
        """Give the node records of other orgs (within its horizon: org-peer vouched), as gossip would, on its own
        trio loop; each must be accepted."""
        outcome = trio.from_thread.run_sync(self.node.replica.accept, records, trio_token=self.trio_token)
        assert len(outcome.accepted) == len(records), outcome

    def client(self) -> NodeClient:
        return NodeClient(self.url, self.token)

    def credential(self, agent: str) -> str:
        """An agent credential of this node's org, with no revocation entry (as minted before status lists)."""
        return agent_credential(self.node.key, agent, name="test agent")

    def revocable_credential(self, agent: str) -> tuple[str, int]:
        """(the credential `vouchnet agent new` would give `agent`, its index in the org's status lists)."""
        registry = CredentialRegistry.open(self.data_dir)
        try:
            now = int(time.time())
            index = registry.allocate(agent, name="test agent", issued_at=now, expires_at=now + 86400)
        finally:
            registry.close()
        return agent_credential(self.node.key, agent, name="test agent", now=now,
                                status=status_entry(self.url, index)), index

    def revoke(self, index: int) -> None:
        """What `vouchnet agent revoke --index` does."""
        registry = CredentialRegistry.open(self.data_dir)
        try:
            registry.revoke(index, reason="test", at=int(time.time()))
        finally:
            registry.close()

    def new_agent(self, *, trusted: bool) -> tuple[str, str]:
        """A fresh agent (did, credential): unknown (so `untrusted`), or `trusted` from this node's org's audit vouch
        and first-hand good events."""
        agent, credential, _ = self.new_agent_with_key(trusted=trusted)
        return agent, credential

    def new_agent_with_key(self, *, trusted: bool) -> tuple[str, str, SigningKey]:
        """`new_agent`, with the agent's own signing key."""
        key = SigningKey.generate()
        agent = did_key(bytes(key.verify_key))
        if trusted:
            now = int(time.time() * 1000)
            events = [{"agent": agent, "ts": now, "category": "tool", "name": "search", "outcome": "ok"}
                      for _ in range(GOOD_EVENTS)]
            with self.client() as client:
                client.vouch(agent, 1.0, "audit")
                assert client.report_events(events)["accepted"] == GOOD_EVENTS
                assert client.score(agent)["tier"] == "trusted"
        return agent, self.credential(agent), key

    def first_hand_events(self, agent: str) -> int:
        """How many of `agent`'s events this node holds as its own observations."""
        with self.client() as client:
            orgs = client.score(agent)["explanation"]["orgs"]
        return sum(part["events"] for part in orgs if part["first_hand"])


@contextmanager
def node_in_thread(path: Path, **settings: Any) -> Iterator[RunningNode]:
    """A node from a fresh data directory on free loopback ports, until the block ends; `settings` replace fields
    of its NodeConfig (as its config file would set them)."""
    made = init_data_dir(path, network="sdk-test", listen=("/ip4/127.0.0.1/tcp/0",), api="127.0.0.1:0")
    # public_url, for its vouches' credentials to name: on a port the OS picks, the node has no URL of its own to give
    config = replace(load_config(made.data_dir), checkpoint_interval=5.0, public_url="https://vouchnet.example.org",
                     **settings)
    started: list[tuple[Node, trio.lowlevel.TrioToken, trio.CancelScope]] = []
    ready, failure = threading.Event(), []

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            node = await nursery.start(serve_node, config)
            started.append((node, trio.lowlevel.current_trio_token(), nursery.cancel_scope))
            ready.set()

    def run() -> None:
        try:
            trio.run(serve)
        except BaseException as error:  # the test thread reports it
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=run, name="vouchnet-test-node", daemon=True)
    thread.start()
    ready.wait(30)
    if failure or not started:
        raise RuntimeError(f"the test node did not start: {failure}")
    node, token, scope = started[0]
    try:
        yield RunningNode(node, node.api_url, node.token, made.data_dir, token)
    finally:
        trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(10)


def on_asyncio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on asyncio, as agent frameworks do (the suite's async default is trio)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def vouchnet_for(running: RunningNode, **policy: Any) -> Vouchnet:
    """What a service makes once: verifier, policy and telemetry for the test node (telemetry sent on aclose)."""
    return Vouchnet(running.url, policy=TrustPolicy(running.url, listen=False, **policy),
                    telemetry=TelemetryCollector(running.url, running.token, flush_interval=3600))
