"""Checkpoints of orgs' records logs as gossiped on `/vouchnet/<network>/checkpoints/1` (DESIGN.md §4–5): opening
and validating them, each peer's rate, and the pace of our own (gossip.forks spots two of one origin with one size
and different roots, equivocation evidence).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ledger import (
    Checkpoint,
    CosignatureVerifier,
    Ed25519Verifier,
    NoteError,
    Signature,
    cosigner_name,
    format_note,
    open_checkpoint,
    parse_log_origin,
    peek_origin,
)
from ledger.names import PREFIX
from vouching import InvalidDid, public_key_from_did

from .ratelimit import TokenBuckets
from .verdict import Verdict

RECORDS_LOG = "records"
CHECKPOINT_FILE = "checkpoint.note"  # in the data directory: our latest published checkpoint, its cosignatures
WITNESS_FILE = "witness.sqlite"  # in the data directory: the witness's state, what it cosigned of each peer's log
MAX_CHECKPOINT_NOTE = 16 * 1024  # a checkpoint note with up to 64 Ed25519 cosignature lines is about 12 KiB
# Checkpoints a peer may forward a second (node.config.Limits.peer_checkpoints_per_second), bursting twice that: the
# whole network gossips about NETWORK_CHECKPOINTS_PER_S (CheckpointPace), all of which an honest peer may relay, and
# opening one costs about 0.8 ms (its did:key and signature), so 100 peers at the limit cost a node 0.3 s a second.
PEER_CHECKPOINTS_PER_S = 4.0
PEER_BURST_SECONDS = 2.0
REJECT_REASONS = ("oversized", "invalid")
IGNORE_REASONS = ("peer_rate", "origin")  # over the forwarder's rate; a repeat, stale or over its origin's pace


def checkpoints_topic(network: str) -> str:
    return f"/vouchnet/{network}/checkpoints/1"


@dataclass(frozen=True)
class OrgCheckpoint:
    """A verified checkpoint of `org`'s records log; `note` carries the log's own signatures only (evidence)."""

    org: str
    checkpoint: Checkpoint
    note: bytes


def open_org_checkpoint(data: bytes, network: str) -> OrgCheckpoint:
    """Verify a checkpoint note of an org's records log in `network`, signed by the org's key; raise NoteError."""
    if len(data) > MAX_CHECKPOINT_NOTE:
        raise NoteError(f"checkpoint note: {len(data)} bytes is more than {MAX_CHECKPOINT_NOTE}")
    origin = peek_origin(data)
    net, _, log = parse_log_origin(origin)
    if (net, log) != (network, RECORDS_LOG):
        raise NoteError(f"origin {origin:.200}: not a {RECORDS_LOG} log of network {network}")
    return open_signed_checkpoint(data)


def open_signed_checkpoint(data: bytes) -> OrgCheckpoint:
    """Verify a checkpoint note of any vouchnet log (`vouchnet/<network>/<org did>/<log>`), signed by the key of
    the org its origin names; raise NoteError."""
    origin = peek_origin(data)
    _, org, _ = parse_log_origin(origin)
    try:
        key = public_key_from_did(org)
    except InvalidDid as e:
        raise NoteError(f"origin {origin:.200}: {e}") from None
    checkpoint, signatures = open_checkpoint(data, [Ed25519Verifier(origin, key)])
    return OrgCheckpoint(org, checkpoint, format_note(checkpoint.to_text(), signatures))


def cosigner_verifiers(note: bytes) -> dict[str, CosignatureVerifier]:
    """A verifier for each signature line of `note` named like a vouchnet witness (`vouchnet/<did:key>`), by did:
    the did is the key, so every such cosignature can be checked. Malformed lines are left for open_checkpoint to
    refuse."""
    verifiers = {}
    for line in note.rpartition(b"\n\n")[2].decode(errors="replace").splitlines():
        try:
            name = Signature.from_line(line).name
            did = name.removeprefix(f"{PREFIX}/")
            if cosigner_name(did) == name:
                verifiers[did] = CosignatureVerifier(name, public_key_from_did(did))
        except (NoteError, InvalidDid):
            continue
    return verifiers


class CheckpointValidator:
    """The checkpoints topic's validator (DESIGN §5): a note of at most MAX_CHECKPOINT_NOTE bytes (else rejected),
    within its forwarder's rate (else ignored unread), a checkpoint of a well-formed records-log origin signed by
    that org (else rejected), and then whatever `admit` says of it (accepted if none; Witnessing._admit paces each
    origin's checkpoints and ignores repeats). Only what is invalid is rejected, lowering the forwarder's score: a
    message over the rate is ignored before it is opened, when nothing is known of its validity, as the records
    gate does (an honest peer relays what the network gossips and cannot shape it); one that is over the rate and
    invalid is then not judged. Our own publishes (`own_peer`) are not rated. `rejected` and `ignored` count by
    reason. It keeps what it opened, the last `keep` notes it accepted, for the topic's subscriber (`opened`): a
    gossiped checkpoint's signature is checked once, not once by the validator and again by the subscriber. The
    notes kept are valid and bounded in number and size: a peer gossiping many costs memory no other way."""

    def __init__(self, network: str, keep: int = 64,
                 admit: Callable[[OrgCheckpoint], Verdict] = lambda seen: Verdict.ACCEPT, *, own_peer: str = "",
                 peer_rate: float = PEER_CHECKPOINTS_PER_S, clock: Callable[[], float] = time.monotonic) -> None:
        if keep < 1:
            raise ValueError("CheckpointValidator: keep must be at least 1")
        self.network = network
        self._keep = keep
        self._admit = admit
        self._own_peer = own_peer
        self._peers = TokenBuckets[str](peer_rate, max(1.0, peer_rate * PEER_BURST_SECONDS))
        self._clock = clock
        self._opened: OrderedDict[bytes, OrgCheckpoint] = OrderedDict()
        self.rejected = dict.fromkeys(REJECT_REASONS, 0)
        self.ignored = dict.fromkeys(IGNORE_REASONS, 0)

    def __call__(self, peer: str, data: bytes) -> Verdict:
        if len(data) > MAX_CHECKPOINT_NOTE:
            return self._refuse(Verdict.REJECT, "oversized")
        if peer != self._own_peer and not self._peers.try_take(peer, self._clock()):
            return self._refuse(Verdict.IGNORE, "peer_rate")
        try:
            seen = open_org_checkpoint(data, self.network)
        except NoteError:
            return self._refuse(Verdict.REJECT, "invalid")
        verdict = self._admit(seen)
        if verdict is not Verdict.ACCEPT:
            return self._refuse(verdict, "origin")
        self._opened[data] = seen
        self._opened.move_to_end(data)
        if len(self._opened) > self._keep:
            self._opened.popitem(last=False)
        return Verdict.ACCEPT

    def _refuse(self, verdict: Verdict, reason: str) -> Verdict:
        counts = self.rejected if verdict is Verdict.REJECT else self.ignored
        counts[reason] = counts.get(reason, 0) + 1
        return verdict

    def opened(self, data: bytes) -> OrgCheckpoint:
        """The checkpoint in `data` as this validator opened it (then forgotten), or opened now if it was not kept;
        raise NoteError."""
        seen = self._opened.pop(data, None)
        return seen if seen is not None else open_org_checkpoint(data, self.network)


# Checkpoints a second that the whole network should gossip, about: each costs every node milliseconds of CPU in
# py-libp2p, so at this rate a node spends well under 1% of a core on them whatever the network's size.
NETWORK_CHECKPOINTS_PER_S = 1.0


class CheckpointPace:
    """How often this node gossips its checkpoint: every `minimum` seconds, stretched in a network of many orgs
    so that all of them together gossip about `network_rate` a second: every (orgs heard from + 1) / network_rate
    seconds. An org counts while it was heard from within two periods; the caller counts only orgs inside its
    horizon, so keys made up by the thousand cannot slow it down. Sans-I/O: fed the time."""

    def __init__(self, minimum: float, network_rate: float = NETWORK_CHECKPOINTS_PER_S) -> None:
        if not (minimum > 0 and network_rate > 0):
            raise ValueError("CheckpointPace needs a positive minimum period and network rate")
        self.minimum = minimum
        self._rate = network_rate
        self._heard: dict[str, float] = {}  # org -> when its last checkpoint arrived
        self._period = minimum

    def heard(self, org: str, now: float) -> None:
        """A checkpoint of `org`'s log arrived by gossip."""
        self._heard[org] = now

    def period(self, now: float) -> float:
        """Seconds from our last gossiped checkpoint to the next; orgs not heard from for two periods are forgotten
        (they left, or slowed down: each is heard again within its own period if still there)."""
        since = now - 2 * self._period
        self._heard = {org: at for org, at in self._heard.items() if at >= since}
        self._period = max(self.minimum, (len(self._heard) + 1) / self._rate)
        return self._period
