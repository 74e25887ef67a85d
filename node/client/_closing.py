"""Closing in steps: every step runs though an earlier one raised (a failed telemetry shutdown must not leave the
policy's stream thread and its connection, one of the node's stream slots, behind), and the first error is raised
once all have run; later ones are logged with their tracebacks, without the password of any URL in them (an httpx
error names the URL it failed at, userinfo and all: RFC 3986 §3.2.1). Cancellation, KeyboardInterrupt and
SystemExit (BaseException, not Exception) end the closing at once, as they end anything else."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from ._http import without_passwords
from ._log import log


class Steps:
    """`with steps.step(what):` around each step, then `steps.done()`."""

    def __init__(self, closing: str) -> None:
        self.closing = closing
        self._first: Exception | None = None

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            if self._first is None:
                self._first = error
            else:  # the traceback in the message, as logging's formatter lays out exc_info, but scrubbed
                log.error(f"closing {self.closing}: {what} failed too\n{_shown_traceback(error)}")

    def done(self) -> None:
        """Raise the first step's error, if one raised."""
        if self._first is not None:
            raise self._first


def _shown_traceback(error: Exception) -> str:
    """`error`'s traceback, its chain included, as logging writes one, with every URL's password left out."""
    return without_passwords("".join(traceback.format_exception(error)).rstrip("\n"))
