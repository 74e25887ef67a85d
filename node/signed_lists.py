"""The status lists the node serves (node.credential_status, DESIGN §2, §8), as signed: each is signed once and
served again until one of its credentials is revoked or LIST_REUSE_S pass, and signed in a worker thread.

A list is public and fetched by every verifier of the org's credentials, so the node signs it once per change
however many ask (the cache), and the signing of a list of many revocations (reading its positions, its bits, their
gzip: 13-40 ms at 20,000 revoked vouches, 190 ms at 65,536 revoked credentials, benchmarks/vouch_status.py and
credential_status.py) runs off the event loop, where it held up gossip and every other request. Asks that come while
a list is being signed wait for that signing and take what it signed, rather than each signing the list again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from functools import partial

import trio
from nacl.signing import SigningKey

from .credentials import status_list_credential

# A status list signed is served again for this long while none of its credentials is revoked meanwhile (what its
# Cache-Control lets caches keep it): signing one took 8 ms of CPU (gzip) for each unauthenticated GET.
LIST_REUSE_S = 60


class SignedLists:
    """The status lists of one org key, by URL, signed with `key` at `clock()` (s). One event loop."""

    def __init__(self, key: SigningKey, clock: Callable[[], float]) -> None:
        self._key, self._clock = key, clock
        self._signed: dict[str, tuple[int, int, str]] = {}  # list URL -> (its revocations, issued at (s), the token)
        self._signing: dict[str, trio.Event] = {}  # list URL -> set when the signing under way ends

    async def token(self, url: str, revocations: int, positions: Callable[[], Awaitable[Iterable[int]]]) -> str:
        """The list at `url` as signed last, if that was under LIST_REUSE_S ago with `revocations` revoked (they
        are never undone: the same ones) or more; else signed now, in a worker thread, with the revoked
        `positions()`. An ask while the list is being signed waits for that signing."""
        while (signing := self._signing.get(url)) is not None:
            await signing.wait()
        now, kept = int(self._clock()), self._signed.get(url)
        if kept is not None and kept[0] >= revocations and kept[1] <= now < kept[1] + LIST_REUSE_S:
            return kept[2]
        done = self._signing[url] = trio.Event()
        try:
            sign = partial(status_list_credential, self._key, url, await positions(), now=now)
            token = await trio.to_thread.run_sync(sign)
            self._signed[url] = (revocations, now, token)
        finally:
            del self._signing[url]
            done.set()
        return token
