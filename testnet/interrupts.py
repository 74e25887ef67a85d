"""Ctrl-C held off while a run makes the testnet whole: a SIGINT that arrives inside `interrupts_held()` is acted on
(as KeyboardInterrupt, by default) when the block ends, so a second Ctrl-C cannot cut a partition's heal short at a
node or leave the nodes after it unasked. The block must end soon by itself (faults.heal is bounded in time).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def interrupts_held() -> Iterator[None]:
    """SIGINT deferred until the block ends (Python handles signals in the main thread only: elsewhere, nothing is
    changed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[FrameType | None] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, caught[0])
