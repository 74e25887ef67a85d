"""Catch-up sync (`/vouchnet/sync/1` and `/2`, DESIGN.md §5) as sans-I/O state machines: a client that pulls what its
replica lacks (a heads exchange, then bounded pages of missing ranges, or a targeted fetch of known gaps) and a
server that answers from a RecordStore. Frames in, frames out; no sockets and no clock (the shell's job).
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sortedcontainers import SortedList

from vouching import MAX_RECORD_SIZE, InvalidRecord, Record

from .store import Head
from .sync_marks import HeadMarks
from .sync_messages import (
    MAX_COUNT,
    MAX_ISSUER,
    MAX_RANGES,
    MAX_REASON,
    MAX_SEQ,
    SYNC_PROTOCOL,
    SYNC_PROTOCOL_2,
    Busy,
    ErrorReply,
    HeadEntry,
    HeadsPage,
    HeadsRequest,
    LocalProtocolError,
    OtherNetwork,
    OtherNetworkPeer,
    PeerBusy,
    Range,
    RecordsPage,
    RecordsRequest,
    Refused,
    RemoteProtocolError,
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode_held_heads,
    encode_message,
)
from .validation import check_records

_R = TypeVar("_R", bound=Reply)
# records walked to find the issuers changed since a mark that cost a unit of the serving budget: about the CPU of a
# KiB of heads served
WALKED_PER_UNIT = 100
# issuers found changed since a mark that cost a unit besides: sorting them takes about the CPU of serving their heads,
# some 10 a KiB
CHANGED_PER_UNIT = 10


@dataclass(frozen=True)
class SyncLimits:
    """Bounds on one side of a sync exchange; a client states its page bounds in each request."""

    page_records: int = 500  # records per page (node config: limits.sync_page_records)
    page_bytes: int = 1 << 20  # record bytes per page; at least one largest record, so every page can progress
    heads_page: int = 1000  # heads per page
    max_ranges: int = MAX_RANGES  # ranges per records request we send
    max_heads: int = 1_000_000  # heads one session reads from a peer before calling it hostile

    def __post_init__(self) -> None:
        for name in ("page_records", "heads_page", "max_heads"):
            if not 1 <= getattr(self, name) <= MAX_COUNT:
                raise ValueError(f"SyncLimits.{name}: must be from 1 to {MAX_COUNT}")
        if not 1 <= self.max_ranges <= MAX_RANGES:
            raise ValueError(f"SyncLimits.max_ranges: must be from 1 to {MAX_RANGES}")
        if not MAX_RECORD_SIZE <= self.page_bytes <= MAX_COUNT:
            raise ValueError(f"SyncLimits.page_bytes: must be from {MAX_RECORD_SIZE} (one record) to {MAX_COUNT}")

    @property
    def max_frame(self) -> int:
        """The largest frame either side of an exchange under these limits may have to read."""
        entry = MAX_ISSUER + 3 + 2 * 9 + 2 + 32  # [iss, uint, uint or 32-byte id] at their widest
        records = self.page_bytes + 5 * self.page_records  # each record's byte-string head
        return 1024 + max(records, entry * max(self.heads_page, MAX_RANGES), 2 * MAX_RECORD_SIZE)


class RecordReader(Protocol):
    """What sync reads from a replica's store (gossip.store.RecordStore is one)."""

    def head(self, iss: str) -> Head | None: ...

    def heads(self) -> dict[str, int]: ...

    def id_at(self, iss: str, seq: int) -> bytes | None: ...

    def issuer_range(self, iss: str, first_seq: int, limit: int) -> list[bytes]: ...


class IssuerIndex:
    """The store's issuers in sorted order, for serving heads in pages; keep it current with `add`
    (a Replica listener) so that every inbound session shares it instead of sorting its own copy."""

    def __init__(self, store: RecordReader) -> None:
        self._issuers = SortedList(store.heads())

    def add(self, records: Iterable[Record]) -> None:
        for record in records:
            if record.seq == 1:  # an issuer's first record is the only one that can add it
                self._issuers.add(record.iss)

    def after(self, after: str, limit: int) -> list[str]:
        """Up to `limit` issuers sorted after `after`."""
        return list(itertools.islice(self._issuers.irange(minimum=after, inclusive=(False, False)), limit))


def missing_ranges(store: RecordReader, gaps: Mapping[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """The part of each issuer's (first, last) range above what `store` holds of it, up to MAX_SEQ."""
    missing = {}
    for iss, (first, last) in gaps.items():
        head = store.head(iss)
        first, last = max(first, head.seq + 1 if head else 1), min(last, MAX_SEQ)
        if first <= last:
            missing[iss] = (first, last)
    return missing


def check_page(raws: Sequence[bytes]) -> list[Record]:
    """Verify every record of a page (`gossip.validation.check_records`); one invalid record is the peer's
    offence."""
    try:
        return check_records(raws)
    except InvalidRecord as e:
        raise RemoteProtocolError("invalid_record", str(e)) from None


# --- The client ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Write this frame, then read the peer's reply and hand it to `receive`."""

    payload: bytes


@dataclass(frozen=True)
class ReadNext:
    """Read the peer's next frame and hand it to `receive`."""


@dataclass(frozen=True)
class Deliver:
    """Verify these records (`check_page`) and hand them to `deliver`."""

    records: tuple[bytes, ...]


@dataclass(frozen=True)
class Finished:
    """Nothing left to ask this peer for: close the stream."""


Event = Send | ReadNext | Deliver | Finished


class SyncClient:
    """One catch-up session with one peer, pulling what our replica lacks within its horizon.

    Full sync: pages of the peer's heads, then every range we lack of an issuer inside `horizon`, and the
    peer's head record wherever ours at its seq is another (equivocation evidence for the replica). Targeted
    (`gaps`): only the given ranges, for records that gossip delivered ahead of their predecessors.
    When a record that would extend our chain names another predecessor than ours, the rest of that range is
    skipped and the peer's record at our head is fetched instead: the replica turns the pair into evidence.
    Heads requests state `network`, our network (None: none), which a peer of another network answers with its own,
    and `since` (on `protocol` `/2` only), the mark of the peer's last answer with which our store was left in step:
    the peer may answer only the heads changed since (`changed_only`); `in_step_mark()` is the mark to ask since next
    time.
    The ranges of `own` (the keys of our node's org) are asked for before any other issuer's, in requests of their
    own: what the node may sign next depends only on them (a node restored from an older copy, far behind, has them
    back before the rest of the round). `holds_own()` says, once every heads page is read, whether the peer's heads
    named one of `own` (the peer holds the org's records, which a node stores only inside its horizon, DESIGN §5, so
    it replicates the org) and our store now holds each of those keys' records up to the seq the peer named.
    """

    def __init__(
        self,
        store: RecordReader,
        horizon: Container[str],
        limits: SyncLimits,
        *,
        gaps: Mapping[str, tuple[int, int]] | None = None,
        network: str | None = None,
        own: Container[str] = (),
        since: bytes | None = None,
        protocol: str = SYNC_PROTOCOL,
    ) -> None:
        if since is not None and protocol != SYNC_PROTOCOL_2:
            raise ValueError(f"SyncClient: a mark is asked since on {SYNC_PROTOCOL_2} only")
        self._protocol = protocol
        self._store = store
        self._network = network
        self._since = since
        self._mark: bytes | None = None  # the mark the peer's heads answer named, if any
        self.changed_only = False  # the peer answered only the heads changed since `since`
        self._asked_up_to: dict[str, int] = {}  # issuer -> the last seq of the ranges asked of it
        self._own = own
        self._own_heads: dict[str, int] = {}  # of `own`, those the peer's heads named: the seq named
        self._horizon = horizon
        self._limits = limits
        self._gaps = gaps
        self._state = "new"
        self._own_wants: deque[Range] = deque()  # asked for before `_wants`
        self._wants: deque[Range] = deque()
        self._heads_after = ""
        self._heads_read = 0
        # heads read that the client acts on (a range or evidence asked, or one of `own` named): what keeps the peer's
        # pace (gossip.peer_pace); heads of issuers outside `horizon` cost nothing to make up
        self.heads_used = 0
        # heads read that it does not act on, of issuers whose records `store` holds up to the seq named: a session
        # names each issuer once at most, so that what they keep of the pace is bounded by what the store holds
        self.heads_held = 0
        self._ranges: tuple[Range, ...] = ()
        self._more = False
        self._at = 0  # the range the next record may belong to
        self._next_seq = 0
        self._prev: bytes | None = None  # id of the previous record served in the current range
        self._skip = False  # the current range left our chain: ignore its remaining records
        self._evidence_asked: set[str] = set()

    def start(self) -> Send | Finished:
        """The first request (or Finished if a targeted fetch has nothing to ask)."""
        self._expect("new", "start")
        if self._gaps is None:
            return self._ask_heads()
        for iss, (first, last) in missing_ranges(self._store, self._gaps).items():
            if iss in self._horizon:
                self._want(Range(iss, first, last))
        return self._next_request()

    def receive(self, payload: bytes) -> Event:
        """The peer's reply to our last request; raises RemoteProtocolError if it breaks the protocol."""
        return self.receive_reply(decode_reply(payload, self._protocol))

    def receive_reply(self, reply: Reply) -> Event:
        """`receive` for a reply already decoded (sync_messages.decode_reply), as a shell may do on a worker thread.

        Raises PeerBusy for a Busy reply, OtherNetworkPeer for an OtherNetwork one: the session ends, and it is no
        offence."""
        if self._state not in ("heads", "records"):
            raise LocalProtocolError("unexpected", f"receive() while {self._state}: no reply is due")
        if isinstance(reply, ErrorReply):
            raise RemoteProtocolError("refused", f"the peer refused our request: {reply.reason}")
        if isinstance(reply, Busy):
            raise PeerBusy(reply.retry_after, f"the peer serves us again in {reply.retry_after} s: {reply.reason}")
        if isinstance(reply, OtherNetwork) and self._state == "heads":
            raise OtherNetworkPeer(reply.network)
        if self._state == "heads":
            return self._heads_page(self._reply(reply, HeadsPage))
        return self._records_page(self._reply(reply, RecordsPage))

    def names_own(self) -> bool | None:
        """Whether the peer's heads named one of `own`; None until every heads page is read (and in a fetch of gaps,
        which asks no heads), and in an answer of the heads changed only (`changed_only`) that named none: the peer
        may hold them unchanged."""
        if self._state in ("new", "heads") or self._gaps is not None:
            return None
        return bool(self._own_heads) or (None if self.changed_only else False)

    def holds_own(self) -> bool:
        """Whether the peer's heads named one of `own`, and our store holds each one named up to the seq named: a peer
        naming a head it then does not serve (a hostile one, say) shows that the org signed more than we hold. False
        until every heads page is read (a later page may name another of `own`); true from when the records of `own`
        asked for are in the store, which can be before the session ends (they are asked for first). In an answer of the
        heads changed only, those of `own` it named: the others the peer held as we did at the mark, in step."""
        if self._state in ("new", "heads"):
            return False
        return bool(self._own_heads) and all((head := self._store.head(iss)) is not None and head.seq >= seq
                                             for iss, seq in self._own_heads.items())

    def in_step_mark(self) -> bytes | None:
        """Once a full session is done, the mark its heads answer named if our store now holds every record it asked
        for (none of a range was left out, or skipped at a fork), so that the heads changed since that mark are all
        the peer holds beyond ours; else None."""
        if self._state != "done" or self._gaps is not None:
            return None
        held = all((head := self._store.head(iss)) is not None and head.seq >= last
                   for iss, last in self._asked_up_to.items())
        return self._mark if held else None

    def deliver(self, records: Sequence[Record]) -> tuple[list[Record], Event]:
        """Verified records of the page just received: those to offer the replica, and what to do next.

        Raises RemoteProtocolError if a record is not the next one of a requested range.
        """
        self._expect("deliver", "deliver")
        offered = [r for r in records if self._place(r)]
        self._state = "records"
        return offered, ReadNext() if self._more else self._next_request()

    # heads

    def _ask_heads(self) -> Send:
        self._state = "heads"
        return Send(encode_message(
            HeadsRequest(self._heads_after, self._limits.heads_page, self._network, self._since)))

    def _heads_page(self, page: HeadsPage) -> Event:
        if len(page.heads) > self._limits.heads_page:
            raise RemoteProtocolError(
                "limit", f"heads: {len(page.heads)} entries, more than the {self._limits.heads_page} asked for")
        self._heads_read += len(page.heads)
        if self._heads_read > self._limits.max_heads:
            raise RemoteProtocolError("limit", f"heads: more than {self._limits.max_heads} issuers in one session")
        if page.more and not page.heads:
            raise RemoteProtocolError("malformed", "heads: an empty page must be the last (more = false)")
        self._marked(page)
        for entry in page.heads:
            if entry.iss <= self._heads_after:
                raise RemoteProtocolError(
                    "out_of_range", f"heads: issuer {entry.iss:.80} is not after {self._heads_after:.80}")
            self._heads_after = entry.iss
            named_own = entry.iss in self._own
            if named_own:
                self._own_heads[entry.iss] = entry.seq
            if self._plan(entry) or named_own:
                self.heads_used += 1
            elif (ours := self._store.head(entry.iss)) is not None and entry.seq <= ours.seq:
                self.heads_held += 1
        return self._ask_heads() if page.more else self._next_request()

    def _marked(self, page: HeadsPage) -> None:
        """Take the answer's mark and kind from its first page; later pages must agree on its kind."""
        if page.changed and self._since is None:
            raise RemoteProtocolError("malformed", "heads: changed ones only, though we named no mark")
        if not self._heads_after:  # (the first page: a later one follows a page that named heads)
            self._mark, self.changed_only = page.mark, page.changed
        elif page.changed != self.changed_only:
            raise RemoteProtocolError("malformed", "heads: a page of changed ones only in an answer of all, or the "
                                                   "other way round")

    def _plan(self, entry: HeadEntry) -> bool:
        """Ask for what `entry` shows we lack; whether it asked for anything."""
        if entry.iss not in self._horizon:
            return False
        ours = self._store.head(entry.iss)
        if ours is None or entry.seq > ours.seq:
            self._want(Range(entry.iss, ours.seq + 1 if ours else 1, entry.seq))
            return True
        if entry.seq == ours.seq and entry.id != ours.id:
            return self._want_evidence(entry.iss, entry.seq)
        if entry.seq < ours.seq and entry.id != self._store.id_at(entry.iss, entry.seq):
            # A peer behind us on another branch: its pull from us would show it the fork, but the evidence it
            # signs reaches us only if it is inside our horizon, and a peer holding that branch may sign none.
            return self._want_evidence(entry.iss, entry.seq)
        return False

    def _want_evidence(self, iss: str, seq: int) -> bool:
        """Ask for the peer's record of `iss` at `seq` unless this session asked for one of `iss` already; whether it
        asked."""
        if iss in self._evidence_asked:
            return False
        self._evidence_asked.add(iss)
        self._want(Range(iss, seq, seq))
        return True

    def _want(self, wanted: Range) -> None:
        (self._own_wants if wanted.iss in self._own else self._wants).append(wanted)
        self._asked_up_to[wanted.iss] = max(wanted.last, self._asked_up_to.get(wanted.iss, 0))

    # records

    def _next_request(self) -> Send | Finished:
        """The next request: `own`'s ranges first, none of another issuer's with them (the shell offers the replica
        what it fetched at the end of each request, so that they are stored before the next is sent)."""
        wants = self._own_wants or self._wants
        if not wants:
            self._state = "done"
            return Finished()
        count = min(len(wants), self._limits.max_ranges)
        self._ranges = tuple(wants.popleft() for _ in range(count))
        self._at, self._next_seq, self._prev, self._skip = 0, self._ranges[0].first, None, False
        self._state = "records"
        return Send(encode_message(RecordsRequest(self._ranges, self._limits.page_records, self._limits.page_bytes)))

    def _records_page(self, page: RecordsPage) -> Event:
        if len(page.records) > self._limits.page_records:
            raise RemoteProtocolError(
                "limit", f"records: {len(page.records)} in a page, more than {self._limits.page_records}")
        if (size := sum(map(len, page.records))) > self._limits.page_bytes:
            raise RemoteProtocolError("limit", f"records: {size} bytes in a page, more than {self._limits.page_bytes}")
        if page.more and not page.records:
            raise RemoteProtocolError("malformed", "records: an empty page must be the last (more = false)")
        self._more = page.more
        if page.records:
            self._state = "deliver"
            return Deliver(page.records)
        return self._next_request()

    def _place(self, record: Record) -> bool:
        """Check that `record` is the next one of a requested range; whether to offer it to the replica."""
        while not (
            record.iss == self._ranges[self._at].iss and record.seq == self._next_seq <= self._ranges[self._at].last
        ):
            self._at += 1  # the peer has no more of the current range
            if self._at == len(self._ranges):
                raise RemoteProtocolError(
                    "out_of_range",
                    f"records: {record.iss:.80} seq {record.seq} is not the next record of a requested range"
                )
            self._next_seq, self._prev, self._skip = self._ranges[self._at].first, None, False
        self._next_seq += 1
        previous, self._prev = self._prev, record.id
        if self._skip:
            return False
        if previous is not None:
            self._skip = record.prev != previous  # the peer's own chain breaks here: nothing after it can follow
            return not self._skip
        head = self._store.head(record.iss)
        if head is not None and record.seq == head.seq + 1 and record.prev != head.id:
            self._skip = True  # a fork: the peer's record at our head proves it
            self._want_evidence(record.iss, head.seq)
        return not self._skip

    def _reply(self, reply: Reply, expected: type[_R]) -> _R:
        if not isinstance(reply, expected):
            raise RemoteProtocolError(
                "unexpected", f"a {type(reply).__name__} reply while waiting for {expected.__name__}")
        return reply

    def _expect(self, state: str, call: str) -> None:
        if self._state != state:
            raise LocalProtocolError("unexpected", f"{call}() while {self._state}")


# --- The server ---------------------------------------------------------------------------------------------


class SyncServer:
    """Answers one inbound stream's requests from the store: heads pages and record pages. Every answer is bounded
    by our limits and the client's. Cosign requests are the shell's to answer where this node witnesses (the
    witness writes durably before it answers), and so are requests for the checkpoints it holds of the asker's log;
    here both are refused with 404. With `marks` (a `/2` stream), each heads page names the mark of the heads as its
    answer's first page was made, and a request `since` a mark that `marks` knows is answered with the heads of the
    issuers changed since alone (none: a single empty page), in pages as any other."""

    def __init__(self, store: RecordReader, issuers: IssuerIndex, limits: SyncLimits,
                 marks: HeadMarks | None = None) -> None:
        self._store = store
        self._issuers = issuers
        self._limits = limits
        self._marks = marks
        self._answer_mark: bytes | None = None  # of the heads answer under way: the mark as its first page was made
        self._answer_since: bytes | None = None  # the mark it answers since, and the issuers changed since (sorted)
        self._changed: list[str] | None = None
        self.records_served = 0
        self.units = 0  # records served and ranges read from the store: what serving budgets count (heads, by KiB)
        self.continues = False  # the answer being produced has another frame to come

    def receive(self, payload: bytes) -> Iterator[bytes]:
        """The reply frames to one request, produced as they are written (a large answer is read page by page).

        Raises RemoteProtocolError at once for a malformed request; answer it with `refusal`, then close.
        """
        return self.answer(decode_request(payload, SYNC_PROTOCOL if self._marks is None else SYNC_PROTOCOL_2))

    def answer(self, request: Request) -> Iterator[bytes]:
        """The reply frames to a decoded request (see `receive`); `continues` says, after each, if another follows."""
        self.continues = True
        if isinstance(request, HeadsRequest):
            return self._heads(request)
        if isinstance(request, RecordsRequest):
            return self._records(request)
        return self._last(encode_message(Refused(404, "this node does not witness")))

    @staticmethod
    def refusal(error: RemoteProtocolError) -> bytes:
        """The frame that tells the client why its request was rejected."""
        return encode_message(ErrorReply(str(error)[:MAX_REASON]))

    def _heads(self, request: HeadsRequest) -> Iterator[bytes]:
        limit = min(request.limit, self._limits.heads_page)
        if self._marks is not None and (not request.after or request.since != self._answer_since):
            self._begin_heads(self._marks, request.since)
        if self._changed is None:
            issuers = self._issuers.after(request.after, limit + 1)
        else:
            start = bisect.bisect_right(self._changed, request.after)
            issuers = self._changed[start:start + limit + 1]
        heads = [(iss, head.seq, head.id) for iss in issuers[:limit] if (head := self._store.head(iss)) is not None]
        yield from self._last(encode_held_heads(heads, more=len(issuers) > limit, mark=self._answer_mark,
                                                changed=self._changed is not None))

    def _begin_heads(self, marks: HeadMarks, since: bytes | None) -> None:
        """A new heads answer: its mark, and the issuers changed since `since` if `marks` knows it (finding them costs a
        unit per WALKED_PER_UNIT records walked and per CHANGED_PER_UNIT issuers found, who asks again and again since
        an old mark paying for the work as if served their heads)."""
        self._answer_mark, self._answer_since, self._changed = marks.mark(), since, None
        if since is not None and (changed := marks.changed_since(since)) is not None:
            self._changed, walked = changed
            self.units += walked // WALKED_PER_UNIT + len(self._changed) // CHANGED_PER_UNIT

    def _records(self, request: RecordsRequest) -> Iterator[bytes]:
        limit = min(request.limit, self._limits.page_records)
        budget = min(request.max_bytes, self._limits.page_bytes)
        page: list[bytes] = []
        size = 0
        for wanted in request.ranges:
            seq = wanted.first
            while seq <= wanted.last:
                count = min(limit, wanted.last - seq + 1)
                chunk = self._store.issuer_range(wanted.iss, seq, count)
                self.units += 1 + len(chunk)  # a range of an issuer we do not hold costs its look-up
                for raw in chunk:
                    if len(page) == limit or size + len(raw) > budget:
                        yield self._page(page, more=True)
                        page, size = [], 0
                    page.append(raw)
                    size += len(raw)
                if len(chunk) < count:
                    break  # an issuer's records are contiguous from seq 1: there is nothing further
                seq += count
        yield self._page(page, more=False)

    def _page(self, records: list[bytes], *, more: bool) -> bytes:
        self.records_served += len(records)
        self.continues = more
        return encode_message(RecordsPage(tuple(records), more=more))

    def _last(self, frame: bytes) -> Iterator[bytes]:
        self.continues = False
        yield frame
