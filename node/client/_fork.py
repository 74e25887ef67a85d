"""The SDK's objects in a child forked from the process that made them (POSIX fork; a pre-fork server's worker, such
as gunicorn --preload's): the child has none of the parent's threads (the telemetry sender, the score stream), a lock
another thread held as it forked stays held for ever, and connections it shares with the parent would interleave both
processes' requests on one socket. Each such object is made ready again in the child, as OpenTelemetry's batch
processors are (os.register_at_fork)."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def in_forked_children(again: Callable[[], None]) -> None:
    """Call `again` (a bound method) in each child forked from now on, while its object lives: held weakly, so that
    this keeps nothing alive."""
    method = weakref.WeakMethod(again)  # type: ignore[arg-type]

    def after_in_child() -> None:
        if (bound := method()) is not None:
            bound()

    os.register_at_fork(after_in_child=after_in_child)
