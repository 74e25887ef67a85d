"""Test helpers that play an org: a key and a chain of signed, verified records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from vouching import Record, did_key, org_body, revoke_body, sign_record, verify_record, vouch_body


API_TOKEN = "test-token-" + "f" * 32  # what a fake of the node takes: as long as a token must be (node.client._token)


def new_did() -> str:
    return did_key(bytes(SigningKey.generate().verify_key))


@dataclass
class Org:
    """An org signing records in chain order; `fork` signs a second record at a position already used."""

    key: SigningKey = field(default_factory=SigningKey.generate)
    seq: int = 0
    prev: bytes | None = None
    ts: int = 1_700_000_000_000

    @property
    def did(self) -> str:
        return did_key(bytes(self.key.verify_key))

    def sign(self, kind: str, body: dict[str, Any], *, seq: int | None = None, prev: bytes | None = None) -> Record:
        self.ts += 1
        return verify_record(
            sign_record(self.key, kind, body, seq=seq or self.seq + 1, prev=prev if seq else self.prev, ts=self.ts)
        )

    def record(self, kind: str = "vouch", body: dict[str, Any] | None = None) -> Record:
        """The next record of this org's chain (a vouch for a fresh agent unless told otherwise)."""
        if body is None:
            body = vouch_body(new_did(), 0.5, "operator") if kind == "vouch" else org_body("org", "test")
        record = self.sign(kind, body)
        self.seq, self.prev = record.seq, record.id
        return record

    def vouch(self, subject: str, weight: float = 0.8, basis: str = "org-peer") -> Record:
        return self.record("vouch", vouch_body(subject, weight, basis))

    def revoke(self, vouch: Record, reason: str = "no longer trusted") -> Record:
        return self.record("revoke", revoke_body(vouch.id, reason))

    def rotate(self, successor: Org | None = None) -> tuple[Org, Record, Record]:
        """Rotate to a fresh key (or `successor`'s): the successor, this key's rotation record (its last) and the
        successor's first."""
        successor = successor or Org(ts=self.ts)
        rotation = self.record("org", org_body("org", "test", next=successor.did))
        first = successor.record("org", org_body("org", "test", prior=self.did))
        return successor, rotation, first

    def fork(self, seq: int, prev: bytes | None) -> Record:
        """Another record at (this org, seq): equivocation if one was already issued there."""
        return self.sign("vouch", vouch_body(new_did(), 0.1, "operator"), seq=seq, prev=prev)
