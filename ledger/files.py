"""Whole-file writes that survive a crash (DESIGN §4: nothing acknowledged is lost): the data goes to a partial file
beside the target, which is fsynced, then linked or renamed into place, then the directory is fsynced. A SIGKILL or
a power cut at any moment leaves the file as it was or as written, never a part of it, and once the call returns
the file survives a power cut. Every small file a node or a command writes goes through here."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def create_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create `path` holding `data`, durably; raises FileExistsError, changing nothing, if it exists."""
    partial = _written(path, data, mode)
    try:
        os.link(partial, path)  # unlike a rename, never replaces an existing file
    finally:
        partial.unlink(missing_ok=True)
    sync_directory(path.parent)


def replace_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Make `path` hold `data` (created, or replaced whole), durably."""
    partial = _written(path, data, mode)
    try:
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def make_directory(path: Path, *, mode: int = 0o777) -> None:
    """Create `path` (mode `mode` less the umask) and its missing parents, each synced into its parent, so that a
    file written there survives a power cut with the directories that hold it; nothing if it is a directory."""
    try:
        path.mkdir(mode=mode)
    except FileNotFoundError:
        if path.parent == path:
            raise
        make_directory(path.parent)
        make_directory(path, mode=mode)
        return
    except FileExistsError:
        if path.is_dir():
            return  # there already (or made meanwhile by another process, which syncs it)
        raise
    sync_directory(path.parent)


def sync_directory(path: Path) -> None:
    """fsync a directory, so that a file created, renamed or removed in it stays so after a power cut."""
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _written(path: Path, data: bytes, mode: int) -> Path:
    """`data` in a new partial file beside `path` (mode `mode`, less the umask), fsynced; its path. One a crash left
    is replaced: it was never linked, so never read."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:  # a write may take only part (a disk almost full, a file size limit): the rest, or its error
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:  # named after the file asked for, not the partial one
        _discard(partial)
        raise OSError(error.errno, error.strerror, str(path)) from None
    except BaseException:
        _discard(partial)
        raise
    return partial


def _discard(partial: Path) -> None:
    with contextlib.suppress(OSError):  # the error that brought us here is the one to report
        partial.unlink(missing_ok=True)
