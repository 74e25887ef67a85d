"""The paths fsynced from now on, in order: for the tests that a write is on disk, with its name, before it counts
as done (a SIGKILL leaves what was written, synced or not; only a power cut tells, and tests cannot cut one). A
write's partial file is named without its random part (ledger.files), `.NAME.partial`."""

import os
import re

_RANDOM_PART = re.compile(r"\.[0-9a-f]{16}(?=\.partial$)")


def recorded_fsyncs(monkeypatch) -> list[str]:
    synced: list[str] = []
    fsync = os.fsync

    def recorded(fd: int) -> None:
        synced.append(_RANDOM_PART.sub("", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recorded)
    return synced
