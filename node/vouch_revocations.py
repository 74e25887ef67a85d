"""Which of this org's vouches are revoked, by key and seq: the bits of the status lists of its vouches
(node.credential_status), as the revokes in the record store say (DESIGN §3: a key's revoke names a vouch of its
own, or of a key it replaced).

Revokes are never undone, so what was read stays true: each ask reads only the revokes signed since the last (an
index seek when there are none), and a list is signed at the cost of its bits, not of every revoke the org signed.
The node reads the org's revokes once as it starts (`run`), in worker threads on the index as committed then
(gossip.store.CommittedIndex), so that neither the first ask nor the event loop waits for them: at 20,000 revokes
the read took a second, which on the loop stalled gossip, the API and witnessing. The revokes accepted meanwhile
are past that index's end, and the first ask reads them from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Set

import trio

from gossip.store import RecordStore, StoreError

log = logging.getLogger(__name__)
PAGE = 1000  # revokes a worker thread reads at a time (15-40 ms): a cancelled start-up read stops after this many


class VouchRevocations:
    """The seqs of the revoked vouches of each key of this org, kept up to date from `store`. One event loop."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self._read: dict[str, int] = {}  # revoking key -> the ledger index of the last of its revokes read
        self._revoked: dict[str, set[int]] = {}  # vouching key -> the seqs of its revoked vouches
        self._loading: trio.Event | None = None  # set once the start-up read (run) is over

    async def run(self, revokers: Iterable[str], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the revokes of `revokers` (the org's keys) in worker threads, a PAGE at a time; asks wait for it.
        Started once, before the API serves; cancelled, it stops after the page being read. If the store cannot
        be read, asks read the revokes themselves."""
        loading = self._loading = trio.Event()
        task_status.started()
        try:
            index = self._store.committed()
            try:
                for revoker in revokers:
                    while revokes := await trio.to_thread.run_sync(index.revoked_by, revoker,
                                                                   self._read.get(revoker, -1), PAGE):
                        self._add(revoker, revokes)
                    self._read[revoker] = index.end - 1
            finally:
                index.close()
        except StoreError as error:
            log.warning("cannot read the org's revokes at start-up (%s); the first status list of its vouches "
                        "asked for reads them", error)
        finally:
            loading.set()

    async def revoked(self, did: str, revokers: Iterable[str]) -> Set[int]:
        """The seqs of the vouches of the key `did` revoked by `revokers` (`did` and the keys that replaced it)."""
        if self._loading is not None:
            await self._loading.wait()
        for revoker in revokers:
            self._add(revoker, self._store.revoked_by(revoker, self._read.get(revoker, -1)))
        return self._revoked.setdefault(did, set())

    def _add(self, revoker: str, revokes: list[tuple[int, str, int]]) -> None:
        """Take in `revokes`, the next of `revoker`'s (RecordStore.revoked_by)."""
        if revokes:
            self._read[revoker] = revokes[-1][0]
            for _, issuer, seq in revokes:
                self._revoked.setdefault(issuer, set()).add(seq)
