"""ledger.files: a file written whole or not at all, durable once the call returns."""

import fcntl
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.files import create_file, make_directory, replace_file

from ..fsyncs import recorded_fsyncs


class _Killed(BaseException):
    """The process killed at this point."""


def _short_writes(monkeypatch, most: int) -> None:
    """Every os.write takes at most `most` bytes, as a write near a full disk or a file size limit may."""
    write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: write(fd, bytes(data[:most])))


@given(data=st.binary(max_size=300), most=st.integers(1, 64))
def test_short_writes_still_write_the_whole_file(tmp_path_factory, data, most):
    path = tmp_path_factory.mktemp("short") / "file"
    with pytest.MonkeyPatch.context() as patched:
        _short_writes(patched, most)
        replace_file(path, b"old")
        replace_file(path, data)
        create_file(path.with_name("new"), data)
    assert path.read_bytes() == data == path.with_name("new").read_bytes()


def _operations(monkeypatch) -> list[tuple[str, str]]:
    """The fsyncs (of what), renames and links made from now on, in order, by the paths they name."""
    done: list[tuple[str, str]] = []
    fsync, replace, link = os.fsync, os.replace, os.link

    def synced(fd):
        done.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def replaced(src, dst):
        done.append(("rename", str(dst)))
        replace(src, dst)

    def linked(src, dst):
        done.append(("rename", str(dst)))
        link(src, dst)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "replace", replaced)
    monkeypatch.setattr(os, "link", linked)
    return done


@pytest.mark.parametrize("write", [create_file, replace_file])
def test_the_data_is_synced_before_it_takes_the_name_and_the_directory_after(tmp_path, monkeypatch, write):
    """What a power cut needs: the data on disk before the name points at it, the name on disk before return."""
    path = tmp_path.resolve() / "file"
    done = _operations(monkeypatch)
    write(path, b"data")
    (fsync_partial, partial), *rest = done
    assert fsync_partial == "fsync" and re.fullmatch(r"\.file\.[0-9a-f]{16}\.partial", os.path.basename(partial))
    assert rest == [("rename", str(path)), ("fsync", str(path.parent))]


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_a_replacement_killed_at_any_step_leaves_the_old_file_whole(tmp_path, monkeypatch, step):
    path = tmp_path / "file"
    replace_file(path, b"old")

    def killed(*args):
        raise _Killed

    with monkeypatch.context() as patched:
        patched.setattr(os, step, killed)
        with pytest.raises(_Killed):
            replace_file(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["file"]


def test_create_refuses_an_existing_file_and_changes_nothing(tmp_path):
    path = tmp_path / "file"
    create_file(path, b"first")
    with pytest.raises(FileExistsError):
        create_file(path, b"second")
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["file"]


def test_the_file_is_private_by_default(tmp_path):
    create_file(tmp_path / "key", b"whole")
    assert (tmp_path / "key").read_bytes() == b"whole" and stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600


@pytest.mark.parametrize("write", [create_file, replace_file])
def test_two_writers_of_one_file_at_once_each_write_their_own_partial_file(tmp_path, monkeypatch, write):
    """Two commands writing one file (`audit export --out X` twice): the second, run while the first's partial file
    is written, neither removes it nor installs into it; both finish, each file whole, no partial file left."""
    fsync = os.fsync
    first, second = tmp_path / "first", tmp_path / "second"

    def second_writer_meanwhile(fd):
        monkeypatch.setattr(os, "fsync", fsync)
        replace_file(first, b"second writer")
        write(second, b"second writer")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", second_writer_meanwhile)
    replace_file(first, b"first writer")
    assert first.read_bytes() == b"first writer"
    assert second.read_bytes() == b"second writer"
    assert sorted(os.listdir(tmp_path)) == ["first", "second"]


@pytest.mark.parametrize("write", [create_file, replace_file])
def test_a_process_s_first_write_into_a_directory_removes_the_partial_files_killed_writes_left_and_no_other(
        tmp_path, write):
    """Earlier versions' one fixed partial name was reused by the next write; each write's own would pile up."""
    left, legacy = tmp_path / ".file.0123456789abcdef.partial", tmp_path / ".file.partial"
    another_file_s = tmp_path / ".file.old.0123456789abcdef.partial"
    under_way = tmp_path / ".file.fedcba9876543210.partial"
    others = [tmp_path / ".other.partial", tmp_path / "file.partial", tmp_path / ".file.0123.partial"]
    for partial in [left, legacy, another_file_s, under_way, *others]:
        partial.write_bytes(b"half")
    with open(under_way, "rb") as writer:  # its writer holds it: a write under way
        fcntl.flock(writer, fcntl.LOCK_EX)
        write(tmp_path / "file", b"whole")
    assert sorted(os.listdir(tmp_path)) == sorted(["file", under_way.name, *(p.name for p in others)])


def test_writes_scan_their_directory_once_a_process_and_a_killed_write_s_partial_goes_at_the_next_start(
        tmp_path, monkeypatch):
    """Before: every write scanned its directory for leftovers (os.scandir), a node's checkpoint.note each second.
    A write killed meanwhile (by another process's) leaves its partial file to the next process that writes there,
    as the next start of the node; the fixed partial name of earlier versions goes at its file's next write."""
    scans, scandir = [], os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: scans.append(path) or scandir(path))
    for n in range(50):
        replace_file(tmp_path / "checkpoint.note", b"%d" % n)
        create_file(tmp_path / f"agent-{n}", b"key")
    assert scans == [str(tmp_path)]
    killed = tmp_path / ".checkpoint.note.0123456789abcdef.partial"
    killed.write_bytes(b"half")
    (tmp_path / ".checkpoint.note.partial").write_bytes(b"half")  # an earlier version's
    replace_file(tmp_path / "checkpoint.note", b"next")
    assert not (tmp_path / ".checkpoint.note.partial").exists() and killed.exists()
    started = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                              "from ledger.files import replace_file; replace_file(Path(sys.argv[1]), b'started')",
                              str(tmp_path / "checkpoint.note")], capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    assert not killed.exists() and (tmp_path / "checkpoint.note").read_bytes() == b"started"


def test_a_partial_file_removed_before_its_writer_locks_it_is_drawn_again(tmp_path, monkeypatch):
    """Another write may take a partial file just created, not yet locked, for a killed one's and remove it."""
    flock, removed = fcntl.flock, []

    def removed_first(fd, operation):
        if not removed:
            removed.append(os.readlink(f"/proc/self/fd/{fd}"))
            os.unlink(removed[0])
        flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", removed_first)
    replace_file(tmp_path / "file", b"whole")
    assert (tmp_path / "file").read_bytes() == b"whole" and os.listdir(tmp_path) == ["file"] and len(removed) == 1


@pytest.mark.parametrize("where", ["missing", "file"])
def test_a_write_the_file_system_refuses_names_the_file_asked_for(tmp_path, where):
    (tmp_path / "file").write_bytes(b"")
    path = tmp_path / where / "out"
    with pytest.raises(OSError) as refused:
        replace_file(path, b"data")
    assert refused.value.filename == str(path) and os.listdir(tmp_path) == ["file"]


def test_a_directory_made_is_synced_into_its_parent_with_each_parent_it_needed(tmp_path, monkeypatch):
    synced = recorded_fsyncs(monkeypatch)
    base = tmp_path.resolve()
    make_directory(base / "a" / "b", mode=0o700)
    make_directory(base / "a" / "b")  # there already: nothing to do
    assert synced == [str(base), str(base / "a")]
    assert stat.S_IMODE((base / "a" / "b").stat().st_mode) == 0o700 & ~_umask()
    (base / "file").write_bytes(b"")
    with pytest.raises(FileExistsError):
        make_directory(base / "file")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux's /proc, which takes no directory")
def test_a_directory_the_file_system_will_not_make_is_refused_once_its_parents_are_there():
    """mkdir in /proc fails with ENOENT though /proc is there: asked again and again, it recursed until Python's
    limit (a RecursionError traceback out of `vouchnet init --dir /proc/x`)."""
    with pytest.raises(FileNotFoundError) as refused:
        make_directory(Path("/proc/vouchnet/node"))
    assert refused.value.filename == "/proc/vouchnet"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_parents_made_for_a_directory_take_the_ordinary_mode_and_it_alone_its_own(tmp_path):
    """A private data directory (mode 0700) made with its missing parents leaves the parents as any directory made
    there (0777 less the umask), so that other users still reach what else they hold."""
    umask = os.umask(0o022)
    try:
        make_directory(tmp_path / "orgs" / "alice", mode=0o700)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "orgs").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "orgs" / "alice").stat().st_mode) == 0o700
