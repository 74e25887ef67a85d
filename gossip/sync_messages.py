"""The messages of `/vouchnet/sync/1` and `/2` (catch-up sync and cosigning, DESIGN.md §5): deterministic CBOR maps
(vouching.cbor), one per length-prefixed frame, strictly decoded; and the protocol errors, named for whose fault
they are (as h11 does). `/2` is `/1` with marks of the heads (gossip.sync_marks): a heads page names its answer's
mark, and a heads request may ask for the heads changed `since` one; neither field is sent or taken on `/1`, whose
nodes refuse unknown fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.note import MAX_NOTE_SIZE
from ledger.witness import MAX_REQUEST_SIZE
from vouching import MAX_RECORD_SIZE
from vouching.bodies import NETWORK_PATTERN, NETWORK_RULE
from vouching.cbor import CborError, decode, encode, encode_in_key_order

SYNC_PROTOCOL = "/vouchnet/sync/1"
SYNC_PROTOCOL_2 = "/vouchnet/sync/2"
SYNC_PROTOCOLS = (SYNC_PROTOCOL_2, SYNC_PROTOCOL)  # served, and offered in this order of preference
MAX_MARK = 64  # bytes of a mark of a peer's heads
MAX_SEQ = 2**63 - 1  # a range may end here to mean "everything the peer has"
MAX_ISSUER = 256  # characters of an issuer did on the wire (a did:key is 56)
MAX_REASON = 512  # characters of a refusal's reason
ID_SIZE = 32
MAX_COUNT = 2**32 - 1  # page bounds a client states
MAX_RANGES = 256  # ranges in one records request: a server takes no more, so it is the protocol's, not a setting
MAX_RETRY = 3600  # seconds a busy server may ask a client to wait before asking again


# The reasons a SyncError carries (each raised where its exception is made; PeerBusy's is "throttled")
SYNC_ERROR_REASONS = ("bad_cosignature", "invalid_record", "limit", "malformed", "network", "out_of_range",
                      "preempted", "refused", "session", "slow", "stream", "throttled", "turn", "unexpected")


class SyncError(Exception):
    """A `/vouchnet/sync/1` exchange broke a rule; `reason` is a short code for counting, the message says how."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class LocalProtocolError(SyncError):
    """This node tried to send something the protocol forbids: a bug here, never the peer's fault."""


class RemoteProtocolError(SyncError):
    """The peer sent something the protocol forbids (reason "refused": the peer rejected our request instead)."""


class PeerBusy(SyncError):
    """The peer declined to serve us for now (a Busy reply): no offence; ask it nothing for `retry_after` seconds."""

    def __init__(self, retry_after: int, message: str) -> None:
        super().__init__("throttled", message)
        self.retry_after = retry_after


class OtherNetworkPeer(SyncError):
    """The peer answered that it is on another network (an OtherNetwork reply): it holds none of our network's
    records; no offence, but nothing to keep it for."""

    def __init__(self, network: str) -> None:
        super().__init__("network", f"the peer is on network {network!r}")
        self.network = network


# --- Requests (the side that opened the stream sends these) ------------------------------------------------


@dataclass(frozen=True)
class HeadsRequest:
    """Ask for a page of at most `limit` of the peer's heads: issuers sorted after `after` ("" at first). `network`,
    the asker's (`vouchnet init --network`), is answered OtherNetwork by a peer on another; None states none (an
    older client, or another implementation), and is served. `since` (`/2` only): the mark of an earlier answer of
    the peer's, to be answered only the heads changed after it (`HeadsPage.changed`), if the peer still knows it."""

    after: str
    limit: int
    network: str | None = None
    since: bytes | None = None

    def __post_init__(self) -> None:
        _check_issuer("after", self.after, empty_ok=True)
        _check_count("limit", self.limit, 1)
        _check_network(self.network)
        _check_mark("since", self.since)


@dataclass(frozen=True)
class Range:
    """Records of `iss` with seq in first..last (both included)."""

    iss: str
    first: int
    last: int

    def __post_init__(self) -> None:
        _check_issuer("iss", self.iss)
        _check_seq("first", self.first)
        _check_seq("last", self.last)
        if self.first > self.last:
            raise LocalProtocolError("malformed", f"range of {self.iss:.80}: first {self.first} > last {self.last}")


@dataclass(frozen=True)
class RecordsRequest:
    """Ask for records of some ranges; the answer is one or more RecordsPages, the last with more=False, each
    of at most `limit` records and `max_bytes` bytes of records (at least one record's worth)."""

    ranges: tuple[Range, ...]
    limit: int
    max_bytes: int

    def __post_init__(self) -> None:
        if not 1 <= len(self.ranges) <= MAX_RANGES:
            raise LocalProtocolError("limit", f"ranges: must be 1 to {MAX_RANGES}, not {len(self.ranges)}")
        _check_count("limit", self.limit, 1)
        _check_count("bytes", self.max_bytes, MAX_RECORD_SIZE)


@dataclass(frozen=True)
class CosignRequest:
    """Ask the peer's witness to cosign: a C2SP tlog-witness add-checkpoint request body."""

    body: bytes

    def __post_init__(self) -> None:
        if type(self.body) is not bytes or not 0 < len(self.body) <= MAX_REQUEST_SIZE:
            raise LocalProtocolError("limit", f"req: must be 1 to {MAX_REQUEST_SIZE} bytes")


@dataclass(frozen=True)
class CheckpointRequest:
    """Ask for the newest checkpoint the peer holds of our own records log (as its witness, or seen gossiped): a
    node restored from an older copy of its data directory learns what it published before it signs again.
    `network`: as a HeadsRequest's."""

    network: str | None = None

    def __post_init__(self) -> None:
        _check_network(self.network)


Request = HeadsRequest | RecordsRequest | CosignRequest | CheckpointRequest


# --- Replies (the side that accepted the stream sends these) -----------------------------------------------


@dataclass(frozen=True)
class HeadEntry:
    """The newest record the peer holds of one issuer."""

    iss: str
    seq: int
    id: bytes

    def __post_init__(self) -> None:
        _check_issuer("iss", self.iss)
        _check_seq("seq", self.seq)
        if type(self.id) is not bytes or len(self.id) != ID_SIZE:
            raise LocalProtocolError("malformed", f"head of {self.iss:.80}: id must be {ID_SIZE} bytes")


@dataclass(frozen=True)
class HeadsPage:
    """Heads in issuer order; `more` if another page follows (ask again after the last issuer). On `/2`: `mark`, the
    mark of the heads as the answer's first page was made (ask `since` it next time), and `changed` if the answer
    holds only the heads changed since the mark asked (none at all: nothing changed)."""

    heads: tuple[HeadEntry, ...]
    more: bool
    mark: bytes | None = None
    changed: bool = False

    def __post_init__(self) -> None:
        _check_mark("mark", self.mark)


@dataclass(frozen=True)
class RecordsPage:
    """Records (COSE bytes) in the order of the requested ranges; `more` if another page of this answer follows."""

    records: tuple[bytes, ...]
    more: bool

    def __post_init__(self) -> None:
        for i, record in enumerate(self.records):
            if type(record) is not bytes or not 0 < len(record) <= MAX_RECORD_SIZE:
                raise LocalProtocolError("limit", f"records[{i}]: must be 1 to {MAX_RECORD_SIZE} bytes")


@dataclass(frozen=True)
class Cosigned:
    """The witness's cosignature: one C2SP signed-note signature line, newline included."""

    line: str


@dataclass(frozen=True)
class Refused:
    """The witness declined (tlog-witness's HTTP status); `size` is the size it last cosigned, on a 409 Conflict."""

    status: int
    reason: str
    size: int | None = None

    def __post_init__(self) -> None:
        if type(self.status) is not int or not 400 <= self.status <= 599:
            raise LocalProtocolError("malformed", f"status: {self.status} is not an HTTP error status")
        _check_text("reason", self.reason)
        if self.size is not None and (type(self.size) is not int or not 0 <= self.size <= 2**64 - 1):
            raise LocalProtocolError("malformed", "size: must be a tree size")


@dataclass(frozen=True)
class ErrorReply:
    """The peer rejects our request as malformed and closes the stream."""

    reason: str

    def __post_init__(self) -> None:
        _check_text("reason", self.reason)


@dataclass(frozen=True)
class Busy:
    """The peer has served us (or everyone) as much as it serves for now: ask again after `retry_after` seconds. It
    answers a heads or records request, or takes the place of the next page of one, and the stream is done."""

    retry_after: int
    reason: str

    def __post_init__(self) -> None:
        if type(self.retry_after) is not int or not 1 <= self.retry_after <= MAX_RETRY:
            raise LocalProtocolError("malformed", f"retry: must be an integer from 1 to {MAX_RETRY} (seconds)")
        _check_text("reason", self.reason)


@dataclass(frozen=True)
class HeldCheckpoint:
    """The answer to a CheckpointRequest: the log-signed note of that checkpoint, or None if the peer holds none."""

    note: bytes | None

    def __post_init__(self) -> None:
        if self.note is not None and (type(self.note) is not bytes or not 0 < len(self.note) <= MAX_NOTE_SIZE):
            raise LocalProtocolError("limit", f"note: must be 1 to {MAX_NOTE_SIZE} bytes")


@dataclass(frozen=True)
class OtherNetwork:
    """The answer to a heads or checkpoint request stating another network than the peer's: the peer's `network`;
    the stream is done, and the peer disconnects the asker."""

    network: str

    def __post_init__(self) -> None:
        _check_network(self.network)


Reply = HeadsPage | RecordsPage | Cosigned | Refused | ErrorReply | Busy | HeldCheckpoint | OtherNetwork


def _largest_request() -> int:
    """The length of the longest request frame the protocol allows: each kind with every field at its widest."""
    widest = "\U0010ffff" * MAX_ISSUER  # 4 UTF-8 bytes a character
    requests: list[Request] = [
        HeadsRequest(widest, MAX_COUNT, "a" * 64, bytes(MAX_MARK)),
        RecordsRequest(tuple(Range(widest, MAX_SEQ, MAX_SEQ) for _ in range(MAX_RANGES)), MAX_COUNT, MAX_COUNT),
        CosignRequest(bytes(MAX_REQUEST_SIZE)),
    ]
    return max(len(encode_message(request)) for request in requests)


def _check_issuer(field: str, value: str, *, empty_ok: bool = False) -> None:
    if type(value) is not str or len(value) > MAX_ISSUER or (not value and not empty_ok):
        raise LocalProtocolError(
            "malformed", f"{field}: must be a text of {0 if empty_ok else 1} to {MAX_ISSUER} characters")


def _check_network(value: str | None) -> None:
    if value is not None and (type(value) is not str or not NETWORK_PATTERN.fullmatch(value)):
        raise LocalProtocolError("malformed", f"net: must be {NETWORK_RULE}")


def _check_mark(field: str, value: bytes | None) -> None:
    if value is not None and (type(value) is not bytes or not 0 < len(value) <= MAX_MARK):
        raise LocalProtocolError("malformed", f"{field}: must be a byte string of 1 to {MAX_MARK} bytes")


def _check_seq(field: str, value: int) -> None:
    if type(value) is not int or not 1 <= value <= MAX_SEQ:
        raise LocalProtocolError("malformed", f"{field}: must be an integer from 1 to 2^63 - 1")


def _check_count(field: str, value: int, least: int) -> None:
    if type(value) is not int or not least <= value <= MAX_COUNT:
        raise LocalProtocolError("malformed", f"{field}: must be an integer from {least} to {MAX_COUNT}")


def _check_text(field: str, value: str) -> None:
    if type(value) is not str or len(value) > MAX_REASON:
        raise LocalProtocolError("malformed", f"{field}: must be a text of at most {MAX_REASON} characters")


# --- Encoding --------------------------------------------------------------------------------------------


def encode_message(message: Request | Reply) -> bytes:
    """The frame payload of a message."""
    return encode(_to_wire(message))


def encode_held_heads(heads: Sequence[tuple[str, int, bytes]], *, more: bool, mark: bytes | None = None,
                      changed: bool = False) -> bytes:
    """`encode_message(HeadsPage(...))` of heads (issuer, seq, id) read from this node's own store, which took them
    from records it verified: without HeadEntry's checks or encode's walk, most of what serving heads cost. Heads
    from a peer are decoded by `decode_reply`, which checks every one."""
    page: dict[str, Any] = {"t": "heads"}  # (the keys in RFC 8949 order: t, mark, more, heads, changed)
    if mark is not None:
        page["mark"] = mark
    page |= {"more": more, "heads": heads}
    if changed:
        page["changed"] = True
    return encode_in_key_order(page)


def _to_wire(message: Request | Reply) -> dict[str, Any]:
    match message:
        case HeadsRequest(after, limit, network, since):
            return {"t": "heads", "after": after, "limit": limit, **_net(network),
                    **({} if since is None else {"since": since})}
        case RecordsRequest(ranges, limit, max_bytes):
            return {"t": "get", "ranges": [[r.iss, r.first, r.last] for r in ranges], "limit": limit,
                    "bytes": max_bytes}
        case CosignRequest(body):
            return {"t": "cosign", "req": body}
        case CheckpointRequest(network):
            return {"t": "checkpoint", **_net(network)}
        case HeadsPage(heads, more, mark, changed):
            return {"t": "heads", "heads": [[h.iss, h.seq, h.id] for h in heads], "more": more,
                    **({} if mark is None else {"mark": mark}), **({"changed": True} if changed else {})}
        case RecordsPage(records, more):
            return {"t": "records", "records": list(records), "more": more}
        case Cosigned(line):
            return {"t": "cosigned", "sig": line}
        case Refused(status, reason, size):
            wire: dict[str, Any] = {"t": "refused", "status": status, "reason": reason}
            if size is not None:
                wire["size"] = size
            return wire
        case ErrorReply(reason):
            return {"t": "error", "reason": reason}
        case Busy(retry_after, reason):
            return {"t": "busy", "retry": retry_after, "reason": reason}
        case HeldCheckpoint(note):
            return {"t": "checkpoint"} if note is None else {"t": "checkpoint", "note": note}
        case OtherNetwork(network):
            return {"t": "network", "net": network}
    raise LocalProtocolError("malformed", f"not a sync message: {type(message).__name__}")


def _net(network: str | None) -> dict[str, str]:
    return {} if network is None else {"net": network}


# --- Strict decoding: anything off is the peer's fault ----------------------------------------------------


def decode_request(payload: bytes, protocol: str = SYNC_PROTOCOL) -> Request:
    """The request in a frame from the peer that opened the stream (of `protocol`); raises RemoteProtocolError naming
    the field."""
    wire = _map(payload)
    kind = wire.get("t")
    if kind == "heads":
        _keys(wire, {"t", "after", "limit"}, optional={"net", "since"} if protocol == SYNC_PROTOCOL_2 else {"net"})
        since = None if "since" not in wire else _bytes(wire["since"], "since")
        return _build(HeadsRequest, wire["after"], wire["limit"], _optional_text(wire, "net"), since)
    if kind == "get":
        _keys(wire, {"t", "ranges", "limit", "bytes"})
        ranges = _list(wire["ranges"], "ranges")
        return _build(RecordsRequest, tuple(_build(Range, *_triple(r, f"ranges[{i}]")) for i, r in enumerate(ranges)),
                      wire["limit"], wire["bytes"])
    if kind == "cosign":
        _keys(wire, {"t", "req"})
        return _build(CosignRequest, _bytes(wire["req"], "req"))
    if kind == "checkpoint":
        _keys(wire, {"t"}, optional={"net"})
        return _build(CheckpointRequest, _optional_text(wire, "net"))
    raise RemoteProtocolError("malformed", f"t: {kind!r:.40} is not a request type (heads, get, cosign, checkpoint)")


def decode_reply(payload: bytes, protocol: str = SYNC_PROTOCOL) -> Reply:
    """The reply in a frame from the peer that accepted the stream (of `protocol`); raises RemoteProtocolError naming
    the field."""
    wire = _map(payload)
    kind = wire.get("t")
    if kind == "heads":
        _keys(wire, {"t", "heads", "more"}, optional={"mark", "changed"} if protocol == SYNC_PROTOCOL_2 else set())
        heads = _list(wire["heads"], "heads")
        entries = tuple(_build(HeadEntry, *_triple(h, f"heads[{i}]")) for i, h in enumerate(heads))
        if "changed" in wire and wire["changed"] is not True:
            raise RemoteProtocolError("malformed", "changed: must be true where present")
        mark = None if "mark" not in wire else _bytes(wire["mark"], "mark")
        return _build(HeadsPage, entries, _bool(wire["more"], "more"), mark, "changed" in wire)
    if kind == "records":
        _keys(wire, {"t", "records", "more"})
        records = _list(wire["records"], "records")
        return _build(RecordsPage, tuple(_bytes(r, f"records[{i}]") for i, r in enumerate(records)),
                      _bool(wire["more"], "more"))
    if kind == "cosigned":
        _keys(wire, {"t", "sig"})
        if type(wire["sig"]) is not str:
            raise RemoteProtocolError("malformed", "sig: must be a text")
        return Cosigned(wire["sig"])
    if kind == "refused":
        _keys(wire, {"t", "status", "reason"}, optional={"size"})
        return _build(Refused, wire["status"], wire["reason"], wire.get("size"))
    if kind == "error":
        _keys(wire, {"t", "reason"})
        return _build(ErrorReply, wire["reason"])
    if kind == "busy":
        _keys(wire, {"t", "retry", "reason"})
        return _build(Busy, wire["retry"], wire["reason"])
    if kind == "checkpoint":
        _keys(wire, {"t"}, optional={"note"})
        return _build(HeldCheckpoint, None if "note" not in wire else _bytes(wire["note"], "note"))
    if kind == "network":
        _keys(wire, {"t", "net"})
        return _build(OtherNetwork, _text(wire["net"], "net"))
    raise RemoteProtocolError("malformed", f"t: {kind!r:.40} is not a reply type (heads, records, cosigned, refused, "
                                           "error, busy, checkpoint, network)")


def _map(payload: bytes) -> dict[str, Any]:
    try:
        wire = decode(payload)
    except CborError as e:
        raise RemoteProtocolError("malformed", f"message: not deterministic CBOR ({e})") from None
    if type(wire) is not dict:
        raise RemoteProtocolError("malformed", "message: must be a map")
    return wire


def _keys(wire: dict[str, Any], required: set[str], *, optional: frozenset[str] | set[str] = frozenset()) -> None:
    present = set(wire)
    if missing := required - present:
        raise RemoteProtocolError("malformed", f"{wire['t']} message: missing {sorted(missing)[0]!r}")
    if extra := present - required - optional:
        raise RemoteProtocolError("malformed", f"{wire['t']} message: unknown field {sorted(map(str, extra))[0]!r:.40}")


def _list(value: Any, field: str) -> list[Any]:
    if type(value) is not list:
        raise RemoteProtocolError("malformed", f"{field}: must be an array")
    return value


def _triple(value: Any, field: str) -> list[Any]:
    if type(value) is not list or len(value) != 3:
        raise RemoteProtocolError("malformed", f"{field}: must be an array of 3 items")
    return value


def _bytes(value: Any, field: str) -> bytes:
    if type(value) is not bytes:
        raise RemoteProtocolError("malformed", f"{field}: must be a byte string")
    return value


def _text(value: Any, field: str) -> str:
    if type(value) is not str:
        raise RemoteProtocolError("malformed", f"{field}: must be a text")
    return value


def _optional_text(wire: dict[str, Any], field: str) -> str | None:
    return None if field not in wire else _text(wire[field], field)


def _bool(value: Any, field: str) -> bool:
    if type(value) is not bool:
        raise RemoteProtocolError("malformed", f"{field}: must be true or false")
    return value


def _build(cls: type, *args: Any) -> Any:
    """Construct a message from peer input: its checks are the peer's fault here, not ours."""
    try:
        return cls(*args)
    except LocalProtocolError as e:
        raise RemoteProtocolError(e.reason, str(e)) from None


# A server reads request frames up to this length and refuses longer ones unread: replies need frames of a MiB (pages of
# records), but no request can be this long, and decoding a MiB of dense CBOR takes the best part of a second.
MAX_REQUEST_FRAME = _largest_request()
