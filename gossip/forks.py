"""Spotting forks in gossiped checkpoints (DESIGN.md §4–5): two of one origin with one size and different roots.

Each node remembers, for a `window` of time, every (size, root) of an origin it accepted on the checkpoints topic,
and compares each checkpoint with them. What an origin may have remembered is bounded by its pace: the topic
accepts its new checkpoints at `rate` a second with a burst of `burst` (an honest node gossips at most
NETWORK_CHECKPOINTS_PER_S: gossip.checkpoints.CheckpointPace), and one over it is neither relayed nor remembered.
So an org cannot push the first half of a fork out of every node's memory by gossiping made-up checkpoints between
the halves: it is remembered for the whole window, whatever comes after it, at about 121 bytes per (size, root)
(benchmarks/fork_memory.py).

A fork whose halves are gossiped more than the window apart is left to witnesses: one that cosigned either half
cosigns the other only with a consistency proof from the size it cosigned (ledger.Witness), which a fork cannot
give, and a half gossiped at the size a node's witness cosigned is compared with it (gossip.witnessing).
"""

from __future__ import annotations

import bisect
from array import array
from collections import OrderedDict
from typing import NamedTuple

from ledger import SIG_ED25519, Checkpoint, NoteError, Signature, format_note, key_id, parse_log_origin
from vouching import public_key_from_did

from .checkpoints import NETWORK_CHECKPOINTS_PER_S, OrgCheckpoint
from .verdict import Verdict

FORK_WINDOW = 600.0  # seconds a gossiped (size, root) is remembered
CHECKPOINT_BURST = 4.0  # checkpoints an origin may gossip at once (a restart, relay jitter) beyond its rate
_ED25519 = 64  # bytes of a log signature
_ENTRY = 32 + _ED25519  # a remembered checkpoint's root and log signature


class Observed(NamedTuple):
    """What to do with a checkpoint (relay and deliver it, or ignore it), and the note of an earlier one it
    contradicts, if any: the first half of a fork, the evidence."""

    verdict: Verdict
    earlier: bytes | None = None


class _Origin:
    """What is remembered of one origin: its checkpoints within the window (sizes, arrival times, and root and
    signature packed, oldest and smallest first), its newest (the last and largest) for as long as the origin is
    kept, and its pace."""

    __slots__ = ("sizes", "times", "packed", "newest", "tokens", "as_of", "forked")

    def __init__(self, burst: float, now: float) -> None:
        self.sizes = array("Q")
        self.times = array("d")
        self.packed = bytearray()
        self.newest: tuple[int, bytes] | None = None  # (size, root and signature)
        self.tokens, self.as_of = burst, now
        self.forked = False

    def expire(self, before: float) -> None:
        """Forget the checkpoints that arrived before `before`, but the newest."""
        gone = bisect.bisect_left(self.times, before)
        if gone:
            del self.sizes[:gone], self.times[:gone], self.packed[: gone * _ENTRY]

    def at(self, size: int) -> bytes | None:
        """The root and signature remembered at `size`, if any."""
        if self.newest is not None and self.newest[0] == size:
            return self.newest[1]
        i = bisect.bisect_left(self.sizes, size)  # (remembered in order of size: smaller than the newest is stale)
        if i == len(self.sizes) or self.sizes[i] != size:
            return None
        return bytes(self.packed[i * _ENTRY : (i + 1) * _ENTRY])

    def remember(self, size: int, entry: bytes, now: float) -> None:
        """Remember a checkpoint larger than any remembered: the newest."""
        self.sizes.append(size)
        self.times.append(now)
        self.packed += entry
        self.newest = size, entry


class ForkDetector:
    """Remembers the checkpoints each origin gossiped within `window` seconds, and reports a second root at a size
    remembered (module docstring). Sans-I/O: fed the time.

    An origin's new checkpoints are remembered, and accepted on the topic, at `rate` a second with a burst of
    `burst`; at most `max_entries` of its checkpoints are remembered at any time. Ignored: a checkpoint remembered
    already (a repeat: nothing new), one smaller than the origin's newest and not remembered (a replay of an old
    one, or one overtaken on its way), one with extension lines or more than its log signature (vouchnet signs
    none such, and its note could be 16 KiB), one over the pace, and any further fork of an origin that forked.
    `origins` origins are kept, the least recently seen forgotten first: feed it the orgs of a horizon, not every
    key that gossips.
    """

    def __init__(self, *, window: float = FORK_WINDOW, rate: float = NETWORK_CHECKPOINTS_PER_S,
                 burst: float = CHECKPOINT_BURST, origins: int = 4096) -> None:
        if not (window > 0 and rate > 0 and burst >= 1 and origins >= 1):
            raise ValueError("ForkDetector needs a positive window and rate, a burst of at least 1 and an origin")
        self.window = window
        self._rate = rate
        self._burst = burst
        self._origins = origins
        self._seen: OrderedDict[str, _Origin] = OrderedDict()

    @property
    def max_entries(self) -> int:
        """The most checkpoints remembered of one origin: those its pace lets in within a window (its newest is the
        last of them, or alone once they are forgotten)."""
        return int(self._burst + self._rate * self.window)

    def observe(self, seen: OrgCheckpoint, now: float) -> Observed:
        """Compare `seen`, arrived at `now`, with what is remembered of its origin, and remember it if it is new
        and within the origin's pace."""
        checkpoint = seen.checkpoint
        memory = self._origin(checkpoint.origin, now)
        now = max(now, memory.as_of)  # (a clock that went back would refill the bucket twice)
        memory.expire(now - self.window)
        remembered = memory.at(checkpoint.size)
        if remembered is not None:
            if remembered[:32] == checkpoint.root or memory.forked:
                return Observed(Verdict.IGNORE)
            memory.forked = True
            return Observed(Verdict.ACCEPT, self._note(checkpoint.origin, checkpoint.size, remembered))
        if memory.newest is not None and checkpoint.size < memory.newest[0]:
            return Observed(Verdict.IGNORE)
        signature = _plain_signature(seen)
        memory.tokens = min(self._burst, memory.tokens + (now - memory.as_of) * self._rate)
        memory.as_of = now
        if signature is None or memory.tokens < 1:
            return Observed(Verdict.IGNORE)
        memory.tokens -= 1
        memory.remember(checkpoint.size, checkpoint.root + signature.signature, now)
        return Observed(Verdict.ACCEPT)

    def entries(self, origin: str) -> int:
        """How many checkpoints of `origin` are remembered."""
        memory = self._seen.get(origin)
        if memory is None:
            return 0
        return len(memory.sizes) or int(memory.newest is not None)

    def newest(self, origin: str) -> tuple[int, bytes] | None:
        """The largest size remembered of `origin` and the note of its checkpoint, if any."""
        memory = self._seen.get(origin)
        if memory is None or memory.newest is None:
            return None
        size, entry = memory.newest
        return size, self._note(origin, size, entry)

    def _origin(self, origin: str, now: float) -> _Origin:
        memory = self._seen.get(origin)
        if memory is None:
            memory = self._seen[origin] = _Origin(self._burst, now)
            if len(self._seen) > self._origins:
                self._seen.popitem(last=False)
        self._seen.move_to_end(origin)
        return memory

    @staticmethod
    def _note(origin: str, size: int, entry: bytes) -> bytes:
        """The note of a remembered checkpoint, as it was gossiped with its log signature alone: by the key of the
        org its origin names (gossip.checkpoints.open_signed_checkpoint verified it), whose key ID is derived here
        (signed-note §Signatures), not remembered, as only a fork or a peer asking what we hold needs it."""
        public_key = public_key_from_did(parse_log_origin(origin)[1])
        checkpoint = Checkpoint(origin, size, entry[:32])
        return format_note(checkpoint.to_text(), [Signature(origin, key_id(origin, SIG_ED25519, public_key),
                                                            entry[32:])])


def _plain_signature(seen: OrgCheckpoint) -> Signature | None:
    """The log signature of a checkpoint without extension lines and signed by its log's key once, which is all its
    note holds (OrgCheckpoint.note); None for any other."""
    if seen.checkpoint.extensions:
        return None
    lines = seen.note[len(seen.checkpoint.to_text().encode()) + 1 :].decode().splitlines()
    if len(lines) != 1:
        return None
    try:
        signature = Signature.from_line(lines[0])
    except NoteError:
        return None
    return signature if len(signature.signature) == _ED25519 else None
