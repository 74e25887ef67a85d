"""Acceptance of verified records into the store: chain position, holding for gaps, equivocation evidence.

DESIGN.md §3 and §5. Records arrive already verified (signature and schema); this decides, per record, whether
it extends its issuer's chain (accepted), repeats one we have (duplicate), skips ahead (held until sync fills
the gap), contradicts one we have (equivocation evidence), or breaks the chain (rejected, with a reason). Key
rotation (vouching.succession): a key that signed its rotation record has a closed chain, and a key whose first
record names a prior key has nothing after that first record accepted until the prior key's rotation names it,
and the prior key's own claim, if any, is linked too (sync fetches the rest once it is), so that no record of a
successor counts before its org is known.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sortedcontainers import SortedDict, SortedList

from vouching import EquivocationBody, OrgBody, Record, RevokeBody
from vouching.succession import Succession

from .store import Head, RecordStore


@dataclass
class Outcome:
    """What became of one submitted batch."""

    accepted: list[Record] = field(default_factory=list)
    duplicates: int = 0
    held: int = 0  # records of the batch still waiting for a missing predecessor
    outside_horizon: int = 0
    unlinked: int = 0  # records of a key whose first record names a prior key that has not (yet) named it back
    dropped: int = 0  # not held, or no longer, for lack of room (their issuer's share): sync will fetch them again
    rejected: list[tuple[Record, str]] = field(default_factory=list)
    # (the one we hold, as its bytes; the new one, verified: what the evidence is made of, no need to verify it again)
    equivocations: list[tuple[bytes, Record]] = field(default_factory=list)
    # equivocation records of issuers outside the horizon against orgs inside it (not stored): what they prove, in
    # their bodies, the node signs again as its own
    evidence: list[EquivocationBody] = field(default_factory=list)
    gaps: dict[str, tuple[int, int]] = field(default_factory=dict)  # issuer -> (first, last) missing seq


class Acceptor:
    """The single writer of a RecordStore: every record, ours or a peer's, enters the store through here.

    Records waiting for a missing predecessor are held, at most `held_limit` of them, shared fairly among their
    issuers: when the buffer is full, a record whose issuer holds fewer than the issuer holding most takes the
    place of that issuer's farthest-ahead record (the last its gap would release); otherwise it is dropped. So
    one issuer flooding records after a gap, which any issuer inside the horizon can sign at will, never evicts
    an issuer holding fewer, and each of n issuers keeps at least held_limit / n of its records.
    """

    def __init__(self, store: RecordStore, succession: Succession, *, in_horizon: Callable[[str], bool],
                 held_limit: int) -> None:
        self._store = store
        self._succession = succession
        self._in_horizon = in_horizon
        self._held_limit = held_limit
        self._held: dict[str, SortedDict[int, tuple[Record, str | None]]] = {}  # issuer -> seq -> (record, its peer)
        self._shares: SortedList[tuple[int, str]] = SortedList()  # (records held, issuer), for each issuer holding
        self._held_count = 0

    @property
    def held_count(self) -> int:
        return self._held_count

    def submit(self, records: Sequence[Record],
               before_append: Callable[[list[tuple[Record, str | None]]], None] | None = None, *,
               peer: str | None = None) -> Outcome:
        """Decide each record (from `peer`, if known), append the accepted ones in one durable batch, and report.
        `before_append` is called with the batch, each record with the peer it came from (a held record it released
        with the peer that sent it then), before the store takes it; what it raises refuses the batch, and is
        raised."""
        batch = _Batch(self._store, self._succession)
        outcome = Outcome()
        for record in records:
            pending = [(record, peer)]
            while pending:  # an accepted record releases its held successor, which may release the next
                current, sent_by = pending.pop()
                if self._offer(current, sent_by, batch, outcome):
                    successor = self._release(current.iss, current.seq + 1)
                    if successor is not None:
                        pending.append(successor)
        if batch.records:
            if before_append is not None:
                before_append(list(zip(batch.records, batch.peers)))
            self._store.append(batch.records)
        outcome.accepted = batch.records
        if self._held:
            outcome.held = sum(1 for r in records if (held := self._held_at(r.iss, r.seq)) and held[0] is r)
        for iss, (_, last) in list(outcome.gaps.items()):
            head = batch.head(iss)
            if head is not None and head.seq >= last:
                del outcome.gaps[iss]  # filled later in the same batch
        return outcome

    def _offer(self, record: Record, peer: str | None, batch: _Batch, outcome: Outcome) -> bool:
        """Decide one record; True if it was staged for appending."""
        head = batch.head(record.iss)
        # Only a record at or below its issuer's head can be one we hold: new ones skip the index lookup.
        if head is not None and record.seq <= head.seq and batch.has(record.id):
            outcome.duplicates += 1
            return False
        if not (self._in_horizon(record.iss) or batch.named_by_rotation(record.iss)):
            outcome.outside_horizon += 1
            if isinstance(record.body, EquivocationBody) and self._in_horizon(record.body.offender):
                outcome.evidence.append(record.body)
            return False
        if record.seq > 1 and not batch.linked_or_unclaimed(record.iss):
            outcome.unlinked += 1
            return False
        if head is not None and record.seq > head.seq and batch.retired(record.iss):
            outcome.rejected.append(
                (record, f"iss: this key was retired at seq {head.seq}, where it named its successor"))
            return False
        next_seq = head.seq + 1 if head else 1
        if record.seq < next_seq:
            outcome.equivocations.append((batch.at(record.iss, record.seq), record))
            return False
        if record.seq > next_seq:
            self._hold(record, peer, next_seq, outcome)
            return False
        if record.prev != (head.id if head else None):
            outcome.rejected.append((record, f"prev: does not match {record.iss}'s record at seq {record.seq - 1}"))
            return False
        if isinstance(record.body, RevokeBody) and not batch.is_vouch_of_org(record.body.record, record.iss):
            outcome.rejected.append((record, "body.record: names no earlier vouch of this issuer or a key it replaced"))
            return False
        batch.add(record, peer)
        return True

    def _hold(self, record: Record, peer: str | None, next_seq: int, outcome: Outcome) -> None:
        held = self._held_at(record.iss, record.seq)
        if held is not None:  # (kept with the peer that sent it first)
            if held[0].id == record.id:
                outcome.duplicates += 1
            else:
                outcome.equivocations.append((held[0].raw, record))
            return
        first, last = outcome.gaps.get(record.iss, (next_seq, record.seq - 1))
        outcome.gaps[record.iss] = (first, max(last, record.seq - 1))
        if self._held_count >= self._held_limit:
            outcome.dropped += 1  # this record, or the one it replaces
            if not self._evict_for(record.iss):
                return
        of_issuer = self._held.get(record.iss)
        if of_issuer is None:
            of_issuer = self._held[record.iss] = SortedDict()
        else:
            self._shares.remove((len(of_issuer), record.iss))
        of_issuer[record.seq] = (record, peer)
        self._shares.add((len(of_issuer), record.iss))
        self._held_count += 1

    def _held_at(self, iss: str, seq: int) -> tuple[Record, str | None] | None:
        of_issuer = self._held.get(iss)
        return of_issuer.get(seq) if of_issuer is not None else None

    def _release(self, iss: str, seq: int) -> tuple[Record, str | None] | None:
        """Take the record held at (iss, seq), with the peer that sent it, out of the buffer, if there is one."""
        of_issuer = self._held.get(iss)
        if of_issuer is None or seq not in of_issuer:
            return None
        self._shares.remove((len(of_issuer), iss))
        held = of_issuer.pop(seq)
        self._shrunk(iss, of_issuer)
        return held

    def _evict_for(self, iss: str) -> bool:
        """Make room for a record of `iss` by dropping the farthest-ahead record of the issuer holding most, if that
        issuer holds more than `iss` does; whether room was made."""
        most, largest = self._shares[-1]
        of_issuer = self._held.get(iss)
        if most <= (len(of_issuer) if of_issuer is not None else 0):
            return False
        of_largest = self._held[largest]
        self._shares.remove((most, largest))
        of_largest.popitem(-1)
        self._shrunk(largest, of_largest)
        return True

    def _shrunk(self, iss: str, of_issuer: SortedDict[int, tuple[Record, str | None]]) -> None:
        """Bookkeeping after one record of `iss` left the buffer (its share's entry already removed)."""
        self._held_count -= 1
        if of_issuer:
            self._shares.add((len(of_issuer), iss))
        else:
            del self._held[iss]


class _Batch:
    """The store as it will be once the records staged so far are appended."""

    def __init__(self, store: RecordStore, succession: Succession) -> None:
        self._store = store
        self._succession = succession
        self._named_next: dict[str, str] = {}  # rotations staged here: key -> the successor it names
        self._named_prior: dict[str, str] = {}
        self.records: list[Record] = []
        self.peers: list[str | None] = []  # the peer each of `records` came from, if known
        self._by_id: dict[bytes, Record] = {}
        self._heads: dict[str, Head] = {}
        self._by_position: dict[tuple[str, int], Record] = {}

    def has(self, record_id: bytes) -> bool:
        return record_id in self._by_id or self._store.has(record_id)

    def head(self, iss: str) -> Head | None:
        return self._heads.get(iss) or self._store.head(iss)

    def at(self, iss: str, seq: int) -> bytes:
        staged = self._by_position.get((iss, seq))
        raw = staged.raw if staged else self._store.at(iss, seq)
        if raw is None:
            raise AssertionError(f"bad bookkeeping: {iss} seq {seq} is below its head but not stored")
        return raw

    def retired(self, iss: str) -> bool:
        return iss in self._named_next or self._succession.retired(iss)

    def named_by_rotation(self, iss: str) -> bool:
        """Whether a rotation staged in this batch names `iss` (inside the horizon as the rotated key is)."""
        return iss in self._named_next.values()

    def linked_or_unclaimed(self, iss: str) -> bool:
        """Whether `iss` names no prior key, or the prior key it names has named it back and is itself linked or
        unclaimed, and so on back to a key that names no prior (a cycle of rotations has none): the records of
        a key count only once its whole org is known, or they would count for whichever part of it was known
        when they arrived."""
        return self._walk_back(iss)[1]

    def is_vouch_of_org(self, record_id: bytes, iss: str) -> bool:
        """Whether `record_id` is a vouch of `iss`'s org: by `iss`, or by a key linked to it (a key is linked
        before anything after its first record is accepted; links staged in this batch count too)."""
        staged = self._by_id.get(record_id)
        found = (staged.kind, staged.iss) if staged is not None else self._store.kind_and_issuer(record_id)
        if found is None or found[0] != "vouch":
            return False
        return self._succession.identity(found[1]) in self._walk_back(iss)[0]

    def _walk_back(self, iss: str) -> tuple[dict[str, None], bool]:
        """From `iss` back over the links known, stored or staged here: the first key of each stored org passed
        (keys already linked are passed over in one step), and whether the walk ended at a key naming no prior
        (rather than at one whose prior did not name it back, or by going round a cycle)."""
        key, passed = self._succession.identity(iss), dict[str, None]()
        while key not in passed:
            passed[key] = None
            prior = self._named_prior.get(key) or self._succession.named_prior(key)
            if prior is None:
                return passed, True
            if self._next_of(prior) != key:
                return passed, False
            key = self._succession.identity(prior)
        return passed, False

    def _next_of(self, key: str) -> str | None:
        return self._named_next.get(key) or self._succession.named_next(key)

    def add(self, record: Record, peer: str | None) -> None:
        self.records.append(record)
        self.peers.append(peer)
        self._by_id[record.id] = record
        self._heads[record.iss] = Head(record.seq, record.id)
        self._by_position[(record.iss, record.seq)] = record
        if isinstance(record.body, OrgBody):
            if record.body.next is not None:
                self._named_next[record.iss] = record.body.next
            if record.body.prior is not None:
                self._named_prior[record.iss] = record.body.prior
