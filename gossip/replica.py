"""A node's replica of the network's records: the store, acceptance, the horizon, flagged equivocators, and
the node's own signing. Synchronous and I/O-free apart from the store's files; the trio services drive it.

DESIGN.md §3–§5: every record, ours or a peer's, enters through `accept`; equivocation evidence found on the way
becomes our own signed `equivocation` record, which flags the offender here and, once gossiped, everywhere. Keys
linked by a rotation (vouching.succession) are one org: flagging one flags all, and a later key's revocation of an
earlier key's vouch counts.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import InitVar, dataclass, field
from typing import TypeVar

from nacl.signing import SigningKey

from vouching import (
    DigestBody,
    EquivocationBody,
    OrgBody,
    Record,
    RevokeBody,
    VouchBody,
    did_key,
    issue_digests,
    issue_record,
    org_body,
    record_equivocation_body,
    record_id,
)
from vouching.horizon import Horizon
from vouching.succession import Link, Succession

from .acceptor import Acceptor, Outcome
from .own_records import MAX_CONFLICT_ROWS, MAX_CONFLICTS, OwnRecords, OwnRecordsError
from .store import RecordStore

log = logging.getLogger(__name__)
_T = TypeVar("_T")
Listener = Callable[[list[Record]], None]
HorizonListener = Callable[[set[str]], None]
LinkListener = Callable[[Link], None]
TRACK_CHUNK = 1000  # stored records `tracking` takes in between yields


class RetiredKey(Exception):
    """This node's key signed its rotation record: it may sign nothing more (restart the node to use its successor)."""


class SigningDeferred(Exception):
    """The node signs nothing yet: it is still learning from its peers what it signed before (`defer_signing`)."""


class RotationTakenBack(Exception):
    """`resume_signing`: a rotation of this node's key came from peers while signing was deferred. It is the org's
    own, made before its data directory was restored from an older copy, or a thief's, signed while the node was
    stopped; the two look the same, so the node neither contests it nor takes it, and signs nothing: its operator
    decides (node.taken_back_rotation)."""

    def __init__(self, rotation: Record) -> None:
        assert isinstance(rotation.body, OrgBody)
        super().__init__(f"this node's key {rotation.iss} signed a rotation to {rotation.body.next} (seq "
                         f"{rotation.seq}) that came back from peers as the node started")
        self.rotation = rotation


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
    link_listeners: list[LinkListener] = field(default_factory=list)  # told of each rotation that links two keys
    returned_listeners: list[Listener] = field(default_factory=list)  # told of our own records from peers (_report_own)
    # where our own records from peers are listed (the node's is in its data directory)
    own_records: OwnRecords = field(default_factory=lambda: OwnRecords.in_memory(lambda: time.time_ns() // 1_000_000))
    track_stored: InitVar[bool] = True  # False: the caller runs `tracking` before anything else (the node does)

    def __post_init__(self, track_stored: bool) -> None:
        self.did = did_key(bytes(self.key.verify_key))
        self.succession = Succession()
        self.horizon = Horizon({self.did, *self.roots}, self.max_hops)
        self.flagged: set[str] = set()
        self.listener_errors = 0  # listener calls that raised (`_tell`): the records stayed stored, the node ran on
        self._deferred: list[Callable[[], None]] | None = None  # signing that waits for resume_signing, if deferred
        self._held_own = True  # whether the store held a record of this node's key when signing was deferred
        self._taken_back: Record | None = None  # a rotation of our key that came while deferred (RotationTakenBack)
        self._acceptor = Acceptor(self.store, self.succession, in_horizon=self.horizon.__contains__,
                                  held_limit=self.held_limit)
        if track_stored:
            for _ in self.tracking():
                pass

    def tracking(self) -> Iterator[None]:
        """Take in the stored org, vouch, revoke and equivocation records (the horizon, the links between keys, the
        flagged orgs, DESIGN.md §4-§5), yielding after each TRACK_CHUNK of them, so that a start can let a signal
        stop it between them: it grows with the network's vouches, and ran on the node's trio thread in one go."""
        n = 0
        # Rotations first, so that every link is known before what it changes; revocations after their vouches.
        for kind in ("org", "vouch", "revoke", "equivocation"):
            for record in self.store.scan(kind=kind):
                self._track(record)
                n += 1
                if n % TRACK_CHUNK == 0:
                    yield

    @property
    def held_count(self) -> int:
        return self._acceptor.held_count

    @property
    def taken_back(self) -> Record | None:
        """A rotation of this node's key taken back while signing was deferred, which `resume_signing` raises."""
        return self._taken_back

    @property
    def own_from_peers(self) -> int:
        """Records of this node's key that came from peers and that its operator has not acknowledged
        (`_report_own`; kept across restarts in gossip.own_records)."""
        return self.own_records.unacknowledged

    def issue(self, kind: str, body: dict, *, before_storing: Callable[[Record], None] | None = None) -> Record:
        """Sign our next record, accept it, and return it (raises vouching.InvalidRecord for a bad body).
        `before_storing` is called with the signed record before it is stored (the API makes an idempotency key
        naming it durable there); what it raises is raised, and nothing is stored."""
        return self.issue_many(kind, [body], before_storing=None if before_storing is None
                               else lambda records: before_storing(records[0]))[0]

    def issue_many(self, kind: str, bodies: Sequence[dict], *,
                   before_storing: Callable[[list[Record]], None] | None = None) -> list[Record]:
        """Sign our next records, one per body in order, and accept them in one durable batch (one commit, so
        issuing thousands of digests at an epoch's end costs signatures, not commits). All or none: a bad body
        raises vouching.InvalidRecord before anything is stored. `before_storing` as for `issue`."""
        seq, prev = self._next()
        self._check_may_sign()
        records = []
        for body in bodies:
            record = issue_record(self.key, kind, body, seq=seq, prev=prev)
            records.append(record)
            seq, prev = seq + 1, record.id
        if before_storing is not None:
            before_storing(records)
        return self._accept_own(records)

    def issue_digests(self, bodies: Sequence[DigestBody], *, ts: int | None = None) -> list[Record]:
        """issue_many("digest", [body.to_wire() for body in bodies]) from typed bodies: the same records, signed
        at a fraction of the cost (vouching.issue_digests); how the node signs an epoch's digests, stamped `ts`
        (default: the clock at each)."""
        seq, prev = self._next()
        self._check_may_sign()
        return self._accept_own(issue_digests(self.key, bodies, seq=seq, prev=prev, ts=ts))

    def defer_signing(self) -> None:
        """Sign nothing until `resume_signing`: a node restored from an older copy of its data directory must first
        take back, from its peers, the records it signed since, or it would sign a second record at one seq. Evidence
        and contests found meanwhile wait; `issue` raises SigningDeferred. A rotation of this node's key taken back
        meanwhile is neither contested nor taken (`accept`): `resume_signing` raises RotationTakenBack."""
        self._deferred = []
        self._held_own = self.store.head(self.did) is not None

    def resume_signing(self, *, sign_deferred: bool = True) -> None:
        """Sign again, starting with what waited (dropped unsigned if not `sign_deferred`: for a caller about to
        close the replica that must sign nothing); or, if a rotation of this node's key came back while signing was
        deferred, raise RotationTakenBack naming it, signing nothing, then or later."""
        if self._taken_back is not None:
            raise RotationTakenBack(self._taken_back)
        deferred, self._deferred = self._deferred or [], None
        for sign in deferred if sign_deferred else ():
            sign()

    def _when_signing(self, sign: Callable[[], None]) -> None:
        if self._deferred is None:
            sign()
        else:
            self._deferred.append(sign)

    def _check_may_sign(self) -> None:
        if self._deferred is not None:
            raise SigningDeferred("this node signs nothing until it has synced with a peer after starting")
        if self.succession.retired(self.did):
            raise RetiredKey(f"this node's key {self.did} was replaced by a rotation and signs nothing more: restart "
                             f"the node to sign with its successor")

    def _next(self) -> tuple[int, bytes | None]:
        """The seq and prev of our next record."""
        head = self.store.head(self.did)
        return (head.seq + 1, head.id) if head else (1, None)

    def _accept_own(self, records: list[Record]) -> list[Record]:
        outcome = self._accept(records, as_own=records)
        if outcome.accepted[: len(records)] != records:
            raise AssertionError(f"our own records were not accepted: {outcome}")
        return records

    def accept(self, records: list[Record], peer: str | None = None) -> Outcome:
        """Offer verified records; store what extends a chain, act on evidence, tell the listeners. A rotation of
        this node's own key among them is refused: listed as a conflicting record if a record of ours at its seq
        contradicts it already (`_list_conflicts`); else kept for `resume_signing` to raise if it came while signing
        is deferred (`defer_signing`), or contested (`_contest`). Other records of its key are accepted, listed before
        they are stored, and reported (`_report_own`). `peer` is the PeerID they came from (that published them, for
        gossip), if known."""
        foreign = [r for r in records if r.iss == self.did and isinstance(r.body, OrgBody) and r.body.next]
        outcome = self._accept([r for r in records if r not in foreign] if foreign else records, peer=peer)
        for rotation in foreign:
            if self.store.has(rotation.id):
                continue
            head = self.store.head(self.did)
            if self._deferred is not None and (head is None or head.seq < rotation.seq):
                outcome.rejected.append((rotation, "iss: a rotation of this node's key taken back as the node started, "
                                                   "for its operator to adopt or contest"))
                self._taken_back = self._taken_back or rotation
            else:
                outcome.rejected.append((rotation, "iss: a rotation of this node's key that this node did not make"))
                if head is not None and head.seq >= rotation.seq:  # ours at its seq contradicts it already
                    self._list_conflicts([(rotation, record_id(self.store.at(self.did, rotation.seq)), None, peer)])
                else:
                    self._when_signing(functools.partial(self._contest, rotation))
        return outcome

    def adopt(self, rotation: Record) -> bool:
        """Store a rotation of this node's key as the org's own, as its operator says it is (node.taken_back_rotation:
        made before the data directory was restored from an older copy): accepted as any record, after which this
        key signs nothing more. False if it does not extend the key's chain as stored (nothing is stored)."""
        return self._accept([rotation], as_own=[rotation]).accepted == [rotation]

    def _report_own(self, records: list[Record]) -> None:
        """Records of this node's key that it did not sign while running (it stores what it signs before anyone
        sees it) are its own history coming back, if its data directory was restored from an older copy, or a
        thief's, if its key leaked. Both are the operator's to know; neither can be told from the other here, so
        they are accepted (a restored node must not sign again at those seqs), said at CRITICAL, counted
        (own_from_peers), and told to the returned listeners (after the accepted-record listeners). But after
        `vouchnet key adopt` (node.taken_back_rotation) the node starts as a key it holds no record of, named by an
        earlier key's rotation the operator just said is the org's: what that key signed in the newer copy of the
        data directory comes back in the catch-up sync as expected (`_adopted_key_coming_back`; at the next start
        too, if this one stopped before its catch-up ended), said at INFO and not counted; what comes once the node
        signs is reported as above."""
        if not records:
            return
        if self._adopted_key_coming_back(records):
            log.info("%d record(s) of this node's key %s (seq %d to %d) came back from peers: what it signed before "
                     "`vouchnet key adopt`, in the newer copy of the data directory", len(records), self.did,
                     records[0].seq, records[-1].seq)
            self._tell(self.returned_listeners, records)
            return
        log.critical("%d record(s) of this node's key %s (seq %d to %d) came from peers: this node did not sign them "
                     "since it started. Either its data directory was restored from an older copy, and this is its "
                     "own history coming back, or the key is compromised, and the org must start again under a new "
                     "key", len(records), self.did, records[0].seq, records[-1].seq)
        self._tell(self.returned_listeners, records)

    def _is_from_peers(self, record: Record, own_ids: frozenset[bytes]) -> bool:
        """Whether `record` is one of this node's key but those it stores as its own (`_accept`'s `as_own`): one
        `accept` was offered, or one held for a missing predecessor that the batch released, whoever's batch that is
        (one the node signs, too: the same bytes, as digests are signed deterministically)."""
        return record.iss == self.did and record.id not in own_ids

    def _list_own(self, own_ids: frozenset[bytes], batch: list[tuple[Record, str | None]]) -> None:
        """Before the store takes a batch (each record with the peer it came from, gossip.acceptor): list the records
        of this node's key from peers in it durably (gossip.own_records), unless they are an adopted key's coming
        back (`_report_own`), so that a crash cannot store one unlisted; and, for the first the node signs with an
        adopted key, end its adoption durably (`OwnRecords.adoption_caught_up`: nothing of the newer copy can come
        back after it), so that a start stopped before its catch-up's end said so does not expect a thief's record
        following it at the next. What it raises refuses the batch."""
        if self.own_records.adopted == self.did and any(r.iss == self.did for r, _ in batch if r.id in own_ids):
            self.own_records.adoption_caught_up()
        own = [(r, peer) for r, peer in batch if self._is_from_peers(r, own_ids)]
        if own and not self._adopted_key_coming_back([r for r, _ in own]):
            self.own_records.add(own)

    def _adopted_key_coming_back(self, own: list[Record]) -> bool:
        """Whether signing is deferred (the start's catch-up sync), the store held no record of this node's key when
        it was, or `vouchnet key adopt` named the key in the list (gossip.own_records: a start after it stopped before
        its catch-up sync ended, having taken back some of the key's records), and the key is a later key of another:
        the start after `vouchnet key adopt`, which stored the earlier key's rotation naming it. The link is made by
        the key's first record coming back: before it is stored, that record (the first of `own`) names the earlier
        key, whose rotation names this one. (A record conflicting with one the node holds never gets here: it is
        listed as such, `_list_conflicts`.)"""
        if self._deferred is None or (self._held_own and self.own_records.adopted != self.did):
            return False
        first = own[0].body
        return bool(self.succession.earlier(self.did)) or (isinstance(first, OrgBody) and first.prior is not None
                                                            and self.succession.named_next(first.prior) == self.did)

    def _contest(self, rotation: Record) -> None:
        """A node rotates its key only while stopped (node.rotation), so a rotation of its key arriving while it
        runs was signed by someone else holding a copy of the key: contested at once (`contest`)."""
        assert isinstance(rotation.body, OrgBody)
        log.critical("this node's key %s signed a rotation to %s that this node did not make: the key is "
                     "compromised. Contesting it, which gets this org flagged as an equivocator everywhere; set "
                     "up the org again under a new key", rotation.iss, rotation.body.next)
        self.contest(rotation)

    def contest(self, rotation: Record) -> Record | None:
        """Contest a rotation of this node's key that the org did not make: left alone, the thief's new key would
        become the org wherever the rotation reached first. Instead the node signs its own next record (its last org
        record again): wherever that meets the thief's at one seq, the org is flagged as an equivocator, and the
        thief's key, linked to it, with it. The key is lost either way; the org must start again under a new one.
        The record signed, or None if ours at that seq already contradicts the rotation."""
        assert isinstance(rotation.body, OrgBody)
        head = self.store.head(self.did)
        if head is not None and head.seq >= rotation.seq:
            return None
        last = self.store.latest_org(self.did) or rotation.body
        return self.issue("org", org_body(last.name, last.network, last.addrs))

    def _accept(self, records: list[Record], *, as_own: Sequence[Record] = (), peer: str | None = None) -> Outcome:
        """Submit `records` (from `peer`, if known) to the acceptor and act on the outcome; `as_own` are those of them
        the node stores as its own (it signed them, or its operator adopted them): every other record of its key is
        listed (`_list_own`, before the store takes it) and reported."""
        own_ids = frozenset(r.id for r in as_own)
        outcome = self._acceptor.submit(records, functools.partial(self._list_own, own_ids), peer=peer)
        entered: set[str] = set()
        for record in outcome.accepted:
            entered |= self._track(record)
        if outcome.accepted:
            self._tell(self.listeners, outcome.accepted)
        entered = {org for org in entered if org in self.horizon}  # a later record may have taken one out again
        if entered:
            self._tell(self.horizon_listeners, entered)
        self._report_own([r for r in outcome.accepted if self._is_from_peers(r, own_ids)])
        conflicts = []
        own_keys = self.succession.keys(self.did) if outcome.equivocations else ()
        for ours, theirs in outcome.equivocations:
            if theirs.iss in own_keys:  # (with the bytes of `ours` if only held: the ledger keeps none of them)
                ours_id = record_id(ours)
                conflicts.append((theirs, ours_id, None if self.store.has(ours_id) else ours, peer))
            else:
                self._when_signing(functools.partial(self._sign_evidence, theirs.iss, ours, theirs.raw))
        for body in outcome.evidence:
            self._when_signing(functools.partial(self._sign_again, body))
        if conflicts:
            self._list_conflicts(conflicts)
        return outcome

    def _list_conflicts(self, conflicts: list[tuple[Record, bytes, bytes | None, str | None]]) -> None:
        """Records of the org's keys that conflict with one the node holds at their seq (`ours`, stored or held for a
        missing predecessor), each with that one's id, its bytes if only held, and the peer it came from: proof that
        the key signed twice at one seq, so that someone else holds it. The node signs no evidence against its own org
        (its operator decides) but lists them with their bytes, and those of a held `ours`
        (gossip.own_records.add_conflicts: counted until acknowledged) and says each at CRITICAL, once per record
        listed; those the list has no room for, once per record counted (gossip.own_records), within the log's
        limit. One the list cannot take (own_records.db cannot be written) is said at CRITICAL each time it comes,
        with the error: the batch is stored all the same, and that record, never stored, was said nowhere else."""
        unlisted = self.own_records.unlisted_conflicts
        try:
            listed = self.own_records.add_conflicts(conflicts)
        except OwnRecordsError as error:  # (raised, it would say the batch, stored, was not: these lines stay)
            for record, ours, _, peer in conflicts:
                log.critical("%s. NOT listed, nor counted: %s; this line is all this node keeps of it",
                             _conflict_said(record, ours, peer), error)
            return
        for record, ours, _, peer in listed:
            log.critical("%s. Listed in `vouchnet own-records list`, with its bytes",
                         _conflict_said(record, ours, peer))
        if (past := self.own_records.unlisted_conflicts - unlisted) > 0:
            log.critical("%d more record(s) of this org's keys conflicting with those this node holds at their seqs "
                         "are counted as not listed (conflicts_unlisted): the list keeps the bytes of %d, and makes "
                         "room only with acknowledged ones (dropping their bytes, oldest first, then the oldest rows "
                         "past %d); the key is compromised, see the first of them", past, MAX_CONFLICTS,
                         MAX_CONFLICT_ROWS)

    def _sign_evidence(self, offender: str, ours: bytes, theirs: bytes) -> None:
        """Two records of key `offender` at one seq: our `equivocation` record, unless the offender is flagged already,
        or is (by now) a key of this org, which `_list_conflicts` reports instead."""
        if offender not in self.flagged and offender not in self.succession.keys(self.did):
            self.issue("equivocation", record_equivocation_body(ours, theirs))

    def _sign_again(self, body: EquivocationBody) -> None:
        """Evidence an org outside the horizon signed (verified, checkpoint evidence too, with the record that
        carried it): our own `equivocation` record of it, unless the offender is flagged already. Its issuer's
        record is not stored, and a fork shown only to orgs we do not replicate would otherwise go unflagged here."""
        if body.offender not in self.flagged and body.offender not in self.succession.keys(self.did):
            self.issue("equivocation", body.to_wire())

    def _track(self, record: Record) -> set[str]:
        """Keep the horizon, the links between keys and the flagged set in step with an accepted record; the orgs
        it brought inside the horizon."""
        body = record.body
        if isinstance(body, VouchBody) and body.basis == "org-peer":
            return self.horizon.add_edge(record.id, record.iss, body.subject)
        if isinstance(body, RevokeBody):  # (the acceptor lets in only revocations of vouches of the revoker's org)
            self.horizon.remove_edge(body.record)  # a no-op unless it names an org-peer vouch
        elif isinstance(body, EquivocationBody):
            self._flag(body.offender)
        elif isinstance(body, OrgBody):
            entered = set()
            # The links first: a key joining a flagged org is flagged before its rotation is placed.
            for link in self.succession.note(record):
                self._linked(link)
                # What it signed after its first record was set aside until now; so was what its successors
                # signed, if this link made their org known (each key's tail is walked once: then it is known).
                if link.successor in entered:
                    continue  # the tail of the record's other link, walked already
                entered.add(link.successor)
                if not self.succession.unlinked(link.successor):
                    entered.update(self.succession.later(link.successor))
            if body.next is not None:
                entered |= self.horizon.add_successor(record.iss, body.next)
            if body.prior is not None:
                entered |= self.horizon.add_prior(record.iss, body.prior)
            return entered
        return set()

    def _flag(self, key: str) -> None:
        """Flag every key of `key`'s org. The flagged keys are always whole orgs (a link flags the side that was not
        yet), so a flagged key's org needs no walk: a hostile org may have thousands of keys, and be reported by
        every peer."""
        if key not in self.flagged:
            self._flag_keys(self.succession.keys(key))

    def _flag_keys(self, keys: Sequence[str]) -> None:
        self.flagged.update(keys)
        self.horizon.flag(*keys)

    def _linked(self, link: Link) -> None:
        """Two keys became one org: a flag on either covers both (the new key signed nothing else yet that
        counts: the acceptor sets its later records aside until the link). Only the side not yet flagged is walked,
        so that each key of a long chain is walked once however the chain grows."""
        if link.prior in self.flagged and link.successor not in self.flagged:
            self._flag_keys(self.succession.later(link.successor))
        elif link.successor in self.flagged and link.prior not in self.flagged:
            self._flag_keys((*self.succession.earlier(link.prior), link.prior))
        self._tell(self.link_listeners, link)

    def _tell(self, listeners: Sequence[Callable[[_T], None]], news: _T) -> None:
        """Call each listener with `news`. One that raises is logged and counted, and the others are still told:
        the records are stored already, and an error there, caught nowhere between here and gossip delivery,
        would stop the node, and again at every start as the stored records are replayed to it."""
        for listener in listeners:
            try:
                listener(news)
            except Exception:
                self.listener_errors += 1
                log.exception("a listener of accepted records failed; the records are stored, and what the listener "
                              "keeps (scores, say) may miss them until the node restarts")


def _conflict_said(record: Record, ours: bytes, peer: str | None) -> str:
    """What `_list_conflicts` says of `record`, of this org's key, conflicting with the one of id `ours` held."""
    return (f"a record of this org's key {record.iss} at seq {record.seq} (id {record.id.hex()}) came from "
            f"{f'peer {peer}' if peer else 'the API'} and conflicts with the record {ours.hex()} that this node holds "
            "at that seq: the key signed twice at one seq, so someone else holds it (a thief, or another copy of the "
            "data directory signing on its own). Other nodes that see both flag the org as an equivocator. Stop any "
            "other copy; if none explains it, the key is compromised: rotate it (`vouchnet key rotate`, the node "
            "stopped) so that the stolen copy signs nothing more that counts")
