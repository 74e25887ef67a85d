"""Marks of a node's heads for `/vouchnet/sync/2` (DESIGN.md §5): a heads answer ends with a mark, and a peer asking
again `since` that mark is answered only the heads that changed after it, none if none did. A mark is this node's
own: a random tag of the running service and the count of records its store took since, so a mark from before a
restart, from another node or made up names nothing here, and is answered as no mark (every head). The issuers of the
latest KEPT records are remembered; a mark older than those is answered so too. Pure: the caller feeds the records
the replica accepted, as the store took them.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from collections.abc import Iterable

from vouching import Record

KEPT = 65_536  # records whose issuers are remembered: minutes of a busy network's records, a few MiB at most
TAG_SIZE = 16
MARK_SIZE = TAG_SIZE + 8  # the tag, then the count of records, 8 bytes big-endian


class HeadMarks:
    """The issuers whose heads changed, record by record, since the service started (the latest KEPT of them)."""

    def __init__(self, kept: int = KEPT) -> None:
        if kept < 1:
            raise ValueError("HeadMarks: kept must be at least 1")
        self._tag = secrets.token_bytes(TAG_SIZE)
        self._count = 0  # records taken since the start
        self._issuers: deque[str] = deque(maxlen=kept)  # of the latest records taken, in order

    def add(self, records: Iterable[Record]) -> None:
        """Records the store took (a Replica listener), in the order it took them."""
        for record in records:
            self._count += 1
            self._issuers.append(record.iss)

    def mark(self) -> bytes:
        """The mark of the heads as they are now."""
        return self._tag + self._count.to_bytes(8, "big")

    def changed_since(self, mark: bytes) -> tuple[list[str], int] | None:
        """The issuers whose heads changed after `mark` was made, sorted, and how many records were walked to find
        them; None if `mark` names nothing here (made by another run or node, made up, or older than the records
        kept): then every head must be sent."""
        if len(mark) != MARK_SIZE or mark[:TAG_SIZE] != self._tag:
            return None
        count = int.from_bytes(mark[TAG_SIZE:], "big")
        newer = self._count - count
        if not 0 <= newer <= len(self._issuers):
            return None
        walked = itertools.islice(reversed(self._issuers), newer)
        return sorted(set(walked)), newer
