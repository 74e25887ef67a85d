"""A wait on what a logger of the node says, with no polling: the records it makes from a level up, from a block's
start to its end, and an event set at the first one (the first holding given words, if told)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import trio


class Said(logging.Handler):
    """The messages logged, and an event set at the first that holds `words`."""

    def __init__(self, words: str = "") -> None:
        super().__init__()
        self.words = words
        self.messages: list[str] = []
        self.arrived = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if self.words in message:
            self.arrived.set()


@contextmanager
def logged(name: str, level: int, words: str = "") -> Iterator[Said]:
    """The records logger `name` makes at `level` and above, from here to the block's end; `arrived` is set at the
    first holding `words`."""
    logger = logging.getLogger(name)
    said, before = Said(words), logger.level
    logger.addHandler(said)
    logger.setLevel(level)
    try:
        yield said
    finally:
        logger.removeHandler(said)
        logger.setLevel(before)
