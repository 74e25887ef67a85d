"""Saying that a synchronous call of the SDK was made from a running event loop (DESIGN §8): it waits on the node
there, so the loop, and every task on it (a service's other requests), stands still meanwhile, up to the call's
timeouts (2 s a request). Said once a process, as a warning naming the async call to await instead: the mistake is
the code's, made at each call, and the log must not fill with it."""

from __future__ import annotations

import asyncio
import sys
import threading

from ._log import log

_said = threading.Event()


def running_loop() -> str | None:
    """The event loop running in this thread: "asyncio", "trio", or None (trio looked up only in a program that
    loaded it: node.client does not need it). Asked at each synchronous call, a cached decision's included, so asked
    without raising and catching an exception when no loop runs, the usual case: that took twice as long."""
    if asyncio._get_running_loop() is not None:  # (in asyncio.__all__; get_running_loop() raises if there is none)
        return "asyncio"
    trio = sys.modules.get("trio")
    return "trio" if trio is not None and trio.lowlevel.in_trio_run() else None


def warn_if_blocking(call: str, instead: str) -> None:
    """Warn, once a process, if `call` (a synchronous method) runs on an event loop's thread; `instead` is its async
    twin."""
    if _said.is_set() or (loop := running_loop()) is None:
        return
    _said.set()
    log.warning(f"{call} was called from a running {loop} event loop: it blocks the loop, and every task on it, "
                f"while the node answers (up to its timeout, 2 s by default, a request); await {instead} instead "
                "(said once)", extra={"fields": {"call": call}})
