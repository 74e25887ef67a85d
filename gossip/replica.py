"""A node's replica of the network's records: the store, acceptance, the horizon, flagged equivocators, and
the node's own signing. Synchronous and I/O-free apart from the store's files; the trio services drive it.

DESIGN.md §3–§5: every record, ours or a peer's, enters through `accept`; equivocation evidence found on the way
becomes our own signed `equivocation` record, which flags the offender here and, once gossiped, everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from vouching import (
    DigestBody,
    EquivocationBody,
    Record,
    RevokeBody,
    VouchBody,
    did_key,
    issue_digests,
    issue_record,
    record_equivocation_body,
    verify_record,
)
from vouching.horizon import Horizon

from .acceptor import Acceptor, Outcome
from .store import RecordStore

Listener = Callable[[list[Record]], None]
HorizonListener = Callable[[set[str]], None]


@dataclass
class Replica:
    """The records this node holds and the rules that decide what it holds next."""

    key: SigningKey
    store: RecordStore
    roots: Iterable[str]
    max_hops: int
    held_limit: int
    listeners: list[Listener] = field(default_factory=list)
    horizon_listeners: list[HorizonListener] = field(default_factory=list)  # told which orgs a batch brought in

    def __post_init__(self) -> None:
        self.did = did_key(bytes(self.key.verify_key))
        self.horizon = Horizon({self.did, *self.roots}, self.max_hops)
        self.flagged: set[str] = set()
        self._acceptor = Acceptor(self.store, in_horizon=self.horizon.__contains__, held_limit=self.held_limit)
        for kind in ("vouch", "revoke", "equivocation"):  # revocations after the vouches they name
            for record in self.store.scan(kind=kind):
                self._track(record)

    @property
    def held_count(self) -> int:
        return self._acceptor.held_count

    def issue(self, kind: str, body: dict) -> Record:
        """Sign our next record, accept it, and return it (raises vouching.InvalidRecord for a bad body)."""
        return self.issue_many(kind, [body])[0]

    def issue_many(self, kind: str, bodies: Sequence[dict]) -> list[Record]:
        """Sign our next records, one per body in order, and accept them in one durable batch (one commit, so
        issuing thousands of digests at an epoch's end costs signatures, not commits). All or none: a bad body
        raises vouching.InvalidRecord before anything is stored."""
        seq, prev = self._next()
        records = []
        for body in bodies:
            record = issue_record(self.key, kind, body, seq=seq, prev=prev)
            records.append(record)
            seq, prev = seq + 1, record.id
        return self._accept_own(records)

    def issue_digests(self, bodies: Sequence[DigestBody]) -> list[Record]:
        """issue_many("digest", [body.to_wire() for body in bodies]) from typed bodies: the same records, signed
        at a fraction of the cost (vouching.issue_digests); how the node signs an epoch's digests."""
        seq, prev = self._next()
        return self._accept_own(issue_digests(self.key, bodies, seq=seq, prev=prev))

    def _next(self) -> tuple[int, bytes | None]:
        """The seq and prev of our next record."""
        head = self.store.head(self.did)
        return (head.seq + 1, head.id) if head else (1, None)

    def _accept_own(self, records: list[Record]) -> list[Record]:
        outcome = self.accept(records)
        if outcome.accepted[: len(records)] != records:
            raise AssertionError(f"our own records were not accepted: {outcome}")
        return records

    def accept(self, records: list[Record]) -> Outcome:
        """Offer verified records; store what extends a chain, act on evidence, tell the listeners."""
        outcome = self._acceptor.submit(records)
        entered: set[str] = set()
        for record in outcome.accepted:
            entered |= self._track(record)
        if outcome.accepted:
            for listener in self.listeners:
                listener(outcome.accepted)
        entered = {org for org in entered if org in self.horizon}  # a later record may have taken one out again
        if entered:
            for horizon_listener in self.horizon_listeners:
                horizon_listener(entered)
        for ours, theirs in outcome.equivocations:
            offender = verify_record(theirs).iss
            if offender not in self.flagged and offender != self.did:
                self.issue("equivocation", record_equivocation_body(ours, theirs))
        return outcome

    def _track(self, record: Record) -> set[str]:
        """Keep the horizon and the flagged set in step with an accepted record; the orgs it brought inside the
        horizon."""
        body = record.body
        if isinstance(body, VouchBody) and body.basis == "org-peer":
            return self.horizon.add_edge(record.id, record.iss, body.subject)
        if isinstance(body, RevokeBody):
            self.horizon.remove_edge(body.record)  # a no-op unless it names an org-peer vouch
        elif isinstance(body, EquivocationBody):
            self.flagged.add(body.offender)
            self.horizon.flag(body.offender)
        return set()
