"""The stores' writes and closes under way in this process, by file name, whatever thread makes them: what a stop
cut short by a disk that does not finish an fsync names as left unfinished (node.stop_deadline). A write still
under way there never returned, so what it held was never acknowledged (DESIGN §4: nothing acknowledged is lost)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_under_way: Counter[str] = Counter()  # file name: the writes and closes of it not yet returned


@contextmanager
def writing(name: str) -> Iterator[None]:
    """A write (or close) of the store `name` for the duration of the block."""
    with _lock:
        _under_way[name] += 1
    try:
        yield
    finally:
        with _lock:
            _under_way[name] -= 1
            if not _under_way[name]:
                del _under_way[name]


def close_named(name: str, close: Callable[[], object]) -> None:
    """`close()`, of the store `name`, named while it runs."""
    with writing(name):
        close()


def under_way() -> list[str]:
    """The names of the stores a write or close of which has not returned, sorted."""
    with _lock:
        return sorted(_under_way)
