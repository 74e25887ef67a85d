"""A NodeView over a real Replica and RecordStore, without a network: what the API tests serve."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from nacl.signing import SigningKey

from gossip.peers import DialSchedule, KnownPeer
from gossip.replica import Replica
from gossip.store import RecordStore
from node.idempotency import IdempotencyStore
from ledger import (
    Checkpoint,
    CosignatureSigner,
    Ed25519Signer,
    cosigner_name,
    format_note,
    log_origin,
    note_signature,
)
from vouching import did_key, record_equivocation_body, vouch_body

from ..factories import Org

TOKEN = "test-token-" + "x" * 32


@dataclass
class FakeNode:
    """The running node as the API sees it; `sign_checkpoint` stands in for the Witnessing service, `schedule` for
    the peer manager's (the peers of `peer_list` are those connected)."""

    replica: Replica
    idempotency: IdempotencyStore
    network: str = "testnet"
    token: str = TOKEN
    peer_list: list[dict[str, Any]] = field(default_factory=list)
    note: bytes | None = None
    blocked: list[str] = field(default_factory=list)
    schedule: DialSchedule = field(default_factory=DialSchedule)

    @property
    def did(self) -> str:
        return self.replica.did

    def info(self) -> dict[str, Any]:
        return {"peer_id": "12D3KooWFake", "listen": ["/ip4/127.0.0.1/tcp/4001"]}

    def peers(self) -> list[dict[str, Any]]:
        return self.peer_list

    def known_peers(self, *, after: str | None, limit: int) -> list[KnownPeer]:
        connected = [peer["peer_id"] for peer in self.peer_list]
        return self.schedule.known(connected, after=after, limit=limit, now=trio.current_time())

    def checkpoint(self) -> bytes | None:
        return self.note

    def published_checkpoint(self) -> Checkpoint | None:
        note = self.checkpoint()  # (which a test may replace)
        return None if note is None else Checkpoint.parse(note[: note.index(b"\n\n") + 1].decode())

    def blocked_peers(self) -> list[str]:
        return sorted(self.blocked)

    async def set_blocked_peers(self, peer_ids: list[str]) -> None:
        self.blocked = list(peer_ids)

    @property
    def origin(self) -> str:
        return log_origin(self.network, self.did, "records")

    def sign_checkpoint(self, *, cosigners: tuple[SigningKey, ...] = (), size: int | None = None) -> bytes:
        """Sign a checkpoint of the ledger (at `size`, default all of it) with the org key, then cosign it."""
        ledger = self.replica.store.ledger
        size = ledger.size if size is None else size
        text = Checkpoint(self.origin, size, ledger.root(size)).to_text()
        signatures = [note_signature(text, Ed25519Signer(self.origin, self.replica.key))]
        for key in cosigners:
            name = cosigner_name(did_key(bytes(key.verify_key)))
            signatures.append(note_signature(text, CosignatureSigner(name, key)))
        self.note = format_note(text, signatures)
        return self.note


@contextmanager
def fake_node(directory: Path, *, roots: tuple[str, ...] = ()) -> Iterator[FakeNode]:
    """A FakeNode whose records and idempotency keys live in `directory`; the stores close on exit."""
    with RecordStore.open(directory) as store:
        idempotency = IdempotencyStore.open(directory, log_size=0)
        try:
            yield FakeNode(Replica(SigningKey.generate(), store, roots=roots, max_hops=2, held_limit=100), idempotency)
        finally:
            idempotency.close()


def report_own_equivocation(node: FakeNode, partner: Org) -> None:
    """`partner` proves two records of `node`'s key at one seq, and `node` accepts the proof."""
    ours = node.replica.issue("vouch", vouch_body(Org().did, 0.5, "operator"))
    twin = Org(key=node.replica.key).sign("vouch", vouch_body(Org().did, 0.4, "operator"), seq=ours.seq, prev=ours.prev)
    node.replica.accept([partner.record("equivocation", record_equivocation_body(ours.raw, twin.raw))])
