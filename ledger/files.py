"""Whole-file writes that survive a crash (DESIGN §4: nothing acknowledged is lost): the data goes to a partial file
beside the target, which is fsynced, then linked or renamed into place, then the directory is fsynced. A SIGKILL or
a power cut at any moment leaves the file as it was or as written, never a part of it, and once the call returns
the file survives a power cut. Every small file a node or a command writes goes through here.

Each write has a partial file of its own (`.NAME.<random>.partial`, as tempfile names one), so two processes
writing one file at once each install their own bytes whole, the last to finish winning. The writer holds an flock
on its partial file until it is in place or removed, so a partial file that nobody holds is one a killed writer
left: a process's first write into a directory removes those of every file there (one scan of the directory a
process, not one a write: a node rewrites checkpoint.note every second), and each write of NAME the one fixed
partial name of earlier versions, `.NAME.partial`, if a killed write of theirs left it. `read_small` reads one of
the small files back."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

from .writes_under_way import writing

Buffer = bytes | memoryview | array  # what os.write takes (collections.abc.Buffer from Python 3.12)


_LEFT = re.compile(r"\..+\.[0-9a-f]{16}\.partial")  # a partial file of _new_partial's, of any file
_swept: set[str] = set()  # the directories this process removed killed writes' partial files from (_remove_left)
os.register_at_fork(after_in_child=_swept.clear)  # a forked child is a process of its own: it sweeps them again


def create_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create `path` holding `data`, durably; raises FileExistsError, changing nothing, if it exists."""
    with writing(path.name):
        with _written(path, data, mode) as partial:
            try:
                os.link(partial, path)  # unlike a rename, never replaces an existing file
            finally:
                partial.unlink(missing_ok=True)
        sync_directory(path.parent)


def replace_file(path: Path, data: bytes | Sequence[Buffer], *, mode: int = 0o600) -> None:
    """Make `path` hold `data` (created, or replaced whole), durably; `data` may be parts, written one after the
    other (a large file is written from what holds it, not joined into one bytes first)."""
    with writing(path.name):
        with _written(path, data, mode) as partial:
            try:
                os.replace(partial, path)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        sync_directory(path.parent)


def read_small(path: Path, limit: int) -> bytes | None:
    """The first `limit` + 1 bytes of a small file (more than `limit`: not the file a writer here made), or None if
    there is none; OSError if it cannot be read."""
    try:
        with open(path, "rb") as file:
            return file.read(limit + 1)
    except FileNotFoundError:
        return None


def make_directory(path: Path, *, mode: int = 0o777) -> None:
    """Create `path` (mode `mode` less the umask) and its missing parents, each synced into its parent, so that a
    file written there survives a power cut with the directories that hold it; nothing if it is a directory.
    FileNotFoundError if it cannot be made once its parents are there (a file system that takes no directory,
    /proc: asked again, it recursed until Python's limit)."""
    for parents_made in (False, True):
        try:
            path.mkdir(mode=mode)
        except FileNotFoundError:
            if parents_made or path.parent == path:
                raise
            make_directory(path.parent)
            continue
        except FileExistsError:
            if path.is_dir():
                return  # there already (or made meanwhile by another process, which syncs it)
            raise
        sync_directory(path.parent)
        return


def sync_directory(path: Path) -> None:
    """fsync a directory, so that a file created, renamed or removed in it stays so after a power cut."""
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _written(path: Path, data: bytes | Sequence[Buffer], mode: int) -> Iterator[Path]:
    """`data` in a new partial file of this write's own beside `path` (mode `mode`, less the umask), fsynced and
    flocked: the block links or renames it into place (or removes it); the lock is released after. The partial
    files killed writers left are removed first (module docstring)."""
    _remove_left(path)
    fd, partial = _new_partial(path, mode)
    try:
        try:
            for part in [data] if isinstance(data, bytes) else data:
                view = memoryview(part).cast("B")
                while view:  # a write may take only part (a disk almost full, a file size limit): the rest, or an error
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as error:  # named after the file asked for, not the partial one
            _discard(partial)
            raise OSError(error.errno, error.strerror, str(path)) from None
        except BaseException:
            _discard(partial)
            raise
        yield partial
    finally:
        os.close(fd)


def _new_partial(path: Path, mode: int) -> tuple[int, Path]:
    """A partial file for one write to `path`, created (never an existing one) and flocked: its fd and path."""
    while True:
        partial = path.with_name(f".{path.name}.{secrets.token_hex(8)}.partial")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:  # (a 64-bit name drawn twice)
            continue
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            _discard(partial)
            raise
        if os.fstat(fd).st_nlink:
            return fd, partial
        os.close(fd)  # another write took it for a killed one's and removed it before we held it: draw again


def _remove_left(path: Path) -> None:
    """Remove the partial files no writer holds: `path`'s as earlier versions named it, and, at this process's first
    write into its directory, those of every file there."""
    _remove_unheld(path.with_name(f".{path.name}.partial"))
    directory = os.path.abspath(path.parent)
    if directory in _swept:
        return
    _swept.add(directory)  # (before the scan: a write on another thread meanwhile need not scan too)
    try:
        names = [e.name for e in os.scandir(directory) if _LEFT.fullmatch(e.name)]
    except OSError:
        _swept.discard(directory)  # (creating the partial file will say what is wrong with the directory)
        return
    for name in names:
        _remove_unheld(Path(directory, name))


def _remove_unheld(partial: Path) -> None:
    """Remove `partial` if it is there and no writer holds it (a killed one's)."""
    try:
        fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # not there, removed or installed by its writer meanwhile, or not a file we could have made
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(partial)  # no writer holds it: a killed one's
    except OSError:  # BlockingIOError: a write under way; FileNotFoundError: removed meanwhile
        pass
    finally:
        os.close(fd)


def _discard(partial: Path) -> None:
    with contextlib.suppress(OSError):  # the error that brought us here is the one to report
        partial.unlink(missing_ok=True)
