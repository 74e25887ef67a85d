"""The records topic's validator (DESIGN.md §5): size, per-peer rate, batch format, every record's signature and
schema, per-org rate. Sans-I/O: fed (forwarder, message, time), it gives a GossipSub v1.1 verdict (accept, ignore,
reject) and counts them by reason; accepted messages' records are kept so that delivery does not verify them again.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vouching import InvalidRecord, Record, failed_signatures

from .batch import BatchError, OversizedBatch, max_message_size, unpack
from .ratelimit import TokenBuckets
from .stats import by_reason, counted
from .validation import check_record_deferred
from .verdict import Verdict

logger = logging.getLogger(__name__)

REJECT_REASONS = ("oversized", "malformed", "invalid_record", "org_rate")
IGNORE_REASONS = ("peer_rate", "org_rate")
# Peers and orgs may burst this many seconds' worth of their rate. Twice what our own publisher allows itself
# (PUBLISH_BURST_SECONDS), so that records paced by an honest origin still fit after a second of relay jitter.
RECEIVE_BURST_SECONDS = 2.0
PUBLISH_BURST_SECONDS = 1.0
# Record bytes the verified-record cache keeps (decoded, a record of long texts takes up to 3x its size): 16384 of the
# usual few hundred bytes fit, but not 16384 of a valid record's 64 KiB from keys made up by the thousand.
CACHE_BYTES = 16 << 20


class GossipLimits(Protocol):
    """The limits gossip enforces (node.config.Limits provides them)."""

    @property
    def gossip_batch_bytes(self) -> int: ...
    @property
    def peer_messages_per_second(self) -> float: ...
    @property
    def peer_bytes_per_second(self) -> float: ...
    @property
    def org_records_per_second(self) -> float: ...


@dataclass(frozen=True)
class GateStats:
    """Counters since the gate was made. Records are counted in accepted messages only."""

    accepted: int = counted("Records-topic messages accepted: delivered and relayed")
    rejected: dict[str, int] = by_reason("Records-topic messages rejected, lowering the forwarder's GossipSub score, "
                                         "by reason", REJECT_REASONS)
    ignored: dict[str, int] = by_reason("Records-topic messages ignored (dropped, not relayed, no penalty) for a "
                                        "peer's or an org's rate, by reason", IGNORE_REASONS)
    records_verified: int = counted("Records in accepted messages whose signature and schema were checked")
    records_known: int = counted("Records in accepted messages not checked again: verified recently or already "
                                 "stored")
    records_reverified: int = counted("Records checked again at delivery: the verified cache had forgotten them")
    delivered_invalid: int = counted("Messages delivered without passing the validator (a pubsub bug): dropped at "
                                     "delivery")


class RecordGate:
    """Decides each records-topic message from a peer; hands the verified records of accepted ones to delivery.

    Invalid messages are rejected (lowering the forwarder's score), and so are an org's records beyond the org's rate
    when the org itself forwards them. Any other message over a rate is ignored (GossipSub v1.1 IGNORE: dropped, not
    relayed, no penalty): an honest relayer cannot shape the traffic it forwards, so neither its share of another
    org's burst nor its own aggregate rate (checked before the message is decoded, when nothing is known of its
    validity) is its offence.
    """

    def __init__(
        self,
        limits: GossipLimits,
        *,
        own_peer: str,
        known: Callable[[Record], bool],
        org_of: Callable[[str], str | None],
        cache_records: int = 16384,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        """`own_peer` is this node's peer id (its own publishes are its replica's records: accepted unchecked);
        `known(record)` says whether a decoded record, its signature not yet checked, is stored already
        (RecordStore.holds: no index lookup for a record past its issuer's head); `org_of(peer_id)` is the
        org did of a peer (the same key), or None. Verified records are kept for delivery up to `cache_records` of
        them and `cache_bytes` of their bytes, the oldest forgotten first.
        """
        self._batch_bytes = limits.gossip_batch_bytes
        self._max_message = max_message_size(limits.gossip_batch_bytes)
        self._own_peer = own_peer
        self._known = known
        self._org_of = org_of
        self._cache_records = cache_records
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._verified: OrderedDict[bytes, Record] = OrderedDict()  # record bytes -> record, oldest first
        # Every bucket holds at least one message (or record), whatever the rate.
        self._peer_messages = TokenBuckets[str](limits.peer_messages_per_second,
                                                max(1.0, limits.peer_messages_per_second * RECEIVE_BURST_SECONDS))
        self._peer_bytes = TokenBuckets[str](
            limits.peer_bytes_per_second, max(self._max_message, limits.peer_bytes_per_second * RECEIVE_BURST_SECONDS))
        self._orgs = TokenBuckets[str](limits.org_records_per_second,
                                       max(1.0, limits.org_records_per_second * RECEIVE_BURST_SECONDS))
        self._counts: Counter[tuple[Verdict, str] | str] = Counter()

    def stats(self) -> GateStats:
        c = self._counts
        return GateStats(
            accepted=c["accepted"],
            rejected={reason: c[Verdict.REJECT, reason] for reason in REJECT_REASONS},
            ignored={reason: c[Verdict.IGNORE, reason] for reason in IGNORE_REASONS},
            records_verified=c["verified"],
            records_known=c["known"],
            records_reverified=c["reverified"],
            delivered_invalid=c["delivered_invalid"],
        )

    def check(self, peer: str, data: bytes, now: float) -> Verdict:
        """The verdict on `data`, forwarded by `peer`, at time `now` (see the class docstring). Never raises."""
        if peer == self._own_peer:
            return Verdict.ACCEPT  # our publisher packed our replica's records
        refusal = self._refusal(peer, data, now)
        if refusal is None:
            self._counts["accepted"] += 1
            return Verdict.ACCEPT
        self._counts[refusal] += 1
        return refusal[0]

    def records(self, data: bytes) -> list[Record]:
        """The records of an accepted message that this node does not store yet, verified once only. A message
        that no longer passes (only a pubsub that delivered it unvalidated could bring one, host quirk 27) gives
        none, and is counted: delivery never raises."""
        records = []
        try:
            for raw in unpack(data, self._batch_bytes):
                record = self._verified.get(raw)
                if record is None:
                    record = self._check(raw)  # it passed check(): only the cache forgot it
                    if record is None:
                        continue
                    self._counts["reverified"] += 1
                records.append(record)
        except (BatchError, InvalidRecord) as error:
            self._counts["delivered_invalid"] += 1
            logger.warning("a delivered gossip message does not pass validation: %s", error)
            return []
        return records

    def _refusal(self, peer: str, data: bytes, now: float) -> tuple[Verdict, str] | None:
        """None to accept, or the verdict and its reason."""
        if len(data) > self._max_message:
            return Verdict.REJECT, "oversized"
        if self._peer_messages.tokens(peer, now) < 1 or self._peer_bytes.tokens(peer, now) < len(data):
            return Verdict.IGNORE, "peer_rate"
        self._peer_messages.try_take(peer, now)
        self._peer_bytes.try_take(peer, now, len(data))
        try:
            raws = unpack(data, self._batch_bytes)
        except OversizedBatch:
            return Verdict.REJECT, "oversized"
        except BatchError as error:
            logger.debug("gossip from %s rejected: %s", peer, error)
            return Verdict.REJECT, "malformed"
        fresh: list[Record] = []
        per_org: Counter[str] = Counter()
        known = verified = 0
        for raw in raws:
            try:
                record = None if raw in self._verified else self._check(raw)
            except InvalidRecord as error:
                logger.debug("gossip from %s rejected: %s", peer, error)
                return Verdict.REJECT, "invalid_record"
            if record is None:
                known += 1
                continue
            verified += 1
            fresh.append(record)
            per_org[record.iss] += 1
        if self._orgs.try_take_all(per_org, now) is not None:  # (it took nothing)
            over = {org for org, count in per_org.items() if count > self._orgs.tokens(org, now)}
            return (Verdict.REJECT if self._org_of(peer) in over else Verdict.IGNORE), "org_rate"
        self._counts["known"] += known
        self._counts["verified"] += verified
        self._remember(fresh)
        return None

    def _check(self, raw: bytes) -> Record | None:
        """The record, verified (gossip.validation.check_record); None if it is stored already, which is asked once
        it is decoded, before its signature is checked. Raises InvalidRecord.

        Decoding first costs a stored record a decode, but spares every new one the index lookup (18 us of the
        0.3 ms a record took at a receiving node, benchmarks/gossip.py --quick): only a record at or below its
        issuer's head can be stored. A stored record's bytes decode as they did when it was accepted."""
        record, signature = check_record_deferred(raw)
        if self._known(record):
            return None
        if signature is not None and failed_signatures([signature]):
            raise InvalidRecord("signature: does not verify")
        return record

    def _remember(self, records: list[Record]) -> None:
        for record in records:
            self._verified[record.raw] = record
            self._cached_bytes += len(record.raw)
        while len(self._verified) > self._cache_records or self._cached_bytes > self._cache_bytes:
            raw, _ = self._verified.popitem(last=False)
            self._cached_bytes -= len(raw)
