"""Fixtures of the trust engine's tests."""

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture
def only_new_objects_collected() -> Iterator[None]:
    """Every object the process holds as the test begins is frozen (gc.freeze) until it ends, so that the collections
    and gc.get_objects of a test counting what the collector tracks walk only the objects made since, the only ones
    it counts: in a full run of the suite they walked every object of every module and test before it, 0.5-1 s a
    collection on a loaded machine, ten of them a test."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
