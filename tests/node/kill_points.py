"""A command SIGKILLed at each moment of its file writes in turn (ForkedCli.run's `kill_at`), where a kill at a random
time would rarely land: `kill_at(n)` wraps the calls that change files, and the process kills itself at the n-th
point, a point being just before one such call, or just after an open that may create or truncate a file (whose
writes, through the file object, are not points). SQLite's own writes are not points (its atomicity is SQLite's); a
command that ends before the n-th point exits as usual, so a test tries n = 1, 2, ... until one does. `killed_at`
does the same to a function, in a child forked from the test's process."""

from __future__ import annotations

import builtins
import io
import os
import signal
import traceback
from collections.abc import Callable
from typing import Any

_CALLS = ("write", "fsync", "replace", "rename", "link", "unlink", "mkdir", "rmdir", "chmod")
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC


def kill_at(point: int) -> None:
    """From now on, this process SIGKILLs itself at the `point`-th point (from 1)."""
    passed = 0

    def reached() -> None:
        nonlocal passed
        passed += 1
        if passed == point:
            os.kill(os.getpid(), signal.SIGKILL)

    def before(call: Callable[..., Any]) -> Callable[..., Any]:
        def at_point(*args: Any, **kwargs: Any) -> Any:
            reached()
            return call(*args, **kwargs)
        return at_point

    def around(call: Callable[..., Any], writes: Callable[..., bool]) -> Callable[..., Any]:
        def at_points(*args: Any, **kwargs: Any) -> Any:
            if not writes(*args, **kwargs):
                return call(*args, **kwargs)
            reached()
            result = call(*args, **kwargs)
            reached()
            return result
        return at_points

    for name in _CALLS:
        setattr(os, name, before(getattr(os, name)))
    os.open = around(os.open, lambda path, flags, *a, **k: bool(flags & _WRITING))
    io.open = around(io.open, lambda file, mode="r", *a, **k: any(c in mode for c in "wax+"))
    builtins.open = io.open


def killed_at(point: int, call: Callable[[], object]) -> bool:
    """Run `call` in a forked child that SIGKILLs itself at `point` (kill_at); True if it was killed there, False if
    `call` returned first. AssertionError with the traceback if `call` raised."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            kill_at(point)
            call()
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert status in (0, -signal.SIGKILL), f"the child failed ({status}) at point {point}: see its stderr"
    return status == -signal.SIGKILL
