"""The paths fsynced from now on, in order: for the tests that a write is on disk, with its name, before it counts
as done (a SIGKILL leaves what was written, synced or not; only a power cut tells, and tests cannot cut one)."""

import os


def recorded_fsyncs(monkeypatch) -> list[str]:
    synced: list[str] = []
    fsync = os.fsync

    def recorded(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recorded)
    return synced
