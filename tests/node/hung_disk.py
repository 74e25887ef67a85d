"""A disk that never finishes an fsync, for a node run in a process of its own (ForkedCli.spawn's `before`): an fsync
through Python (ledger.files' whole-file writes) never returns once it is of a file whose path holds `name` and the
file `trigger` exists; `trigger`.hung is made as the first such fsync begins (it then waits for ever). SQLite's own
fsyncs are not Python's, and go on."""

import os
import threading
from pathlib import Path


def hang_fsyncs(trigger: str, name: str) -> None:
    fsync = os.fsync
    never = threading.Event()

    def hung(fd: int) -> None:
        if os.path.exists(trigger) and name in os.readlink(f"/proc/self/fd/{fd}"):
            Path(f"{trigger}.hung").touch()
            never.wait()
        fsync(fd)

    os.fsync = hung
