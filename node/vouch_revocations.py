"""Which of this org's vouches are revoked, by key and seq: the bits of the status lists of its vouches
(node.credential_status), as the revokes in the record store say (DESIGN §3: a key's revoke names a vouch of its
own, or of a key it replaced).

Revokes are never undone, so what was read stays true: each ask reads only the revokes signed since the last (an
index seek when there are none), and a list is signed at the cost of its bits, not of every revoke the org signed.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

from gossip.store import RecordStore


class VouchRevocations:
    """The seqs of the revoked vouches of each key of this org, kept up to date from `store`. One thread."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self._read: dict[str, int] = {}  # revoking key -> the ledger index of the last of its revokes read
        self._revoked: dict[str, set[int]] = {}  # vouching key -> the seqs of its revoked vouches

    def revoked(self, did: str, revokers: Iterable[str]) -> Set[int]:
        """The seqs of the vouches of the key `did` revoked by `revokers` (`did` and the keys that replaced it)."""
        for revoker in revokers:
            if revokes := self._store.revoked_by(revoker, self._read.get(revoker, -1)):
                self._read[revoker] = revokes[-1][0]
                for _, issuer, seq in revokes:
                    self._revoked.setdefault(issuer, set()).add(seq)
        return self._revoked.setdefault(did, set())
